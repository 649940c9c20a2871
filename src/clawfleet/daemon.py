"""The claw daemon (`claw up`): the fleet, run continuously, with its duties around it.

The main thread runs the orchestrator's loop, which does not end when the queue is empty: it
waits for work, and is woken when a channel or a duty queues some. Each duty (schedules,
watchers, the heartbeat, the notifier) has its own thread and database connection, so a slow
watcher or model call holds up nothing else. The webhook and the Telegram bot serve
from their own threads. One daemon per repository: a lock file, and `daemon.json` beside it
says who holds it (pid, start time, log, webhook URL) for `claw status` and `claw down`.

Stopping (SIGTERM, SIGINT, `claw down`) leaves running attempts running: they are detached
runners, and the next `claw up` reattaches to them or collects what they left, as after a
crash or `kill -9`. SIGUSR1 (`claw down --wait`) drains first: no new attempts, and the daemon
stops once the running ones have ended.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from .errors import ClawError
from .daemoninfo import INFO_FILE, DaemonInfo, running_daemon
from .procs import PidLock, pid_alive
from .project import Project
from .timefmt import ago

LOCK_FILE = "daemon.lock"
LOG_FILE = "daemon.log"
DUTY_INTERVAL_S = 1.0


def DaemonLock(run_dir: Path) -> PidLock:
    """One daemon per repository; a second one is told which pid holds it."""
    def refuse(holder: str) -> ClawError:
        info = running_daemon(run_dir)
        up = f", up {ago(info.uptime)}" if info else ""
        return ClawError(f"a claw daemon (pid {holder}{up}) already runs in this repository",
                         hint="`claw status` shows what it does; `claw down` stops it")
    return PidLock(run_dir / LOCK_FILE, refuse)


class Daemon:
    """Run the fleet until asked to stop. `log` gets one line per happening."""

    def __init__(self, project: Project, *, log: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.time, log_path: Path | None = None) -> None:
        self.project = project
        self.config = project.config
        self.log = log
        self.clock = clock
        self.log_path = log_path
        self.stopping = threading.Event()
        self.draining = threading.Event()
        self.orchestrator = None
        self.webhook = None
        self.telegram = None

    # -- asking it to stop ------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()

    def drain(self) -> None:
        self.draining.set()

    def _install_signals(self) -> None:
        # The handlers only set flags, which the loop reads within a tick: waking the loop from a
        # handler could deadlock on the lock of the very wait it interrupts.
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())
        signal.signal(signal.SIGUSR1, lambda *_: self.drain())

    def _should_stop(self) -> bool:
        if self.draining.is_set() and self.orchestrator is not None:
            if not self.orchestrator.paused:
                self.orchestrator.paused = True
                self.log("draining: no new attempts; stopping when the running ones end")
            if not self.orchestrator.running():
                return True
        return self.stopping.is_set()

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> None:
        from .orchestrator import Orchestrator

        self.project.target_tip()
        if self.config.notify.urls:
            from .notify import apprise_sender

            apprise_sender(self.config.notify.urls)  # a URL apprise cannot use fails here, not later
        run_dir = self.project.run_dir
        with DaemonLock(run_dir):
            from .orchestrator import OrchestratorLock
            with OrchestratorLock(run_dir):
                pass  # a `claw run` that drives the repository: refuse before saying "up"
            self._install_signals()
            self.orchestrator = Orchestrator(self.project, on_event=self.log, clock=self.clock)
            duties = self._duty_threads()
            try:
                self._start_channels()
                self._write_info()
                for duty in duties:
                    duty.start()
                running = len(self.orchestrator.running())
                self.log(f"claw daemon up (pid {os.getpid()})"
                         + (f"; reattaching to {running} running attempt(s)" if running else ""))
                self.orchestrator.run(tick=self.config.daemon.tick, until=self._should_stop)
            finally:
                self.stopping.set()
                from .watchers import stop_all
                stop_all(run_dir)  # a watcher's long command must not hold up the stop
                for duty in duties:
                    if duty.is_alive():
                        duty.join(30)
                self._stop_channels()
                (run_dir / INFO_FILE).unlink(missing_ok=True)
                left = len(self.orchestrator.running())
                self.log("claw daemon down" + (f"; {left} attempt(s) left running: `claw up` reattaches"
                                               if left else ""))

    def _write_info(self) -> None:
        info = DaemonInfo(os.getpid(), time.time(), str(self.log_path) if self.log_path else None,
                          self.webhook.url if self.webhook else None)
        path = self.project.run_dir / INFO_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(info)))
        temporary.replace(path)

    def _start_channels(self) -> None:
        wake = self.orchestrator.wake
        if self.config.webhook.enabled:
            from .channels.webhook import TOKEN_FILE, start_webhook

            self.webhook = start_webhook(self.project, on_change=wake)
            where = (f"${self.config.webhook.token_env}" if os.environ.get(self.config.webhook.token_env)
                     else str(self.project.run_dir / TOKEN_FILE))
            self.log(f"webhook at {self.webhook.url} (bearer token in {where})")
        if self.config.telegram.enabled:
            from .channels.telegram import TelegramBot

            self.telegram = TelegramBot.from_config(self.project, on_change=wake)
            self.telegram.start()
            self.log(f"telegram bot polling {self.config.telegram.base_url.split('/bot')[0]}")

    def _stop_channels(self) -> None:
        for channel in (self.telegram, self.webhook):
            if channel is not None:
                try:
                    channel.stop()
                except Exception as error:  # stopping must go on whatever one channel does
                    self.log(f"stopping a channel: {error}")

    # -- the duties ---------------------------------------------------------------------------

    def _duty_threads(self) -> list[threading.Thread]:
        """One thread per duty (and per watcher), so a slow watcher or model call delays no other."""
        from .heartbeat import Heartbeat
        from .notify import Notifier, wanted
        from .schedules import Schedules
        from .watchers import Watchers

        config = self.config

        def wants(kind: str) -> bool:
            return wanted(config.notify, kind)

        def fire_schedules(project: Project) -> Callable[[], None]:
            def start_research(schedule) -> str:
                from .research import launch

                how = launch(project, schedule.name, schedule.research)
                self.log(f"schedule '{schedule.name}': research run {how}")
                return how

            schedules = Schedules(project.store, config.schedule, clock=self.clock,
                                  start_research=start_research)

            def step() -> None:
                for task_id in schedules.fire_due():
                    self.log(f"schedule queued task {task_id}")
                    self.orchestrator.wake()
            return step

        def run_watcher(watcher) -> Callable[[Project], Callable[[], None]]:
            return lambda project: run_watchers(project, [watcher])

        def run_watchers(project: Project, chosen) -> Callable[[], None]:
            watchers = Watchers(project, chosen, clock=self.clock, wants_notification=wants,
                                stopping=self.stopping)

            def step() -> None:
                for firing in watchers.run_due():
                    self.log(f"watcher '{firing.watcher}' fired: {firing.reason}"
                             + (f"; queued task {firing.task_id}" if firing.task_id else ""))
                    self.orchestrator.wake()
            return step

        def beat(project: Project) -> Callable[[], None]:
            heartbeat = Heartbeat(project, clock=self.clock, wants_notification=wants)

            def step() -> None:
                result = heartbeat.beat_if_due()
                if result and (result.tasks or result.message):
                    self.log(f"heartbeat: queued {result.tasks or 'nothing'}"
                             + (f"; message: {result.message[:100]}" if result.message else ""))
                    self.orchestrator.wake()
            return step

        def notify(project: Project) -> Callable[[], None]:
            notifier = Notifier(project.store, config.notify, clock=self.clock)

            def step() -> None:
                sent = notifier.pump()
                if sent:
                    self.log(f"sent {sent} notification(s)")
            return step

        # Each watcher in a thread of its own: a slow one holds up no other.
        duties = [("notifications", notify, bool(config.notify.urls)),
                  ("schedules", fire_schedules, bool(config.schedule)),
                  *((f"watcher {w.name}", run_watcher(w), True) for w in config.watcher),
                  ("heartbeat", beat, bool(config.daemon.heartbeat_minutes))]
        return [threading.Thread(target=self._duty, args=(name, make), name=f"claw-{name}", daemon=True)
                for name, make, wanted_here in duties if wanted_here]

    def _duty(self, name: str, make: Callable[[Project], Callable[[], None]]) -> None:
        """Run one duty every second until the daemon stops, on its own database connection."""
        project = Project(self.project.root)
        try:
            step = make(project)
            while True:
                try:
                    step()
                except ClawError as error:
                    self.log(f"{name}: {error}")
                except Exception as error:  # a broken duty is logged and tried again, never fatal
                    self.log(f"{name} failed: {type(error).__name__}: {error}")
                if self.stopping.wait(DUTY_INTERVAL_S):
                    break
            if name == "notifications":
                step()  # what the last moments produced
        except ClawError as error:
            self.log(f"{name} off: {error}")
        finally:
            project.store.close()


# -- starting in the background and stopping ---------------------------------------------------

def start_detached(project: Project, timeout: float = 30.0) -> DaemonInfo:
    """Start `claw up` as a background process logging to .claw/run/daemon.log; wait until it is up."""
    import subprocess
    import sys

    running = running_daemon(project.run_dir)
    if running:
        raise ClawError(f"a claw daemon (pid {running.pid}) already runs in this repository",
                        hint="`claw down` stops it")
    project.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = project.run_dir / LOG_FILE
    with open(log_path, "ab") as log:
        child = subprocess.Popen([sys.executable, "-m", "clawfleet", "up", "--log-file", str(log_path)],
                                 cwd=project.root, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = running_daemon(project.run_dir)
        if info and info.pid == child.pid:
            return info
        if child.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise ClawError("the daemon stopped as it started: " + " / ".join(tail),
                            hint=f"the whole log is in {log_path}")
        time.sleep(0.05)
    raise ClawError(f"the daemon did not come up within {timeout:.0f} s", hint=f"see {log_path}")


def stop_daemon(project: Project, *, wait: bool = False, timeout: float = 60.0,
                on_wait: Callable[[float], None] | None = None) -> DaemonInfo | None:
    """Ask the daemon to stop (or with `wait`, to drain first) and wait until it has exited.

    Returns who was stopped, or None when no daemon runs.
    """
    info = running_daemon(project.run_dir)
    if info is None:
        return None
    os.kill(info.pid, signal.SIGUSR1 if wait else signal.SIGTERM)
    started = time.monotonic()
    while pid_alive(info.pid):
        waited = time.monotonic() - started
        if waited > timeout:
            raise ClawError(f"the daemon (pid {info.pid}) has not stopped after {timeout:.0f} s",
                            hint="it may be waiting for attempts (with --wait) or a slow step; "
                                 f"`kill {info.pid}` stops it at once, attempts keep running")
        if on_wait:
            on_wait(waited)
        time.sleep(0.1)
    return info
