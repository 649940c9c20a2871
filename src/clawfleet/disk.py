"""The disk clawfleet writes to: how much room it has, and one clear error when it is full.

A full disk is the person's to fix (free space), never a traceback: `DiskFull` says which disk.
Landing checks the room first (`room_for`); what a check cannot foresee (files run out, another
program fills the disk meanwhile) the landing undoes (see mergequeue.py).
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path

from .errors import ClawError

MARGIN = 1 << 20   # below this much free space a disk counts as full
BLOCK = 4096       # a file takes whole blocks: room is counted in them


class DiskFull(ClawError):
    def __init__(self, path: Path | str) -> None:
        super().__init__(f"the disk holding {path} is full",
                         hint="free space, then `claw run` again (read-only commands such as "
                              "`claw status` still work)")
        self.path = path


def free_bytes(path: Path) -> int:
    """Free space on the disk holding `path` (or its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def is_full(path: Path) -> bool:
    return free_bytes(path) < MARGIN


def room_for(path: Path, sizes: list[int]) -> bool:
    """Whether files of these sizes fit on the disk holding `path`, keeping the margin free."""
    need = sum(-(-size // BLOCK) * BLOCK for size in sizes) + MARGIN
    return free_bytes(path) >= need


def is_full_error(error: BaseException) -> bool:
    """An error that means the disk (or its quota) is full."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, sqlite3.OperationalError):
        return "full" in str(error)
    return "No space left on device" in str(error)


def full_disk_of(error: BaseException, fallback: Path) -> Path | None:
    """Which disk a failure filled: the file it names, else `fallback`; None if not a full disk."""
    if not is_full_error(error) and not (isinstance(error, sqlite3.OperationalError)
                                         and "disk I/O error" in str(error) and is_full(fallback)):
        return None
    name = getattr(error, "filename", None)
    return Path(os.fsdecode(name)) if name else fallback
