"""The only module that runs git. Everything here calls the real `git` program."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import ClawError, GitError

GIT_TIMEOUT_S = 300.0
# Commits made by clawfleet must not depend on the person's global git identity being set.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "clawfleet", "GIT_AUTHOR_EMAIL": "claw@localhost",
    "GIT_COMMITTER_NAME": "clawfleet", "GIT_COMMITTER_EMAIL": "claw@localhost",
}


def git(*args: str, cwd: Path, check: bool = True, input: str | None = None,
        timeout: float = GIT_TIMEOUT_S, identity: bool = False,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})}
    if identity and not _has_identity(cwd):
        env.update(_IDENTITY)
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                input=input, timeout=timeout, env=env)
    except FileNotFoundError as error:
        raise ClawError("git is not installed", hint="install git (apt-get install git)") from error
    except subprocess.TimeoutExpired as error:
        raise GitError(f"`git {' '.join(args[:3])}` took more than {timeout:.0f} s in {cwd}") from error
    if check and result.returncode != 0:
        raise GitError(f"`git {' '.join(args[:4])}` failed in {cwd}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def _has_identity(cwd: Path) -> bool:
    if os.environ.get("GIT_AUTHOR_EMAIL") and os.environ.get("GIT_COMMITTER_EMAIL"):
        return True
    result = subprocess.run(["git", "config", "user.email"], cwd=cwd, capture_output=True, text=True)
    return result.returncode == 0 and bool(result.stdout.strip())


def out(*args: str, cwd: Path) -> str:
    return git(*args, cwd=cwd).stdout.strip()


# -- the repository ---------------------------------------------------------------------

def toplevel(path: Path) -> Path:
    result = git("rev-parse", "--show-toplevel", cwd=path, check=False)
    if result.returncode != 0:
        raise ClawError(f"{path} is not inside a git repository",
                        hint="run claw in a git repository, or `git init` one first")
    return Path(result.stdout.strip())


def common_dir(repo: Path) -> Path:
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


def current_branch(worktree: Path) -> str | None:
    result = git("symbolic-ref", "--short", "-q", "HEAD", cwd=worktree, check=False)
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
        git("worktree", "remove", "--force", "--force", str(path), cwd=repo, check=False)
        git("worktree", "prune", cwd=repo, check=False)


def start_branch(worktree: Path, branch: str, base: str) -> None:
    """Put a (clean, detached) pooled worktree on a new branch at `base`."""
    if (detached_head(worktree) or out("rev-parse", "HEAD", cwd=worktree)) == base:
        # Already there: without a start point git only writes the branch, no checkout pass.
        git("switch", "--quiet", "--force-create", branch, cwd=worktree)
    else:
        git("switch", "--quiet", "--force-create", branch, base, cwd=worktree)


def detached_head(worktree: Path) -> str | None:
    """The commit a detached worktree is at, read from its HEAD file without starting git (a
    pooled worktree is detached, and every hand-out asks); None when HEAD names a branch or the
    file is not a plain commit id, and then only git can say."""
    try:
        text = (admin_dir(worktree) / "HEAD").read_text().strip()
    except OSError:
        return None
    return text if _COMMIT_ID.fullmatch(text) else None


_COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def reset_worktree(worktree: Path, commit: str, keep_ignored: bool = False) -> None:
    """Return a worktree to a clean detached state at `commit` (for reuse by the pool).

    `keep_ignored` keeps ignored files (installed dependencies, build caches: what a setup made).
    """
    git("switch", "--quiet", "--detach", "--discard-changes", commit, cwd=worktree)
    # -ff: nested repositories an agent made go too
    git("clean", "-ffdq" if keep_ignored else "-ffdxq", cwd=worktree)


def uncommitted(worktree: Path) -> list[str]:
    """Paths with uncommitted changes: tracked files changed, untracked files not ignored."""
    entries = git("status", "--porcelain", "-z", "--untracked-files=all", cwd=worktree).stdout.split("\0")
    return [entry[3:] for entry in entries if len(entry) > 3]


def admin_dir(worktree: Path) -> Path:
    """The worktree's own folder inside the repository's git directory (`.git/worktrees/NAME`)."""
    dot_git = worktree / ".git"
    if dot_git.is_file():
        text = dot_git.read_text().strip()
        if text.startswith("gitdir:"):
            found = Path(text.removeprefix("gitdir:").strip())
            return found if found.is_absolute() else (worktree / found).resolve()
    return dot_git


_KEPT_OUT = "claw-kept-out"


def keep_out_of_commits(worktree: Path, paths: Sequence[str]) -> None:
    """Never let clawfleet's commits (commit_all, snapshot_commit) take these untracked paths.

    For files copied into a workspace, such as `.env`. The list lives in the worktree's own git
    folder because `info/exclude` is shared by every worktree, the person's checkout included.
    """
    record = admin_dir(worktree) / _KEPT_OUT
    if paths:
        record.write_text("".join(f"{p}\n" for p in paths))
    elif record.exists():
        record.unlink()


def kept_out_of_commits(worktree: Path) -> list[str]:
    try:
        return [p for p in (admin_dir(worktree) / _KEPT_OUT).read_text().splitlines() if p]
    except OSError:
        return []


def committed_kept_out(worktree: Path, base: str) -> list[str]:
    """Paths kept out of commits that a commit since `base` took anyway (an agent's own `git add -A`)."""
    kept_out = kept_out_of_commits(worktree)
    if not kept_out:
        return []
    return out("diff", "--name-only", base, "HEAD", "--",
               *(f":(top,literal){p}" for p in kept_out), cwd=worktree).splitlines()


def _add_all_args(worktree: Path, exclude: Sequence[str] = ()) -> list[str]:
    kept_out = kept_out_of_commits(worktree)
    if not kept_out and not exclude:
        return ["add", "--all"]
    return ["add", "--all", "--", ":/", *(f":(top,exclude,literal){p}" for p in kept_out),
            *(f":(top,exclude,glob){pattern}" for pattern in exclude)]


def is_dirty(worktree: Path) -> bool:
    """Tracked files changed (untracked files are the person's business and never block)."""
    return bool(out("status", "--porcelain", "--untracked-files=no", cwd=worktree))


def commit_all(worktree: Path, message: str, exclude: Sequence[str] = ()) -> str | None:
    """Commit every change in the worktree but paths matching `exclude` (an agent's scratch
    files) and the files kept out of commits; return the new commit, or None when nothing changed."""
    git(*_add_all_args(worktree, exclude), cwd=worktree)
    # Commit straight away; only when that fails ask whether there was anything to commit
    # (one git call fewer for every attempt that changed something). No automatic maintenance
    # after each of the fleet's commits: it is one more git process per attempt, and the
    # person's own commits and fetches still run it.
    result = git("-c", "maintenance.auto=false", "commit", "--quiet", "--no-verify", "-m", message,
                 cwd=worktree, identity=True, check=False)
    if result.returncode != 0:
        if git("diff", "--cached", "--quiet", cwd=worktree, check=False).returncode == 0:
            return None
        raise GitError(f"`git commit` failed in {worktree}: {result.stderr.strip() or result.stdout.strip()}")
    return out("rev-parse", "HEAD", cwd=worktree)


# -- diffs ------------------------------------------------------------------------------

@dataclass
class FileStat:
    path: str
    added: int
    deleted: int


def diff_stats(repo: Path, base: str, head: str) -> list[FileStat]:
    stats = []
    for line in out("diff", "--numstat", f"{base}..{head}", cwd=repo).splitlines():
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
    return git("diff", "--color=always" if color else "--no-color", f"{base}..{head}",
               cwd=repo).stdout


def commits_between(repo: Path, base: str, head: str) -> list[str]:
    return out("rev-list", "--reverse", f"{base}..{head}", cwd=repo).split()


def is_ancestor(repo: Path, older: str, newer: str) -> bool:
    return git("merge-base", "--is-ancestor", older, newer, cwd=repo, check=False).returncode == 0


# -- conflict prediction ----------------------------------------------------------------

def snapshot_commit(worktree: Path) -> str:
    """A commit of everything in the worktree now, committed or not, without touching it.

    A temporary index stands in for the worktree's own, so neither its index nor its files
    change while an agent works there; the commit is dangling and only feeds merge-tree.
    """
    with tempfile.TemporaryDirectory(prefix="claw-snap-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        git("read-tree", "HEAD", cwd=worktree, env=env)
        git(*_add_all_args(worktree), cwd=worktree, env=env)
        tree = git("write-tree", cwd=worktree, env=env).stdout.strip()
        result = git("commit-tree", tree, "-p", "HEAD", "-m", "claw radar snapshot", cwd=worktree,
                     identity=True)
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
    return out("diff", "--name-only", f"{base}..{head}", cwd=repo).splitlines()


# -- landing ----------------------------------------------------------------------------

def rebase_onto(worktree: Path, head: str, base: str, onto: str) -> list[str]:
    """Replay base..head onto `onto` in a detached worktree; return conflicted files ([] = ok)."""
    git("switch", "--quiet", "--detach", "--discard-changes", head, cwd=worktree)
    result = git("rebase", "--quiet", "--onto", onto, base, cwd=worktree, check=False, identity=True)
    if result.returncode == 0:
        return []
    conflicted = out("diff", "--name-only", "--diff-filter=U", cwd=worktree).split()
    git("rebase", "--abort", cwd=worktree, check=False)
    return conflicted or [f"(rebase failed: {(result.stderr or result.stdout).strip()[:300]})"]


def fast_forward_checkout(worktree: Path, commit: str) -> None:
    git("merge", "--ff-only", "--quiet", commit, cwd=worktree)


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


def tracked_among(worktree: Path, paths: Sequence[str]) -> set[str]:
    """Which of `paths` (or anything under them) git tracks in this worktree's index."""
    if not paths:
        return set()
    listed = out("ls-files", "--", *(f":(top,literal){p}" for p in paths), cwd=worktree).splitlines()
    return {p for p in paths if any(f == p or f.startswith(p.rstrip("/") + "/") for f in listed)}


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
