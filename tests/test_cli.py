"""The `claw` command line as a person uses it: help, init, add, JSON output and clear errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from clawfleet import git
from clawfleet.cli import app

from conftest import agent_script, claw, write_config

COMMANDS = [command.name or command.callback.__name__ for command in app.registered_commands]


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str, code: int = 1) -> None:
    """One `error:` line (and at most a `hint:` line) on stderr, the exit code, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def tasks(repo: Path) -> list[dict]:
    result = claw(repo, "status", "--all", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- help ------------------------------------------------------------------------------------

def test_every_command_has_help():
    assert {"init", "add", "status", "show", "diff", "run", "review", "approve", "merge"} <= set(COMMANDS)
    argvs = [["--help"]] + [[name, "--help"] for name in COMMANDS]
    procs = [subprocess.Popen([sys.executable, "-m", "clawfleet.cli", *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
             for argv in argvs]
    for argv, proc in zip(argvs, procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (argv, err)
        assert "Usage:" in out and "Traceback" not in err, argv
    # The top-level help lists every command.
    top = claw(Path.cwd(), "--help").stdout
    for name in COMMANDS:
        assert name in top


def _every_command(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _every_command(sub, (*path, name))


def test_help_prints_every_bracketed_word_as_written_and_no_bool_metavar():
    """Typer reads help as rich markup: `[notify]` vanished ("Notifications to the  urls")."""
    import re

    import typer

    commands = list(_every_command(typer.main.get_command(app)))
    # One process renders them all, as `claw PATH --help` does (one process per help is slow).
    render = ("import sys\nfrom clawfleet import cli\n"
              "for argv in sys.stdin.read().split('\\n'):\n"
              "    sys.argv = ['claw', *argv.split(), '--help']\n"
              "    try:\n        cli.main()\n    except SystemExit:\n        pass\n"
              "    print('\\x00', flush=True)\n")
    result = subprocess.run([sys.executable, "-c", render], input="\n".join(" ".join(p) for p, _ in commands),
                            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    outs = result.stdout.split("\x00\n")
    assert len(outs) == len(commands) + 1
    checked = 0
    for (path, command), out in zip(commands, outs):
        assert "Usage:" in out, (path, out)
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for word in {w for text in texts for w in re.findall(r"\[[^\]\s]+\]", text.partition("\f")[0])}:
            assert word in out, (path, word, out)
            checked += 1
        assert "<bool>" not in out, (path, out)
    assert checked >= 3  # [notify] twice and [agents] are in the source


# -- init ------------------------------------------------------------------------------------

def test_init_sets_up_the_repository(repo):
    result = claw(repo, "init", "--check", "true")
    assert result.returncode == 0, result.stderr
    assert (repo / ".claw" / "config.toml").is_file()
    assert "commands = [\"true\"]" in (repo / ".claw" / "config.toml").read_text()
    assert (repo / "AGENTS.md").read_text().strip() and (repo / "SOUL.md").read_text().strip()
    exclude = (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert "/.claw/run/" in exclude
    # The database and worktrees stay out of `git status`; the config is meant to be committed.
    claw(repo, "add", "make the database")
    assert (repo / ".claw" / "run" / "claw.db").exists()
    porcelain = git.out("status", "--porcelain", "--untracked-files=all", cwd=repo)
    assert ".claw/run" not in porcelain and ".claw/config.toml" in porcelain


def test_init_keeps_an_existing_agents_md_and_is_idempotent(repo):
    (repo / "AGENTS.md").write_text("# our own rules\n")
    first = claw(repo, "init")
    assert first.returncode == 0, first.stderr
    assert (repo / "AGENTS.md").read_text() == "# our own rules\n"
    assert "wrote AGENTS.md" not in first.stdout and "wrote SOUL.md" in first.stdout
    config = (repo / ".claw" / "config.toml").read_text()
    (repo / ".claw" / "config.toml").write_text(config + "\n# my note\n")
    exclude = (repo / ".git" / "info" / "exclude").read_text()

    second = claw(repo, "init")
    assert second.returncode == 0, second.stderr
    assert "already initialised" in second.stdout and "wrote" not in second.stdout
    assert (repo / ".claw" / "config.toml").read_text() == config + "\n# my note\n"
    assert (repo / ".git" / "info" / "exclude").read_text() == exclude
    assert exclude.splitlines().count("/.claw/run/") == 1


def test_init_says_what_to_commit_and_which_agent_it_will_use(repo):
    result = claw(repo, "init")
    assert result.returncode == 0, result.stderr
    assert "commit .claw/config.toml, AGENTS.md, SOUL.md and USER.md" in result.stdout
    assert ".claw/run/ (database, worktrees, logs) never is" in result.stdout
    assert "agent: builtin (builtin), not ready: no model configured" in result.stdout, result.stdout
    assert "change it with `default_agent` under [fleet] in .claw/config.toml" in result.stdout


def test_init_refuses_a_target_branch_that_does_not_exist(repo):
    result = claw(repo, "init", "--target", "nosuch")
    assert_clean_error(result, "there is no branch 'nosuch'")
    assert "git branch nosuch" in result.stderr and "one of: main" in result.stderr
    assert not (repo / ".claw").exists()


def test_init_again_says_which_flags_it_did_not_apply(repo):
    assert claw(repo, "init").returncode == 0
    again = claw(repo, "init", "--target", "nosuch", "--check", "pytest -q")
    assert again.returncode == 0, again.stderr
    assert "not applied: --target and --check (.claw/config.toml exists" in again.stdout, again.stdout
    assert "`target` under [fleet] and `commands` under [checks]" in again.stdout
    assert "nosuch" not in (repo / ".claw" / "config.toml").read_text()


def test_init_outside_a_repository_is_a_clear_error(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    result = claw(plain, "init", env={"GIT_CEILING_DIRECTORIES": str(tmp_path)})
    assert_clean_error(result, "not inside a git repository")
    assert not (plain / ".claw").exists()


# -- add -------------------------------------------------------------------------------------

def test_add_from_a_file_with_sections(repo):
    (repo.parent / "tasks.md").write_text(
        "# Sprint\n\nintro that is not a task\n\n"
        "## Add a slugify helper\nTurn titles into slugs.\n\n"
        "## Fix the login bug\n- repro: log in twice\n- expected: no error\n\n"
        "## Write the README\nShort.\n")
    result = claw(repo, "add", "-f", str(repo.parent / "tasks.md"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "2", "3"]
    listed = tasks(repo)
    assert [t["title"] for t in listed] == ["Add a slugify helper", "Fix the login bug", "Write the README"]
    assert [t["body"] for t in listed] == ["Turn titles into slugs.",
                                           "- repro: log in twice\n- expected: no error", "Short."]


def test_add_with_a_title_uses_the_file_as_body(repo):
    body = "## Details\n\nDo it carefully.\n"
    (repo.parent / "body.md").write_text(body)
    result = claw(repo, "add", "-f", str(repo.parent / "body.md"), "The title", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ids": [1]}
    [task] = tasks(repo)
    assert task["title"] == "The title" and task["body"] == body


def test_add_without_a_title_is_a_usage_error(repo):
    assert_clean_error(claw(repo, "add"), "a task needs a title", code=2)
    assert_clean_error(claw(repo, "add", "   "), "a task needs a title", code=2)
    assert tasks(repo) == []


def test_add_with_body_and_file_is_an_error(repo):
    (repo.parent / "body.md").write_text("text\n")
    result = claw(repo, "add", "t", "-b", "inline", "-f", str(repo.parent / "body.md"))
    assert_clean_error(result, "not both", code=2)
    assert tasks(repo) == []


def test_add_with_a_missing_file_is_an_error(repo):
    assert_clean_error(claw(repo, "add", "-f", "nope.md"), "cannot read nope.md", code=2)


def test_add_depending_on_a_missing_task_is_an_error(repo):
    assert_clean_error(claw(repo, "add", "child", "--depends", "99"), "task 99 does not exist")
    assert tasks(repo) == []  # nothing half-written
    assert claw(repo, "add", "parent").stdout.strip() == "1"
    assert claw(repo, "add", "child", "--depends", "1").stdout.strip() == "2"
    assert tasks(repo)[1]["depends_on"] == [1]


# -- JSON output -------------------------------------------------------------------------------

@pytest.fixture
def reviewed(repo):
    """One task whose attempt changed hello.txt and waits for review."""
    agent = agent_script(repo, "hello", 'echo "hello from $CLAW_TASK_ID" > hello.txt\n')
    write_config(repo, f"""
        [fleet]
        default_agent = "hello"
        [review]
        auto_approve = []
        [agents.hello]
        kind = "command"
        command = ["{agent}"]
        """)
    assert claw(repo, "add", "say hello", "-b", "in hello.txt").returncode == 0
    assert claw(repo, "add", "later", "--depends", "1").returncode == 0
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    return repo


def test_json_outputs_are_valid(reviewed):
    repo = reviewed
    listed = json.loads(claw(repo, "status", "--json").stdout)
    assert [(t["id"], t["state"]) for t in listed] == [(1, "review"), (2, "queued")]
    assert listed[0]["latest_attempt"]["state"] == "ready"
    assert listed[1]["waiting"] == "waits for task 1 to land"

    shown = json.loads(claw(repo, "show", "1", "--json").stdout)
    assert shown["title"] == "say hello" and shown["body"] == "in hello.txt"
    assert [a["number"] for a in shown["attempts"]] == [1]
    assert "task.added" in [e["kind"] for e in shown["events"]]

    waiting = json.loads(claw(repo, "review", "--json").stdout)
    assert [t["id"] for t in waiting] == [1]

    changes = json.loads(claw(repo, "diff", "1", "--json").stdout)
    assert [f["path"] for f in changes["files"]] == ["hello.txt"]
    assert changes["files"][0]["added"] == 1
    assert "+hello from 1" in changes["diff"]
    assert json.loads(claw(repo, "diff", "1", "--stat", "--json").stdout)["diff"] == ""


def test_empty_json_outputs(repo):
    assert json.loads(claw(repo, "status", "--json").stdout) == []
    assert json.loads(claw(repo, "review", "--json").stdout) == []


def test_approve_a_task_not_in_review_is_a_clear_error(reviewed):
    assert_clean_error(claw(reviewed, "approve", "2"), "task 2 is queued", "not waiting for review")
    assert_clean_error(claw(reviewed, "approve", "99"), "there is no task 99")
    assert claw(reviewed, "approve", "1").returncode == 0
    assert_clean_error(claw(reviewed, "approve", "1"), "task 1 is approved")


def test_diff_of_a_task_without_attempts_is_a_clear_error(repo):
    claw(repo, "add", "never ran")
    assert_clean_error(claw(repo, "diff", "1", "--json"), "has no attempt yet")


# -- clear errors --------------------------------------------------------------------------------

def test_show_a_missing_task(repo):
    assert_clean_error(claw(repo, "show", "99"), "there is no task 99")
    assert_clean_error(claw(repo, "show", "99", "--json"), "there is no task 99")


@pytest.mark.parametrize("argv", [["status"], ["add", "x"], ["run"], ["show", "1"]])
def test_not_a_git_repository(tmp_path, argv):
    plain = tmp_path / "plain"
    plain.mkdir()
    result = claw(plain, *argv, env={"GIT_CEILING_DIRECTORIES": str(tmp_path)})
    assert_clean_error(result, "is not inside a git repository")


def test_run_in_a_repository_without_commits(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    git.git("init", "--quiet", "-b", "main", cwd=empty)
    assert_clean_error(claw(empty, "run"), "has no commits yet")


def test_run_with_a_missing_target_branch(repo):
    write_config(repo, '[fleet]\ntarget = "nope"\n')
    claw(repo, "add", "something")
    assert_clean_error(claw(repo, "run"), "target branch 'nope' does not exist")
    assert tasks(repo)[0]["state"] == "queued"  # nothing was started


def test_claw_finds_the_project_from_a_subfolder(repo):
    (repo / "src" / "deep").mkdir(parents=True)
    assert claw(repo / "src" / "deep", "add", "from below").stdout.strip() == "1"
    assert (repo / ".claw" / "run" / "claw.db").exists()
    assert not (repo / "src" / "deep" / ".claw").exists()
    assert [t["title"] for t in tasks(repo)] == ["from below"]


def test_add_with_a_repeated_dependency(repo):
    claw(repo, "add", "parent")
    result = claw(repo, "add", "child", "--depends", "1", "--depends", "1")
    assert result.returncode == 0, result.stderr
    assert tasks(repo)[1]["depends_on"] == [1]


def test_add_with_an_out_of_range_priority(repo):
    result = claw(repo, "add", "big", "--priority", "99999999999999999999")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "priority" in result.stderr
    assert tasks(repo) == []


def test_add_from_a_file_that_is_not_utf8(repo):
    (repo.parent / "latin1.md").write_bytes("## Café\nnaïve\n".encode("latin-1"))
    assert_clean_error(claw(repo, "add", "-f", str(repo.parent / "latin1.md")), "latin1.md", code=2)


def test_add_from_a_file_ignores_headings_inside_code_blocks(repo):
    (repo.parent / "tasks.md").write_text(
        "## Add a build script\nLike this:\n\n```bash\n## build everything\nmake all\n```\n\n"
        "## Document it\nIn the README.\n")
    assert claw(repo, "add", "-f", str(repo.parent / "tasks.md")).returncode == 0
    listed = tasks(repo)
    assert [t["title"] for t in listed] == ["Add a build script", "Document it"]
    assert "## build everything" in listed[0]["body"]


def test_a_corrupt_database_is_a_clear_error(repo):
    (repo / ".claw" / "run").mkdir(parents=True)
    (repo / ".claw" / "run" / "claw.db").write_text("this is not sqlite\n")
    assert_clean_error(claw(repo, "status"), "claw.db")


# -- input that cannot be stored or shown as it is -------------------------------------------------

def test_a_title_that_is_not_utf8_is_a_usage_error(repo):
    # Python hands undecodable argv bytes over as lone surrogates, which SQLite cannot store.
    result = claw(repo, "add", "fix \udcff\udcfe")
    assert_clean_error(result, "argument 2 is not UTF-8 text", "fix \\xff\\xfe", code=2)
    assert_clean_error(claw(repo, "reject", "1", "--feedback", "\udce9"), "argument 4", code=2)
    assert tasks(repo) == []


TOO_BIG = str(2**63)  # one past SQLite's largest integer


@pytest.mark.parametrize("argv", [
    ["show", TOO_BIG], ["show", TOO_BIG, "--json"], ["approve", TOO_BIG], ["reject", TOO_BIG],
    ["reject", TOO_BIG, "--feedback", "smaller"], ["retry", TOO_BIG], ["cancel", TOO_BIG],
    ["log", TOO_BIG], ["diff", TOO_BIG], ["add", "child", "--depends", TOO_BIG],
    ["gateway", "token", TOO_BIG], ["skill", "learn", TOO_BIG], ["memory", "forget", TOO_BIG],
    ["memory", "add", "a note", "--task", TOO_BIG], ["memory", "add", "a note", "--attempt", TOO_BIG],
    ["memory", "list", "--task", TOO_BIG], ["memory", "list", "--limit", TOO_BIG],
    ["depends", TOO_BIG], ["depends", "1", "--on", TOO_BIG], ["show", "99999999999999999999999999"],
])
def test_an_id_too_large_for_the_store_is_a_usage_error(repo, argv):
    result = claw(repo, *argv)
    assert_clean_error(result, "9223372036854775807", code=2)  # the largest id there can be
    assert "--help` says what it takes" in result.stderr


@pytest.mark.parametrize("argv, said", [
    (["show"], "Missing argument 'task_id'"), (["show", "one"], "Invalid value for 'task_id'"),
    (["show", "1", "--bogus"], "No such option: --bogus"), (["nope"], "No such command 'nope'"),
    (["add", "x", "--priority", "1e99"], "Invalid value for '--priority'"),
    (["memory", "forget"], "Missing argument 'note_id'"),
])
def test_a_usage_error_is_one_line_and_says_where_help_is(repo, argv, said):
    """typer's own usage errors (a box under the usage line) are said like every other error."""
    result = claw(repo, *argv)
    assert_clean_error(result, said, code=2)
    assert "--help` says what it takes" in result.stderr.splitlines()[1]


def test_every_command_taking_an_id_bounds_it():
    """The list above is every one: a new command with an id argument must bound it too."""
    import typing

    import typer

    def types(hint):
        yield hint
        for arg in typing.get_args(hint):
            yield from types(arg)

    def id_params(group: typer.Typer, path=()):
        for sub in group.registered_groups:
            yield from id_params(sub.typer_instance, (*path, sub.name))
        for command in group.registered_commands:
            name = " ".join((*path, command.name or command.callback.__name__))
            for param, hint in typing.get_type_hints(command.callback, include_extras=True).items():
                info = next((m for m in getattr(hint, "__metadata__", ()) if hasattr(m, "max")), None)
                about_ids = info is not None and (param.endswith("_id") or param in ("task", "attempt")
                                                 or re.search(r"\bid\b", (info.help or "").lower()))
                if about_ids and any(t is int for t in types(hint)):
                    yield name, param, info.max

    found = list(id_params(app))
    assert [f for f in found if f[2] != 2**63 - 1] == []
    assert {"show", "approve", "reject", "retry", "cancel", "log", "diff", "add", "depends", "gateway token",
            "skill learn", "memory forget", "memory add", "memory list"} <= {f[0] for f in found}, found


def test_claw_in_a_folder_that_was_deleted_says_so(repo):
    gone = repo.parent / "gone"
    gone.mkdir()
    # A shell whose current folder is removed under it, as when a worktree is deleted elsewhere.
    script = f'cd "{gone}" && rmdir "{gone}" && exec "{sys.executable}" -m clawfleet.cli status'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "200"})
    assert_clean_error(result, "the current folder no longer exists")
    assert "git is not installed" not in result.stderr


def test_a_deleted_checkout_of_the_target_is_named_as_such(reviewed):
    """A linked worktree of main deleted without `git worktree remove`: git still lists it, and
    clawfleet called it an agent's tampering."""
    repo = reviewed
    git.git("switch", "--quiet", "-c", "dev", cwd=repo)
    checkout = repo.parent / "main-checkout"
    git.git("worktree", "add", "--quiet", str(checkout), "main", cwd=repo)
    subprocess.run(["rm", "-rf", str(checkout)], check=True)
    assert claw(repo, "approve", "1").returncode == 0
    result = claw(repo, "merge")
    assert_clean_error(result, f"your checkout at {checkout} no longer exists")
    assert "git worktree prune" in result.stderr and "tampered" not in result.stderr


def _on_a_terminal(repo: Path, *args: str, columns: int = 80) -> str:
    """`claw ARGS` with a real terminal (a pty) of `columns` columns; its output, colours stripped."""
    import pty
    import re

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", *args], cwd=repo, stdout=follower,
                            stderr=follower, env={**os.environ, "COLUMNS": str(columns), "TERM": "xterm"})
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(60)
    os.close(leader)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode()).replace("\r\n", "\n")


def test_status_puts_a_long_note_under_its_row_cut_visibly_with_the_full_text_one_command_away(repo):
    from clawfleet.models import TaskState
    from clawfleet.project import Project

    write_config(repo, "")
    claw(repo, "add", "A task whose title is long enough to need cutting at eighty columns, surely")
    reason = ("checks failed after 1 fix round(s): `pytest -q tests/test_everything.py` exited 1: "
              "1 failed, 3 passed in 0.21s, and the end of this reason is the part worth reading")
    Project(repo).store.move_task(1, TaskState.failed, "task.failed", reason=reason)
    out = _on_a_terminal(repo, "status")
    lines = out.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), out
    row = next(i for i, line in enumerate(lines) if line.lstrip().startswith("1 "))
    assert "A task whose title" in lines[row] and "…" in lines[row] and "failed" in lines[row], out
    assert lines[row + 1].startswith("   └ checks failed after 1 fix round(s)") and lines[row + 1].rstrip().endswith("…"), out
    assert "`claw show 1`" in out
    assert reason in claw(repo, "show", "1").stdout.replace("\n", " ")
    # Without a terminal (a log, a pipe) nothing is cut.
    assert f"   └ {reason}" in claw(repo, "status", env={"COLUMNS": ""}).stdout


def test_add_refuses_an_empty_footprint(repo):
    write_config(repo, "")
    assert_clean_error(claw(repo, "add", "a task", "--footprint", ""), "empty --footprint", code=2)
    assert tasks(repo) == []


def test_add_from_a_file_without_sections_says_it_made_one_task(repo):
    write_config(repo, "")
    (repo.parent / "notes.md").write_text("Make the parser faster\n\nIt is slow on big files.\n")
    result = claw(repo, "add", "-f", str(repo.parent / "notes.md"))
    assert result.returncode == 0 and result.stdout == "1\n", result.stderr
    assert "has no `## ` sections: queued as one task, 'Make the parser faster'" in result.stderr


def test_add_with_an_agent_that_cannot_run_warns_and_still_queues(repo):
    write_config(repo, '[agents.mine]\nkind = "command"\ncommand = ["no-such-program-here"]\n')
    result = claw(repo, "add", "a task", "--agent", "mine")
    assert result.returncode == 0 and result.stdout == "1\n", result.stderr
    assert "warning: agent 'mine' cannot run here yet: program 'no-such-program-here' not found" in result.stderr
    assert [t["state"] for t in tasks(repo)] == ["queued"]


def test_agents_with_a_broken_config_names_the_config_not_a_missing_project(repo):
    write_config(repo, '[agents.builtin]\nmodel = "a"\nmodel = "b"\n')
    for args in (("agents", "--configured"), ("agents",)):
        result = claw(repo, *args)
        assert_clean_error(result, "config.toml", "not valid TOML")
        assert "hint: a key is set twice in one table there" in result.stderr
