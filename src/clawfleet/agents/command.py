"""`command`: any program is an agent. It runs in the worktree with the prompt in a file.

    [agents.my-agent]
    kind = "command"
    command = ["my-agent", "--prompt-file", "{prompt_file}"]

Placeholders: {prompt_file}, {task_id}, {attempt_id}, {workspace}. The environment carries
CLAW_TASK_ID, CLAW_ATTEMPT_ID, CLAW_PROMPT_FILE, CLAW_WORKSPACE and CLAW_SUMMARY_FILE (write a
short summary of what you did there; it is shown in review).
"""

from __future__ import annotations

import os
import shutil
import time

from . import AgentJob, AgentOutcome


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
        if shutil.which(program, path=os.environ.get("PATH")) is None and not os.path.isfile(program):
            return AgentOutcome(error=f"agent '{self.name}': program '{program}' not found on PATH; "
                                      "install it or fix `command` in .claw/config.toml", exit_code=127)
        summary_file = job.attempt_dir / f"summary-{job.round}.txt"
        env = {**os.environ, **self.env,
               "CLAW_TASK_ID": str(job.task_id), "CLAW_ATTEMPT_ID": str(job.attempt_id),
               "CLAW_PROMPT_FILE": str(job.prompt_file), "CLAW_WORKSPACE": str(job.workspace),
               "CLAW_SUMMARY_FILE": str(summary_file)}
        finished, _ = job.children.run(args, cwd=job.workspace, env=env, log=job.log,
                                       timeout=job.deadline - time.time())
        summary = summary_file.read_text().strip() if summary_file.exists() else ""
        if finished.timed_out:
            return AgentOutcome(summary, error="the agent ran out of time", timed_out=True,
                                exit_code=finished.exit_code)
        if finished.exit_code != 0:
            return AgentOutcome(summary, error=f"agent '{self.name}' exited with status "
                                               f"{finished.exit_code} (see `claw log`)",
                                exit_code=finished.exit_code)
        return AgentOutcome(summary)
