"""The agents people log into: a subscription login in HOME, no key, no base_url.

Observed the same way run directly and inside clawfleet: where the CLI goes (an HTTPS proxy it
is given, which records the CONNECT). Logged in, Claude Code, Codex, Gemini CLI and opencode go
to their provider; inside clawfleet they do the same, through the sandbox's proxy, which shows
them exactly their login files. Not logged in, clawfleet refuses before starting anything, with
how to log in.

None of these OAuth logins can be pointed at a 127.0.0.1 stand-in (the token would have to be
Google's or OpenAI's own), so the observable is the host the CLI opens a tunnel to once it takes
itself for logged in. Gemini CLI first checks its cached token at oauth2.googleapis.com
(tokeninfo; with no login it goes nowhere and says "Manual authorization is required"); opencode
with a ChatGPT login (its built-in Codex plugin) calls chatgpt.com/backend-api/codex.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from clawfleet import sandbox
from clawfleet.agents import claude, codex, gemini, opencode

from conftest import claw, write_config
from test_agents_real import require
from test_run import status_json

BWRAP, WHY_NOT = sandbox.probe()
pytestmark = [pytest.mark.real_cli, pytest.mark.slow,
              pytest.mark.skipif(BWRAP is None, reason=f"no working bubblewrap here: {WHY_NOT}")]

FAR_FUTURE_MS = int((time.time() + 30 * 86400) * 1000)
PROVIDER_HOST = {"claude": "api.anthropic.com:443", "codex": "chatgpt.com:443",
                 "gemini": "oauth2.googleapis.com:443", "opencode": "chatgpt.com:443"}
LOGIN_FILE = {"claude": ".claude/.credentials.json", "codex": ".codex/auth.json",
              "gemini": ".gemini/oauth_creds.json", "opencode": ".local/share/opencode/auth.json"}
PROGRAM = {"claude": claude.PROGRAM, "codex": codex.PROGRAM, "gemini": gemini.PROGRAM,
           "opencode": opencode.PROGRAM}
OPENCODE_MODEL = "openai/gpt-5.5"   # one its ChatGPT login serves
# What would give a CLI access some other way than its login files, or point it at other files.
ELSEWHERE = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_HOME", "CLAUDE_CONFIG_DIR",
             "GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENROUTER_API_KEY", "OPENCODE_API_KEY",
             "XDG_CONFIG_HOME", "XDG_DATA_HOME")


def log_in(home: Path, kind: str) -> None:
    """Plausible credential files, as each CLI's own login leaves them."""
    if kind == "claude":
        (home / ".claude").mkdir(parents=True)
        (home / ".claude" / ".credentials.json").write_text(json.dumps({"claudeAiOauth": {
            "accessToken": "sk-ant-oat01-test", "refreshToken": "sk-ant-ort01-test",
            "expiresAt": FAR_FUTURE_MS, "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max"}}))
        (home / ".claude.json").write_text(json.dumps({
            "hasCompletedOnboarding": True, "userID": "0" * 64,
            "oauthAccount": {"accountUuid": "00000000-0000-0000-0000-000000000001",
                             "emailAddress": "person@example.com",
                             "organizationUuid": "00000000-0000-0000-0000-000000000002"}}))
    elif kind == "gemini":   # "Login with Google": its token, the account, the auth it selected
        (home / ".gemini").mkdir(parents=True)
        (home / ".gemini" / "oauth_creds.json").write_text(json.dumps({
            "access_token": "ya29.a0-test", "refresh_token": "1//0g-test", "token_type": "Bearer",
            "scope": "https://www.googleapis.com/auth/cloud-platform openid "
                     "https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile",
            "id_token": "eyJhbGciOiJub25lIn0.eyJlbWFpbCI6InBAZXhhbXBsZS5jb20ifQ.", "expiry_date": FAR_FUTURE_MS}))
        (home / ".gemini" / "google_accounts.json").write_text(json.dumps({"active": "person@example.com", "old": []}))
        (home / ".gemini" / "settings.json").write_text(json.dumps({"security": {"auth": {"selectedType": "oauth-personal"}}}))
    elif kind == "opencode":   # `opencode auth login`, "ChatGPT Plus/Pro"
        (home / ".local/share/opencode").mkdir(parents=True)
        (home / ".local/share/opencode/auth.json").write_text(json.dumps({"openai": {
            "type": "oauth", "refresh": "rt-test", "access": "eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDB9.",
            "expires": FAR_FUTURE_MS, "accountId": "acct-test"}}))
    else:
        (home / ".codex").mkdir(parents=True)
        (home / ".codex" / "auth.json").write_text(json.dumps({
            "OPENAI_API_KEY": None, "last_refresh": "2026-11-30T00:00:00Z",
            "tokens": {"id_token": "eyJhbGciOiJub25lIn0.eyJlbWFpbCI6InBAZXhhbXBsZS5jb20ifQ.",
                       "access_token": "eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDB9.",
                       "refresh_token": "rt-test", "account_id": "acct-test"}}))


class ConnectRecorder:
    """An HTTPS proxy on 127.0.0.1 that records each CONNECT's target and refuses it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.targets: list[str] = []
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                continue
            with client:
                client.settimeout(2)
                try:
                    line = client.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
                    if line.startswith("CONNECT "):
                        self.targets.append(line.split()[1].lower())
                    client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self.server.close()


def run_directly(kind: str, home: Path, proxy: ConnectRecorder, workdir: Path) -> tuple[str, list[str]]:
    """The CLI as the person runs it by hand: its output, and where it went (until it tries its
    provider: Codex first asks github.com for updates)."""
    program = PROGRAM[kind].find()
    args = {"claude": [program, "-p", "say hi"], "codex": [program, "exec", "--skip-git-repo-check", "say hi"],
            "gemini": [program, "-p", "say hi"],
            "opencode": [program, "run", "--format", "json", "-m", OPENCODE_MODEL, "say hi"]}[kind]
    env = {k: v for k, v in os.environ.items() if not sandbox.secret_variables({k: v}) and k not in ELSEWHERE}
    env.update(HOME=str(home), HTTPS_PROXY=proxy.url, HTTP_PROXY=proxy.url, https_proxy=proxy.url,
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1")
    env.pop("CODEX_HOME", None)
    proc = subprocess.Popen(args, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, process_group=0)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and PROVIDER_HOST[kind] not in proxy.targets:
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, 9)
    output = proc.communicate(timeout=10)[0]
    return output, list(proxy.targets)


def configure(repo: Path, kind: str) -> None:
    write_config(repo, f"""
        [fleet]
        default_agent = "{kind}"
        attempt_timeout = 120
        stall_timeout = 20
        max_attempts = 1
        [review]
        auto_approve = []
        [sandbox]
        enabled = true
        [agents.{kind}]
        kind = "{kind}"
        """ + (f'model = "{OPENCODE_MODEL}"\n' if kind == "opencode" else ""))


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini", "opencode"])
def test_a_logged_in_cli_goes_to_its_provider_inside_clawfleet_as_it_does_directly(repo, tmp_path, monkeypatch, kind):
    require(kind)
    home = tmp_path / "person-home"
    log_in(home, kind)
    for name in ELSEWHERE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    proxy = ConnectRecorder()
    try:
        output, targets = run_directly(kind, home, proxy, repo)
    finally:
        proxy.close()
    assert PROVIDER_HOST[kind] in targets, (targets, output[-1000:])
    assert "Not logged in" not in output

    configure(repo, kind)
    assert claw(repo, "add", "say hi").returncode == 0
    result = claw(repo, "run", timeout=300)
    assert result.returncode == 0, result.stderr
    log = claw(repo, "log", "1").stdout
    assert f"[sandbox] tunnel to {PROVIDER_HOST[kind]}" in log, log[-2000:]
    assert "Not logged in" not in log
    task = status_json(repo)[0]
    assert task["state"] == "failed" and task["latest_attempt"]["state"] in ("stalled", "timed_out", "failed")
    # The person's login file is still theirs, untouched by the attempt.
    assert (home / LOGIN_FILE[kind]).is_file()


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini", "opencode"])
def test_no_login_is_refused_before_anything_starts_with_how_to_log_in(repo, tmp_path, monkeypatch, kind):
    require(kind)
    home = tmp_path / "empty-home"
    home.mkdir()
    for name in ELSEWHERE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    configure(repo, kind)
    assert claw(repo, "add", "say hi").returncode == 0
    started = time.monotonic()
    result = claw(repo, "run")
    assert result.returncode == 1 and time.monotonic() - started < 30
    said = " ".join(result.stderr.split())
    assert {"claude": "run `claude` once and `/login`", "codex": "run `codex login`",
            "gemini": "run `gemini` once and sign in with Google",
            "opencode": "run `opencode auth login`"}[kind] in said, said
    assert status_json(repo)[0]["state"] == "queued"


MCP_SERVER = '''\
from mcp.server.fastmcp import FastMCP

server = FastMCP("marker")


@server.tool()
def marker_tool(text: str) -> str:
    """MARKER-MCP-TOOL: echo the text."""
    return text


server.run()
'''


def person_setup(home: Path, tmp_path: Path) -> None:
    """The person's own Claude Code setup: instructions, a skill, an MCP server of theirs."""
    import sys
    (home / ".claude" / "skills" / "marker-skill").mkdir(parents=True)
    (home / ".claude" / "CLAUDE.md").write_text("MARKER-CLAUDE-MD: always answer in haiku.\n")
    (home / ".claude" / "skills" / "marker-skill" / "SKILL.md").write_text(
        "---\nname: marker-skill\ndescription: MARKER-SKILL-DESCRIPTION, use it for markers.\n---\nDo it.\n")
    server = tmp_path / "mcp" / "server.py"
    server.parent.mkdir()
    server.write_text(MCP_SERVER)
    (home / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True,
        "mcpServers": {"marker": {"type": "stdio", "command": sys.executable, "args": [str(server)]}}}))


@pytest.mark.parametrize("inherit", [None, []])
def test_the_persons_claude_md_skills_and_mcp_servers_reach_the_model_unless_inherit_is_empty(
        repo, tmp_path, monkeypatch, inherit):
    from clawfleet.llm.scripted import Script, ScriptedServer
    require("claude")
    home = tmp_path / "person-home"
    person_setup(home, tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    script = Script.from_rules([{"match": ".", "steps": [{"text": "done"}]}])
    with ScriptedServer(script) as server:
        write_config(repo, f"""
            [fleet]
            default_agent = "claude"
            attempt_timeout = 240
            max_attempts = 1
            [review]
            auto_approve = []
            [sandbox]
            enabled = true
            [agents.claude]
            kind = "claude"
            model = "scripted-model"
            base_url = "{server.url}"
            """ + ("" if inherit is None else f"inherit = {json.dumps(inherit)}\n"))
        assert claw(repo, "add", "say hi").returncode == 0
        assert claw(repo, "run", timeout=300).returncode == 0
        seen = json.dumps([r["body"] for r in server.requests])
    # The MCP server shows in Claude Code's init event (it connects while the turn starts, and its
    # tools are deferred behind ToolSearch, so they need not be in the first request).
    transcript = repo / ".claw/run/attempts/1/claude-0.jsonl"
    init = next(json.loads(line) for line in transcript.read_text().splitlines() if '"subtype":"init"' in line)
    servers = {s["name"]: s.get("source") for s in init.get("mcp_servers") or []}
    markers = ("MARKER-CLAUDE-MD", "MARKER-SKILL-DESCRIPTION")
    if inherit is None:
        assert all(marker in seen for marker in markers), [m for m in markers if m not in seen]
        assert servers.get("marker") == "user", servers
    else:
        assert not any(marker in seen for marker in markers) and "marker" not in servers


ACP_COMMAND = {"gemini": ["gemini", "--acp"], "claude": ["claude-agent-acp"]}
LOGIN_HINT = {"claude": "run `claude` once and `/login`", "gemini": "run `gemini` once and sign in with Google"}


def configure_acp(repo: Path, extra: str = "", kind: str = "gemini") -> None:
    write_config(repo, f"""
        [fleet]
        default_agent = "{kind}-acp"
        attempt_timeout = 120
        stall_timeout = 20
        max_attempts = 1
        [review]
        auto_approve = []
        [sandbox]
        enabled = true
        [agents.{kind}-acp]
        kind = "acp"
        command = {json.dumps(ACP_COMMAND[kind])}
        """ + extra)


@pytest.mark.parametrize("kind", ["gemini", "claude"])
def test_an_acp_agent_has_its_programs_login_as_that_kind_does_and_none_is_refused(repo, tmp_path, monkeypatch, kind):
    """`kind = "acp"` running Gemini CLI (`gemini --acp`) or Claude Code (`claude-agent-acp`)
    inherits that CLI's login: its login files are shown (and Gemini CLI's settings select its
    Google login), so it goes to its provider through the sandbox's proxy as the CLI does run
    directly. With no login, claw run refuses it up front with how to log in."""
    if kind == "gemini":
        require("gemini")
    elif shutil.which("claude-agent-acp", path=os.environ.get("CLAW_AGENT_BIN_DIR") or os.environ.get("PATH")) is None:
        pytest.skip("claude-agent-acp is not installed: run .ci/run")
    for name in ELSEWHERE:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty-home"
    empty.mkdir()
    monkeypatch.setenv("HOME", str(empty))
    configure_acp(repo, kind=kind)
    assert claw(repo, "add", "say hi").returncode == 0
    started = time.monotonic()
    refused = claw(repo, "run")
    assert refused.returncode == 1 and time.monotonic() - started < 30
    assert LOGIN_HINT[kind] in " ".join(refused.stderr.split())
    assert status_json(repo)[0]["state"] == "queued"

    home = tmp_path / "person-home"
    log_in(home, kind)
    monkeypatch.setenv("HOME", str(home))
    result = claw(repo, "run", timeout=300)
    assert result.returncode == 0, result.stderr
    log = claw(repo, "log", "1").stdout
    assert f"# ACP agent '{kind}-acp':" in log and "[UNSANDBOXED]" not in log
    assert f"[sandbox] tunnel to {PROVIDER_HOST[kind]}" in log, log[-2000:]
    assert "Not logged in" not in log
    assert status_json(repo)[0]["state"] == "failed"   # the stand-in refused it
    assert (home / LOGIN_FILE[kind]).is_file()


@pytest.mark.parametrize("inherit", [None, []])
def test_the_persons_gemini_md_reaches_gemini_over_acp_unless_inherit_is_empty(repo, tmp_path, monkeypatch, inherit):
    from clawfleet.llm.scripted import Script, ScriptedServer
    require("gemini")
    home = tmp_path / "person-home"
    (home / ".gemini").mkdir(parents=True)
    (home / ".gemini" / "GEMINI.md").write_text("MARKER-GEMINI-MD: always answer in haiku.\n")
    monkeypatch.setenv("HOME", str(home))
    script = Script.from_rules([{"match": ".", "steps": [{"text": "done"}]}])
    with ScriptedServer(script) as server:
        configure_acp(repo, f'model = "scripted-model"\nbase_url = "{server.url}"\n'
                      + ("" if inherit is None else f"inherit = {json.dumps(inherit)}\n"))
        assert claw(repo, "add", "say hi").returncode == 0
        assert claw(repo, "run", timeout=300).returncode == 0
        seen = json.dumps([r["body"] for r in server.requests])
    assert server.requests, claw(repo, "log", "1").stdout[-2000:]
    assert ("MARKER-GEMINI-MD" in seen) is (inherit is None)
