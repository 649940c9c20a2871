"""Process groups: start children that can be killed whole, and find them again after a restart."""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
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


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt every orphan among this process's descendants (Linux): a daemon an agent started
    with `setsid`, outside every group we know, then stays below us, for `kill_descendants`."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _processes() -> list[tuple[int, int, int, str]]:
    """(pid, ppid, pgid, state) of every process that can be read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if len(fields) > 2:
                found.append((int(entry), int(fields[1]), int(fields[2]), fields[0]))
    return found


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, children first."""
    children: dict[int, list[int]] = {}
    for child, parent, _, state in _processes():
        if state != "Z":
            children.setdefault(parent, []).append(child)
    found, queue = [], deque(children.get(pid, []))
    while queue:
        child = queue.popleft()
        found.append(child)
        queue.extend(children.get(child, []))
    return found


def kill_descendants(rounds: int = 5) -> int:
    """SIGKILL everything below this process (a subreaper: the orphans it adopted too, whatever
    session or group they moved to) and reap what were its own; return how many were killed."""
    killed = 0
    for _ in range(rounds):  # a process forking as it dies may leave a new child: look again
        found = descendants(os.getpid())
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)
        _reap_adopted()
    return killed


def _reap_adopted(pgid: int | None = None) -> None:
    """Collect zombies this process adopted as a subreaper (in group `pgid`, never its leader,
    which is a child someone waits for): a zombie counts as a member of its group, and
    `kill_group` would wait out its grace for it."""
    me = os.getpid()
    for pid, parent, group, state in _processes():
        if state == "Z" and parent == me and pid != group and (pgid is None or group == pgid):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


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
        _reap_adopted(pgid)
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
    stalled: bool = False           # ended by its StallWatch: no progress for its timeout
    last_output: str = ""           # with a StallWatch: the last line it printed


# What varies between two printings of the same line: ids (UUIDs, and words of 6+ letters and
# digits such as msg_01Ab3...), then any number (counters, timestamps, delays, token counts).
_VARYING = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
                      r"|\b(?=[A-Za-z_]*\d)\w{6,}\b|\d+")
BUSY_SHARE = 0.05        # CPU share of one core, over a stall window, that counts as working
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def masked(line: str) -> str:
    """A line with what varies between repeats masked: equal for "Reconnecting... 2/5" and 3/5."""
    return _VARYING.sub("#", line.strip())


def tree_cpu_ticks(root: int) -> dict[int, int]:
    """CPU clock ticks (user + system, with what each reaped) of `root` and every descendant
    alive now, by pid; {} where /proc cannot be read."""
    parent, ticks = {}, {}
    try:
        entries = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return {}
    for pid in entries:
        fields = _stat_fields(pid)
        if len(fields) > 14:
            parent[pid] = int(fields[1])
            ticks[pid] = sum(int(value) for value in fields[11:15])
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in ticks and pid not in found:
            found[pid] = ticks[pid]
            todo.extend(children.get(pid, ()))
    return found


class StallWatch:
    """Tells when a child has stalled: no progress for `timeout` seconds.

    Progress is any of
    - a line of output (in the files it writes, `follow`) not seen before in this run once what
      varies is masked (see `masked`): a retry loop printing "Reconnecting... 3/5" or the same
      error again and again makes none, however long it goes on;
    - a file created, changed or removed in `worktree` (looked for only once output has been
      quiet for the whole window, so a busy agent costs no scan);
    - its processes (it and all it started) together busy on CPU for BUSY_SHARE of the window:
      a long build or test run that prints nothing is working.
    """

    SEEN_LIMIT = 100_000      # distinct lines remembered; past it the memory starts again

    def __init__(self, timeout: float, follow: Sequence[Path] = (), worktree: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.timeout = timeout
        self.worktree = worktree
        self.clock = clock
        self.last_progress = clock()
        self.last_line = ""
        self._offsets = {path: _size(path) for path in follow}   # what was there before is not its
        self._partial = {path: b"" for path in follow}
        self._seen: set[int] = set()
        self._cpu: deque[tuple[float, dict[int, int]]] = deque()

    @property
    def tick(self) -> float:
        """How often to look: a tenth of the window, between 0.1 and 5 seconds."""
        return min(max(self.timeout / 10, 0.1), 5.0)

    def wait(self, proc: subprocess.Popen, timeout: float) -> str:
        """Wait for `proc`: "exited", "timeout" (after `timeout` seconds) or "stalled"."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            if wait_exit(proc, min(self.tick, left)):
                self._read_output()   # its last words, for whoever reports it
                return "exited"
            if self.stalled(proc.pid):
                return "stalled"

    def stalled(self, root: int) -> bool:
        now = self.clock()
        if self._read_output():
            self.last_progress = now
        self._cpu.append((now, tree_cpu_ticks(root)))
        while len(self._cpu) > 2 and self._cpu[1][0] <= now - self.timeout:
            self._cpu.popleft()
        if now - self.last_progress < self.timeout:
            return False
        # Output has been quiet for the whole window: the slower signs of work.
        if self._busy() or self._worktree_changed(since=self.last_progress):
            self.last_progress = now
            return False
        return True

    def _read_output(self) -> bool:
        new = False
        for path, offset in self._offsets.items():
            try:
                with open(path, "rb") as stream:
                    if os.fstat(stream.fileno()).st_size < offset:
                        offset = 0            # truncated: read it again from the start
                    stream.seek(offset)
                    chunk = stream.read(4 << 20)
                    self._offsets[path] = offset + len(chunk)
            except OSError:
                continue
            *lines, self._partial[path] = (self._partial[path] + chunk).split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").strip()
                if not line:
                    continue
                self.last_line = line[:500]
                key = hash(masked(line))
                if key not in self._seen:
                    if len(self._seen) >= self.SEEN_LIMIT:
                        self._seen.clear()
                    self._seen.add(key)
                    new = True
        return new

    def _busy(self) -> bool:
        if len(self._cpu) < 2:
            return False
        (_, first), (_, last) = self._cpu[0], self._cpu[-1]
        used = sum(ticks - first.get(pid, 0) for pid, ticks in last.items()) / _CLOCK_TICKS
        return used >= BUSY_SHARE * self.timeout

    def _worktree_changed(self, since: float) -> bool:
        if self.worktree is None:
            return False
        for folder, dirs, files in os.walk(self.worktree):
            dirs[:] = [d for d in dirs if d != ".git"]
            for name in (folder, *(os.path.join(folder, f) for f in files)):
                try:
                    info = os.lstat(name)
                except OSError:
                    continue
                if max(info.st_mtime, info.st_ctime) > since:
                    return True
        return False


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _feed(pipe: Any, text: str) -> threading.Thread:
    """Write `text` to a child's stdin and close it, in a thread (a child that reads slowly or
    not at all cannot block whoever waits for it)."""
    def write() -> None:
        try:
            pipe.write(text.encode())
        except (BrokenPipeError, ValueError, OSError):
            pass
        finally:
            try:
                pipe.close()
            except OSError:
                pass
    feeder = threading.Thread(target=write, name="stdin feeder", daemon=True)
    feeder.start()
    return feeder


class ChildGroups:
    """Children of a runner, each in its own process group, remembered in a file.

    The file lets whoever outlives the runner (a restarted orchestrator) kill what it left.
    """

    def __init__(self, record: Path) -> None:
        self.record = record

    def run(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float,
            log: Path | None = None, stdin_text: str | None = None,
            errors: Path | None = None, stall: StallWatch | None = None) -> tuple[Finished, str]:
        """Run `args` to completion (or until `timeout`, then kill its group).

        Output goes to `log` when given, else it is returned. `errors`, when given, takes stderr
        apart from stdout (an agent's JSON event stream stays clean of its warnings). `stall`
        (with `log`) ends it early, killed, once it makes no progress (see StallWatch).
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
        timed_out = stalled = False
        try:
            if log and stall is not None:
                if stdin_text is not None:
                    _feed(proc.stdin, stdin_text)
                    proc.stdin = None   # the feeder closes it; communicate must not touch it
                ended = stall.wait(proc, max(timeout, 0.01))
                if ended == "timeout":
                    raise subprocess.TimeoutExpired(proc.args, timeout)
                if ended == "stalled":
                    stalled = True
                    kill_group(proc.pid, reap=proc.poll)
                    proc.wait()
                output = None
            elif log and stdin_text is None:  # no pipe to serve: wait for the exit itself
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
        return Finished(proc.returncode, timed_out, time.monotonic() - started, stalled=stalled,
                        last_output=stall.last_line if stall else ""), text

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
