"""Risk score of an attempt, 0 (trivial) to 100 (look closely), from its diff and its checks.

The score is a sum of named parts so a person sees why: size, spread, deletions, sensitive
paths, code changed without tests, checks missing or red.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .footprint import matches
from .git import FileStat


@dataclass
class Risk:
    score: int
    reasons: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"risk {self.score}" + (f" ({'; '.join(self.reasons)})" if self.reasons else "")


def _is_test(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return "/tests/" in f"/{path}" or name.startswith("test_") or name.endswith(("_test.py", ".test.js", ".test.ts", "_test.go"))


def score(stats: Sequence[FileStat], *, checks_passed: bool | None, sensitive: Sequence[str]) -> Risk:
    parts: list[tuple[int, str]] = []
    lines = sum(s.added + s.deleted for s in stats)
    if lines:
        parts.append((min(30, lines // 20), f"{lines} lines changed"))
    if len(stats) > 1:
        parts.append((min(15, int(len(stats) * 1.5)), f"{len(stats)} files"))
    deleted = sum(s.deleted for s in stats)
    if deleted > 20 and deleted > lines / 2:
        parts.append((10, f"mostly deletions ({deleted} lines)"))
    touched = sorted({s.path for s in stats for glob in sensitive if matches(glob, s.path)})
    if touched:
        parts.append((25, "sensitive: " + ", ".join(touched[:3])))
    code = [s for s in stats if not _is_test(s.path) and not s.path.endswith((".md", ".txt", ".rst"))]
    if code and not any(_is_test(s.path) for s in stats):
        parts.append((15, "code changed without tests"))
    if checks_passed is None:
        parts.append((20, "no checks ran"))
    elif not checks_passed:
        parts.append((40, "checks failed"))
    total = min(100, sum(points for points, _ in parts))
    return Risk(total, [reason for points, reason in parts if points])
