"""Which of the person's files `[workspace] include` and `link` bring into every workspace.

Its own module because three need the same expansion of those globs: the workspace copying the
files, and the project and the redactor learning them as secrets; none of them imports another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import WorkspaceConfig
    from .project import Project


def include_paths(project: Project, config: WorkspaceConfig) -> list[tuple[str, bool]]:
    """(path relative to the checkout, hard-link?) for every existing path `include`/`link` names."""
    found: dict[str, bool] = {}
    for patterns, link in ((config.include, False), (config.link, True)):
        for pattern in patterns:
            pattern = pattern.strip().removeprefix("./").rstrip("/")
            if not pattern:
                continue
            hits = sorted(project.root.glob(pattern)) if any(c in pattern for c in "*?[") \
                else [project.root / pattern]
            for hit in hits:
                relative = hit.relative_to(project.root).as_posix()
                if (hit.exists() or hit.is_symlink()) and not relative.startswith((".git/", ".claw/run")) \
                        and relative != ".git":
                    found[relative] = link
    return sorted(found.items())
