"""Secrets never leave: planted keys and a `.env` against a real fleet that tries to leak them.

Two agents try what worked on 2026-12-01: a `command` agent (`env > e.txt; cp .env copy.txt;
echo $OPENAI_API_KEY > k.txt`, the key in its log and its summary, a call through the gateway
carrying it) and the built-in agent, whose scripted model echoes the key and writes it to a file.
Afterwards no planted value is anywhere under .claw/run (but the worktrees, which hold the
`.env` copy by design), in any table of the store, in a notification or in main's history; both
attempts failed naming file and line, never the value; the next ordinary task landed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from clawfleet.llm.scripted import Script, ScriptedServer
from clawfleet.notify import CURSOR_KEY, Notifier
from clawfleet.project import Project

from conftest import agent_script, claw, write_config

OPENAI_KEY = "sk-proj-PlantedOpenAI7f3kQ9zR2mX8vB4nL6tY1wE5"
ANTHROPIC_KEY = "sk-ant-api03-PlantedAnthropic9Qz4Kp2Lm7Xv3Rt8"
UPSTREAM_KEY = "upstream-Planted-4Rk9Tq2Wx7Zm1Lp8"
PERSON_SECRET = "person-named-Planted-Vb6Nh3Jd9Kf2"     # only [secrets] env says it is one
DOTENV_SECRET = "dotenv-Planted-Db8Pw3Qx7Lz2Mk5"
DOTENV_OTHER = "https://svc:Planted-Url-9xQ2@db.internal:5432/app"
PLANTED = [OPENAI_KEY, ANTHROPIC_KEY, UPSTREAM_KEY, PERSON_SECRET, DOTENV_SECRET, DOTENV_OTHER]
SECRET_ENV = {"OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
              "CLAW_TEST_UPSTREAM_KEY": UPSTREAM_KEY, "MY_SERVICE_CRED": PERSON_SECRET}

# The key itself is no longer in an agent's environment (the sandbox strips provider keys when a
# gateway stands in); the agent writes it from elsewhere (a model, a log it once read), as the
# literal @KEY@ here, and tries every variable anyway.
LEAKY = """\
env > e.txt
cp .env copy.txt
echo "${OPENAI_API_KEY:-@KEY@}" > k.txt
echo "the agent's log: @KEY@ ${OPENAI_API_KEY:-} ${MY_SERVICE_CRED:-} ${CLAW_TEST_UPSTREAM_KEY:-}"
cat .env
echo "done; key @KEY@, db $(grep DB_PASSWORD .env)" > "$CLAW_SUMMARY_FILE"
python3 - <<'EOF'
import json, os, urllib.request
body = {"model": "scripted", "messages": [{"role": "user", "content": "Remember @KEY@"}]}
request = urllib.request.Request(os.environ["CLAW_GATEWAY_URL"] + "/v1/chat/completions",
    data=json.dumps(body).encode(), headers={"authorization": "Bearer " + os.environ["CLAW_GATEWAY_KEY"],
                                             "content-type": "application/json"})
print(urllib.request.urlopen(request, timeout=20).status)
EOF
""".replace("@KEY@", OPENAI_KEY)

SCRIPT = Script.from_rules([
    {"match": "Echo the key", "steps": [
        {"command": f"echo {OPENAI_KEY} > k2.txt; cat .env; echo \"$OPENAI_API_KEY\""},
        {"done": f"wrote k2.txt; the key is {OPENAI_KEY} and the password {DOTENV_SECRET}"}]},
    {"match": "Remember", "steps": [{"text": f"noted: {OPENAI_KEY}"}]},
])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """One real fleet run: the two leaky attempts, then an ordinary task."""
    from clawfleet import git

    repo = tmp_path_factory.mktemp("secrets") / "repo"
    git.init_repo(repo, {"README.md": "# sample\n", ".gitignore": ".env\n"})
    (repo / ".env").write_text(f"DB_PASSWORD={DOTENV_SECRET}\nSERVICE_URL=\"{DOTENV_OTHER}\"\nAPP_ENV=dev\n")
    leaky = agent_script(repo, "leaky", LEAKY)
    plain = agent_script(repo, "plain", "echo ok > ordinary.txt\n")
    env = {**SECRET_ENV, "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "T",
           "GIT_COMMITTER_EMAIL": "t@e"}
    with ScriptedServer(SCRIPT) as upstream:
        write_config(repo, f"""
            [fleet]
            slots = 1
            max_attempts = 1
            attempt_timeout = 120
            [review]
            auto_approve = ["low", "normal"]
            [workspace]
            include = [".env"]
            [secrets]
            env = ["MY_SERVICE_CRED"]
            [agents.leaky]
            kind = "command"
            command = ["{leaky}"]
            [agents.plain]
            kind = "command"
            command = ["{plain}"]
            [agents.builtin]
            kind = "builtin"
            provider = "openai"
            model = "scripted"
            base_url = "http://127.0.0.1:9/v1"
            max_steps = 4
            [gateway]
            enabled = true
            default = {{ chat = "scripted" }}
            [gateway.upstreams.scripted]
            base_url = "{upstream.openai_base_url}"
            apis = ["chat"]
            key_env = "CLAW_TEST_UPSTREAM_KEY"
            """)
        for title, agent in (("Leak the secrets", "leaky"), ("Echo the key", "builtin")):
            assert claw(repo, "add", title, "--agent", agent, env=env).returncode == 0
        first = claw(repo, "run", env=env, timeout=240)
        assert claw(repo, "add", "An ordinary task", "--agent", "plain", env=env).returncode == 0
        second = claw(repo, "run", env=env, timeout=240)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    return repo, first.stdout + second.stdout


def tasks(repo: Path) -> dict[str, dict]:
    return {t["title"]: t for t in json.loads(claw(repo, "status", "--all", "--json").stdout)}


def hits(text: str) -> list[str]:
    return [value[:12] + "..." for value in PLANTED if value in text]


def test_leaky_attempts_fail_naming_file_and_line_and_the_fleet_goes_on(fleet):
    repo, output = fleet
    found = tasks(repo)
    leak, echo, ordinary = found["Leak the secrets"], found["Echo the key"], found["An ordinary task"]
    assert leak["state"] == "failed" and echo["state"] == "failed", (leak, echo)
    store = Project(repo).store
    leak_reason = store.get_task(leak["id"]).reason
    assert "must not land" in leak_reason and "k.txt:1" in leak_reason and "copy.txt" in leak_reason
    assert "k2.txt:1" in store.get_task(echo["id"]).reason
    assert ordinary["state"] == "merged"
    assert (repo / "ordinary.txt").read_text() == "ok\n"
    assert not hits(output)


def test_no_planted_value_in_run_files_store_notifications_or_history(fleet):
    repo, _ = fleet
    run_dir = repo / ".claw" / "run"
    leaked_files = []
    for path in run_dir.rglob("*"):
        if path.is_file() and not path.is_symlink() and "worktrees" not in path.relative_to(run_dir).parts[:1]:
            found = hits(path.read_bytes().decode("utf-8", "replace"))
            if found:
                leaked_files.append((str(path.relative_to(run_dir)), found))
    assert leaked_files == []
    # Every table, every row (read-only: only store.py writes).
    with sqlite3.connect(f"file:{run_dir / 'claw.db'}?mode=ro", uri=True) as db:
        dump = "\n".join(db.iterdump())
    assert "Leak the secrets" in dump and not hits(dump)
    # Notifications of everything that happened in the run.
    project = Project(repo)
    project.store.set_daemon_state(CURSOR_KEY, 0)
    sent: list[str] = []
    notifier = Notifier(project.store, project.config.notify,
                        send=lambda title, body: sent.append(title + "\n" + body) or True)
    assert notifier.pump() >= 2
    assert any("Leak the secrets" in text for text in sent) and not hits("\n".join(sent))
    history = claw(repo, "log", "1").stdout  # the agent's log as `claw log` prints it
    assert "the agent's log:" in history and not hits(history)
    from clawfleet import git
    assert not hits(git.git("log", "-p", "main", cwd=repo).stdout)


def test_run_files_are_private(fleet):
    repo, _ = fleet
    run_dir = repo / ".claw" / "run"
    wide = []
    for path in [run_dir, *run_dir.rglob("*")]:
        relative = path.relative_to(run_dir).parts
        if relative[:1] in (("worktrees",), ("cache",)) and len(relative) > 1:
            continue  # the checkouts' own files; their folder is 0700
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            wide.append((str(path.relative_to(run_dir)), oct(mode)))
    assert wide == []
    # What landed in the person's checkout has the person's modes, not clawfleet's 0600.
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((repo / "ordinary.txt").stat().st_mode) == 0o666 & ~umask


def test_the_redactor_knows_included_files_and_named_variables(tmp_path, monkeypatch):
    from clawfleet import redact

    monkeypatch.setenv("SOME_SERVICE_TOKEN", "token-value-123456")
    monkeypatch.setenv("PLAIN_SETTING", "plain-value-123456")
    monkeypatch.setenv("MY_SERVICE_CRED", PERSON_SECRET)
    (tmp_path / ".env").write_text(f"export DB_PASSWORD='{DOTENV_SECRET}'\nAPP_ENV=development\nX=1\n")
    redact.learn_env(["MY_SERVICE_CRED"])
    redactor = redact.learn_files([tmp_path / ".env"], tmp_path)
    text = redactor.text(f"a token-value-123456 b plain-value-123456 c {PERSON_SECRET} d {DOTENV_SECRET} "
                         "e development f 1")
    assert text == "a [REDACTED] b plain-value-123456 c [REDACTED] d [REDACTED] e [REDACTED] f 1"
    # In JSON text too (the store keeps event data as JSON), and values shorter than 8 stay.
    tricky = 'pa"ss\\word-1234'
    assert redact.Redactor([redact.Secret(tricky, "x")]).known(json.dumps({"r": tricky})) == '{"r": "[REDACTED]"}'
    assert redact.Redactor([redact.Secret("short1", "x")]).text("short1") == "short1"
    # Only strong values bounce a diff: "development" may be written in code.
    assert redactor.secrets[DOTENV_SECRET].strong and not redactor.secrets["development"].strong
    assert redactor.secrets[DOTENV_SECRET].source == "the value of DB_PASSWORD in .env"


def test_the_scan_names_file_line_and_commit_never_the_value(repo):
    from clawfleet import git, redact, secretscan

    base = git.rev(repo, "HEAD")
    (repo / "config.py").write_text(f'import os\nDEBUG = True\nKEY = "{OPENAI_KEY}"\n')
    (repo / "aws.py").write_text('id = "AKIAIOSFODNN7EXAMPLE"\n')
    git.git("add", "-A", cwd=repo)
    git.git("commit", "-qm", "add config", cwd=repo)
    (repo / "config.py").write_text("import os\nDEBUG = True\n")  # removed again: history keeps it
    git.git("commit", "-qam", "drop the key", cwd=repo)
    redactor = redact.Redactor([redact.Secret(OPENAI_KEY, "$OPENAI_API_KEY")])
    findings = secretscan.scan(repo, base, "HEAD", redactor)
    described = secretscan.describe(findings)
    assert "config.py:3 ($OPENAI_API_KEY" in described and "aws.py:1 (AWS Access Key" in described
    assert OPENAI_KEY not in described and "AKIAIOSFODNN7EXAMPLE" not in described
    assert secretscan.scan(repo, "HEAD~1", "HEAD", redactor) == []  # the commit that removed it is clean
