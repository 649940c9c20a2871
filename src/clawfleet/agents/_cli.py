"""What the agent CLI kinds share: finding the program, asking its version, running it in the
worktree while its JSON event stream (one object a line) is read as it is written.

Each kind's file says how its CLI is started and how its events read; this module knows nothing
about any one CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..containment import Reach, contain
from ..errors import ClawError
from ..procs import Finished
from ..sandbox import Bind, program_root
from . import AgentJob, AgentOutcome, stall_reason

BIN_DIR_ENV = "CLAW_AGENT_BIN_DIR"


@dataclass(frozen=True)
class Program:
    """An agent CLI as installed on this machine."""
    kind: str           # the agent kind, e.g. "claude"
    binary: str         # the program's name, e.g. "claude"
    install: str        # the command that installs it

    def find(self, configured: str | None = None, env: Mapping[str, str] = os.environ) -> str | None:
        """Path of the program: `binary` from config, else $CLAW_AGENT_BIN_DIR, else PATH."""
        if configured:
            if os.sep in configured:
                return configured if os.access(configured, os.X_OK) else None
            return shutil.which(configured, path=env.get("PATH"))
        if env.get(BIN_DIR_ENV):
            found = shutil.which(self.binary, path=env[BIN_DIR_ENV])
            if found:
                return found
        return shutil.which(self.binary, path=env.get("PATH"))

    def require(self, agent_name: str, configured: str | None = None,
                env: Mapping[str, str] = os.environ) -> str:
        found = self.find(configured, env)
        if found is None:
            wanted = configured or self.binary
            raise ClawError(f"agent '{agent_name}' (kind {self.kind}): program '{wanted}' not found "
                            f"on PATH" + (f" or in ${BIN_DIR_ENV}" if not configured else ""),
                            hint=f"install it with `{self.install}`, or set `binary` in "
                                 f"[agents.{agent_name}] of .claw/config.toml")
        return found

    def version(self, path: str) -> str | None:
        """The program's own `--version` line, or None when it does not answer."""
        try:
            done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        lines = (done.stdout or done.stderr).strip().splitlines()
        return lines[0].strip() if done.returncode == 0 and lines else None


def api_key(agent_name: str, api_key_env: str | None, base_url: str | None,
            env: Mapping[str, str] = os.environ) -> str | None:
    """The key for `base_url`, read from the variable `api_key_env` names.

    A local endpoint (a gateway, a scripted model) needs none, but the CLIs insist on having one,
    so a placeholder stands in; without base_url the CLI keeps its own key or login.
    """
    if api_key_env:
        value = env.get(api_key_env)
        if not value:
            raise ClawError(f"agent '{agent_name}': ${api_key_env} (its api_key_env) is not set",
                            hint=f"export {api_key_env}=..., or change api_key_env in .claw/config.toml")
        return value
    return "claw-no-key" if base_url else None


class _Tail(threading.Thread):
    """Follow a growing file of JSON lines and hand each object to `on_event`."""

    def __init__(self, path: Path, on_event: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(name=f"tail {path.name}", daemon=True)
        self.path = path
        self.on_event = on_event
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with open(self.path, "rb") as stream:
                pending = b""
                while True:
                    chunk = stream.read()
                    if chunk:
                        pending += chunk
                        *lines, pending = pending.split(b"\n")
                        for line in lines:
                            self._handle(line)
                    elif self.finished.is_set():
                        break
                    else:
                        self.finished.wait(0.1)
                self._handle(pending)
        except BaseException as error:  # re-raised in the runner's thread by `follow`
            self.error = error

    def _handle(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return  # a partial or non-JSON line (a CLI's banner): not an event
        if isinstance(event, dict):
            self.on_event(event)


def run_with_events(job: AgentJob, args: list[str], env: Mapping[str, str], transcript: Path,
                    on_event: Callable[[dict[str, Any]], None], stdin_text: str | None) -> Finished:
    """Run the CLI in the worktree: stdout (its events) to `transcript`, stderr to the agent log.

    `on_event` sees every event as it arrives, for live progress, and all of them by the time
    this returns.
    """
    transcript.write_bytes(b"")
    tail = _Tail(transcript, on_event)
    tail.start()
    try:
        finished, _ = job.children.run(args, cwd=job.workspace, env=env, log=transcript, errors=job.log,
                                       stdin_text=stdin_text, timeout=job.deadline - time.time(),
                                       stall=job.stall_watch(transcript, job.log))
    finally:
        tail.finished.set()
        tail.join()
    if tail.error is not None:
        raise tail.error
    return finished


def log_tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log, to quote in an error."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def settled(outcome: AgentOutcome, timed_out: bool = False, job: AgentJob | None = None,
            finished: Finished | None = None) -> AgentOutcome:
    """The outcome as the runner takes it: a CLI stopped at its deadline ran out of time, and
    one the stall guard stopped stalled, whatever it said; and an error never says exit 0 (a
    CLI that reports a failure in its events often exits 0 all the same)."""
    if finished is not None and finished.stalled and job is not None:
        # Its log has the readable line for the event it last printed (a JSON line otherwise).
        last = log_tail(job.log, 1) if finished.last_output else ""
        last = finished.last_output if not last or last.startswith("# ") else last
        outcome.error, outcome.stalled = stall_reason(job.stall_timeout, last), True
    elif timed_out:
        outcome.error, outcome.timed_out = "the agent ran out of time", True
    if outcome.error and not outcome.exit_code:
        outcome.exit_code = 1
    return outcome


def short(text: Any, limit: int = 300) -> str:
    text = text if isinstance(text, str) else json.dumps(text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class CliAgent:
    """The run of an agent CLI, the same for every kind: find the program, prepare its
    environment, start it contained (sandbox.py) with the prompt on standard input, read its
    events as they come.

    A kind sets `program`, `label` and `transcript_prefix`, and says how its CLI starts
    (`command`), what it needs around it (`environment`), which of the person's files it is
    shown (`inherited`: their login, instructions, skills, MCP servers), where its own login
    takes it when no base_url is set (`login_hosts`) and how its events read (`events`).
    """

    program: Program
    label: str
    transcript_prefix: str
    scratch: tuple[str, ...] = ()
    login_hosts: tuple[str, ...] = ()     # host[:port] its own login and API need, without base_url
    own_key_variables: tuple[str, ...] = ()  # the person's key variables it uses without base_url
    login_hint: str = ""                  # how the person logs in, for when no login is found

    def login_files(self) -> list[Path]:
        """The person's files that hold this CLI's login (it reads them to consider itself logged in)."""
        return []

    def login(self, gateway: bool = False) -> tuple[bool, str]:
        """(ready, how): where this agent's access to its model comes from, or, when nothing
        gives it any, the reason and what to do. Found without starting the CLI."""
        config = self.config
        if getattr(config, "api_key_env", None) and not os.environ.get(config.api_key_env) and not gateway:
            return False, (f"${config.api_key_env} (its api_key_env) is not set: export {config.api_key_env}=..., "
                           "or change api_key_env in .claw/config.toml")
        if gateway:
            return True, "the gateway"
        if getattr(config, "base_url", None):
            return True, f"base_url {config.base_url}"
        for variable in self.own_key_variables:
            if os.environ.get(variable):
                return True, f"${variable}"
        if "login" in getattr(config, "inherit", ()):
            for path in self.login_files():
                if path.is_file():
                    return True, f"your login ({path})"
        return False, self.login_hint or f"{self.label} has no login or key here"

    def __init__(self, name: str, config: Any) -> None:
        self.name = name
        self.config = config

    def command(self, binary: str, job: AgentJob) -> list[str]:
        raise NotImplementedError

    def environment(self, job: AgentJob) -> dict[str, str]:
        raise NotImplementedError

    def events(self, job: AgentJob) -> Any:
        raise NotImplementedError

    def inherited(self, job: AgentJob, env: dict[str, str]) -> tuple[list[Bind], list[str]]:
        """(the person's files shown inside, folders their MCP servers' programs need)."""
        return [], []

    def reach(self, job: AgentJob, binary: str, env: dict[str, str]) -> Reach:
        """What the CLI may touch: its worktree and private folders, its program, what it
        inherits of the person's, its model's address. A credential clawfleet set on purpose
        (the attempt's gateway key, the key api_key_env names) is kept; one it merely inherited
        is not, unless the CLI goes out with its own login or key (no base_url)."""
        binds, read_only = self.inherited(job, env)
        base_url = getattr(self.config, "base_url", None)
        keep = [name for name, value in env.items() if os.environ.get(name) != value]
        if not base_url:
            keep += self.own_key_variables
        return Reach(worktree=job.workspace, project_root=job.project_root, common_dir=job.common_dir,
                     git_dir=job.git_dir, private=private_dirs(job, env),
                     binds=[*binds, Bind(str(job.prompt_file), str(job.prompt_file))],   # aider reads it
                     read_only=[program_root(binary), *read_only],
                     urls=[base_url] if base_url else [],
                     hosts=[] if base_url else list(self.login_hosts), keep=keep, log=job.log)

    def prepare(self, job: AgentJob) -> tuple[list[str], dict[str, str], str] | AgentOutcome:
        """The command line, environment and program, or the failed outcome when it cannot start."""
        try:
            binary = self.program.require(self.name, self.config.binary)
            env = self.environment(job)
        except ClawError as error:
            return AgentOutcome(error=str(error), exit_code=127)
        ready, how = self.login()
        if not ready:   # in seconds, with the fix: not a CLI retrying until attempt_timeout
            return AgentOutcome(error=f"agent '{self.name}': {how}", exit_code=1)
        command = self.command(binary, job)
        with open(job.log, "a") as log:
            log.write(f"# {self.label}, agent '{self.name}': {' '.join(command[1:])}"
                      + ("" if job.sandbox is not None else " [UNSANDBOXED]") + "\n")
        return command, env, binary

    def run(self, job: AgentJob) -> AgentOutcome:
        prepared = self.prepare(job)
        if isinstance(prepared, AgentOutcome):
            return prepared
        command, env, binary = prepared
        events = self.events(job)
        transcript = job.attempt_dir / f"{self.transcript_prefix}-{job.round}.jsonl"
        with contain(job.sandbox, command, env, self.reach(job, binary, env)) as (command, env):
            finished = run_with_events(job, command, env, transcript, events.on_event,
                                       stdin_text=job.prompt)
        return settled(events.outcome(finished.exit_code, transcript.name), finished.timed_out, job, finished)


def private_dirs(job: AgentJob, env: dict[str, str]) -> list[Path]:
    """The attempt's own folders an agent writes: its outbox, and the HOME, CODEX_HOME or TMPDIR
    its kind keeps under the attempt folder. The rest of the attempt folder (its spec, status,
    logs) is not in its reach."""
    folders = [job.outbox]
    for name in ("HOME", "CODEX_HOME", "TMPDIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        value = env.get(name)
        if value and Path(value).resolve().is_relative_to(job.attempt_dir.resolve()):
            folders.append(Path(value))
    return folders


def person_home() -> Path:
    """The person's HOME (the runner's own; an agent's HOME is the attempt's)."""
    return Path(os.environ.get("HOME") or Path.home())


def shown(source: Path, target: Path, writable: bool = False) -> list[Bind]:
    """A bind of the person's `source` at `target` when it exists."""
    return [Bind(str(source), str(target), writable)] if source.exists() else []
