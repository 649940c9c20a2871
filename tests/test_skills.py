"""Skills: the Agent Skills format validated, `claw skill` new/list/show/learn, the index in the
prompt, and skills installed where an agent kind reads them, never committed by the attempt."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from clawfleet import git, skills
from clawfleet.errors import ClawError
from clawfleet.llm.scripted import Script, ScriptedServer
from clawfleet.models import Task
from clawfleet.prompt import render_prompt

from conftest import agent_script, claw, write_config
from test_run import configure, status_json


def write_skill(root: Path, folder: str, front: str, body: str = "Do it.\n") -> Path:
    path = root / "skills" / folder / "SKILL.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\n{textwrap.dedent(front).strip()}\n---\n\n{body}")
    return path


# What the Agent Skills reference validator (skills-ref) says, each with the path.
@pytest.mark.parametrize("folder, front, problem", [
    ("good", "name: good\ndescription: Fine", None),
    ("Bad", "name: Bad\ndescription: x", "Skill name 'Bad' must be lowercase"),
    ("a--b", "name: a--b\ndescription: x", "cannot contain consecutive hyphens"),
    ("-lead", "name: -lead\ndescription: x", "cannot start or end with a hyphen"),
    ("other", "name: mismatch\ndescription: x", "Directory name 'other' must match skill name 'mismatch'"),
    ("nodesc", "name: nodesc", "Missing required field in frontmatter: description"),
    ("blank", "name: blank\ndescription: '  '", "Field 'description' must be a non-empty string"),
    ("noname", "description: x", "Missing required field in frontmatter: name"),
    ("yaml", "name: yaml\ndescription: [unclosed", "Invalid YAML in frontmatter"),
    # ours let these through before the reference validator judged skills
    ("extra", "name: extra\ndescription: x\nversion: 2", "Unexpected fields in frontmatter: version"),
    ("flow", "name: flow\ndescription: x\nmetadata: {a: 1}", "Invalid YAML in frontmatter"),
])
def test_skill_validation(tmp_path, folder, front, problem):
    path = write_skill(tmp_path, folder, front)
    if problem is None:
        skill = skills.parse_skill(path)
        assert (skill.name, skill.description, skill.body) == ("good", "Fine", "Do it.")
        return
    with pytest.raises(ClawError) as error:
        skills.parse_skill(path)
    assert problem in str(error.value) and str(path) in str(error.value)


def test_no_frontmatter_and_too_long_description(tmp_path):
    path = tmp_path / "skills" / "plain" / "SKILL.md"
    path.parent.mkdir(parents=True)
    path.write_text("# just markdown\n")
    with pytest.raises(ClawError, match="must start with YAML frontmatter"):
        skills.parse_skill(path)
    long = write_skill(tmp_path, "long", f"name: long\ndescription: {'x' * 1100}")
    with pytest.raises(ClawError, match="exceeds 1024 character limit \\(1100 chars\\)"):
        skills.parse_skill(long)


def test_cli_new_list_show(project):
    repo = project.root
    result = claw(repo, "skill", "new", "release-notes", "-d", "Write release notes: from the git log")
    assert result.returncode == 0, result.stderr
    path = repo / "skills" / "release-notes" / "SKILL.md"
    assert skills.parse_skill(path).description == "Write release notes: from the git log"
    result = claw(repo, "skill", "new", "release-notes", "-d", "again")
    assert result.returncode == 1 and "exists already" in result.stderr
    result = claw(repo, "skill", "new", "Release_Notes")
    assert result.returncode == 1 and "not a valid skill name" in result.stderr
    write_skill(repo, "broken", "name: broken")
    listed = json.loads(claw(repo, "skill", "list", "--json").stdout)
    assert listed["skills"] == [{"name": "release-notes", "description": "Write release notes: from the git log",
                                 "path": str(path)}]
    assert len(listed["problems"]) == 1 and "Missing required field in frontmatter: description" in listed["problems"][0]
    text = claw(repo, "skill", "list")
    assert "release-notes" in text.stdout and "invalid skill" in text.stderr
    shown = claw(repo, "skill", "show", "release-notes")
    assert shown.stdout == path.read_text()
    result = claw(repo, "skill", "show", "nope")
    assert result.returncode == 1 and "no skill 'nope'" in result.stderr and "release-notes" in result.stderr


def test_index_in_prompt_points_where_each_kind_reads(project):
    write_skill(project.root, "db-migrations", "name: db-migrations\ndescription: Write and test a schema migration")
    task = Task(id=1, title="Add a column")
    builtin = render_prompt(task, project_root=project.root, branch="b", checks=[], notes=[])
    assert "# Skills" in builtin
    assert f"**db-migrations** (`{project.root}/skills/db-migrations/SKILL.md`): Write and test" in builtin
    claude = render_prompt(task, project_root=project.root, branch="b", checks=[], notes=[], agent_kind="claude")
    assert "(`.claude/skills/db-migrations/SKILL.md`)" in claude
    codex = render_prompt(task, project_root=project.root, branch="b", checks=[], notes=[], agent_kind="codex")
    assert "(`.agents/skills/db-migrations/SKILL.md`)" in codex


def test_installed_for_claude_in_the_worktree_and_never_committed(project, tmp_path):
    repo = project.root
    write_skill(repo, "db-migrations", "name: db-migrations\ndescription: Write a migration")
    (repo / "skills" / "db-migrations" / "check.sh").write_text("echo ok\n")
    worktree = tmp_path / "wt"
    git.add_detached_worktree(repo, worktree, git.rev(repo, "HEAD"))
    git.start_branch(worktree, "claw/1-x", git.rev(repo, "HEAD"))
    installed = skills.install(repo, worktree, "claude")
    assert installed == [worktree / ".claude/skills/db-migrations/SKILL.md"]
    assert (worktree / ".claude/skills/db-migrations/check.sh").read_text() == "echo ok\n"
    assert skills.install(repo, worktree, "builtin") == []    # no documented place: the index only
    assert skills.install(repo, worktree, "claude") == []     # there already: left alone
    assert git.commit_all(worktree, "agent's work") is None   # the copies are not the attempt's work
    (worktree / "real.txt").write_text("work\n")
    head = git.commit_all(worktree, "agent's work")
    assert git.changed_files(repo, git.rev(repo, "main"), head) == ["real.txt"]


def test_learn_drafts_a_template_from_a_successful_attempt(repo):
    agent = agent_script(repo, "adder", """
        printf 'def slugify(s):\\n    return s.lower()\\n' > slug.py
        echo "added slugify() in slug.py and ran the checks" > "$CLAW_SUMMARY_FILE"
        """)
    configure(repo, {"adder": agent}, checks=["test -f slug.py"])
    assert claw(repo, "add", "Add a slugify helper", "--body", "Lowercase titles for URLs.").returncode == 0
    assert claw(repo, "run").returncode == 0
    attempt = status_json(repo)[0]["latest_attempt"]
    result = claw(repo, "skill", "learn", str(attempt["id"]), "--no-model")
    assert result.returncode == 0, result.stderr
    assert "from the template" in result.stdout
    skill = skills.parse_skill(repo / "skills" / "add-a-slugify-helper" / "SKILL.md")
    assert "Add a slugify helper" in skill.description
    assert "added slugify() in slug.py and ran the checks" in skill.body
    assert "`slug.py` (+2 -0)" in skill.body and "Lowercase titles for URLs." in skill.body
    again = claw(repo, "skill", "learn", str(attempt["id"]), "--no-model")
    assert again.returncode == 1 and "exists already" in again.stderr


def test_learn_with_the_builtin_agents_model(repo):
    agent = agent_script(repo, "adder", """
        echo 'VERSION = "1.2"' > version.py
        echo "bumped the version" > "$CLAW_SUMMARY_FILE"
        """)
    configure(repo, {"adder": agent})
    assert claw(repo, "add", "Bump the version").returncode == 0
    assert claw(repo, "run").returncode == 0
    attempt = status_json(repo)[0]["latest_attempt"]
    reply = ("DESCRIPTION: Bump the project version in version.py before a release.\n\n"
             "# Bumping the version\n1. Edit `version.py`.\n2. Run the tests.\n")
    script = Script.from_rules([{"match": "Turn how it was done into a reusable skill",
                                 "steps": [{"text": reply}]}])
    with ScriptedServer(script) as server:
        config = (repo / ".claw" / "config.toml").read_text()
        write_config(repo, config + f"""
[agents.builtin]
kind = "builtin"
provider = "openai"
model = "scripted"
base_url = "{server.openai_base_url}"
""")
        result = claw(repo, "skill", "learn", str(attempt["id"]), "--name", "version-bump")
        asked = json.dumps(server.requests)
    assert result.returncode == 0, result.stderr
    assert "by scripted" in result.stdout
    assert "version.py" in asked and "bumped the version" in asked   # the diff and summary were sent
    skill = skills.parse_skill(repo / "skills" / "version-bump" / "SKILL.md")
    assert skill.description == "Bump the project version in version.py before a release."
    assert skill.body.startswith("# Bumping the version")


def test_learn_refuses_an_unsuccessful_attempt(repo):
    agent = agent_script(repo, "fails", "exit 3\n")
    configure(repo, {"fails": agent})
    assert claw(repo, "add", "Do something").returncode == 0
    assert claw(repo, "run").returncode == 0
    attempt = status_json(repo)[0]["latest_attempt"]
    result = claw(repo, "skill", "learn", str(attempt["id"]))
    assert result.returncode == 1 and "only a successful attempt" in result.stderr


def test_the_runner_installs_skills_before_a_claude_agent_starts(repo):
    """A stand-in `claude` program records what it finds in its worktree; the attempt then fails
    (it speaks no stream-json), which is beside the point here."""
    write_skill(repo, "db-migrations", "name: db-migrations\ndescription: Write a migration")
    seen = repo.parent / "seen.txt"
    fake = agent_script(repo, "claude", f"""
        cat .claude/skills/db-migrations/SKILL.md > {seen}
        echo "task=$CLAW_TASK_ID attempt=$CLAW_ATTEMPT_ID" >> {seen}
        echo work > work.txt
        exit 1
        """)
    write_config(repo, f"""
        [fleet]
        default_agent = "claude"
        max_attempts = 1
        [agents.claude]
        kind = "claude"
        binary = "{fake}"
        base_url = "http://127.0.0.1:9"   # never called: the fake CLI answers by itself
        """)
    assert claw(repo, "add", "Add a column").returncode == 0
    assert claw(repo, "run").returncode == 0
    text = seen.read_text()
    assert "name: db-migrations" in text and "task=1 attempt=1" in text
    prompt = (repo / ".claw/run/attempts/1/prompt-0.md").read_text()
    assert "(`.claude/skills/db-migrations/SKILL.md`)" in prompt
    attempt = status_json(repo)[0]["latest_attempt"]   # its work is kept, the skill copy is not
    assert git.changed_files(repo, attempt["base_commit"], attempt["branch"]) == ["work.txt"]
