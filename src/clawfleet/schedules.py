"""Schedules: `[[schedule]]` entries queue a task, or start a research run, at the times of a
cron expression ("every night at 1: research").

Each schedule fires at most once per due time, even across restarts and crashes: its last due
time is kept in the store and moved with the task's creation in one transaction. After a
downtime that missed several due times it fires once, for the latest. A schedule seen for the
first time starts counting from then (it does not fire for times before it existed).

    schedules = Schedules(project.store, project.config.schedule, clock=time.time)
    schedules.fire_due()   # -> ids of the tasks queued now
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

from croniter import croniter

from .config import ScheduleConfig
from .store import Store


def key_of(schedule: ScheduleConfig) -> str:
    return f"schedule:{schedule.name}"


def latest_due(cron: str, since: float, now: float) -> float | None:
    """The last time the expression names in (since, now], or None when there is none."""
    if now <= since:
        return None
    previous = croniter(cron, datetime.fromtimestamp(now).astimezone()).get_prev(float)
    if croniter.match(cron, datetime.fromtimestamp(now).astimezone()) and int(now) % 60 == 0:
        previous = float(int(now))  # `now` is itself a due minute
    return previous if previous > since else None


def next_due(cron: str, after: float) -> float:
    return croniter(cron, datetime.fromtimestamp(after).astimezone()).get_next(float)


class Schedules:
    def __init__(self, store: Store, schedules: Sequence[ScheduleConfig],
                 clock: Callable[[], float] = time.time,
                 start_research: Callable[[ScheduleConfig], str] | None = None) -> None:
        self.store = store
        self.schedules = list(schedules)
        self.clock = clock
        # Starts a research schedule's run; returns what it did, for the event.
        self.start_research = start_research

    def fire_due(self) -> list[int]:
        """Queue the task of every schedule that is due; return the new task ids."""
        now = self.clock()
        queued = []
        for schedule in self.schedules:
            key = key_of(schedule)
            state = self.store.daemon_state(key)
            if state is None or state.get("cron") != schedule.cron:
                # New (or its expression changed): count from now, fire from the next due time.
                self.store.fire_trigger(key, state, {"cron": schedule.cron, "due": now},
                                        event="schedule.armed", cron=schedule.cron)
                continue
            due = latest_due(schedule.cron, state["due"], now)
            if due is None:
                continue
            if schedule.research is not None:
                # Recorded first: a crash between the two loses one night's run, never doubles it.
                if self.store.fire_trigger(key, state, {"cron": schedule.cron, "due": due},
                                           event="schedule.research", due=due, schedule=schedule.name) is not None:
                    started = self.start_research(schedule) if self.start_research else "no launcher"
                    self.store.record_event("schedule.research_started", schedule=schedule.name, how=started)
                continue
            task = schedule.task.model_dump()
            task["body"] = (task["body"] + "\n\n" if task["body"] else "") + \
                f"(queued by schedule '{schedule.name}', cron `{schedule.cron}`, due " \
                f"{datetime.fromtimestamp(due).astimezone():%Y-%m-%d %H:%M %Z})"
            ids = self.store.fire_trigger(key, state, {"cron": schedule.cron, "due": due},
                                          event="schedule.fired", tasks=[task], due=due,
                                          schedule=schedule.name)
            queued += ids or []
        return queued

    def upcoming(self) -> list[tuple[str, float]]:
        """(name, next due time) of each schedule, for status displays."""
        now = self.clock()
        return [(s.name, next_due(s.cron, now)) for s in self.schedules]
