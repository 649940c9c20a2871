"""Files private to their user: what clawfleet keeps under `.claw/run` is 0600 in 0700 folders.

The database, logs, transcripts, attempt folders and gateway.secret hold what agents, models and
checks said, and secrets; nobody else on the machine reads them. Files are created with their
mode (never written wider first), and never through a symlink.

    private.write_text(attempt_dir / "prompt-0.md", prompt)
    private.folder(project.run_dir)
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def write_text(path: Path, text: str) -> None:
    """Write `path` anew, 0600 from its creation on; a symlink there is refused (ELOOP)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def folder(path: Path) -> Path:
    """Make `path` (and its missing parents) 0700, and narrow it to 0700 if it is wider."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(FOLDER_MODE)
    return path


def narrow(path: Path) -> None:
    """Make an existing file 0600 when it is readable by others (one made by an older version)."""
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(FILE_MODE)
    except OSError:
        pass


# -- the process umask --------------------------------------------------------------------

_person_umask: int | None = None


def restrict_process() -> None:
    """Make every file this process (and what it starts) creates from now on 0600, every folder
    0700: umask 077. For the orchestrator and the runners, whose files live in `.claw/run` and
    come from many modules; the person's own umask is kept for `as_the_person_would`."""
    global _person_umask
    previous = os.umask(0o077)
    if _person_umask is None:
        _person_umask = previous


def as_the_person_would(checkout: Path, paths: list[str], new_folders: list[str]) -> None:
    """Give files clawfleet wrote into the person's checkout (a landing's fast-forward) the modes
    the person's umask gives, not the 0600 of `restrict_process`; and the folders it made too."""
    if _person_umask is None:
        return  # never restricted: git wrote them with the person's umask already
    for relative in paths:
        path = checkout / relative
        try:
            if path.is_symlink() or not path.is_file():
                continue
            executable = path.stat().st_mode & 0o100
            path.chmod((0o777 if executable else 0o666) & ~_person_umask)
        except OSError:
            pass
    for relative in new_folders:
        try:
            (checkout / relative).chmod(0o777 & ~_person_umask)
        except OSError:
            pass
