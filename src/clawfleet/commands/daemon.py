"""`claw up`, `claw down` and `claw notify`: the daemon and its notifications."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from .. import redact
from ..printable import escape
from ._common import JsonOption, ago, console, err_console, open_project, print_json


def up(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background, logging to .claw/run/daemon.log.")] = False,
    log_file: Annotated[Path | None, typer.Option(hidden=True, help="Where a detached daemon's output goes (recorded for `claw status`).")] = None,
) -> None:
    """Run the fleet continuously: queued tasks, schedules, watchers, heartbeat, notifications, chat."""
    from ..daemon import Daemon, start_detached

    project = open_project()
    if detach:
        info = start_detached(project)
        console.print(f"claw daemon up in the background (pid {info.pid}); log: {info.log}", soft_wrap=True)
        if info.webhook:
            console.print(f"webhook at {info.webhook}")
        console.print("`claw down` stops it")
        return

    def log(message: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {redact.text(message)}", flush=True)

    Daemon(project, log=log, log_path=log_file).run()


def down(
    wait: Annotated[bool, typer.Option("--wait", help="Start no new attempts and stop once the running ones have ended.")] = False,
    timeout: Annotated[float | None, typer.Option(min=0, help="Give up waiting after this many seconds (default: 60, or 6 hours with --wait).")] = None,
) -> None:
    """Stop the daemon. Running attempts go on and `claw up` reattaches to them; --wait lets them finish first."""
    from ..daemon import stop_daemon

    project = open_project()
    shown = [0.0]

    def on_wait(waited: float) -> None:
        if waited - shown[0] >= 5:
            shown[0] = waited
            err_console.print(f"waiting for the daemon to stop ({ago(waited)})...")

    info = stop_daemon(project, wait=wait, timeout=timeout or (6 * 3600 if wait else 60), on_wait=on_wait)
    if info is None:
        console.print("no claw daemon runs in this repository")
        return
    console.print(f"claw daemon (pid {info.pid}) stopped after {ago(info.uptime)} up")


def daemon_line(project) -> str:
    """One line for `claw status`: whether the daemon runs, its pid and uptime."""
    from ..daemon import running_daemon

    info = running_daemon(project.run_dir)
    if info is None:
        return "[dim]daemon: not running (`claw up` starts it)[/]"
    return f"daemon: [green]running[/] (pid {info.pid}, up {ago(info.uptime)})"


notify_app = typer.Typer(no_args_is_help=True, help="Notifications to the [notify] urls (apprise): send a test, list what was sent.")


@notify_app.command("send")
def notify_send(
    message: Annotated[str, typer.Argument(help="What to say.")],
    title: Annotated[str, typer.Option(help="The title, where the service shows one.")] = "claw",
) -> None:
    """Send a message to every [notify] url now (a test of the configuration)."""
    from ..errors import ClawError
    from ..notify import apprise_sender

    project = open_project()
    urls = project.config.notify.urls
    if not urls:
        raise ClawError("no [notify] urls are configured",
                        hint='add urls = ["ntfy://topic"] (any apprise URL) under [notify] in .claw/config.toml')
    if not apprise_sender(urls)(title, message):
        raise ClawError("the notification was not delivered", hint="check the URLs; apprise logs why above")
    console.print(f"sent to {len(urls)} url(s)")


@notify_app.command("list")
def notify_list(
    pending: Annotated[bool, typer.Option("--pending", help="Only the ones not delivered yet.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List notifications: when, what, whether delivered."""
    from dataclasses import asdict

    project = open_project()
    items = project.store.notifications(pending=True if pending else None)
    if as_json:
        print_json([asdict(item) for item in items])
        return
    if not items:
        console.print("no notifications" + (" pending" if pending else " yet"))
        return
    now = time.time()
    for item in items:
        state = "[green]sent[/]" if item.sent_at else ("[red]failing[/]" if item.error else "[yellow]pending[/]")
        console.print(f"{ago(now - item.at):>7} ago  {state}  {item.kind:<9} {item.importance:<8} "
                      f"{escape(item.summary.splitlines()[0][:90])}")
    sys.stdout.flush()
