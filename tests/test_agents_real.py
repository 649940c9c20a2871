"""The real agent CLIs (Claude Code, Codex, Gemini CLI) driven by `claw run` against the scripted model server.

Nothing here is imitated: the npm packages' own programs run in the attempt's worktree, talk real
HTTP to the scripted server through their documented base-URL settings (directly, or through the
metering gateway that `claw run` starts with `[gateway] enabled`), run the scripted tool
calls (shell commands) themselves, and end; clawfleet commits, runs the checks, feeds a failure
back for a fix round, and reads the summary and token use from the CLI's JSON output.

The programs are found on PATH or in $CLAW_AGENT_BIN_DIR (`.ci/run` installs them into
.ci/node); a test whose program is missing is skipped, saying how to install it.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import time
from pathlib import Path

import pytest

from clawfleet import git
from clawfleet.agents import AgentJob, agent_kinds, aider, claude, codex, gemini, make_agent, opencode
from clawfleet.llm.scripted import Script, ScriptedServer
from clawfleet.procs import ChildGroups, cmdline
from clawfleet.store import Store

from conftest import agent_script, claw, write_config
from test_run import status_json

# Where .ci/run installs them: the npm CLIs, and aider in a virtual environment of its own.
CI = Path(__file__).resolve().parent.parent / ".ci"
LOCAL_BINS = [path for path in (CI / "node" / "node_modules" / ".bin", CI / "aider" / "bin") if path.is_dir()]
if LOCAL_BINS:
    os.environ.setdefault("CLAW_AGENT_BIN_DIR", os.pathsep.join(map(str, LOCAL_BINS)))

CHECK = "python3 -m unittest discover -s tests"


def shell_tool(kind: str, command: str) -> dict:
    """A scripted step that asks the CLI to run `command` with its own shell tool."""
    if kind == "claude":
        return {"tool": "Bash", "input": {"command": command, "description": "run a command"}}
    if kind == "gemini":
        return {"tool": "run_shell_command", "input": {"command": command}}
    if kind == "opencode":
        return {"tool": "bash", "input": {"command": command, "description": "run a command"}}
    return {"tool": "exec_command", "input": {"cmd": command}}


def require(kind: str) -> None:
    program = {"claude": claude.PROGRAM, "codex": codex.PROGRAM, "gemini": gemini.PROGRAM,
               "opencode": opencode.PROGRAM, "aider": aider.PROGRAM}[kind]
    if program.find() is None:
        pytest.skip(f"{kind} is not installed: run .ci/run, or `{program.install}`")


def calculator_repo(repo: Path) -> None:
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_calc.py").write_text(textwrap.dedent("""\
        import unittest
        from calc import add


        class AddTest(unittest.TestCase):
            def test_add(self):
                self.assertEqual(add(2, 3), 5)
        """))
    git.git("add", "--all", cwd=repo)
    git.git("commit", "--quiet", "-m", "calculator", cwd=repo, identity=True)


MULTIPLY_TEST = textwrap.dedent("""\
    cat > tests/test_multiply.py <<'EOF'
    import unittest
    from calc import multiply


    class MultiplyTest(unittest.TestCase):
        def test_multiply(self):
            self.assertEqual(multiply(4, 5), 20)
    EOF""")


def multiply_script(kind: str) -> Script:
    """Round 0 writes a wrong multiply and its test; the checks fail; the fix round repairs it.

    One conversation: the fix round resumes the CLI's session with the failing checks as its
    next turn, so its steps come after round 0's in the same rule (steps 4-6)."""
    return Script.from_rules([
        {"name": "multiply", "match": "Add multiply", "steps": [
            shell_tool(kind, "cat calc.py"),
            shell_tool(kind, "printf '\\n\\ndef multiply(a, b):\\n    return a + b  # multiply\\n' >> calc.py"),
            shell_tool(kind, MULTIPLY_TEST),
            {"text": "Added multiply(a, b) and its test."},
            shell_tool(kind, CHECK + " 2>&1 | tail -n 5"),
            shell_tool(kind, "sed -i 's/return a + b  # multiply/return a * b/' calc.py && " + CHECK),
            {"text": "Fixed multiply: it multiplies now; the tests pass."},
        ]},
    ])


GATEWAY_API = {"claude": "messages", "codex": "responses", "gemini": "gemini", "opencode": "chat",
               "aider": "chat"}
OPENAI_STYLE = ("codex", "opencode", "aider")   # their base URL ends in /v1


def configure(repo: Path, kind: str, server: ScriptedServer, *, gateway: bool = False, **extra: str) -> None:
    """The CLI pointed at the scripted server: by its own base-URL setting, or through the gateway
    (then clawfleet points it at the gateway, which forwards to the scripted server)."""
    base_url = server.openai_base_url if kind in OPENAI_STYLE else server.url
    upstream = server.url + ("/v1beta" if kind == "gemini" else "/v1")
    lines = "".join(f'{key} = {json.dumps(value)}\n' for key, value in extra.items())
    if gateway:
        lines += textwrap.dedent(f"""\
            [gateway]
            enabled = true
            [gateway.upstreams.scripted]
            base_url = "{upstream}"
            apis = ["{GATEWAY_API[kind]}"]
            [gateway.prices.scripted-model]
            input = 1.0
            output = 4.0
            """)
    else:
        lines = f'base_url = "{base_url}"\n' + lines
    write_config(repo, f"""
        [fleet]
        default_agent = "{kind}"
        attempt_timeout = 240
        max_attempts = 1
        [checks]
        commands = ["{CHECK}"]
        fix_rounds = 1
        [review]
        auto_approve = []
        [sandbox]
        enabled = true            # the real CLIs run contained, as they do by default
        [agents.{kind}]
        kind = "{kind}"
        model = "scripted-model"
        {'effort = "low"' if kind in ("claude", "codex") else ""}
        """ + textwrap.indent(lines, "        "))


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini", "opencode"])
def test_real_cli_through_the_gateway_adds_a_function_with_its_test_and_fixes_the_failing_check(repo, kind):
    require(kind)
    calculator_repo(repo)
    with ScriptedServer(multiply_script(kind)) as server:
        configure(repo, kind, server, gateway=True)
        assert claw(repo, "add", "Add multiply(a, b) to calc.py, with a test").returncode == 0
        result = claw(repo, "run", timeout=600)
        requests = list(server.requests)
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    attempt = task["latest_attempt"]
    assert task["state"] == "review", (task["reason"], claw(repo, "log", "1").stdout[-3000:])
    assert attempt["state"] == "ready" and attempt["checks_passed"] is True
    assert attempt["fix_rounds"] == 1

    # The work is committed on the attempt's branch; main is untouched.
    branch = attempt["branch"]
    assert "return a * b" in git.out("show", f"{branch}:calc.py", cwd=repo)
    assert "multiply(4, 5), 20" in git.out("show", f"{branch}:tests/test_multiply.py", cwd=repo)
    assert len(git.out("rev-list", f"main..{branch}", cwd=repo).split()) == 2   # the try and the fix
    assert not (repo / "tests" / "test_multiply.py").exists()

    # Summary and tokens were read from the CLI's own JSON output.
    assert attempt["summary"] == "Fixed multiply: it multiplies now; the tests pass."
    assert attempt["input_tokens"] > 1000 and attempt["output_tokens"] > 0

    # The CLI ran each scripted command itself and sent its output back to the model.
    path = {"claude": "/v1/messages", "codex": "/v1/responses", "opencode": "/v1/chat/completions",
            "gemini": "/v1beta/models/scripted-model:streamGenerateContent"}[kind]
    assert {r["path"] for r in requests} == {path}
    assert len(requests) == 4 + 3

    # Every call went through the gateway, which metered it against this attempt.
    calls = Store(repo / ".claw" / "run" / "claw.db").llm_calls(attempt_id=attempt["id"])
    assert len(calls) == 7 and {c.api for c in calls} == {GATEWAY_API[kind]}
    assert all(c.status == "ok" and c.input_tokens > 0 and c.output_tokens > 0 for c in calls), calls
    assert sum(c.input_tokens for c in calls) > 1000 and all(c.cost > 0 for c in calls)
    assert "gateway at http://127.0.0.1:" in result.stdout
    assert "return a + b" in json.dumps(requests[1]["body"])     # what `cat calc.py` printed
    assert "FAILED" in json.dumps(requests[-1]["body"]) or "AssertionError" in json.dumps(requests[-1]["body"])
    if kind != "gemini":  # Gemini names the model in the path
        assert requests[0]["body"]["model"] == "scripted-model"

    # Its transcripts, its own home and the checks' logs are in the attempt folder.
    attempt_dir = repo / ".claw" / "run" / "attempts" / str(attempt["id"])
    for round_number in (0, 1):
        events = [json.loads(line) for line in (attempt_dir / f"{kind}-{round_number}.jsonl").read_text().splitlines()]
        assert events, f"{kind}-{round_number}.jsonl is empty"
    assert (attempt_dir / f"{kind}-home").is_dir()
    assert sorted(p.name for p in (attempt_dir / "checks").iterdir())
    log = claw(repo, "log", "1").stdout
    assert "cat calc.py" in log and "Fixed multiply" in log

    # The recorded run replays offline: a script made from the gateway's transcript drives the
    # same CLI again, in the same place (the fleet's state cleared), to the same result.
    made = claw(repo, "gateway", "script", str(attempt_dir / "transcript.jsonl"))
    assert made.returncode == 0, made.stderr
    first_calc = git.out("show", f"{branch}:calc.py", cwd=repo)
    shutil.rmtree(repo / ".claw" / "run")
    git.git("worktree", "prune", cwd=repo)
    for name in git.out("branch", "--list", "claw/*", "--format=%(refname:short)", cwd=repo).split():
        git.git("branch", "-D", name, cwd=repo)
    with ScriptedServer(Script.parse(made.stdout)) as replay:
        configure(repo, kind, replay)
        claw(repo, "add", "Add multiply(a, b) to calc.py, with a test")
        assert claw(repo, "run", timeout=600).returncode == 0
        replayed = len(replay.requests)
    again = status_json(repo)[0]
    assert again["state"] == "review", (again["reason"], claw(repo, "log", "1").stdout[-2000:])
    assert again["latest_attempt"]["summary"] == attempt["summary"] and replayed == len(requests)
    assert git.out("show", f"{again['latest_attempt']['branch']}:calc.py", cwd=repo) == first_calc


@pytest.mark.parametrize("kind", ["claude", "codex"])
def test_real_cli_as_the_ai_reviewer_runs_the_tests_in_a_checkout_and_approves(repo, kind):
    """Any agent kind reviews: the CLI reads a throwaway checkout of the change, runs the tests
    itself, and its final message is the verdict; its calls are metered against the attempt."""
    require(kind)
    calculator_repo(repo)
    worker = agent_script(repo, "w", f"""
        printf '\\n\\ndef multiply(a, b):\\n    return a * b\\n' >> calc.py
        {MULTIPLY_TEST}
        """)
    verdict = '{"verdict": "approve", "comments": ["multiply is right and tested"]}'
    script = Script.from_rules([{"match": "You review a change", "steps": [
        shell_tool(kind, CHECK + " 2>&1 | tail -n 3"), {"text": "The tests pass.\n" + verdict}]}])
    with ScriptedServer(script) as server:
        configure(repo, kind, server, gateway=True)
        config = repo / ".claw" / "config.toml"
        config.write_text(config.read_text()
                          .replace(f'default_agent = "{kind}"', 'default_agent = "w"')
                          .replace("[review]\n", "[review]\nauto_max_risk = { normal = -1 }\n"
                                   f'ai_reviewer = "{kind}"\nai_max_risk = {{ normal = 100 }}\n')
                          + f'[agents.w]\nkind = "command"\ncommand = ["{worker}"]\n')
        claw(repo, "add", "Add multiply(a, b) to calc.py, with a test")
        result = claw(repo, "run", timeout=600)
        requests = list(server.requests)
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    shown = json.loads(claw(repo, "show", "1", "--json").stdout)
    attempt = shown["attempts"][0]
    review_dir = repo / ".claw" / "run" / "attempts" / str(attempt["id"]) / "review"
    assert task["state"] == "merged", (task["reason"], (review_dir / "agent.log").read_text()[-2000:])
    assert attempt["ai_review"] == "approve"
    assert "AI reviewer: approve: multiply is right and tested" in result.stdout
    assert "return a * b" in (repo / "calc.py").read_text()
    # It ran the tests in its checkout and sent their output back to the model.
    assert len(requests) == 2 and "OK" in json.dumps(requests[1]["body"])
    calls = Store(repo / ".claw" / "run" / "claw.db").llm_calls(attempt_id=attempt["id"])
    assert len(calls) == 2 and all(c.api == GATEWAY_API[kind] and c.status == "ok" and c.cost > 0 for c in calls)
    assert not (review_dir / "checkout").exists()


def test_a_real_cli_past_its_deadline_is_stopped_as_out_of_time(repo):
    require("claude")
    calculator_repo(repo)
    # A command line no other process here has (Claude Code 2.1.328 refuses a standalone `sleep`).
    marker = "import time; time.sleep(97.5)"
    script = Script.from_rules([{"match": "Add multiply", "steps": [shell_tool("claude", f"python3 -c '{marker}'")]}])
    with ScriptedServer(script) as server:
        configure(repo, "claude", server)
        config = repo / ".claw" / "config.toml"
        config.write_text(config.read_text().replace("attempt_timeout = 240", "attempt_timeout = 8"))
        claw(repo, "add", "Add multiply(a, b) to calc.py, with a test")
        result = claw(repo, "run", timeout=120)
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    assert task["state"] == "failed" and task["latest_attempt"]["state"] == "timed_out", task
    assert task["reason"] == "the agent ran out of time"
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and marker in " ".join(cmdline(int(pid)))]
    assert not left, f"the CLI's command outlived its attempt: {left}"


def listing(path: str, text: str) -> str:
    """A file as aider's `whole` edit format writes it: its name, then its whole content fenced."""
    return f"{path}\n```python\n{textwrap.dedent(text)}```\n"


CALC_WITH = "def add(a, b):\n    return a + b\n\n\ndef multiply(a, b):\n    return {}\n"


def test_aider_through_the_gateway_edits_files_and_fixes_the_failing_check(repo):
    """Aider has no tools to call: the model answers with whole files, which aider writes."""
    require("aider")
    calculator_repo(repo)
    test_file = "import unittest\nfrom calc import multiply\n\n\nclass MultiplyTest(unittest.TestCase):\n" \
                "    def test_multiply(self):\n        self.assertEqual(multiply(4, 5), 20)\n"
    fixed = {"text": "Fixed multiply: it multiplies now.\n\n" + listing("calc.py", CALC_WITH.format("a * b"))}
    # One conversation: the fix round restores round 0's chat history (--restore-chat-history).
    # Between that history and the new message aider puts an exchange of its own ("Don't try and
    # edit any existing code..." / "Ok, ..."), so the fix is the third model turn after the task.
    script = Script.from_rules([
        {"name": "multiply", "match": "Add multiply", "steps": [
            {"text": "Added multiply(a, b) and its test.\n\n" + listing("calc.py", CALC_WITH.format("a + b"))
                     + "\n" + listing("tests/test_multiply.py", test_file)},
            {"error": 500, "message": "aider's own 'Ok.' stands at this turn: never asked"},
            fixed, fixed]},   # asked again once aider has added calc.py to the chat
    ])
    with ScriptedServer(script) as server:
        configure(repo, "aider", server, gateway=True, edit_format="whole")
        claw(repo, "add", "Add multiply(a, b) to calc.py, with a test")
        result = claw(repo, "run", timeout=600)
        requests = list(server.requests)
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    attempt = task["latest_attempt"]
    assert task["state"] == "review", (task["reason"], claw(repo, "log", "1").stdout[-3000:])
    assert attempt["checks_passed"] is True and attempt["fix_rounds"] == 1
    assert "return a * b" in git.out("show", f"{attempt['branch']}:calc.py", cwd=repo)
    assert "multiply(4, 5), 20" in git.out("show", f"{attempt['branch']}:tests/test_multiply.py", cwd=repo)
    assert not (repo / ".gitignore").exists() and ".aider" not in git.out("ls-tree", "-r", attempt["branch"], cwd=repo)
    assert attempt["summary"] == "Fixed multiply: it multiplies now."
    assert attempt["input_tokens"] > 100 and attempt["output_tokens"] > 0
    # Round 0 made one model call, the fix round two (the second once calc.py was in the chat),
    # each through the gateway and metered; the fix round's carry round 0's exchange (the chat
    # history restored).
    assert len(requests) == 3 and all(r["path"] == "/v1/chat/completions" for r in requests)
    assert "Added multiply(a, b) and its test." in json.dumps(requests[1]["body"]["messages"])
    assert attempt["session"] == "aider-1.md"
    calls = Store(repo / ".claw" / "run" / "claw.db").llm_calls(attempt_id=attempt["id"])
    assert len(calls) == 3 and all(c.api == "chat" and c.status == "ok" and c.cost > 0 for c in calls)
    attempt_dir = repo / ".claw" / "run" / "attempts" / str(attempt["id"])
    assert "Add multiply" in (attempt_dir / "aider-home" / "aider-0.md").read_text()


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini", "opencode", "aider"])
def test_a_model_error_fails_the_attempt_with_the_providers_message(repo, kind):
    require(kind)
    script = Script.from_rules([{"match": "Anything at all",
                                 "steps": [{"error": 400, "message": "scripted refusal: context too long"}]}])
    with ScriptedServer(script) as server:
        configure(repo, kind, server)
        claw(repo, "add", "Anything at all")
        result = claw(repo, "run", timeout=300)
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    assert task["state"] == "failed"
    assert task["latest_attempt"]["state"] == "failed"
    assert "scripted refusal: context too long" in task["reason"]


def test_effort_model_and_settings_reach_each_cli(repo):
    require("claude")
    require("codex")
    script = Script.from_rules([{"steps": [{"text": "nothing to do"}]}])
    for kind in ("claude", "codex"):
        with ScriptedServer(script) as server:
            configure(repo, kind, server, args=[])
            claw(repo, "add", f"Look around with {kind}")
            assert claw(repo, "run", timeout=300).returncode == 0
            body = server.requests[0]["body"]
        assert body["model"] == "scripted-model"
        if kind == "claude":
            assert body["output_config"]["effort"] == "low"
        else:
            assert body["reasoning"]["effort"] == "low"
    tasks = status_json(repo)
    assert [t["latest_attempt"]["state"] for t in tasks] == ["no_change", "no_change"]
    assert [t["latest_attempt"]["summary"] for t in tasks] == ["nothing to do", "nothing to do"]


@pytest.mark.parametrize("kind, package", [("claude", "@anthropic-ai/claude-code"), ("codex", "@openai/codex"),
                                           ("gemini", "@google/gemini-cli"), ("opencode", "opencode-ai"),
                                           ("aider", "pipx install aider-chat")])
def test_a_missing_program_fails_with_how_to_install_it(repo, kind, package):
    write_config(repo, f"""
        [fleet]
        default_agent = "mine"
        [agents.mine]
        kind = "{kind}"
        """)
    claw(repo, "add", "anything")
    empty = repo.parent / "empty-bin"
    empty.mkdir()
    env = {"PATH": f"{empty}:/usr/bin:/bin", "CLAW_AGENT_BIN_DIR": str(empty)}
    result = claw(repo, "run", env=env)   # refused before anything starts
    assert result.returncode == 1 and status_json(repo)[0]["state"] == "queued"
    reason = " ".join(result.stderr.split())
    assert f"agent 'mine' (kind {kind}): program '{kind}' not found" in reason
    assert (package if kind == "aider" else f"npm install -g {package}") in reason


def test_an_unset_api_key_variable_is_named(repo):
    write_config(repo, """
        [fleet]
        default_agent = "claude"
        [agents.claude]
        kind = "claude"
        api_key_env = "CLAW_TEST_UNSET_KEY"
        binary = "/bin/true"
        """)
    claw(repo, "add", "anything")
    result = claw(repo, "run")   # refused before anything starts
    assert result.returncode == 1 and status_json(repo)[0]["state"] == "queued"
    assert "$CLAW_TEST_UNSET_KEY (its api_key_env) is not set" in " ".join(result.stderr.split())


def test_claw_agents_lists_kinds_installed_and_versions(repo):
    listed = claw(repo, "agents", "--json")
    assert listed.returncode == 0, listed.stderr
    kinds = {k["kind"]: k for k in json.loads(listed.stdout)}
    assert set(kinds) >= {"builtin", "command", "claude", "codex", "gemini", "opencode", "aider", "acp"}
    assert kinds["acp"]["installed"] is True and kinds["acp"]["version"].startswith("ACP SDK 0.")
    for kind, program in (("claude", claude.PROGRAM), ("codex", codex.PROGRAM), ("gemini", gemini.PROGRAM),
                          ("opencode", opencode.PROGRAM), ("aider", aider.PROGRAM)):
        path = program.find()
        assert kinds[kind]["installed"] is (path is not None)
        if path:
            assert kinds[kind]["version"] == program.version(path) and kinds[kind]["version"]
        assert kinds[kind]["install"] == program.install
    assert {k.kind for k in agent_kinds()} == set(kinds)
    table = claw(repo, "agents")
    assert "claude" in table.stdout and "codex" in table.stdout


def acp_multiply_script() -> Script:
    """Gemini CLI over ACP: round 0 writes the test of multiply (a new file, through clawfleet's
    file service) but not multiply itself; the checks fail; the fix round continues the same
    conversation (the session was loaded: its turns count on from round 0's two), runs the tests
    with its shell tool, reads calc.py and writes multiply into it.

    Round 0 makes one tool call: Gemini CLI hands a loaded history back with consecutive tool
    calls merged into one turn, which would shift the scripted turn count."""
    def write(path: str, content: str) -> dict:
        return {"tool": "write_file", "input": {"file_path": path, "content": content}}
    return Script.from_rules([{"name": "multiply", "match": "Add multiply", "steps": [
        write("tests/test_multiply.py", "import unittest\nfrom calc import multiply\n\n\n"
              "class MultiplyTest(unittest.TestCase):\n    def test_multiply(self):\n"
              "        self.assertEqual(multiply(4, 5), 20)\n"),
        {"text": "Added the test of multiply(a, b)."},
        shell_tool("gemini", CHECK + " 2>&1 | tail -n 5"),
        {"tool": "read_file", "input": {"file_path": "calc.py"}},
        write("calc.py", CALC_WITH.format("a * b")),
        {"text": "Fixed multiply: it multiplies now; the tests pass."},
    ]}])


@pytest.mark.real_cli
@pytest.mark.slow
def test_gemini_over_acp_through_the_gateway_edits_files_and_its_fix_round_resumes_the_session(repo):
    """`kind = "acp"` with Gemini CLI's own ACP mode (`gemini --acp`): clawfleet is the client."""
    require("gemini")
    calculator_repo(repo)
    with ScriptedServer(acp_multiply_script()) as server:
        configure(repo, "gemini", server, gateway=True)
        config = repo / ".claw" / "config.toml"
        # Gemini CLI 0.61 names a session's file by the minute it starts in, and session/load
        # first records into that name: a load within the same minute overwrites the session it
        # loads ("No previous sessions found"; the adapter then starts a new one). A failing
        # check waits for the next minute, so the fix round really loads the session.
        check = CHECK + " || { python3 -c 'import time; time.sleep(60.5 - time.time() % 60)'; exit 1; }"
        config.write_text(config.read_text()
                          .replace('[agents.gemini]\nkind = "gemini"',
                                   '[agents.gemini]\nkind = "acp"\ncommand = ["gemini", "--acp"]')
                          .replace(f'commands = ["{CHECK}"]', f"commands = [{json.dumps(check)}]"))
        assert claw(repo, "add", "Add multiply(a, b) to calc.py, with a test").returncode == 0
        result = claw(repo, "run", timeout=600)
        requests = list(server.requests)
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    attempt = task["latest_attempt"]
    log = claw(repo, "log", "1").stdout
    assert task["state"] == "review", (task["reason"], log[-3000:])
    assert attempt["checks_passed"] is True and attempt["fix_rounds"] == 1
    branch = attempt["branch"]
    assert "return a * b" in git.out("show", f"{branch}:calc.py", cwd=repo)
    assert "multiply(4, 5), 20" in git.out("show", f"{branch}:tests/test_multiply.py", cwd=repo)
    assert len(git.out("rev-list", f"main..{branch}", cwd=repo).split()) == 2
    assert attempt["summary"] == "Fixed multiply: it multiplies now; the tests pass."
    assert attempt["input_tokens"] > 1000 and attempt["output_tokens"] > 0

    # Six model turns, all through the gateway; the fix round's first request carries round 0's
    # conversation (the session was loaded), not a fresh start.
    assert len(requests) == 6
    assert {r["path"] for r in requests} == {"/v1beta/models/scripted-model:streamGenerateContent"}
    fix_opening = json.dumps(requests[2]["body"]["contents"])
    assert "Added the test of multiply(a, b)." in fix_opening and "The checks failed" in fix_opening
    calls = Store(repo / ".claw" / "run" / "claw.db").llm_calls(attempt_id=attempt["id"])
    assert len(calls) == 6 and all(c.api == "gemini" and c.status == "ok" for c in calls)

    # The session (its agent sandboxed), its tool calls, permission answers and the file service in the log.
    assert "# ACP agent 'gemini':" in log and "[UNSANDBOXED]" not in log
    sessions = [line for line in log.splitlines() if line.startswith("[acp gemini-cli")]
    assert len(sessions) == 2 and sessions[0].endswith("(new)]") and "(loaded" in sessions[1], sessions
    session_id = sessions[0].split("session ")[1].split()[0]
    assert f"session {session_id} (loaded" in sessions[1]
    for line in ("-> [read] calc.py", "?  [edit] Writing to calc.py: allowed (inside the worktree)",
                 "wrote tests/test_multiply.py", "edit tests/test_multiply.py: 0 -> 7 lines", "wrote calc.py",
                 "?  [execute]", "allowed (a command the agent runs in its worktree)",
                 "<- [completed]", "agent: Fixed multiply: it multiplies now; the tests pass.",
                 "[end: end_turn,"):
        assert line in log, (line, log[-3000:])

    # Every JSON-RPC message of each round in its transcript.
    attempt_dir = repo / ".claw" / "run" / "attempts" / str(attempt["id"])
    first = [json.loads(line) for line in (attempt_dir / "acp-0.jsonl").read_text().splitlines()]
    second = [json.loads(line) for line in (attempt_dir / "acp-1.jsonl").read_text().splitlines()]
    sent = lambda messages: [m["message"].get("method") for m in messages if m["from"] == "clawfleet"]
    assert sent(first)[:3] == ["initialize", "session/new", "session/prompt"]
    assert sent(second)[:3] == ["initialize", "session/load", "session/prompt"]
    asked = {m["message"].get("method") for m in first if m["from"] == "agent"}
    assert {"session/update", "session/request_permission", "fs/write_text_file"} <= asked
    assert (attempt_dir / "acp-home" / ".gemini").is_dir()


@pytest.mark.real_cli
def test_claude_not_logged_in_is_a_failure_never_a_success(tmp_path, monkeypatch):
    """Claude Code marks "Not logged in" as an error result with subtype "success": it must be
    read as the failure it is (it was "claude ended with success: Not logged in"). `claw run`
    now refuses such an agent up front; a login that goes away mid-run still ends this way, so
    the real CLI's own output is read here by the agent directly."""
    require("claude")
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "person"))   # a person with no login
    workspace, attempt = tmp_path / "ws", tmp_path / "attempt"
    git.init_repo(workspace, {"README.md": "# x\n"})
    attempt.mkdir()
    (attempt / "prompt-0.md").write_text("Anything at all")
    agent = make_agent("claude", {"kind": "claude"})
    outcome = agent.run(AgentJob(task_id=1, attempt_id=1, agent_name="claude", workspace=workspace,
                                 attempt_dir=attempt, prompt="Anything at all", prompt_file=attempt / "prompt-0.md",
                                 log=attempt / "agent.log", deadline=time.time() + 120,
                                 children=ChildGroups(attempt / "children")))
    assert outcome.error and "not logged in" in outcome.error.lower(), outcome
    assert "success" not in outcome.error and outcome.exit_code != 0 and not outcome.summary


def claude_acp_program() -> str:
    """claude-agent-acp, Zed's ACP adapter of Claude Code (the Claude Agent SDK's own Claude Code)."""
    found = shutil.which("claude-agent-acp", path=os.environ.get("CLAW_AGENT_BIN_DIR") or os.environ.get("PATH"))
    if found is None:
        pytest.skip("claude-agent-acp is not installed: run .ci/run, or "
                    "`npm install -g @zed-industries/claude-agent-acp`")
    return found


@pytest.mark.real_cli
@pytest.mark.slow
def test_claude_code_over_acp_edits_a_file_with_its_own_tools_and_reaches_review(repo):
    """`kind = "acp"` with `claude-agent-acp` pointed at the scripted model (provider anthropic:
    ANTHROPIC_BASE_URL), sandboxed: its Bash tool asks permission (allowed: a command in its
    worktree), edits calc.py; the checks pass and the task reaches review."""
    claude_acp_program()
    calculator_repo(repo)
    script = Script.from_rules([{"name": "multiply", "match": "Add multiply", "steps": [
        shell_tool("claude", "printf '\\n\\ndef multiply(a, b):\\n    return a * b\\n' >> calc.py"),
        {"text": "Added multiply(a, b)."},
    ]}])
    with ScriptedServer(script) as server:
        configure(repo, "claude", server)
        config = repo / ".claw" / "config.toml"
        config.write_text(config.read_text()
                          .replace('[agents.claude]\nkind = "claude"',
                                   '[agents.claude]\nkind = "acp"\ncommand = ["claude-agent-acp"]')
                          .replace('effort = "low"', ""))
        assert claw(repo, "add", "Add multiply(a, b) to calc.py").returncode == 0
        result = claw(repo, "run", timeout=600)
        requests = list(server.requests)
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    attempt = task["latest_attempt"]
    log = claw(repo, "log", "1").stdout
    assert task["state"] == "review", (task["reason"], log[-3000:])
    assert "return a * b" in git.out("show", f"{attempt['branch']}:calc.py", cwd=repo)
    assert attempt["summary"] == "Added multiply(a, b)."
    assert requests and {r["path"] for r in requests} == {"/v1/messages"}
    assert "# ACP agent 'claude':" in log and "[UNSANDBOXED]" not in log
    assert "[acp @zed-industries/claude-agent-acp " in log, log[-3000:]
    assert "?  [execute]" in log and "allowed (a command the agent runs in its worktree)" in log
