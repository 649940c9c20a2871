"""`.claw/config.toml` read into pydantic models; every error names the file, the key and the fix."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .models import Importance


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FleetConfig(_Section):
    slots: int = Field(3, ge=1, le=256, description="agents running at once")
    target: str = Field("main", description="branch that approved work lands on")
    default_agent: str = "builtin"
    attempt_timeout: float = Field(1800.0, gt=0, description="seconds before an attempt is killed")
    stall_timeout: float = Field(300.0, ge=0, description="seconds with no new output, event, file change or "
                                                          "CPU use from the agent before its attempt ends "
                                                          "stalled; 0 turns the guard off")
    max_attempts: int = Field(2, ge=1, description="automatic attempts after a crash or timeout")
    retry_backoff: float = Field(10.0, ge=0, description="seconds before a retry; doubles each time")
    pool_size: int = Field(2, ge=0, description="ready worktrees kept for quick starts")
    agent_slots: dict[str, int] = Field(default_factory=dict, description="slot limit per agent name")
    respect_footprints: bool = Field(True, description="never run overlapping footprints together")
    radar_interval: float = Field(5.0, ge=0, description="seconds between conflict scans; 0 turns the radar off")


class ChecksConfig(_Section):
    commands: list[str] = Field(default_factory=list)
    timeout: float = Field(600.0, gt=0)
    fix_rounds: int = Field(1, ge=0, description="times a failure is fed back to the agent")
    on_failure: Literal["fail", "review"] = "fail"


class ReviewConfig(_Section):
    auto_approve: list[Importance] = Field(default_factory=lambda: [Importance.low])
    auto_max_risk: dict[Importance, int] = Field(
        default_factory=dict, description="per importance: the highest risk score approved without a person")
    ai_reviewer: str | None = Field(None, description="the agent (any kind) that reviews mid-risk attempts")
    ai_timeout: float = Field(900.0, gt=0, description="seconds the AI reviewer may take; then a person decides")
    ai_max_risk: dict[Importance, int] = Field(
        default_factory=dict, description="per importance: the highest risk the AI reviewer may approve")
    sensitive: list[str] = Field(
        default_factory=lambda: [".github/**", ".ci/**", "**/migrations/**", "**/*.lock",
                                 "**/Dockerfile", "**/*secret*", "pyproject.toml", "package.json"],
        description="paths whose change raises the risk score")
    merge_on_approve: bool = True


class MergeConfig(_Section):
    batch_size: int = Field(1, ge=1, le=64, description="approved attempts landed with one check run")
    resolve_conflicts: bool = Field(True, description="queue a task to resolve a conflict at merge")
    squash: bool = Field(True, description="land each attempt as one commit (false: its commits, each checked)")


class BuiltinAgentConfig(_Section):
    kind: Literal["builtin"] = "builtin"
    provider: str | None = None
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    max_steps: int = Field(40, ge=1)
    max_tokens: int = Field(400_000, ge=1, description="input + output tokens for one attempt")
    command_timeout: float = Field(300.0, gt=0)
    output_limit: int = Field(10_000, ge=200, description="characters of command output shown")
    request_timeout: float = Field(120.0, gt=0)


class CommandAgentConfig(_Section):
    kind: Literal["command"]
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)


class _CliAgentConfig(_Section):
    """What every agent CLI kind shares: which model, where to reach it, which program."""
    model: str | None = Field(None, description="model name passed to the CLI; unset: the CLI's default")
    base_url: str | None = Field(None, description="the provider endpoint the CLI is pointed at")
    api_key_env: str | None = Field(None, description="variable holding the key for base_url")
    binary: str | None = Field(None, description="path or name of the program; unset: found on PATH")
    args: list[str] = Field(default_factory=list, description="extra command-line arguments")
    env: dict[str, str] = Field(default_factory=dict)
    inherit: list[Literal["login", "instructions", "skills", "mcp"]] = Field(
        default_factory=lambda: ["login", "instructions", "skills", "mcp"],
        description="what of your own setup the CLI gets: your login, your instructions "
                    "(~/.claude/CLAUDE.md, ~/.codex/AGENTS.md...), skills and MCP servers; [] for a clean room")


class ClaudeAgentConfig(_CliAgentConfig):
    kind: Literal["claude"]
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    permission_mode: Literal["acceptEdits", "auto", "bypassPermissions", "default", "dontAsk"] = "acceptEdits"
    # Tools allowed without asking: with acceptEdits, Bash still needs to be listed here.
    allowed_tools: list[str] = Field(default_factory=lambda: [
        "Bash", "Edit", "MultiEdit", "Write", "Read", "Glob", "Grep", "NotebookEdit", "TodoWrite"])


class CodexAgentConfig(_CliAgentConfig):
    kind: Literal["codex"]
    effort: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None
    sandbox: Literal["read-only", "workspace-write", "danger-full-access"] = "workspace-write"


class GeminiAgentConfig(_CliAgentConfig):
    kind: Literal["gemini"]
    approval_mode: Literal["yolo", "auto_edit", "default"] = "yolo"


class AiderAgentConfig(_CliAgentConfig):
    kind: Literal["aider"]
    effort: str | None = Field(None, description="aider's --reasoning-effort")
    edit_format: str | None = Field(None, description="whole, diff, udiff...; unset: aider's choice per model")
    context_window: int = Field(128_000, ge=1024, description="with base_url: the model's input tokens")


class OpencodeAgentConfig(_CliAgentConfig):
    kind: Literal["opencode"]
    effort: str | None = Field(None, description="opencode's --variant: the provider's reasoning effort")


AcpProvider = Literal["gemini", "anthropic", "openai"]
# The provider an ACP agent calls, from a word in its command line (`gemini --acp`, `claude-agent-acp`...).
_ACP_PROVIDER_HINTS = (("gemini", "gemini"), ("claude", "anthropic"), ("codex", "openai"))


class AcpAgentConfig(_Section):
    """Any agent that speaks the Agent Client Protocol on its standard input and output."""
    kind: Literal["acp"]
    command: list[str] = Field(min_length=1, description='the ACP agent\'s command line, e.g. ["gemini", "--acp"]')
    provider: AcpProvider | None = Field(None, description="the API it calls, so base_url, api_key_env and model "
                                                           "reach it by that API's own variables; unset: "
                                                           "guessed from the command")
    model: str | None = Field(None, description="model name; unset: the agent's default")
    base_url: str | None = Field(None, description="the provider endpoint the agent is pointed at")
    api_key_env: str | None = Field(None, description="variable holding the key for base_url")
    env: dict[str, str] = Field(default_factory=dict)
    inherit: list[Literal["login", "instructions", "skills", "mcp"]] = Field(
        default_factory=lambda: ["login", "instructions", "skills", "mcp"],
        description="what of your own setup the agent gets, where its program's files are known "
                    "(gemini; claude-agent-acp as claude; codex-acp as codex); [] for a clean room")

    @model_validator(mode="after")
    def _provider(self) -> "AcpAgentConfig":
        if self.provider is None:
            words = " ".join(Path(part).name for part in self.command).lower()
            self.provider = next((api for hint, api in _ACP_PROVIDER_HINTS if hint in words), None)
        if self.provider is None and (self.base_url or self.model):
            raise ValueError("set `provider` (gemini, anthropic or openai): it says how base_url and model "
                             "reach this ACP agent, and its command does not tell")
        return self


AnyAgentConfig = (BuiltinAgentConfig | CommandAgentConfig | ClaudeAgentConfig | CodexAgentConfig
                  | GeminiAgentConfig | OpencodeAgentConfig | AiderAgentConfig | AcpAgentConfig)
AgentConfig = Annotated[Union[BuiltinAgentConfig, CommandAgentConfig, ClaudeAgentConfig, CodexAgentConfig,
                              GeminiAgentConfig, OpencodeAgentConfig, AiderAgentConfig, AcpAgentConfig],
                        Field(discriminator="kind")]
AGENT_KINDS = ("builtin", "command", "claude", "codex", "gemini", "opencode", "aider", "acp")
_agent_config = TypeAdapter(AgentConfig)


def parse_agent_config(data: dict) -> AnyAgentConfig:
    """An agent's config from its dict (as the runner gets it in spec.json); no kind means builtin."""
    return _agent_config.validate_python({"kind": "builtin", **data})


Api = Literal["chat", "responses", "messages", "gemini"]
"""The wire formats the gateway speaks: OpenAI chat completions, OpenAI Responses, Anthropic Messages,
Gemini generateContent."""


class UpstreamConfig(_Section):
    base_url: str = Field(description="the API root with its version, as the OpenAI SDK takes it "
                                      "(e.g. http://127.0.0.1:11434/v1); /chat/completions, "
                                      "/responses, /messages or /models/MODEL:ACTION is appended")
    apis: list[Api] = Field(default_factory=lambda: ["chat"], min_length=1)
    key_env: str | None = Field(None, description="environment variable holding the real API key")
    models: list[str] = Field(default_factory=list, description="model name patterns (fnmatch) routed here")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class BudgetConfig(_Section):
    """Spending limits; unset means no limit, 0 refuses every call. Tokens are input + output."""
    attempt_usd: float | None = Field(None, ge=0)
    task_usd: float | None = Field(None, ge=0)
    day_usd: float | None = Field(None, ge=0)
    attempt_tokens: int | None = Field(None, ge=0)
    task_tokens: int | None = Field(None, ge=0)
    day_tokens: int | None = Field(None, ge=0)

    @property
    def any(self) -> bool:
        return any(value is not None for value in self.model_dump().values())


class PriceConfig(_Section):
    """US dollars per million tokens."""
    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cached: float | None = Field(None, ge=0, description="cached input; unset = the input price")


class GatewayConfig(_Section):
    enabled: bool = Field(False, description="`claw run` starts the gateway and points agents at it")
    port: int = Field(0, ge=0, le=65535, description="port on 127.0.0.1; 0 picks a free one")
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(600.0, gt=0, description="longest silence from an upstream, seconds")
    retries: int = Field(2, ge=0, le=10, description="for 408/409/429/5xx and refused connections")
    retry_backoff: float = Field(0.5, ge=0, description="first wait in seconds; doubles each retry")
    transcripts: bool = True
    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    default: dict[Api, str] = Field(default_factory=dict, description="upstream per API when no pattern matches")
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    prices: dict[str, PriceConfig] = Field(default_factory=dict, description="per model name or pattern")

    @model_validator(mode="after")
    def _defaults_exist(self) -> "GatewayConfig":
        for api, name in self.default.items():
            if name not in self.upstreams:
                raise ValueError(f"default.{api} names upstream '{name}', which is not under [gateway.upstreams]")
            if api not in self.upstreams[name].apis:
                raise ValueError(f"default.{api} names upstream '{name}', whose apis do not include '{api}'")
        return self


class ResearchParamConfig(_Section):
    """A number the hillclimb agent may change: `key` (dotted) in a JSON or TOML file."""
    file: str = Field(description="JSON or TOML file, relative to the repository root")
    key: str | None = Field(None, description="dotted key in the file; unset: the parameter's name")
    min: float
    max: float
    integer: bool = False
    log: bool = Field(False, description="search on a log scale (learning rates, sizes)")

    @model_validator(mode="after")
    def _range(self) -> "ResearchParamConfig":
        if self.min >= self.max:
            raise ValueError(f"min ({self.min:g}) must be below max ({self.max:g})")
        if self.log and self.min <= 0:
            raise ValueError("a log-scale parameter needs min > 0")
        return self


class ResearchConfig(_Section):
    name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="the research branch is claw/research/NAME")
    program: str = Field("program.md", description="the agent's instructions, relative to the repository root")
    command: str = Field(min_length=1, description="runs one experiment (bash, in the worktree)")
    workdir: str = Field(".", description="folder the command runs in, relative to the repository root")
    metric_regex: str | None = Field(None, description="first group (or whole match) of the last match is the metric")
    metric_key: str | None = Field(None, description="dotted key in the last JSON line of the output")
    goal: Literal["minimize", "maximize"] = "minimize"
    min_improvement: float = Field(0.0, ge=0, description="how much better than the best a change must "
                                                         "be to be kept (above the metric's noise)")
    time_budget: float = Field(300.0, gt=0, description="seconds one experiment may run before it is killed")
    agent_timeout: float = Field(1800.0, gt=0, description="seconds the agent has to make its change")
    scope: list[str] = Field(min_length=1, description="globs of the files the agent may change")
    agent: str = Field("hillclimb", description="hillclimb, or any agent under [agents]")
    parallel: int = Field(1, ge=1, le=64, description="experiments at once, each from the best commit")
    seed: int | None = Field(None, description="the hillclimb agent's random seed (unset: random)")
    params: dict[str, ResearchParamConfig] = Field(default_factory=dict,
                                                   description="numbers the hillclimb agent perturbs")

    @model_validator(mode="after")
    def _one_metric(self) -> "ResearchConfig":
        import re
        if (self.metric_regex is None) == (self.metric_key is None):
            raise ValueError("set exactly one of metric_regex and metric_key")
        if self.metric_regex is not None:
            try:
                re.compile(self.metric_regex)
            except re.error as error:
                raise ValueError(f"metric_regex is not a valid regular expression: {error}") from None
        return self


class DaemonConfig(_Section):
    tick: float = Field(0.5, gt=0, le=60, description="seconds between looks at attempts when idle")
    heartbeat_minutes: float = Field(0, ge=0, description="read HEARTBEAT.md and think this often; 0 = off")
    heartbeat_agent: str = Field("builtin", description="built-in agent whose model runs the heartbeat")


class TaskTemplate(_Section):
    """The task a schedule or watcher queues."""
    title: str = Field(min_length=1)
    body: str = ""
    kind: str = "feature"
    importance: Importance = Importance.normal
    priority: int = 0
    agent: str | None = None
    footprint: list[str] = Field(default_factory=list)


class ResearchScheduleConfig(_Section):
    """A research run a schedule starts (`claw research run` with these options)."""
    hours: float | None = Field(8.0, gt=0, description="start no new round after this many hours")
    max_experiments: int | None = Field(None, ge=1)
    parallel: int | None = Field(None, ge=1, le=64, description="unset: research.parallel")
    agent: str | None = Field(None, description="unset: research.agent")


class ScheduleConfig(_Section):
    name: str = Field(min_length=1, description="unique; the store remembers its last fire by it")
    cron: str = Field(description="five-field cron expression in local time, e.g. '0 2 * * *'")
    task: TaskTemplate | None = Field(None, description="the task it queues")
    research: ResearchScheduleConfig | None = Field(None, description="or the research run it starts")

    @model_validator(mode="after")
    def _one_action(self) -> "ScheduleConfig":
        if (self.task is None) == (self.research is None):
            raise ValueError(f"schedule '{self.name}' needs exactly one of `task` (a task to queue) "
                             "and `research` (a research run to start)")
        return self

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"not a valid cron expression: {value!r} (e.g. '0 2 * * *')")
        return value


class WatcherConfig(_Section):
    name: str = Field(min_length=1, description="unique; the store remembers what it last saw by it")
    command: str = Field(min_length=1, description="run with bash in the repository's root")
    interval: float = Field(60.0, gt=0, description="seconds between runs")
    timeout: float = Field(60.0, gt=0, description="seconds before the command is killed (counts as a failure)")
    on: Literal["change", "fail", "match"] = "change"
    pattern: str | None = Field(None, description="regular expression, for on = 'match'")
    notify: bool = Field(True, description="send a notification with the output")
    importance: Importance = Importance.normal
    task: TaskTemplate | None = Field(None, description="queue this task, the output appended to its body")

    @model_validator(mode="after")
    def _pattern_for_match(self) -> "WatcherConfig":
        import re

        if self.on == "match":
            if not self.pattern:
                raise ValueError("on = 'match' needs a `pattern`")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(f"pattern {self.pattern!r} is not a valid regular expression: {error}")
        if not self.notify and self.task is None:
            raise ValueError("a watcher needs notify = true or a [watcher.task], or it does nothing")
        return self


def parse_quiet_hours(text: str) -> tuple[int, int]:
    """'22:00-07:00' as minutes after midnight (start, end); the window may wrap past midnight."""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if not match or int(match[1]) > 23 or int(match[3]) > 23 or int(match[2]) > 59 or int(match[4]) > 59:
        raise ValueError(f"quiet_hours must look like '22:00-07:00', not {text!r}")
    start, end = int(match[1]) * 60 + int(match[2]), int(match[3]) * 60 + int(match[4])
    if start == end:
        raise ValueError(f"quiet_hours {text!r} starts and ends at the same time")
    return start, end


class NotifyConfig(_Section):
    urls: list[str] = Field(default_factory=list, description="apprise URLs: tgram://, slack://, ntfy://, mailto://, json://...")
    events: list[str] = Field(
        default_factory=lambda: ["review", "merged", "failed", "budget", "bounced", "blocked", "watcher",
                                 "heartbeat"],
        description="which happenings are sent")
    quiet_hours: str | None = Field(None, description="local 'HH:MM-HH:MM'; held until it ends, then sent as a digest")
    digest_minutes: float = Field(0, ge=0, description="batch low-importance notifications this often; 0 = send each")
    digest_importance: list[Importance] = Field(default_factory=lambda: [Importance.low])

    @field_validator("quiet_hours")
    @classmethod
    def _valid_hours(cls, value: str | None) -> str | None:
        if value is not None:
            parse_quiet_hours(value)
        return value


class WebhookConfig(_Section):
    enabled: bool = Field(False, description="`claw up` serves the webhook")
    port: int = Field(8765, ge=0, le=65535, description="port on 127.0.0.1; 0 picks a free one")
    token_env: str = Field("CLAW_WEBHOOK_TOKEN", description="variable with the bearer token; "
                                                            "unset: one is made in .claw/run/webhook.token")
    max_body: int = Field(1 << 20, ge=1024, description="largest request body in bytes; larger gets 413")


class TelegramConfig(_Section):
    enabled: bool = False
    token_env: str = Field("TELEGRAM_BOT_TOKEN", description="variable with the bot's token from @BotFather")
    chat_ids: list[int] = Field(default_factory=list, description="chats allowed to command the fleet; empty = none")
    base_url: str = Field("https://api.telegram.org/bot", description="Bot API root (a self-hosted Bot API server, or an emulator in tests)")


DEFAULT_SETUP_INPUTS = [
    "**/requirements*.txt", "**/pyproject.toml", "**/setup.py", "**/setup.cfg", "**/poetry.lock",
    "**/uv.lock", "**/Pipfile.lock", "**/package.json", "**/package-lock.json", "**/yarn.lock",
    "**/pnpm-lock.yaml", "**/Cargo.lock", "**/go.sum", "**/Gemfile.lock", "**/composer.lock",
]


class WorkspaceConfig(_Section):
    """What makes a worktree ready to run: copied files, setup commands, environment, ports."""
    include: list[str] = Field(default_factory=list, description="untracked paths (globs) of your checkout "
                               "copied into every workspace, e.g. .env; never committed")
    link: list[str] = Field(default_factory=list, description="untracked paths hard-linked instead of "
                            "copied: only big files nothing edits in place (an edit would reach yours)")
    setup: list[str] = Field(default_factory=list, description="commands run once when a workspace is made")
    teardown: list[str] = Field(default_factory=list, description="commands run before a workspace is removed")
    setup_timeout: float = Field(900.0, gt=0, description="seconds for all setup commands together")
    setup_network: bool = Field(True, description="setup and teardown reach the network from their sandbox "
                                "(installs fetch packages); false: offline like the checks")
    setup_inputs: list[str] = Field(default_factory=lambda: list(DEFAULT_SETUP_INPUTS),
                                    description="tracked files (globs) whose change runs setup again")
    env: dict[str, str] = Field(default_factory=dict, description="variables for setup, agent and checks; "
                                "$CLAW_PORT, ${WEB_PORT}... are replaced")
    ports: list[str] = Field(default_factory=list, description="names of extra ports, e.g. WEB_PORT")
    port_range: tuple[int, int] = Field((20000, 29999), description="ports handed out to workspaces")
    ports_per_workspace: int = Field(10, ge=1, le=1000)
    share_caches: bool = Field(True, description="pip, npm, yarn, uv and Go caches in .claw/run/cache")
    shared_venv: bool = Field(False, description="one virtual environment per lock-file state, shared "
                              "read-only by the workspaces; see README for when that is safe")
    venv_setup: list[str] = Field(default_factory=list, description="commands that fill a new shared venv")
    venv_python: str = Field("python3", description="the Python a shared venv is made with")
    venv_args: list[str] = Field(default_factory=list, description="extra `python -m venv` arguments")

    @model_validator(mode="after")
    def _ports_fit(self) -> "WorkspaceConfig":
        low, high = self.port_range
        if not 1024 <= low <= high <= 65535:
            raise ValueError("port_range must be [low, high] with 1024 <= low <= high <= 65535")
        if len(self.ports) + 1 > self.ports_per_workspace:
            raise ValueError(f"{len(self.ports)} named ports and CLAW_PORT need ports_per_workspace >= "
                             f"{len(self.ports) + 1}")
        if high - low + 1 < self.ports_per_workspace:
            raise ValueError("port_range holds fewer ports than ports_per_workspace")
        for name in self.ports:
            if not name.isidentifier() or name == "CLAW_PORT":
                raise ValueError(f"port name {name!r} must be a variable name other than CLAW_PORT")
        return self


class SandboxConfig(_Section):
    """Every agent, check and setup in bubblewrap: the worktree writable, the rest read-only, HOME
    and the person's checkout hidden, the network only to the model."""
    enabled: bool | Literal["auto"] = Field("auto", description='"auto": sandbox when bwrap works here, '
                                                                'else warn and run unsandboxed')
    network: bool = Field(False, description="let sandboxed agents and checks reach the whole network")
    read_only: list[str] = Field(default_factory=list, description="more folders shown read-only inside "
                                                                     "(toolchains under a hidden HOME)")
    allow_hosts: list[str] = Field(default_factory=list, description="host[:port] agents may reach through "
                                                                       "the sandbox's HTTPS proxy")
    writable: list[str] = Field(default_factory=list, description="folders outside the worktree agents and "
                                                                    "checks may write (never one holding this checkout)")


class SecretsConfig(_Section):
    """Secret values clawfleet hides from every log, note and notification, and never lands."""
    env: list[str] = Field(default_factory=list, description="variables holding secrets beyond the "
                           "provider keys (*_API_KEY, *_TOKEN... are known already)")


class MemoryConfig(_Section):
    prompt_notes: int = Field(5, ge=0, le=50, description="most relevant notes put into each prompt")
    learn: bool = Field(True, description="after each attempt, keep its summary and check results as a note")
    embeddings_model: str | None = Field(None, description="an embedding model: search ranks by meaning as "
                                                           "well as by words (needs the `embeddings` extra)")
    embeddings_base_url: str | None = Field(None, description="its OpenAI-compatible API root; unset: "
                                                              "OPENAI_BASE_URL, else OpenAI")
    embeddings_api_key_env: str | None = Field(None, description="variable holding its key; unset: OPENAI_API_KEY")


class Config(_Section):
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    merge: MergeConfig = Field(default_factory=MergeConfig)
    agents: dict[str, AgentConfig] = Field(default_factory=dict)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    research: ResearchConfig | None = None
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    schedule: list[ScheduleConfig] = Field(default_factory=list)
    watcher: list[WatcherConfig] = Field(default_factory=list)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    workspace: WorkspaceConfig = Field(default_factory=WorkspaceConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> "Config":
        for table, entries in (("schedule", self.schedule), ("watcher", self.watcher)):
            names = [entry.name for entry in entries]
            for name in names:
                if names.count(name) > 1:
                    raise ValueError(f"two [[{table}]] entries are named '{name}'; names must differ")
        return self

    def agent(self, name: str, *, model: str | None = None, effort: str | None = None) -> AnyAgentConfig:
        """An agent's config; a task's own `model` and `effort` (when given) over its settings."""
        if name in self.agents:
            config = self.agents[name]
        elif name == "builtin":
            config = BuiltinAgentConfig()
        else:
            known = ", ".join(sorted({"builtin", *self.agents}))
            raise ConfigError(f"unknown agent '{name}' (known: {known})",
                              hint="add it under [agents.NAME] in .claw/config.toml, or pick a known one")
        if model is None and effort is None:
            return config
        if effort is not None and "effort" not in type(config).model_fields:
            raise ConfigError(f"agent '{name}' (kind {config.kind}) has no reasoning effort to set",
                              hint="leave out --effort, or give the task an agent that takes one")
        if model is not None and "model" not in type(config).model_fields:
            raise ConfigError(f"agent '{name}' (kind {config.kind}) runs no model of ours to choose",
                              hint="leave out --model for a command agent")
        changes = {key: value for key, value in (("model", model), ("effort", effort)) if value is not None}
        try:
            return parse_agent_config({**config.model_dump(), **changes})
        except ValidationError as error:
            problem = error.errors()[0]
            raise ConfigError(f"agent '{name}': {'.'.join(map(str, problem['loc'][1:]))} "
                              f"{problem['input']!r}: {problem['msg']}",
                              hint="see the values its kind takes in the README (Agents)") from None


def load_config(path: Path) -> Config:
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text: {error}",
                          hint="save it as UTF-8, or move it away and run `claw init`") from None
    except tomllib.TOMLDecodeError as error:
        twice = "Cannot overwrite a value" in str(error)  # tomllib's words for a key set twice
        raise ConfigError(f"{path}: not valid TOML: {error}",
                          hint="a key is set twice in one table there (uncommenting a second one?): keep one"
                          if twice else "fix the syntax, or move the file away and run `claw init`") from error
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read", hint=_TOO_DEEP) from None
    try:
        config = Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{path}: {_describe(error)}",
                          hint="see the commented defaults that `claw init` writes") from None
    except RecursionError:
        raise ConfigError(f"{path}: a value is nested too deeply", hint=_TOO_DEEP) from None
    for key, name, known in _agent_names(config):
        if name not in known:
            raise ConfigError(f"{path}: `{key}` names an unknown agent '{name}' (known: {', '.join(sorted(known))})",
                              hint=f"add it under [agents.{name}], or name a known one")
    return config


# tomllib and pydantic descend one Python frame per level of arrays and tables.
_TOO_DEEP = "no setting takes more than a few levels of arrays or tables; see the defaults `claw init` writes"


def _agent_names(config: Config) -> list[tuple[str, str, set[str]]]:
    """Every key that names an agent, with the names it may take: caught when the config is
    read, not when the first task (or review, or schedule) reaches for it."""
    known = {"builtin", *config.agents}
    names = [("fleet.default_agent", config.fleet.default_agent, known),
             ("review.ai_reviewer", config.review.ai_reviewer, known),
             ("daemon.heartbeat_agent", config.daemon.heartbeat_agent, known),
             ("research.agent", config.research and config.research.agent, known | {"hillclimb"})]
    names += [(f"fleet.agent_slots.{name}", name, known) for name in config.fleet.agent_slots]
    for table, entries in (("schedule", config.schedule), ("watcher", config.watcher)):
        for entry in entries:
            if entry.task is not None:
                names.append((f"{table} '{entry.name}' task.agent", entry.task.agent, known))
            research = getattr(entry, "research", None)
            if research is not None:
                names.append((f"{table} '{entry.name}' research.agent", research.agent, known | {"hillclimb"}))
    return [(key, name, allowed) for key, name, allowed in names if name]


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:3]:
        loc = [str(part) for part in item["loc"]]
        if loc[:1] == ["agents"] and len(loc) > 3:
            del loc[2]  # pydantic puts the union's tag (the agent kind) into the path
        key = ".".join(loc)
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key `{key}`")
        elif item["type"] == "union_tag_invalid":
            problems.append(f"`{key}.kind` must be one of {', '.join(repr(k) for k in AGENT_KINDS)}")
        else:
            got = repr(item.get("input"))
            problems.append(f"`{key}`: {item['msg']} (got {got[:60] + '...' if len(got) > 60 else got})")
    return "; ".join(problems)


DEFAULT_CONFIG = '''\
# clawfleet configuration. Every key is optional; the values shown are the defaults.
# Docs: README.md ("Configuration").

[fleet]
slots = 3                 # agents running at once
target = {target}           # branch that approved work lands on
default_agent = "builtin" # agent used when a task names none
attempt_timeout = 1800    # seconds; the attempt's whole process group is killed after this
stall_timeout = 300       # seconds with no new output, file change or CPU use: the attempt ends
                          # "stalled" (a retry line repeated is not new output); 0 = off
max_attempts = 2          # automatic attempts after a crash or timeout
retry_backoff = 10        # seconds before such a retry starts; doubles with each one
pool_size = 2             # ready worktrees kept so attempts start without a checkout
respect_footprints = true # never run two tasks whose footprints (--footprint) overlap
# agent_slots = {{ claude = 2 }}   # at most this many attempts of an agent at once
radar_interval = 5        # seconds between conflict predictions while attempts run; 0 = off

[checks]
# Commands run in the attempt's worktree after the agent, and again before merging.
commands = [{checks}]
timeout = 600
fix_rounds = 1            # times a failing check's output is fed back to the agent
on_failure = "fail"       # "fail" the attempt, or send it to "review" anyway

[review]
auto_approve = ["low"]    # importance levels approved without a person when checks pass
# Or approve by risk (0-100, from the diff's size, files, deletions, sensitive paths, tests
# and checks): per importance, the highest risk that lands without a person.
# auto_max_risk = {{ normal = 30, high = 10 }}
# Between auto_max_risk and ai_max_risk, an AI reviewer looks first: the agent named here, of
# any kind (a builtin model reads the diff; a CLI such as claude reads a checkout of the change):
# ai_reviewer = "builtin"
# ai_max_risk = {{ normal = 60, high = 40 }}
# ai_timeout = 900           # seconds; a reviewer still at it then leaves the attempt to a person
# sensitive = [".github/**", ".ci/**", "**/migrations/**", "**/*.lock", "pyproject.toml"]
merge_on_approve = true   # `claw run` lands approved attempts as it goes

[merge]
batch_size = 1            # land this many approved attempts with one check run (bisects on red)
resolve_conflicts = true  # a conflict at merge time queues a task to resolve it
squash = true             # one commit per attempt (false: its own commits, each one checked)

# The built-in agent: one shell command per turn, on any OpenAI-compatible or Anthropic model.
# Unset keys fall back to CLAW_MODEL, OPENAI_MODEL/OPENAI_BASE_URL/OPENAI_API_KEY or
# ANTHROPIC_MODEL/ANTHROPIC_BASE_URL/ANTHROPIC_API_KEY.
[agents.builtin]
kind = "builtin"
# provider = "openai"     # or "anthropic"
# model = "gpt-4.1"
# base_url = "http://127.0.0.1:8080/v1"
# api_key_env = "OPENAI_API_KEY"
max_steps = 40
max_tokens = 400000
command_timeout = 300
output_limit = 10000

# Claude Code and Codex as agents (`claw agents` shows whether each is installed). base_url and
# api_key_env point them at any compatible endpoint; unset, they use their own login or key.
# [agents.claude]
# kind = "claude"
# model = "sonnet"
# effort = "high"
# [agents.codex]
# kind = "codex"
# model = "gpt-5-codex"
# effort = "medium"
# base_url = "http://127.0.0.1:8080/v1"
# api_key_env = "OPENAI_API_KEY"
# [agents.gemini]
# kind = "gemini"
# model = "gemini-2.5-pro"
# [agents.opencode]
# kind = "opencode"
# model = "qwen3-coder"
# base_url = "http://127.0.0.1:11434/v1"   # any OpenAI-compatible endpoint
# [agents.aider]
# kind = "aider"
# model = "qwen3-coder"
# base_url = "http://127.0.0.1:11434/v1"
# binary = "~/.venvs/aider/bin/aider"       # aider is best kept in a venv of its own
# Any agent that speaks the Agent Client Protocol (Gemini CLI natively; Claude Code and Codex
# through claude-agent-acp and codex-acp): provider says how base_url and model reach it.
# [agents.gemini-acp]
# kind = "acp"
# command = ["gemini", "--acp"]
# provider = "gemini"                      # gemini | anthropic | openai; unset: from the command

# Any program can be an agent: it runs in the worktree with CLAW_TASK_ID and CLAW_PROMPT_FILE set.
# [agents.my-agent]
# kind = "command"
# command = ["my-agent", "--prompt-file", "{{prompt_file}}"]

# What makes a worktree ready to run (`claw workspace list | doctor | prune`). Workspaces are
# set up once and kept warm in the pool; setup runs again only when a file of setup_inputs
# changed. Setup and agents see CLAW_PORT (the first of this workspace's own ports) and
# each name of `ports`, so parallel dev servers never collide.
[workspace]
# include = [".env", "certs/"]     # untracked files copied into every workspace, never committed
# link = ["fixtures/big.db"]       # hard-linked instead: only files nothing edits in place
# setup = ["python3 -m venv .venv", ".venv/bin/pip install -r requirements.txt"]
# teardown = ["docker compose down"]
# setup_inputs = ["**/requirements*.txt", "**/package-lock.json"]   # default: common lock files
# env = {{ DATABASE_URL = "postgres://localhost:${{DB_PORT}}/dev" }}
# ports = ["WEB_PORT", "DB_PORT"]
port_range = [20000, 29999]
ports_per_workspace = 10
share_caches = true       # PIP_CACHE_DIR, npm_config_cache... point at .claw/run/cache
shared_venv = false       # one venv per lock-file state, shared read-only (see README)
# venv_setup = ["pip install --no-index --find-links wheels -r requirements.txt"]


# Every agent (the CLI itself, not only its commands), every check and setup runs in a
# bubblewrap sandbox: the worktree writable, the rest of the file system read-only, HOME, /tmp,
# /run and this checkout hidden, no network but the model's address (README: Security model).
[sandbox]
enabled = "auto"          # "auto": sandbox when bwrap works here, else one loud warning and none;
                          # true: refuse to run without it; false: never sandbox
network = false           # let sandboxed agents and checks reach the whole network
# read_only = ["~/.cargo"]            # toolchains under your (hidden) HOME that checks need
# allow_hosts = ["pypi.org:443"]      # hosts agents may reach through the sandbox's proxy

# Secrets: provider keys (*_API_KEY, *_TOKEN...), the gateway's upstream keys and the values in
# files of [workspace] include are redacted from every log, note and notification, and a diff
# that holds one never lands. Name more variables here:
# [secrets]
# env = ["DATABASE_PASSWORD"]

# Memory: notes with provenance (`claw memory`), searched with SQLite FTS5.
[memory]
prompt_notes = 5          # most relevant notes (BM25 on the task's title and body) in each prompt
learn = true              # after each attempt, keep its summary and check results as a note

# The LLM gateway (`claw gateway`): a metering proxy on 127.0.0.1 for OpenAI chat, OpenAI
# Responses and Anthropic Messages. Each attempt gets its own key, so tokens, cost and budgets
# are counted per attempt. Upstreams are named; a model goes to the first upstream whose
# `models` pattern matches it, else to the default for its API.
# [gateway]
# port = 0                  # 0 picks a free port
# connect_timeout = 10
# read_timeout = 600        # longest silence from an upstream
# retries = 2               # 408/409/429/5xx and refused connections, before any byte is sent
# retry_backoff = 0.5
# transcripts = true        # .claw/run/attempts/ID/transcript.jsonl, secrets redacted
# default = {{ chat = "local" }}
# [gateway.upstreams.local]
# base_url = "http://127.0.0.1:11434/v1"   # the API root with its version
# apis = ["chat", "responses"]             # and/or "messages" (Anthropic), "gemini"
# key_env = "LOCAL_API_KEY"                # where the real key is; agents never see it
# models = ["llama*", "qwen*"]
# [gateway.budget]                         # unset = no limit; 0 refuses every call
# attempt_usd = 2.0
# task_usd = 5.0
# day_usd = 50.0
# attempt_tokens = 2000000
# [gateway.prices."qwen*"]                 # dollars per million tokens
# input = 0.0
# output = 0.0
# cached = 0.0

# Research mode (`claw research init` writes this section and program.md): experiments that
# change the files in scope, run for a fixed time, and are kept only if the metric gets better.
# [research]
# name = "default"              # the research branch is claw/research/NAME
# program = "program.md"        # the agent's instructions
# command = "python3 train.py"  # one experiment, run with bash in the worktree
# workdir = "."                 # where the command runs, relative to the repository root
# metric_regex = "val_loss=([0-9.eE+-]+)"   # or: metric_key = "val.loss" (last JSON line)
# goal = "minimize"             # or "maximize"
# min_improvement = 0           # keep a change only if it beats the best by more than this (noise)
# time_budget = 300             # seconds; the experiment's process group is killed after this
# agent_timeout = 1800          # seconds the agent has to make its change
# scope = ["params.json"]       # globs of the files the agent may change; others discard it
# agent = "hillclimb"           # needs no model; or any agent under [agents]
# parallel = 1
# [research.params.lr]          # a number the hillclimb agent perturbs
# file = "params.json"          # JSON or TOML; key defaults to the name (dotted for nesting)
# min = 0.0001
# max = 0.1
# log = true
# The daemon (`claw up`): runs the fleet continuously, fires schedules and watchers, thinks on
# a heartbeat, notifies you and takes commands over a webhook or Telegram.
# [daemon]
# heartbeat_minutes = 30    # read HEARTBEAT.md and let the model queue tasks or message you; 0 = off
# heartbeat_agent = "builtin"
# [[schedule]]
# name = "nightly-research"
# cron = "0 2 * * *"        # local time: every night at 2
# task = {{ title = "Research flaky tests", kind = "research", importance = "low" }}
# [[watcher]]
# name = "ci"
# command = "curl -fsS http://127.0.0.1:8080/status"
# interval = 60             # seconds
# on = "change"             # or "fail" (non-zero exit) or "match" (with pattern = "regex")
# notify = true             # send the output to [notify] urls
# task = {{ title = "CI status changed: look into it", importance = "high" }}
# [notify]
# urls = ["ntfy://my-topic", "tgram://BOT_TOKEN/CHAT_ID"]   # any apprise URL
# events = ["review", "merged", "failed", "budget", "bounced", "blocked", "watcher", "heartbeat"]
# quiet_hours = "22:00-07:00"  # held, then sent as one digest
# digest_minutes = 60          # low-importance news batched this often; 0 = one by one
# [webhook]
# enabled = true
# port = 8765                  # on 127.0.0.1; bearer token from CLAW_WEBHOOK_TOKEN or .claw/run/webhook.token
# [telegram]                   # pip install 'clawfleet[telegram]'
# enabled = true
# token_env = "TELEGRAM_BOT_TOKEN"
# chat_ids = [123456789]       # who may command the fleet
'''
