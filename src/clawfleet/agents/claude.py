"""`claude`: Claude Code, run headless (`claude -p`) in the worktree.

    [agents.claude]
    kind = "claude"
    model = "sonnet"                 # --model
    effort = "high"                  # --effort
    base_url = "http://127.0.0.1:8080"   # ANTHROPIC_BASE_URL (a gateway, any Anthropic-compatible API)
    api_key_env = "ANTHROPIC_API_KEY"    # passed to it as ANTHROPIC_API_KEY

The prompt goes in on stdin; `--output-format stream-json --verbose` prints one JSON event a line
(system init, assistant and user messages, and a final `result` with the summary, usage and
cost), kept as `claude-N.jsonl` in the attempt folder. It gets a HOME of its own there, where it
writes its settings and sessions, so attempts never share state with each other or the person.
"""

from __future__ import annotations

import os
from typing import Any

from ..config import ClaudeAgentConfig
from . import AgentJob, AgentOutcome
from ._cli import CliAgent, Program, api_key, log_tail, short

PROGRAM = Program("claude", "claude", "npm install -g @anthropic-ai/claude-code")


class ClaudeAgent(CliAgent):
    program = PROGRAM
    label = "Claude Code"
    transcript_prefix = "claude"
    config: ClaudeAgentConfig

    def command(self, binary: str, job: AgentJob) -> list[str]:
        config = self.config
        args = [binary, "-p", "--output-format", "stream-json", "--verbose",
                "--permission-mode", config.permission_mode]
        if config.allowed_tools:
            args += ["--allowedTools", ",".join(config.allowed_tools)]
        if config.model:
            args += ["--model", config.model]
        if config.effort:
            args += ["--effort", config.effort]
        return args + config.args

    def environment(self, job: AgentJob) -> dict[str, str]:
        home = job.attempt_dir / "claude-home"
        home.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home),
               # No update checks, telemetry or error reports from a fleet of unattended runs.
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
               "DISABLE_AUTOUPDATER": "1", **self.config.env}
        env.pop("CLAUDE_CONFIG_DIR", None)  # it would point it back at the person's settings
        key = api_key(self.name, self.config.api_key_env, self.config.base_url)
        if self.config.base_url:
            env["ANTHROPIC_BASE_URL"] = self.config.base_url
        if key:
            env["ANTHROPIC_API_KEY"] = key
        return env

    def events(self, job: AgentJob) -> "_Events":
        return _Events(job)

class _Events:
    """Reads Claude Code's stream-json events: a readable line in the agent log for each, live
    token counts, and the final `result`."""

    def __init__(self, job: AgentJob) -> None:
        self.job = job
        self.result: dict[str, Any] | None = None
        self.input_tokens = self.output_tokens = 0
        self._seen: set[str] = set()

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        lines: list[str] = []
        if kind == "system" and event.get("subtype") == "init":
            lines.append(f"[claude {event.get('claude_code_version', '?')}, model {event.get('model')}, "
                         f"session {event.get('session_id')}]")
        elif kind == "assistant":
            message = event.get("message") or {}
            self._count(message)
            for block in message.get("content") or []:
                if block.get("type") == "text" and block.get("text", "").strip():
                    lines.append(f"claude: {short(block['text'], 2000)}")
                elif block.get("type") == "tool_use":
                    lines.append(f"-> {block.get('name')} {short(block.get('input'))}")
        elif kind == "user":
            for block in (event.get("message") or {}).get("content") or []:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    mark = "error" if block.get("is_error") else "ok"
                    lines.append(f"<- [{mark}] {short(_result_text(block.get('content')))}")
        elif kind == "result":
            self.result = event
            usage = event.get("usage") or {}
            self.input_tokens, self.output_tokens = _input_tokens(usage), int(usage.get("output_tokens") or 0)
            self.job.on_usage(self.input_tokens, self.output_tokens)
            cost = event.get("total_cost_usd")
            status = "error" if event.get("is_error") else event.get("subtype")
            lines.append(f"[result: {status}, {event.get('num_turns')} turns, "
                         f"{self.input_tokens} in / {self.output_tokens} out tokens"
                         + (f", ${cost:.4f} by its own price table" if isinstance(cost, (int, float)) else "")
                         + "]")
        if lines:
            with open(self.job.log, "a") as log:
                log.write("\n".join(lines) + "\n")

    def _count(self, message: dict[str, Any]) -> None:
        # One API reply can arrive as several assistant events (one per content block).
        ident = message.get("id")
        if ident in self._seen or not isinstance(message.get("usage"), dict):
            return
        self._seen.add(ident)
        self.input_tokens += _input_tokens(message["usage"])
        self.output_tokens += int(message["usage"].get("output_tokens") or 0)
        self.job.on_usage(self.input_tokens, self.output_tokens)

    def outcome(self, exit_code: int, transcript: str) -> AgentOutcome:
        outcome = AgentOutcome(exit_code=exit_code, input_tokens=self.input_tokens,
                               output_tokens=self.output_tokens)
        result = self.result or {}
        outcome.summary = str(result.get("result") or "").strip()
        if not result:
            outcome.error = (f"claude exited with status {exit_code} without a result "
                             f"(transcript: {transcript}): {log_tail(self.job.log, 3)}")
        elif result.get("is_error") or result.get("subtype") != "success":
            outcome.error = f"claude ended with {result.get('subtype')}: {outcome.summary or 'no message'}"
            if result.get("errors"):
                outcome.error += f" ({short(result['errors'])})"
        elif exit_code != 0:
            outcome.error = f"claude exited with status {exit_code} (see `claw log`)"
        return outcome


def _input_tokens(usage: dict[str, Any]) -> int:
    # Cached input is input too: the prompt was read, at whatever price.
    return sum(int(usage.get(key) or 0) for key in
               ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))


def _result_text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")
