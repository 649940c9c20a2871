"""`builtin`: a small mini-swe-agent-style loop on any OpenAI-compatible or Anthropic model.

The model proposes one shell command per turn, sees its exit code and (truncated) output, and
ends by replying `DONE: summary`. Control flow for the ends of the loop is exceptions: `Done`
ends normally, `LimitsExceeded` and `AgentStopped` end with an error. The trajectory is saved
after every step, whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import time
from importlib import resources

from ..config import BuiltinAgentConfig
from ..errors import ClawError
from ..llm.client import Model, make_model, resolve_model_settings
from ..containment import Reach, contain
from . import AgentJob, AgentOutcome

_BLOCK = re.compile(r"```(?:bash|sh|shell)?[ \t]*\n(.*?)```", re.S)
_DONE = re.compile(r"^\s*DONE:?\s*(.*)", re.S | re.M)


class Done(Exception):
    """The model says the work is finished."""


class LimitsExceeded(Exception):
    """Step, token or time limit reached."""


class FormatError(Exception):
    """The reply was neither one command nor DONE; the model is told and tries again."""


def model_of(name: str, config: BuiltinAgentConfig) -> Model:
    """The model a built-in agent's config names (config first, then the usual variables)."""
    settings = resolve_model_settings(
        provider=config.provider, model=config.model, base_url=config.base_url,
        api_key_env=config.api_key_env, agent_name=name, env=os.environ,
        timeout=config.request_timeout)
    return make_model(settings)


def model_for(project_config, name: str, purpose: str) -> Model:
    """The model of the built-in agent `name`, for the planner or the reviewer."""
    config = project_config.agent(name)
    if not isinstance(config, BuiltinAgentConfig):
        raise ClawError(f"the {purpose} needs a built-in agent's model; '{name}' is a {config.kind} agent",
                        hint='name an [agents.NAME] with kind = "builtin"')
    return model_of(name, config)


def system_prompt() -> str:
    return (resources.files("clawfleet") / "templates" / "builtin_system.md").read_text()


def parse_reply(text: str) -> str:
    """Return the one command in a reply; raise Done(summary) or FormatError."""
    blocks = _BLOCK.findall(text)
    if len(blocks) == 1:
        return blocks[0].strip()
    if not blocks:
        done = _DONE.search(text)
        if done:
            raise Done(done.group(1).strip())
        raise FormatError("Your reply had no ```bash block and no DONE line. Reply with exactly one "
                          "```bash block to run a command, or `DONE: summary` to finish.")
    raise FormatError(f"Your reply had {len(blocks)} ```bash blocks. Reply with exactly one.")


def truncate(output: str, limit: int) -> str:
    if len(output) <= limit:
        return output
    half = limit // 2
    return f"{output[:half]}\n[... {len(output) - 2 * half} characters elided ...]\n{output[-half:]}"


class BuiltinAgent:
    scratch: tuple[str, ...] = ()
    resumes = True   # its session is its trajectory: a later round continues the conversation

    def __init__(self, name: str, config: BuiltinAgentConfig, model: Model | None = None) -> None:
        self.name = name
        self.config = config
        self._model = model

    def _make_model(self) -> Model:
        return model_of(self.name, self.config)

    def run(self, job: AgentJob) -> AgentOutcome:
        outcome = AgentOutcome()
        earlier = _conversation(job.attempt_dir / job.resume) if job.resume else None
        messages = (earlier or [{"role": "system", "content": system_prompt()}]) + \
            [{"role": "user", "content": job.prompt}]
        trajectory = job.attempt_dir / f"trajectory-{job.round}.json"
        if job.resume and earlier is None:
            outcome.error = f"could not read the conversation to continue ({job.resume})"
            return outcome
        outcome.session_id = trajectory.name   # the whole conversation so far, this round's too
        job.on_session(trajectory.name)
        log = open(job.log, "a")
        try:
            model = self._model or self._make_model()
            log.write(f"# built-in agent '{self.name}', model {model.settings.model}\n")
            for step in range(1, self.config.max_steps + 2):
                if step > self.config.max_steps:
                    raise LimitsExceeded(f"step limit reached ({self.config.max_steps} steps)")
                if time.time() >= job.deadline:
                    raise LimitsExceeded("the agent ran out of time")
                reply = model.complete(messages)
                outcome.input_tokens += reply.input_tokens
                outcome.output_tokens += reply.output_tokens
                job.on_usage(outcome.input_tokens, outcome.output_tokens)
                messages.append({"role": "assistant", "content": reply.text})
                log.write(f"\n## step {step}\n{reply.text}\n")
                try:
                    command = parse_reply(reply.text)
                except FormatError as error:
                    messages.append({"role": "user", "content": str(error)})
                    continue
                finally:
                    _save(trajectory, messages)
                observation = self._execute(command, job)
                log.write(observation + "\n")
                log.flush()
                messages.append({"role": "user", "content": observation})
                _save(trajectory, messages)
                if outcome.input_tokens + outcome.output_tokens > self.config.max_tokens:
                    raise LimitsExceeded(f"token limit reached ({self.config.max_tokens} tokens)")
        except Done as done:
            outcome.summary = str(done)
            log.write(f"\n## done\n{outcome.summary}\n")
        except LimitsExceeded as error:
            outcome.error = str(error)
            outcome.timed_out = "time" in str(error)
        except ClawError as error:
            outcome.error = str(error)
        finally:
            _save(trajectory, messages)
            log.close()
        if outcome.error:
            outcome.exit_code = 1
        return outcome

    def adopt_session(self, earlier, session: str, job: AgentJob) -> str | None:
        """Copy an earlier attempt's trajectory into this attempt's folder."""
        from . import copy_session_files

        name = f"earlier-{session}"
        copy_session_files(earlier, job.attempt_dir / ".earlier", [earlier / session])
        copied = job.attempt_dir / ".earlier" / session
        if not copied.exists():
            return None
        copied.replace(job.attempt_dir / name)
        return name if _conversation(job.attempt_dir / name) else None

    def _execute(self, command: str, job: AgentJob) -> str:
        timeout = min(self.config.command_timeout, max(job.deadline - time.time(), 0.1))
        # Its commands get no network and no credential: the model is called from here, outside.
        reach = Reach(worktree=job.workspace, project_root=job.project_root, common_dir=job.common_dir, git_dir=job.git_dir,
                      private=[job.outbox], network=False)
        with contain(job.sandbox, ["bash", "-c", command], os.environ, reach) as (args, env):
            finished, output = job.children.run(args, cwd=job.workspace, env=env, timeout=timeout)
        status = (f"timed out after {timeout:.0f} s" if finished.timed_out
                  else f"exit code {finished.exit_code}")
        return f"$ {command}\n[{status}]\n{truncate(output, self.config.output_limit)}"


def _conversation(path) -> list[dict[str, str]] | None:
    """The messages of a saved trajectory, or None when it is not one."""
    try:
        messages = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
            and isinstance(m.get("content"), str) for m in messages):
        return None
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _save(path, messages) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(messages, indent=1))
    tmp.replace(path)
