"""`codex`: the OpenAI Codex CLI, run headless (`codex exec --json`) in the worktree.

    [agents.codex]
    kind = "codex"
    model = "gpt-5-codex"
    effort = "medium"                        # model_reasoning_effort
    base_url = "http://127.0.0.1:8080/v1"    # a provider speaking the Responses API
    api_key_env = "OPENAI_API_KEY"
    sandbox = "workspace-write"              # its own sandbox for the commands it runs

Each attempt gets a CODEX_HOME of its own in the attempt folder, with a `config.toml` written from
the agent's config: with `base_url`, a model provider of that address whose key is read from the
variable named by its `env_key`; without it, Codex's own provider and CODEX_API_KEY. The prompt
goes in on stdin; `--json` prints one JSON event a line (items: commands, file changes, agent
messages; `turn.completed` with usage; `turn.failed`), kept as `codex-N.jsonl`. Its own session
files stay in that CODEX_HOME.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from ..config import CodexAgentConfig
from ..sandbox import Bind
from . import AgentJob, AgentOutcome, copy_session_files, session_files
from ._cli import CliAgent, Program, api_key, log_tail, person_home, short, shown
from .claude import programs_of

PROGRAM = Program("codex", "codex", "npm install -g @openai/codex")
KEY_VARIABLE = "CLAW_CODEX_API_KEY"   # the variable the written provider's env_key names


def _toml(value: Any) -> str:
    return json.dumps(value)  # a JSON string (or list of them) is valid TOML


def _mcp_table(name: str, server: dict[str, Any]) -> str:
    """One `[mcp_servers.NAME]` table again, from what tomllib read of the person's config."""
    lines = [f"\n[mcp_servers.{_toml(name)}]"]
    for key, value in server.items():
        if isinstance(value, (str, int, float, bool)) or (isinstance(value, list) and
                                                           all(isinstance(v, str) for v in value)):
            lines.append(f"{key} = {_toml(value) if not isinstance(value, bool) else str(value).lower()}")
        elif isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            lines.append(f"{key} = {{ " + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in value.items()) + " }")
    return "\n".join(lines)


class CodexAgent(CliAgent):
    program = PROGRAM
    label = "Codex"
    transcript_prefix = "codex"
    config: CodexAgentConfig

    login_hosts = ("chatgpt.com", "auth.openai.com", "api.openai.com")
    resumes = True   # `codex exec resume THREAD`: its threads are rollout files in CODEX_HOME
    own_key_variables = ("CODEX_API_KEY", "OPENAI_API_KEY")
    login_hint = ("Codex is not logged in: run `codex login` (ChatGPT or an API key), or set OPENAI_API_KEY "
                  "(or a base_url in [agents.NAME])")

    def login_files(self) -> list[Path]:
        return [self.person_home() / "auth.json"]


    def settings(self, sandboxed: bool = False) -> str:
        """`$CODEX_HOME/config.toml`: unattended (never ask), the sandbox, model and provider,
        and the person's MCP servers when it inherits them. Inside clawfleet's sandbox Codex's
        own is off (it cannot nest bubblewrap there, and ours already holds it)."""
        config = self.config
        mode = "danger-full-access" if sandboxed else config.sandbox
        lines = ['approval_policy = "never"', f"sandbox_mode = {_toml(mode)}"]
        if config.model:
            lines.append(f"model = {_toml(config.model)}")
        if config.effort:
            lines.append(f"model_reasoning_effort = {_toml(config.effort)}")
        if config.base_url:
            lines += ['model_provider = "claw"', "", "[model_providers.claw]", 'name = "clawfleet"',
                      f"base_url = {_toml(config.base_url)}", f'env_key = "{KEY_VARIABLE}"',
                      'wire_api = "responses"']
        if "mcp" in config.inherit:
            lines += [_mcp_table(name, server) for name, server in self.person_mcp().items()]
        return "\n".join(lines) + "\n"

    def person_home(self) -> Path:
        """The person's CODEX_HOME (default ~/.codex)."""
        return Path(os.environ.get("CODEX_HOME") or person_home() / ".codex")

    def person_mcp(self) -> dict[str, Any]:
        try:
            with open(self.person_home() / "config.toml", "rb") as handle:
                servers = tomllib.load(handle).get("mcp_servers") or {}
        except (OSError, tomllib.TOMLDecodeError):
            return {}
        return {name: server for name, server in servers.items() if isinstance(server, dict)}

    def inherited(self, job: AgentJob, env: dict[str, str]) -> tuple[list[Bind], list[str]]:
        """The person's auth.json (bound read-write: Codex rewrites it in place when it refreshes
        a ChatGPT login, and re-reads it before refreshing), their AGENTS.md and skills; their
        MCP servers' programs read-only."""
        wanted, person, home = set(self.config.inherit), self.person_home(), Path(env["CODEX_HOME"])
        binds: list[Bind] = []
        if "login" in wanted:
            binds += shown(person / "auth.json", home / "auth.json", writable=True)
        if "instructions" in wanted:
            binds += shown(person / "AGENTS.md", home / "AGENTS.md")
        if "skills" in wanted:
            binds += shown(person / "skills", home / "skills")
        return binds, programs_of(self.person_mcp()) if "mcp" in wanted else []

    def command(self, binary: str, job: AgentJob) -> list[str]:
        # `-` reads the prompt from stdin: no argv length limit, and it is not in `ps`.
        args = [binary, "exec", "--json", "--skip-git-repo-check", "--cd", str(job.workspace), *self.config.args]
        # `exec resume THREAD -`: the same thread, its history, this prompt as the next turn.
        return args + (["resume", job.resume, "-"] if job.resume else ["-"])

    def adopt_session(self, earlier: Path, session: str, job: AgentJob) -> str | None:
        """Copy an earlier attempt's thread (its rollout file) into this attempt's CODEX_HOME,
        where `codex exec resume` finds it by id, and the thread's token totals so far."""
        sessions = earlier / "codex-home" / "sessions"
        files = session_files(sessions, f"*-{session}.jsonl")
        if not files or not copy_session_files(sessions, job.attempt_dir / "codex-home" / "sessions", files):
            return None
        totals = _thread_totals(earlier)
        if session in totals:
            _save_thread_totals(job.attempt_dir, session, totals[session])
        return session

    def environment(self, job: AgentJob) -> dict[str, str]:
        home = job.attempt_dir / "codex-home"
        home.mkdir(exist_ok=True)   # Codex wants CODEX_HOME to exist already
        (home / "config.toml").write_text(self.settings(sandboxed=job.sandbox is not None))
        # Codex puts helper links for its Linux sandbox (run through bwrap) in CODEX_HOME, and
        # refuses to when that is under the temporary folder; a TMPDIR of the attempt's own
        # keeps it working wherever the project lives, /tmp included.
        tmp = job.attempt_dir / "codex-tmp"
        tmp.mkdir(exist_ok=True)
        env = {**os.environ, "CODEX_HOME": str(home), "TMPDIR": str(tmp), **self.config.env}
        key = api_key(self.name, self.config.api_key_env, self.config.base_url)
        if key:
            env[KEY_VARIABLE if self.config.base_url else "CODEX_API_KEY"] = key
        return env

    def events(self, job: AgentJob) -> "_Events":
        return _Events(job)


THREAD_TOTALS = "codex-threads.json"   # in the attempt folder: each thread's token totals so far


def _thread_totals(attempt_dir: Path) -> dict[str, list[int]]:
    try:
        data = json.loads((attempt_dir / THREAD_TOTALS).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_thread_totals(attempt_dir: Path, thread: str, totals: list[int]) -> None:
    data = _thread_totals(attempt_dir)
    data[thread] = totals
    (attempt_dir / THREAD_TOTALS).write_text(json.dumps(data))


class _Events:
    """Reads `codex exec --json` events: a readable line in the agent log for each item, token
    counts from each `turn.completed`, the last agent message as the summary, and failures."""

    def __init__(self, job: AgentJob) -> None:
        self.job = job
        self.summary = ""
        self.failure: str | None = None
        self.last_error: str | None = None
        self.completed_turns = 0
        self.input_tokens = self.output_tokens = 0
        self.thread: str | None = None
        self._before = [0, 0]          # the thread's totals before this run (a resumed thread)

    def on_event(self, event: dict[str, Any]) -> None:
        kind, line = event.get("type"), None
        if kind == "thread.started":
            if isinstance(event.get("thread_id"), str):
                self.thread = event["thread_id"]
                self._before = _thread_totals(self.job.attempt_dir).get(self.thread, [0, 0])
                self.job.on_session(self.thread)
            line = f"[codex thread {event.get('thread_id')}]"
        elif kind in ("item.started", "item.completed"):
            line = self._item(kind, event.get("item") or {})
        elif kind == "turn.completed":
            self.completed_turns += 1
            usage = event.get("usage") or {}
            # cached_input_tokens are part of input_tokens in the Responses API's accounting.
            # The counts are the thread's totals (a resumed thread's include its earlier runs),
            # so this run's share is what they grew by.
            totals = [int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)]
            self.input_tokens = max(totals[0] - self._before[0], 0)
            self.output_tokens = max(totals[1] - self._before[1], 0)
            if self.thread:
                _save_thread_totals(self.job.attempt_dir, self.thread, totals)
            self.job.on_usage(self.input_tokens, self.output_tokens)
            line = f"[turn completed: {self.input_tokens} in / {self.output_tokens} out tokens]"
        elif kind == "turn.failed":
            self.failure = str((event.get("error") or {}).get("message") or "turn failed")
            line = f"[turn failed: {self.failure}]"
        elif kind == "error":
            self.last_error = str(event.get("message") or "")
            line = f"[error: {self.last_error}]"
        if line:
            with open(self.job.log, "a") as log:
                log.write(line + "\n")

    def _item(self, kind: str, item: dict[str, Any]) -> str | None:
        type_ = item.get("type")
        if type_ == "command_execution":
            if kind == "item.started":
                return f"$ {item.get('command')}"
            return f"  [exit {item.get('exit_code')}] {short(item.get('aggregated_output') or '')}"
        if kind != "item.completed":
            return None
        if type_ == "agent_message":
            self.summary = str(item.get("text") or "").strip()
            return f"codex: {short(self.summary, 2000)}"
        if type_ == "file_change":
            changes = ", ".join(f"{c.get('kind')} {c.get('path')}" for c in item.get("changes") or [])
            return f"files: {changes}"
        if type_ == "error":   # a warning (e.g. unknown model metadata); failures are turn.failed
            return f"warning: {item.get('message')}"
        if type_ == "reasoning":
            return None
        return f"{type_}: {short(item)}"

    def outcome(self, exit_code: int, transcript: str) -> AgentOutcome:
        outcome = AgentOutcome(summary=self.summary, exit_code=exit_code, session_id=self.thread,
                               input_tokens=self.input_tokens, output_tokens=self.output_tokens)
        if self.failure:
            outcome.error = f"codex failed: {self.failure}"
        elif exit_code != 0:
            reason = self.last_error or log_tail(self.job.log, 3) or "no message"
            outcome.error = f"codex exited with status {exit_code} (transcript: {transcript}): {reason}"
        elif not self.completed_turns:
            outcome.error = f"codex ended without completing its turn (transcript: {transcript})"
        return outcome
