"""Agents: adapters that start a coding agent in a workspace and know how it ends.

One small protocol; one file per kind. The runner calls `run` once per round (the first try and
each fix round) and commits whatever the agent left in the worktree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..procs import ChildGroups


@dataclass
class AgentJob:
    task_id: int
    attempt_id: int
    agent_name: str
    workspace: Path
    attempt_dir: Path
    prompt: str
    prompt_file: Path
    log: Path
    deadline: float                     # time.time() after which the agent must be stopped
    children: ChildGroups
    round: int = 0                      # 0 = first try, 1.. = fix rounds
    on_usage: Callable[[int, int], None] = field(default=lambda i, o: None)


@dataclass
class AgentOutcome:
    summary: str = ""
    error: str | None = None            # why the agent failed; None when it ended normally
    timed_out: bool = False
    exit_code: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class Agent(Protocol):
    def run(self, job: AgentJob) -> AgentOutcome: ...


def make_agent(name: str, config: Mapping[str, Any]) -> Agent:
    """The agent for an already validated config (`Config.agent(name).model_dump()`).

    Plain data in, so the runner starts without importing pydantic for agents that need none.
    """
    kind = config.get("kind", "builtin")
    if kind == "command":
        from .command import CommandAgent
        return CommandAgent(name, command=list(config["command"]), env=dict(config.get("env") or {}))
    from ..config import BuiltinAgentConfig
    from .builtin import BuiltinAgent
    return BuiltinAgent(name, BuiltinAgentConfig.model_validate(config))
