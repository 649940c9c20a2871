"""Fleet statistics for `claw stats`: tokens per hour, cost, outcomes, slot utilisation.

Definitions (shown by `claw stats` too):
- span: from the first attempt's start to the last attempt's end (now, if one still runs).
- tokens of an attempt: what the gateway metered for it when it made calls through the gateway,
  else what its agent reported. Tokens per hour = all tokens / span in hours.
- cost: the gateway's metered dollars (calls of unpriced models count 0; `unpriced_calls` says how many),
  research experiments' calls included (`research` shows their share).
- slot utilisation: busy slot-time / (slots x span), where busy slot-time is the sum of the attempts'
  run times (agent, commits and checks) and slots is `fleet.slots`. 1.0 = every slot busy all along.
- review wait: from an attempt's end to a person's decision on it (approve, reject, send back);
  attempts approved by policy or by the AI reviewer never wait for a person and are not counted.
  `review.ai` counts the AI reviewer's verdicts (approve and revise spared the person a review).

    stats = fleet_stats(project.store, slots=project.config.fleet.slots)
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from .models import TaskState
from .store import Store

REVIEW_DECISIONS = ("attempt.approved", "attempt.rejected", "attempt.sent_back")


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def fleet_stats(store: Store, *, slots: int, now: float | None = None, since: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    attempts = [a for a in store.attempts() if since is None or (a.finished_at or now) >= since]
    calls = store.llm_calls(since=since)
    titles = {task.id: task.title for task in store.list_tasks()}

    metered: dict[int, dict[str, float]] = defaultdict(lambda: {"tokens": 0, "cost": 0.0, "calls": 0})
    hours: dict[int, dict[str, float]] = defaultdict(lambda: {"input": 0, "output": 0, "cost": 0.0, "calls": 0})
    research = {"calls": 0, "tokens": 0, "cost": 0.0}
    for call in calls:
        if call.experiment_id is not None:
            research["calls"] += 1
            research["tokens"] += call.tokens
            research["cost"] += call.cost or 0.0
        metered[call.attempt_id]["tokens"] += call.tokens
        metered[call.attempt_id]["cost"] += call.cost or 0.0
        metered[call.attempt_id]["calls"] += 1
        hour = hours[int(call.started_at // 3600) * 3600]
        hour["input"] += call.input_tokens
        hour["output"] += call.output_tokens
        hour["cost"] += call.cost or 0.0
        hour["calls"] += 1

    start = min((a.started_at for a in attempts), default=None)
    end = max(((a.finished_at or now) for a in attempts), default=None)
    if since is not None and start is not None:
        start = max(start, since)
    span = max((end - start), 0.0) if start is not None else 0.0
    busy = sum(max((a.finished_at or now) - max(a.started_at, start or a.started_at), 0) for a in attempts)

    def tokens_of(attempt) -> int:
        return int(metered[attempt.id]["tokens"]) if attempt.id in metered else attempt.tokens

    groups: dict[str, dict[Any, dict[str, Any]]] = {"per_agent": {}, "per_task": {}}
    for attempt in attempts:
        for group, key in (("per_agent", attempt.agent), ("per_task", attempt.task_id)):
            row = groups[group].setdefault(key, {"attempts": 0, "outcomes": Counter(), "tokens": 0,
                                                  "cost": 0.0, "busy_s": 0.0})
            if group == "per_task":
                row["title"] = titles.get(key, "")
            row["attempts"] += 1
            row["outcomes"][str(attempt.state)] += 1
            row["tokens"] += tokens_of(attempt)
            row["cost"] += metered[attempt.id]["cost"] if attempt.id in metered else 0.0
            row["busy_s"] += (attempt.finished_at or now) - attempt.started_at
    for rows in groups.values():
        for row in rows.values():
            row["outcomes"] = dict(row["outcomes"])

    decided = [e["data"]["waited_s"] for e in store.events(kinds=REVIEW_DECISIONS, since=since)
               if isinstance(e["data"].get("waited_s"), (int, float))]
    in_review = [store.latest_attempt(task.id) for task in store.list_tasks([TaskState.review])]
    waiting = [now - (a.finished_at or a.started_at) for a in in_review if a is not None]
    total_tokens = sum(tokens_of(a) for a in attempts)
    latencies = [c.latency_ms for c in calls if c.status == "ok"]
    ttfts = [c.ttft_ms for c in calls if c.ttft_ms is not None]
    return {
        "span": {"start": start, "end": end, "hours": span / 3600},
        "attempts": {"total": len(attempts), "by_outcome": dict(Counter(str(a.state) for a in attempts))},
        "tokens": {"total": total_tokens,
                   "input": sum(c.input_tokens for c in calls), "output": sum(c.output_tokens for c in calls),
                   "cached": sum(c.cached_tokens for c in calls),
                   "per_hour": total_tokens / (span / 3600) if span > 0 else 0.0},
        "cost": {"total": sum(c.cost or 0.0 for c in calls),
                 "unpriced_calls": sum(1 for c in calls if c.cost is None and c.status == "ok")},
        "calls": {"total": len(calls), "by_status": dict(Counter(c.status for c in calls)),
                  "latency_ms_p50": _percentile(latencies, 0.5), "ttft_ms_p50": _percentile(ttfts, 0.5)},
        "hours": [{"hour": hour, **values} for hour, values in sorted(hours.items())],
        "research": research,
        "slots": {"slots": slots, "busy_slot_seconds": busy,
                  "utilisation": busy / (slots * span) if span > 0 else 0.0},
        "review": {"ai": dict(Counter(a.ai_review for a in attempts if a.ai_review)),
                   "decided": len(decided), "wait_s_p50": _percentile(decided, 0.5),
                   "wait_s_p90": _percentile(decided, 0.9), "wait_s_max": max(decided, default=None),
                   "waiting_now": len(waiting), "oldest_waiting_s": max(waiting, default=None)},
        **groups,
    }
