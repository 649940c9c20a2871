"""A warm Python process that forks attempt runners: `python -m clawfleet.executors.zygote`.

A runner started as a new Python process spends most of its start on the interpreter and its
imports (150-350 ms on a loaded 2-core machine, more than the rest of an attempt's overhead put
together). The zygote pays for that once: it imports the runner, then forks one child per
request, and the child becomes what `python -m clawfleet.runner ATTEMPT_DIR` would be: the leader
of its own session, in the worktree, with the orchestrator's environment of that moment, its
output in `runner.out`.

Requests are JSON lines on stdin, {"attempt_dir", "cwd", "env"}; each gets one JSON line on
stdout, {"pid", "start"} (the child's start time, which with its pid names it after a restart)
or {"error"}. The zygote is single-threaded (fork is only safe so), reaps the runners it forked,
ignores the terminal's signals and exits when its stdin closes: at the orchestrator's end,
`kill -9` included. The runners live on without it, as they did without the orchestrator.

`Zygote` is the orchestrator's side: it starts the process on first use and says None whenever it
cannot fork (the process would not start, died, or did not answer), so the caller starts the
runner the plain way instead.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..procs import pid_alive, start_time

# What runners import, loaded once here rather than in each runner: before the zygote says it
# is ready, what every runner needs; once it has been idle a while, what model agents need too
# (pydantic alone takes longer than the rest, and a first burst of starts should not wait for it).
PRELOAD = ("clawfleet.runner", "clawfleet.agents.command", "clawfleet.checks")
PRELOAD_WHEN_IDLE = ("clawfleet.config", "clawfleet.prompt", "jinja2", "clawfleet.secretscan")
IDLE_S = 1.0
READY_TIMEOUT_S = 60.0   # the zygote's own start (imports) on a loaded machine
REPLY_TIMEOUT_S = 10.0   # a fork takes milliseconds; longer means the zygote is stuck
ORPHAN_WAIT_S = 2.0      # after a lost reply: how long a child it may have forked has to show up


# -- the zygote process -----------------------------------------------------------------

def _reap(_signum: int, _frame: Any) -> None:
    """Collect the runners that ended, so none lingers as a zombie (a zombie still counts as a
    member of its process group, and stopping an attempt waits for its group to be empty)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _reply(data: dict[str, Any]) -> None:
    os.write(1, (json.dumps(data) + "\n").encode())


def serve() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C is for the orchestrator, not for us
    signal.signal(signal.SIGCHLD, _reap)
    _preload(PRELOAD)
    _reply({"ready": os.getpid()})
    later = list(PRELOAD_WHEN_IDLE)
    while True:
        if later and not select.select([0], [], [], IDLE_S)[0]:
            _preload(later)
            later = []
            continue
        line = sys.stdin.buffer.readline()
        if not line:
            return 0
        try:
            request = json.loads(line)
            pid = os.fork()
        except (ValueError, OSError) as error:
            _reply({"error": str(error)})
            continue
        if pid == 0:
            _become_runner(request)
        _reply({"pid": pid, "start": start_time(pid)})


def _preload(modules: Sequence[str]) -> None:
    for module in modules:
        try:
            __import__(module)
            warm = getattr(sys.modules[module], "warm", None)
            if warm is not None:
                warm()  # what a module loads only on first use (secretscan: detect-secrets' plugins)
        except ImportError:
            pass  # an optional dependency: the runner that needs it says so itself
    gc.collect()
    gc.freeze()  # the children share these objects' memory instead of copying it as GC touches it


def _become_runner(request: dict[str, Any]) -> NoReturn:
    """In the forked child: turn into `python -m clawfleet.runner ATTEMPT_DIR`, then exit."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the runner waits for its own children
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        attempt_dir = request["attempt_dir"]
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(os.path.join(attempt_dir, "runner.out"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
            if fd > 2:
                try:
                    os.close(fd)
                except OSError:
                    pass  # the listing's own descriptor, closed already
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        from .. import runner

        sys.argv = [runner.__file__, attempt_dir]
        code = runner.main([attempt_dir])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        # What a normal interpreter exit does, then an exit that skips the zygote's own state.
        try:
            for thread in threading.enumerate():
                if thread is not threading.current_thread() and not thread.daemon:
                    thread.join()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# -- the orchestrator's side ------------------------------------------------------------

class Zygote:
    """Forks runners through one zygote process, started on first use; thread-safe."""

    def __init__(self, log: Path | None = None) -> None:
        self.log = log
        self.broken = False   # it failed once: the caller starts runners the plain way from now on
        self._proc: subprocess.Popen | None = None
        self._ready = False
        self._pending = b""
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Start the zygote now, without waiting for it: it imports while the caller goes on."""
        with self._lock:
            if self._proc is None and not self.broken:
                try:
                    self._spawn()
                except OSError:
                    self.broken = True

    def fork(self, attempt_dir: Path, cwd: Path) -> tuple[int, int | None] | None:
        """(pid, start time) of a new runner for `attempt_dir`, or None: start it another way."""
        with self._lock:
            if self.broken:
                return None
            request = json.dumps({"attempt_dir": str(attempt_dir), "cwd": str(cwd),
                                  "env": dict(os.environ)}).encode() + b"\n"
            try:
                proc = self._started()
                proc.stdin.write(request)
                proc.stdin.flush()
                reply = self._read(REPLY_TIMEOUT_S)
            except (OSError, ValueError, TimeoutError):
                self._give_up()
                return self._orphan(attempt_dir)
            if "pid" not in reply:
                return None  # fork failed (no memory?): the plain way may still work
            return reply["pid"], reply.get("start")

    def close(self) -> None:
        with self._lock:
            self._give_up()
            self.broken = False

    def _started(self) -> subprocess.Popen:
        """The zygote, ready for requests."""
        if self._proc is None:
            self._spawn()
        if not self._ready:
            if "ready" not in self._read(READY_TIMEOUT_S):
                raise ValueError("the zygote did not say it was ready")
            self._ready = True
        return self._proc

    def _spawn(self) -> None:
        errors = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=errors, start_new_session=True)
        finally:
            if self.log:
                errors.close()
        self._ready = False

    def _read(self, timeout: float) -> dict[str, Any]:
        """The zygote's next line; OSError at its end, TimeoutError when it says nothing."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the zygote did not answer")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise OSError("the zygote exited")
                self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def _give_up(self) -> None:
        proc, self._proc, self._pending = self._proc, None, b""
        self.broken = True
        if proc is None:
            return
        try:
            proc.stdin.close()  # at EOF it exits; the runners it forked go on
        except OSError:
            pass  # it is gone already
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()

    @staticmethod
    def _orphan(attempt_dir: Path) -> tuple[int, int | None] | None:
        """After a lost reply the zygote may have forked the runner anyway: it shows itself in
        `runner.pid`. Starting a second runner for the same attempt must never happen."""
        deadline = time.monotonic() + ORPHAN_WAIT_S
        while time.monotonic() < deadline:
            try:
                pid = int((attempt_dir / "runner.pid").read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            return (pid, start_time(pid)) if pid_alive(pid) else (pid, None)
        return None


if __name__ == "__main__":
    sys.exit(serve())
