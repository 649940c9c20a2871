"""Fixtures: real repositories in temporary folders, and `claw` run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clawfleet import git
from clawfleet.project import Project, initialize

GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch):
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


def claw(cwd: Path, *args: str, timeout: float = 120, input: str | None = None,
         env: dict | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `claw` command line in `cwd`."""
    return subprocess.run([sys.executable, "-m", "clawfleet.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, input=input,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit on `main`."""
    path = tmp_path / "repo"
    git.init_repo(path, {"README.md": "# sample\n", "app.txt": "one\n"})
    return path


def write_config(repo: Path, text: str) -> None:
    """The project's config. Tests of scheduling, review and landing watch their agents from
    outside the worktree (stamps, pid files), which the sandbox forbids: a config that does not
    say `[sandbox]` runs unsandboxed here. The sandbox itself is tested with it on: in
    tests/test_sandbox.py, tests/security/ and the real CLI tests (tests/test_agents_real.py)."""
    text = textwrap.dedent(text)
    if "[sandbox]" not in text:
        text += "\n[sandbox]\nenabled = false\n"
    (repo / ".claw").mkdir(exist_ok=True)
    (repo / ".claw" / "config.toml").write_text(text)


def agent_script(repo: Path, name: str, body: str) -> str:
    """Write an executable agent program outside the repository; return its path."""
    path = repo.parent / f"{name}.sh"
    path.write_text("#!/usr/bin/env bash\nset -u\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def project(repo: Path) -> Project:
    initialize(repo)
    return Project(repo)
