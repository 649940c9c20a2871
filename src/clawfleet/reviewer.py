"""The AI reviewer: an agent of any kind reads the task and the change and returns a verdict.

Used by the review policy for attempts too risky to land unseen but not risky enough to need a
person (`ai_max_risk`); its comments go back to the agent (revise) or to the person (reject).

A review runs in a process of its own, `python -m clawfleet.reviewer REVIEW_DIR`, so the fleet
goes on starting and collecting attempts while a reviewer CLI works for minutes, and a review
outlives an orchestrator that dies. The built-in kind asks its model once; any other kind (Claude
Code, Codex, a `command`...) runs in a throwaway checkout of the change, where it may read files
and run the tests, and ends with the verdict as its final message. Files in REVIEW_DIR (the
attempt folder's `review/`):
    review.json     what to review (written by the orchestrator)    prompt-0.md   the prompt
    reviewer.pid    this process                                     agent.log     its output
    checkout/       the throwaway checkout, removed at the end       verdict.json  written last
    agent/          the reviewer agent's own folder: its summary, home and outbox (notes)
The agent is as untrusted as the one it reviews: it gets only `agent/` (and the checkout), never
the folder clawfleet's own files are in; this process parses its final message, and the
orchestrator validates verdict.json again before acting on it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import git, redact
from .errors import ClawError
from .sandbox import SandboxPolicy
from .models import Attempt, Task
from .procs import ChildGroups, cmdline, kill_group, pid_alive
from .risk import Risk
from .runner import point_at_gateway, write_json

DIFF_LIMIT = 30_000
VERDICTS = ("approve", "revise", "reject")
REVIEWER_MODULE = "clawfleet.reviewer"
AGENT_DIR = "agent"                 # in REVIEW_DIR: the reviewer agent's folder
VERDICT_MAX_BYTES = 256 * 1024
MAX_COMMENTS = 20
COMMENT_MAX_CHARS = 2000

REVIEW_PROMPT = """\
You review a change that a coding agent made for the task below, before it lands on the main
branch. Judge whether it does the task, correctly and safely, with tests. Reply with JSON only:
{{"verdict": "approve" | "revise" | "reject", "comments": ["short, concrete comments"]}}
"revise" sends your comments back to the agent for another attempt; "reject" asks a person.
{where}
Task {task.id}: {task.title}
{task.body}

Checks: {checks}. Automatic {risk}.

Diff:
{diff}
"""

# For a reviewer that works in a checkout rather than answering from the prompt alone.
IN_A_CHECKOUT = """
You are in a checkout of the change (HEAD is the agent's last commit; `git diff {base}` shows
the change). Read what you need and run the tests if that helps; do not edit files: nothing you
change is kept. End with the JSON verdict as your final message.
"""


@dataclass
class Verdict:
    verdict: str
    comments: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"AI reviewer: {self.verdict}" + (": " + "; ".join(self.comments) if self.comments else "")


def _plain(text: str) -> str:
    """A comment as a person reads it: no secret (redact.py), no control characters (terminal
    escapes), bounded. It goes to the store, the person and back to the agent."""
    kept = "".join(c if c == "\n" or c.isprintable() else " " for c in redact.text(text))
    return kept[:COMMENT_MAX_CHARS]


def verdict_from(data: Any) -> Verdict | None:
    """A verdict from parsed JSON, or None when it is not one: {"verdict": one of VERDICTS,
    "comments": a list (or one string)}. Comments are bounded in number and length."""
    if not isinstance(data, dict) or not isinstance(data.get("verdict"), str) or data["verdict"] not in VERDICTS:
        return None
    comments = data.get("comments")
    if comments is None:
        comments = []
    elif isinstance(comments, str):
        comments = [comments]
    elif not isinstance(comments, list):
        return None
    kept = [_plain(str(c)) for c in comments if isinstance(c, (str, int, float)) and not isinstance(c, bool)]
    return Verdict(data["verdict"], [c for c in kept if c.strip()][:MAX_COMMENTS])


def parse_verdict(text: str) -> Verdict:
    # The last JSON object that is a verdict: a CLI's final message may think aloud before it.
    decoder = json.JSONDecoder()
    for start in reversed([i for i, char in enumerate(text) if char == "{"]):
        try:
            data, _ = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            continue
        verdict = verdict_from(data)
        if verdict is not None:
            return verdict
    raise ClawError("the AI reviewer did not reply with a verdict", hint=f"its reply began: {text[:200]!r}")


def read_verdict(review_dir: Path) -> Verdict | ClawError:
    """verdict.json as the orchestrator trusts it: a regular file (no symlink followed), small,
    a verdict or an error message; anything else is a failed review, left to a person."""
    ended = ClawError("the AI reviewer's process ended without a verdict",
                      hint=f"see {review_dir / 'reviewer.out'}")
    try:
        fd = os.open(review_dir / "verdict.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ended
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return ended
        raw = handle.read(VERDICT_MAX_BYTES + 1)
    try:
        data = json.loads(raw) if len(raw) <= VERDICT_MAX_BYTES else None
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return ClawError(_plain(data["error"]))
    return verdict_from(data) or ClawError("the AI reviewer's verdict file is not a verdict",
                                           hint=f"see {review_dir / 'verdict.json'}")


@dataclass
class ReviewSpec:
    attempt_id: int
    task_id: int
    project_root: str
    agent_name: str
    agent: dict[str, Any]             # the reviewer's validated agent config
    base_commit: str
    head_commit: str
    prompt: str
    deadline: float
    gateway_url: str | None = None    # the attempt's base URL on the metering gateway
    gateway_key: str | None = None
    sandbox: dict[str, Any] | None = None   # the run's SandboxPolicy: the reviewer is an agent too

    def save(self, review_dir: Path) -> None:
        write_json(review_dir / "review.json", asdict(self))

    @classmethod
    def load(cls, review_dir: Path) -> "ReviewSpec":
        return cls(**json.loads((review_dir / "review.json").read_text()))


@dataclass
class Reviewing:
    """The review process is still at work."""


def review_prompt(project_root: Path, task: Task, attempt: Attempt, head: str, risk: Risk,
                  checks_passed: bool | None, in_checkout: bool) -> str:
    diff = git.diff(project_root, attempt.base_commit, head)
    if len(diff) > DIFF_LIMIT:
        diff = diff[:DIFF_LIMIT] + f"\n[... {len(diff) - DIFF_LIMIT} more characters of diff ...]"
    checks = {True: "passed", False: "failed", None: "none configured"}[checks_passed]
    where = IN_A_CHECKOUT.format(base=attempt.base_commit[:12]) if in_checkout else ""
    return REVIEW_PROMPT.format(task=task, checks=checks, risk=risk.describe(), diff=diff, where=where)


# -- the orchestrator's side --------------------------------------------------------------

class Reviews:
    """The review processes this orchestrator started (a restarted one finds them by pid)."""

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen] = {}
        self._deadlines: dict[Path, float] = {}   # a spec never changes: read once, not every tick

    def start(self, review_dir: Path, spec: ReviewSpec) -> int:
        if review_dir.exists():  # an earlier review of this attempt that never finished
            ChildGroups(review_dir / "children").kill_all()
            git.remove_worktree(Path(spec.project_root), review_dir / "checkout")
            shutil.rmtree(review_dir)
        review_dir.mkdir(parents=True)
        spec.save(review_dir)
        with open(review_dir / "reviewer.out", "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", REVIEWER_MODULE, str(review_dir)],
                                    cwd=spec.project_root, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        (review_dir / "reviewer.pid").write_text(str(proc.pid))
        self._children[spec.attempt_id] = proc
        self._deadlines[review_dir] = spec.deadline
        return proc.pid

    def deadline(self, review_dir: Path) -> float | None:
        """When the review is due (None: its spec cannot be read)."""
        if review_dir not in self._deadlines:
            try:
                self._deadlines[review_dir] = ReviewSpec.load(review_dir).deadline
            except (OSError, ValueError, TypeError):
                return None
        return self._deadlines[review_dir]

    def poll(self, attempt_id: int, review_dir: Path) -> Verdict | ClawError | Reviewing:
        """The verdict, or why there is none, once the process has ended."""
        proc = self._children.get(attempt_id)
        if proc is not None:
            if proc.poll() is None:
                return Reviewing()
            del self._children[attempt_id]
        elif self._alive(review_dir):
            return Reviewing()
        return read_verdict(review_dir)

    def stop(self, attempt_id: int, review_dir: Path) -> None:
        proc = self._children.pop(attempt_id, None)
        pid = proc.pid if proc is not None else _pid(review_dir)
        if pid and (proc is not None or self._alive(review_dir)):
            kill_group(pid, reap=proc.poll if proc is not None else None)
        if proc is not None:
            proc.wait(timeout=10)
        ChildGroups(review_dir / "children").kill_all()
        checkout = review_dir / "checkout"
        if checkout.exists():  # the killed process could not remove it itself
            git.remove_worktree(Path(ReviewSpec.load(review_dir).project_root), checkout)

    @staticmethod
    def _alive(review_dir: Path) -> bool:
        pid = _pid(review_dir)
        if not pid_alive(pid):
            return False
        args = cmdline(pid)
        return str(review_dir) in args and REVIEWER_MODULE in args


def _pid(review_dir: Path) -> int | None:
    try:
        return int((review_dir / "reviewer.pid").read_text())
    except (OSError, ValueError):
        return None


# -- the review process -------------------------------------------------------------------

def _agent_config(spec: ReviewSpec) -> dict[str, Any]:
    return point_at_gateway(spec.agent, spec.gateway_url, spec.gateway_key)


def _ask_the_model(spec: ReviewSpec, agent: dict[str, Any]) -> str:
    from .agents.builtin import model_of
    from .config import parse_agent_config

    model = model_of(spec.agent_name, parse_agent_config(agent))
    return model.complete([{"role": "user", "content": spec.prompt}]).text


def _run_in_a_checkout(spec: ReviewSpec, agent_config: dict[str, Any], review_dir: Path) -> str:
    from .agents import AgentJob, make_agent

    root, checkout = Path(spec.project_root), review_dir / "checkout"
    agent = make_agent(spec.agent_name, agent_config)
    prompt_file = review_dir / "prompt-0.md"
    prompt_file.write_text(spec.prompt)
    git.add_detached_worktree(root, checkout, spec.head_commit)
    try:
        outcome = agent.run(AgentJob(
            task_id=spec.task_id, attempt_id=spec.attempt_id, agent_name=spec.agent_name,
            workspace=checkout, attempt_dir=_agent_dir(review_dir), prompt=spec.prompt, prompt_file=prompt_file,
            log=review_dir / "agent.log", deadline=spec.deadline,
            children=ChildGroups(review_dir / "children"), project_root=root,
            sandbox=SandboxPolicy.from_dict(spec.sandbox), common_dir=git.common_dir(root)))
    finally:
        git.remove_worktree(root, checkout)
    if outcome.error and not outcome.summary:
        raise ClawError(f"the AI reviewer '{spec.agent_name}' failed: {outcome.error}",
                        hint=f"see {review_dir / 'agent.log'}")
    return outcome.summary


def _agent_dir(review_dir: Path) -> Path:
    """The reviewer agent's folder, with its outbox: like any agent it never writes the store
    (`claw memory add` there goes to the outbox; the orchestrator imports it)."""
    from .memory import OUTBOX_DIR, OUTBOX_ENV

    folder = review_dir / AGENT_DIR
    (folder / OUTBOX_DIR).mkdir(parents=True, exist_ok=True)
    os.environ[OUTBOX_ENV] = str(folder / OUTBOX_DIR)
    return folder


def main(argv: list[str]) -> int:
    review_dir = Path(argv[0]).resolve()
    spec = ReviewSpec.load(review_dir)
    os.environ["CLAW_TASK_ID"] = str(spec.task_id)
    os.environ["CLAW_ATTEMPT_ID"] = str(spec.attempt_id)
    try:
        agent = _agent_config(spec)
        if agent.get("kind", "builtin") == "builtin":
            reply = _ask_the_model(spec, agent)
        else:
            reply = _run_in_a_checkout(spec, agent, review_dir)
        result: dict[str, Any] = asdict(parse_verdict(reply))
    except ClawError as error:
        result = {"error": str(error)}
    except Exception as error:  # the orchestrator hands it to a person, saying why
        result = {"error": f"the AI reviewer crashed: {type(error).__name__}: {error}"}
    write_json(review_dir / "verdict.json", result)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
