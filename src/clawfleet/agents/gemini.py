"""`gemini`: Google's Gemini CLI, run headless (`gemini -p`) in the worktree.

    [agents.gemini]
    kind = "gemini"
    model = "gemini-2.5-pro"                  # -m
    base_url = "http://127.0.0.1:8080"        # GOOGLE_GEMINI_BASE_URL (a gateway, any Gemini-API server)
    api_key_env = "GEMINI_API_KEY"            # passed to it as GEMINI_API_KEY

It gets a HOME of its own in the attempt folder whose `.gemini/settings.json` selects API-key
auth, or, with no base_url and no key, the person's Google login (their oauth_creds.json is
shown there), and turns off usage statistics. The prompt goes in on stdin (`-p ""` appends nothing to it); `--approval-mode yolo`
lets it run its tools unattended, and `--skip-trust` trusts the worktree for this session only
(an untrusted folder silently drops it back to asking). `--output-format stream-json` prints one
JSON event a line (init, message, tool_use, tool_result, result with token stats), kept as
`gemini-N.jsonl`. It has no reasoning-effort option, so none is passed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..config import GeminiAgentConfig
from ..sandbox import Bind
from . import AgentJob, AgentOutcome, copy_session_files, session_files
from ._cli import CliAgent, Program, api_key, log_tail, person_home, short, shown

PROGRAM = Program("gemini", "gemini", "npm install -g @google/gemini-cli")


KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


def login_file() -> Path:
    """Where Gemini CLI keeps the person's Google login (its "Login with Google")."""
    return person_home() / ".gemini" / "oauth_creds.json"


def auth_type(base_url: str | None, api_key_env: str | None, inherit: Any) -> str:
    """The auth Gemini CLI is set to: a key for base_url or the person's key variable, else the
    person's Google login when it is shown to it (`oauth-personal`, which reads oauth_creds.json)."""
    if base_url or api_key_env or any(os.environ.get(name) for name in KEY_VARIABLES):
        return "gemini-api-key"
    return "oauth-personal" if "login" in inherit and login_file().is_file() else "gemini-api-key"


def prepare_home(home: Path, auth: str = "gemini-api-key") -> None:
    """A HOME for Gemini CLI whose settings select its auth (without one, headless runs stop at
    "Invalid auth method selected") and send no usage statistics."""
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    settings = {"security": {"auth": {"selectedType": auth}},
                "privacy": {"usageStatisticsEnabled": False}}
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings, indent=1))


class GeminiAgent(CliAgent):
    program = PROGRAM
    label = "Gemini CLI"
    transcript_prefix = "gemini"
    config: GeminiAgentConfig
    login_hosts = ("generativelanguage.googleapis.com", "cloudcode-pa.googleapis.com",
                   "oauth2.googleapis.com", "www.googleapis.com")
    own_key_variables = KEY_VARIABLES
    resumes = True   # `--resume SESSION`: its sessions are files per project folder in HOME/.gemini/tmp
    login_hint = ("Gemini CLI is not logged in: run `gemini` once and sign in with Google, or set "
                  "GEMINI_API_KEY (or a base_url in [agents.NAME])")

    def login_files(self) -> list[Path]:
        return [login_file()]

    def inherited(self, job: AgentJob, env: dict[str, str]) -> tuple[list[Bind], list[str]]:
        """The person's Google login (oauth_creds.json, refreshed in place) and GEMINI.md."""
        wanted, person, home = set(self.config.inherit), person_home() / ".gemini", Path(env["HOME"]) / ".gemini"
        binds: list[Bind] = []
        if "login" in wanted:
            binds += shown(person / "oauth_creds.json", home / "oauth_creds.json", writable=True)
            binds += shown(person / "google_accounts.json", home / "google_accounts.json")
        if "instructions" in wanted:
            binds += shown(person / "GEMINI.md", home / "GEMINI.md")
        return binds, []

    def command(self, binary: str, job: AgentJob) -> list[str]:
        args = [binary, "-p", "", "--output-format", "stream-json",
                "--approval-mode", self.config.approval_mode, "--skip-trust"]
        if self.config.model:
            args += ["--model", self.config.model]
        if job.resume:
            args += ["--resume", job.resume]
        return args + self.config.args

    def adopt_session(self, earlier: Path, session: str, job: AgentJob) -> str | None:
        """Copy an earlier attempt's session into this attempt's HOME, under the project folder
        of this worktree: Gemini CLI looks for a session among its current folder's only
        (projects.json names that folder; the chat file's name ends in the id's first 8 characters)."""
        tmp = earlier / "gemini-home" / ".gemini" / "tmp"
        files = [f for f in session_files(tmp, f"*/chats/session-*-{session[:8]}.json*")
                 if session in _head(f)]
        if not files:
            return None
        gemini = job.attempt_dir / "gemini-home" / ".gemini"
        name = _project_name(gemini, job.workspace)
        chats = gemini / "tmp" / name / "chats"
        copied = copy_session_files(files[0].parent, chats, files)
        return session if copied else None

    def environment(self, job: AgentJob) -> dict[str, str]:
        home = job.attempt_dir / "gemini-home"
        config = self.config
        prepare_home(home, auth_type(config.base_url, config.api_key_env, config.inherit))
        env = {**os.environ, "HOME": str(home), **self.config.env}
        key = api_key(self.name, self.config.api_key_env, self.config.base_url)
        if self.config.base_url:
            env["GOOGLE_GEMINI_BASE_URL"] = self.config.base_url
        if key:
            env["GEMINI_API_KEY"] = key
        return env

    def events(self, job: AgentJob) -> "_Events":
        return _Events(job)

def _head(path: Path, size: int = 4096) -> str:
    try:
        with open(path, errors="replace") as handle:
            return handle.read(size)
    except OSError:
        return ""


def _project_name(gemini: Path, workspace: Path) -> str:
    """The folder Gemini CLI keeps `workspace`'s sessions in (registered in projects.json as
    it would do itself, when it is not yet)."""
    registry = gemini / "projects.json"
    try:
        data = json.loads(registry.read_text())
    except (OSError, ValueError):
        data = {}
    projects = data.get("projects") if isinstance(data.get("projects"), dict) else {}
    name = projects.get(str(workspace))
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        taken = set(projects.values())
        name, number = workspace.name, 1
        while name in taken:
            number += 1
            name = f"{workspace.name}-{number}"
        projects[str(workspace)] = name
        gemini.mkdir(parents=True, exist_ok=True)
        registry.write_text(json.dumps({**data, "projects": projects}, indent=2))
    (gemini / "tmp" / name).mkdir(parents=True, exist_ok=True)
    (gemini / "tmp" / name / ".project_root").write_text(str(workspace))
    return name


class _Events:
    """Reads Gemini CLI's stream-json events. Assistant text arrives in deltas: the summary is the
    text after the last tool call."""

    def __init__(self, job: AgentJob) -> None:
        self.job = job
        self.reply: list[str] = []
        self.result: dict[str, Any] | None = None
        self.input_tokens = self.output_tokens = 0
        self.last_error: str | None = None
        self.session: str | None = None
        self._logged = ""

    def on_event(self, event: dict[str, Any]) -> None:
        kind, line = event.get("type"), None
        if kind == "init":
            if isinstance(event.get("session_id"), str):
                self.session = event["session_id"]
                self.job.on_session(self.session)
            line = f"[gemini session {event.get('session_id')}, model {event.get('model')}]"
        elif kind == "message" and event.get("role") == "assistant":
            if not event.get("delta"):
                self.reply = []
            self.reply.append(str(event.get("content") or ""))
        elif kind == "tool_use":
            self._flush()
            self.reply = []
            line = f"-> {event.get('tool_name')} {short(event.get('parameters'))}"
        elif kind == "tool_result":
            line = f"<- [{event.get('status')}] {short(event.get('output') or event.get('error') or '')}"
        elif kind == "error":
            self.last_error = short(event.get("message") or event)
            line = f"[error: {self.last_error}]"
        elif kind == "result":
            self._flush()
            self.result = event
            stats = event.get("stats") or {}
            self.input_tokens = int(stats.get("input_tokens") or 0)
            self.output_tokens = int(stats.get("output_tokens") or 0)
            self.job.on_usage(self.input_tokens, self.output_tokens)
            line = (f"[result: {event.get('status')}, {stats.get('tool_calls', 0)} tool calls, "
                    f"{self.input_tokens} in / {self.output_tokens} out tokens]")
        if line:
            self._write(line)

    def _flush(self) -> None:
        text = "".join(self.reply).strip()
        if text and text != self._logged:
            self._logged = text
            self._write(f"gemini: {short(text, 2000)}")

    def _write(self, line: str) -> None:
        with open(self.job.log, "a") as log:
            log.write(line + "\n")

    def outcome(self, exit_code: int, transcript: str) -> AgentOutcome:
        outcome = AgentOutcome(summary="".join(self.reply).strip(), exit_code=exit_code,
                               input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                               session_id=self.session)
        result = self.result or {}
        if not result:
            outcome.error = (f"gemini exited with status {exit_code} without a result "
                             f"(transcript: {transcript}): {log_tail(self.job.log, 3)}")
        elif result.get("status") != "success":
            error = result.get("error") or {}
            outcome.error = f"gemini ended with {result.get('status')}: {error.get('message') or short(error)}"
        elif exit_code != 0:
            outcome.error = f"gemini exited with status {exit_code}: {self.last_error or 'see `claw log`'}"
        return outcome
