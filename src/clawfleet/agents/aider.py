"""`aider`: Aider, run headless (`aider --message-file`) in the worktree.

    [agents.aider]
    kind = "aider"
    model = "qwen3-coder"                     # with base_url: the model's name there; else aider's own
    effort = "high"                           # --reasoning-effort
    edit_format = "diff"                      # whole, diff, udiff...; unset: aider picks per model
    base_url = "http://127.0.0.1:11434/v1"    # any OpenAI-compatible endpoint
    api_key_env = "OPENAI_API_KEY"
    binary = "~/.venvs/aider/bin/aider"       # aider wants an environment of its own

It edits files and leaves committing to clawfleet (`--no-auto-commits`); it neither touches
.gitignore nor asks anything (`--yes-always`). With `base_url` the model runs as `openai/MODEL`
and a model-metadata file of its own declares it, so aider looks nothing up online. Aider has no
JSON output: its chat history (`aider-N.md` in the attempt folder) is the transcript, the
assistant's last reply is the summary, token counts come from its `Tokens: ... sent, ...
received` lines and errors from its `litellm.*Error` lines.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from ..config import AiderAgentConfig
from ..containment import contain
from . import AgentJob, AgentOutcome, copy_session_files
from ._cli import CliAgent, Program, api_key, log_tail, settled

PROGRAM = Program("aider", "aider", "pipx install aider-chat (or a venv of its own: "
                                    "python3 -m venv ~/.venvs/aider && ~/.venvs/aider/bin/pip install aider-chat)")

_TOKENS = re.compile(r"Tokens: ([\d.]+)(k?) sent.*?, ([\d.]+)(k?) received")
_ERROR = re.compile(r"^(litellm\.\w+(?:Error|Exception)[^:]*): (.*)$", re.M)


def _count(number: str, thousands: str) -> int:
    return round(float(number) * (1000 if thousands else 1))


class AiderAgent(CliAgent):
    program = PROGRAM
    label = "Aider"
    transcript_prefix = "aider"
    scratch = (".aider*", ".aider*/**")   # its repo-map cache, written in the worktree
    # Its session is its chat history file (aider-N.md in aider-home): a later round starts from
    # a copy of it with --restore-chat-history, so the model sees the earlier exchanges.
    resumes = True
    config: AiderAgentConfig
    login_hosts = ("api.openai.com", "api.anthropic.com", "openrouter.ai")
    own_key_variables = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY")
    login_hint = "Aider needs a key: set OPENAI_API_KEY or ANTHROPIC_API_KEY, or a base_url in [agents.NAME]"

    def model(self) -> str | None:
        model = self.config.model
        if self.config.base_url:
            return f"openai/{model or 'default'}".replace("openai/openai/", "openai/")
        return model

    def command(self, binary: str, job: AgentJob) -> list[str]:
        history = job.attempt_dir / "aider-home" / f"aider-{job.round}.md"
        args = [binary, "--message-file", str(job.prompt_file), "--yes-always", "--no-auto-commits",
                "--no-dirty-commits", "--no-gitignore", "--no-check-update", "--no-show-release-notes",
                "--no-show-model-warnings", "--analytics-disable", "--no-pretty", "--no-fancy-input",
                "--chat-history-file", str(history),
                "--input-history-file", str(job.attempt_dir / "aider-home" / "aider-input.txt")]
        if job.resume:
            args.append("--restore-chat-history")
        model = self.model()
        if model:
            args += ["--model", model]
        if self.config.base_url:
            args += ["--openai-api-base", self.config.base_url,
                     "--model-metadata-file", str(job.attempt_dir / "aider-home" / "model-metadata.json")]
        if self.config.effort:
            args += ["--reasoning-effort", self.config.effort]
        if self.config.edit_format:
            args += ["--edit-format", self.config.edit_format]
        return args + self.config.args

    def environment(self, job: AgentJob) -> dict[str, str]:
        home = job.attempt_dir / "aider-home"
        home.mkdir(exist_ok=True)
        # Aider writes a git identity into the repository's config when it finds none; in the
        # sandbox that config is read-only (and the person's), so its HOME has one of its own.
        identity = home / ".gitconfig"
        if not identity.exists():
            identity.write_text("[user]\n\tname = clawfleet\n\temail = claw@localhost\n")
        env = {**os.environ, "HOME": str(home), **self.config.env}
        key = api_key(self.name, self.config.api_key_env, self.config.base_url)
        if self.config.base_url:
            # An endpoint of our choosing: its model is declared here, not looked up online.
            metadata = {self.model(): {"max_input_tokens": self.config.context_window,
                                       "max_output_tokens": 32768, "input_cost_per_token": 0.0,
                                       "output_cost_per_token": 0.0, "litellm_provider": "openai",
                                       "mode": "chat"}}
            (home / "model-metadata.json").write_text(json.dumps(metadata, indent=1))
        if key:
            env["OPENAI_API_KEY"] = key
        return env

    def run(self, job: AgentJob) -> AgentOutcome:
        """Aider prints text, not events: its output goes to the agent log and is read after."""
        prepared = self.prepare(job)
        if isinstance(prepared, AgentOutcome):
            return prepared
        command, env, binary = prepared
        home, history = job.attempt_dir / "aider-home", f"aider-{job.round}.md"
        if job.resume and job.resume != history:   # this round's history starts as a copy of that one
            copy_session_files(home, home / ".resumed", [home / job.resume])
            if (home / ".resumed" / job.resume).exists():
                (home / ".resumed" / job.resume).replace(home / history)
        start = job.log.stat().st_size
        with contain(job.sandbox, command, env, self.reach(job, binary, env)) as (command, env):
            finished, _ = job.children.run(command, cwd=job.workspace, env=env, log=job.log,
                                           stdin_text="", timeout=job.deadline - time.time(),
                                           stall=job.stall_watch())
        with open(job.log, errors="replace") as log:
            log.seek(start)
            output = log.read()
        return settled(self.outcome(output, job.attempt_dir / "aider-home" / f"aider-{job.round}.md", finished.exit_code, job),
                       finished.timed_out, job, finished)

    def adopt_session(self, earlier: Path, session: str, job: AgentJob) -> str | None:
        """Copy an earlier attempt's chat history into this attempt's aider-home."""
        source = earlier / "aider-home"
        copied = copy_session_files(source, job.attempt_dir / "aider-home", [source / session])
        return session if copied else None

    def outcome(self, output: str, history: Path, exit_code: int, job: AgentJob) -> AgentOutcome:
        sent = received = 0
        for match in _TOKENS.finditer(output):
            sent += _count(match.group(1), match.group(2))
            received += _count(match.group(3), match.group(4))
        job.on_usage(sent, received)
        outcome = AgentOutcome(summary=last_reply(history), exit_code=exit_code,
                               input_tokens=sent, output_tokens=received,
                               session_id=history.name if history.is_file() else None)
        errors = _ERROR.findall(output)
        if errors:
            kind, message = errors[-1]
            outcome.error = f"aider: {kind}: {message.strip()}"
        elif exit_code != 0:
            outcome.error = f"aider exited with status {exit_code}: {log_tail(job.log, 3) or 'no message'}"
        return outcome


def last_reply(history: Path, limit: int = 2000) -> str:
    """The assistant's last reply in an aider chat history, its file listings left out.

    In that markdown, aider's own notes are `> ` lines, the person's messages `#### ` lines,
    and what the model said is the rest.
    """
    try:
        lines = history.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    replies: list[list[str]] = [[]]
    fenced = False
    for line in lines:
        if line.startswith(("#### ", "> ", "# aider chat")):
            if replies[-1]:
                replies.append([])
            continue
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            replies[-1].append(line)
    text = next((("\n".join(r)).strip() for r in reversed(replies) if "\n".join(r).strip()), "")
    # A file listing's name stands alone on the line before its fence: drop those leftovers.
    text = "\n".join(line for line in text.splitlines() if not re.fullmatch(r"[\w./-]+\.\w+", line.strip()))
    return text.strip()[:limit]
