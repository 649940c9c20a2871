"""The sandbox every agent runs in: bubblewrap (`bwrap`). The trust boundary of DESIGN.md.

What a sandboxed process (an agent CLI, a `command` agent, the built-in agent's shell commands,
checks and setup) sees:
- its worktree writable, and the private folders of its attempt (its own HOME, its outbox);
- the rest of the file system read-only, but these hidden behind an empty tmpfs: /tmp, /var/tmp,
  /run, /home, /root, $HOME, $XDG_RUNTIME_DIR and the person's checkout (with .claw/run in it:
  the store, gateway.secret, the other attempts); files that hold the machine's secrets
  (/etc/shadow, ssh host keys) are empty;
- put back read-only: the repository's common git dir (history), the worktree's `.git` file
  (never rewritten from inside), the toolchains (the Python clawfleet runs on, the folders on
  PATH, the agent's program, `[sandbox] read_only`);
- the agent's own login files, bound rather than copied, so that a token the CLI refreshes is
  the person's one token (`Bind`);
- no network, except its model's address through a relay: a loopback port inside forwards to a
  UNIX socket of the attempt, and outside `egress.py` connects it to the gateway (or, through
  an HTTPS CONNECT proxy, to the few hosts the agent needs). `[sandbox] network = true` opens it.

With `enabled = "auto"` and no working bwrap, agents run unsandboxed after one loud warning per
run; with `enabled = true`, the run refuses to start.

    >>> policy = resolve(project.config.sandbox, warn=print)
    >>> wrap(policy, ["bash", "-c", "make test"], worktree=Path("..."), project_root=Path("..."))
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ClawError

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, Fedora: `dnf install bubblewrap`)"
PROBE_TIMEOUT_S = 10.0
UNSANDBOXED = "UNSANDBOXED"

# Folders whose content no agent sees: other users' files, sockets, runtime state, temporary files.
HIDDEN_ROOTS = ("/tmp", "/var/tmp", "/run", "/var/run", "/home", "/root", "/mnt", "/media")
# Files that stay in place but read as empty.
SECRET_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers",
                "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key",
                "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_dsa_key")
SCRATCH = ("/tmp", "/var/tmp")
RELAY_SCRIPT = Path(__file__).with_name("netrelay.py")


@dataclass
class SandboxPolicy:
    """What an attempt's processes run in; plain data so it travels in the attempt's spec."""
    bwrap: str
    network: bool = False
    writable: list[str] = field(default_factory=list)    # besides the worktree
    read_only: list[str] = field(default_factory=list)   # [sandbox] read_only: put back, read-only
    allow_hosts: list[str] = field(default_factory=list) # [sandbox] allow_hosts: host[:port] via the proxy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SandboxPolicy | None":
        return cls(**data) if data else None


@dataclass(frozen=True)
class Bind:
    """A file or folder of the person's shown inside at `target` (a login, their instructions)."""
    source: str
    target: str
    writable: bool = False


@dataclass(frozen=True)
class Relay:
    """127.0.0.1:`port` inside the sandbox, forwarded to the UNIX socket `socket` outside."""
    port: int
    socket: str


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
    """The policy for this run from `[sandbox]`, or None to run agents unsandboxed.

    `enabled = true` and no working bwrap is an error with the install hint; "auto" warns once.
    """
    if config.enabled is False:
        return None   # the person's explicit choice: `claw status` says UNSANDBOXED
    path, why = probe()
    if path is None:
        if config.enabled is True:
            raise ClawError(f"[sandbox] enabled = true, but {why}",
                            hint=f"{INSTALL_HINT}, or set enabled = \"auto\" to run unsandboxed when it is missing")
        warn(f"warning: {why}, so every agent, check and setup runs {UNSANDBOXED}, with your files, "
             f"keys and network in its reach ({INSTALL_HINT}; or set [sandbox] enabled = false)")
        return None
    writable = [*writable, *(Path(p).expanduser() for p in getattr(config, "writable", []))]
    return SandboxPolicy(path, network=config.network, writable=[str(p) for p in writable],
                         read_only=[str(Path(p).expanduser()) for p in getattr(config, "read_only", [])],
                         allow_hosts=list(getattr(config, "allow_hosts", [])))


def _real(path: Path | str) -> str:
    return os.path.realpath(path)


def _hidden_roots(project_root: Path | None) -> list[str]:
    roots = [*HIDDEN_ROOTS]
    for variable in ("HOME", "XDG_RUNTIME_DIR"):
        value = os.environ.get(variable)
        if value and os.path.isabs(value):
            roots.append(value)
    if project_root is not None:
        roots.append(str(project_root))   # the person's checkout: .env, .claw/run, their edits
    found: list[str] = []
    for root in roots:
        if os.path.islink(root):          # /var/run -> /run: hiding the target hides it
            continue
        real = _real(root)
        if os.path.isdir(real) and real != "/" and real not in found:
            found.append(real)
    return found


def _is_under(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _reveals(path: str, hidden: Iterable[str]) -> bool:
    """Whether showing `path` would show a hidden folder again (it holds one)."""
    return any(_is_under(root, [path]) for root in hidden)


_MANAGER_ROOTS = ("PYENV_ROOT", "RBENV_ROOT", "ASDF_DATA_DIR", "NVM_DIR", "VOLTA_HOME")


def toolchain_paths(env: Mapping[str, str] = os.environ, extra: Iterable[str | Path] = ()) -> list[str]:
    """What processes inside need from folders the sandbox hides: the Python clawfleet runs on
    (a venv or pyenv under HOME or /tmp), clawfleet itself, the folders on PATH, `extra`."""
    paths: list[str] = [sys.prefix, sys.base_prefix, str(Path(__file__).parent.parent)]
    for entry in env.get("PATH", "").split(os.pathsep):
        # A version manager's shims (pyenv, rbenv, asdf: ~/.pyenv/shims) run the manager
        # itself and the versions it keeps beside them: its whole folder.
        paths.append(str(Path(entry).parent) if Path(entry).name == "shims" else entry)
    paths += [value for name in _MANAGER_ROOTS if (value := env.get(name))]
    paths += [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    paths += [str(p) for p in extra]
    found: list[str] = []
    for path in paths:
        real = _real(path)
        if os.path.exists(real) and real not in found:
            found.append(real)
    return found


def program_root(program: str) -> str:
    """The folder an agent's program lives in with what it needs: its npm package tree
    (`node_modules`) or its virtual environment, else the program's own folder."""
    real = Path(_real(program))
    for parent in real.parents:
        if parent.name == "node_modules":
            return str(parent)
        if (parent / "pyvenv.cfg").exists():
            return str(parent)
    return str(real)   # a script of its own: the file, not the folder it happens to be in


def _git_dirs(worktree: Path, common_dir: Path | None) -> list[str]:
    """The repository's git directory, to show read-only: the common dir (objects, refs) given by
    the caller, who knows it from the person's checkout, never from the worktree's `.git` file."""
    return [_real(common_dir)] if common_dir is not None and common_dir.is_dir() else []


def wrap(policy: SandboxPolicy | None, args: Sequence[str], *, worktree: Path,
         project_root: Path | None = None, common_dir: Path | None = None,
         private: Sequence[Path] = (), binds: Sequence[Bind] = (), relays: Sequence[Relay] = (),
         read_only: Sequence[str | Path] = (), env: Mapping[str, str] = os.environ,
         network: bool | None = None, chdir: Path | None = None) -> list[str]:
    """`args` as run inside the sandbox (unchanged when `policy` is None).

    `private`: the attempt's own folders, writable (created when missing). `binds`: the person's
    files shown inside. `relays`: loopback ports forwarded out (the model's address).
    `read_only`: more folders to put back (the agent's program). `network` overrides the policy's.
    """
    if policy is None:
        return list(args)
    worktree = Path(_real(worktree))
    if common_dir is None and project_root is not None and (project_root / ".git").is_dir():
        common_dir = project_root / ".git"
    hidden = _hidden_roots(project_root)
    command = [policy.bwrap, "--die-with-parent", "--new-session", "--ro-bind", "/", "/",
               "--dev", "/dev", "--proc", "/proc"]
    for root in hidden:
        command += ["--tmpfs", root]
    for secret in SECRET_FILES:
        if os.path.exists(secret):
            command += ["--ro-bind", "/dev/null", secret]
    # Put back, read-only and deepest last, what was hidden but is needed.
    shown = [*toolchain_paths(env, [*policy.read_only, *read_only]), *_git_dirs(worktree, common_dir)]
    for path in sorted({p for p in shown if _is_under(p, hidden) and not _reveals(p, hidden)},
                       key=lambda p: p.count("/")):
        command += ["--ro-bind", path, path]
    command += ["--bind", str(worktree), str(worktree)]
    dot_git = worktree / ".git"
    if dot_git.exists() and not dot_git.is_symlink():
        command += ["--ro-bind", str(dot_git), str(dot_git)]   # no agent redirects clawfleet's git
    for folder in [*private, *(Path(p) for p in policy.writable)]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not _reveals(_real(folder), hidden):
            command += ["--bind", _real(folder), _real(folder)]
    for bind in binds:
        if os.path.exists(bind.source):  # bwrap cannot bind what does not exist
            command += ["--bind" if bind.writable else "--ro-bind", _real(bind.source), bind.target]
    # Hidden folders read-only too (the mount points in them made): a write there fails loudly
    # instead of vanishing with the sandbox. /tmp stays the sandbox's own scratch space.
    for root in hidden:
        if root not in SCRATCH:
            command += ["--remount-ro", root]
    network = policy.network if network is None else network
    if not network:
        command.append("--unshare-net")
    command += ["--unshare-pid", "--unshare-ipc", "--chdir", _real(chdir or worktree), "--"]
    if relays and not network:
        command += [sys.executable, "-S", "-E", str(RELAY_SCRIPT),
                    *(f"{relay.port}={relay.socket}" for relay in relays), "--"]
    return command + list(args)


# -- the environment an agent gets ---------------------------------------------------------

# Variables that hold credentials: never in an agent's environment unless its kind needs that
# very one (and no gateway or base_url makes it unnecessary).
_SECRET_NAME = re.compile(r"(?i)(^|_)(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|AUTH)(_|$)"
                          r"|^AWS_|^AZURE_|^GOOGLE_APPLICATION_CREDENTIALS$|^SSH_AUTH_SOCK$"
                          r"|^GPG_AGENT_INFO$|^DBUS_SESSION_BUS_ADDRESS$")
_CLAW_KEEP = {"CLAW_GATEWAY_KEY"}   # the attempt's own gateway key: it dies with the attempt


def secret_variables(env: Mapping[str, str], named: Iterable[str] = ()) -> list[str]:
    """The variables of `env` that hold credentials: by their name, and those the person named."""
    named = set(named)
    return [name for name in env if (name in named or _SECRET_NAME.search(name)) and name not in _CLAW_KEEP]


def scrubbed(env: Mapping[str, str], *, keep: Iterable[str] = (), named: Iterable[str] = ()) -> dict[str, str]:
    """`env` without credentials but the variables in `keep` (what the agent itself needs)."""
    keep = set(keep)
    drop = {name for name in secret_variables(env, named) if name not in keep}
    return {name: value for name, value in env.items() if name not in drop}
