"""`acp`: any agent that speaks the Agent Client Protocol (Zed's ACP) on stdin/stdout.

    [agents.gemini-acp]
    kind = "acp"
    command = ["gemini", "--acp"]            # or ["claude-agent-acp"], ["codex-acp"], ...
    provider = "gemini"                      # unset: guessed from the command (gemini/claude/codex)
    model = "gemini-2.5-pro"
    base_url = "http://127.0.0.1:8080"       # a gateway, or any server of that provider's API
    api_key_env = "GEMINI_API_KEY"

clawfleet is the ACP client, through the `agent-client-protocol` SDK: it starts the command in
the worktree, contained like every agent CLI (argv from `launch_args`, environment from
`environment`, wrapped by containment.contain with `reach`, spawned in `_spawn` only), initializes, opens a session whose cwd is the worktree
(or loads the session of the previous round, when the agent can), sends the prompt and waits
for the turn to end, at most until the attempt's deadline or until the stall guard sees no
progress for `[fleet] stall_timeout`, when the agent's process group is killed. Every JSON-RPC
message is kept as `acp-N.jsonl` in the attempt folder; session updates
(the agent's messages, tool calls and their results, file edits, plans) become readable lines in
the agent log. base_url, the key and the model reach the agent by its provider's own variables
(gemini: GOOGLE_GEMINI_BASE_URL, GEMINI_API_KEY, GEMINI_MODEL; anthropic: ANTHROPIC_BASE_URL,
ANTHROPIC_API_KEY, ANTHROPIC_MODEL; openai: OPENAI_BASE_URL, OPENAI_API_KEY, and a CODEX_HOME
whose config.toml names that provider). It gets a HOME of its own in the attempt folder, the same
for every round, where it keeps its sessions; `inherit` shows it there what its program's own
kind is shown of the person's (OWN_KIND: gemini, claude-agent-acp, codex-acp), and nothing to
any other program.

Permission requests are answered by one rule: a tool call that reads, searches, edits, deletes
or moves files is allowed when every path it names resolves inside the worktree (and not into
`.git`); a command (`execute`) is allowed, since the agent runs it itself, in the worktree and
inside its own sandbox, where it can do nothing it could not do anyway; thinking is allowed;
everything else (fetching from the web, switching modes, other tools) is refused. File reads and
writes the agent asks of clawfleet are served only inside the worktree (agents/_inside.py); no
terminal is offered, so no command the agent asks for ever runs outside its sandbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from ..config import AcpAgentConfig
from ..containment import Reach, contain
from ..errors import ClawError
from ..procs import Finished, StallWatch, kill_group
from ..sandbox import program_root
from . import AgentJob, AgentOutcome
from ._cli import Program, api_key, log_tail, private_dirs, settled, short
from ._inside import Missing, Refused, is_inside, read_text, write_text

# What `claw agents` and a missing program's error suggest, per program of the command.
INSTALL = {"gemini": "npm install -g @google/gemini-cli",
           "claude-agent-acp": "npm install -g @zed-industries/claude-agent-acp",
           "codex-acp": "npm install -g @zed-industries/codex-acp"}
LINE_LIMIT = 50 * 1024 * 1024       # one JSON-RPC message (a file's content) may be large
STOP_GRACE_S = 3.0                  # after stdin closes, before the group is killed
FILE_KINDS = {"read", "edit", "delete", "move", "search"}
KEY_VARIABLE = "CLAW_CODEX_API_KEY"  # the variable a written Codex provider's env_key names
# Agents told "" rather than "not found" when they read a file that does not exist: Gemini CLI
# (0.61) reads a file before writing it and takes only a Node ENOENT as "new file", which an
# ACP error never is, so it would refuse to create any file through clawfleet.
EMPTY_FOR_MISSING = {"gemini-cli"}
REPLAY_QUIET_S, REPLAY_WAIT_S = 0.3, 5.0   # a loaded session's replay is over after this much quiet
# The agent CLI kind whose files (login, instructions...) a program of the command keeps in HOME,
# as that kind's own CLI does: what `inherit` shows it. Another program is shown none of them.
OWN_KIND = {"gemini": ("gemini", "gemini"), "claude-agent-acp": ("claude", "anthropic"),
            "claude-code-acp": ("claude", "anthropic"), "codex-acp": ("codex", "openai")}


def sdk_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("agent-client-protocol")
    except PackageNotFoundError:
        return None


class AcpAgent:
    scratch: tuple[str, ...] = ()

    def __init__(self, name: str, config: AcpAgentConfig) -> None:
        self.name = name
        self.config = config
        self.session_id: str | None = None  # kept from round to round: a fix round resumes it

    def own_cli(self) -> Any:
        """The agent CLI kind its program is (OWN_KIND), configured as this agent: whose login,
        login hosts and inherited files it has. None for any other program."""
        config = self.config
        kind, provider = OWN_KIND.get(Path(config.command[0]).name, (None, None))
        if kind is None or provider != config.provider:   # its files are where that provider's HOME is
            return None
        from . import make_agent
        return make_agent(self.name, {"kind": kind, "base_url": config.base_url, "api_key_env": config.api_key_env,
                                      "inherit": list(config.inherit)})

    def login(self, gateway: bool = False) -> tuple[bool, str]:
        """As its program's own kind sees it (claw run's check before starting); unknown
        programs keep their own settings."""
        own = self.own_cli()
        return own.login(gateway) if own is not None else (True, "its own settings")

    # -- how the process starts: the one argv and environment the sandbox wraps ------------

    def launch_args(self, job: AgentJob) -> list[str]:
        program, *rest = self.config.command
        found = Program("acp", program, INSTALL.get(Path(program).name, f"install {program}")).require(
            self.name, program if os.sep in program else None)
        return [found, *rest]

    def environment(self, job: AgentJob) -> dict[str, str]:
        config = self.config
        home = job.attempt_dir / "acp-home"
        home.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home)}
        key = api_key(self.name, config.api_key_env, config.base_url)
        if config.provider == "gemini":
            from .gemini import auth_type, prepare_home
            prepare_home(home, auth_type(config.base_url, config.api_key_env,
                                         config.inherit if self.own_cli() is not None else ()))
            env.update(_set(GOOGLE_GEMINI_BASE_URL=config.base_url, GEMINI_API_KEY=key,
                            GEMINI_MODEL=config.model))
        elif config.provider == "anthropic":
            env.pop("CLAUDE_CONFIG_DIR", None)  # it would point it back at the person's settings
            own = self.own_cli()
            if own is not None:
                own._write_account(home)   # its ~/.claude.json: the account entries of the login
            env.update({"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
                        "DISABLE_AUTOUPDATER": "1"})
            if job.sandbox is not None:
                # claude-agent-acp starts Claude Code able to skip permissions, which it refuses
                # as root ("cannot be used with root/sudo privileges") unless told it is sandboxed.
                env["IS_SANDBOX"] = "1"
            env.update(_set(ANTHROPIC_BASE_URL=config.base_url, ANTHROPIC_API_KEY=key,
                            ANTHROPIC_MODEL=config.model))
        elif config.provider == "openai":
            codex_home = job.attempt_dir / "acp-codex-home"
            codex_home.mkdir(exist_ok=True)
            (codex_home / "config.toml").write_text(_codex_settings(config))
            env.update(_set(CODEX_HOME=str(codex_home), OPENAI_BASE_URL=config.base_url,
                            OPENAI_API_KEY=key, **{KEY_VARIABLE: key if config.base_url else None}))
        return {**env, **config.env}

    async def _spawn(self, job: AgentJob, args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
        """The agent's process: in the worktree, in a process group of its own that the runner
        records (a restarted orchestrator kills what is left), stderr into the agent log."""
        with open(job.log, "ab") as errors:
            process = await asyncio.create_subprocess_exec(
                *args, cwd=job.workspace, env=env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=errors, process_group=0, limit=LINE_LIMIT)
        job.children.remember(process.pid)
        return process

    # -- one round ----------------------------------------------------------------------------

    def reach(self, job: AgentJob, args: list[str], env: dict[str, str]) -> Reach:
        """What the agent process may touch (containment.py), like an agent CLI's: its worktree
        and private folders (its HOME), its program and the files its command names read-only,
        its model's address, the credentials clawfleet set for it, what `inherit` shows it of
        the person's (as its program's own kind: own_cli); without base_url, its provider's own
        login hosts and key variables (those of the gemini, claude, codex kinds)."""
        from .claude import ClaudeAgent
        from .codex import CodexAgent
        from .gemini import GeminiAgent
        own = {"gemini": GeminiAgent, "anthropic": ClaudeAgent, "openai": CodexAgent}.get(self.config.provider or "")
        shown = [program_root(part) for part in args if os.path.isabs(part) and os.path.isfile(part)]
        cli = self.own_cli()
        binds, programs = cli.inherited(job, env) if cli is not None else ([], [])
        base_url = self.config.base_url
        keep = [name for name, value in env.items() if os.environ.get(name) != value]
        if not base_url and own is not None:
            keep += own.own_key_variables
        return Reach(worktree=job.workspace, project_root=job.project_root, common_dir=job.common_dir,
                     git_dir=job.git_dir, private=private_dirs(job, env), read_only=[*shown, *programs],
                     binds=binds, urls=[base_url] if base_url else [],
                     hosts=list(own.login_hosts) if own is not None and not base_url else [], keep=keep,
                     log=job.log)   # the sandbox proxy's tunnels and refusals in its log

    def run(self, job: AgentJob) -> AgentOutcome:
        try:
            args, env = self.launch_args(job), self.environment(job)
        except ClawError as error:
            return AgentOutcome(error=str(error), exit_code=127)
        with open(job.log, "a") as log:
            log.write(f"# ACP agent '{self.name}': {' '.join(args)}"
                      + ("" if job.sandbox is not None else " [UNSANDBOXED]") + "\n")
        with contain(job.sandbox, args, env, self.reach(job, args, env)) as (contained, contained_env):
            return asyncio.run(self._run(job, contained, contained_env))

    async def _run(self, job: AgentJob, args: list[str], env: dict[str, str]) -> AgentOutcome:
        import acp

        transcript = (job.attempt_dir / f"acp-{job.round}.jsonl").open("a")
        client = _Client(job)
        process = await self._spawn(job, args, env)
        connection = acp.connect_to_agent(client, process.stdin, process.stdout,
                                          observers=[lambda event: _keep(transcript, event)])
        outcome, timed_out, stalled = AgentOutcome(), False, None
        try:
            outcome = await _bounded(self._converse(connection, client, job), job, process,
                                     job.stall_watch(job.attempt_dir / f"acp-{job.round}.jsonl", job.log))
        except (asyncio.TimeoutError, TimeoutError):
            timed_out = True
            client.flush()
            client.write("[out of time: the agent's process group is stopped]")
        except _Stalled as stall:
            stalled = stall.last_line
            client.flush()
        except ConnectionError:
            client.flush()
            outcome.error = "ended"   # replaced below, once its exit status is known
        except acp.RequestError as error:
            client.flush()
            outcome.error = f"the ACP agent refused: {error} {short(error.data) if error.data else ''}".strip()
        finally:
            await connection.close()
            exit_code = await _stop(job, process, kill=timed_out or stalled is not None)
            transcript.close()
        outcome.exit_code = exit_code if exit_code > 0 else 0
        if outcome.error == "ended":
            outcome.error = (f"the ACP agent exited (status {exit_code}) before its turn ended: "
                             f"{log_tail(job.log, 3)}")
        outcome.input_tokens, outcome.output_tokens = client.input_tokens, client.output_tokens
        outcome.session_id = self.session_id
        if stalled is not None:
            return settled(outcome, job=job, finished=Finished(exit_code, False, 0.0, stalled=True,
                                                               last_output=stalled))
        return settled(outcome, timed_out)

    async def _converse(self, connection: Any, client: "_Client", job: AgentJob) -> AgentOutcome:
        import acp
        from acp.schema import ClientCapabilities, FileSystemCapabilities, Implementation

        from .. import __version__

        hello = await connection.initialize(
            protocol_version=acp.PROTOCOL_VERSION,
            client_capabilities=ClientCapabilities(
                fs=FileSystemCapabilities(read_text_file=True, write_text_file=True), terminal=False),
            client_info=Implementation(name="clawfleet", title="clawfleet", version=__version__))
        info = hello.agent_info
        client.empty_for_missing = bool(info and info.name in EMPTY_FOR_MISSING)
        can_load = bool(hello.agent_capabilities and hello.agent_capabilities.load_session)
        cwd, how = str(job.workspace), "new"
        if self.session_id and can_load:
            client.replaying = True
            try:
                await connection.load_session(cwd=cwd, session_id=self.session_id, mcp_servers=[])
                how = "loaded"
                # Some agents (Gemini CLI) replay the history after answering: let it pass first,
                # so none of it reads as this turn's reply.
                await client.settle(REPLAY_QUIET_S, REPLAY_WAIT_S)
            except acp.RequestError as error:
                detail = (error.data or {}).get("details") if isinstance(error.data, dict) else None
                client.write(f"[could not load session {self.session_id} ({detail or error}): a new one]")
            finally:
                client.replaying = False
        if how == "new":
            self.session_id = (await connection.new_session(cwd=cwd, mcp_servers=[])).session_id
        client.write(f"[acp {info.name if info else 'agent'} {info.version if info else '?'}, "
                     f"session {self.session_id} ({how}"
                     + (f", {client.replayed} updates replayed" if client.replayed else "") + ")]")
        done = await connection.prompt(session_id=self.session_id, prompt=[acp.text_block(job.prompt)])
        client.flush()
        client.usage(done)
        client.write(f"[end: {done.stop_reason}, {client.input_tokens} in / {client.output_tokens} out tokens]")
        outcome = AgentOutcome(summary=client.summary())
        if done.stop_reason != "end_turn":
            outcome.error = f"the ACP agent stopped: {done.stop_reason}"
        return outcome


class _Client:
    """clawfleet's side of the session: the log, the permission rule, the worktree's files."""

    def __init__(self, job: AgentJob) -> None:
        self.job = job
        self.root = job.workspace
        self.replaying = False
        self.replayed = 0
        self.empty_for_missing = False
        self.last_update = time.monotonic()
        self.reply: list[str] = []     # the agent's text since its last tool call
        self.last_reply = ""
        self.input_tokens = self.output_tokens = 0
        self.titles: dict[str, str] = {}

    def write(self, line: str) -> None:
        with open(self.job.log, "a") as log:
            log.write(line + "\n")

    def flush(self) -> None:
        text = "".join(self.reply).strip()
        if text:
            self.write(f"agent: {short(text, 2000)}")
            self.last_reply = text
        self.reply = []

    def summary(self) -> str:
        return "".join(self.reply).strip() or self.last_reply

    def usage(self, done: Any) -> None:
        """Tokens of the turn, where the agent reports them: ACP's `usage`, else Gemini CLI's
        `quota.token_count` in the response's _meta."""
        if done.usage is not None:
            used = done.usage
            self.input_tokens = used.input_tokens + (used.cached_read_tokens or 0) + (used.cached_write_tokens or 0)
            self.output_tokens = used.output_tokens
        else:
            count = ((done.field_meta or {}).get("quota") or {}).get("token_count") or {}
            if not isinstance(count, dict) or "input_tokens" not in count:
                return
            self.input_tokens, self.output_tokens = int(count["input_tokens"]), int(count.get("output_tokens") or 0)
        self.job.on_usage(self.input_tokens, self.output_tokens)

    # -- the Client methods of the ACP SDK ----------------------------------------------------

    async def settle(self, quiet: float, limit: float) -> None:
        """Wait until no update came for `quiet` seconds (at most `limit` seconds in all)."""
        ends = time.monotonic() + limit
        while time.monotonic() < ends and time.monotonic() - self.last_update < quiet:
            await asyncio.sleep(quiet / 3)

    async def session_update(self, session_id: str, update: Any, **_: Any) -> None:
        kind = update.session_update
        self.last_update = time.monotonic()
        if self.replaying:
            self.replayed += 1
            return
        if kind == "agent_message_chunk":
            self.reply.append(getattr(update.content, "text", "") or "")
            return
        line = None
        if kind == "tool_call":
            self.flush()
            self.titles[update.tool_call_id] = update.title
            places = ", ".join(_relative(self.root, loc.path) for loc in update.locations or [])
            line = f"-> [{update.kind or 'tool'}] {short(update.title)}" + (f" ({places})" if places else "")
            if update.status in ("completed", "failed"):   # started and done at once
                line += "".join(f"\n   {edit}" for edit in _edits(self.root, update.content))
        elif kind == "tool_call_update" and update.status in ("completed", "failed"):
            title = update.title or self.titles.get(update.tool_call_id, update.tool_call_id)
            said = _said(update.content) or (short(update.raw_output) if update.raw_output else "")
            line = f"<- [{update.status}] {short(title, 120)}" + (f": {short(said)}" if said else "")
            line += "".join(f"\n   {edit}" for edit in _edits(self.root, update.content))
        elif kind == "plan":
            marks = {"completed": "x", "in_progress": ">", "pending": " "}
            line = "plan: " + "; ".join(f"[{marks.get(e.status, ' ')}] {short(e.content, 80)}" for e in update.entries)
        elif kind == "agent_thought_chunk":
            text = getattr(update.content, "text", "") or ""
            line = f"thinking: {short(text)}" if text.strip() else None
        elif kind == "current_mode_update":
            line = f"[mode: {update.current_mode_id}]"
        elif kind == "usage_update" and update.cost is not None:
            line = f"[context {update.used}/{update.size} tokens, cost {update.cost.amount} {update.cost.currency}]"
        if line:
            self.write(line)

    async def request_permission(self, options: list[Any], session_id: str, tool_call: Any, **_: Any) -> Any:
        from acp.schema import AllowedOutcome, DeniedOutcome, RequestPermissionResponse

        allow, why = permitted(self.root, tool_call)
        wanted = ("allow_once", "allow_always") if allow else ("reject_once", "reject_always")
        option = next((o for kind in wanted for o in options if o.kind == kind), None)
        self.flush()
        title = tool_call.title or tool_call.tool_call_id
        self.write(f"?  [{tool_call.kind or 'tool'}] {short(title, 120)}: {'allowed' if allow else 'refused'} ({why})")
        if option is None:
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        return RequestPermissionResponse(outcome=AllowedOutcome(outcome="selected", option_id=option.option_id))

    async def read_text_file(self, path: str, session_id: str, line: int | None = None,
                             limit: int | None = None, **_: Any) -> Any:
        import acp
        from acp.schema import ReadTextFileResponse

        try:
            return ReadTextFileResponse(content=read_text(self.root, path, line, limit))
        except Missing:
            if self.empty_for_missing:
                return ReadTextFileResponse(content="")
            raise acp.RequestError.resource_not_found(path) from None   # agents ask before creating
        except Refused as refusal:
            self.write(f"!  read refused: {refusal}")
            raise _refused(path, refusal) from None

    async def write_text_file(self, content: str, path: str, session_id: str, **_: Any) -> Any:
        from acp.schema import WriteTextFileResponse

        try:
            size = write_text(self.root, path, content)
        except Refused as refusal:
            self.write(f"!  write refused: {refusal}")
            raise _refused(path, refusal) from None
        self.write(f"   wrote {_relative(self.root, path)} ({size} bytes)")
        return WriteTextFileResponse()


def permitted(root: Path, tool_call: Any) -> tuple[bool, str]:
    """The permission rule of the module docstring: (allowed, why)."""
    kind = tool_call.kind
    paths = [location.path for location in tool_call.locations or []]
    outside = [path for path in paths if not is_inside(root, path)]
    if outside:
        return False, f"{outside[0]} is outside the worktree or in .git"
    if kind in FILE_KINDS:
        return True, "inside the worktree"
    if kind == "execute":
        return True, "a command the agent runs in its worktree"
    if kind == "think":
        return True, "thinking"
    return False, f"{kind or 'an unnamed kind of'} tool: only file work in the worktree and commands are allowed"


def _refused(path: str, refusal: Refused) -> Exception:
    import acp
    # Invalid params, with the reason as the message: the agent shows its model the message.
    return acp.RequestError(-32602, f"refused by clawfleet: {refusal}", {"path": path, "reason": str(refusal)})


def _set(**values: str | None) -> dict[str, str]:
    return {key: value for key, value in values.items() if value}


def _codex_settings(config: AcpAgentConfig) -> str:
    lines = [f"model = {json.dumps(config.model)}"] if config.model else []
    if config.base_url:
        lines += ['model_provider = "claw"', "", "[model_providers.claw]", 'name = "clawfleet"',
                  f"base_url = {json.dumps(config.base_url)}", f'env_key = "{KEY_VARIABLE}"',
                  'wire_api = "responses"']
    return "\n".join(lines) + "\n"


class _Stalled(Exception):
    def __init__(self, last_line: str) -> None:
        super().__init__(last_line)
        self.last_line = last_line


async def _bounded(turn: Any, job: AgentJob, process: Any, watch: StallWatch | None) -> AgentOutcome:
    """The turn's outcome, unless the deadline passes first (TimeoutError) or the stall guard
    sees no output, event, file change or CPU use for its window (_Stalled)."""
    task = asyncio.ensure_future(turn)
    try:
        while True:
            left = job.deadline - time.time()
            if left <= 0:
                raise TimeoutError
            done, _ = await asyncio.wait({task}, timeout=min(left, watch.tick) if watch else left)
            if done:
                return task.result()
            if watch is not None and await asyncio.to_thread(watch.stalled, process.pid):
                raise _Stalled(watch.last_line)
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):   # its cancellation, or what it raised then
                pass


def _keep(transcript: Any, event: Any) -> None:
    side = "agent" if event.direction.value == "incoming" else "clawfleet"
    transcript.write(json.dumps({"at": round(time.time(), 3), "from": side, "message": event.message},
                                default=str) + "\n")
    transcript.flush()


async def _stop(job: AgentJob, process: asyncio.subprocess.Process, kill: bool) -> int:
    """Stop the agent: stdin closed (it may end by itself), then its group killed, waiting in a
    thread so the loop can reap it meanwhile; its exit status."""
    try:
        if not kill:
            try:
                process.stdin.close()
                await asyncio.wait_for(process.wait(), timeout=STOP_GRACE_S)
            except (asyncio.TimeoutError, TimeoutError, OSError):
                pass
        await asyncio.to_thread(kill_group, process.pid, 0.5 if process.returncode is not None else 3.0)
        return await process.wait()
    finally:
        job.children.forget(process.pid)


def _relative(root: Path, path: str) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def _said(content: Any) -> str:
    texts = [getattr(getattr(item, "content", None), "text", None) for item in content or []]
    return " ".join(text for text in texts if text)


def _edits(root: Path, content: Any) -> list[str]:
    edits = []
    for item in content or []:
        if getattr(item, "type", None) == "diff":
            old = len((item.old_text or "").splitlines())
            new = len(item.new_text.splitlines())
            edits.append(f"edit {_relative(root, item.path)}: {old} -> {new} lines")
    return edits
