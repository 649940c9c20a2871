"""The gateway's meter: who is calling, what it costs, whether the budget allows it, and the record.

All database and transcript work runs on one thread of its own, in order, so the proxy's event
loop never waits on SQLite's lock and a budget check always sees the calls recorded before it.

    meter = Meter(project.run_dir / "claw.db", project.attempts_dir)
    caller = await meter.caller("attempt", attempt_id)
    refusal = await meter.check_budget(caller, config.budget)
    meter.record(call, transcript_entry)
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import redact
from ..config import BudgetConfig, PriceConfig
from ..errors import NotFound
from ..models import LlmCall
from ..store import Store
from .transcript import append_entry
from .usage import Usage

log = logging.getLogger("clawfleet.gateway")


@dataclass(frozen=True)
class Caller:
    """Whose calls these are: an attempt (and its task), or a research experiment."""
    attempt_id: int | None
    task_id: int | None
    agent: str
    experiment_id: int | None = None
    folder: Path | None = None          # where its transcript goes

    @property
    def label(self) -> str:
        return f"experiment {self.experiment_id}" if self.experiment_id is not None else f"attempt {self.attempt_id}"


@dataclass(frozen=True)
class Refusal:
    """A budget that is spent: which one, how much was used, and its limit."""
    scope: str           # attempt, task or day
    unit: str            # usd or tokens
    spent: float
    limit: float

    @property
    def key(self) -> str:
        return f"gateway.budget.{self.scope}_{self.unit}"

    def message(self) -> str:
        def amount(value: float) -> str:
            return f"${value:,.6f}" if self.unit == "usd" else f"{int(value):,} tokens"
        who = {"attempt": "this attempt", "task": "this task", "day": "the fleet"}[self.scope]
        if self.limit == 0:
            used = f"{self.key} is 0, so no call is allowed"
        else:
            used = (f"{who} has used {amount(self.spent)} of its {amount(self.limit)}"
                    f"{' today' if self.scope == 'day' else ''} ({self.key})")
        return (f"clawfleet gateway: over budget: {used}. Raise {self.key} in .claw/config.toml "
                f"(or remove it for no limit) to allow more calls.")


def price_for(prices: dict[str, PriceConfig], model: str) -> PriceConfig | None:
    """The price of a model: its exact name first, then the longest matching pattern."""
    if model in prices:
        return prices[model]
    for pattern in sorted(prices, key=len, reverse=True):
        if fnmatch.fnmatchcase(model, pattern):
            return prices[pattern]
    return None


def cost_of(usage: Usage, price: PriceConfig | None) -> float | None:
    if price is None:
        return None
    cached_price = price.input if price.cached is None else price.cached
    fresh = max(usage.input_tokens - usage.cached_tokens, 0)
    return (fresh * price.input + usage.cached_tokens * cached_price
            + usage.output_tokens * price.output) / 1_000_000


def day_start(now: float) -> float:
    """Local midnight before `now`: the day budget counts from there."""
    local = time.localtime(now)
    return time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))


class Meter:
    def __init__(self, db_path: Path, attempts_dir: Path, *, clock: Callable[[], float] = time.time,
                 on_call: Callable[[LlmCall], None] | None = None) -> None:
        self.db_path = db_path
        self.attempts_dir = attempts_dir
        self.clock = clock
        self.on_call = on_call
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-meter")
        self._store: Store | None = None
        self._callers: dict[tuple[str, int], Caller] = {}
        self._ended: dict[tuple[str, int], str] = {}
        self._reader: Store | None = None   # the event loop's own, for `ended`
        self._reported: set[tuple[str, str]] = set()

    def _db(self) -> Store:
        if self._store is None:
            self._store = Store(self.db_path)
        return self._store

    async def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def caller(self, kind: str, number: int) -> Caller | None:
        """The attempt or experiment behind a key, or None when there is no such one."""
        if (kind, number) not in self._callers:
            found = await self._run(self._find, kind, number)
            if found is None:
                return None
            self._callers[(kind, number)] = found
        return self._callers[(kind, number)]

    def ended(self, caller: Caller) -> str | None:
        """How the caller's attempt (or experiment) ended, or None while its key is good.

        Asked on every call, from the event loop itself: one read by primary key on a connection
        of its own (WAL readers never wait for writers), ~20 µs, no hop to the meter's thread.
        An end is final (a new attempt gets a new key), so an ended one is never asked again.
        """
        kind, number = ("experiment", caller.experiment_id) if caller.experiment_id is not None \
            else ("attempt", caller.attempt_id)
        if (kind, number) in self._ended:
            return self._ended[(kind, number)]
        if self._reader is None:
            self._reader = Store(self.db_path)
        ended = self._reader.ended(kind, number)
        if ended is not None:
            self._ended[(kind, number)] = ended
        return ended

    def _find(self, kind: str, number: int) -> Caller | None:
        try:
            if kind == "experiment":
                experiment = self._db().get_experiment(number)
                run = self._db().get_research_run(experiment.run_id)
                folder = self.db_path.parent / "research" / experiment.name / "experiments" / str(number)
                return Caller(None, None, run.agent, experiment_id=number, folder=folder)
            attempt = self._db().get_attempt(number)
        except NotFound:
            return None
        return Caller(attempt.id, attempt.task_id, attempt.agent, folder=self.attempts_dir / str(attempt.id))

    async def check_budget(self, caller: Caller, budget: BudgetConfig) -> Refusal | None:
        if not budget.any:
            return None
        return await self._run(self._check, caller, budget)

    def _check(self, caller: Caller, budget: BudgetConfig) -> Refusal | None:
        scopes = (("attempt", {"attempt_id": caller.attempt_id}), ("task", {"task_id": caller.task_id}),
                  ("day", {"since": day_start(self.clock())}))
        for scope, where in scopes:
            if None in where.values():
                continue  # an experiment answers to the day budget only
            limits = {"tokens": getattr(budget, f"{scope}_tokens"), "usd": getattr(budget, f"{scope}_usd")}
            if all(limit is None for limit in limits.values()):
                continue
            tokens, dollars = self._db().llm_spend(**where)
            for unit, spent in (("tokens", tokens), ("usd", dollars)):
                limit = limits[unit]
                if limit is not None and spent >= limit:
                    refusal = Refusal(scope, unit, spent, limit)
                    self._report(caller, refusal)
                    return refusal
        return None

    def _report(self, caller: Caller, refusal: Refusal) -> None:
        # Once per attempt and budget: an agent that retries must not flood the history.
        if (caller.label, refusal.key) in self._reported:
            return
        self._reported.add((caller.label, refusal.key))
        extra = {"experiment": caller.experiment_id} if caller.experiment_id is not None else {}
        self._db().record_event("budget.refused", task_id=caller.task_id, attempt_id=caller.attempt_id,
                                budget=refusal.key, spent=refusal.spent, limit=refusal.limit, **extra)

    def record(self, call: LlmCall, transcript: dict[str, Any] | None = None,
               secrets: tuple[str, ...] = ()) -> None:
        """Record a call in the background (thread-safe; the order of calls is kept)."""
        self._thread.submit(self._record, call, transcript, secrets)

    def _record(self, call: LlmCall, transcript: dict[str, Any] | None, secrets: tuple[str, ...]) -> None:
        try:
            if call.error:  # an upstream's error may quote what it was sent
                call.error = redact.text(call.error)
            call.id = self._db().record_llm_call(call)
            if transcript is not None:
                owner = ("experiment", call.experiment_id) if call.experiment_id is not None \
                    else ("attempt", call.attempt_id)
                caller = self._callers.get(owner)   # looked up before its call was let through
                folder = caller.folder if caller else self.attempts_dir / str(call.attempt_id)
                append_entry(folder / "transcript.jsonl", transcript, secrets)
            if self.on_call is not None:
                self.on_call(call)
        except Exception:
            log.exception("could not record a model call of %s", f"experiment {call.experiment_id}"
                          if call.experiment_id is not None else f"attempt {call.attempt_id}")

    def flush(self) -> None:
        """Wait until every call handed to `record` so far is written."""
        self._thread.submit(lambda: None).result()

    def close(self) -> None:
        self._thread.submit(self._close).result()
        self._thread.shutdown()

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._store is not None:
            self._store.close()
            self._store = None
