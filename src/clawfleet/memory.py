"""Memory: notes with provenance that people and agents write and that feed later prompts.

Notes live in the project's store (SQLite FTS5, BM25 ranking). A person adds them with
`claw memory add`, and after every attempt `learn_from_attempt` keeps what it showed (the
agent's summary and the checks' verdict), without a model call. `relevant_notes` picks the few
that match a task for its prompt.

Agents never write the store. Inside an attempt `claw memory add` (or MCP's add_memory) appends
the note to the attempt's outbox, `$CLAW_OUTBOX/notes.jsonl`, one JSON object a line
({"text": ..., "tags": [...]}); when the attempt ends the orchestrator imports it with
`import_outbox`: validated, with the attempt's provenance attached, never the file's.

    >>> store.add_note("The API tests need REDIS_URL set", tags=["tests"])
    >>> [n.body for n in search(store, "why do the API tests fail")]
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ClawError
from .models import Attempt, Experiment, Note, Task
from .store import Store, index_terms

log = logging.getLogger("clawfleet.memory")

PROMPT_NOTES = 5                 # notes put into each prompt
MAX_QUERY_TERMS = 32             # more terms add little to BM25 and slow the match
RANKED_NOTES = 2000              # about how many matching notes one search ranks at most
SUMMARY_CHARS = 600              # of an agent's summary kept in a learned note
SOURCES = ("person", "agent", "attempt", "research", "mcp")
EMBED_BATCH = 256                # notes embedded at most per search (the rest on later ones)
RRF_K = 60                       # reciprocal rank fusion's damping: 1 / (60 + rank)

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
    """The notes most relevant to free text, best first: by words (BM25), and with
    `[memory] embeddings_model` by meaning too, the two rankings fused (reciprocal rank)."""
    embeddings = embeddings_for(store)
    if embeddings is None:
        return search_words(store, text, limit)
    rankings = [search_words(store, text, limit * 4), embeddings.nearest(store, text, limit * 4)]
    scores: dict[int, float] = {}
    notes: dict[int, Note] = {}
    for ranking in rankings:
        for rank, note in enumerate(ranking):
            scores[note.id] = scores.get(note.id, 0.0) + 1.0 / (RRF_K + rank)
            notes.setdefault(note.id, note)
    return [notes[i] for i in sorted(scores, key=lambda i: -scores[i])[:limit]]


def search_words(store: Store, text: str, limit: int = 10) -> list[Note]:
    """The notes most relevant to free text by its words, best first (BM25).

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


class Embeddings:
    """An embedding model behind an OpenAI-compatible `/embeddings` endpoint (OpenAI, Ollama,
    vLLM, llama.cpp...). Notes are embedded once, when first searched, and kept in the store."""

    def __init__(self, model: str, base_url: str | None, api_key: str | None) -> None:
        try:
            import numpy
        except ImportError:
            raise ClawError("[memory] embeddings_model is set, but numpy is not installed",
                            hint="pip install 'clawfleet[embeddings]', or unset embeddings_model") from None
        import openai

        self.np, self.model = numpy, model
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "none", max_retries=2, timeout=60)

    def embed(self, texts: Sequence[str]) -> Any:
        """An L2-normalised float32 row per text."""
        import openai

        try:
            reply = self.client.embeddings.create(model=self.model, input=list(texts))
        except openai.APIError as error:
            raise ClawError(f"memory embeddings ({self.model}): {error}",
                            hint="check [memory] embeddings_model and embeddings_base_url, or unset them "
                                 "to search by words only") from None
        rows = self.np.array([d.embedding for d in sorted(reply.data, key=lambda d: d.index)], dtype="float32")
        return rows / self.np.maximum(self.np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)

    def nearest(self, store: Store, text: str, limit: int) -> list[Note]:
        """The notes closest in meaning to `text` (cosine), embedding the ones still without a vector."""
        missing = store.notes_without_vector(self.model, EMBED_BATCH)
        if missing:
            vectors = self.embed([f"{n.body} {' '.join(n.tags)}" for n in missing])
            store.save_note_vectors(self.model, [(n.id, v.tobytes()) for n, v in zip(missing, vectors)])
        stored = store.note_vectors(self.model)
        if not stored or not text.strip():
            return []
        matrix = self.np.frombuffer(b"".join(blob for _, blob in stored), dtype="float32").reshape(len(stored), -1)
        query = self.embed([text])[0]
        if query.shape[0] != matrix.shape[1]:
            raise ClawError(f"memory embeddings ({self.model}): vectors of {query.shape[0]} dimensions, "
                            f"the stored ones have {matrix.shape[1]}",
                            hint="a changed model under the same name: give it another name to embed afresh")
        scores = matrix @ query
        best = self.np.argsort(-scores)[:limit]
        return store.get_notes([stored[i][0] for i in best])


_EMBEDDINGS: dict[tuple, Embeddings] = {}
_SETTINGS: dict[Path, tuple[int | None, Any]] = {}   # config path -> (its mtime, its [memory])


def embeddings_for(store: Store) -> Embeddings | None:
    """The store's project's embedding model, from `[memory]` in its config; None when unset.

    Searches are frequent: the config is read again only when the file changed."""
    from .config import load_config

    path = Path(store.path).parent.parent / "config.toml"   # .claw/run/claw.db -> .claw/config.toml
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = None
    if _SETTINGS.get(path, (0, None))[0] != mtime:
        _SETTINGS[path] = (mtime, load_config(path).memory)
    config = _SETTINGS[path][1]
    if not config.embeddings_model:
        return None
    base_url = config.embeddings_base_url or os.environ.get("OPENAI_BASE_URL")
    key = os.environ.get(config.embeddings_api_key_env or "OPENAI_API_KEY")
    if config.embeddings_api_key_env and not key:
        raise ClawError(f"[memory] embeddings_api_key_env names ${config.embeddings_api_key_env}, which is not set",
                        hint=f"export {config.embeddings_api_key_env}=..., or change it in .claw/config.toml")
    cache_key = (config.embeddings_model, base_url, key)
    if cache_key not in _EMBEDDINGS:
        _EMBEDDINGS[cache_key] = Embeddings(config.embeddings_model, base_url, key)
    return _EMBEDDINGS[cache_key]


def _search_or_words(store: Store, text: str, limit: int) -> list[Note]:
    """`search`, or by words only when the embedding model fails: a prompt or a chat reply is
    never held up by it (`claw memory search` still shows its error)."""
    try:
        return search(store, text, limit)
    except ClawError as error:
        log.warning("memory search by meaning failed, by words only: %s", error.message)
        return search_words(store, text, limit)


def relevant_notes(store: Store, task: Task, limit: int = PROMPT_NOTES) -> list[Note]:
    """The notes most relevant to a task (its title and body), for its prompt.

    Notes the task's own earlier attempts left come first: they are the most relevant of all.
    """
    own = store.notes(task_id=task.id, limit=limit)
    others = [n for n in _search_or_words(store, f"{task.title}\n{task.body}", limit + len(own))
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
    notes = _search_or_words(store, about, limit) if about.strip() and limit > 0 else []
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


def learn_from_experiment(store: Store, experiment: Experiment, best: float | None) -> Note:
    """Keep a research experiment's outcome: what was tried, the metric, kept or why not.

    The research prompt lists the latest outcomes itself; the note makes older ones findable
    by meaning or words, and tells the rest of the claw (chat, heartbeat, tasks) what was learned.
    """
    metric = "no metric" if experiment.metric is None else f"metric {experiment.metric:g}"
    line = (f"Research {experiment.name}, experiment {experiment.id} (round {experiment.round}): "
            f"{experiment.status}, {metric}" + (f" (best then {best:g})" if best is not None else "") + ".")
    lines = [line, f"Hypothesis: {' '.join(experiment.description.split())[:SUMMARY_CHARS]}"]
    if experiment.reason:
        lines.append(f"Why: {' '.join(experiment.reason.split())[:SUMMARY_CHARS]}")
    return store.add_note("\n".join(lines), source="research",
                          tags=["research", experiment.name, str(experiment.status)])


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


# -- the outbox: notes an agent leaves, imported by clawfleet ---------------------------------

OUTBOX_ENV = "CLAW_OUTBOX"       # names the attempt's outbox folder inside an attempt
OUTBOX_DIR = "outbox"            # in the attempt folder
OUTBOX_NOTES = "notes.jsonl"
NOTE_MAX_CHARS = 4000
NOTE_MAX_TAGS = 8
TAG_MAX_CHARS = 40
OUTBOX_MAX_NOTES = 50            # per attempt
OUTBOX_MAX_BYTES = 256 * 1024
OUTBOX_MAX_PROBLEMS = 20         # reported; past them the rest of the outbox is dropped
_ATTEMPT_ENV = ("CLAW_ATTEMPT_ID", "CLAW_TASK_ID", OUTBOX_ENV)
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")  # reorder what a person reads


@dataclass
class OutboxNote:
    text: str
    tags: list[str] = field(default_factory=list)


@dataclass
class OutboxReading:
    notes: list[OutboxNote]
    problems: list[str]          # "line 3: not JSON", or one for the whole outbox
    imported: int = 0


def inside_an_attempt(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this process runs for an attempt (the runner sets these for its agent)."""
    return any(env.get(name) for name in _ATTEMPT_ENV)


def _bad_character(text: str) -> str | None:
    for char in text:
        if char in "\n\t":
            continue
        if unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI:
            return f"U+{ord(char):04X}"
    return None


def check_note(text: Any, tags: Any = None) -> OutboxNote:
    """A note as an agent may leave it, or a ClawError saying what is wrong with it."""
    if not isinstance(text, str):
        raise ClawError("a note's text must be a string")
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise ClawError("the note is empty")
    if len(text) > NOTE_MAX_CHARS:
        raise ClawError(f"the note is too long ({len(text)} characters, at most {NOTE_MAX_CHARS})",
                        hint="keep one fact per note")
    bad = _bad_character(text)
    if bad:
        raise ClawError(f"the note holds a control character ({bad})", hint="plain text, lines and tabs only")
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ClawError("a note's tags must be a list of strings")
    tags = [t.strip() for t in tags if t.strip()]
    if len(tags) > NOTE_MAX_TAGS:
        raise ClawError(f"a note has at most {NOTE_MAX_TAGS} tags")
    for tag in tags:
        if len(tag) > TAG_MAX_CHARS or len(tag.split()) > 1 or _bad_character(tag):
            raise ClawError(f"a tag is one word of at most {TAG_MAX_CHARS} characters: {tag[:TAG_MAX_CHARS]!r}")
    return OutboxNote(text, tags)


def write_to_outbox(outbox: Path, text: str, tags: Sequence[str] = ()) -> OutboxNote:
    """Append a note to the attempt's outbox (what `claw memory add` does inside an attempt)."""
    note = check_note(text, list(tags))
    line = (json.dumps({"text": note.text, "tags": note.tags}, ensure_ascii=False) + "\n").encode()
    try:
        fd = os.open(outbox / OUTBOX_NOTES, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        raise ClawError(f"cannot write to this attempt's outbox {outbox}: {error.strerror}",
                        hint=f"${OUTBOX_ENV} names a folder clawfleet made for the attempt") from None
    try:
        held = os.fstat(fd).st_size
        if held + len(line) > OUTBOX_MAX_BYTES:
            raise ClawError(f"this attempt's outbox is full ({OUTBOX_MAX_BYTES // 1024} KiB)",
                            hint="keep the few notes that matter most")
        with open(outbox / OUTBOX_NOTES, "rb") as existing:
            if existing.read(OUTBOX_MAX_BYTES).count(b"\n") >= OUTBOX_MAX_NOTES:
                raise ClawError(f"an attempt leaves at most {OUTBOX_MAX_NOTES} notes",
                                hint="keep the few that matter most")
        os.write(fd, line)
    finally:
        os.close(fd)
    return note


def read_outbox(outbox: Path) -> OutboxReading:
    """The valid notes of an outbox and what was wrong with the rest. Nothing is followed: a
    symlinked outbox or notes file, or anything but a regular file, is refused whole, as is
    one over OUTBOX_MAX_BYTES or not UTF-8; a bad line costs only that note."""
    try:
        folder = os.open(outbox, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return OutboxReading([], [])
    except OSError as error:
        why = "is a symlink" if error.errno == errno.ELOOP or outbox.is_symlink() else \
            f"cannot be read ({error.strerror})"
        return OutboxReading([], [f"the outbox {why}: refused"])
    try:
        try:
            fd = os.open(OUTBOX_NOTES, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
        except FileNotFoundError:
            return OutboxReading([], [])
        except OSError as error:
            why = "is a symlink" if error.errno == errno.ELOOP else f"cannot be read ({error.strerror})"
            return OutboxReading([], [f"{OUTBOX_NOTES} {why}: refused"])
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return OutboxReading([], [f"{OUTBOX_NOTES} is not a regular file: refused"])
            data = handle.read(OUTBOX_MAX_BYTES + 1)
    finally:
        os.close(folder)
    if len(data) > OUTBOX_MAX_BYTES:
        return OutboxReading([], [f"{OUTBOX_NOTES} is over {OUTBOX_MAX_BYTES // 1024} KiB: refused"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return OutboxReading([], [f"{OUTBOX_NOTES} is not UTF-8 (byte {error.start}): refused"])
    notes: list[OutboxNote] = []
    problems: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if len(notes) >= OUTBOX_MAX_NOTES or len(problems) >= OUTBOX_MAX_PROBLEMS:
            problems.append(f"line {number} on: dropped (an attempt leaves at most {OUTBOX_MAX_NOTES} "
                            f"notes, {OUTBOX_MAX_PROBLEMS} bad lines)")
            break
        try:
            notes.append(_note_from_line(line))
        except ClawError as error:
            problems.append(f"line {number}: {error.message}")
    return OutboxReading(notes, problems)


def _note_from_line(line: str) -> OutboxNote:
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        raise ClawError("not JSON") from None
    if not isinstance(data, dict):
        raise ClawError("not a JSON object")
    unknown = sorted(repr(key)[:40] for key in set(data) - {"text", "tags"})
    if unknown:
        raise ClawError(f"unknown keys {', '.join(unknown[:5])}: a note has text and tags; "
                        "who wrote it, and for which task, is clawfleet's to say")
    return check_note(data.get("text"), data.get("tags"))


def import_outbox(store: Store, outbox: Path, *, task_id: int, attempt_id: int,
                  tags: Sequence[str] = ()) -> OutboxReading:
    """Add an ended attempt's outbox notes to memory as the agent's, for its task and attempt
    (plus `tags`). Importing twice (an orchestrator that died meanwhile) adds nothing twice."""
    reading = read_outbox(outbox)
    have = {n.body for n in store.notes(task_id=task_id) if n.attempt_id == attempt_id and n.source == "agent"}
    for note in reading.notes:
        if note.text in have:
            continue
        try:
            store.add_note(note.text, source="agent", task_id=task_id, attempt_id=attempt_id,
                           tags=list(dict.fromkeys([*note.tags, *tags])))
        except ClawError as error:
            reading.problems.append(f"a note could not be kept: {error.message}")
            break
        have.add(note.text)
        reading.imported += 1
    return reading
