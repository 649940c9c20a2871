"""The sandbox for the built-in agent's shell commands: bubblewrap (`bwrap`).

Inside, the whole file system is read-only except the attempt's worktree, a private /tmp and
the project's database files (so `claw memory add` works); the network is cut off unless
`[sandbox] network = true`. With `enabled = "auto"` and no working bwrap, commands run
unsandboxed after one warning; with `enabled = true`, the run refuses to start.

    >>> policy = resolve(project.config.sandbox, warn=print)
    >>> wrap(policy, ["bash", "-c", "make test"], worktree=Path("..."))
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ClawError

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, Fedora: `dnf install bubblewrap`)"
PROBE_TIMEOUT_S = 10.0


@dataclass
class SandboxPolicy:
    """What an attempt's commands run in; plain data so it travels in the attempt's spec."""
    bwrap: str
    network: bool = False
    writable: list[str] = field(default_factory=list)   # besides the worktree

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SandboxPolicy | None":
        return cls(**data) if data else None


def probe(bwrap: str | None = None) -> tuple[str | None, str]:
    """(path of a working bwrap, '') or (None, why not): found on PATH and able to run here."""
    path = bwrap or shutil.which("bwrap")
    if path is None:
        return None, "bubblewrap (bwrap) is not installed"
    try:
        result = subprocess.run([path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                                 "--unshare-net", "--unshare-pid", "true"],
                                capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"{path} cannot run: {error}"
    if result.returncode != 0:
        return None, f"{path} cannot make a sandbox here: {result.stderr.strip()[:300]}"
    return path, ""


def resolve(config, *, warn: Callable[[str], None], writable: Sequence[Path] = ()) -> SandboxPolicy | None:
    """The policy for this run from `[sandbox]`, or None to run commands unsandboxed.

    `enabled = true` and no working bwrap is an error with the install hint; "auto" warns once.
    """
    if config.enabled is False:
        return None
    path, why = probe()
    if path is None:
        if config.enabled is True:
            raise ClawError(f"[sandbox] enabled = true, but {why}",
                            hint=f"{INSTALL_HINT}, or set enabled = \"auto\" to run unsandboxed when it is missing")
        warn(f"warning: {why}, so the built-in agent's commands run UNSANDBOXED "
             f"({INSTALL_HINT}; or set [sandbox] enabled = false to silence this)")
        return None
    return SandboxPolicy(path, network=config.network, writable=[str(p) for p in writable])


def database_files(db: Path) -> list[Path]:
    """The SQLite files a sandboxed `claw memory add` writes: the database, its WAL and shared memory."""
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


def _under_tmp(paths: Sequence[Path | None]) -> list[str]:
    found: list[str] = []
    for path in paths:
        if path is None:
            continue
        resolved = str(Path(path).resolve())
        if Path(resolved).is_relative_to("/tmp") and resolved not in found:
            found.append(resolved)
    return found


def wrap(policy: SandboxPolicy | None, args: Sequence[str], *, worktree: Path,
         project_root: Path | None = None) -> list[str]:
    """`args` as run inside the sandbox (unchanged when `policy` is None)."""
    if policy is None:
        return list(args)
    worktree = worktree.resolve()
    command = [policy.bwrap, "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev",
               "--proc", "/proc", "--tmpfs", "/tmp"]
    # A private /tmp hides what was under it; put back, read-only, what the agent's commands
    # need from there: the project the worktree is in, clawfleet itself (for `claw memory add`)
    # and the Python it runs on (a virtual environment or a checkout under /tmp).
    for needed in _under_tmp([project_root, Path(__file__).parent, Path(sys.prefix), Path(sys.base_prefix)]):
        command += ["--ro-bind", needed, needed]
    command += ["--bind", str(worktree), str(worktree)]
    for extra in policy.writable:
        if Path(extra).exists():  # bwrap cannot bind what does not exist
            command += ["--bind", extra, extra]
    if not policy.network:
        command.append("--unshare-net")
    command += ["--unshare-pid", "--chdir", str(worktree), "--", *args]
    return command
