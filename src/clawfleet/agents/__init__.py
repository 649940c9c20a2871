"""Agents: adapters that start a coding agent in a workspace and know how it ends.

One small protocol; one file per kind. The runner calls `run` once per round (the first try and
each fix round) and commits whatever the agent left in the worktree.

Sessions: a kind that can continue its own conversation (`resumes = True`) reports the session
of each run in `AgentOutcome.session_id` (and, as soon as it knows it, to `job.on_session`). A
later round gets it back as `job.resume`, with only the next turn as its prompt (the failing
checks, the reviewer's feedback); `adopt_session` copies a session from an earlier attempt's
folder into this one's (each attempt keeps its own HOME: copied, never shared).
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..procs import ChildGroups, StallWatch

# The agent kinds in modules of their own (agents/<kind>.py): the class each one's agent is.
CLI_KINDS = {"claude": "ClaudeAgent", "codex": "CodexAgent", "gemini": "GeminiAgent",
             "opencode": "OpencodeAgent", "aider": "AiderAgent", "acp": "AcpAgent"}


@dataclass
class AgentJob:
    task_id: int
    attempt_id: int
    agent_name: str
    workspace: Path
    attempt_dir: Path
    prompt: str
    prompt_file: Path
    log: Path
    deadline: float                     # time.time() after which the agent must be stopped
    children: ChildGroups
    round: int = 0                      # 0 = first try, 1.. = fix rounds
    on_usage: Callable[[int, int], None] = field(default=lambda i, o: None)
    project_root: Path | None = None    # the person's checkout the workspace belongs to
    sandbox: Any = None                 # a sandbox.SandboxPolicy every agent process runs in; None: unsandboxed
    common_dir: Path | None = None      # the repository's git dir, known from the person's checkout
    git_dir: Path | None = None         # the agent's own git dir inside the sandbox (git.refresh_agent_git_dir)
    stall_timeout: float = 0.0          # [fleet] stall_timeout; 0: no stall guard
    resume: str | None = None           # the agent's own session to continue; None: a new one
    on_session: Callable[[str], None] = field(default=lambda session: None)

    @property
    def outbox(self) -> Path:
        """The one folder of the attempt's an agent writes (notes, its summary); clawfleet
        validates what it finds there."""
        path = self.attempt_dir / "outbox"
        path.mkdir(exist_ok=True)
        return path

    def stall_watch(self, *follow: Path) -> StallWatch | None:
        """The stall guard for the agent's process, reading the files it writes (its log)."""
        if not self.stall_timeout:
            return None
        return StallWatch(self.stall_timeout, follow or (self.log,), self.workspace)


@dataclass
class AgentOutcome:
    summary: str = ""
    error: str | None = None            # why the agent failed; None when it ended normally
    timed_out: bool = False
    stalled: bool = False               # ended by the stall guard (`error` says what it last printed)
    exit_code: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    session_id: str | None = None       # the agent's own session, where the kind has one to resume


def stall_reason(timeout: float, last_output: str) -> str:
    """Why an agent ended stalled, quoting the last thing it printed."""
    said = " ".join(last_output.split())
    said = said if len(said) <= 300 else said[:297] + "..."
    return (f"stalled: no new output, event, file change or CPU use for {timeout:g} s "
            f"([fleet] stall_timeout); " + (f"it last printed: {said}" if said else "it printed nothing"))


SESSION_COPY_LIMIT = 256 << 20     # bytes of an earlier attempt's session copied at most


def copy_session_files(source_root: Path, target_root: Path, paths: Iterable[Path]) -> int:
    """Copy files of an earlier attempt's session (`paths`, under `source_root`) to the same
    places under `target_root`; return how many were copied.

    The source was written by an agent: only regular files are copied, none through a symbolic
    link (a session file linked to the person's secrets must not carry them into the next
    attempt), none outside `source_root`, and not more than SESSION_COPY_LIMIT bytes in all.
    """
    root, copied, total = source_root.resolve(), 0, 0
    for path in paths:
        try:
            relative = path.relative_to(source_root)
        except ValueError:
            continue
        parts, inside = source_root, True
        for part in relative.parts:   # no link anywhere on the way down
            parts = parts / part
            if parts.is_symlink():
                inside = False
                break
        if not inside or not path.resolve().is_relative_to(root):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as source:
            info = os.fstat(source.fileno())
            if not stat.S_ISREG(info.st_mode) or total + info.st_size > SESSION_COPY_LIMIT:
                continue
            total += info.st_size
            target = target_root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            copied += 1
    return copied


def session_files(root: Path, pattern: str) -> list[Path]:
    """Files under `root` whose path from it matches `pattern` (fnmatch: `*` crosses folders),
    without following links into folders."""
    found = []
    for folder, _dirs, files in os.walk(root):   # os.walk does not follow links by default
        for name in files:
            path = Path(folder) / name
            if fnmatch.fnmatchcase(str(path.relative_to(root)), pattern):
                found.append(path)
    return found


class Agent(Protocol):
    # Files it leaves in the worktree for itself (caches, histories): never committed.
    scratch: tuple[str, ...]
    # Optional: `resumes = True` and `adopt_session(earlier_attempt_dir, session, job)` ->
    # the session to resume in this attempt, or None when it cannot be carried over.

    def run(self, job: AgentJob) -> AgentOutcome: ...


def make_agent(name: str, config: Mapping[str, Any]) -> Agent:
    """The agent for an already validated config (`Config.agent(name).model_dump()`).

    Plain data in, so the runner starts without importing pydantic for agents that need none.
    """
    if config.get("kind") == "command":
        from .command import CommandAgent
        return CommandAgent(name, command=list(config["command"]), env=dict(config.get("env") or {}))
    from ..config import parse_agent_config

    parsed = parse_agent_config(dict(config))
    if parsed.kind in CLI_KINDS:
        module = importlib.import_module(f".{parsed.kind}", __package__)
        return getattr(module, CLI_KINDS[parsed.kind])(name, parsed)
    from .builtin import BuiltinAgent
    return BuiltinAgent(name, parsed)


@dataclass
class KindInfo:
    """One agent kind as `claw agents` shows it."""
    kind: str
    description: str
    installed: bool
    version: str | None = None
    path: str | None = None
    install: str | None = None


def agent_kinds() -> list[KindInfo]:
    """Every agent kind, and whether its program is installed here (each CLI asked its version)."""
    from .. import __version__
    from . import aider, claude, codex, gemini, opencode
    kinds = [KindInfo("builtin", "clawfleet's own loop on any OpenAI-compatible or Anthropic model",
                      True, __version__),
             KindInfo("command", "any program, run with the prompt in a file", True)]
    from .acp import sdk_version
    sdk = sdk_version()
    kinds.append(KindInfo("acp", "any Agent Client Protocol agent: command = [...] "
                                 "(gemini --acp, claude-agent-acp, codex-acp)",
                          sdk is not None, f"ACP SDK {sdk}" if sdk else None,
                          install=None if sdk else "pip install agent-client-protocol"))
    for module, description in ((claude, "Claude Code (claude -p, stream-json)"),
                                (codex, "OpenAI Codex CLI (codex exec --json)"),
                                (gemini, "Google Gemini CLI (gemini -p, stream-json)"),
                                (opencode, "opencode (opencode run --format json)"),
                                (aider, "Aider (aider --message-file; its chat history is the transcript)")):
        program = module.PROGRAM
        path = program.find()
        kinds.append(KindInfo(program.kind, description, path is not None,
                              program.version(path) if path else None, path, program.install))
    return kinds


@dataclass
class Readiness:
    """One configured agent, as a run will use it: can it start here, and with what access."""
    name: str
    kind: str
    ready: bool
    how: str                                  # where its model access comes from, or what to do
    inherit: list[str] = field(default_factory=list)


def readiness(config: Any, name: str) -> Readiness:
    """Whether the agent `name` of this project's config can run here, found without starting
    it: its program installed, a model and a key or login for it (the gateway counts)."""
    from ..errors import ClawError
    try:
        agent_config = config.agent(name)
    except ClawError as error:
        return Readiness(name, "?", False, error.message)
    kind = agent_config.kind
    inherit = list(getattr(agent_config, "inherit", []))
    gateway = bool(config.gateway.enabled)
    try:
        if kind == "builtin":
            from ..llm.client import resolve_model_settings
            import os
            settings = resolve_model_settings(
                provider=agent_config.provider, model=agent_config.model, base_url=agent_config.base_url,
                api_key_env=None if gateway else agent_config.api_key_env, agent_name=name,
                env={**os.environ, "OPENAI_API_KEY": "gateway", "ANTHROPIC_API_KEY": "gateway"} if gateway
                else os.environ)
            return Readiness(name, kind, True, f"model {settings.model}" + (" through the gateway" if gateway else ""))
        if kind == "command":
            import os
            import shutil
            program = agent_config.command[0]
            found = shutil.which(program) or (program if os.path.isfile(program) else None)
            return Readiness(name, kind, found is not None,
                             f"program {found}" if found else f"program '{program}' not found on PATH: "
                             "install it or fix `command` in .claw/config.toml")
        agent = make_agent(name, agent_config.model_dump())
        if kind == "acp":
            program = agent.launch_args(None)[0]
            ready, how = agent.login(gateway=gateway)
            return Readiness(name, kind, ready, how if not ready else f"program {program}, {how}", inherit)
        if not hasattr(agent, "login"):
            return Readiness(name, kind, True, "its own settings", inherit)
        agent.program.require(name, agent_config.binary)
        ready, how = agent.login(gateway=gateway)
        return Readiness(name, kind, ready, how, inherit)
    except ClawError as error:
        return Readiness(name, kind, False, error.message + (f" ({error.hint})" if error.hint else ""), inherit)
