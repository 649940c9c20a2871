"""Footprints: the paths a task expects to touch, as globs, and when two of them overlap.

Globs are matched against the repository's tracked files. A glob that matches nothing yet (a
file the task will create) is compared by its literal directory prefix: `src/api/**` and
`src/api/v2/new.py` overlap, `src/api/**` and `docs/**` do not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_WILDCARD = re.compile(r"[*?\[]")


def matches(glob: str, path: str) -> bool:
    """`**` crosses folders, `*` does not; a bare folder name covers everything under it."""
    glob = glob.strip().removeprefix("./")
    if not _WILDCARD.search(glob):
        return path == glob or path.startswith(glob.rstrip("/") + "/")
    return re.fullmatch(_translate(glob), path) is not None


def glob_regex(glob: str) -> str:
    """The regular expression (for `re.fullmatch`) of a glob with wildcards, as `matches` reads it."""
    return _translate(glob.strip().removeprefix("./"))


def _translate(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and "]" in glob[i + 2:]:
            end = glob.index("]", i + 2)
            members = glob[i + 1:end]
            out.append("[" + ("^" + members[1:] if members.startswith("!") else members) + "]")
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def literal_prefix(glob: str) -> str:
    """The folder part before the first wildcard: `src/api/*.py` -> `src/api/`."""
    glob = glob.strip().removeprefix("./")
    cut = _WILDCARD.search(glob)
    head = glob[:cut.start()] if cut else glob
    return head if cut is None else head[: head.rfind("/") + 1]


def expand(globs: Iterable[str], files: Sequence[str]) -> set[str]:
    return {path for path in files for glob in globs if matches(glob, path)}


def overlap(ours: Sequence[str], theirs: Sequence[str], files: Sequence[str]) -> list[str]:
    """What two footprints share: common files, or nested prefixes of globs that match nothing."""
    if not ours or not theirs:
        return []
    shared = expand(ours, files) & expand(theirs, files)
    if shared:
        return sorted(shared)
    found = []
    for a in ours:
        for b in theirs:
            if expand([a], files) and expand([b], files):
                continue  # both name existing files and share none
            pa, pb = literal_prefix(a), literal_prefix(b)
            if pa.startswith(pb) or pb.startswith(pa):
                found.append(a if len(pa) >= len(pb) else b)
    return sorted(set(found))
