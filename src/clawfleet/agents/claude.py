"""`claude`: Claude Code, run headless (`claude -p`) in the worktree.

    [agents.claude]
    kind = "claude"
    model = "sonnet"                 # --model
    effort = "high"                  # --effort
    base_url = "http://127.0.0.1:8080"   # ANTHROPIC_BASE_URL (a gateway, any Anthropic-compatible API)
    api_key_env = "ANTHROPIC_API_KEY"    # passed to it as ANTHROPIC_API_KEY

The prompt goes in on stdin; `--output-format stream-json --verbose` prints one JSON event a line
(system init, assistant and user messages, and a final `result` with the summary, usage and
cost), kept as `claude-N.jsonl` in the attempt folder. It gets a HOME of its own there, where it
writes its settings and sessions, so attempts never share state with each other or the person.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..config import ClaudeAgentConfig
from ..sandbox import Bind, program_root
from . import AgentJob, AgentOutcome, copy_session_files, session_files
from ._cli import CliAgent, Program, api_key, log_tail, person_home, short, shown

PROGRAM = Program("claude", "claude", "npm install -g @anthropic-ai/claude-code")


# What of the person's ~/.claude.json an attempt gets (the file also holds every project's
# history and settings): the account its login belongs to, and with "mcp" their MCP servers.
_ACCOUNT_KEYS = ("oauthAccount", "userID", "primaryApiKey", "customApiKeyResponses",
                 "hasCompletedOnboarding", "lastOnboardingVersion")


class ClaudeAgent(CliAgent):
    program = PROGRAM
    label = "Claude Code"
    transcript_prefix = "claude"
    login_hosts = ("api.anthropic.com", "console.anthropic.com", "platform.claude.com", "claude.ai")
    own_key_variables = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
    resumes = True   # `--resume SESSION`: its sessions are files under HOME/.claude/projects
    login_hint = ("Claude Code is not logged in: run `claude` once and `/login`, or set ANTHROPIC_API_KEY "
                  "(or a base_url in [agents.NAME])")

    def login_files(self) -> list[Path]:
        return [person_home() / ".claude" / ".credentials.json"]

    config: ClaudeAgentConfig

    def command(self, binary: str, job: AgentJob) -> list[str]:
        config = self.config
        # Inside clawfleet's sandbox the sandbox is the limit: Claude Code may run the tests.
        mode = "bypassPermissions" if job.sandbox is not None else config.permission_mode
        args = [binary, "-p", "--output-format", "stream-json", "--verbose", "--permission-mode", mode]
        if config.allowed_tools:
            args += ["--allowedTools", ",".join(config.allowed_tools)]
        if config.model:
            args += ["--model", config.model]
        if config.effort:
            args += ["--effort", config.effort]
        if job.resume:
            args += ["--resume", job.resume]
        return args + config.args

    def adopt_session(self, earlier: Path, session: str, job: AgentJob) -> str | None:
        """Copy an earlier attempt's session into this attempt's HOME. Claude Code finds a session
        by its id under any project folder, so it resumes in this worktree too (it appends there,
        to the copy)."""
        projects = earlier / "claude-home" / ".claude" / "projects"
        files = session_files(projects, f"*/{session}.jsonl") + session_files(projects, f"*/{session}/*")
        target = job.attempt_dir / "claude-home" / ".claude" / "projects"
        if not any(f.name == f"{session}.jsonl" for f in files) or not copy_session_files(projects, target, files):
            return None
        return session

    def environment(self, job: AgentJob) -> dict[str, str]:
        home = job.attempt_dir / "claude-home"
        home.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home),
               # No update checks, telemetry or error reports from a fleet of unattended runs.
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
               "DISABLE_AUTOUPDATER": "1", **self.config.env}
        env.pop("CLAUDE_CONFIG_DIR", None)  # it would point it back at the person's settings
        env.pop("CLAUDE_SECURESTORAGE_CONFIG_DIR", None)
        if job.sandbox is not None:
            env["IS_SANDBOX"] = "1"   # bypassPermissions as root is refused unless told so
        self._write_account(home)
        key = api_key(self.name, self.config.api_key_env, self.config.base_url)
        if self.config.base_url:
            env["ANTHROPIC_BASE_URL"] = self.config.base_url
        if key:
            env["ANTHROPIC_API_KEY"] = key
        return env

    def _write_account(self, home: Path) -> None:
        """The attempt's ~/.claude.json: a copy of the person's account entries (and MCP
        servers), not the file itself, which Claude Code rewrites all the time."""
        wanted = set(self.config.inherit)
        try:
            person = json.loads((person_home() / ".claude.json").read_text())
        except (OSError, ValueError):
            person = {}
        account = {key: person[key] for key in _ACCOUNT_KEYS if "login" in wanted and key in person}
        if "mcp" in wanted and isinstance(person.get("mcpServers"), dict):
            account["mcpServers"] = person["mcpServers"]
        account.setdefault("hasCompletedOnboarding", True)
        target = home / ".claude.json"
        if not target.exists():
            target.write_text(json.dumps(account, indent=1))
            target.chmod(0o600)

    def inherited(self, job: AgentJob, env: dict[str, str]) -> tuple[list[Bind], list[str]]:
        """The person's login (the one credentials file, bound read-write: Claude Code refreshes
        its OAuth token in place and the person's other sessions read the new one), CLAUDE.md,
        settings, skills; their MCP servers' programs read-only."""
        wanted, person, home = set(self.config.inherit), person_home() / ".claude", Path(env["HOME"]) / ".claude"
        binds: list[Bind] = []
        if "login" in wanted:
            binds += shown(person / ".credentials.json", home / ".credentials.json", writable=True)
        if "instructions" in wanted:
            binds += shown(person / "CLAUDE.md", home / "CLAUDE.md")
            binds += shown(person / "settings.json", home / "settings.json")
        if "skills" in wanted:
            binds += shown(person / "skills", home / "skills")
        read_only: list[str] = []
        if "mcp" in wanted:
            read_only = mcp_programs(Path(env["HOME"]) / ".claude.json", "mcpServers")
        return binds, read_only

    def events(self, job: AgentJob) -> "_Events":
        return _Events(job)

class _Events:
    """Reads Claude Code's stream-json events: a readable line in the agent log for each, live
    token counts, and the final `result`."""

    def __init__(self, job: AgentJob) -> None:
        self.job = job
        self.result: dict[str, Any] | None = None
        self.session: str | None = None   # from its init event: a session that really started
        self.input_tokens = self.output_tokens = 0
        self._seen: set[str] = set()

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        lines: list[str] = []
        if kind == "system" and event.get("subtype") == "init":
            if isinstance(event.get("session_id"), str):
                self.session = event["session_id"]
                self.job.on_session(self.session)
            lines.append(f"[claude {event.get('claude_code_version', '?')}, model {event.get('model')}, "
                         f"session {event.get('session_id')}]")
        elif kind == "assistant":
            message = event.get("message") or {}
            self._count(message)
            for block in message.get("content") or []:
                if block.get("type") == "text" and block.get("text", "").strip():
                    lines.append(f"claude: {short(block['text'], 2000)}")
                elif block.get("type") == "tool_use":
                    lines.append(f"-> {block.get('name')} {short(block.get('input'))}")
        elif kind == "user":
            for block in (event.get("message") or {}).get("content") or []:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    mark = "error" if block.get("is_error") else "ok"
                    lines.append(f"<- [{mark}] {short(_result_text(block.get('content')))}")
        elif kind == "result":
            self.result = event
            usage = event.get("usage") or {}
            self.input_tokens, self.output_tokens = _input_tokens(usage), int(usage.get("output_tokens") or 0)
            self.job.on_usage(self.input_tokens, self.output_tokens)
            cost = event.get("total_cost_usd")
            status = "error" if event.get("is_error") else event.get("subtype")
            lines.append(f"[result: {status}, {event.get('num_turns')} turns, "
                         f"{self.input_tokens} in / {self.output_tokens} out tokens"
                         + (f", ${cost:.4f} by its own price table" if isinstance(cost, (int, float)) else "")
                         + "]")
        if lines:
            with open(self.job.log, "a") as log:
                log.write("\n".join(lines) + "\n")

    def _count(self, message: dict[str, Any]) -> None:
        # One API reply can arrive as several assistant events (one per content block).
        ident = message.get("id")
        if ident in self._seen or not isinstance(message.get("usage"), dict):
            return
        self._seen.add(ident)
        self.input_tokens += _input_tokens(message["usage"])
        self.output_tokens += int(message["usage"].get("output_tokens") or 0)
        self.job.on_usage(self.input_tokens, self.output_tokens)

    def outcome(self, exit_code: int, transcript: str) -> AgentOutcome:
        outcome = AgentOutcome(exit_code=exit_code, input_tokens=self.input_tokens,
                               output_tokens=self.output_tokens, session_id=self.session)
        result = self.result or {}
        text = str(result.get("result") or "").strip()
        outcome.summary = text
        if not result:
            outcome.error = (f"claude exited with status {exit_code} without a result "
                             f"(transcript: {transcript}): {log_tail(self.job.log, 3)}")
        elif result.get("is_error") or result.get("subtype") != "success":
            # An error result can still say subtype "success" ("Not logged in" does): the
            # reason is its terminal_reason, or a subtype other than success.
            subtype = result.get("subtype")
            why = result.get("terminal_reason") or (subtype if subtype != "success" else None)
            outcome.error = f"claude failed{f' ({why})' if why else ''}: {text or 'no message'}"
            if result.get("errors"):
                outcome.error += f" ({short(result['errors'])})"
            outcome.summary = ""   # the text is the error, not a summary of work done
        elif exit_code != 0:
            outcome.error = f"claude exited with status {exit_code} (see `claw log`)"
        return outcome


def _input_tokens(usage: dict[str, Any]) -> int:
    # Cached input is input too: the prompt was read, at whatever price.
    return sum(int(usage.get(key) or 0) for key in
               ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))


def _result_text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def mcp_programs(settings: Path, key: str) -> list[str]:
    """The folders the stdio MCP servers in a JSON settings file run from (their program, and
    files named in their arguments), to show read-only in the sandbox."""
    try:
        servers = json.loads(settings.read_text()).get(key) or {}
    except (OSError, ValueError, AttributeError):
        return []
    return programs_of(servers)


def programs_of(servers: Any) -> list[str]:
    import shutil
    folders: list[str] = []
    for server in servers.values() if isinstance(servers, dict) else []:
        if not isinstance(server, dict) or not isinstance(server.get("command"), str):
            continue
        program = shutil.which(server["command"]) or server["command"]
        for path in [program, *(a for a in server.get("args") or [] if isinstance(a, str))]:
            if os.path.isabs(path) and os.path.exists(path):
                folders.append(program_root(path) if path == program else str(Path(path).parent))
    return folders
