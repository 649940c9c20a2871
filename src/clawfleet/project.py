"""A repository that clawfleet works on: where its config, database, worktrees and logs live."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from . import git
from .config import Config, load_config
from .errors import ClawError
from .store import Store

if TYPE_CHECKING:
    from .redact import Redactor


@dataclass
class Project:
    root: Path

    @classmethod
    def find(cls, start: Path | None = None) -> "Project":
        """The project of the git repository containing `start` (default: the current folder).

        Inside one of clawfleet's own worktrees this still finds the person's main checkout.
        """
        if start is None:
            try:
                start = Path.cwd()
            except FileNotFoundError:
                raise ClawError("the current folder no longer exists (deleted, or a removed worktree)",
                                hint="cd into your repository and run claw again") from None
        top = git.toplevel(start)
        main_checkout = git.common_dir(top).parent
        return cls(main_checkout if (main_checkout / ".git").exists() else top)

    @property
    def claw_dir(self) -> Path:
        return self.root / ".claw"

    @property
    def run_dir(self) -> Path:
        return self.claw_dir / "run"

    @property
    def config_path(self) -> Path:
        return self.claw_dir / "config.toml"

    @property
    def attempts_dir(self) -> Path:
        return self.run_dir / "attempts"

    @property
    def worktrees_dir(self) -> Path:
        return self.run_dir / "worktrees"

    def attempt_dir(self, attempt_id: int) -> Path:
        return self.attempts_dir / str(attempt_id)

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    @cached_property
    def store(self) -> Store:
        self.redactor  # whatever this process writes to the store is redacted with our secrets
        return Store(self.run_dir / "claw.db")

    @cached_property
    def redactor(self) -> "Redactor":
        """This process's redactor, taught this project's secrets (redact.py); a config that
        cannot be read teaches none (the error is the config's to report)."""
        from . import redact
        from .errors import ConfigError

        try:
            return redact.for_project(self)
        except ConfigError:
            return redact.current()

    def latest_attempt(self, task_id: int):
        """The task's latest attempt; a ClawError when the task has none yet (or does not exist)."""
        self.store.get_task(task_id)
        attempt = self.store.latest_attempt(task_id)
        if attempt is None:
            raise ClawError(f"task {task_id} has no attempt yet", hint="`claw run` starts queued tasks")
        return attempt

    def secret_sources(self) -> dict[str, list[str]]:
        """What an attempt's runner must know to redact and scan for this project's secrets: the
        names of the variables that hold them and the included files (never their values)."""
        from . import redact

        included: list[Path] = []
        if self.config.workspace.include or self.config.workspace.link:
            from .includes import include_paths

            included = redact.files_under(self.root / path for path, _ in include_paths(self, self.config.workspace))
        return {"env": redact.config_secret_names(self.config), "files": [str(path) for path in included]}

    def make_private(self) -> None:
        """`.claw/run` and the folders clawfleet keeps there, 0700: private to the user, whatever
        an older version or the umask made them."""
        from . import private

        for folder in (self.run_dir, self.attempts_dir, self.worktrees_dir):
            private.folder(folder)

    def require_commits(self) -> None:
        if not git.has_commits(self.root):
            raise ClawError(f"{self.root} has no commits yet",
                            hint="make a first commit (git add -A && git commit -m init), then retry")

    def target_tip(self) -> str:
        target = self.config.fleet.target
        tip = git.branch_tip(self.root, target)
        if tip is None:
            self.require_commits()  # the likelier reason, with its own hint
            raise ClawError(f"the target branch '{target}' does not exist in {self.root}",
                            hint="create it, or set `target` under [fleet] in .claw/config.toml")
        return tip


def initialize(root: Path, *, target: str | None = None, checks: list[str] | None = None) -> list[str]:
    """Set up clawfleet in the repository at `root`; return what was written.

    Writes `.claw/config.toml` (commented defaults), starter AGENTS.md, SOUL.md and USER.md when absent,
    and keeps `.claw/run/` out of git through `.git/info/exclude`. Never overwrites a file.
    """
    from importlib import resources

    from .config import DEFAULT_CONFIG

    top = git.toplevel(root)
    current = git.current_branch(top) or "main"
    config_path = top / ".claw" / "config.toml"
    if target and target != current and not config_path.exists() and git.branch_tip(top, target) is None:
        branches = git.all_branches(top)
        raise ClawError(f"there is no branch '{target}' to land work on",
                        hint=f"create it first (git branch {target}), or pick one of: {', '.join(branches)}"
                        if branches else "make a first commit, then `claw init` again")
    target = target or current
    written = []
    if not config_path.exists():
        config_path.parent.mkdir(parents=True, exist_ok=True)
        # json.dumps gives valid TOML basic strings, whatever quotes or backslashes they hold
        check_list = ", ".join(json.dumps(c) for c in (checks or []))
        config_path.write_text(DEFAULT_CONFIG.format(target=json.dumps(target), checks=check_list))
        written.append(str(config_path.relative_to(top)))
    templates = resources.files("clawfleet") / "templates"
    for name in ("AGENTS.md", "SOUL.md", "USER.md"):
        if not (top / name).exists():
            (top / name).write_text((templates / name).read_text())
            written.append(name)
    exclude = git.common_dir(top) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if "/.claw/run/" not in lines:
        exclude.write_text("\n".join([*lines, "# clawfleet's database, worktrees and logs", "/.claw/run/"]) + "\n")
        written.append(str(exclude))
    return written
