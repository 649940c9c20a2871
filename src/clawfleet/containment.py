"""How one agent process is contained: its sandbox, its environment, its one way out.

The pieces are `sandbox.wrap` (the file system), `sandbox.scrubbed` (no credential in its
environment but the one it needs) and `egress.Egress` (the network: only its model's address).
`contain` puts them together for an agent CLI, a `command` agent or a check:

    >>> with contain(job.sandbox, args, env, Reach(...)) as (args, env):
    ...     children.run(args, env=env, ...)

Unsandboxed (no policy), the process still gets the scrubbed environment: a provider key is
never handed to an agent that a gateway or a base_url makes independent of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from . import sandbox
from .egress import INSIDE_DIR, Egress
from .sandbox import Bind, SandboxPolicy

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PROXY_PORT = 3128
_PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")


@dataclass
class Reach:
    """What one contained process may touch beyond its worktree."""
    worktree: Path
    project_root: Path | None = None
    common_dir: Path | None = None
    private: list[Path] = field(default_factory=list)      # the attempt's own folders, writable
    binds: list[Bind] = field(default_factory=list)        # the person's files it is shown
    read_only: list[str] = field(default_factory=list)     # its program's folder, an MCP server's
    urls: list[str] = field(default_factory=list)          # its model's base URLs
    hosts: list[str] = field(default_factory=list)         # host[:port] it may open tunnels to
    keep: list[str] = field(default_factory=list)          # credential variables it needs itself
    secret_env: list[str] = field(default_factory=list)    # [secrets] env: names never passed on
    network: bool | None = None                            # None: the policy's
    git_dir: Path | None = None                            # the agent's own git dir (GIT_DIR inside)
    log: Path | None = None                                # where its routes' events are told
    cwd: Path | None = None                                # where it starts: the worktree unless said


def routes(urls: Sequence[str], hosts: Sequence[str]) -> tuple[list[tuple[str, int]], list[str]]:
    """(loopback addresses to forward, host:port to allow through the proxy) for these URLs."""
    forwards: list[tuple[str, int]] = []
    proxied: list[str] = list(hosts)
    for url in urls:
        parts = urlsplit(url)
        if not parts.hostname:
            continue
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.hostname in LOOPBACK:
            if (parts.hostname, port) not in forwards:
                forwards.append(("127.0.0.1" if parts.hostname != "::1" else "::1", port))
        else:
            proxied.append(f"{parts.hostname}:{port}")
    return forwards, proxied


def workspace_reach(worktree: Path, project_root: Path, common_dir: Path | None,
                    workspace_env: Mapping[str, str], **fields) -> Reach:
    """The reach of a check, setup or teardown command in a workspace: the worktree, the
    caches the workspace's variables name (writable) and their other folders, such as the
    shared venv (read-only). `fields`: the rest of the Reach (private, network, git_dir)."""
    caches, shown = [], []
    for name, value in workspace_env.items():
        if os.path.isabs(value) and os.path.isdir(value) and Path(value) != worktree:
            (caches if "CACHE" in name.upper() else shown).append(value)
    private = [*map(Path, caches), *fields.pop("private", ())]
    return Reach(worktree=worktree, project_root=project_root, common_dir=common_dir,
                 private=private, read_only=shown, **fields)


def environment(env: Mapping[str, str], reach: Reach) -> dict[str, str]:
    """The process's environment: credentials gone but those it needs."""
    return sandbox.scrubbed(env, keep=reach.keep, named=reach.secret_env)


@contextmanager
def contain(policy: SandboxPolicy | None, args: Sequence[str], env: Mapping[str, str],
            reach: Reach) -> Iterator[tuple[list[str], dict[str, str]]]:
    """The command line and environment that run `args` contained; its routes out while inside."""
    env = environment(env, reach)
    if policy is None:
        link(reach.binds)
        yield list(args), env
        return
    network = policy.network if reach.network is None else reach.network
    egress = None
    binds = list(reach.binds)
    try:
        if not network:
            forwards, proxied = routes(reach.urls, [*reach.hosts, *policy.allow_hosts])
            if forwards or proxied:
                egress = Egress(on_event=_writer(reach.log))
                for host, port in forwards:
                    egress.forward(port, host, port)
                for name in _PROXY_VARIABLES:
                    env.pop(name, None)   # the host's proxy is out of reach inside
                if proxied:
                    port = PROXY_PORT
                    while any(port == p for _, p in forwards):
                        port += 1
                    egress.proxy(port, proxied)
                    for name in _PROXY_VARIABLES:
                        env[name] = f"http://127.0.0.1:{port}"
                env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
                binds.append(Bind(str(egress.folder), INSIDE_DIR))
        env["TMPDIR"] = env.get("TMPDIR") if _inside(env.get("TMPDIR"), reach.private) else "/tmp"
        private = list(reach.private)
        if reach.git_dir is not None and reach.git_dir.is_dir():
            env["GIT_DIR"], env["GIT_WORK_TREE"] = str(reach.git_dir), str(reach.worktree)
            private.append(reach.git_dir)
        wrapped = sandbox.wrap(policy, args, worktree=reach.worktree, project_root=reach.project_root,
                               common_dir=reach.common_dir, private=private, binds=binds,
                               relays=egress.relays if egress else (), read_only=reach.read_only,
                               env=env, network=network, chdir=reach.cwd)
        yield wrapped, env
    finally:
        if egress is not None:
            egress.close()


def _writer(log: Path | None):
    def write(line: str) -> None:
        if log is not None:
            with open(log, "a") as handle:
                handle.write(line + "\n")
    return write


def link(binds: Sequence[Bind]) -> None:
    """Unsandboxed, the person's files are shown as symlinks at their targets: still the one
    real file (a refreshed token is theirs), never a copy."""
    for bind in binds:
        target = Path(bind.target)
        if not os.path.exists(bind.source) or target.is_symlink() or target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.realpath(bind.source))


def _inside(path: str | None, folders: Sequence[Path]) -> bool:
    if not path:
        return False
    real = os.path.realpath(path)
    return any(real == os.path.realpath(f) or real.startswith(os.path.realpath(f) + os.sep) for f in folders)
