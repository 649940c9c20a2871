"""`claw ui`: the fleet live in the terminal (textual), and the review decisions at a key press.

It reads the store every second (the board), so it shows what `claw run` or the daemon is doing
in any other process, and acts through the same functions as `claw approve / reject / cancel`.
It never runs attempts itself: closing it stops nothing.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Label, Static

from .board import Board, TaskRow, snapshot
from .errors import ClawError
from .printable import escape, printable
from .project import Project
from .timefmt import ago

STATE_STYLE = {"running": "cyan", "review": "yellow", "approved": "green", "merged": "green",
               "failed": "red", "rejected": "red", "cancelled": "dim", "queued": "", "blocked": "magenta"}
COLUMNS = ("id", "task", "agent", "state", "elapsed", "tokens", "cost", "note")
REFRESH_S = 1.0
LOG_LINES = 12


class FeedbackScreen(ModalScreen[str | None]):
    """Ask for the feedback that goes back to the agent (Enter sends, Escape cancels)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, task_id: int, suggestion: str) -> None:
        super().__init__()
        self.task_id, self.suggestion = task_id, suggestion

    def compose(self) -> ComposeResult:
        with Vertical(id="feedback"):
            yield Label(f"Send task {self.task_id} back: what should the next attempt do differently?")
            yield Input(value=self.suggestion, placeholder="feedback for the agent", id="feedback-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


class ConfirmScreen(ModalScreen[bool]):
    """Ask before an action that cannot be taken back: `y` does it, anything else does not."""

    BINDINGS = [Binding("y", "dismiss(True)", "Yes"), Binding("n,escape", "dismiss(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label(f"{self.question} [y/N]")

    def on_key(self, event) -> None:
        if event.key not in ("y", "n", "escape"):
            event.stop()
            self.dismiss(False)


class DiffScreen(ModalScreen[None]):
    """The selected task's latest change against its base, coloured, scrolled with the arrows
    and page keys; Escape or q goes back."""

    BINDINGS = [Binding("escape,q", "dismiss(None)", "Back")]

    def __init__(self, title: str, diff: str) -> None:
        super().__init__()
        self.title_line, self.diff = title, diff

    def compose(self) -> ComposeResult:
        from rich.syntax import Syntax
        from textual.containers import VerticalScroll

        yield Label(self.title_line, id="diff-title")
        with VerticalScroll(id="diff"):
            yield Static(Syntax(printable(self.diff) or "(no changes)", "diff", theme="ansi_dark",
                                word_wrap=False), id="diff-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#diff").focus()


class FleetApp(App):
    """Tasks with their live phase, tokens and cost; the selected task's details; the latest events."""

    TITLE = "claw"
    CSS = """
    #totals { height: 1; padding: 0 1; background: $boost; }
    #tasks { height: 1fr; }
    #detail { height: auto; max-height: 14; padding: 0 1; border-top: solid $primary; }
    #events { height: auto; max-height: 8; padding: 0 1; color: $text-muted; border-top: solid $primary; }
    FeedbackScreen, ConfirmScreen { align: center middle; }
    #diff { height: 1fr; }
    #confirm { width: 60%; height: auto; padding: 1 2; border: round $warning; background: $panel; }
    #feedback { width: 80%; height: auto; padding: 1 2; border: round $primary; background: $panel; }
    """
    BINDINGS = [
        Binding("a", "approve", "Approve"),
        Binding("s", "send_back", "Send back"),
        Binding("r", "reject", "Reject"),
        Binding("x", "cancel_task", "Cancel task"),
        Binding("d", "show_diff", "Diff"),
        Binding("c", "toggle_closed", "Show closed"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, project: Project, refresh_s: float = REFRESH_S) -> None:
        super().__init__()
        self.project = project
        self.refresh_s = refresh_s
        self.show_closed = False
        self.board: Board | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="totals")
        table = DataTable(id="tasks", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Static(id="detail")
        yield Static(id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = str(self.project.root)
        self.refresh_board()
        self.set_interval(self.refresh_s, self.refresh_board)

    # -- showing -----------------------------------------------------------------------------

    def refresh_board(self) -> None:
        self.board = board = snapshot(self.project, closed=self.show_closed, events=LOG_LINES)
        totals = board.totals
        self.query_one("#totals", Static).update(
            f"slots {totals.running}/{totals.slots} busy · {totals.queued} queued · {totals.in_review} in review"
            f" · {totals.tokens_last_hour:,} tokens in the last hour · ${totals.cost_today:.4f} today"
            + ("" if self.show_closed else " · closed tasks hidden (c)"))
        table = self.query_one("#tasks", DataTable)
        selected, at = self.selected_id(), table.cursor_row
        table.clear()
        for row in board.rows:
            table.add_row(*self._cells(row), key=str(row.id))
        if selected is not None and any(r.id == selected for r in board.rows):
            table.move_cursor(row=table.get_row_index(str(selected)))
        elif table.row_count:  # its row went (rejected, cancelled): stay where it was, not at the top
            table.move_cursor(row=min(at, table.row_count - 1))
        self.query_one("#events", Static).update("\n".join(
            [f"[yellow]conflict ahead:[/] {escape(line)}" for line in board.conflicts]
            + [escape(line) for line in board.events]))
        self._show_detail()

    @staticmethod
    def _cells(row: TaskRow) -> list[Text | str]:
        state = Text(row.state, style=STATE_STYLE.get(row.state, ""))
        if row.phase:
            state.append(f" {row.phase}", style="dim")
        if row.ai_review == "running":
            state.append(" AI reading", style="dim")
        # Text, not str: a title is shown as it is, never read as markup or sent to the terminal raw.
        return [str(row.id), Text(_cut(printable(row.title), 60)), Text(printable(row.agent)), state,
                ago(row.elapsed_s) if row.elapsed_s is not None else "",
                f"{row.tokens:,}" if row.tokens else "", f"${row.cost:.4f}" if row.cost is not None else "",
                Text(_cut(printable(row.note.strip()), 80))]

    def selected_id(self) -> int | None:
        table = self.query_one("#tasks", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return int(key.value) if key.value is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        self.query_one("#detail", Static).update(self._detail_text(self.selected_id()))

    def _detail_text(self, task_id: int | None) -> str:
        """The selected task: its reason in full, the AI reviewer's comments, its log's last lines."""
        from .review import ai_comments

        if task_id is None:
            return "no tasks: `claw add \"TITLE\"` queues one"
        store = self.project.store
        task = store.get_task(task_id)
        attempt = store.latest_attempt(task_id)
        lines = [f"[bold]task {task.id}[/]: {escape(task.title)} ({task.state}, {task.importance})"]
        if task.reason:
            lines.append(escape(_cut(task.reason.strip(), 400, f" (`claw show {task.id}` has it all)")))
        if attempt is not None:
            comments = ai_comments(store, attempt)
            if comments:
                lines.append("[bold]the AI reviewer says:[/] " + escape("; ".join(comments)))
            tail = _tail(self.project.attempt_dir(attempt.id) / "agent.log", 6)
            if tail:
                lines.append(f"[dim]attempt {attempt.number} ({escape(attempt.agent)}), agent.log:[/]")
                lines.append(escape(self.project.redactor.text(tail)))
        return "\n".join(lines)

    # -- acting ------------------------------------------------------------------------------

    def _act(self, what: str, act) -> None:
        task_id = self.selected_id()
        if task_id is None:
            return
        try:
            act(task_id)
        except ClawError as error:
            self.notify(str(error), title=f"cannot {what} task {task_id}", severity="error")
            return
        self.notify(f"task {task_id}: {what}")
        self.refresh_board()

    def action_approve(self) -> None:
        from .review import approve

        self._act("approve", lambda task_id: approve(self.project.store, task_id))

    def _confirm_then_act(self, what: str, act) -> None:
        task_id = self.selected_id()
        if task_id is None:
            return
        title = self.project.store.get_task(task_id).title

        def decided(yes: bool | None) -> None:
            if yes:
                self._act(what, act)
            else:
                self.notify(f"task {task_id}: not {what}ed")

        self.push_screen(ConfirmScreen(f"{what.capitalize()} task {task_id} ({printable(title)[:60]})?"), decided)

    def action_reject(self) -> None:
        from .review import reject

        self._confirm_then_act("reject", lambda task_id: reject(self.project, task_id))

    def action_cancel_task(self) -> None:
        from .review import cancel

        self._confirm_then_act("cancel", lambda task_id: cancel(self.project, task_id))

    def action_send_back(self) -> None:
        from .review import ai_comments, as_feedback, attempt_to_review, reject

        task_id = self.selected_id()
        if task_id is None:
            return
        try:
            comments = ai_comments(self.project.store, attempt_to_review(self.project.store, task_id))
        except ClawError as error:
            self.notify(str(error), title=f"cannot send task {task_id} back", severity="error")
            return

        def send(feedback: str | None) -> None:
            if feedback:
                self._act("send back", lambda task_id: reject(self.project, task_id, feedback))

        self.push_screen(FeedbackScreen(task_id, as_feedback(comments) if comments else ""), send)

    def action_show_diff(self) -> None:
        from . import git

        task_id = self.selected_id()
        if task_id is None:
            return
        attempt = self.project.store.latest_attempt(task_id)
        if attempt is None:
            self.notify(f"task {task_id} has no attempt yet", severity="warning")
            return
        root = self.project.root
        head = attempt.head_commit or git.branch_tip(root, attempt.branch) or attempt.base_commit
        self.push_screen(DiffScreen(f"task {task_id}, attempt {attempt.number}: {attempt.base_commit[:10]}..{head[:10]}",
                                    self.project.redactor.text(git.diff(root, attempt.base_commit, head))))

    def action_toggle_closed(self) -> None:
        self.show_closed = not self.show_closed
        self.refresh_board()


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(line[:200] for line in text.strip().splitlines()[-lines:])


def _cut(text: str, limit: int, more: str = "") -> str:
    """The first line of `text` within `limit` characters, ending in "…" (and `more`) where
    anything was left out: a cut shows."""
    lines = text.splitlines() or [""]
    if len(lines) == 1 and len(lines[0]) <= limit:
        return lines[0]
    return lines[0][:limit - 1].rstrip() + "…" + more
