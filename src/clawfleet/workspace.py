"""Workspaces: a git worktree per attempt, made ready to run, handed out from a warm pool.

A workspace is a worktree at `.claw/run/worktrees/ws-<id>` that keeps its path for life: what a
setup makes (a virtual environment, node_modules) holds absolute paths, so it is never moved.
The store records each workspace's state, its attempt and its block of ports. Its setup record
(`setup.json`: the commit and the digest of the setup inputs it was set up for, the outcome and
the log) sits in `.claw/run/workspaces/<id>/`, written by whichever process ran the setup: the
pool filler, or the attempt's runner when the workspace was made cold or its inputs changed.

    fill      making → checkout, includes, setup → ready (or broken: setup failed, kept for doctor)
    acquire   ready → in_use: onto a new branch at the attempt's base; setup is owed again only
              when the setup inputs at the base differ from those it was set up for.
              No ready one: made cold, in_use at once, its setup owed to the runner.
    release   in_use → ready (reset to the target, ignored files such as installs kept), or
              removed (teardown commands first) when the pool is full
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import stat
import string
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import git, sandbox
from .config import WorkspaceConfig
from .containment import contain, workspace_reach
from .errors import GitError
from .footprint import glob_regex
from .includes import include_paths
from .models import AttemptState, TaskState
from .procs import ChildGroups, pid_alive
from .project import Project
from .sandbox import SandboxPolicy
from .store import Store

PREFIX = "ws-"
QUARANTINED = "quarantined"   # an agent tampered with what the worktree tells git: never reused
STALE_PREFIXES = ("staging-", "pool-")  # names of the pool before workspaces had records
LEGACY_ATTEMPT_PREFIX = "attempt-"        # an attempt's worktree before workspaces had records
TAIL_LINES = 30

# Package managers' cache variables, pointed at one shared folder: agents that run with their
# own HOME (claude, gemini) would otherwise start every attempt with empty caches.
CACHE_VARIABLES = {"PIP_CACHE_DIR": "pip", "UV_CACHE_DIR": "uv", "npm_config_cache": "npm",
                   "YARN_CACHE_FOLDER": "yarn", "GOMODCACHE": "go-mod", "GOCACHE": "go-build"}


RESOLVE = object()   # WorkspacePool(sandbox=RESOLVE): the policy `[sandbox]` gives

# (args, env, writable=...) -> a context giving the sandboxed command line and environment
Contained = Callable[..., AbstractContextManager[tuple[list[str], dict[str, str]]]]


@dataclass
class SetupPlan:
    """The setup a workspace owes before its agent may start (the runner gets it in spec.json)."""
    workspace_id: str
    commands: list[str]
    timeout: float
    record: str          # the workspace's setup.json
    commit: str
    digest: str
    venv: dict[str, Any] | None = None   # {path, python, args, commands}: a shared venv to make first
    network: bool = True                 # [workspace] setup_network: its sandbox's network


@dataclass
class Workspace:
    id: str
    path: Path
    state: str
    port_base: int
    ports: int
    attempt_id: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    setup: SetupPlan | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Workspace:
        return cls(id=row["id"], path=Path(row["path"]), state=row["state"],
                   port_base=row["port_base"], ports=row["ports"], attempt_id=row["attempt_id"])


@dataclass
class SetupResult:
    ok: bool
    commit: str
    digest: str
    error: str | None = None
    log: str = ""
    duration: float = 0.0
    venv: str | None = None
    at: float = 0.0


# -- what a workspace needs ------------------------------------------------------------

def meta_dir(project: Project, workspace_id: str) -> Path:
    return project.run_dir / "workspaces" / workspace_id


def setup_inputs(config: WorkspaceConfig, repo: Path, commit: str) -> list[tuple[str, str]]:
    """(path, blob) of the tracked files at `commit` that setup depends on."""
    if not config.setup_inputs:
        return []
    key = (str(repo), commit, tuple(config.setup_inputs))
    if key not in _inputs_cache:  # a commit's files never change: worth remembering
        pattern = _inputs_pattern(tuple(config.setup_inputs))
        found = sorted((path, blob) for path, blob in git.tree_blobs(repo, commit).items()
                       if pattern.fullmatch(path))
        if len(_inputs_cache) > 256:
            _inputs_cache.clear()
        _inputs_cache[key] = found
    return _inputs_cache[key]


_inputs_cache: dict[tuple, list[tuple[str, str]]] = {}


@functools.lru_cache(maxsize=16)
def _inputs_pattern(globs: tuple[str, ...]) -> re.Pattern[str]:
    """One regular expression for all the globs (matching a thousand paths one glob at a time is slow)."""
    parts = []
    for glob in globs:
        glob = glob.strip().removeprefix("./")
        parts.append(glob_regex(glob) if any(c in glob for c in "*?[")
                     else re.escape(glob.rstrip("/")) + "(?:/.*)?")
    return re.compile("|".join(f"(?:{p})" for p in parts) or "(?!)")


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def needs_setup(config: WorkspaceConfig) -> bool:
    return bool(config.setup or config.shared_venv)


def setup_digest(config: WorkspaceConfig, inputs: list[tuple[str, str]]) -> str:
    """Equal digests: a workspace set up for one is set up for the other ('' = nothing to set up)."""
    if not needs_setup(config):
        return ""
    return _digest(config.setup, config.shared_venv and venv_settings(config), inputs)


def venv_settings(config: WorkspaceConfig) -> list[Any]:
    return [config.venv_python, config.venv_args, config.venv_setup]


def venv_path(project: Project, config: WorkspaceConfig, inputs: list[tuple[str, str]]) -> Path:
    """One shared virtual environment per state of the lock files (and of how it is made)."""
    return project.run_dir / "venvs" / _digest(venv_settings(config), inputs)


def workspace_env(project: Project, config: WorkspaceConfig, workspace: Workspace,
                  venv: Path | None) -> dict[str, str]:
    """The variables setup, agent and checks see in this workspace."""
    env = {"CLAW_WORKSPACE": str(workspace.path), "CLAW_PORT": str(workspace.port_base),
           "CLAW_PORT_END": str(workspace.port_base + workspace.ports - 1)}
    for offset, name in enumerate(config.ports, 1):
        env[name] = str(workspace.port_base + offset)
    if config.share_caches:
        cache = project.run_dir / "cache"
        env.update({name: str(cache / folder) for name, folder in CACHE_VARIABLES.items()
                    if name not in os.environ})
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    known = {**os.environ, **env}
    for name, value in config.env.items():
        env[name] = string.Template(value).safe_substitute(known)
    return env


def port_block_free(base: int, count: int) -> bool:
    """Nothing on this machine listens on 127.0.0.1 in [base, base + count)."""
    for port in range(base, base + count):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


# -- included files -----------------------------------------------------------------------

def sync_includes(project: Project, config: WorkspaceConfig, worktree: Path) -> list[str]:
    """Copy (or hard-link) the person's untracked files into the workspace; keep them out of
    clawfleet's commits. Paths git tracks are skipped: the checkout already has them."""
    wanted = include_paths(project, config)
    if not wanted:
        git.keep_out_of_commits(worktree, [], repo=project.root)
        return []
    tracked = git.tracked_among(worktree, [path for path, _ in wanted], repo=project.root)
    placed = []
    for path, link in wanted:
        if path in tracked:
            continue
        _place(project.root / path, _inside(worktree, path), link)
        placed.append(path)
    git.keep_out_of_commits(worktree, placed, repo=project.root)
    return placed


def _inside(worktree: Path, relative: str, make: bool = True) -> Path:
    """`worktree / relative` with every folder on the way a real one: a link an agent left there
    (`config -> /home/you`) is removed, never written or deleted through. With `make=False`
    (deleting) nothing is changed, and FileNotFoundError says a link is in the way."""
    here = worktree
    for part in Path(relative).parts[:-1]:
        here = here / part
        if here.is_symlink() or (here.exists() and not here.is_dir()):
            if not make:
                raise FileNotFoundError(here)
            here.unlink()
        if make:
            here.mkdir(exist_ok=True)
    return worktree / relative


def _drop_includes(worktree: Path, repo: Path | None = None) -> None:
    """Delete the copies sync_includes placed (never the person's files: these are copies or links)."""
    for path in git.kept_out_of_commits(worktree, repo):
        try:
            target = _inside(worktree, path, make=False)
        except FileNotFoundError:
            continue  # behind a link: nothing of ours is there
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        elif target.is_symlink() or target.exists():
            target.unlink()


def _place(source: Path, target: Path, link: bool) -> None:
    if source.is_dir() and not source.is_symlink():
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()
        target.mkdir(exist_ok=True)
        for child in source.iterdir():
            _place(child, target / child.name, link)
        return
    if target.is_symlink() or target.exists():
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif link and not target.is_symlink() and _same_file(source, target):
            return
        else:
            target.unlink()
    if source.is_symlink():
        target.symlink_to(os.readlink(source))
        return
    if link:
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # another file system: copy instead
    shutil.copy2(source, target)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# -- setup --------------------------------------------------------------------------------

def read_setup(record: Path) -> SetupResult | None:
    try:
        return SetupResult(**json.loads(record.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def run_setup(plan: SetupPlan, worktree: Path, env: dict[str, str], children: ChildGroups,
              log: Path, deadline: float | None = None, contained: Contained | None = None) -> SetupResult:
    """Make the shared venv when one is planned, then run the setup commands in order; write
    the record (setup.json) either way. Stops at the first command that fails.

    `contained(args, env, writable=...)` runs each command in the workspace's sandbox (a
    recycled workspace holds files an agent left: setup must not run them as the person)."""
    started = time.monotonic()
    deadline = min(deadline or float("inf"), time.time() + plan.timeout)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    full_env = {**os.environ, **env}
    error = None
    if plan.venv:
        error = _ensure_venv(plan.venv, worktree, full_env, children, log, deadline, contained)
    for command in ([] if error else plan.commands):
        error = _run_logged(command, worktree, full_env, children, log, deadline, contained)
        if error:
            break
    result = SetupResult(ok=error is None, commit=plan.commit, digest=plan.digest, error=error,
                         log=str(log), duration=round(time.monotonic() - started, 3),
                         venv=plan.venv["path"] if plan.venv else None, at=time.time())
    record = Path(plan.record)
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(json.dumps(asdict(result), indent=1))
    tmp.replace(record)
    return result


def _run_logged(command: str, cwd: Path, env: dict[str, str], children: ChildGroups, log: Path,
                deadline: float, contained: Contained | None = None,
                writable: tuple[Path, ...] = ()) -> str | None:
    """Run one command with its output appended to `log`; the reason it failed, or None."""
    with open(log, "a") as handle:
        handle.write(f"$ {command}\n")
    remaining = deadline - time.time()
    if remaining <= 0:
        return f"`{command}` not started: the setup ran out of time"
    args = ["bash", "-c", command]
    with (contained(args, env, writable=writable) if contained else nullcontext((args, env))) as (args, env):
        finished, _ = children.run(args, cwd=cwd, env=env, timeout=remaining, log=log)
    with open(log, "a") as handle:
        handle.write(f"[exit {finished.exit_code}{', timed out' if finished.timed_out else ''}]\n")
    if finished.timed_out:
        return f"`{command}` timed out (setup_timeout)"
    if finished.exit_code != 0:
        said = [line for line in _tail(log, 12).splitlines()[:-1] if line.strip()]
        last = said[-1] if said and said[-1] != f"$ {command}" else ""
        return f"`{command}` exited {finished.exit_code}" + (f": {last[:300]}" if last else "")
    return None


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:]) + "\n"


def _ensure_venv(venv: dict[str, Any], worktree: Path, env: dict[str, str], children: ChildGroups,
                 log: Path, deadline: float, contained: Contained | None = None) -> str | None:
    """Make the shared venv once (other workspaces wait on its lock), then make it read-only."""
    path = Path(venv["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / ".claw-ready").exists():
            with open(log, "a") as handle:
                handle.write(f"# shared venv {path} is ready\n")
            return None
        if path.exists():  # left half made by a crash
            _make_writable(path)
            shutil.rmtree(path)
        command = shlex.join([venv["python"], "-m", "venv", *venv["args"], str(path)])
        # Writable only while it is made: setup commands and checks see it read-only.
        error = _run_logged(command, worktree, env, children, log, deadline, contained, (path,))
        for step in ([] if error else venv["commands"]):
            error = _run_logged(step, worktree, env, children, log, deadline, contained, (path,))
            if error:
                break
        if error:
            return f"the shared venv: {error}"
        (path / ".claw-ready").write_text(str(time.time()))
        _make_read_only(path)
    return None


def _make_read_only(path: Path) -> None:
    writable = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    for root, dirs, files in os.walk(path):
        for name in files:
            target = Path(root) / name
            if not target.is_symlink():
                target.chmod(target.stat().st_mode & ~writable)
        Path(root).chmod(Path(root).stat().st_mode & ~writable)


def _make_writable(path: Path) -> None:
    for root, _dirs, _files in os.walk(path):
        Path(root).chmod(Path(root).stat().st_mode | stat.S_IWUSR)


def run_teardown(project: Project, config: WorkspaceConfig, workspace: Workspace,
                 env: dict[str, str], contained: Contained | None = None) -> str | None:
    """The teardown commands, before a workspace is removed; the reason one failed, or None."""
    if not config.teardown or not workspace.path.is_dir():
        return None
    meta = meta_dir(project, workspace.id)
    meta.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **env}
    children = ChildGroups(meta / "children")
    deadline = time.time() + config.setup_timeout
    for command in config.teardown:
        error = _run_logged(command, workspace.path, env, children, meta / "teardown.log", deadline, contained)
        if error:
            return error
    return None


# -- the pool -----------------------------------------------------------------------------

class WorkspacePool:
    """Workspaces kept warm and handed out to attempts.

    Safe to use from several threads (each gets its own store connection) and processes (a
    claim is a compare-and-set on the workspace's row).
    """

    def __init__(self, project: Project, size: int | None = None,
                 sandbox: SandboxPolicy | None | object = RESOLVE) -> None:
        self.project = project
        self._sandbox = sandbox
        self.config = project.config.workspace
        self.size = project.config.fleet.pool_size if size is None else size
        self.dir = project.worktrees_dir
        self._local = threading.local()
        self._known_full = False

    @property
    def store(self) -> Store:
        # One SQLite connection per thread: the pool is filled from a background thread.
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store(self.project.run_dir / "claw.db")
        return store

    @functools.cached_property
    def sandbox(self) -> SandboxPolicy | None:
        """The sandbox setup and teardown run in: the caller's, or `[sandbox]`'s (a run has
        warned already when it is off; `enabled = true` without bwrap is an error here too)."""
        if self._sandbox is RESOLVE:
            return sandbox.resolve(self.project.config.sandbox, warn=lambda _message: None)
        return self._sandbox

    def contained(self, workspace: Workspace, env: dict[str, str], network: bool | None) -> Contained:
        """Setup or teardown in this workspace's sandbox: what `run_setup` takes."""
        root = self.project.root
        common_dir = git.common_dir(root)

        def contained(args: list[str], full_env: dict[str, str], writable: tuple[Path, ...] = ()):
            reach = workspace_reach(workspace.path, root, common_dir, env, private=list(writable),
                                    network=network)
            return contain(self.sandbox, args, full_env, reach)
        return contained

    def ready(self) -> list[Workspace]:
        """Warm workspaces waiting for an attempt."""
        return [Workspace.from_row(row) for row in self.store.workspaces(["ready"])
                if Path(row["path"]).is_dir()]

    def _filling(self) -> int:
        return sum(1 for row in self.store.workspaces(["making"]) if pid_alive(row["maker_pid"]))

    # -- fill -----------------------------------------------------------------------------

    def fill(self, commit: str | Callable[[], str], at_most: int | None = None) -> int:
        """Make warm workspaces at `commit` until the pool is full; return how many were made.

        `commit` may be a function that names it (the target's tip), called only when a
        workspace is to be made: a full pool then costs no git call.
        While setup fails for these setup inputs the pool stops refilling (a broken workspace
        stays for `claw workspace doctor`) and attempts make their own, failing early.
        """
        if self._known_full:
            return 0  # nothing was taken since we last counted: spare the store
        self._reap_interrupted()
        made, have = 0, len(self.ready()) + self._filling()
        digest = None
        if have < self.size and callable(commit):
            commit = commit()
        while have < self.size and (at_most is None or made < at_most):
            if needs_setup(self.config):
                digest = digest or setup_digest(self.config, setup_inputs(self.config, self.project.root, commit))
                if self._failing(digest):
                    break
            self._make(commit)
            made += 1
            have += 1
        self._known_full = have >= self.size
        return made

    def _reap_interrupted(self) -> None:
        """Remove workspaces whose maker died mid-checkout or mid-setup (a killed `claw run`)."""
        for row in self.store.workspaces(["making"]):
            if not pid_alive(row["maker_pid"]):
                self._remove(Workspace.from_row(row), teardown=False)

    def _failing(self, digest: str) -> bool:
        for row in self.store.workspaces(["broken"]):
            result = read_setup(meta_dir(self.project, row["id"]) / "setup.json")
            if result and result.digest == digest:
                return True
        return False

    def _new(self, state: str, attempt_id: int | None) -> Workspace:
        workspace_id = uuid.uuid4().hex[:10]
        row = self.store.add_workspace(
            workspace_id, str(self.dir / f"{PREFIX}{workspace_id}"), state=state, attempt_id=attempt_id,
            port_range=self.config.port_range, ports=self.config.ports_per_workspace,
            port_free=port_block_free)
        return Workspace.from_row(row)

    def _make(self, commit: str) -> Workspace:
        """A warm workspace: checked out, includes placed, set up. Nobody can claim it until it
        is `ready`, so the slow checkout runs without the repository lock."""
        self.dir.mkdir(parents=True, exist_ok=True)
        workspace = self._new("making", None)
        try:
            git.add_detached_worktree(self.project.root, workspace.path, commit, lock=False)
            sync_includes(self.project, self.config, workspace.path)
            plan = self._plan(workspace, commit, force=True)
            state = "ready"
            if plan:
                meta = meta_dir(self.project, workspace.id)
                env = self._env(workspace, plan)
                result = run_setup(plan, workspace.path, env, ChildGroups(meta / "children"),
                                   meta / "setup.log", contained=self.contained(workspace, env, plan.network))
                state = "ready" if result.ok else "broken"
            self.store.move_workspace(workspace.id, state, expect=["making"])
        except BaseException:
            self._remove(workspace, teardown=False)
            raise
        workspace.state = state
        return workspace

    def _plan(self, workspace: Workspace, commit: str, force: bool = False) -> SetupPlan | None:
        """The setup this workspace owes at `commit` (None: none, or it is set up already)."""
        if not needs_setup(self.config):
            return None
        inputs = setup_inputs(self.config, self.project.root, commit)
        digest = setup_digest(self.config, inputs)
        record = meta_dir(self.project, workspace.id) / "setup.json"
        done = read_setup(record)
        if not force and done and done.ok and done.digest == digest:
            return None
        venv = None
        if self.config.shared_venv:
            venv = {"path": str(venv_path(self.project, self.config, inputs)),
                    "python": self.config.venv_python, "args": self.config.venv_args,
                    "commands": self.config.venv_setup}
        return SetupPlan(workspace_id=workspace.id, commands=list(self.config.setup),
                         timeout=self.config.setup_timeout, record=str(record), commit=commit,
                         digest=digest, venv=venv, network=self.config.setup_network)

    def _env(self, workspace: Workspace, plan: SetupPlan | None) -> dict[str, str]:
        venv = None
        if self.config.shared_venv:
            venv = Path(plan.venv["path"]) if plan and plan.venv else self._current_venv(workspace)
        return workspace_env(self.project, self.config, workspace, venv)

    def _current_venv(self, workspace: Workspace) -> Path | None:
        done = read_setup(meta_dir(self.project, workspace.id) / "setup.json")
        return Path(done.venv) if done and done.venv else None

    # -- acquire --------------------------------------------------------------------------

    def acquire(self, attempt_id: int, branch: str, base: str) -> Workspace:
        """A workspace on a new `branch` at `base` for the attempt: a warm one when there is one.

        `workspace.setup` is the setup it still owes (made cold, or setup inputs changed), which
        the attempt's runner does before its agent starts; `workspace.env` is for both.
        """
        self._known_full = False
        workspace = self._claim_warm(attempt_id, branch, base)
        if workspace is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            workspace = self._new("in_use", attempt_id)
            try:
                git.add_worktree_on_branch(self.project.root, workspace.path, branch, base)
            except BaseException:
                self._remove(workspace, teardown=False)
                raise
        sync_includes(self.project, self.config, workspace.path)
        workspace.setup = self._plan(workspace, base)
        workspace.env = self._env(workspace, workspace.setup)
        return workspace

    def replan(self, workspace: Workspace, commit: str) -> None:
        """The setup (and variables) of a workspace moved to `commit` after `acquire` (a
        send-back's new attempt, at the earlier attempt's work)."""
        workspace.setup = self._plan(workspace, commit)
        workspace.env = self._env(workspace, workspace.setup)

    def _claim_warm(self, attempt_id: int, branch: str, base: str) -> Workspace | None:
        candidates = self.ready()
        if needs_setup(self.config) and len(candidates) > 1:
            # Prefer one set up for these very inputs: no setup to run again.
            digest = setup_digest(self.config, setup_inputs(self.config, self.project.root, base))
            candidates.sort(key=lambda w: (read_setup(meta_dir(self.project, w.id) / "setup.json")
                                           or SetupResult(False, "", "")).digest != digest)
        for workspace in candidates:
            if not self.store.move_workspace(workspace.id, "in_use", expect=["ready"], attempt_id=attempt_id):
                continue  # another process took it first
            try:
                # copied anew below; one may be tracked at `base` now
                _drop_includes(workspace.path, self.project.root)
                git.start_branch(workspace.path, branch, base, repo=self.project.root)
            except git.WorktreeTampered as error:
                self.quarantine(workspace, error.message)
                continue
            except GitError:
                self._remove(workspace, teardown=False)  # broken (deleted by hand?): make another
                continue
            workspace.state, workspace.attempt_id = "in_use", attempt_id
            return workspace
        return None

    # -- release and removal ---------------------------------------------------------------

    def find(self, path: Path) -> Workspace | None:
        rows = self.store.workspaces(path=str(path))
        return Workspace.from_row(rows[0]) if rows else None

    def holds(self, worktree: Path, attempt_id: int) -> bool:
        """Whether the workspace at `worktree` is still the attempt's (a folder without a record,
        from before workspaces had them, is taken to be)."""
        workspace = self.find(worktree)
        if workspace is None:
            return worktree.exists()
        return workspace.state == "in_use" and workspace.attempt_id == attempt_id

    def release(self, worktree: Path, recycle_at: str | None = None) -> None:
        """Give a finished attempt's workspace back to the pool (clean, installs kept) or remove it."""
        workspace = self.find(worktree)
        if workspace is None:  # not one of ours (made before workspaces had records)
            if worktree.exists():
                git.remove_worktree(self.project.root, worktree)
            else:
                git.git("worktree", "prune", cwd=self.project.root, check=False)
            return
        if not worktree.exists():
            self._remove(workspace, teardown=False)
            return
        try:
            git.verify_worktree(worktree, self.project.root)
        except git.WorktreeTampered as error:
            self.quarantine(workspace, error.message)
            return
        except GitError:
            pass  # git lost it: removed below
        if recycle_at and len(self.ready()) < self.size:
            try:
                self._forget_setup_if_changed(workspace)
                git.reset_worktree(worktree, recycle_at, keep_ignored=needs_setup(self.config),
                                   repo=self.project.root)
                self.store.move_workspace(workspace.id, "ready", expect=["in_use"], released=True)
                return
            except git.WorktreeTampered as error:
                self.quarantine(workspace, error.message)
                return
            except GitError:
                pass
        self._remove(workspace)

    def quarantine(self, workspace: Workspace, reason: str) -> None:
        """Never hand this workspace out again, nor run anything in it: an agent tampered with
        what it tells git. It stays for the person to look at; `claw workspace prune` removes it."""
        ChildGroups(meta_dir(self.project, workspace.id) / "children").kill_all()
        self.store.move_workspace(workspace.id, QUARANTINED, attempt_id=workspace.attempt_id, reason=reason)

    def _forget_setup_if_changed(self, workspace: Workspace) -> None:
        """An attempt that changed a lock file (and maybe installed from it) leaves installs that
        match no commit: the next acquire sets the workspace up again."""
        if not needs_setup(self.config):
            return
        record = meta_dir(self.project, workspace.id) / "setup.json"
        done = read_setup(record)
        head = git.rev(workspace.path, "HEAD")  # checked: a tampered worktree raises
        if done and head and setup_digest(self.config, setup_inputs(self.config, self.project.root, head)) != done.digest:
            record.unlink(missing_ok=True)

    def _remove(self, workspace: Workspace, teardown: bool = True) -> None:
        ChildGroups(meta_dir(self.project, workspace.id) / "children").kill_all()  # a setup left running
        if teardown and workspace.state != QUARANTINED:  # none of the person's commands in a tampered tree
            env = self._env(workspace, None)
            run_teardown(self.project, self.config, workspace, env,
                         self.contained(workspace, env, self.config.setup_network))
        if workspace.path.exists():
            git.remove_worktree(self.project.root, workspace.path)
        if workspace.path.exists():  # git did not know it: a checkout that never finished
            shutil.rmtree(workspace.path, ignore_errors=True)
        git.git("worktree", "prune", cwd=self.project.root, check=False)
        shutil.rmtree(meta_dir(self.project, workspace.id), ignore_errors=True)
        self.store.remove_workspace(workspace.id)

    # -- looking after them ---------------------------------------------------------------

    def inventory(self, disk: bool = True) -> list[dict[str, Any]]:
        """Every workspace and every stray folder in the worktrees folder, with its state."""
        rows = self.store.workspaces()
        known = {str(Path(r["path"])) for r in rows}
        items = []
        for row in rows:
            path = Path(row["path"])
            done = read_setup(meta_dir(self.project, row["id"]) / "setup.json")
            setup = "none" if not needs_setup(self.config) else \
                "not yet" if done is None else "ok" if done.ok else "failed"
            items.append({
                "id": row["id"], "path": str(path), "state": row["state"], "attempt_id": row["attempt_id"],
                "ports": [row["port_base"], row["port_base"] + row["ports"] - 1] if row["port_base"] else None,
                "setup": setup, "setup_commit": done.commit if done else None,
                "setup_digest": done.digest if done else None, "setup_error": done.error if done else None,
                "setup_log": done.log if done else None, "venv": done.venv if done else None,
                "exists": path.is_dir(), "disk_bytes": disk_usage(path) if disk else None,
                "created_at": row["created_at"], "updated_at": row["updated_at"]})
        if self.dir.exists():
            for path in sorted(self.dir.iterdir()):
                if str(path) not in known:
                    items.append({"id": None, "path": str(path), "state": "untracked",
                                  "attempt_id": None, "ports": None, "setup": None, "exists": True,
                                  "disk_bytes": disk_usage(path) if disk else None})
        return items

    def prune(self, dry_run: bool = False, pool: bool = False) -> list[dict[str, str]]:
        """Remove stale workspaces; say what was removed and what was kept, and why.

        Stale: a setup that failed or was interrupted, a workspace whose attempt is over, a
        folder left by a crash (`staging-*`, `pool-*`, an unrecorded `ws-*`), a shared venv no
        workspace uses. Never one a live attempt (running, in review, approved) uses, never one
        with uncommitted work, never a branch. `pool` removes the warm ones too.
        """
        live = {a.id: a for a in self.store.attempts(states=[AttemptState.running])}
        for task in self.store.list_tasks([TaskState.running, TaskState.review, TaskState.approved]):
            latest = self.store.latest_attempt(task.id)
            if latest:
                live[latest.id] = latest
        busy = {a.worktree for a in live.values() if a.worktree} | \
            {r["path"] for r in self.store.workspaces() if r["attempt_id"] in live}
        git_known = {str(info.path) for info in git.worktrees(self.project.root)}
        report: list[dict[str, str]] = []

        def act(path: str, action: str, reason: str, remove: Any = None) -> None:
            if action == "remove" and not dry_run and remove is not None:
                remove()
            report.append({"path": path, "action": "would remove" if dry_run and action == "remove" else
                           "removed" if action == "remove" else "kept", "reason": reason})

        rows = self.store.workspaces()
        for row in rows:
            workspace = Workspace.from_row(row)
            path = str(workspace.path)
            reason = None
            if not workspace.path.is_dir():
                reason = "its folder is gone"
            elif row["state"] == "making" and not pid_alive(row["maker_pid"]):
                reason = "its setup was interrupted"
            elif row["state"] == "broken":
                reason = "its setup failed"
            elif row["state"] == "in_use" and path not in busy:
                reason = "its attempt is over"
            elif row["state"] == "ready" and pool:
                reason = "warm, and --pool asks to empty the pool"
            elif row["state"] == QUARANTINED:
                reason = "quarantined: an agent tampered with what it tells git"
            if reason is None:
                continue
            if path in busy:
                act(path, "keep", "an attempt uses it")
                continue
            dirty = self._work_in(workspace.path) \
                if workspace.path.is_dir() and path in git_known and row["state"] != QUARANTINED else []
            if dirty:
                act(path, "keep", f"{reason}, but it has uncommitted work: {', '.join(dirty[:3])}")
                continue
            act(path, "remove", reason, lambda w=workspace: self._remove(w, teardown=w.state != "making"))
        known = {r["path"] for r in rows}
        if self.dir.exists():
            for folder in sorted(self.dir.iterdir()):
                path = str(folder)
                if path in known or folder.name == INTEGRATION:
                    continue
                if path in busy:
                    act(path, "keep", "an attempt uses it")
                    continue
                if not folder.name.startswith((PREFIX, *STALE_PREFIXES, LEGACY_ATTEMPT_PREFIX)):
                    act(path, "keep", "not a name the pool gives; remove it by hand if it is stale")
                    continue
                if path in git_known:
                    try:
                        dirty = git.uncommitted(folder, repo=self.project.root)
                    except GitError:
                        dirty = []  # tampered or half made: nothing git can vouch for
                    if dirty:
                        act(path, "keep", f"no record, and uncommitted work: {', '.join(dirty[:3])}")
                        continue
                kind = "left by a crash while filling the pool" if folder.name.startswith(STALE_PREFIXES) \
                    else "no attempt or pool record"
                act(path, "remove", kind, lambda f=folder: self._remove_folder(f))
        used_venvs = {i.get("venv") for i in self.inventory(disk=False)}
        venvs = self.project.run_dir / "venvs"
        if venvs.exists():
            for venv in sorted(p for p in venvs.iterdir() if p.is_dir()):
                if str(venv) not in used_venvs:
                    act(str(venv), "remove", "a shared venv no workspace uses", lambda v=venv: _remove_venv(v))
        if not dry_run:
            git.git("worktree", "prune", cwd=self.project.root, check=False)
        return report

    def _work_in(self, worktree: Path) -> list[str]:
        """Uncommitted work, not counting the files clawfleet copied in ([] when git cannot say:
        a worktree an agent tampered with holds nothing clawfleet would keep)."""
        try:
            placed = git.kept_out_of_commits(worktree, self.project.root)
            return [p for p in git.uncommitted(worktree, repo=self.project.root)
                    if not any(p == k or p.startswith(k.rstrip("/") + "/") for k in placed)]
        except GitError:
            return []

    def _remove_folder(self, folder: Path) -> None:
        git.remove_worktree(self.project.root, folder)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)


def _remove_venv(path: Path) -> None:
    _make_writable(path)
    shutil.rmtree(path, ignore_errors=True)
    path.with_name(path.name + ".lock").unlink(missing_ok=True)


def disk_usage(path: Path) -> int:
    """Bytes a folder takes on disk, each hard-linked file counted once."""
    seen, total = set(), 0
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total



INTEGRATION = "integration"  # the merge queue's worktree: its folder in worktrees/ and its workspace id
SET_UP_HERE = "claw-set-up"   # in the merge worktree's git dir: gone when git made it again


def prepare_integration(project: Project, worktree: Path, commit: str, children: ChildGroups,
                        policy: SandboxPolicy | None) -> tuple[dict[str, str], str | None]:
    """Make the merge queue's worktree ready for the checks at `commit`, as an attempt's is:
    includes, its own ports, and setup when the setup inputs changed since its last one (in
    the sandbox `policy`: the setup runs the agents' code). Returns the checks' environment
    and, when the setup failed, why."""
    config = project.config.workspace
    pool = WorkspacePool(project, sandbox=policy)
    row = pool.store.workspace(INTEGRATION)
    if row is not None and row["path"] != str(worktree):
        pool.store.remove_workspace(INTEGRATION)
        row = None
    if row is None:
        row = pool.store.add_workspace(INTEGRATION, str(worktree), state="integration", attempt_id=None,
                                       port_range=config.port_range, ports=config.ports_per_workspace,
                                       port_free=port_block_free)
    workspace = Workspace.from_row(row)
    sync_includes(project, config, worktree)
    # The merge queue makes its worktree again when git lost it: then its installs are gone too.
    if git.read_admin_file(worktree, SET_UP_HERE, project.root) is None:
        (meta_dir(project, INTEGRATION) / "setup.json").unlink(missing_ok=True)
    plan = pool._plan(workspace, commit)
    env = pool._env(workspace, plan)
    if plan:
        meta = meta_dir(project, INTEGRATION)
        result = run_setup(plan, worktree, env, children, meta / "setup.log",
                           contained=pool.contained(workspace, env, plan.network))
        if not result.ok:
            return env, f"workspace setup failed in the merge worktree: {result.error}"
        git.write_admin_file(worktree, SET_UP_HERE, plan.digest, project.root)
    return env, None


def doctor_report(project: Project) -> dict[str, Any]:
    """What keeps workspaces from being ready, each problem with the output that explains it."""
    config = project.config.workspace
    pool = WorkspacePool(project)
    notes: list[str] = []
    problems: list[dict[str, str]] = []
    for pattern in [*config.include, *config.link]:
        single = WorkspaceConfig(include=[pattern])
        if not include_paths(project, single):
            problems.append({"what": f"include `{pattern}` matches nothing in {project.root}",
                             "fix": "create it in your checkout, or drop it from [workspace] include"})
    placed = include_paths(project, config)
    if placed:
        notes.append("copied into every workspace (never committed): "
                     + ", ".join(p + (" (hard link)" if link else "") for p, link in placed))
    if needs_setup(config):
        tip = project.target_tip()
        inputs = setup_inputs(config, project.root, tip)
        notes.append(f"setup: {len(config.setup)} command(s); it runs again when any of "
                     f"{len(inputs)} tracked file(s) matching setup_inputs changes"
                     + (f" ({', '.join(p for p, _ in inputs[:5])}{', ...' if len(inputs) > 5 else ''})"
                        if inputs else ""))
    else:
        notes.append("no setup commands: workspaces are plain checkouts ([workspace] setup adds some)")
    low, high = config.port_range
    blocks = (high - low + 1) // config.ports_per_workspace
    taken = len([r for r in pool.store.workspaces() if r["port_base"]])
    notes.append(f"ports: blocks of {config.ports_per_workspace} in {low}-{high}; {taken} of {blocks} leased"
                 + (f"; names: CLAW_PORT, {', '.join(config.ports)}" if config.ports else ""))
    if taken >= blocks:
        problems.append({"what": "every port block is leased", "fix": "widen port_range or prune workspaces"})
    shown_logs = set()
    for item in pool.inventory(disk=False):
        if item.get("setup") == "failed":
            shown_logs.add(item.get("setup_log"))
            problems.append({
                "what": f"setup failed in {Path(item['path']).name} ({item['state']}, commit "
                        f"{(item.get('setup_commit') or '')[:10]}): {item.get('setup_error')}",
                "output": _tail(Path(item["setup_log"])) if item.get("setup_log") else "",
                "fix": "fix the command in [workspace] setup (or what it installs from); the next attempt "
                       "runs it again, and `claw workspace prune` removes a broken pool workspace"})
    for attempt in project.store.attempts(states=[AttemptState.failed]):
        log = project.attempt_dir(attempt.id) / "setup.log"
        task = project.store.get_task(attempt.task_id)
        if (attempt.reason or "").startswith("workspace setup failed") and str(log) not in shown_logs \
                and task.state == TaskState.failed and project.store.latest_attempt(task.id).id == attempt.id:
            problems.append({"what": f"task {task.id} attempt {attempt.number}: {attempt.reason}",
                             "output": _tail(log),
                             "fix": "fix the setup, then `claw retry " + str(task.id) + "`"})
    for item in pool.prune(dry_run=True):
        if item["action"] == "would remove":
            notes.append(f"stale: {item['path']} ({item['reason']}): `claw workspace prune` removes it")
    return {"notes": notes, "problems": problems}
