"""The heartbeat: every N minutes the claw reads HEARTBEAT.md and thinks for one short turn.

HEARTBEAT.md is a checklist the owner writes ("check that the nightly research landed; if the
README is out of date, queue a task"). The builtin agent's model reads it with the persona files
and the fleet's state, and replies with JSON: tasks to queue and/or a message for the owner.
Nothing to do and nothing to say is the usual answer, and then nothing is sent.

The time of the last beat is kept in the store, so a restart does not beat again early.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, Field, ValidationError

from .errors import ClawError
from .models import Importance, Notification
from .planner import TaskIdea
from .project import Project
from .store import Store

KEY = "heartbeat"
CHECKLIST = "HEARTBEAT.md"

HEARTBEAT_PROMPT = """\
You are the claw: the daemon that runs a fleet of coding agents on this repository for its
owner. This is your heartbeat: go through the owner's checklist below against the fleet's state,
and decide whether anything needs doing or saying now.

Reply with JSON only, in this shape:
{{"tasks": [{{"title": "...", "body": "what to do, in markdown", "kind": "feature|fix|research|plan",
  "importance": "low|normal|high|critical"}}], "message": "a short message for the owner, or empty"}}
Queue a task only for work the checklist asks for and that is not already queued or running.
Write a message only when the owner should know something now. Most heartbeats need neither:
then reply {{"tasks": [], "message": ""}}.

{persona}

## The checklist (HEARTBEAT.md)
{checklist}

## The fleet now
{status}
"""


class HeartbeatReply(BaseModel):
    tasks: list[TaskIdea] = Field(default_factory=list, max_length=10)
    message: str = ""


@dataclass
class Beat:
    tasks: list[int] = field(default_factory=list)
    message: str = ""


def parse_reply(text: str) -> HeartbeatReply:
    match = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        return HeartbeatReply.model_validate(json.loads(match.group(0) if match else text))
    except (ValueError, ValidationError) as error:
        raise ClawError(f"the heartbeat's model did not reply with the JSON asked for: {str(error)[:200]}",
                        hint=f"its reply began: {text[:200]!r}") from None


class Heartbeat:
    def __init__(self, project: Project, *, store: Store | None = None,
                 clock: Callable[[], float] = time.time,
                 wants_notification: Callable[[str], bool] = lambda kind: True) -> None:
        self.project = project
        self.store = store or project.store
        self.minutes = project.config.daemon.heartbeat_minutes
        self.clock = clock
        self.wants_notification = wants_notification

    def due(self) -> bool:
        if not self.minutes:
            return False
        last = self.store.daemon_state(KEY)
        return last is None or self.clock() - last.get("at", 0) >= self.minutes * 60

    def beat_if_due(self) -> Beat | None:
        return self.beat() if self.due() else None

    def beat(self) -> Beat:
        """One turn: read the checklist, ask the model, queue and notify in one transaction."""
        from .agents.builtin import model_for
        from .channels.commands import status
        from .channels.context import persona_context

        state = self.store.daemon_state(KEY)
        now = self.clock()
        path = self.project.root / CHECKLIST
        checklist = path.read_text(errors="replace").strip() if path.exists() else ""
        if not checklist:  # nothing asked of the heartbeat: no model call
            self.store.fire_trigger(KEY, state, {"at": now, "skipped": "no HEARTBEAT.md"},
                                    event="heartbeat.skipped")
            return Beat()
        model = model_for(self.project.config, self.project.config.daemon.heartbeat_agent, "heartbeat")
        prompt = HEARTBEAT_PROMPT.format(persona=persona_context(self.project, checklist),
                                         checklist=checklist, status=status(self.project).text)
        try:
            reply = parse_reply(model.complete([{"role": "user", "content": prompt}]).text)
        except ClawError as error:
            # Record the failed beat so a broken model is tried again next period, not every tick.
            self.store.fire_trigger(KEY, state, {"at": now, "error": error.message},
                                    event="heartbeat.failed", error=error.message)
            raise
        message = reply.message.strip()
        notification = None
        if message and self.wants_notification("heartbeat"):
            notification = Notification("heartbeat", message, Importance.normal, at=now)
        tasks = [{**task.model_dump(), "importance": str(task.importance)} for task in reply.tasks]
        ids = self.store.fire_trigger(KEY, state, {"at": now}, event="heartbeat.beat", tasks=tasks,
                                      notification=notification, message=message)
        return Beat(ids or [], message)
