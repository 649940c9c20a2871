"""Risk score of an attempt, 0 (trivial) to 100 (look closely), from its diff and its checks,
and the policy files it changes.

The score is a sum of named parts so a person sees why: size, spread, deletions, policy files,
sensitive paths, code changed without tests, checks missing or red.

Policy files are what steers the fleet itself or runs code outside an attempt: clawfleet's
config, the instructions in every prompt, skills, CI, git attributes and hooks. A change to one
is never approved without a person, whatever its score (review.decide, after_ai_review and the
merge queue all ask `policy_files`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .footprint import glob_regex, matches
from .git import FileStat
from .skills import INSTALL_DIRS, SKILLS_DIR

# The one list of policy-file patterns (footprint globs, matched ignoring case).
POLICY_FILES: tuple[str, ...] = (
    # clawfleet's config and checks, and the persona and instructions every prompt holds
    ".claw/**", "**/AGENTS.md", "SOUL.md", "USER.md", "HEARTBEAT.md",
    # skills, where skills.py finds the project's and installs them for each agent kind
    f"{SKILLS_DIR}/**", *(f"{folder}/**" for folder in INSTALL_DIRS.values()),
    # what agent CLIs read as instructions, settings, hooks and MCP servers
    "**/CLAUDE.md", "**/GEMINI.md", ".claude/**", ".codex/**", ".gemini/**", ".agents/**",
    ".opencode/**", "opencode.json", "opencode.jsonc", ".mcp.json", ".aider.conf.yml",
    # CI
    ".github/**", ".gitlab-ci.yml", ".gitlab/**", ".ci/**", ".circleci/**", ".buildkite/**",
    ".travis.yml", "Jenkinsfile", "azure-pipelines.yml", ".azure-pipelines/**",
    "bitbucket-pipelines.yml", ".drone.yml", ".woodpecker.yml", ".woodpecker/**",
    # git: attributes (filters, diff drivers), submodules, hook managers
    "**/.gitattributes", ".gitmodules", ".githooks/**", ".husky/**", ".pre-commit-config.yaml",
    "lefthook.yml", ".lefthook.yml", "lefthook-local.yml",
    # what the person's own tools run when they open or enter the checkout
    ".vscode/**", ".devcontainer/**", ".envrc",
)


# Any case (a checkout on macOS reads .Claude/ as .claude/), any character (a newline in a name).
_POLICY = re.compile("|".join(f"(?:{glob_regex(glob)})" for glob in POLICY_FILES), re.IGNORECASE | re.DOTALL)


def policy_files(paths: Sequence[str]) -> list[str]:
    """The paths among `paths` that are policy files, sorted."""
    return sorted({path for path in paths if _POLICY.fullmatch(path)})


@dataclass
class Risk:
    score: int
    reasons: list[str] = field(default_factory=list)
    policy_files: list[str] = field(default_factory=list)   # a person approves these

    def describe(self) -> str:
        return f"risk {self.score}" + (f" ({'; '.join(self.reasons)})" if self.reasons else "")


def _is_test(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return "/tests/" in f"/{path}" or name.startswith("test_") or name.endswith(("_test.py", ".test.js", ".test.ts", "_test.go"))


def score(stats: Sequence[FileStat], *, checks_passed: bool | None, sensitive: Sequence[str],
          changed: Sequence[str] | None = None) -> Risk:
    """`changed`: every path the diff touches, both sides of a rename (default: the stats' paths)."""
    parts: list[tuple[int, str]] = []
    lines = sum(s.added + s.deleted for s in stats)
    if lines:
        parts.append((min(30, lines // 20), f"{lines} lines changed"))
    if len(stats) > 1:
        parts.append((min(15, int(len(stats) * 1.5)), f"{len(stats)} files"))
    deleted = sum(s.deleted for s in stats)
    if deleted > 20 and deleted > lines / 2:
        parts.append((10, f"mostly deletions ({deleted} lines)"))
    policy = policy_files([s.path for s in stats] if changed is None else changed)
    if policy:
        parts.append((30, "policy files: " + ", ".join(policy[:3]) + (" ..." if len(policy) > 3 else "")))
    touched = sorted({s.path for s in stats for glob in sensitive if matches(glob, s.path)} - set(policy))
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
    return Risk(total, [reason for points, reason in parts if points], policy)
