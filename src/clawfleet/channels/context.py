"""What the claw knows about itself and its owner when it talks: SOUL.md, USER.md, AGENTS.md,
and the memory notes most relevant to what it is talking about."""

from __future__ import annotations

from ..project import Project

PERSONA_FILES = ("SOUL.md", "USER.md", "AGENTS.md")
FILE_CHARS = 6000


def persona_context(project: Project, topic: str | None = None) -> str:
    """The persona files that exist, each under its name, cut to a sane length, then the notes
    most relevant to `topic` (a question, the heartbeat's checklist)."""
    from ..memory import recall

    parts = []
    for name in PERSONA_FILES:
        path = project.root / name
        try:
            text = path.read_text(errors="replace").strip()
        except OSError:
            continue
        if text:
            parts.append(f"## {name}\n{text[:FILE_CHARS]}")
    remembered = recall(project.store, topic or "")
    if remembered:
        parts.append(remembered)
    return "\n\n".join(parts) or "(no SOUL.md, USER.md or AGENTS.md yet)"
