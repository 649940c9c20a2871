"""Titles, bodies, summaries, logs and diffs from outside reach the terminal and the commit log
with their escape sequences shown, never obeyed."""

from __future__ import annotations

import json

from clawfleet import git
from clawfleet.printable import printable

from conftest import agent_script, claw, write_config

TITLE = "fix \x1b]0;pwned\x07 it"
BODY = "details \x1b[2J here\u202e"


def test_printable_shows_controls_and_keeps_colour_only_when_asked():
    assert printable(TITLE) == "fix \\x1b]0;pwned\\x07 it"
    assert printable("a\tb\nc\x7f\x9b\udcff") == "a\tb\nc\\x7f\\x9b\\xff"
    coloured = "\x1b[31mred\x1b[0m \x1b]52;c;Zm9v\x07"
    assert printable(coloured, colour=True) == "\x1b[31mred\x1b[0m \\x1b]52;c;Zm9v\\x07"
    assert printable(coloured) == "\\x1b[31mred\\x1b[0m \\x1b]52;c;Zm9v\\x07"


def test_every_command_shows_escape_sequences_escaped_and_commits_hold_none(repo):
    agent = agent_script(repo, "sneaky", r"""
        printf 'plain \033[32mgreen\033[0m and \033]0;owned\007 title\n'
        printf 'line \033[2J cleared\n' > sneaky.txt
        printf 'did it \033[2J\n' > "$CLAW_SUMMARY_FILE"
        """)
    write_config(repo, f"""
        [fleet]
        default_agent = "sneaky"
        max_attempts = 1
        [review]
        auto_approve = []
        [agents.sneaky]
        kind = "command"
        command = ["{agent}"]
        """)
    assert claw(repo, "add", TITLE, "-b", BODY, "--kind", "fix\x1b[2J").returncode == 0
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    outputs = {argv: claw(repo, *argv.split()) for argv in
               ("status", "status --all", "show 1", "log 1", "diff 1", "diff 1 --stat", "review", "stats")}
    for argv, shown in outputs.items():
        assert shown.returncode == 0, (argv, shown.stderr)
        raw = shown.stdout + shown.stderr
        assert "\x07" not in raw and "\u202e" not in raw, (argv, raw)
        assert "\x1b" not in raw.replace("\x1b[32m", "").replace("\x1b[0m", ""), (argv, raw)
    assert "fix \\x1b]0;pwned\\x07 it" in outputs["status"].stdout
    assert "details \\x1b[2J here\\u202e" in outputs["show 1"].stdout
    assert "did it \\x1b[2J" in outputs["show 1"].stdout
    assert "\x1b[32mgreen\x1b[0m" in outputs["log 1"].stdout              # the agent's colours stay
    assert "\\x1b]0;owned\\x07 title" in outputs["log 1"].stdout
    assert "+line \\x1b[2J cleared" in outputs["diff 1"].stdout
    # JSON keeps the text exact (escaped by JSON itself), so scripts see what was stored.
    [task] = json.loads(claw(repo, "status", "--json").stdout)
    assert task["title"] == TITLE and task["body"] == BODY
    # The attempt's commit message, built from the title and the agent's summary.
    message = git.out("log", "-1", "--format=%B", task["latest_attempt"]["branch"], cwd=repo)
    assert "\x1b" not in message and "\x07" not in message
    assert message.startswith("fix \\x1b]0;pwned\\x07 it") and "did it \\x1b[2J" in message
