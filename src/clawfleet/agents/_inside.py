"""Files read and written for an agent, by clawfleet, only inside the agent's worktree.

An ACP agent asks its client (clawfleet) to read and write files: clawfleet does that outside
the agent's sandbox, so a path that leads out of the worktree would let the agent reach what the
sandbox hides. Every path is therefore resolved (symlinks followed) and must land inside the
worktree's real path, and not in git's own files (`.git`: a rewritten `.git` file redirects
clawfleet's next git call). The file is then opened component by component from the worktree
with O_NOFOLLOW, so a symlink swapped in after the check is refused instead of followed. Only
regular files are read (a FIFO would hang the runner) and at most MAX_READ_BYTES of them. A write
goes to a new file renamed over the old one: it never writes through a hard link into a file
that lives elsewhere as well.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

MAX_READ_BYTES = 10 * 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(Exception):
    """The path is not one clawfleet reads or writes for the agent; the message says why."""


class Missing(Refused):
    """The path is inside the worktree, but no such file is there (yet)."""


def parts_inside(root: Path, path: str) -> tuple[str, ...]:
    """`path` (absolute, or relative to `root`) as components under root's real path."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise Refused(f"{path!r} is not a path")
    real_root = os.path.realpath(root)
    resolved = os.path.realpath(os.path.join(real_root, path))   # join keeps an absolute path as is
    relative = os.path.relpath(resolved, real_root)
    if relative == os.curdir:
        raise Refused(f"{path} is the worktree itself, not a file in it")
    parts = tuple(relative.split(os.sep))
    if parts[0] == os.pardir:
        raise Refused(f"{path} is outside the worktree" + (f" (it leads to {resolved})" if resolved != path else ""))
    if ".git" in parts:
        raise Refused(f"{path} is one of git's own files, which only clawfleet changes")
    return parts


def is_inside(root: Path, path: str) -> bool:
    try:
        parts_inside(root, path)
    except Refused:
        return False
    return True


def _open_parent(root: Path, parts: tuple[str, ...], create: bool) -> int:
    """A descriptor of the folder holding parts[-1], reached from root without following a symlink."""
    fd = os.open(os.path.realpath(root), _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o777, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _refusal(path: str, error: OSError) -> Refused:
    if error.errno == errno.ENOENT:
        return Missing(f"{path}: no such file")
    if error.errno in (errno.ELOOP, errno.ENOTDIR):
        return Refused(f"{path} leads through a symlink or a non-folder; refused")
    return Refused(f"{path}: {error.strerror or error}")


def read_text(root: Path, path: str, line: int | None = None, limit: int | None = None) -> str:
    """The file's text (from 1-based `line`, at most `limit` lines), decoded as UTF-8."""
    parts = parts_inside(root, path)
    try:
        parent = _open_parent(root, parts, create=False)
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
        finally:
            os.close(parent)
    except OSError as error:
        raise _refusal(path, error) from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise Refused(f"{path} is not a regular file")
        data = handle.read(MAX_READ_BYTES + 1)
    if len(data) > MAX_READ_BYTES:
        raise Refused(f"{path} is larger than {MAX_READ_BYTES // (1024 * 1024)} MB")
    text = data.decode("utf-8", errors="replace")
    if line is None and limit is None:
        return text
    lines = text.splitlines(keepends=True)
    start = max((line or 1) - 1, 0)
    return "".join(lines[start:start + limit] if limit is not None else lines[start:])


def write_text(root: Path, path: str, content: str) -> int:
    """Write the file whole (its folders made as needed); the bytes written."""
    parts = parts_inside(root, path)
    data = content.encode("utf-8")
    try:
        parent = _open_parent(root, parts, create=True)
    except OSError as error:
        raise _refusal(path, error) from None
    name, temporary = parts[-1], f".{parts[-1]}.claw-{os.getpid()}.tmp"
    try:
        mode = 0o644
        try:
            existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            if stat.S_ISREG(existing.st_mode):
                mode = stat.S_IMODE(existing.st_mode)
            elif not stat.S_ISLNK(existing.st_mode):   # a symlink is replaced, never followed
                raise Refused(f"{path} is not a regular file")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            try:
                os.unlink(temporary, dir_fd=parent)
            except OSError:
                pass
            raise
    except OSError as error:
        raise _refusal(path, error) from None
    finally:
        os.close(parent)
    return len(data)
