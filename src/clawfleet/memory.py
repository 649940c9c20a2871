"""Memory: notes with provenance that people and agents write and that feed later prompts.

Notes live in the project's store (SQLite FTS5, BM25 ranking). A person adds them with
`claw memory add`, an agent from its worktree the same way or through MCP, and after every
attempt `learn_from_attempt` keeps what it showed (the agent's summary and the checks' verdict),
without a model call. `relevant_notes` picks the few that match a task for its prompt.

    >>> store.add_note("The API tests need REDIS_URL set", tags=["tests"])
    >>> [n.body for n in search(store, "why do the API tests fail")]
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .models import Attempt, Note, Task
from .store import Store, index_terms

PROMPT_NOTES = 5                 # notes put into each prompt
MAX_QUERY_TERMS = 32             # more terms add little to BM25 and slow the match
RANKED_NOTES = 2000              # about how many matching notes one search ranks at most
SUMMARY_CHARS = 600              # of an agent's summary kept in a learned note
SOURCES = ("person", "agent", "attempt", "mcp")

# Words so common that matching them says nothing about relevance.
_STOPWORDS = frozenset("""
a about after again all also an and any are as at be because been before being but by can could
did do does doing done for from had has have having he her here his how i if in into is it its
just me more most my no nor not now of off on once only or other our out over own same she should
so some such than that the their them then there these they this those through to too under until
up very was we were what when where which while who whom why will with would you your
""".split())


def query_words(text: str) -> list[str]:
    """The meaningful words of free text as the index holds them, without stop words."""
    return sorted(w for w in index_terms(text) if len(w) > 1 and w not in _STOPWORDS)


def variants(word: str) -> list[str]:
    """The word and its likely other forms (tests/test, released/release, caching/cache...).

    A poor man's stemmer: only the forms some note actually holds are searched, so a wrong
    guess costs nothing, and the index needs no stemming of its own.
    """
    forms = [word]
    for suffix, replacements in (("ies", ("y",)), ("es", ("", "e")), ("s", ("",)),
                                 ("ing", ("", "e")), ("ed", ("", "e")), ("ly", ("",))):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            forms += [word[: -len(suffix)] + r for r in replacements]
    if len(forms) == 1:  # a base form: its plural, past and -ing forms
        stem = word[:-1] if word.endswith("e") else word
        forms += [word + "s", stem + "ed", stem + "ing"]
    return list(dict.fromkeys(forms))


def to_match(terms: Sequence[str]) -> str | None:
    """An FTS5 query matching any of `terms`, each quoted so it is taken literally."""
    return " OR ".join(f'"{term}"' for term in terms[:MAX_QUERY_TERMS]) if terms else None


def search(store: Store, text: str, limit: int = 10) -> list[Note]:
    """The notes most relevant to free text, best first (BM25).

    Ranking costs time in proportion to the notes that match, and a word that half the notes
    hold says little about which are relevant, so the rarest words are kept until they match
    about RANKED_NOTES notes; when even the rarest is common, the newest notes holding it are
    ranked. This keeps a search in milliseconds at 100,000 notes.
    """
    forms = dict.fromkeys(form for word in query_words(text) for form in variants(word))
    counts = store.note_frequencies(list(forms))
    if not counts:
        return []
    chosen, matched = [], 0
    for term, docs in sorted(counts.items(), key=lambda item: item[1]):
        if chosen and matched + docs > RANKED_NOTES:
            break
        chosen.append(term)
        matched += docs
    min_id = 0
    if matched > RANKED_NOTES:
        first, last = store.note_id_range()
        min_id = last - int((last - first + 1) * RANKED_NOTES / matched)
    return store.search_notes(to_match(chosen), limit, min_id=min_id)


def relevant_notes(store: Store, task: Task, limit: int = PROMPT_NOTES) -> list[Note]:
    """The notes most relevant to a task (its title and body), for its prompt.

    Notes the task's own earlier attempts left come first: they are the most relevant of all.
    """
    own = store.notes(task_id=task.id, limit=limit)
    others = [n for n in search(store, f"{task.title}\n{task.body}", limit + len(own))
              if n.task_id != task.id]
    return (own + others)[:limit]


def notes_for_prompt(project_root: Path, task: Task, limit: int | None = None) -> list[Note]:
    """`relevant_notes` from the project's store (as many as `[memory] prompt_notes` says), or
    none when the project has no store yet."""
    from .config import load_config

    if limit is None:
        limit = load_config(project_root / ".claw" / "config.toml").memory.prompt_notes
    db = project_root / ".claw" / "run" / "claw.db"
    if limit <= 0 or not db.exists():
        return []
    store = Store(db)
    try:
        return relevant_notes(store, task, limit)
    finally:
        store.close()


def recall(store: Store, about: str, limit: int = PROMPT_NOTES) -> str:
    """The notes most relevant to `about` (a chat message, a checklist) as a markdown section,
    each with where it came from; '' when none is."""
    notes = search(store, about, limit) if about.strip() and limit > 0 else []
    if not notes:
        return ""
    return "## What you remember about this\n" + "\n".join(
        f"- {' '.join(n.body.split())} ({describe_provenance(n)})" for n in notes)


def learn_from_attempt(store: Store, task: Task, attempt: Attempt, outcome: str, summary: str,
                       checks: Sequence[dict[str, Any]]) -> Note | None:
    """Keep what a finished attempt showed: its outcome, the agent's summary, the checks' verdict.

    Deterministic, no model: the note is the facts, so a later attempt at this task (or a
    similar one) sees what was tried and what failed. Nothing is kept when there is nothing
    to say (no summary and no checks).
    """
    summary = " ".join((summary or "").split())
    if not summary and not checks:
        return None
    if len(summary) > SUMMARY_CHARS:
        summary = summary[:SUMMARY_CHARS].rstrip() + "…"
    lines = [f"Task {task.id} ({task.title}), attempt {attempt.number} with {attempt.agent}: {outcome}."]
    if summary:
        lines.append(f"Agent's summary: {summary}")
    for check in checks:
        if check.get("passed"):
            lines.append(f"Check `{check['command']}` passed.")
        else:
            why = "timed out" if check.get("timed_out") else f"failed (exit {check.get('exit_code')})"
            tail = [line for line in str(check.get("tail", "")).splitlines() if line.strip()]
            lines.append(f"Check `{check['command']}` {why}" + (f": {tail[-1].strip()[:200]}" if tail else "."))
    return store.add_note("\n".join(lines), source="attempt", task_id=task.id, attempt_id=attempt.id,
                          tags=["attempt", outcome])


def export_markdown(notes: Iterable[Note], now: float | None = None) -> str:
    """MEMORY.md: every note with where it came from, oldest first, for people and other tools."""
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(now or time.time()))
    parts = ["# MEMORY.md", "",
             f"What this fleet has learned, exported by `claw memory export` on {stamp}.", ""]
    for note in sorted(notes, key=lambda n: n.id):
        parts.append(f"## Note {note.id}")
        parts.append(f"_{describe_provenance(note)}_")
        parts.append("")
        parts.append(note.body.strip())
        parts.append("")
    return "\n".join(parts)


def describe_provenance(note: Note) -> str:
    """`agent, task 3 attempt 5, 2026-11-23 12:00, tags: tests`"""
    bits = [note.source]
    if note.task_id is not None:
        bits.append(f"task {note.task_id}" + (f" attempt {note.attempt_id}" if note.attempt_id else ""))
    bits.append(time.strftime("%Y-%m-%d %H:%M", time.localtime(note.created_at)))
    if note.tags:
        bits.append("tags: " + " ".join(note.tags))
    return ", ".join(bits)
