"""`claw ui`: the textual app driven by its own test pilot on a real project (a real `claw run`
made the tasks, the store is real SQLite), and the board it reads."""

from __future__ import annotations

import asyncio

from clawfleet.board import snapshot
from clawfleet.project import Project
from clawfleet.tui import FleetApp

from conftest import agent_script, claw
from test_run import configure, status_json


def fleet_with_work(repo) -> Project:
    agent = agent_script(repo, "w", 'echo "work of $CLAW_TASK_ID"; echo "$CLAW_TASK_ID" > "t$CLAW_TASK_ID.txt"\n')
    configure(repo, {"w": agent}, auto_approve='["low"]', checks=["true"])
    claw(repo, "add", "lands by itself", "--importance", "low")
    claw(repo, "add", "needs a look")
    claw(repo, "add", "needs another look")
    claw(repo, "add", "after the look", "--depends", "2")
    assert claw(repo, "run").returncode == 0
    assert [t["state"] for t in status_json(repo)] == ["merged", "review", "review", "queued"]
    return Project(repo)


def test_the_board_reads_rows_totals_and_events(repo):
    project = fleet_with_work(repo)
    board = snapshot(project)
    assert [(r.id, r.state) for r in board.rows] == [(2, "review"), (3, "review"), (4, "queued")]
    assert "task 2" in board.rows[2].note                       # why it waits
    assert board.rows[0].agent == "w" and board.rows[0].elapsed_s > 0 and board.rows[0].attempt_id
    assert (board.totals.queued, board.totals.in_review, board.totals.running) == (1, 2, 0)
    assert board.events and "task.review" in " ".join(board.events)
    assert [r.id for r in snapshot(project, closed=True).rows] == [1, 2, 3, 4]


def test_the_app_shows_the_fleet_and_acts_on_review_at_a_key(repo):
    project = fleet_with_work(repo)
    shown: dict = {}

    class Recording(FleetApp):
        def notify(self, message, **options):
            shown.setdefault("notes", []).append(message)
            super().notify(message, **options)

    async def drive() -> None:
        app = Recording(project, refresh_s=0.2)
        async with app.run_test(size=(160, 40)) as pilot:
            table = app.query_one("#tasks")
            shown["rows"] = [table.get_row_at(i)[0] for i in range(table.row_count)]
            shown["detail"] = str(app.query_one("#detail").render())
            await pilot.press("c")                              # closed tasks too
            shown["all_rows"] = [table.get_row_at(i)[0] for i in range(table.row_count)]
            await pilot.press("c")
            await pilot.press("a")                              # approve task 2 (the first row)
            await pilot.pause()
            await pilot.press("down", "s")                      # send task 3 back with feedback
            await pilot.pause()
            await pilot.press(*"smaller please", "enter")
            await pilot.pause()
            await pilot.press("down")                           # task 4: queued, nothing to approve
            await pilot.press("a")
            await pilot.pause()
            await pilot.press("q")

    asyncio.run(drive())
    assert shown["rows"] == ["2", "3", "4"] and shown["all_rows"] == ["1", "2", "3", "4"]
    assert "task 2" in shown["detail"] and "work of 2" in shown["detail"]      # the agent's log tail
    tasks = {t["id"]: t for t in status_json(repo)}
    assert tasks[2]["state"] in ("approved", "merged")
    assert tasks[3]["state"] == "queued" and tasks[3]["feedback"] == "smaller please"
    assert tasks[4]["state"] == "queued"
    assert any("task 4 is queued, not waiting for review" in note for note in shown["notes"]), shown["notes"]


def test_claw_ui_outside_a_terminal_says_what_to_use(repo):
    configure(repo, {"w": agent_script(repo, "w", "true\n")})
    result = claw(repo, "ui")
    assert result.returncode == 2 and "claw ui needs a terminal" in result.stderr and "claw status" in result.stderr


def test_the_board_shows_titles_with_escape_sequences_escaped(repo):
    configure(repo, {"w": agent_script(repo, "w", "true\n")})
    assert claw(repo, "add", "fix \x1b]0;pwned\x07 [bold]it", "-b", "\x1b[2J").returncode == 0
    project = Project(repo)
    [row] = snapshot(project).rows
    cells = FleetApp._cells(row)
    title = cells[1]
    assert getattr(title, "plain", title) == "fix \\x1b]0;pwned\\x07 [bold]it"  # neither obeyed nor markup
    detail = FleetApp(project)._detail_text(row.id)
    assert "\x1b" not in detail and "\\x1b]0;pwned\\x07" in detail


def test_a_cut_title_or_note_ends_in_an_ellipsis(repo):
    from clawfleet.board import TaskRow

    row = TaskRow(1, "t" * 70, "builtin", "failed", note="n" * 100)
    cells = FleetApp._cells(row)
    title, note = str(cells[1]), str(cells[-1])
    assert len(title) == 60 and title.endswith("…") and len(note) == 80 and note.endswith("…")
    two_lines = FleetApp._cells(TaskRow(2, "short", "builtin", "failed", note="first line\nsecond"))
    assert str(two_lines[1]) == "short" and str(two_lines[-1]) == "first line…"


def test_reject_and_cancel_ask_first_and_the_selection_stays_put(repo):
    project = fleet_with_work(repo)
    seen: dict = {}

    async def drive() -> None:
        app = FleetApp(project, refresh_s=30)
        async with app.run_test(size=(160, 40)) as pilot:
            table = app.query_one("#tasks")
            await pilot.press("down", "r")                      # task 3: reject? ...
            await pilot.pause()
            await pilot.press("n")                              # ... no
            await pilot.pause()
            seen["after_no"] = [t["state"] for t in status_json(repo)]
            await pilot.press("x")                              # cancel task 3? any other key: no
            await pilot.pause()
            await pilot.press("j")
            await pilot.pause()
            seen["after_other_key"] = [t["state"] for t in status_json(repo)]
            await pilot.press("r")
            await pilot.pause()
            await pilot.press("y")                              # reject task 3: yes
            await pilot.pause()
            seen["rows"] = [table.get_row_at(i)[0] for i in range(table.row_count)]
            seen["selected"] = app.selected_id()
            await pilot.press("q")

    asyncio.run(drive())
    assert seen["after_no"] == ["merged", "review", "review", "queued"]
    assert seen["after_other_key"] == ["merged", "review", "review", "queued"]
    assert [t["state"] for t in status_json(repo)] == ["merged", "review", "rejected", "queued"]
    assert seen["rows"] == ["2", "4"] and seen["selected"] == 4   # the row after it, not the top


def test_d_shows_the_selected_tasks_diff_and_escape_goes_back(repo):
    project = fleet_with_work(repo)
    seen: dict = {}

    async def drive() -> None:
        app = FleetApp(project, refresh_s=30)
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.press("d")                              # task 2's change
            await pilot.pause()
            seen["screen"] = type(app.screen).__name__
            seen["diff"] = app.screen.diff
            await pilot.press("pagedown", "escape")
            await pilot.pause()
            seen["back"] = type(app.screen).__name__
            await pilot.press("q")

    asyncio.run(drive())
    assert seen["screen"] == "DiffScreen" and "+2" in seen["diff"] and "t2.txt" in seen["diff"], seen
    assert seen["back"] != "DiffScreen"
