"""Research mode: real repositories, real experiment processes, real git, a real plot."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from clawfleet import git
from clawfleet.agents.hillclimb import Param, ParamSearch, read_params, write_params
from clawfleet.config import ResearchConfig
from clawfleet.errors import ClawError
from clawfleet.research import MetricError, read_metric

from conftest import agent_script, claw, write_config

# A noisy objective: the metric depends on x in params.json, plus a little noise.
OBJECTIVE = """\
import json, random
x = json.load(open("params.json"))["x"]
print("training...")
print(f"score={(x - 3.0) ** 2 + random.gauss(0, 0.05):.5f}")
"""

CONFIG = """\
[research]
command = "python3 objective.py"
metric_regex = "score=(\\\\S+)"
goal = "minimize"
time_budget = {budget}
scope = ["params.json"]
agent = "{agent}"
[research.params.x]
file = "params.json"
min = -10
max = 10
{extra}
"""


@pytest.fixture
def research_repo(tmp_path: Path) -> Path:
    path = tmp_path / "lab"
    git.init_repo(path, {"objective.py": OBJECTIVE, "params.json": '{\n  "x": -2.0\n}\n',
                         "program.md": "# Lower the score\n", "README.md": "# lab\n"})
    return path


def configure(repo: Path, *, budget: float = 5, agent: str = "hillclimb", extra: str = "") -> None:
    write_config(repo, CONFIG.format(budget=budget, agent=agent, extra=extra))


def results(repo: Path) -> list[dict]:
    lines = (repo / ".claw/run/research/default/results.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def test_hillclimb_run_improves_a_noisy_objective_and_keeps_only_improvements_on_git(research_repo):
    configure(research_repo)
    result = claw(research_repo, "research", "run", "--max-experiments", "12", "--parallel", "2",
                  "--seed", "7", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "12 experiments" in result.stdout

    rows = results(research_repo)
    assert len(rows) == 13 and rows[0]["status"] == "baseline"
    assert {row["status"] for row in rows[1:]} <= {"keep", "discard"}
    assert all(float(row["seconds"]) > 0 and float(row["max_rss_mb"]) > 0 for row in rows)
    baseline = float(rows[0]["metric"])
    kept = [row for row in rows if row["status"] == "keep"]
    assert kept, "a dozen hillclimb steps on a parabola found nothing better"
    best = float(kept[-1]["metric"])
    assert best < baseline - 5     # from (-2 - 3)^2 = 25

    # On git: the research branch is the last kept commit, every kept one is on it, no discarded one is.
    tip = git.branch_tip(research_repo, "claw/research/default")
    assert tip.startswith(kept[-1]["commit"])
    for row in rows[1:]:
        if not row["commit"]:
            continue
        on_branch = git.is_ancestor(research_repo, row["commit"], tip)
        assert on_branch == (row["status"] == "keep"), row
        # Every experiment's commit, discarded ones too, stays reachable (nothing is lost to gc).
        pinned = git.out("rev-parse", f"refs/claw/research/default/{row['experiment']}", cwd=research_repo)
        assert pinned.startswith(row["commit"]), row
    x = json.loads(git.out("show", f"{tip}:params.json", cwd=research_repo))["x"]
    assert abs(x - 3.0) < abs(-2.0 - 3.0)
    assert git.out("rev-parse", "main", cwd=research_repo) != tip   # main is untouched
    assert not git.worktrees(research_repo)[1:], "experiment worktrees are removed after the run"

    status = json.loads(claw(research_repo, "research", "status", "--json").stdout)
    assert status["run"]["state"] == "finished" and status["run"]["experiments"] == 12
    assert status["run"]["best_metric"] == pytest.approx(best, abs=1e-4)
    assert status["counts"]["keep"] == len(kept)

    report = claw(research_repo, "research", "report", "--json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    png = Path(data["plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert data["best_changes"][0]["gain"] > 0
    assert data["best_changes"][0]["commit"] in {row["commit"] for row in kept} or \
        any(data["best_changes"][0]["commit"].startswith(row["commit"]) for row in kept)

    # A second run goes on from the best commit and does not propose values already measured.
    again = claw(research_repo, "research", "run", "--max-experiments", "2", "--seed", "7")
    assert again.returncode == 0, again.stderr
    runs = json.loads(claw(research_repo, "research", "status", "--json").stdout)
    assert runs["run"]["baseline_metric"] == pytest.approx(best, abs=0.5)


# A scripted agent: experiment N does the Nth thing in the list, to exercise every outcome.
SCRIPTED_AGENT = """\
n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}
cp "$CLAW_PROMPT_FILE" {prompts}/prompt-$n.md
case $n in
  1) echo crash > mode.txt; echo "make it crash" > "$CLAW_SUMMARY_FILE" ;;
  2) echo hang > mode.txt; echo "make it hang" > "$CLAW_SUMMARY_FILE" ;;
  3) echo silent > mode.txt; echo "print no metric" > "$CLAW_SUMMARY_FILE" ;;
  4) echo word > mode.txt; echo "print a word as the metric" > "$CLAW_SUMMARY_FILE" ;;
  5) echo better > mode.txt; echo oops >> README.md; echo "edit out of scope" > "$CLAW_SUMMARY_FILE" ;;
  6) echo better > mode.txt; echo "a real improvement" > "$CLAW_SUMMARY_FILE" ;;
  7) echo "change nothing" > "$CLAW_SUMMARY_FILE" ;;
  8) echo worse > mode.txt; echo "a worse idea" > "$CLAW_SUMMARY_FILE" ;;
esac
"""

MODES = """\
import os, subprocess, sys, time
mode = open("mode.txt").read().strip() if os.path.exists("mode.txt") else "base"
if mode == "crash":
    sys.exit("Traceback: boom in the experiment")
if mode == "hang":
    subprocess.Popen(["sleep", "97.25"])   # a child in the same process group
    time.sleep(60)
if mode == "silent":
    print("all done, nothing to report")
elif mode == "word":
    print("score=lots")
else:
    print("score=" + {"base": "10", "better": "4", "worse": "12"}[mode])
"""


def test_every_outcome_is_recorded_crash_timeout_bad_metric_scope_and_no_change(research_repo, tmp_path):
    (research_repo / "objective.py").write_text(MODES)
    git.commit_all(research_repo, "modes")
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    script = agent_script(research_repo, "scripted", SCRIPTED_AGENT.format(counter=tmp_path / "n", prompts=prompts))
    configure(research_repo, budget=1.5, agent="scripted",
              extra=f'[agents.scripted]\nkind = "command"\ncommand = ["{script}"]\n')
    (research_repo / ".claw/config.toml").write_text(
        (research_repo / ".claw/config.toml").read_text().replace('scope = ["params.json"]',
                                                                 'scope = ["params.json", "mode.txt"]'))
    result = claw(research_repo, "research", "run", "--max-experiments", "8", timeout=120)
    assert result.returncode == 0, result.stderr

    rows = results(research_repo)
    outcome = [(row["status"], row["description"]) for row in rows]
    assert outcome == [("baseline", "baseline: the best commit, unchanged"),
                       ("crash", "make it crash"), ("timeout", "make it hang"), ("crash", "print no metric"),
                       ("crash", "print a word as the metric"), ("discard", "edit out of scope"),
                       ("keep", "a real improvement"), ("discard", "change nothing"),
                       ("discard", "a worse idea")]
    reasons = [row["reason"] for row in rows]
    assert "exited with status 1" in reasons[1]
    assert "time budget of 1.5 s" in reasons[2] and float(rows[2]["seconds"]) < 5
    assert "no match for metric_regex" in reasons[3]
    assert "'lots', which is not a number" in reasons[4]
    assert "outside scope" in reasons[5] and "README.md" in reasons[5]
    assert reasons[7] == "the agent changed nothing"
    assert "12 is not better than the best 4" in reasons[8]

    # The timed-out experiment's whole process group was killed, its child included.
    assert subprocess.run(["pgrep", "-f", "sleep 97.25"], capture_output=True).returncode == 1

    # A crash keeps the tail of its log in the store.
    status = json.loads(claw(research_repo, "research", "status", "--json").stdout)
    assert status["counts"] == {"baseline": 1, "crash": 3, "timeout": 1, "discard": 3, "keep": 1}
    from clawfleet.project import Project
    crashed = [e for e in Project(research_repo).store.experiments() if e.status == "crash"]
    assert "boom in the experiment" in crashed[0].log_tail

    # Only the improvement reached the branch; main and the person's checkout are untouched.
    tip = git.branch_tip(research_repo, "claw/research/default")
    assert git.out("show", f"{tip}:mode.txt", cwd=research_repo) == "better"
    assert "oops" not in git.out("show", f"{tip}:README.md", cwd=research_repo)
    assert not (research_repo / "mode.txt").exists()

    # Each prompt lists the earlier outcomes, so a failed idea is not retried blindly.
    last_prompt = (prompts / "prompt-8.md").read_text()
    assert "# Lower the score" in last_prompt and "edit out of scope" in last_prompt
    assert "outside scope" in last_prompt and "| timeout |" in last_prompt and "best so far: 4" in last_prompt


def test_a_time_budget_the_unchanged_code_cannot_meet_is_an_error(research_repo):
    (research_repo / "objective.py").write_text("import time\ntime.sleep(30)\nprint('score=1')\n")
    git.commit_all(research_repo, "slow")
    configure(research_repo, budget=0.5)
    result = claw(research_repo, "research", "run", "--max-experiments", "1", timeout=60)
    assert result.returncode == 1
    assert "time budget too small" in result.stderr and "time_budget" in result.stderr
    assert results(research_repo)[0]["status"] == "timeout"
    status = json.loads(claw(research_repo, "research", "status", "--json").stdout)
    assert status["run"]["state"] == "failed"


def test_a_baseline_without_a_metric_is_an_error_with_the_log(research_repo):
    (research_repo / "objective.py").write_text("print('loss: 3.2')\n")
    git.commit_all(research_repo, "other format")
    configure(research_repo)
    result = claw(research_repo, "research", "run", "--max-experiments", "1")
    assert result.returncode == 1
    assert "fails on the unchanged code" in result.stderr and "no match for metric_regex" in result.stderr
    assert "loss: 3.2" in result.stderr and "Traceback" not in result.stderr


def test_a_dirty_research_branch_is_refused(research_repo, tmp_path):
    configure(research_repo)
    git.git("branch", "claw/research/default", cwd=research_repo)
    checkout = tmp_path / "checkout"
    git.git("worktree", "add", str(checkout), "claw/research/default", cwd=research_repo)
    (checkout / "params.json").write_text('{"x": 1}\n')
    result = claw(research_repo, "research", "run", "--max-experiments", "1")
    assert result.returncode == 1
    assert "uncommitted changes" in result.stderr and str(checkout) in result.stderr
    assert (checkout / "params.json").read_text() == '{"x": 1}\n'   # the person's change is kept


def test_no_research_section_and_bad_options_are_clear_errors(research_repo):
    result = claw(research_repo, "research", "run")
    assert result.returncode == 1 and "research init" in result.stderr
    configure(research_repo)
    result = claw(research_repo, "research", "run", "--max-experiments", "0")
    assert result.returncode == 1 and "--max-experiments" in result.stderr
    result = claw(research_repo, "research", "run", "--agent", "nobody")
    assert result.returncode == 1 and "unknown agent 'nobody'" in result.stderr
    write_config(research_repo, CONFIG.format(budget=0, agent="hillclimb", extra=""))
    result = claw(research_repo, "research", "status")
    assert result.returncode == 1 and "time_budget" in result.stderr


def test_init_writes_program_and_config_once(research_repo):
    (research_repo / "exp").mkdir()
    result = claw(research_repo, "research", "init", "exp", "--command", "python3 run.py",
                  "--metric-key", "val.loss", "--time-budget", "60")
    assert result.returncode == 0, result.stderr
    program = (research_repo / "exp/program.md").read_text()
    assert "python3 run.py" in program and "`exp/**`" in program
    from clawfleet.project import Project
    config = Project(research_repo).config.research
    assert (config.workdir, config.metric_key, config.time_budget, config.scope) == ("exp", "val.loss", 60, ["exp/**"])
    again = claw(research_repo, "research", "init", "exp", "--metric-key", "loss")
    assert again.returncode == 1 and "already has a [research] section" in again.stderr

    other = research_repo.parent / "other"
    git.init_repo(other, {"a.txt": "a\n"})
    for args, message in ((["--metric-regex", "("], "regular expression"),
                          (["--metric-regex", "x", "--metric-key", "y"], "one of them"),
                          (["--metric-key", "y", "--time-budget", "0"], "more than 0")):
        bad = claw(other, "research", "init", *args)
        assert bad.returncode == 1 and message in bad.stderr, bad.stderr
    assert not (other / ".claw").exists()   # nothing written on bad input


def test_metric_reading():
    by_regex = ResearchConfig(command="x", scope=["*"], metric_regex=r"val_loss[:=]\s*(\S+)")
    assert read_metric("val_loss=3.5\nval_loss: 2.25\n", by_regex) == 2.25
    whole = ResearchConfig(command="x", scope=["*"], metric_regex=r"-?\d+\.\d+$")
    assert read_metric("acc 0.75", whole) == 0.75
    by_key = ResearchConfig(command="x", scope=["*"], metric_key="val.loss", goal="maximize")
    assert read_metric('{"val": {"loss": 1.5}}\nnoise\n{"other": 1}\n', by_key) == 1.5
    for output, config, message in (("nothing", by_regex, "no match"), ("val_loss=nan", by_regex, "not a number"),
                                    ("val_loss=1e999", by_regex, "not finite"),
                                    ('{"val": {"loss": "fast"}}', by_key, "not a number"),
                                    ('{"val": {"loss": null}}', by_key, "not a number"),
                                    ('{"val": 2}', by_key, "no JSON line")):
        with pytest.raises(MetricError, match=message):
            read_metric(output, config)
    with pytest.raises(ValueError, match="exactly one"):
        ResearchConfig(command="x", scope=["*"])


def test_hillclimb_edits_json_and_toml_within_range(tmp_path):
    (tmp_path / "p.json").write_text('{"opt": {"lr": 0.01}, "layers": 2}\n')
    (tmp_path / "p.toml").write_text('# tuned\nwidth = 64  # units\n[model]\ndropout = 0.1\n')
    params = [Param("lr", "p.json", "opt.lr", 1e-4, 1.0, log=True), Param("layers", "p.json", "layers", 1, 6, integer=True),
              Param("width", "p.toml", "width", 8, 256, integer=True), Param("dropout", "p.toml", "model.dropout", 0, 0.5)]
    search = ParamSearch(params, seed=3)
    current = read_params(tmp_path, params)
    assert current == {"lr": 0.01, "layers": 2, "width": 64, "dropout": 0.1}
    seen = set()
    for _ in range(40):
        values, description = search.propose(current)
        assert "->" in description
        for param in params:
            assert param.min <= values[param.name] <= param.max
        assert isinstance(values["layers"], int) and isinstance(values["width"], int)
        seen.add(tuple(sorted(values.items())))
    assert len(seen) == 40   # never the same proposal twice
    write_params(tmp_path, params, {"lr": 0.02, "layers": 3, "width": 80, "dropout": 0.25})
    assert read_params(tmp_path, params) == {"lr": 0.02, "layers": 3, "width": 80, "dropout": 0.25}
    assert (tmp_path / "p.toml").read_text() == "# tuned\nwidth = 80  # units\n[model]\ndropout = 0.25\n"
    with pytest.raises(ClawError, match="no key `nope`"):
        read_params(tmp_path, [Param("nope", "p.json", "nope", 0, 1)])
    with pytest.raises(ClawError, match="no parameters"):
        ParamSearch([])


def test_keeping_needs_the_declared_margin():
    from clawfleet.research import is_better
    assert is_better(9.0, 10.0, "minimize") and not is_better(9.5, 10.0, "minimize", margin=0.5)
    assert is_better(10.6, 10.0, "maximize", margin=0.5) and not is_better(10.0, 10.0, "maximize")


def test_ctrl_c_stops_the_loop_and_records_the_experiments_under_way(research_repo):
    import signal
    import sys
    import time
    (research_repo / "objective.py").write_text(
        "import json, time\nx = json.load(open('params.json'))['x']\n"
        "time.sleep(0 if x == -2.0 else 30)\nprint(f'score={x * x}')\n")
    git.commit_all(research_repo, "slow experiments")
    configure(research_repo, budget=60)
    proc = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "research", "run", "--parallel", "2"],
                            cwd=research_repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    from clawfleet.project import Project
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        experiments = Project(research_repo).store.experiments()
        if sum(e.status == "running" and e.round == 1 for e in experiments) == 2 and \
                len(list((research_repo / ".claw/run/research/default/experiments").glob("*/run.log"))) == 3:
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the first round never started")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped after" in out
    rows = results(research_repo)
    assert [row["status"] for row in rows] == ["baseline", "discard", "discard"]
    assert all(row["reason"] == "stopped before it finished" for row in rows[1:])
    status = json.loads(claw(research_repo, "research", "status", "--json").stdout)
    assert status["run"]["state"] == "stopped" and status["running"] == []
    assert not git.worktrees(research_repo)[1:]


def test_an_agent_that_fails_every_round_stops_the_run(research_repo):
    script = agent_script(research_repo, "broken", "echo 'no model configured' >&2\nexit 3\n")
    configure(research_repo, agent="broken", extra=f'[agents.broken]\nkind = "command"\ncommand = ["{script}"]\n')
    result = claw(research_repo, "research", "run")
    assert result.returncode == 1
    assert "failed in every experiment of 3 rounds in a row" in result.stderr
    rows = results(research_repo)
    assert [row["status"] for row in rows] == ["baseline", "crash", "crash", "crash"]
    assert "exited with status 3" in rows[1]["reason"]
    text = claw(research_repo, "research", "status").stdout
    assert "failed" in text and "3 crash" in text


def test_a_model_agent_gets_the_program_and_its_change_is_kept(research_repo):
    """The built-in agent on the scripted model (real HTTP) as the research agent."""
    from clawfleet.llm.scripted import Script, ScriptedServer
    from clawfleet.project import Project
    from clawfleet.research import ResearchLoop

    script = Script.from_rules([{"match": "Lower the score", "steps": [
        {"command": "python3 -c \"import json; json.dump({'x': 3.0}, open('params.json', 'w'))\""},
        {"done": "set x to 3, where the parabola has its minimum"},
    ]}])
    with ScriptedServer(script) as server:
        configure(research_repo, agent="builtin",
                  extra=f'[agents.builtin]\nkind = "builtin"\nprovider = "openai"\nmodel = "scripted"\n'
                        f'base_url = "{server.openai_base_url}"\n')
        run = ResearchLoop(Project(research_repo), max_experiments=1).run()
        first_prompt = server.requests[0]["body"]["messages"][-1]["content"]
    assert run.state == "finished" and run.best_metric < 1 < run.baseline_metric
    kept = Project(research_repo).store.experiments(run_id=run.id)[-1]
    assert kept.status == "keep" and kept.description == "set x to 3, where the parabola has its minimum"
    assert "# Lower the score" in first_prompt and "`params.json`" in first_prompt
    assert "| baseline |" in first_prompt     # the baseline's outcome is already in the table

    # The outcome went into the claw's memory, and the next run's prompt recalls it.
    [note] = Project(research_repo).store.notes()
    assert note.source == "research" and note.tags == ["research", "default", "keep"]
    assert note.body.startswith(f"Research default, experiment {kept.id} (round 1): keep, metric ")
    assert "Hypothesis: set x to 3, where the parabola has its minimum" in note.body
    with ScriptedServer(script) as server:
        configure(research_repo, agent="builtin",
                  extra=f'[agents.builtin]\nkind = "builtin"\nprovider = "openai"\nmodel = "scripted"\n'
                        f'base_url = "{server.openai_base_url}"\n')
        ResearchLoop(Project(research_repo), max_experiments=1).run()
        prompt = server.requests[0]["body"]["messages"][-1]["content"]
    assert "## What you remember about this" in prompt and f"experiment {kept.id} (round 1): keep" in prompt


def test_with_the_gateway_each_experiments_calls_are_metered_against_it(research_repo):
    """Two experiments side by side, each with its own gateway key: every call is counted
    against the experiment that made it, with its cost and transcript."""
    from clawfleet.llm.scripted import Script, ScriptedServer
    from clawfleet.project import Project
    from clawfleet.research import ResearchLoop

    script = Script.from_rules([{"match": "Lower the score", "steps": [
        {"command": "python3 -c \"import json; json.dump({'x': 3.0}, open('params.json', 'w'))\""},
        {"done": "set x to 3"},
    ]}])
    with ScriptedServer(script) as server:
        configure(research_repo, agent="builtin", extra=f"""
[agents.builtin]
kind = "builtin"
provider = "openai"
model = "scripted-model"
[gateway]
enabled = true
[gateway.upstreams.scripted]
base_url = "{server.url}/v1"
apis = ["chat"]
[gateway.prices.scripted-model]
input = 1.0
output = 4.0
""")
        run = ResearchLoop(Project(research_repo), max_experiments=2, parallel=2).run()
        requests = len(server.requests)
    assert run.state == "finished" and requests == 4
    store = Project(research_repo).store
    experiments = [e for e in store.experiments(run_id=run.id) if e.round > 0]
    assert len(experiments) == 2
    for experiment in experiments:
        calls = store.llm_calls(experiment_id=experiment.id)
        assert len(calls) == 2 and all(c.status == "ok" and c.cost > 0 and c.attempt_id is None for c in calls)
        transcript = research_repo / ".claw/run/research/default/experiments" / str(experiment.id) / "transcript.jsonl"
        assert len(transcript.read_text().splitlines()) == 2
    tokens, dollars = store.research_spend(run.id)
    assert tokens == sum(c.tokens for c in store.llm_calls()) and dollars > 0
    status = json.loads(claw(research_repo, "research", "status", "--json").stdout)["run"]
    assert (status["metered_tokens"], round(status["cost"], 9)) == (tokens, round(dollars, 9))
    stats = json.loads(claw(research_repo, "stats", "--json").stdout)
    assert stats["research"]["calls"] == 4 and stats["research"]["tokens"] == tokens


def test_a_daemon_schedule_starts_a_research_run_at_its_time(research_repo):
    """"Every night at 1: research" — a [[schedule]] with `research` starts `claw research run`."""
    import time as _time
    from datetime import datetime

    from clawfleet.project import Project
    from clawfleet.research import launch
    from clawfleet.schedules import Schedules

    configure(research_repo, extra='\n[[schedule]]\nname = "nightly"\ncron = "0 1 * * *"\n'
                                   'research = { max_experiments = 2, parallel = 1 }\n')
    project = Project(research_repo)
    [nightly] = project.config.schedule
    now = [datetime(2026, 11, 24, 0, 59).timestamp()]
    schedules = Schedules(project.store, [nightly], clock=lambda: now[0],
                          start_research=lambda schedule: launch(project, schedule.name, schedule.research))
    schedules.fire_due()                      # 00:59: armed
    now[0] += 60                              # 01:00: due
    schedules.fire_due()
    started = [e for e in project.store.events() if e["kind"] == "schedule.research_started"]
    assert len(started) == 1 and started[0]["data"]["how"].startswith("started (pid ")
    log = research_repo / ".claw/run/research/scheduled-nightly.log"
    deadline = _time.monotonic() + 120
    while _time.monotonic() < deadline and not (research_repo / ".claw/run/research/default/results.tsv").exists():
        _time.sleep(0.2)
    pid = int((research_repo / ".claw/run/research/scheduled-nightly.pid").read_text())
    while _time.monotonic() < deadline and os.path.exists(f"/proc/{pid}") and \
            open(f"/proc/{pid}/stat").read().split()[2] != "Z":
        _time.sleep(0.2)
    rows = results(research_repo)
    assert [r["status"] for r in rows][0] == "baseline" and len(rows) == 3, log.read_text()[-2000:]
    schedules.fire_due()                      # same due time: not again
    assert len([e for e in project.store.events() if e["kind"] == "schedule.research_started"]) == 1


def test_a_schedule_needs_a_task_or_a_research_run(repo):
    write_config(repo, '[[schedule]]\nname = "x"\ncron = "0 1 * * *"\n')
    result = claw(repo, "status")
    assert result.returncode == 1
    assert "schedule 'x' needs exactly one of `task` (a task to queue) and `research`" in result.stderr
