"""`opencode`: opencode, run headless (`opencode run --format json`) in the worktree.

    [agents.opencode]
    kind = "opencode"
    model = "qwen3-coder"                     # with base_url: the model's name there
    effort = "high"                           # --variant (the provider's reasoning effort)
    base_url = "http://127.0.0.1:11434/v1"    # any OpenAI-compatible endpoint (chat completions)
    api_key_env = "OPENAI_API_KEY"

With `base_url`, a config of its own (OPENCODE_CONFIG) declares a provider `claw` of that address
through opencode's bundled OpenAI-compatible SDK, and the model runs as `claw/MODEL`; without it,
`model` is opencode's own `provider/model` and its keys come from the environment. It gets a
HOME of its own in the attempt folder; nothing is fetched at start (no model catalogue, plugins,
LSP servers or updates), so it works offline; without base_url its built-in plugins stay on, as
they read an OAuth login (ChatGPT, Copilot) from the auth.json it is shown. The prompt goes in on stdin; `--auto` approves its
tools; `--format json` prints one JSON event a line (step_start, tool_use, text, step_finish
with tokens, error), kept as `opencode-N.jsonl`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..config import OpencodeAgentConfig
from ..sandbox import Bind
from . import AgentJob, AgentOutcome
from ._cli import CliAgent, Program, api_key, log_tail, person_home, short, shown

PROGRAM = Program("opencode", "opencode", "npm install -g opencode-ai")
KEY_VARIABLE = "CLAW_OPENCODE_API_KEY"   # the variable the written provider's apiKey names
PROVIDER = "claw"

# Everything it would otherwise fetch or read from outside the attempt at start.
QUIET = {"OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1",
         "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1", "OPENCODE_DISABLE_SHARE": "1",
         "OPENCODE_DISABLE_LSP_DOWNLOAD": "1", "OPENCODE_DISABLE_CLAUDE_CODE": "1"}
# Its default plugins are built in (nothing fetched) and are what reads an OAuth login of
# auth.json (ChatGPT's, Copilot's): without them "Provider not found: openai". Off only with base_url.
LOGIN_PLUGINS = "OPENCODE_DISABLE_DEFAULT_PLUGINS"


class OpencodeAgent(CliAgent):
    program = PROGRAM
    label = "opencode"
    transcript_prefix = "opencode"
    # `--session ID` continues a session in fix rounds. Not across attempts: a session is bound
    # to the folder it started in (resumed from another, opencode 1.18 goes back to that folder),
    # and carrying it over means running opencode's export and import on the agent's own files.
    resumes = True
    config: OpencodeAgentConfig
    # chatgpt.com and auth.openai.com: a ChatGPT login (its built-in Codex plugin) calls and refreshes there.
    login_hosts = ("opencode.ai", "models.dev", "api.anthropic.com", "api.openai.com", "openrouter.ai",
                   "chatgpt.com", "auth.openai.com")
    own_key_variables = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "OPENCODE_API_KEY")
    login_hint = ("opencode is not logged in: run `opencode auth login`, or set the provider's key "
                  "(ANTHROPIC_API_KEY, OPENAI_API_KEY...), or a base_url in [agents.NAME]")

    def login_files(self) -> list[Path]:
        return [person_home() / ".local/share/opencode/auth.json"]


    def inherited(self, job: AgentJob, env: dict[str, str]) -> tuple[list[Bind], list[str]]:
        """The person's opencode logins (~/.local/share/opencode/auth.json) and AGENTS.md."""
        wanted, home = set(self.config.inherit), Path(env["HOME"])
        binds: list[Bind] = []
        if "login" in wanted:
            binds += shown(person_home() / ".local/share/opencode/auth.json",
                           home / ".local/share/opencode/auth.json", writable=True)
        if "instructions" in wanted:
            binds += shown(person_home() / ".config/opencode/AGENTS.md", home / ".config/opencode/AGENTS.md")
        return binds, []

    def settings(self) -> dict[str, Any]:
        """Its config file: a provider for base_url with the one model it serves."""
        settings: dict[str, Any] = {"autoupdate": False, "share": "disabled"}
        config = self.config
        if config.base_url:
            model = config.model or "default"
            settings["provider"] = {PROVIDER: {
                "npm": "@ai-sdk/openai-compatible", "name": "clawfleet",
                "options": {"baseURL": config.base_url, "apiKey": f"{{env:{KEY_VARIABLE}}}"},
                "models": {model: {"name": model}}}}
            settings["model"] = f"{PROVIDER}/{model}"
        elif config.model:
            settings["model"] = config.model
        return settings

    def command(self, binary: str, job: AgentJob) -> list[str]:
        # --title: the session is named after the task, so it asks the model for no title.
        args = [binary, "run", "--pure", "--format", "json", "--auto", "--dir", str(job.workspace),
                "--title", f"clawfleet task {job.task_id}"]
        if self.config.effort:
            args += ["--variant", self.config.effort]
        if job.resume:
            args += ["--session", job.resume]
        return args + self.config.args

    def environment(self, job: AgentJob) -> dict[str, str]:
        home = job.attempt_dir / "opencode-home"
        home.mkdir(exist_ok=True)
        settings = home / "opencode.json"
        settings.write_text(json.dumps(self.settings(), indent=1))
        # PWD too: it takes its directory from there, which is the runner's caller's, not the worktree.
        env = {**os.environ, **QUIET, "HOME": str(home), "OPENCODE_CONFIG": str(settings),
               "PWD": str(job.workspace), **self.config.env}
        if not self.config.base_url:
            env.pop(LOGIN_PLUGINS, None)
        for variable in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            env.pop(variable, None)   # they would point it back at the person's own
        key = api_key(self.name, self.config.api_key_env, self.config.base_url)
        if key and self.config.base_url:
            env[KEY_VARIABLE] = key
        return env

    def events(self, job: AgentJob) -> "_Events":
        return _Events(job)


class _Events:
    """Reads `opencode run --format json` events: tool calls and texts into the agent log, tokens
    from each `step_finish`, the last text as the summary, an `error` event as the failure."""

    def __init__(self, job: AgentJob) -> None:
        self.job = job
        self.summary = ""
        self.error: str | None = None
        self.finished_steps = 0
        self.input_tokens = self.output_tokens = 0
        self.session: str | None = None

    def on_event(self, event: dict[str, Any]) -> None:
        kind, part, line = event.get("type"), event.get("part") or {}, None
        if kind == "step_start" and self.session is None and isinstance(event.get("sessionID"), str):
            self.session = event["sessionID"]   # a model step began: the session is real
            self.job.on_session(self.session)
        if kind == "tool_use":
            state = part.get("state") or {}
            line = (f"-> {part.get('tool')} {short(state.get('input'))}\n"
                    f"<- [{state.get('status')}] {short(state.get('output') or state.get('error') or '')}")
            self.summary = ""   # the summary is what it says after its last tool call
        elif kind == "text":
            text = str(part.get("text") or "").strip()
            if text:
                self.summary = text
                line = f"opencode: {short(text, 2000)}"
        elif kind == "step_finish":
            self.finished_steps += 1
            tokens = part.get("tokens") or {}
            cache = tokens.get("cache") or {}
            # Its input count leaves out cached reads and writes; they were read all the same.
            self.input_tokens += sum(int(n or 0) for n in (tokens.get("input"), cache.get("read"), cache.get("write")))
            self.output_tokens += int(tokens.get("output") or 0) + int(tokens.get("reasoning") or 0)
            self.job.on_usage(self.input_tokens, self.output_tokens)
            line = f"[step {self.finished_steps} ({part.get('reason')}): {self.input_tokens} in / {self.output_tokens} out tokens]"
        elif kind == "error":
            error = event.get("error") or {}
            data = error.get("data") or {}
            self.error = str(data.get("message") or error.get("name") or short(error))
            line = f"[error: {self.error}]"
        if line:
            with open(self.job.log, "a") as log:
                log.write(line + "\n")

    def outcome(self, exit_code: int, transcript: str) -> AgentOutcome:
        outcome = AgentOutcome(summary=self.summary, exit_code=exit_code, session_id=self.session,
                               input_tokens=self.input_tokens, output_tokens=self.output_tokens)
        if self.error:
            outcome.error = f"opencode failed: {self.error}"
        elif exit_code != 0:
            outcome.error = (f"opencode exited with status {exit_code} (transcript: {transcript}): "
                             f"{log_tail(self.job.log, 3) or 'no message'}")
        elif not self.finished_steps:
            outcome.error = f"opencode ended without a model reply (transcript: {transcript})"
        return outcome
