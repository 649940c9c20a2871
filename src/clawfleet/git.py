"""The only module that runs git. Everything here calls the real `git` program."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import ClawError, GitError
from .printable import printable

GIT_TIMEOUT_S = 300.0
# Commits made by clawfleet must not depend on the person's global git identity being set.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "clawfleet", "GIT_AUTHOR_EMAIL": "claw@localhost",
    "GIT_COMMITTER_NAME": "clawfleet", "GIT_COMMITTER_EMAIL": "claw@localhost",
}
# Every git call clawfleet makes runs outside any sandbox, as the person, often in a worktree an
# agent wrote. Config on the command line outranks every config file (the person's, a
# worktree's, or one an agent forged), so none of these can be turned back on from a file.
# Hooks: git looks for them in a folder, and nothing can exist under /dev/null.
NO_HOOKS = "/dev/null"
_SAFE = ("-c", "core.fsmonitor=false", "-c", f"core.hooksPath={NO_HOOKS}",
         "-c", "submodule.recurse=false")
# Where git would look instead of where clawfleet says, or a program it would run.
_STEERING_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                 "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_EXTERNAL_DIFF",
                 "GIT_REFLOG_ACTION", "GIT_PAGER", "GIT_EDITOR", "GIT_SEQUENCE_EDITOR")
# Diffs never run a program named by config or attributes (external diff, textconv).
NO_DIFF_PROGRAMS = ("--no-ext-diff", "--no-textconv")


class WorktreeTampered(GitError):
    """A worktree's `.git` (or its git dir's records) no longer says what git wrote there:
    an agent changed it. clawfleet runs no git in it; its workspace is quarantined."""


def git(*args: str, cwd: Path, check: bool = True, input: str | None = None,
        timeout: float = GIT_TIMEOUT_S, identity: bool = False,
        env: dict[str, str] | None = None, repo: Path | None = None,
        place: Checkout | None = None, errors: str = "strict") -> subprocess.CompletedProcess[str]:
    """Run `git args` in `cwd`. In one of clawfleet's worktrees (or any path with `repo`, the
    person's repository, given) git is told the git dir and work tree (see `checkout_of`;
    `place`: found already, by an operation of several git calls)."""
    place = place or checkout_of(cwd, repo)
    prefix = [*_SAFE]
    if place is not None:
        prefix += [f"--git-dir={place.git_dir}", f"--work-tree={place.work_tree}"]
    full_env = {k: v for k, v in os.environ.items() if k not in _STEERING_ENV}
    full_env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})})
    if identity and not _has_identity(cwd, place, full_env):
        full_env.update(_IDENTITY)
    try:
        result = subprocess.run(["git", *prefix, *args], cwd=cwd, capture_output=True, text=True,
                                input=input, timeout=timeout, env=full_env, errors=errors)
    except FileNotFoundError as error:
        # subprocess says the same of a missing program and of a missing working folder.
        if not os.path.isdir(cwd):
            raise GitError(f"{cwd} no longer exists: no git can run there",
                           hint="it was deleted or moved; for one of clawfleet's workspaces, "
                                "`claw workspace prune` clears its record") from None
        raise ClawError("git is not installed", hint="install git (apt-get install git)") from error
    except subprocess.TimeoutExpired as error:
        raise GitError(f"`git {' '.join(args[:3])}` took more than {timeout:.0f} s in {cwd}") from error
    if check and result.returncode != 0:
        said = result.stderr.strip() or result.stdout.strip()
        raise GitError(f"`git {' '.join(args[:4])}` failed in {cwd}: {said}")
    return result


def _has_identity(cwd: Path, place: Checkout | None, env: dict[str, str]) -> bool:
    if env.get("GIT_AUTHOR_EMAIL") and env.get("GIT_COMMITTER_EMAIL"):
        return True
    key = str(place.common if place else cwd)
    if key in _identities:  # asked once per repository: it is one more git process per commit
        return True
    result = subprocess.run(["git", *_SAFE, *([f"--git-dir={place.git_dir}"] if place else []),
                             "config", "user.email"], cwd=cwd, capture_output=True, text=True, env=env)
    found = result.returncode == 0 and bool(result.stdout.strip())
    if found:
        _identities.add(key)
    return found


_identities: set[str] = set()


def out(*args: str, cwd: Path, repo: Path | None = None, place: Checkout | None = None) -> str:
    return git(*args, cwd=cwd, repo=repo, place=place).stdout.strip()


# -- where a worktree's repository is -------------------------------------------------------

@dataclass(frozen=True)
class Checkout:
    """Where git finds a worktree's repository: learnt from the person's repository, never from
    the worktree's own `.git`, which the agent working there could have rewritten."""
    work_tree: Path
    git_dir: Path      # <common>/worktrees/<name>
    common: Path


def checkout_of(path: Path, repo: Path | None = None) -> Checkout | None:
    """The checked git dir of the clawfleet worktree holding `path`; None for the person's own
    checkout, where git finds its repository as usual.

    Everything under `<root>/.claw/run/` is clawfleet's (pooled workspaces, the merge queue's
    worktree, research slots, reviewers' checkouts), so its repository is the one at `<root>`,
    known from the path alone. `repo` names the repository for a worktree elsewhere. The git dir
    is the entry of `<common>/worktrees/` whose record names the worktree; the worktree's `.git`
    must still point there (a plain file, not a link or a directory), and the git dir's
    `commondir` back at the repository: otherwise WorktreeTampered.
    """
    path = Path(os.path.abspath(path))
    anchor = Path(os.path.abspath(repo)) if repo is not None else _clawfleet_root(path)
    if anchor is None:
        return None
    common = common_dir(anchor)
    found = _find_admin(common, path, stop=anchor)
    if found is None:
        if repo is not None and _clawfleet_root(path) is None:
            return None  # the person's checkout (or a folder of it)
        raise GitError(f"{path} is not a worktree of the repository at {anchor}: git has no record of it",
                       hint="it was removed or never finished; `claw workspace prune` cleans up")
    work_tree, admin = found
    _verify(work_tree, admin, common, ours=_clawfleet_root(work_tree) is not None)
    return Checkout(work_tree, admin, common)


def verify_worktree(worktree: Path, repo: Path | None = None) -> None:
    """Raise WorktreeTampered (or GitError) unless `worktree` is a sound worktree of `repo`."""
    if checkout_of(worktree, repo) is None:
        raise GitError(f"{worktree} is not one of clawfleet's worktrees")


def _clawfleet_root(path: Path) -> Path | None:
    """`<root>` for a path below `<root>/.claw/run/`; the outermost, so that a `.claw/run` an
    agent made inside its worktree changes nothing."""
    parts = path.parts
    for i in range(1, len(parts) - 2):
        if parts[i] == ".claw" and parts[i + 1] == "run":
            return Path(*parts[:i])
    return None


def _find_admin(common: Path, path: Path, stop: Path) -> tuple[Path, Path] | None:
    """(worktree, its git dir) for the worktree of `common` that holds `path`."""
    mapping = _admin_map(common)
    for candidate in (path, *path.parents):
        key = _real_key(candidate)
        admin = mapping.get(key)
        if admin is not None:
            if _record_of(admin) != key:  # rewritten since it was read: read them all again
                admin = _admin_map(common, fresh=True).get(key)
                if admin is None or _record_of(admin) != key:
                    return None
            return candidate, admin
        if candidate == stop:
            break
    return None


def _admin_map(common: Path, fresh: bool = False) -> dict[str, Path]:
    """Worktree path -> git dir, from every `<common>/worktrees/*/gitdir` (read again only when
    the folder changed: a worktree was added or removed)."""
    folder = common / "worktrees"
    try:
        info = os.lstat(folder)
    except OSError:
        return {}
    if not stat.S_ISDIR(info.st_mode):
        return {}
    stamp = (info.st_ino, info.st_mtime_ns)
    cached = _admin_maps.get(str(common))
    if cached is not None and cached[0] == stamp and not fresh:
        return cached[1]
    mapping: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                named = _record_of(Path(entry.path))
                if named:
                    mapping[named] = Path(entry.path)
    if len(_admin_maps) > 64:
        _admin_maps.clear()
    _admin_maps[str(common)] = (stamp, mapping)
    return mapping


_admin_maps: dict[str, tuple[tuple[int, int], dict[str, Path]]] = {}


def _record_of(admin: Path) -> str | None:
    """The worktree a git dir belongs to, as its `gitdir` file names it (`<worktree>/.git`)."""
    text = _read_small(admin / "gitdir")
    if not text:
        return None
    named = text.strip()
    return os.path.normpath(named[:-len("/.git")] if named.endswith("/.git") else named)


def _real_key(path: Path) -> str:
    """A worktree's path as git records it (real folders above it), without following a link
    the worktree itself might have become."""
    parent = str(path.parent)
    real = _real_parents.get(parent)
    if real is None:
        real = _real_parents[parent] = os.path.realpath(parent)
        if len(_real_parents) > 4096:
            _real_parents.clear()
    return os.path.join(real, path.name)


_real_parents: dict[str, str] = {}


def _verify(work_tree: Path, admin: Path, common: Path, ours: bool = True) -> None:
    """`ours`: one of clawfleet's worktrees; a worktree config naming programs is the person's
    business in their own linked checkouts (whose .git is checked all the same)."""
    def tampered(what: str) -> WorktreeTampered:
        return WorktreeTampered(
            f"the agent tampered with its worktree's git link ({what}), so clawfleet runs no git "
            f"in {work_tree}", hint="nothing it did there since its last commit is kept; its branch "
            "keeps what was committed before, and the workspace is quarantined")

    try:
        if stat.S_ISLNK(os.lstat(work_tree).st_mode):
            raise tampered("the worktree folder is now a symbolic link")
        info = os.lstat(work_tree / ".git")
    except FileNotFoundError:
        if not ours and not os.path.lexists(work_tree):  # the person deleted their checkout
            raise GitError(f"your checkout at {work_tree} no longer exists, but git still lists it",
                           hint="`git worktree prune` makes git forget it (nothing of yours is lost: "
                                "its branch stays)") from None
        raise tampered(".git is gone") from None
    if stat.S_ISLNK(info.st_mode):
        raise tampered(f".git is now a symbolic link to {os.readlink(work_tree / '.git')}")
    if stat.S_ISDIR(info.st_mode):
        raise tampered(".git is now a directory (a repository of the agent's own)")
    text = _read_small(work_tree / ".git") if stat.S_ISREG(info.st_mode) else None
    named = text.strip().removeprefix("gitdir:").strip() if text and text.startswith("gitdir:") else None
    if named is None or not _same_place(os.path.join(work_tree, named), admin):
        shown = (text or "").strip().splitlines()[0][:200] if text else "no gitdir line"
        raise tampered(f".git now says '{shown}' instead of 'gitdir: {admin}'")
    back = _read_small(admin / "commondir")
    if back is None or not _same_place(os.path.join(admin, back.strip()), common):
        raise tampered(f"its git dir {admin} no longer names {common} as its repository")
    risky = _worktree_config_programs(admin, common) if ours else []
    if risky:
        raise tampered(f"its worktree config ({admin / 'config.worktree'}) sets {', '.join(risky[:4])}, "
                       "a program git would run")


def _same_place(named: str, trusted: Path) -> bool:
    """Whether a path read from a file names `trusted` (a folder of the repository's): by its
    text first (as git wrote it), by the folder it resolves to only when the text differs."""
    named = os.path.normpath(named)
    real = _real_trusted.get(str(trusted))
    if real is None:
        real = _real_trusted[str(trusted)] = os.path.realpath(trusted)
        if len(_real_trusted) > 4096:
            _real_trusted.clear()
    return named in (os.path.normpath(trusted), real) or os.path.realpath(named) == real


_real_trusted: dict[str, str] = {}


# A worktree's own config (read only with extensions.worktreeConfig) naming a program git runs.
_PROGRAM_KEYS = re.compile(
    r"core\.(fsmonitor|hookspath|sshcommand|askpass|editor|pager|gitproxy|alternaterefscommand|worktree)"
    r"|(filter|diff|merge)\..+\.(clean|smudge|process|textconv|command|driver)|diff\.external"
    r"|sequence\.editor|gpg\.(.+\.)?program|credential\..*|include(if)?\..*|pager\..*")


def _worktree_config_programs(admin: Path, common: Path) -> list[str]:
    if not _worktree_config_on(common):
        return []
    path = admin / "config.worktree"
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return []
    if not stat.S_ISREG(info.st_mode):
        return [f"{path.name} as a {'link' if stat.S_ISLNK(info.st_mode) else 'special file'}"]
    stamp = (str(path), info.st_ino, info.st_size, info.st_mtime_ns)
    if stamp not in _config_keys:
        result = subprocess.run(["git", *_SAFE, "config", "--file", str(path), "--name-only", "--list"],
                                cwd=common, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
        keys = result.stdout.split() if result.returncode == 0 else ["(a config git cannot read)"]
        if len(_config_keys) > 256:
            _config_keys.clear()
        _config_keys[stamp] = sorted({k for k in keys if _PROGRAM_KEYS.fullmatch(k.lower())})
    return _config_keys[stamp]


_config_keys: dict[tuple, list[str]] = {}


def _worktree_config_on(common: Path) -> bool:
    try:
        info = os.stat(common / "config")
    except OSError:
        return False
    stamp = (str(common), info.st_ino, info.st_size, info.st_mtime_ns)
    if stamp not in _extension_on:
        result = subprocess.run(["git", *_SAFE, "config", "--file", str(common / "config"), "--bool",
                                 "extensions.worktreeConfig"], cwd=common, capture_output=True, text=True,
                                timeout=GIT_TIMEOUT_S)
        _extension_on.clear() if len(_extension_on) > 64 else None
        _extension_on[stamp] = result.stdout.strip() == "true"
    return _extension_on[stamp]


_extension_on: dict[tuple, bool] = {}


def _read_small(path: Path, limit: int = 1 << 16) -> str | None:
    """A small file's text, never through a symbolic link (nor from a FIFO); None when it is
    missing, a link or not a plain file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit).decode(errors="replace")
    finally:
        os.close(fd)


def _write_replacing(path: Path, text: str) -> None:
    """Write a file whole by renaming a new one over it: a link there is replaced, not followed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def admin_dir(worktree: Path, repo: Path | None = None, place: Checkout | None = None) -> Path:
    """The worktree's own folder in the repository's git directory (`.git/worktrees/NAME`),
    found from the repository, checked (see `checkout_of`); `.git` itself for a main checkout."""
    place = place or checkout_of(worktree, repo)
    if place is not None:
        return place.git_dir
    return Path(out("rev-parse", "--path-format=absolute", "--git-dir", cwd=worktree))


def read_admin_file(worktree: Path, name: str, repo: Path | None = None,
                    place: Checkout | None = None) -> str | None:
    """A file clawfleet keeps in a worktree's git dir; None when absent (never read through a link)."""
    return _read_small(admin_dir(worktree, repo, place) / name)


def write_admin_file(worktree: Path, name: str, text: str | None, repo: Path | None = None) -> None:
    """Write (None: remove) a file clawfleet keeps in a worktree's git dir, never through a link."""
    path = admin_dir(worktree, repo) / name
    if text is None:
        path.unlink(missing_ok=True)
    else:
        _write_replacing(path, text)


# -- the repository ---------------------------------------------------------------------

def toplevel(path: Path) -> Path:
    result = git("rev-parse", "--show-toplevel", cwd=path, check=False)
    if result.returncode != 0:
        raise ClawError(f"{path} is not inside a git repository",
                        hint="run claw in a git repository, or `git init` one first")
    return Path(result.stdout.strip())


def common_dir(repo: Path) -> Path:
    """The repository's shared git directory. For a path in one of clawfleet's worktrees, that
    of the person's checkout above `.claw/run` (never what the worktree's `.git` says)."""
    root = _clawfleet_root(Path(os.path.abspath(repo)))
    if root is not None:
        return common_dir(root)
    key = str(repo)
    found = _common_dirs.get(key)
    if found is None or not found.is_dir():  # a folder's repository does not change: ask git once
        found = Path(out("rev-parse", "--path-format=absolute", "--git-common-dir", cwd=repo))
        if len(_common_dirs) > 1024:
            _common_dirs.clear()
        _common_dirs[key] = found
    return found


_common_dirs: dict[str, Path] = {}


def has_commits(repo: Path) -> bool:
    return git("rev-parse", "--verify", "-q", "HEAD^{commit}", cwd=repo, check=False).returncode == 0


def rev(repo: Path, name: str) -> str | None:
    result = git("rev-parse", "--verify", "-q", f"{name}^{{commit}}", cwd=repo, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def branch_tip(repo: Path, branch: str) -> str | None:
    return rev(repo, f"refs/heads/{branch}")


def current_branch(worktree: Path, repo: Path | None = None) -> str | None:
    result = git("symbolic-ref", "--short", "-q", "HEAD", cwd=worktree, check=False, repo=repo)
    return result.stdout.strip() or None


def delete_branch(repo: Path, branch: str) -> None:
    git("branch", "-D", branch, cwd=repo, check=False)


def update_ref(repo: Path, branch: str, new: str, old: str, message: str) -> None:
    """Move a branch only if it still points at `old` (compare-and-swap)."""
    git("update-ref", "-m", message, f"refs/heads/{branch}", new, old, cwd=repo)


def pin(repo: Path, ref: str, commit: str) -> None:
    """Keep a commit reachable under `ref` (outside refs/heads: no branch list clutter), so
    git's garbage collection never takes work that no branch holds."""
    git("update-ref", "-m", "clawfleet: keep", ref, commit, cwd=repo)


@contextmanager
def repo_lock(repo: Path) -> Iterator[None]:
    """Serialise operations that take repository-wide locks (worktrees, refs) across processes."""
    path = common_dir(repo) / "claw.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- branch names -----------------------------------------------------------------------

def slugify(title: str, max_length: int = 40) -> str:
    """A lowercase ascii slug of a title; '' when nothing usable is left."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower()
    return text[:max_length].rstrip("-")


def branch_name(task_id: int, title: str, attempt: int = 1) -> str:
    """`claw/<id>-<slug>` (with `-<n>` for later attempts): safe for any title."""
    slug = slugify(title) or hashlib.sha1(title.encode()).hexdigest()[:8]
    name = f"claw/{task_id}-{slug}" + (f"-{attempt}" if attempt > 1 else "")
    return name


def valid_branch_name(name: str, cwd: Path) -> bool:
    return git("check-ref-format", "--branch", name, cwd=cwd, check=False).returncode == 0


# -- worktrees --------------------------------------------------------------------------

@dataclass
class WorktreeInfo:
    path: Path
    head: str | None
    branch: str | None


def worktrees(repo: Path) -> list[WorktreeInfo]:
    found, current = [], {}
    for line in out("worktree", "list", "--porcelain", cwd=repo).splitlines() + [""]:
        if not line:
            if current:
                branch = current.get("branch", "")
                found.append(WorktreeInfo(Path(current["worktree"]), current.get("HEAD"),
                                          branch.removeprefix("refs/heads/") or None))
            current = {}
            continue
        key, _, value = line.partition(" ")
        current[key] = value
    return found


def worktree_of_branch(repo: Path, branch: str) -> Path | None:
    for info in worktrees(repo):
        if info.branch == branch:
            return info.path
    return None


def add_worktree_on_branch(repo: Path, path: Path, branch: str, base: str) -> None:
    """A new worktree at `path` on `branch`, made (or reset) at `base`: one git call."""
    with repo_lock(repo):
        git("worktree", "add", "--quiet", "-B", branch, str(path), base, cwd=repo)


def add_detached_worktree(repo: Path, path: Path, commit: str, lock: bool = True) -> None:
    """`lock=False` for a checkout nobody else can name yet (a staging folder): a long checkout
    then does not hold up other worktree operations."""
    if not lock:
        git("worktree", "add", "--detach", "--quiet", str(path), commit, cwd=repo)
        return
    with repo_lock(repo):
        git("worktree", "add", "--detach", "--quiet", str(path), commit, cwd=repo)


def remove_worktree(repo: Path, path: Path) -> None:
    with repo_lock(repo):
        removed = git("worktree", "remove", "--force", "--force", str(path), cwd=repo, check=False)
        if removed.returncode != 0 and _clawfleet_root(Path(os.path.abspath(path))) is not None \
                and os.path.lexists(path):
            # git refuses a worktree whose .git an agent replaced (or that holds submodules);
            # it is clawfleet's folder: remove it without git (links removed, not followed).
            shutil.rmtree(path, ignore_errors=True)
        git("worktree", "prune", cwd=repo, check=False)


def start_branch(worktree: Path, branch: str, base: str, repo: Path | None = None) -> None:
    """Put a (clean, detached) pooled worktree on a new branch at `base`."""
    place = checkout_of(worktree, repo)
    at = detached_head(worktree, repo, place) or out("rev-parse", "HEAD", cwd=worktree, repo=repo, place=place)
    if at == base:
        # Already there: without a start point git only writes the branch, no checkout pass.
        git("switch", "--quiet", "--force-create", branch, cwd=worktree, repo=repo, place=place)
    else:
        git("switch", "--quiet", "--force-create", branch, base, cwd=worktree, repo=repo, place=place)


def detached_head(worktree: Path, repo: Path | None = None, place: Checkout | None = None) -> str | None:
    """The commit a detached worktree is at, read from its HEAD file without starting git (a
    pooled worktree is detached, and every hand-out asks); None when HEAD names a branch or the
    file is not a plain commit id, and then only git can say."""
    text = (read_admin_file(worktree, "HEAD", repo, place) or "").strip()
    return text if _COMMIT_ID.fullmatch(text) else None


_COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def reset_worktree(worktree: Path, commit: str, keep_ignored: bool = False, repo: Path | None = None) -> None:
    """Return a worktree to a clean detached state at `commit` (for reuse by the pool).

    `keep_ignored` keeps ignored files (installed dependencies, build caches: what a setup made).
    """
    place = checkout_of(worktree, repo)
    git("switch", "--quiet", "--detach", "--discard-changes", commit, cwd=worktree, repo=repo, place=place)
    # -ff: nested repositories an agent made go too
    git("clean", "-ffdq" if keep_ignored else "-ffdxq", cwd=worktree, repo=repo, place=place)


def uncommitted(worktree: Path, repo: Path | None = None) -> list[str]:
    """Paths with uncommitted changes: tracked files changed, untracked files not ignored.

    Submodules are not looked into: git would run `git status` inside each, with the config an
    agent gave it."""
    entries = git("status", "--porcelain", "-z", "--untracked-files=all", "--ignore-submodules=all",
                  cwd=worktree, repo=repo).stdout.split("\0")
    return [entry[3:] for entry in entries if len(entry) > 3]


_KEPT_OUT = "claw-kept-out"


def keep_out_of_commits(worktree: Path, paths: Sequence[str], repo: Path | None = None) -> None:
    """Never let clawfleet's commits (commit_all, snapshot_commit) take these untracked paths.

    For files copied into a workspace, such as `.env`. The list lives in the worktree's own git
    folder because `info/exclude` is shared by every worktree, the person's checkout included.
    """
    write_admin_file(worktree, _KEPT_OUT, "".join(f"{p}\n" for p in paths) if paths else None, repo)


def kept_out_of_commits(worktree: Path, repo: Path | None = None, place: Checkout | None = None) -> list[str]:
    return [p for p in (read_admin_file(worktree, _KEPT_OUT, repo, place) or "").splitlines() if p]


def committed_kept_out(worktree: Path, base: str, head: str = "HEAD", repo: Path | None = None) -> list[str]:
    """Paths kept out of commits that a commit in base..head took anyway (an agent's own `git add -A`)."""
    kept_out = kept_out_of_commits(worktree, repo)
    if not kept_out:
        return []
    return out("diff", *NO_DIFF_PROGRAMS, "--name-only", base, head, "--",
               *(f":(top,literal){p}" for p in kept_out), cwd=worktree, repo=repo).splitlines()


def _add_all_args(kept_out: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
    if not kept_out and not exclude:
        return ["add", "--all"]
    return ["add", "--all", "--", ":/", *(spec for p in kept_out for spec in _exclude_exactly(p)),
            *(f":(top,exclude,glob){_no_literal_start(pattern)}" for pattern in exclude)]


def _exclude_exactly(path: str) -> list[str]:
    """Pathspecs that exclude `path` (and what is under it) from `git add`, as globs that
    match only it (see `_no_literal_start`)."""
    escaped = "".join(f"[{c}]" if c in "*?[]" else "\\\\" if c == "\\" else c for c in path.rstrip("/"))
    glob = _no_literal_start(escaped)
    return [f":(top,exclude,glob){glob}", f":(top,exclude,glob){glob}/**"]


def _no_literal_start(glob: str) -> str:
    """`glob` with its first character made a one-letter class (`[.]env`, `[f]ixtures/big.bin`).

    git refuses (exit 1, "The following paths are ignored by one of your .gitignore files") a
    pathspec whose literal leading part names an ignored path: a gitignored `.env` copied by
    [workspace] include, or a file linked into an ignored folder, always is. A glob that starts
    with a wildcard has no literal leading part.
    """
    if not glob or glob[0] in "*?[\\":
        return glob
    return f"[{glob[0]}]{glob[1:]}"


def is_dirty(worktree: Path, repo: Path | None = None) -> bool:
    """Tracked files changed (untracked files are the person's business and never block)."""
    return bool(dirty_files(worktree, repo))


def dirty_files(worktree: Path, repo: Path | None = None) -> list[str]:
    """The tracked files changed in the worktree (untracked ones never block a landing)."""
    entries = git("status", "--porcelain", "-z", "--untracked-files=no", "--ignore-submodules=all",
                  cwd=worktree, repo=repo).stdout.split("\0")
    return [entry[3:] for entry in entries if len(entry) > 3]


def commit_all(worktree: Path, message: str, exclude: Sequence[str] = (), *,
               branch: str | None = None, repo: Path | None = None) -> str | None:
    """Commit every change in the worktree but paths matching `exclude` (an agent's scratch
    files) and the files kept out of commits, onto `branch` (default: what HEAD names); return
    the new commit, or None when nothing changed.

    Plumbing rather than `git commit`: the commit goes on `branch` whatever an agent did to HEAD
    (pointed it at main, say), moves it only from the tip just read (compare-and-swap), runs no
    hook, and no automatic maintenance (one more git process per attempt; the person's own
    commits and fetches still run it). A HEAD led astray is put back on `branch`.
    """
    text = _clean_message(message)
    if not text:
        raise GitError(f"`git commit` refused in {worktree}: empty commit message")
    place = checkout_of(worktree, repo)

    def run(*args: str, **options) -> subprocess.CompletedProcess[str]:
        return git(*args, cwd=worktree, repo=repo, place=place, **options)

    if branch is not None:
        ref = f"refs/heads/{branch}"
    elif place is not None:
        head = _read_small(place.git_dir / "HEAD") or ""
        ref = head.removeprefix("ref:").strip() if head.startswith("ref:") else "HEAD"
    else:
        ref = run("symbolic-ref", "-q", "HEAD", check=False).stdout.strip() or "HEAD"
    run(*_add_all_args(kept_out_of_commits(worktree, repo, place), exclude))
    tree = run("write-tree").stdout.strip()
    known = run("rev-parse", f"{ref}^{{commit}}", f"{ref}^{{tree}}", check=False)
    ids = known.stdout.split() if known.returncode == 0 else []
    parent, parent_tree = ids if len(ids) == 2 and all(map(_COMMIT_ID.fullmatch, ids)) else (None, None)
    commit = None
    if tree != parent_tree:
        commit = run("commit-tree", tree, *(["-p", parent] if parent else []), input=text,
                     identity=True).stdout.strip()
        run("update-ref", "-m", f"clawfleet: commit {text.splitlines()[0][:80]}",
            *(["--no-deref"] if ref == "HEAD" else []), ref, commit, parent or "")
    if branch is not None and place is not None \
            and (_read_small(place.git_dir / "HEAD") or "").strip() != f"ref: {ref}":
        run("symbolic-ref", "HEAD", ref)
    return commit


def _clean_message(message: str) -> str:
    """What `git commit -m` keeps of a message: no trailing spaces, no blank lines at either
    end nor two in a row; and no terminal control characters, which `git log` would replay on
    the person's terminal (titles and summaries come from outside: printable.py)."""
    lines: list[str] = []
    for line in printable(message).splitlines():
        line = line.rstrip()
        if line or (lines and lines[-1]):
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


# -- diffs ------------------------------------------------------------------------------

@dataclass
class FileStat:
    path: str
    added: int
    deleted: int


def diff_stats(repo: Path, base: str, head: str) -> list[FileStat]:
    stats = []
    for line in out("diff", *NO_DIFF_PROGRAMS, "--numstat", f"{base}..{head}", cwd=repo).splitlines():
        added, deleted, path = line.split("\t", 2)
        stats.append(FileStat(path, int(added) if added != "-" else 0,
                              int(deleted) if deleted != "-" else 0))
    return stats


def changed_paths(repo: Path, base: str, head: str) -> list[str]:
    """Every path that differs between two commits, unquoted, both sides of a rename (what
    policy checks need: moving AGENTS.md away changes AGENTS.md)."""
    # Not -z: its verbatim bytes need not be UTF-8; git's C-style quoting of odd names is ASCII.
    listed = git("-c", "core.quotePath=true", "diff", "--name-only", "--no-renames", f"{base}..{head}",
                 cwd=repo).stdout
    return [_unquote(path) for path in listed.splitlines() if path]


_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def _unquote(path: str) -> str:
    """A path as git prints it ("a\\303\\251.txt" for a name it quotes), as text."""
    if not (len(path) >= 2 and path[0] == path[-1] == '"'):
        return path
    raw, body, i = bytearray(), path[1:-1], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            if body[i + 1] in "01234567":
                raw.append(int(body[i + 1:i + 4], 8) & 0xFF)
                i += 4
                continue
            raw.append(_C_ESCAPES.get(body[i + 1], ord(body[i + 1])))
            i += 2
            continue
        raw += body[i].encode()
        i += 1
    return raw.decode("utf-8", "surrogateescape")


def diff(repo: Path, base: str, head: str, color: bool = False) -> str:
    return git("diff", *NO_DIFF_PROGRAMS, "--color=always" if color else "--no-color", f"{base}..{head}",
               cwd=repo).stdout


def commits_between(repo: Path, base: str, head: str) -> list[str]:
    return out("rev-list", "--reverse", f"{base}..{head}", cwd=repo).split()


def is_ancestor(repo: Path, older: str, newer: str) -> bool:
    return git("merge-base", "--is-ancestor", older, newer, cwd=repo, check=False).returncode == 0


# -- conflict prediction ----------------------------------------------------------------

def snapshot_commit(worktree: Path, parent: str = "HEAD", repo: Path | None = None) -> str:
    """A commit of everything in the worktree now, committed or not, without touching it.

    A temporary index stands in for the worktree's own, so neither its index nor its files
    change while an agent works there; the commit is dangling and only feeds merge-tree.
    `parent`: the attempt's branch, rather than whatever HEAD an agent left.

    The agent is still at work, so git is not even given the worktree's git dir, which an
    unsandboxed agent could change between the check and git's reading it (a config.worktree
    naming a filter): a git dir of clawfleet's own stands in, the repository's objects and refs
    behind it.
    """
    place = checkout_of(worktree, repo)
    kept_out = kept_out_of_commits(worktree, repo, place)
    with tempfile.TemporaryDirectory(prefix="claw-snap-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        if place is not None:
            shadow = Path(scratch) / "git"
            shadow.mkdir()
            (shadow / "commondir").write_text(f"{place.common}\n")
            head = (_read_small(place.git_dir / "HEAD") or "").strip() if parent == "HEAD" else \
                f"ref: {parent}" if parent.startswith("refs/") else parent
            (shadow / "HEAD").write_text(f"{head}\n")
            place = Checkout(place.work_tree, shadow, place.common)
        git("read-tree", parent, cwd=worktree, env=env, repo=repo, place=place)
        git(*_add_all_args(kept_out), cwd=worktree, env=env, repo=repo, place=place)
        tree = git("write-tree", cwd=worktree, env=env, repo=repo, place=place).stdout.strip()
        result = git("commit-tree", tree, "-p", parent, "-m", "claw radar snapshot", cwd=worktree,
                     identity=True, repo=repo, place=place)
        return result.stdout.strip()


def merge_conflicts(repo: Path, ours: str, theirs: str) -> list[str]:
    """Files that would conflict if `ours` and `theirs` were merged ([] = clean); no worktree used."""
    result = git("merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs,
                 cwd=repo, check=False)
    if result.returncode == 0:
        return []
    if result.returncode != 1:
        raise GitError(f"`git merge-tree` failed: {result.stderr.strip()}",
                       hint="conflict prediction needs git 2.38 or newer")
    return sorted(set(result.stdout.splitlines()[1:]) - {""})


def changed_files(repo: Path, base: str, head: str) -> list[str]:
    return out("diff", *NO_DIFF_PROGRAMS, "--name-only", f"{base}..{head}", cwd=repo).splitlines()


# -- landing ----------------------------------------------------------------------------

def rebase_onto(worktree: Path, head: str, base: str, onto: str, repo: Path | None = None) -> list[str]:
    """Replay base..head onto `onto` in a detached worktree; return conflicted files ([] = ok).

    No branch moves with it (`rebase.updateRefs` in the person's config would move the
    attempt's branch, which points into base..head)."""
    place = checkout_of(worktree, repo)
    git("switch", "--quiet", "--detach", "--discard-changes", head, cwd=worktree, repo=repo, place=place)
    result = git("-c", "rebase.updateRefs=false", "-c", "rebase.autoStash=false", "rebase", "--quiet",
                 "--onto", onto, base, cwd=worktree, check=False, identity=True, repo=repo, place=place)
    if result.returncode == 0:
        return []
    conflicted = out("diff", *NO_DIFF_PROGRAMS, "--name-only", "--diff-filter=U", cwd=worktree, repo=repo,
                     place=place).split()
    git("rebase", "--abort", cwd=worktree, check=False, repo=repo, place=place)
    return conflicted or [f"(rebase failed: {(result.stderr or result.stdout).strip()[:300]})"]


def squash_commit(repo: Path, base: str, head: str, message: str) -> str:
    """One commit on `base` holding `head`'s tree, with `message`: an attempt's work as it lands.
    Made before the rebase, so only the net change is replayed (a fix round's red first commit
    never lands, nor conflicts on its own)."""
    text = _clean_message(message)
    if not text:
        raise GitError("a landing's commit needs a message")
    tree = out("rev-parse", "--verify", f"{head}^{{tree}}", cwd=repo)
    return git("commit-tree", tree, "-p", base, cwd=repo, input=text, identity=True).stdout.strip()


def replay_as_one(repo: Path, base: str, head: str, onto: str, message: str) -> tuple[str | None, list[str]] | None:
    """base..head's net change as one commit on `onto`, by `git merge-tree` (no worktree, a few
    git calls instead of a rebase's many): (the commit, or None when nothing of it is left on
    `onto`; the conflicted files, [] when clean). None when `base` is not an ancestor of `onto`
    (the target was rewritten): the merge base would not be `base`, so the caller rebases."""
    if not is_ancestor(repo, base, onto):
        return None
    result = git("merge-tree", "--write-tree", "--name-only", "--no-messages", onto, head, cwd=repo, check=False)
    if result.returncode not in (0, 1):
        raise GitError(f"`git merge-tree` failed: {result.stderr.strip()}")
    tree, *conflicted = result.stdout.splitlines()
    if result.returncode == 1:
        return None, sorted(set(conflicted) - {""})
    if tree == out("rev-parse", "--verify", f"{onto}^{{tree}}", cwd=repo):
        return None, []
    text = _clean_message(message)
    commit = git("commit-tree", tree, "-p", onto, cwd=repo, input=text, identity=True).stdout.strip()
    return commit, []


def untracked_in_the_way(checkout: Path, paths: Sequence[str], repo: Path | None = None) -> list[str]:
    """Of `paths` (what a landing writes), the untracked, not ignored files in `checkout` that
    `git merge --ff-only` would refuse to overwrite (ignored ones it replaces): at those paths,
    or where one of their folders would go (a file `docs` where the landing writes `docs/a.md`)."""
    if not paths:
        return []
    # lexists and not a folder: a file or a link (never followed) standing where a folder goes
    folders = {str(parent) for path in paths for parent in Path(path).parents if str(parent) != "."}
    blocking = [f for f in sorted(folders) if os.path.lexists(checkout / f)
                and ((checkout / f).is_symlink() or not (checkout / f).is_dir())]
    listed = git("--literal-pathspecs", "-c", "core.quotePath=true", "ls-files", "--others",
                 "--exclude-standard", "--", *paths, *blocking, cwd=checkout, repo=repo).stdout
    return sorted(_unquote(path) for path in listed.splitlines() if path)


# Written in the reflog of what the merge queue moves: the ref watch knows its own landings.
LANDING = "claw: land"


def fast_forward_checkout(worktree: Path, commit: str, repo: Path | None = None) -> None:
    """`git merge --ff-only` in the person's clean checkout. When git fails midway (the disk
    fills) it leaves files half written: those are undone, so the checkout is as it was."""
    head = out("rev-parse", "HEAD", cwd=worktree, repo=repo)
    landing = changed_files(repo or worktree, head, commit)
    theirs = {p for p in landing if os.path.lexists(worktree / p)}  # before: tracked, or the person's
    try:
        git("merge", "--ff-only", "--quiet", commit, cwd=worktree, repo=repo,
            env={"GIT_REFLOG_ACTION": LANDING})
    except GitError:
        if out("rev-parse", "HEAD", cwd=worktree, repo=repo) == head:
            _undo_checkout(worktree, head, landing, theirs, repo)
        raise


def _undo_checkout(worktree: Path, head: str, landing: list[str], theirs: set[str],
                   repo: Path | None) -> None:
    """Put back what a failed fast-forward wrote: files new to the checkout go (first: that
    frees room), files tracked at `head` come back from it. The person's own are never touched."""
    tracked = set(tracked_paths(repo or worktree, head, landing)) if landing else set()
    for path in sorted(set(landing) - theirs - tracked, reverse=True):
        if any((worktree / folder).is_symlink() or (worktree / folder).is_file()
               for folder in Path(path).parents):
            continue  # never through a link, nor under a file of the person's: git wrote nothing there
        (worktree / path).unlink(missing_ok=True)
        for folder in Path(path).parents:
            if str(folder) == "." or (worktree / folder).is_symlink():
                break
            try:
                (worktree / folder).rmdir()  # only the empty ones the landing made
            except OSError:
                break
    if tracked:
        git("checkout", "--quiet", head, "--", *sorted(tracked), cwd=worktree, repo=repo)


def blob_sizes(repo: Path, commit: str, paths: Sequence[str]) -> list[int]:
    """The sizes of these files at `commit` (those it has), as a checkout would write them."""
    if not paths:
        return []
    listing = out("ls-tree", "-r", "-l", "-z", commit, "--", *paths, cwd=repo).split("\0")
    return [int(entry.split()[3]) for entry in listing if entry and entry.split()[3].isdigit()]


def init_repo(path: Path, files: dict[str, str], message: str = "initial commit",
              branch: str = "main") -> None:
    """Make a repository with one commit (used by the demo and tests)."""
    path.mkdir(parents=True, exist_ok=True)
    git("init", "--quiet", "-b", branch, cwd=path)
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git("add", "--all", cwd=path)
    git("commit", "--quiet", "-m", message, cwd=path, identity=True)


def all_branches(repo: Path, prefix: str = "") -> list[str]:
    return out("for-each-ref", "--format=%(refname:short)", f"refs/heads/{prefix}", cwd=repo).split()


def tracked_paths(repo: Path, commit: str, pathspecs: Sequence[str] = ()) -> list[str]:
    return out("ls-tree", "-r", "--name-only", commit, "--", *pathspecs, cwd=repo).splitlines()


def tree_blobs(repo: Path, commit: str) -> dict[str, str]:
    """Every tracked file at `commit` with its blob id (equal ids, equal content); no worktree read."""
    blobs = {}
    for entry in git("ls-tree", "-r", "-z", "--full-tree", commit, cwd=repo).stdout.split("\0"):
        if entry:
            meta, _, path = entry.partition("\t")
            blobs[path] = meta.rsplit(" ", 1)[-1]
    return blobs


def tracked_among(worktree: Path, paths: Sequence[str], repo: Path | None = None) -> set[str]:
    """Which of `paths` (or anything under them) git tracks in this worktree's index."""
    if not paths:
        return set()
    listed = out("ls-files", "--", *(f":(top,literal){p}" for p in paths), cwd=worktree, repo=repo).splitlines()
    return {p for p in paths if any(f == p or f.startswith(p.rstrip("/") + "/") for f in listed)}


def commit_patches(repo: Path, base: str, head: str) -> list[tuple[str, str, str]]:
    """(commit, message, patch) of every commit in base..head, oldest first, for the secret scan.

    Each patch holds only what its commit added and changed (-U0), file ids in full (`--raw`
    lines first, then the diff), without renames, external diffs or text conversion, so what is
    read is what the commit stores; bytes that are not UTF-8 become U+FFFD.
    """
    text = git("log", "--reverse", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames",
               "--full-index", "--no-abbrev", "--raw", "-p", "-U0", "--format=%x00%H%x00%B%x00",
               f"{base}..{head}", cwd=repo, errors="replace").stdout
    parts = text.split("\0")
    return [(parts[i].strip(), parts[i + 1], parts[i + 2].lstrip("\n")) for i in range(1, len(parts) - 2, 3)]


# -- the agent's own git, inside the sandbox ----------------------------------------------

def refresh_agent_git_dir(worktree: Path, admin: Path, common: Path, dest: Path, branch: str) -> None:
    """A git dir of the attempt's own for the agent's git inside the sandbox (GIT_DIR=dest).

    The repository's own git dir is read-only in there, so that no agent moves a ref or
    installs a hook; this one lets `git status`, `git diff`, `git log`, `git stash` and even
    `git commit` work on the agent's side: its objects are the repository's (alternates), its
    refs a copy of the branches and tags, its index a copy of the worktree's. What the agent
    commits here stays here; clawfleet commits the worktree itself, as always. Called before
    each round, so that it starts from the commit clawfleet made of the round before.
    """
    for folder in ("objects/info", "refs/heads", "refs/tags", "info"):
        (dest / folder).mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dest / "refs" / "heads", ignore_errors=True)   # the agent's own commits of last round
    (dest / "refs" / "heads").mkdir()
    (dest / "objects" / "info" / "alternates").write_text(f"{common / 'objects'}\n")
    (dest / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
    (dest / "config").write_text("[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n")
    refs = out("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags", cwd=common)
    (dest / "packed-refs").write_text("# pack-refs with: sorted\n" + "\n".join(
        sorted(line for line in refs.splitlines() if line)) + "\n")
    for name, source in (("index", admin / "index"), ("info/exclude", common / "info" / "exclude")):
        if source.is_file() and not source.is_symlink():
            shutil.copyfile(source, dest / name)


# -- what the ref watch looks at --------------------------------------------------------

def watch_stamp(repo: Path, refs: Sequence[str]) -> tuple:
    """Something that changes whenever one of `refs` (a branch, or a folder of them such as
    `refs/heads/claw`), a hook or the repository's config may have changed; no git process,
    only `lstat`s (git rewrites a ref by renaming a new file over it, or packs it)."""
    common = str(common_dir(repo))
    stamp: list[tuple] = []
    for path in (os.path.join(common, name) for name in ("config", "packed-refs", "hooks", *refs)):
        try:
            info = os.lstat(path)
        except OSError:
            stamp.append((path,))
            continue
        stamp.append((path, info.st_ino, info.st_mtime_ns, info.st_size))
        if stat.S_ISDIR(info.st_mode):
            _stamp_folder(path, stamp)
    return tuple(stamp)


def _stamp_folder(path: str, stamp: list[tuple]) -> None:
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.endswith(".sample"):
            continue  # git never runs these; renaming one to a hook changes the folder itself
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        stamp.append((entry.name, info.st_ino, info.st_mtime_ns, info.st_size))
        if stat.S_ISDIR(info.st_mode):
            _stamp_folder(entry.path, stamp)


def ref_values(repo: Path, patterns: Sequence[str]) -> dict[str, str]:
    """refname -> commit id of every ref matching `patterns` (for-each-ref patterns)."""
    listed = out("for-each-ref", "--format=%(objectname) %(refname)", *patterns, cwd=repo)
    return dict(reversed(line.split(" ", 1)) for line in listed.splitlines() if " " in line)


def hook_digests(repo: Path) -> dict[str, str]:
    """Each hook in the repository's hooks folder (not the `.sample`s git installs) -> a digest of
    what it is: its content, or where it links to (never followed)."""
    folder = common_dir(repo) / "hooks"
    found: dict[str, str] = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        if entry.name.endswith(".sample"):
            continue
        if entry.is_symlink():
            found[entry.name] = "link to " + os.readlink(entry.path)
            continue
        text = _read_small(Path(entry.path), limit=1 << 20)
        found[entry.name] = hashlib.sha256((text or "").encode()).hexdigest()[:16] if text is not None \
            else "not a plain file"
    return found


def config_digests(repo: Path) -> dict[str, str]:
    """Each key of the repository's own config file -> a digest of its value(s): what changed can
    be named without repeating a value (a remote's URL may hold a token)."""
    path = common_dir(repo) / "config"
    listed = git("config", "--file", str(path), "--list", "-z", cwd=repo, check=False).stdout
    values: dict[str, list[str]] = {}
    for item in listed.split("\0"):
        if item:
            key, _, value = item.partition("\n")
            values.setdefault(key, []).append(value)
    return {key: hashlib.sha256("\0".join(v).encode()).hexdigest()[:16] for key, v in values.items()}


@dataclass
class ReflogEntry:
    old: str
    new: str
    who: str        # "Name <email>"
    message: str


def last_reflog_entry(repo: Path, ref: str) -> ReflogEntry | None:
    """The newest entry of `ref`'s reflog (who moved it last, and how), read from its file."""
    path = common_dir(repo) / "logs" / ref
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        os.lseek(fd, max(0, size - 8192), os.SEEK_SET)
        tail = os.read(fd, 8192).decode(errors="replace")
    finally:
        os.close(fd)
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines:
        return None
    head, _, message = lines[-1].partition("\t")
    parts = head.split(" ")
    if len(parts) < 5:
        return None
    who = " ".join(parts[2:-2])
    return ReflogEntry(parts[0], parts[1], who, message)
