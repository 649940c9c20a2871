"""Durations written for people: what the CLI, the TUI and the daemon's messages show."""

from __future__ import annotations


def ago(seconds: float) -> str:
    """A short duration: 42s, 3m05s, 2h10m."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
