"""Process groups: start children that can be killed whole, and find them again after a restart."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KILL_GRACE_S = 3.0


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] == "Z"


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from its third field (the state) on; [] when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rsplit(")", 1)[-1].split()  # the name in parentheses may hold spaces


def is_process(pid: int | None, started: int | None) -> bool:
    """True when the process `pid` that started at `started` (see start_time) still runs."""
    fields = _stat_fields(pid) if pid and started is not None else []
    return len(fields) > 19 and fields[0] != "Z" and int(fields[19]) == started


def start_time(pid: int | None) -> int | None:
    """When the process started, in clock ticks since boot: with the pid, it names one process
    for good (pids get reused, start times of the same pid do not)."""
    fields = _stat_fields(pid) if pid else []
    return int(fields[19]) if len(fields) > 19 else None


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def kill_group(pgid: int, grace: float = KILL_GRACE_S, reap: Callable[[], object] | None = None) -> None:
    """SIGTERM a process group, then SIGKILL whatever is left after `grace` seconds.

    `reap` (a child's `poll`) collects the group's leader when it is our own child: until then
    it stays a zombie, which still counts as a member and would make every stop wait `grace`.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if reap is not None:
            reap()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_exit(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait until `proc` exits (True) or `timeout` seconds pass (False).

    `Popen.wait(timeout)` polls with sleeps that grow to 50 ms, so it notices an exit 25 ms
    late on average; a pidfd (Linux 5.3+) wakes us the moment it happens.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # another OS, an old kernel, or it was reaped already
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        exited = bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)
    if exited:
        proc.wait()  # reap it: returns at once
    return exited


class ExitWatcher:
    """Calls `on_exit()` the moment any watched process ends, so whoever waits on it need not
    poll (Linux pidfds; elsewhere `watch` does nothing and the caller's polling is all there is).

    The calls come from a thread of its own, which ends when nothing is left to watch.
    """

    def __init__(self, on_exit: Callable[[], None]) -> None:
        self.on_exit = on_exit
        self._lock = threading.Lock()
        self._pidfds: dict[int, int] = {}          # pidfd -> pid
        self._thread: threading.Thread | None = None
        self._wake_read, self._wake_write = os.pipe()  # tells the thread to look at new pidfds
        os.set_blocking(self._wake_read, False)

    def watch(self, pid: int) -> None:
        with self._lock:
            if pid in self._pidfds.values():
                return
            try:
                pidfd = os.pidfd_open(pid)
            except (AttributeError, OSError):  # not Linux 5.3+, or it has ended already
                return
            self._pidfds[pidfd] = pid
            if self._thread is None:
                self._thread = threading.Thread(target=self._wait, name="exit-watcher", daemon=True)
                self._thread.start()
            else:
                os.write(self._wake_write, b"+")

    def _wait(self) -> None:
        while True:
            with self._lock:
                if not self._pidfds:
                    self._thread = None
                    return
                poller = select.poll()
                for pidfd in self._pidfds:
                    poller.register(pidfd, select.POLLIN)
            poller.register(self._wake_read, select.POLLIN)
            ended = False
            for fd, _ in poller.poll():
                if fd == self._wake_read:
                    try:
                        os.read(self._wake_read, 4096)
                    except BlockingIOError:
                        pass
                    continue
                with self._lock:
                    if self._pidfds.pop(fd, None) is not None:
                        os.close(fd)
                        ended = True
            if ended:
                self.on_exit()


@dataclass
class Finished:
    exit_code: int
    timed_out: bool
    duration: float
    cpu_seconds: float = 0.0        # user + system, the child and what it waited for (run_measured)
    max_rss_mb: float = 0.0


class ChildGroups:
    """Children of a runner, each in its own process group, remembered in a file.

    The file lets whoever outlives the runner (a restarted orchestrator) kill what it left.
    """

    def __init__(self, record: Path) -> None:
        self.record = record

    def run(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float,
            log: Path | None = None, stdin_text: str | None = None,
            errors: Path | None = None) -> tuple[Finished, str]:
        """Run `args` to completion (or until `timeout`, then kill its group).

        Output goes to `log` when given, else it is returned. `errors`, when given, takes stderr
        apart from stdout (an agent's JSON event stream stays clean of its warnings).
        """
        started = time.monotonic()
        out_handle = open(log, "ab") if log else subprocess.PIPE
        err_handle = open(errors, "ab") if errors else subprocess.STDOUT
        try:
            proc = subprocess.Popen(list(args), cwd=cwd, env=dict(env), process_group=0,
                                    stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                                    stdout=out_handle if log else subprocess.PIPE,
                                    stderr=err_handle)
        finally:
            if log:
                out_handle.close()
            if errors:
                err_handle.close()
        self.remember(proc.pid)
        timed_out = False
        try:
            if log and stdin_text is None:  # no pipe to serve: wait for the exit itself
                if not wait_exit(proc, max(timeout, 0.01)):
                    raise subprocess.TimeoutExpired(proc.args, timeout)
                output = None
            else:
                output, _ = proc.communicate(stdin_text.encode() if stdin_text is not None else None,
                                             timeout=max(timeout, 0.01))
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc.pid, reap=proc.poll)
            output, _ = proc.communicate()
        finally:
            kill_group(proc.pid, grace=0.5)  # background children it left behind
            self.forget(proc.pid)
        text = "" if log else (output or b"").decode(errors="replace")
        return Finished(proc.returncode, timed_out, time.monotonic() - started), text

    def run_measured(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float,
                     log: Path) -> Finished:
        """Like `run`, output to `log`, and also the CPU time and peak memory it used.

        `os.wait4` gives the child's own resource use, so experiments measured at once in several
        threads do not count each other's.
        """
        started = time.monotonic()
        with open(log, "ab") as out_handle:
            proc = subprocess.Popen(list(args), cwd=cwd, env=dict(env), process_group=0,
                                    stdin=subprocess.DEVNULL, stdout=out_handle, stderr=subprocess.STDOUT)
        self.remember(proc.pid)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            kill_group(proc.pid)

        timer = threading.Timer(max(timeout, 0.01), expire)
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            kill_group(proc.pid, grace=0.5)  # background children it left behind
            self.forget(proc.pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        return Finished(proc.returncode, expired.is_set(), time.monotonic() - started,
                        cpu_seconds=usage.ru_utime + usage.ru_stime, max_rss_mb=usage.ru_maxrss / 1024)

    def kill_all(self) -> None:
        for pgid in self.recorded():
            kill_group(pgid, grace=1.0)

    def recorded(self) -> list[int]:
        try:
            return [int(x) for x in self.record.read_text().split()]
        except (OSError, ValueError):
            return []

    def remember(self, pgid: int) -> None:
        """Record a group (also one started elsewhere, e.g. an ACP agent under asyncio) for kill_all."""
        with open(self.record, "a") as handle:
            handle.write(f"{pgid}\n")

    def forget(self, pgid: int) -> None:
        remaining = [p for p in self.recorded() if p != pgid]
        self.record.write_text("".join(f"{p}\n" for p in remaining))


class PidLock:
    """An exclusive lock on a file that holds its owner's pid; while another process holds it,
    entering raises what `refuse(holder_pid_text)` makes of it (an error naming the holder)."""

    def __init__(self, path: Path, refuse: Callable[[str], Exception]) -> None:
        self.path = path
        self.refuse = refuse
        self._handle: Any = None

    def __enter__(self) -> "PidLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise self.refuse(holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
