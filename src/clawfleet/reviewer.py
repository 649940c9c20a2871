"""The AI reviewer: a model reads the task and the diff and returns a verdict with comments.

Used by the review policy for attempts too risky to land unseen but not risky enough to need a
person (`ai_max_risk`); its comments go back to the agent (revise) or to the person (reject).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from . import git
from .errors import ClawError
from .models import Attempt, Task
from .project import Project
from .risk import Risk

DIFF_LIMIT = 30_000
VERDICTS = ("approve", "revise", "reject")

REVIEW_PROMPT = """\
You review a change that a coding agent made for the task below, before it lands on the main
branch. Judge whether it does the task, correctly and safely, with tests. Reply with JSON only:
{{"verdict": "approve" | "revise" | "reject", "comments": ["short, concrete comments"]}}
"revise" sends your comments back to the agent for another attempt; "reject" asks a person.

Task {task.id}: {task.title}
{task.body}

Checks: {checks}. Automatic {risk}.

Diff:
{diff}
"""


@dataclass
class Verdict:
    verdict: str
    comments: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"AI reviewer: {self.verdict}" + (": " + "; ".join(self.comments) if self.comments else "")


def parse_verdict(text: str) -> Verdict:
    match = re.search(r"\{.*\}", text, re.S)
    try:
        data = json.loads(match.group(0)) if match else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("verdict") not in VERDICTS:
        raise ClawError("the AI reviewer did not reply with a verdict",
                        hint=f"its reply began: {text[:200]!r}")
    comments = data.get("comments") or []
    return Verdict(data["verdict"], [str(c) for c in comments] if isinstance(comments, list) else [str(comments)])


def review(project: Project, task: Task, attempt: Attempt, head: str, risk: Risk,
           checks_passed: bool | None) -> Verdict:
    from .agents.builtin import model_for

    diff = git.diff(project.root, attempt.base_commit, head)
    if len(diff) > DIFF_LIMIT:
        diff = diff[:DIFF_LIMIT] + f"\n[... {len(diff) - DIFF_LIMIT} more characters of diff ...]"
    checks = {True: "passed", False: "failed", None: "none configured"}[checks_passed]
    model = model_for(project.config, project.config.review.ai_reviewer, "AI reviewer")
    reply = model.complete([{"role": "user", "content": REVIEW_PROMPT.format(
        task=task, checks=checks, risk=risk.describe(), diff=diff)}])
    return parse_verdict(reply.text)
