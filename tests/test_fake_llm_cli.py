"""`claw fake-llm`: the scripted model as a process that other programs point at."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx

SCRIPT = """
[[rule]]
match = "hello"
[[rule.steps]]
text = "hi there"
"""


def test_fake_llm_serves_a_script_until_stopped(tmp_path):
    script = tmp_path / "script.toml"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "fake-llm", "--script", str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        reply = httpx.post(f"{url}/v1/chat/completions", timeout=10,
                           json={"model": "m", "messages": [{"role": "user", "content": "hello"}]})
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"] == "hi there"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_fake_llm_bad_script_is_a_clear_error(tmp_path):
    script = tmp_path / "script.toml"
    script.write_text("[[rule]]\nmatch = '('\nsteps = [{text = 'x'}]\n")
    result = subprocess.run([sys.executable, "-m", "clawfleet.cli", "fake-llm", "--script", str(script)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "bad regex" in result.stderr and "Traceback" not in result.stderr
