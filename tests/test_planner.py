"""The planner: a goal becomes an editable plan file and queued tasks with dependencies."""

from __future__ import annotations

import json

import pytest

from clawfleet.errors import UsageError
from clawfleet.llm.scripted import Script, ScriptedServer
from clawfleet.planner import parse_plan
from clawfleet.taskfile import parse_task_file, render_task_file

from conftest import claw, write_config
from test_run import status_json

PLAN = {"tasks": [
    {"title": "Research the export formats", "body": "Compare CSV and JSON.", "kind": "research",
     "importance": "low", "footprint": ["docs/plans/**"]},
    {"title": "Add the export command", "body": "Implement it with tests.", "kind": "feature",
     "importance": "high", "footprint": ["src/export.py", "tests/test_export.py"], "depends_on": [1]},
    {"title": "Document export", "body": "README section.", "kind": "feature", "depends_on": [2, 3, 0]},
]}


def planner_config(repo, server):
    write_config(repo, f"""
        [agents.builtin]
        kind = "builtin"
        provider = "openai"
        model = "scripted"
        base_url = "{server.openai_base_url}"
        """)


def test_plan_is_shown_saved_and_queued_with_dependencies(repo):
    reply = "Here is the plan:\n```json\n" + json.dumps(PLAN) + "\n```"
    with ScriptedServer(Script.from_rules([{"match": "export", "steps": [{"text": reply}]}])) as server:
        planner_config(repo, server)
        result = claw(repo, "plan", "Add an export feature", "--yes", "--json")
        prompt = server.requests[0]["body"]["messages"][0]["content"]
    assert result.returncode == 0, result.stderr
    assert "README.md" in prompt and "Add an export feature" in prompt  # it saw the repository
    ids = json.loads(result.stdout)["ids"]
    tasks = {t["id"]: t for t in status_json(repo)}
    assert [tasks[i]["title"] for i in ids] == [t["title"] for t in PLAN["tasks"]]
    assert tasks[ids[0]]["kind"] == "research" and tasks[ids[1]]["importance"] == "high"
    assert tasks[ids[1]]["depends_on"] == [ids[0]]
    assert tasks[ids[2]]["depends_on"] == [ids[1]]          # later and invalid numbers dropped
    assert tasks[ids[1]]["footprint"] == ["src/export.py", "tests/test_export.py"]
    plan_files = list((repo / ".claw" / "plans").glob("*.md"))
    assert len(plan_files) == 1
    assert [d.title for d in parse_task_file(plan_files[0].read_text())] == [t["title"] for t in PLAN["tasks"]]


def test_without_a_terminal_the_plan_file_lines_are_not_wrapped(tmp_path):
    """A pipe has no width: rich wrapped at 80 columns and broke the path a person copies."""
    from clawfleet import git

    repo = tmp_path / ("a-rather-long-folder-name-for-a-project-" * 3) / "repo"
    git.init_repo(repo, {"README.md": "# sample\n"})
    reply = "```json\n" + json.dumps(PLAN) + "\n```"
    with ScriptedServer(Script.from_rules([{"steps": [{"text": reply}]}])) as server:
        planner_config(repo, server)
        result = claw(repo, "plan", "Add an export feature for every format we know of", env={"COLUMNS": ""})
    assert result.returncode == 0, result.stderr
    path = next((repo / ".claw" / "plans").glob("*.md"))
    assert f"plan saved to {path}\n" in result.stdout, result.stdout
    assert f"then queue it with: claw add -f {path}\n" in result.stdout, result.stdout


def test_keys_a_plan_does_not_take_are_dropped_with_a_warning(repo):
    plan = {"tasks": [{**PLAN["tasks"][0], "priority": 5, "owner": "me"}], "notes": "x"}
    with ScriptedServer(Script.from_rules([{"steps": [{"text": json.dumps(plan)}]}])) as server:
        planner_config(repo, server)
        result = claw(repo, "plan", "Add an export feature", "--yes")
    assert result.returncode == 0, result.stderr
    assert "warning: the plan's `notes`, `owner`, `priority` are not a plan's key" in result.stderr, result.stderr
    assert [t["title"] for t in status_json(repo)] == [PLAN["tasks"][0]["title"]]


def test_edited_plan_file_queues_as_written(repo):
    drafts = parse_plan(json.dumps(PLAN))
    drafts[1].title = "Add the export command (edited)"
    path = repo.parent / "plan.md"
    path.write_text(render_task_file(drafts, heading="export"))
    result = claw(repo, "add", "-f", str(path), "--json")
    assert result.returncode == 0, result.stderr
    first, second, third = json.loads(result.stdout)["ids"]
    tasks = {t["id"]: t for t in status_json(repo)}
    assert tasks[second]["title"] == "Add the export command (edited)"
    assert tasks[second]["depends_on"] == [first] and tasks[third]["depends_on"] == [second]


def test_a_reply_that_is_not_a_plan_is_a_clear_error(repo):
    with ScriptedServer(Script.from_rules([{"steps": [{"text": "I would rather not."}]}])) as server:
        planner_config(repo, server)
        result = claw(repo, "plan", "anything", "--yes")
    assert result.returncode == 1
    assert "did not reply with JSON" in result.stderr and "Traceback" not in result.stderr


def test_task_file_dependencies_must_point_up():
    with pytest.raises(UsageError, match="must name earlier sections"):
        parse_task_file("## one\ndepends: 2\n\nbody\n## two\nbody\n")
    with pytest.raises(UsageError, match="bad value 'urgent'"):
        parse_task_file("## one\nimportance: urgent\n")


def test_research_tasks_write_a_document(repo):
    from clawfleet.models import Task
    from clawfleet.prompt import render_prompt

    prompt = render_prompt(Task(id=7, title="Research caching options", kind="research"),
                           project_root=repo, branch="claw/7-x", checks=[])
    assert "docs/plans/7-research-caching-options.md" in prompt
    assert "docs/plans" not in render_prompt(Task(id=8, title="Add a cache"), project_root=repo,
                                             branch="claw/8-x", checks=[])
