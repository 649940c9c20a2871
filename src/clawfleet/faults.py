"""Fault injection for the recovery tests: `CLAW_FAULT=STEP` kills this process at that step.

Recovery is only as good as the states a kill can leave behind, so the tests kill `claw run`
exactly where a crash would hurt most (between two writes, between a record and a fork) and
check that the next run puts things right. Nothing but the tests sets the variable.
"""

from __future__ import annotations

import os
import signal


def point(step: str) -> None:
    """SIGKILL this process here when CLAW_FAULT names `step` (no cleanup, as a real crash)."""
    if os.environ.get("CLAW_FAULT") == step:
        os.kill(os.getpid(), signal.SIGKILL)
