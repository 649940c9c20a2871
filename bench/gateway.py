#!/usr/bin/env python3
"""Gateway benchmark: what the metering proxy adds to a model call, and how many it sustains.

    python bench/gateway.py            # the full benchmark (about half a minute)
    python bench/gateway.py --quick    # a small version, for a smoke check in seconds
    python bench/gateway.py --json     # the figures as JSON on stdout
    python bench/gateway.py --strict   # exit with status 1 when a target is missed

Everything is real and on loopback: the scripted model (`claw fake-llm`) and the gateway
(`claw gateway`) run as their own processes, the gateway meters every call into SQLite and
writes its transcript, as in a real run. Each figure is measured against calling the scripted
model directly in the same run, the two interleaved request by request:

1. added latency   p50 and p99 of (through the gateway − direct), non-streamed chat calls on
                   kept-alive connections                                   target p50 < 2 ms
2. added TTFT      the same for the time to the first streamed content event
3. throughput      streamed calls per second with 64 concurrent clients, bounded in count and
                   time, through the gateway and directly (for scale)
Nothing here touches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

try:
    import clawfleet  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import httpx

from clawfleet import git
from clawfleet.llm.gateway import KEY_PREFIX, attempt_token, load_secret
from clawfleet.project import Project, initialize

BENCH_GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                 "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
REPLY = "A reply of a realistic size, streamed in pieces like a model would. " * 6
SCRIPT = f'[[rule]]\nmatch = "bench"\n[[rule.steps]]\ntext = {json.dumps(REPLY)}\n'
TARGET_ADDED_P50_MS = 2.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, deadline_s: float = 20) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: {url} exited: {process.stderr.read() if process.stderr else ''}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"bench: {url} did not come up")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def body(stream: bool) -> dict[str, Any]:
    return {"model": "scripted", "stream": stream,
            "messages": [{"role": "user", "content": "bench: answer with the scripted reply"}]}


def timed_call(client: httpx.Client, url: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = client.post(url, json=body(False), headers=headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed * 1000


def timed_first_token(client: httpx.Client, url: str, headers: dict[str, str]) -> float:
    started, first = time.perf_counter(), None
    with client.stream("POST", url, json=body(True), headers=headers) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if first is None and line.startswith("data: {"):
                delta = json.loads(line[6:])["choices"]
                if delta and delta[0]["delta"].get("content"):
                    first = time.perf_counter() - started
    return first * 1000


async def _streamed_call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    """One streamed call on a kept-alive connection, read to its last chunk. A hand-made
    HTTP/1.1 client: an SDK would measure its own parsing, not the servers."""
    writer.write(request)
    status = await reader.readline()
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    else:  # chunked: size line, data, CRLF ... until the empty chunk
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status.split(b" ")[1] == b"200"


async def throughput(url: str, headers: dict[str, str], clients: int, total: int, seconds: float) -> dict[str, float]:
    parsed = httpx.URL(url)
    payload = json.dumps(body(True)).encode()
    request = (f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}:{parsed.port}\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
               + f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n").encode() + payload
    done = failed = 0
    started = time.perf_counter()
    stop_at = started + seconds

    async def worker() -> None:
        nonlocal done, failed
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        try:
            while done + failed < total and time.perf_counter() < stop_at:
                try:
                    ok = await asyncio.wait_for(_streamed_call(reader, writer, request), 30)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
                    ok = False
                done, failed = done + ok, failed + (not ok)
                if not ok:
                    break
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {"requests": done, "failed": failed, "seconds": elapsed, "per_second": done / elapsed}


def run(root: Path, *, calls: int, stream_calls: int, clients: int, total: int, seconds: float) -> dict[str, Any]:
    repo = root / "repo"
    git.init_repo(repo, {"README.md": "bench\n"})
    initialize(repo)
    (root / "script.toml").write_text(SCRIPT)
    model_port, gateway_port = free_port(), free_port()
    with open(repo / ".claw" / "config.toml", "a") as handle:
        handle.write(textwrap.dedent(f"""
            [gateway.upstreams.scripted]
            base_url = "http://127.0.0.1:{model_port}/v1"
            apis = ["chat"]
            [gateway.prices.scripted]
            input = 1.0
            output = 2.0
            """))
    project = Project(repo)
    task = project.store.add_task("bench")
    attempt = project.store.start_attempt(task.id, agent="builtin", branch_for=lambda n: "b", base_commit="0" * 40)
    key = KEY_PREFIX + attempt_token(load_secret(project.run_dir / "gateway.secret"), attempt.id)
    env = {**os.environ, **BENCH_GIT_ENV}
    claw = [sys.executable, "-m", "clawfleet.cli"]
    model = subprocess.Popen([*claw, "fake-llm", "--script", str(root / "script.toml"), "--port", str(model_port)],
                             cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    gateway = subprocess.Popen([*claw, "gateway", "--port", str(gateway_port)], cwd=repo, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{model_port}/v1/models", model)
        wait_until_up(f"http://127.0.0.1:{gateway_port}/health", gateway)
        direct = (f"http://127.0.0.1:{model_port}/v1/chat/completions", {"authorization": "Bearer none"})
        via = (f"http://127.0.0.1:{gateway_port}/v1/chat/completions", {"authorization": f"Bearer {key}"})
        with httpx.Client(timeout=30) as client:
            for _ in range(20):  # warm up both paths and their connections
                timed_call(client, *direct), timed_call(client, *via)
            latency = {"direct": [], "gateway": []}
            for _ in range(calls):
                latency["direct"].append(timed_call(client, *direct))
                latency["gateway"].append(timed_call(client, *via))
            ttft = {"direct": [], "gateway": []}
            for _ in range(stream_calls):
                ttft["direct"].append(timed_first_token(client, *direct))
                ttft["gateway"].append(timed_first_token(client, *via))
        rates = {"gateway": asyncio.run(throughput(*via, clients, total, seconds)),
                 "direct": asyncio.run(throughput(*direct, clients, total, seconds))}
        metered = len(Project(repo).store.llm_calls())
    finally:
        for process in (gateway, model):
            process.terminate()
            process.wait(10)

    def summary(samples: dict[str, list[float]]) -> dict[str, float]:
        added = [g - d for g, d in zip(samples["gateway"], samples["direct"])]
        return {"direct_p50_ms": statistics.median(samples["direct"]),
                "gateway_p50_ms": statistics.median(samples["gateway"]),
                "added_p50_ms": statistics.median(samples["gateway"]) - statistics.median(samples["direct"]),
                "added_p99_ms": percentile(samples["gateway"], 0.99) - percentile(samples["direct"], 0.99),
                "paired_added_p50_ms": statistics.median(added), "samples": len(added)}

    return {"latency": summary(latency), "ttft": summary(ttft), "throughput": rates,
            "concurrent_clients": clients, "metered_calls": metered,
            "target_added_p50_ms": TARGET_ADDED_P50_MS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small version for a smoke check")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args(argv)
    sizes = (dict(calls=50, stream_calls=20, total=256, seconds=5) if args.quick
             else dict(calls=500, stream_calls=200, total=2560, seconds=20))
    with tempfile.TemporaryDirectory(prefix="claw-bench-gateway-") as folder:
        figures = run(Path(folder), clients=args.clients, **sizes)
    met = figures["latency"]["added_p50_ms"] < TARGET_ADDED_P50_MS
    if args.json:
        print(json.dumps({**figures, "target_met": met}, indent=2))
    else:
        lat, ttft, rates = figures["latency"], figures["ttft"], figures["throughput"]
        print(f"added latency  p50 {lat['added_p50_ms']:.2f} ms, p99 {lat['added_p99_ms']:.2f} ms "
              f"(direct p50 {lat['direct_p50_ms']:.2f} ms, via gateway {lat['gateway_p50_ms']:.2f} ms; "
              f"{lat['samples']} calls)  target p50 < {TARGET_ADDED_P50_MS:g} ms: {'met' if met else 'MISSED'}")
        print(f"added TTFT     p50 {ttft['added_p50_ms']:.2f} ms, p99 {ttft['added_p99_ms']:.2f} ms "
              f"(direct p50 {ttft['direct_p50_ms']:.2f} ms, via gateway {ttft['gateway_p50_ms']:.2f} ms)")
        for name in ("gateway", "direct"):
            rate = rates[name]
            print(f"{figures['concurrent_clients']} streaming clients, {name:>7}: {rate['per_second']:.0f} calls/s "
                  f"({rate['requests']} in {rate['seconds']:.1f} s, {rate['failed']} failed)")
        print(f"calls metered by the gateway: {figures['metered_calls']}")
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
