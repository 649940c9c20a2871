"""The stall guard: an agent that makes no progress for `[fleet] stall_timeout` seconds is ended
`stalled`, with the last thing it printed, long before its attempt_timeout.

Progress is new output (a line not seen before once numbers and ids are masked, so a retry
loop repeating itself is none), a file changed in the worktree, or its processes busy on CPU.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from clawfleet.procs import StallWatch, cmdline, masked

from conftest import agent_script, claw, write_config
from test_run import status_json


def configure(repo: Path, agent: str, stall_timeout: float = 2, extra: str = "") -> None:
    write_config(repo, f"""
        [fleet]
        default_agent = "a"
        attempt_timeout = 120
        stall_timeout = {stall_timeout}
        max_attempts = 1
        [review]
        auto_approve = ["normal"]
        [agents.a]
        kind = "command"
        command = ["{agent}"]
        {extra}
        """)


def alive_with(marker: str) -> list[int]:
    return [int(pid) for pid in os.listdir("/proc")
            if pid.isdigit() and marker in " ".join(cmdline(int(pid)))]


@pytest.mark.slow
def test_a_silent_agent_is_ended_stalled_in_seconds_with_what_it_last_printed(repo):
    marker = "sleep 113.25"    # a command line no other process here has
    agent = agent_script(repo, "silent", f"""
        echo "looking at the code"
        echo "asking the model"
        {marker}
        """)
    configure(repo, agent)
    claw(repo, "add", "Do something slowly")
    started = time.monotonic()
    result = claw(repo, "run", timeout=100)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    attempt = task["latest_attempt"]
    assert attempt["state"] == "stalled", task
    assert task["state"] == "failed"
    assert task["reason"].startswith("stalled: no new output, event, file change or CPU use for 2 s")
    assert task["reason"].endswith("it last printed: asking the model")
    assert took < 30, f"the stall guard took {took:.1f} s (attempt_timeout is 120 s)"
    assert not alive_with(marker), "the stalled agent's process outlived its attempt"


@pytest.mark.slow
def test_a_loop_that_repeats_a_retry_line_is_a_stall_and_the_fleet_goes_on(repo):
    agent = agent_script(repo, "retrying", """
        if [ "$CLAW_TASK_ID" = 2 ]; then echo done > done.txt; exit 0; fi
        i=0
        while true; do
            i=$((i + 1))
            echo "Reconnecting... $i/5 (stream disconnected before completion: error 0x$RANDOM)"
            sleep 0.2
        done
        """)
    configure(repo, agent)
    claw(repo, "add", "Call a model that is not there")
    claw(repo, "add", "Write done.txt")
    started = time.monotonic()
    result = claw(repo, "run", timeout=100)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 40
    first, second = status_json(repo)
    assert first["latest_attempt"]["state"] == "stalled", first
    assert "it last printed: Reconnecting... " in first["reason"]
    assert second["state"] == "merged", second
    assert (repo / "done.txt").read_text() == "done\n"


@pytest.mark.slow
def test_an_agent_that_works_silently_is_not_stalled(repo):
    """Quiet but working: files change in the worktree, or its command is busy on CPU."""
    agent = agent_script(repo, "quiet", """
        for i in 1 2 3 4 5 6 7 8; do echo "$i" > "step-$i.txt"; sleep 0.5; done
        end=$(( $(date +%s) + 4 ))
        while [ "$(date +%s)" -lt "$end" ]; do :; done   # 4 s of CPU, no output, no file
        echo finished > result.txt
        """)
    configure(repo, agent, stall_timeout=2.5)
    claw(repo, "add", "Work quietly")
    result = claw(repo, "run", timeout=100)
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    assert task["state"] == "merged", task
    assert (repo / "result.txt").read_text() == "finished\n"


@pytest.mark.slow
def test_stall_timeout_zero_turns_the_guard_off(repo):
    agent = agent_script(repo, "nap", """
        sleep 3
        echo woke > woke.txt
        """)
    configure(repo, agent, stall_timeout=0)
    claw(repo, "add", "Nap")
    assert claw(repo, "run", timeout=100).returncode == 0
    assert status_json(repo)[0]["state"] == "merged"


def test_masking_makes_retries_equal_and_different_work_different():
    assert masked("Reconnecting... 2/5 (stream disconnected)") == masked("Reconnecting... 3/5 (stream disconnected)")
    retry = '{{"type":"system","subtype":"api_retry","attempt":{},"uuid":"{}"}}'
    assert masked(retry.format(1, "795f4473-7b31-4ee5-92a2-305e423902a8")) == \
        masked(retry.format(2, "4a5d7ef8-85e0-4caf-b27c-d5446fed8dd1"))
    assert masked('{"type":"item.started","command":"pytest -q"}') != masked('{"type":"item.started","command":"ls"}')


def test_the_watch_reads_only_what_was_written_after_it_started(tmp_path):
    log = tmp_path / "agent.log"
    log.write_text("old line\n")
    now = [100.0]
    watch = StallWatch(10, [log], clock=lambda: now[0])
    with open(log, "a") as handle:
        handle.write("new line\nnew line\n")
    now[0] = 105
    assert not watch.stalled(os.getpid() + 10_000_000)   # no such process: no CPU to count
    assert watch.last_line == "new line" and watch.last_progress == 105
    with open(log, "a") as handle:
        handle.write("new line\n")   # a repeat is no progress
    now[0] = 114
    assert not watch.stalled(os.getpid() + 10_000_000)
    now[0] = 115.5
    assert watch.stalled(os.getpid() + 10_000_000)


@pytest.mark.slow
@pytest.mark.real_cli
def test_codex_with_no_endpoint_to_reach_is_ended_stalled_not_at_its_timeout(repo):
    """Codex offline retries forever ("Reconnecting... waiting for network"): a stall."""
    from test_agents_real import require

    require("codex")
    import socket
    with socket.socket() as probe:   # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_config(repo, f"""
        [fleet]
        default_agent = "codex"
        attempt_timeout = 300
        stall_timeout = 4
        max_attempts = 1
        [agents.codex]
        kind = "codex"
        model = "scripted-model"
        base_url = "http://127.0.0.1:{port}/v1"
        """)
    claw(repo, "add", "Anything at all")
    started = time.monotonic()
    result = claw(repo, "run", timeout=200)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    assert task["latest_attempt"]["state"] == "stalled", task
    assert "Reconnecting" in task["reason"], task["reason"]
    assert took < 60, f"{took:.1f} s"

