"""Text from outside (titles, bodies, agents' summaries and logs, file contents) made safe to show
on a terminal or write into a commit message.

A terminal obeys escape sequences wherever they come from: `\\x1b]0;pwned\\x07` retitles the
window, `\\x1b[2J` clears the screen, an OSC 52 sequence writes the clipboard. clawfleet shows
what agents and tasks wrote, so every such control character is shown as its escape instead:

>>> printable("fix \\x1b[2Jit")
'fix \\\\x1b[2Jit'
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls; bidirectional overrides and isolates, which
# reorder what a line seems to say; lone surrogates, which are the undecodable bytes of
# Python's surrogateescape (and can be neither printed nor encoded as UTF-8).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# What `git diff --color` and test runners colour with: Select Graphic Rendition only.
_SGR = re.compile(r"\x1b\[[0-9;:]*m")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # the byte surrogateescape stood in for
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, colour: bool = False) -> str:
    """`text` with every control character (but tab and newline) shown as an escape such as
    `\\x1b`; with `colour`, colour sequences (SGR) are kept as they are."""
    if not colour:
        return _UNSAFE.sub(_shown, text)
    parts = []
    last = 0
    for match in _SGR.finditer(text):
        parts += [_UNSAFE.sub(_shown, text[last:match.start()]), match.group()]
        last = match.end()
    parts.append(_UNSAFE.sub(_shown, text[last:]))
    return "".join(parts)


def escape(text: str) -> str:
    """For rich markup: `printable(text)` with its markup escaped (what every surface prints)."""
    from rich.markup import escape as escape_markup  # here: git.py imports this module, rich unneeded

    return escape_markup(printable(text))
