"""One error family for everything a person can fix: a message and a hint."""

from __future__ import annotations


class ClawError(Exception):
    """An error the person can act on. `hint` says how to fix it.

    >>> raise ClawError("not a git repository: /tmp/x", hint="run `git init` there first")
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(ClawError):
    """Bad arguments on the command line."""

    exit_code = 2


class ConfigError(ClawError):
    """`.claw/config.toml` is missing, unreadable or invalid."""


class GitError(ClawError):
    """git refused or failed; the message carries git's own words."""


class NotFound(ClawError):
    """A task or attempt id that does not exist."""


class StoreBusy(ClawError):
    """The database stayed locked past the busy timeout."""


class StoreDamaged(ClawError):
    """The database file is corrupt (or was emptied): nothing more is written into it."""
