"""Memory: notes in SQLite FTS5 with provenance, the `claw memory` commands, what an attempt
teaches, notes written from a worktree while `claw run` holds the database, notes in prompts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from clawfleet import memory
from clawfleet.errors import ClawError, NotFound
from clawfleet.models import Task
from clawfleet.channels.context import persona_context
from clawfleet.prompt import render_prompt
from clawfleet.store import Store

from conftest import agent_script, claw, write_config
from test_run import configure, status_json


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "claw.db")


def test_search_ranks_the_most_relevant_note_first(store):
    store.add_note("The integration tests need REDIS_URL pointing at a local redis", tags=["tests"])
    store.add_note("Release notes are written from the git log by scripts/release.sh")
    store.add_note("Use ruff, not flake8; the config is in pyproject.toml", tags=["lint"])
    store.add_note("Redis connection pooling lives in app/cache.py")
    found = memory.search(store, "Why do the integration tests fail without redis?")
    assert found[0].body.startswith("The integration tests need REDIS_URL")
    assert {n.body.split()[0] for n in found} == {"The", "Redis"}     # only notes sharing a word
    assert found[0].score < found[1].score                              # BM25: lower is better
    # Porter stemming: "releasing" finds "Release".
    assert memory.search(store, "releasing")[0].body.startswith("Release notes")


def test_common_words_do_not_drown_the_rare_ones(store):
    """Words held by more notes than a search ranks are left out (or only the newest notes are
    ranked, when every word is that common), so the note with the telling word still wins."""
    store.import_notes([f"test run {i} of the build" for i in range(memory.RANKED_NOTES + 500)])
    target = store.add_note("The build cache lives in ~/.cache/claw; clear it when a test run hangs")
    assert memory.search(store, "the test run hangs on the build")[0].id == target.id
    newest = memory.search(store, "test build", limit=3)
    assert [n.id for n in newest] and all("test" in n.body for n in newest)
    assert store.note_frequencies(["hangs", "build", "nowhere"]) == \
        {"hangs": 1, "build": memory.RANKED_NOTES + 501}
    store.forget_note(target.id)
    assert store.note_frequencies(["hangs"]) == {} and memory.search(store, "hangs") == []


def test_free_text_with_fts_syntax_is_taken_literally(store):
    store.add_note('the "quoted" AND NOT * weird (text) works: col:umn')
    for text in ['"quoted', "AND NOT *", "col:umn", "(text)", "NEAR(a b)", "-x"]:
        memory.search(store, text)  # no FTS5 syntax error, whatever the text holds
    assert memory.search(store, "weird col:umn")[0].body.startswith('the "quoted"')
    assert memory.query_words("the and of ?!") == []
    assert memory.search(store, "the and of") == []
    with pytest.raises(ClawError):
        store.search_notes('"unterminated')  # raw FTS5 syntax errors become a ClawError


def test_provenance_forget_and_export(store):
    task = store.add_task("Speed up the cache")
    note = store.add_note("Cache keys must include the locale", source="agent", task_id=task.id,
                          tags=["cache", "i18n"])
    assert (note.source, note.task_id, note.tags) == ("agent", task.id, ["cache", "i18n"])
    assert [n.id for n in store.notes(tag="i18n")] == [note.id]
    assert store.notes(tag="cach") == []            # a tag matches whole, not by prefix
    with pytest.raises(NotFound):
        store.add_note("about nothing", task_id=999)
    text = memory.export_markdown(store.notes())
    assert "## Note 1" in text and f"agent, task {task.id}" in text and "tags: cache i18n" in text
    store.forget_note(note.id)
    assert store.notes() == [] and memory.search(store, "locale") == []
    assert [e["kind"] for e in store.events() if e["kind"].startswith("memory.")] == \
        ["memory.added", "memory.forgotten"]


def test_cli_add_search_list_forget_export(project):
    repo = project.root
    assert claw(repo, "memory", "add", "Run the slow tests with -m slow", "--tag", "tests").returncode == 0
    result = claw(repo, "memory", "add", "-", "--tag", "deploy", input="Deploys need the VPN up\n")
    assert result.returncode == 0, result.stderr
    found = json.loads(claw(repo, "memory", "search", "how to run slow tests", "--json").stdout)
    assert [n["body"] for n in found] == ["Run the slow tests with -m slow"]
    assert found[0]["source"] == "person" and found[0]["tags"] == ["tests"]
    listed = json.loads(claw(repo, "memory", "list", "--json").stdout)
    assert [n["body"] for n in listed] == ["Deploys need the VPN up", "Run the slow tests with -m slow"]
    result = claw(repo, "memory", "export")
    assert result.returncode == 0 and "wrote 2 note(s)" in result.stdout
    assert "Deploys need the VPN up" in (repo / "MEMORY.md").read_text()
    assert claw(repo, "memory", "forget", str(listed[0]["id"])).returncode == 0
    result = claw(repo, "memory", "forget", str(listed[0]["id"]))
    assert result.returncode == 1 and "there is no note" in result.stderr and "Traceback" not in result.stderr
    result = claw(repo, "memory", "add", "  ")
    assert result.returncode == 2 and "empty" in result.stderr
    result = claw(repo, "memory", "add", "x", "--task", "42")
    assert result.returncode == 1 and "no task 42" in result.stderr


def test_agents_write_memory_from_their_worktree_while_claw_run_holds_the_db(repo):
    """The agent runs `claw memory add` in its worktree during `claw run`; the note goes to the
    attempt's outbox and lands in the main checkout's store, imported with the task and attempt,
    and the attempt's own lesson follows it."""
    agent = agent_script(repo, "rememberer", f"""
        test "$(pwd)" != "{repo}" || exit 9
        {sys.executable} -m clawfleet memory add "The build needs GNU make 4" --tag build || exit 7
        echo done > made.txt
        echo "added made.txt; make 4 is required" > "$CLAW_SUMMARY_FILE"
        """)
    configure(repo, {"rememberer": agent}, checks=["test -f made.txt"])
    assert claw(repo, "add", "Make the build reproducible").returncode == 0
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    assert task["state"] == "merged", task
    attempt_id = task["latest_attempt"]["id"]
    outbox = repo / f".claw/run/attempts/{attempt_id}/outbox/notes.jsonl"
    assert json.loads(outbox.read_text()) == {"text": "The build needs GNU make 4", "tags": ["build"]}
    notes = {n["source"]: n for n in json.loads(claw(repo, "memory", "list", "--json").stdout)}
    assert notes["agent"]["body"] == "The build needs GNU make 4"
    assert (notes["agent"]["task_id"], notes["agent"]["attempt_id"]) == (task["id"], attempt_id)
    learned = notes["attempt"]
    assert learned["attempt_id"] == attempt_id and learned["tags"] == ["attempt", "ready"]
    assert "Agent's summary: added made.txt; make 4 is required" in learned["body"]
    assert "Check `test -f made.txt` passed." in learned["body"]


def test_a_failed_attempt_teaches_the_next_one(repo):
    """What failed (summary and the failing check's last line) is in the next prompt of a task
    that resembles it."""
    agent = agent_script(repo, "tries", """
        echo attempt >> tried.txt
        echo "changed parser.py to accept tabs" > "$CLAW_SUMMARY_FILE"
        """)
    configure(repo, {"tries": agent}, checks=["echo 'E   ValueError: tab in header' && false"],
              fix_rounds=0)
    assert claw(repo, "add", "Accept tabs in the CSV header parser").returncode == 0
    assert claw(repo, "run").returncode == 0
    assert status_json(repo)[0]["state"] == "failed"
    lesson = json.loads(claw(repo, "memory", "search", "tabs csv header", "--json").stdout)[0]
    assert "checks_failed" in lesson["body"] and "E   ValueError: tab in header" in lesson["body"]
    assert claw(repo, "add", "Accept tabs in the TSV header parser too").returncode == 0
    assert claw(repo, "run").returncode == 0
    prompt = next(repo.joinpath(".claw/run/attempts").glob("2/prompt-0.md")).read_text()
    assert "# What the fleet remembers that may help" in prompt
    assert "changed parser.py to accept tabs" in prompt and "ValueError: tab in header" in prompt


def test_prompt_takes_the_most_relevant_notes_and_the_configured_number(project):
    store = project.store
    for i in range(8):
        store.add_note(f"Migration note {i}: run alembic upgrade head after pulling")
    store.add_note("Frontend: npm ci before npm test")
    task = store.add_task("Add a migration for the users table")
    prompt = render_prompt(task, project_root=project.root, branch="claw/1", checks=[])
    assert prompt.count("Migration note") == 5 and "npm ci" not in prompt
    (project.root / ".claw" / "config.toml").write_text("[memory]\nprompt_notes = 0\n")
    prompt = render_prompt(task, project_root=project.root, branch="claw/1", checks=[])
    assert "Migration note" not in prompt and "What the fleet remembers" not in prompt


def test_persona_context_has_soul_user_agents_and_relevant_memory(project):
    """What chat replies and the heartbeat speak from: the persona files and what is remembered."""
    (project.root / "USER.md").write_text("# USER.md\nMy name is Ada; I review everything touching billing.\n")
    project.store.add_note("Billing totals are rounded half-even", tags=["billing"])
    project.store.add_note("Docs are built with mkdocs")
    context = persona_context(project, "how should billing totals be rounded?")
    assert context.index("## SOUL.md") < context.index("## USER.md") < context.index("## AGENTS.md")
    assert "My name is Ada" in context
    assert "Billing totals are rounded half-even" in context and "mkdocs" not in context
    assert "What you remember" not in persona_context(project, None)


def test_prompt_has_soul_user_and_agents(project):
    task = Task(id=1, title="Add a health endpoint")
    prompt = render_prompt(task, project_root=project.root, branch="claw/1-x", checks=["pytest -q"],
                           notes=[])
    assert "# Who you are" in prompt and "# Whom you work for (USER.md)" in prompt
    assert "# Project instructions (AGENTS.md)" in prompt
    assert "memory add" in prompt


def test_with_an_embedding_model_search_finds_by_meaning_what_words_miss(project):
    """`[memory] embeddings_model`: vectors from an OpenAI-compatible /embeddings endpoint (here
    the scripted server's letter-trigram stand-in) are fused with BM25."""
    from clawfleet.llm.scripted import Script, ScriptedServer

    store = project.store
    flaky = store.add_note("The integration tests time out on CI when Redis is slow")
    store.add_note("Release notes go in CHANGELOG.md, newest first")
    store.add_note("Use ruff for formatting; line length 110")
    typo = "integraton tets timouts"   # no word of it is in any note as written
    assert memory.search(store, typo) == []
    with ScriptedServer(Script.from_rules([{"steps": [{"text": "unused"}]}])) as server:
        write_config(project.root, f"""
            [memory]
            embeddings_model = "scripted-embed"
            embeddings_base_url = "{server.openai_base_url}"
            """)
        found = memory.search(Store(store.path), typo, limit=2)
        assert found[0].id == flaky.id
        assert [r["path"] for r in server.requests] == ["/v1/embeddings", "/v1/embeddings"]
        assert len(server.requests[0]["body"]["input"]) == 3   # the notes, embedded once
        assert len(store.note_vectors("scripted-embed")) == 3
        # Words still count: an exact match stays first, and a forgotten note leaves no vector.
        assert memory.search(Store(store.path), "CHANGELOG.md release notes")[0].body.startswith("Release")
        store.forget_note(flaky.id)
        assert len(store.note_vectors("scripted-embed")) == 2
        assert len(server.requests) == 3   # later searches embed only the query
    # The endpoint gone: a clear error that says what to do.
    with pytest.raises(ClawError) as error:
        memory.search(Store(store.path), typo)
    assert "memory embeddings (scripted-embed)" in error.value.message and "unset them" in error.value.hint
    # A prompt is not held up by it: it gets the notes found by words.
    assert "CHANGELOG.md" in memory.recall(Store(store.path), "CHANGELOG release")
