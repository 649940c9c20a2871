"""`command`: any program is an agent. It runs in the worktree with the prompt in a file.

    [agents.my-agent]
    kind = "command"
    command = ["my-agent", "--prompt-file", "{prompt_file}"]

Placeholders: {prompt_file}, {task_id}, {attempt_id}, {workspace}. The environment carries
CLAW_TASK_ID, CLAW_ATTEMPT_ID, CLAW_PROMPT_FILE, CLAW_WORKSPACE and CLAW_SUMMARY_FILE (write a
short summary of what you did there; it is shown in review).

Like every kind it runs in the sandbox: its program's folder and the prompt file are shown
read-only, its HOME is the attempt's own, and its network reaches only the gateway
(CLAW_GATEWAY_URL) when the run has one.
"""

from __future__ import annotations

import os
import shutil
import time

from ..containment import Reach, contain
from ..sandbox import Bind, program_root
from . import AgentJob, AgentOutcome, stall_reason

SUMMARY_LIMIT = 20_000


class CommandAgent:
    scratch: tuple[str, ...] = ()

    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.command = command
        self.env = env or {}

    def run(self, job: AgentJob) -> AgentOutcome:
        values = {"prompt_file": str(job.prompt_file), "task_id": str(job.task_id),
                  "attempt_id": str(job.attempt_id), "workspace": str(job.workspace)}
        try:
            args = [part.format(**values) for part in self.command]
        except (KeyError, IndexError, ValueError) as error:
            return AgentOutcome(error=f"agent '{self.name}': bad placeholder {error} in its command; "
                                      f"known: {', '.join('{' + k + '}' for k in values)}", exit_code=2)
        program = args[0]
        found = shutil.which(program, path=os.environ.get("PATH")) or (program if os.path.isfile(program) else None)
        if found is None:
            return AgentOutcome(error=f"agent '{self.name}': program '{program}' not found on PATH; "
                                      "install it or fix `command` in .claw/config.toml", exit_code=127)
        summary_file = job.outbox / f"summary-{job.round}.txt"
        env = {**os.environ, **self.env,
               "CLAW_TASK_ID": str(job.task_id), "CLAW_ATTEMPT_ID": str(job.attempt_id),
               "CLAW_PROMPT_FILE": str(job.prompt_file), "CLAW_WORKSPACE": str(job.workspace),
               "CLAW_SUMMARY_FILE": str(summary_file)}
        home = job.attempt_dir / "command-home"
        if job.sandbox is not None:
            env["HOME"] = str(home)   # the person's is hidden: an empty one of its own
        gateway = os.environ.get("CLAW_GATEWAY_URL")
        reach = Reach(worktree=job.workspace, project_root=job.project_root, common_dir=job.common_dir, git_dir=job.git_dir,
                      private=[job.outbox, home], read_only=[program_root(found)],
                      binds=[Bind(str(job.prompt_file), str(job.prompt_file))],
                      urls=[gateway] if gateway else [], keep=list(self.env))
        with contain(job.sandbox, args, env, reach) as (args, env):
            finished, _ = job.children.run(args, cwd=job.workspace, env=env, log=job.log,
                                           timeout=job.deadline - time.time(), stall=job.stall_watch())
        summary = read_summary(summary_file)
        if finished.stalled:
            return AgentOutcome(summary, error=stall_reason(job.stall_timeout, finished.last_output),
                                stalled=True, exit_code=finished.exit_code)
        if finished.timed_out:
            return AgentOutcome(summary, error="the agent ran out of time", timed_out=True,
                                exit_code=finished.exit_code)
        if finished.exit_code != 0:
            return AgentOutcome(summary, error=f"agent '{self.name}' exited with status "
                                               f"{finished.exit_code} (see `claw log`)",
                                exit_code=finished.exit_code)
        return AgentOutcome(summary)


def read_summary(path) -> str:
    """What the agent wrote as its summary: a regular file of the outbox, bounded; a symlink
    (an agent pointing clawfleet at a file of the person's) is not followed."""
    try:
        if path.is_symlink() or not path.is_file():
            return ""
        with open(path, "rb") as handle:
            return handle.read(SUMMARY_LIMIT).decode("utf-8", "replace").strip()
    except OSError:
        return ""
