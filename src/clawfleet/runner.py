"""The attempt runner: `python -m clawfleet.runner ATTEMPT_DIR`.

Started by the executor as the leader of its own process group, it runs one attempt from start
to end without the orchestrator: the agent, the commit, the checks and the fix rounds. It writes
everything to its attempt folder, `status.json` last, so an orchestrator that died and came back
can collect the result, or see the runner still alive and wait for it.

Files in the attempt folder:
    spec.json       what to do (written by the executor)
    runner.pid      this process
    agent.log       the agent's output          checks/        one log per check run
    prompt-N.md     the prompt of round N       progress.json  phase and tokens, while running
    children        process groups to kill      status.json    the outcome, written last
    outbox/         notes the agent leaves ($CLAW_OUTBOX), imported by the orchestrator
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import git, private, redact, skills
from .agents import AgentJob, make_agent
from .checks import CheckResult, all_passed, describe_failure, run_checks
from .containment import contain, workspace_reach
from .errors import ClawError
from .memory import OUTBOX_DIR, OUTBOX_ENV
from .models import AttemptState, Importance, Task
from .procs import ChildGroups, become_subreaper, kill_descendants
from .prompt import render_next_turn, render_prompt
from .sandbox import SandboxPolicy


@dataclass
class AttemptSpec:
    attempt_id: int
    attempt_number: int
    task: dict[str, Any]
    project_root: str
    worktree: str
    branch: str
    base_commit: str
    agent_name: str
    agent: dict[str, Any]
    checks: list[str]
    check_timeout: float
    fix_rounds: int
    deadline: float
    feedback: str | None = None
    gateway_url: str | None = None     # this attempt's base URL on the metering gateway
    gateway_key: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # the workspace's: ports, caches, [workspace] env
    setup: dict[str, Any] | None = None                # a workspace.SetupPlan owed before the agent
    sandbox: dict[str, Any] | None = None   # the built-in agent's SandboxPolicy; None: unsandboxed
    stall_timeout: float = 0.0              # [fleet] stall_timeout; 0: no stall guard
    # What the redactor and the secret scan must know: {"env": [variable names], "files":
    # [the included files in the person's checkout]}; names and paths, never values.
    secrets: dict[str, list[str]] | None = None
    # A send-back that continues an earlier attempt: where this one starts (orchestrator
    # `_continue`: number, branch, target, replayed, rebased, conflicts, diff) and, when the
    # agent's session can go on, which one ({"attempt_dir", "session"}).
    continued: dict[str, Any] | None = None
    resume: dict[str, Any] | None = None

    def save(self, attempt_dir: Path) -> None:
        write_json(attempt_dir / "spec.json", asdict(self))

    @classmethod
    def load(cls, attempt_dir: Path) -> "AttemptSpec":
        return cls(**json.loads((attempt_dir / "spec.json").read_text()))


@dataclass
class AttemptStatus:
    outcome: AttemptState
    reason: str | None = None
    summary: str = ""
    head_commit: str | None = None
    exit_code: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    fix_rounds: int = 0
    checks: list[dict[str, Any]] = field(default_factory=list)
    finished_at: float = 0.0
    redacted: bool = False      # the runner redacted its attempt folder before writing this
    session: str | None = None     # the agent's own session at the end (see agents/__init__.py)

    @property
    def checks_passed(self) -> bool | None:
        return all(c["passed"] for c in self.checks) if self.checks else None

    @classmethod
    def read(cls, attempt_dir: Path) -> "AttemptStatus | None":
        try:
            data = json.loads((attempt_dir / "status.json").read_text())
        except (OSError, ValueError):
            return None
        data["outcome"] = AttemptState(data["outcome"])
        return cls(**data)


# Where each agent kind is pointed on the gateway: Anthropic and Gemini clients add their own
# API version to the base URL, OpenAI ones expect it in there.
_GATEWAY_SUFFIX = {"claude": "", "gemini": "", "codex": "/v1", "opencode": "/v1", "aider": "/v1"}
_ACP_GATEWAY_SUFFIX = {"gemini": "", "anthropic": "", "openai": "/v1"}   # an ACP agent's, by its provider


def through_gateway(spec: AttemptSpec) -> dict[str, Any]:
    """The attempt's agent config, pointed at the gateway when the attempt has one."""
    return point_at_gateway(spec.agent, spec.gateway_url, spec.gateway_key)


def point_at_gateway(agent: dict[str, Any], gateway_url: str | None, gateway_key: str | None) -> dict[str, Any]:
    """An agent config pointed at the gateway (this process's environment gets its key).

    Every agent gets CLAW_GATEWAY_URL and CLAW_GATEWAY_KEY in its environment (a `command` agent
    uses them as it likes); the built-in agent and the agent CLIs are pointed there through their
    own base-URL and key settings. Their real upstream and key are then the gateway's business.
    """
    if not gateway_url:
        return agent
    os.environ["CLAW_GATEWAY_URL"] = gateway_url
    os.environ["CLAW_GATEWAY_KEY"] = gateway_key or ""
    kind = agent.get("kind", "builtin")
    if kind == "builtin":
        suffix = "" if agent.get("provider") == "anthropic" else "/v1"
    elif kind in _GATEWAY_SUFFIX:
        suffix = _GATEWAY_SUFFIX[kind]
    elif kind == "acp" and agent.get("provider") in _ACP_GATEWAY_SUFFIX:
        suffix = _ACP_GATEWAY_SUFFIX[agent["provider"]]
    else:
        return agent
    return {**agent, "base_url": gateway_url + suffix, "api_key_env": "CLAW_GATEWAY_KEY"}


def read_progress(attempt_dir: Path) -> dict[str, Any]:
    """What a running attempt is doing ({} before the runner wrote anything)."""
    try:
        return json.loads((attempt_dir / "progress.json").read_text())
    except (OSError, ValueError):
        return {}


class Stopped(Exception):
    """SIGTERM: the orchestrator cancels this attempt or its time is up."""


def write_json(path: Path, data: Any) -> None:
    """Write JSON whole or not at all (a reader never sees half a file), private to the user."""
    tmp = path.with_name(path.name + ".tmp")
    private.write_text(tmp, json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def _task_from(data: dict[str, Any]) -> Task:
    return Task(**{**data, "importance": Importance(data["importance"])})


# What an agent may report as its session: an id or a file name of its own, nothing that walks
# folders (it is written by the agent, and comes back as a path part and a command argument).
_SESSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def valid_session(session: Any) -> str | None:
    return session if isinstance(session, str) and _SESSION.fullmatch(session) and ".." not in session else None


class Runner:
    def __init__(self, attempt_dir: Path) -> None:
        self.dir = attempt_dir
        self.spec = AttemptSpec.load(attempt_dir)
        self.children = ChildGroups(attempt_dir / "children")
        self.worktree = Path(self.spec.worktree)
        self.root = Path(self.spec.project_root)
        # Learned before the agent starts, from this process's environment and the person's
        # files: whatever the agent's own environment is made to lack.
        secrets = self.spec.secrets or {}
        redact.learn_env(secrets.get("env", []))
        self.included = [Path(p) for p in secrets.get("files", [])]
        redact.learn_files(self.included, Path(self.spec.project_root))
        if self.spec.gateway_key:
            redact.learn([redact.Secret(self.spec.gateway_key, "this attempt's gateway key")])
        self.redact = redact.current()
        self.input_tokens = 0
        self.output_tokens = 0
        self.agent: Any = None
        self.session: str | None = None
        self.phase: tuple[str, int] = ("agent", 0)
        self.sandbox = SandboxPolicy.from_dict(self.spec.sandbox)
        self.common_dir = git.common_dir(Path(self.spec.project_root))

    def contained(self, args: list[str], env: dict[str, str], *, network: bool | None = None,
                  writable: tuple[Path, ...] = ()):
        """A check or a setup command in the attempt's sandbox: the worktree, the workspace's
        caches (writable) and shared venv (read-only), no credential, the network per
        `[sandbox] network` unless the caller says."""
        reach = workspace_reach(self.worktree, self.root, self.common_dir, self.spec.env,
                                private=list(writable), network=network,
                                git_dir=self.agent_git_dir(refresh=False))
        return contain(self.sandbox, args, env, reach)

    def agent_git_dir(self, refresh: bool = True) -> Path | None:
        """The agent's own git dir for this round (sandboxed runs only)."""
        if self.sandbox is None:
            return None
        folder = self.dir / "git"
        if refresh or not folder.is_dir():
            git.refresh_agent_git_dir(self.worktree, git.admin_dir(self.worktree), self.common_dir,
                                      folder, self.spec.branch)
        return folder

    def progress(self, phase: str, **extra: Any) -> None:
        write_json(self.dir / "progress.json",
                    {"phase": phase, "input_tokens": self.input_tokens,
                     "output_tokens": self.output_tokens, "at": time.time(),
                     **({"session": self.session} if self.session else {}), **extra})

    def on_session(self, session: str) -> None:
        """The agent said which session it runs (live, so a restart knows it too)."""
        session = valid_session(session)
        if session and session != self.session:
            self.session = session
            self.progress(self.phase[0], round=self.phase[1])

    def run(self) -> AttemptStatus:
        spec = self.spec
        os.environ.update(spec.env)  # agents and checks inherit the workspace's variables
        if spec.setup:
            failure = self.set_up()
            if failure:
                return failure
        task = _task_from(spec.task)
        # Every agent (and the `claw memory add` it runs) knows which attempt it is, and leaves
        # its notes in the outbox, which the orchestrator imports: agents never write the store.
        os.environ["CLAW_TASK_ID"] = str(task.id)
        os.environ["CLAW_ATTEMPT_ID"] = str(spec.attempt_id)
        outbox = self.dir / OUTBOX_DIR
        outbox.mkdir(exist_ok=True)
        os.environ[OUTBOX_ENV] = str(outbox)
        agent_kind = spec.agent.get("kind", "builtin")
        try:
            skills.install(Path(spec.project_root), self.worktree, agent_kind)
        except (ClawError, OSError) as error:  # a skill is a help, never a reason to fail
            with open(self.dir / "agent.log", "a") as log:
                log.write(f"# skills not copied into the worktree: {error}\n")
        agent = self.agent = make_agent(spec.agent_name, through_gateway(spec))
        resumes = bool(getattr(agent, "resumes", False))
        # A send-back continuing an earlier attempt: its session, copied into this attempt.
        session = self.adopt(agent) if spec.resume and resumes else None
        failure, checks = None, []
        for round_number in range(spec.fix_rounds + 1):
            resume = session if resumes else None
            full = lambda: render_prompt(  # noqa: E731  the whole prompt: a new session's first turn
                task, project_root=Path(spec.project_root), branch=spec.branch, checks=spec.checks,
                feedback=spec.feedback, failure=failure, fix_round=round_number, agent_kind=agent_kind,
                previous=spec.continued)
            prompt_file = self.dir / f"prompt-{round_number}.md"
            if resume:   # the next turn of its own conversation, which has the task already
                prompt = render_next_turn(workspace=self.worktree, branch=spec.branch, checks=spec.checks,
                                          failure=failure, fix_round=round_number,
                                          feedback=spec.feedback, previous=spec.continued)
            elif round_number == 0 and prompt_file.exists():
                prompt = prompt_file.read_text()  # the orchestrator rendered the first one
            else:
                prompt = full()
            prompt_file.write_text(self.redact.text(prompt))  # it may quote the checks' output
            outcome = self.run_round(agent, task, round_number, prompt, prompt_file, resume)
            if resume and outcome.error and not outcome.session_id and not (outcome.timed_out or outcome.stalled):
                # It did not take up its session (gone, unreadable): the whole prompt, anew.
                with open(self.dir / "agent.log", "a") as log:
                    log.write(f"[could not continue session {resume}: {outcome.error.splitlines()[0][:300]}; "
                              "a new session with the whole prompt]\n")
                prompt = full()
                prompt_file.write_text(self.redact.text(prompt))  # it may quote the checks' output
                outcome = self.run_round(agent, task, round_number, prompt, prompt_file, None)
            session = valid_session(outcome.session_id) or session
            if session and session != self.session:
                self.session = session
            # Whatever the agent left is committed, even after an error: nothing is lost.
            message = f"{task.title}\n\nclawfleet task {task.id}, attempt {spec.attempt_number}"
            if round_number:
                message += f", fix round {round_number}"
            if outcome.summary:
                message += f"\n\n{outcome.summary}"
            # On the attempt's branch, whatever HEAD the agent left; its repository is the
            # person's, never what the worktree's .git says (a forged one raises).
            head = git.commit_all(self.worktree, self.redact.text(message[:20_000]), exclude=agent.scratch,
                                  branch=spec.branch, repo=self.root)
            tip = head or git.branch_tip(self.root, spec.branch)
            status = dict(summary=self.redact.text(outcome.summary), fix_rounds=round_number, head_commit=tip)
            leaked = self.secrets_in_diff(tip)
            if leaked:  # a key, a copy of .env, a credential: it must not land
                return self._status(AttemptState.failed, leaked, checks=checks, **status)
            if outcome.stalled:
                return self._status(AttemptState.stalled, outcome.error, exit_code=outcome.exit_code,
                                    checks=checks, **status)
            if outcome.timed_out:
                return self._status(AttemptState.timed_out, outcome.error, exit_code=outcome.exit_code,
                                    checks=checks, **status)
            if outcome.error:
                return self._status(AttemptState.failed, outcome.error, exit_code=outcome.exit_code,
                                    checks=checks, **status)
            if head is None and not git.commits_between(self.root, spec.base_commit, tip):
                return self._status(AttemptState.no_change, "the agent ended without changing anything",
                                    **status)
            if not spec.checks:
                return self._status(AttemptState.ready, None, **status)
            self.progress("checks", round=round_number)
            checks = run_checks(spec.checks, cwd=self.worktree, log_dir=self.dir / "checks",
                                timeout=min(spec.check_timeout, max(spec.deadline - time.time(), 1)),
                                children=self.children, label=f"round{round_number}",
                                contained=self.contained)
            if all_passed(checks):
                return self._status(AttemptState.ready, None, checks=checks, **status)
            failure = describe_failure(checks)
        return self._status(AttemptState.checks_failed,
                            f"checks failed after {spec.fix_rounds} fix round(s): "
                            f"{failure.splitlines()[0]}", checks=checks, **status)

    def secrets_in_diff(self, head: str | None) -> str | None:
        """Why the attempt's commits must not land, when they hold a secret (see secretscan.py)."""
        from . import secretscan  # detect-secrets is imported only by runners that have commits

        base = self.spec.base_commit
        if not head or head == base:
            return None
        # .env itself, by its own name, even when the person changed it since it was copied
        kept_out = git.committed_kept_out(self.worktree, base, head, repo=self.root)
        findings = secretscan.scan(self.root, base, head, self.redact,
                                   included=self.included)
        findings += [secretscan.Finding(path, 0, head, "copied from your checkout by [workspace] include")
                     for path in kept_out if path not in {f.path for f in findings}]
        return secretscan.describe(findings) if findings else None

    def run_round(self, agent: Any, task: Task, round_number: int, prompt: str, prompt_file: Path,
                  resume: str | None) -> Any:
        """One run of the agent; its tokens added to the attempt's."""
        spec = self.spec
        phase = "agent" if round_number == 0 else "fixing"
        self.phase = (phase, round_number)
        self.progress(phase, round=round_number)
        base_tokens = (self.input_tokens, self.output_tokens)

        def on_usage(i: int, o: int, base=base_tokens, phase=phase, number=round_number) -> None:
            self.input_tokens, self.output_tokens = base[0] + i, base[1] + o
            self.progress(phase, round=number)

        outcome = agent.run(AgentJob(
            task_id=task.id, attempt_id=spec.attempt_id, agent_name=spec.agent_name,
            workspace=self.worktree, attempt_dir=self.dir, prompt=prompt,
            prompt_file=prompt_file, log=self.dir / "agent.log", deadline=spec.deadline,
            children=self.children, round=round_number, on_usage=on_usage,
            project_root=Path(spec.project_root), sandbox=self.sandbox,
            common_dir=self.common_dir, git_dir=self.agent_git_dir(),
            stall_timeout=spec.stall_timeout, resume=resume, on_session=self.on_session))
        self.input_tokens = base_tokens[0] + outcome.input_tokens
        self.output_tokens = base_tokens[1] + outcome.output_tokens
        return outcome

    def adopt(self, agent: Any) -> str | None:
        """The earlier attempt's session, copied into this attempt's folder (None: it starts a new
        one, with the whole prompt)."""
        earlier, session = Path(self.spec.resume["attempt_dir"]), valid_session(self.spec.resume.get("session"))
        adopt = getattr(agent, "adopt_session", None)
        adopted = None
        if session and adopt is not None:
            job = AgentJob(task_id=self.spec.task["id"], attempt_id=self.spec.attempt_id,
                           agent_name=self.spec.agent_name, workspace=self.worktree, attempt_dir=self.dir,
                           prompt="", prompt_file=self.dir / "prompt-0.md", log=self.dir / "agent.log",
                           deadline=self.spec.deadline, children=self.children)
            adopted = valid_session(adopt(earlier, session, job))
        with open(self.dir / "agent.log", "a") as log:
            log.write(f"[continues session {adopted} of attempt {self.spec.continued['number']}]\n" if adopted else
                      f"[session {session} of attempt {self.spec.continued['number']} could not be carried over: "
                      "a new session with the whole prompt]\n")
        return adopted

    def save_work(self, why: str) -> str | None:
        """Commit what the agent left in the worktree, its children stopped first; the new head."""
        self.children.kill_all()
        task = self.spec.task
        try:
            git.commit_all(self.worktree, f"{task['title']}\n\nclawfleet task {task['id']}, attempt "
                                          f"{self.spec.attempt_number}: work in progress, {why}",
                           exclude=self.agent.scratch if self.agent else (), branch=self.spec.branch,
                           repo=self.root)
            return git.branch_tip(self.root, self.spec.branch)
        except ClawError:
            return None

    def set_up(self) -> AttemptStatus | None:
        """Run the setup the workspace owes. A failure ends the attempt here, with the command's
        reason, before the agent starts: no model call, no budget spent."""
        from .workspace import (  # only attempts that owe a setup pay the import
            SetupPlan,
            run_setup,
        )

        self.progress("setup")
        plan = SetupPlan(**self.spec.setup)
        result = run_setup(plan, self.worktree, self.spec.env, self.children, self.dir / "setup.log",
                           deadline=self.spec.deadline,
                           contained=functools.partial(self.contained, network=plan.network))
        if result.ok:
            return None
        return self._status(AttemptState.failed,
                            f"workspace setup failed: {result.error} (log: {result.log}; "
                            "`claw workspace doctor` shows it)", exit_code=1,
                            head_commit=git.branch_tip(self.root, self.spec.branch))

    def _status(self, outcome: AttemptState, reason: str | None, *, checks: list[CheckResult] = (),
                **fields: Any) -> AttemptStatus:
        return AttemptStatus(outcome=outcome, reason=reason, input_tokens=self.input_tokens,
                             output_tokens=self.output_tokens, session=self.session,
                             checks=[c.to_dict() for c in checks], finished_at=time.time(), **fields)


def _stop(_signum: int, _frame: Any) -> None:
    raise Stopped()


def main(argv: list[str]) -> int:
    attempt_dir = Path(argv[0])
    private.restrict_process()  # the runner's files, its agent's and its checks': 0600
    (attempt_dir / "runner.pid").write_text(str(os.getpid()))
    # Whatever the agent starts stays below the runner, a daemon that left its session too:
    # all of it is killed when the attempt ends (a timeout left one running, as an orphan).
    become_subreaper()
    signal.signal(signal.SIGTERM, _stop)
    runner = None
    try:
        runner = Runner(attempt_dir)
        status = runner.run()
    except Stopped:
        status = AttemptStatus(AttemptState.cancelled, "stopped by the orchestrator (cancel, timeout or budget)",
                               exit_code=143, finished_at=time.time(),
                               head_commit=runner.save_work("stopped") if runner else None)
    except ClawError as error:
        status = AttemptStatus(AttemptState.failed, str(error), exit_code=1, finished_at=time.time())
    except Exception:
        (attempt_dir / "runner.log").write_text(traceback.format_exc())
        status = AttemptStatus(AttemptState.crashed,
                               f"runner error (see {attempt_dir / 'runner.log'}): "
                               f"{traceback.format_exc().strip().splitlines()[-1]}",
                               exit_code=1, finished_at=time.time())
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if runner is not None:
            runner.children.kill_all()
        kill_descendants()
    if runner is not None:
        status.input_tokens = status.input_tokens or runner.input_tokens
        status.output_tokens = status.output_tokens or runner.output_tokens
        status.session = status.session or runner.session
    status.redacted = finalise_folder(attempt_dir)
    data = redact.current().data(asdict(status))
    data["outcome"] = str(status.outcome)
    write_json(attempt_dir / "status.json", data)
    return 0


def finalise_folder(attempt_dir: Path) -> bool:
    """Redact every file the attempt left in its folder (agent log, CLI transcripts, trajectories,
    summaries, check and setup logs); True when done.

    Agents and checks write their output straight to these files (a file descriptor, no copy
    through this process), which costs nothing while they run and keeps what they wrote when the
    runner dies; the files are private to the user meanwhile. Redacting once, at the end, with
    every child stopped, reads each byte once: a 10 MB log in 0.05-0.6 s (bench/redact.py).
    """
    try:
        redact.current().tree(attempt_dir, skip=("review",))
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
