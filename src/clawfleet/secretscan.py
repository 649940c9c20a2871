"""The secret scan: a diff that holds a secret never lands.

Before an attempt can be ready, every commit it made (not only the end result: landing keeps
each commit, so a key added and then removed would still reach the target's history) is read
for three things:

- known secret values (the redactor's strong ones: provider keys, the gateway's upstream keys,
  `[secrets] env`, credentials in the files `[workspace] include` copies), in any added line
  and in commit messages;
- copies of an included file, by content: a blob equal to `.env`'s under any name;
- credentials nobody told us about, found by detect-secrets (high-entropy strings, key formats
  of ~25 services, private keys) with its own false-positive filters;
  a line marked `pragma: allowlist secret` is detect-secrets' way to say "not a secret".

A finding names the file and line (and the commit), and what kind of secret, never the value.

    findings = scan(project_root, base, head, redact.current(), included=[root / ".env"])
    if findings: reason = describe(findings)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import git
from .redact import Redactor

MAX_INCLUDED_BYTES = 16 << 20
_RAW = re.compile(r"^:\d+ \d+ [0-9a-f]+ ([0-9a-f]+) [A-Z]\d*\t(.*)$")


@dataclass(frozen=True)
class Finding:
    path: str            # the file, or "commit message"
    line: int            # 1-based in the file as that commit left it; 0 for a whole file
    commit: str
    what: str            # "the value of $OPENAI_API_KEY", "a copy of .env", "Base64 High Entropy String"

    def describe(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where} ({self.what}, commit {self.commit[:10]})"


def scan(repo: Path, base: str, head: str, redactor: Redactor, *,
         included: Sequence[Path] = (), use_detector: bool = True) -> list[Finding]:
    """What in the commits base..head looks like a secret (empty when nothing does)."""
    findings: list[Finding] = []
    copies = _blob_ids(included)
    for commit, message, patch in git.commit_patches(repo, base, head):
        for secret in redactor.found(message, strong_only=True):
            findings.append(Finding("commit message", 0, commit, secret.source))
        diff_at = patch.find("diff --git ")
        raw, diff = (patch[:diff_at], patch[diff_at:]) if diff_at >= 0 else (patch, "")
        for line in raw.splitlines():
            match = _RAW.match(line)
            if match and match.group(1) in copies:
                findings.append(Finding(_unquote(match.group(2)), 0, commit, f"a copy of {copies[match.group(1)]}"))
        if not diff:
            continue
        for path, number, text in _added_lines(diff):
            for secret in redactor.found(text, strong_only=True):
                findings.append(Finding(path, number, commit, secret.source))
        if use_detector:
            findings += _detected(diff, commit)
    return _unique(findings)


def describe(findings: Sequence[Finding], files: int = 6) -> str:
    """One line for a failed attempt: each file with its lines and what was found, never a value.

    >>> describe([Finding("k.txt", 1, "ab12", "the value of $OPENAI_API_KEY")])
    'the diff holds what looks like a secret, so it must not land: k.txt:1 (the value of ...'
    """
    by_path: dict[str, list[Finding]] = {}
    for finding in findings:
        by_path.setdefault(finding.path, []).append(finding)
    parts = []
    for path, found in list(by_path.items())[:files]:
        lines = sorted({f.line for f in found if f.line})
        where = path + (":" + ",".join(map(str, lines[:5])) + (",..." if len(lines) > 5 else "") if lines else "")
        kinds = list(dict.fromkeys(f.what for f in found))
        what = "; ".join(kinds[:3]) + (f"; {len(kinds) - 3} more" if len(kinds) > 3 else "")
        parts.append(f"{where} ({what}, commit {found[0].commit[:10]})")
    more = f" and {len(by_path) - files} more file(s)" if len(by_path) > files else ""
    return (f"the diff holds what looks like a secret, so it must not land: {', '.join(parts)}{more}. "
            "Its branch keeps the work; remove the secret (from every commit), or mark a line that "
            "is no secret with `pragma: allowlist secret`")


# -- the pieces -------------------------------------------------------------------------------

def warm() -> None:
    """Load detect-secrets and its plugins now (about a second on a loaded 2-core machine): the
    zygote does it once when idle, so the runners it forks scan without paying it."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.core.scan import scan_diff  # noqa: F401
    from unidiff import PatchSet  # noqa: F401

    get_mapping_from_secret_type_to_class()


def _blob_ids(paths: Iterable[Path]) -> dict[str, str]:
    """Git's id (SHA-1 blob hash) of each included file's content: a commit storing the same
    content under any name is a copy."""
    ids = {}
    for path in paths:
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_INCLUDED_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if data.strip():
            ids[hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()] = path.name
    return ids


def _added_lines(diff: str) -> list[tuple[str, int, str]]:
    """(path, line number, text) of every added line of a unified diff."""
    from unidiff import PatchSet
    from unidiff.errors import UnidiffParseError

    try:
        patches = PatchSet.from_string(diff)
    except UnidiffParseError:
        return [("?", 0, line[1:]) for line in diff.splitlines() if line.startswith("+")
                and not line.startswith("+++ ")]
    return [(patched.path, line.target_line_no or 0, line.value)
            for patched in patches for hunk in patched for line in hunk if line.is_added]


def _detected(diff: str, commit: str) -> list[Finding]:
    """detect-secrets' findings in a diff: its plugins but the keyword one, its default filters."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings
    from unidiff.errors import UnidiffParseError

    found = SecretsCollection()
    with default_settings() as settings:
        # Its "is the file there?" filter looks in the current folder; the diff is the truth here.
        settings.disable_filters("detect_secrets.filters.common.is_invalid_file")
        # The keyword plugin flags names, not values (`api_key_env = "OPENAI_API_KEY"`): on this
        # repository's last 60 commits it was its only finding, twice, both wrong.
        settings.disable_plugins("KeywordDetector")
        try:
            found.scan_diff(diff)
        except UnidiffParseError:
            return []
    return [Finding(path, secret.line_number, commit, secret.type) for path, secret in found]


def _unique(findings: list[Finding]) -> list[Finding]:
    seen, kept = set(), []
    for finding in findings:
        key = (finding.path, finding.line, finding.commit)
        if key not in seen:
            seen.add(key)
            kept.append(finding)
    return kept


def _unquote(path: str) -> str:
    if len(path) >= 2 and path[0] == path[-1] == '"':
        return path[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape", "replace")
    return path
