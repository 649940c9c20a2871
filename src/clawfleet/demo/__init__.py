"""`claw demo`: a sample project, six tasks, built-in agents on the scripted model, all landed.

Everything is real except the model: a real repository, real worktrees, real agent processes
running real shell commands, real checks and a real merge queue; the model's replies come from
`script.toml` beside this file, served over HTTP by the scripted model server.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .. import git
from ..errors import ClawError
from ..llm.scripted import Script, ScriptedServer
from ..models import Importance
from ..project import Project, initialize

CHECK = "python3 -m unittest discover -s tests -q"

SAMPLE_FILES = {
    "README.md": "# textkit\n\nSmall text helpers. Tests: `python3 -m unittest discover -s tests`.\n",
    "textkit/__init__.py": '"""Small text helpers."""\n',
    "textkit/core.py": '"""The first helper."""\n\n\ndef shout(text: str) -> str:\n'
                       '    return text.upper() + "!"\n',
    "tests/__init__.py": "",
    "tests/test_core.py": "import unittest\n\nfrom textkit.core import shout\n\n\n"
                          "class CoreTest(unittest.TestCase):\n    def test_shout(self):\n"
                          '        self.assertEqual(shout("hi"), "HI!")\n',
}

# (title, body, depends on the task at this index)
DEMO_TASKS = [
    ("Add slugify", "Add `textkit.slug.slugify(text)` that makes URL slugs, with a test.", None),
    ("Add word_count", "Add `textkit.count.word_count(text)`, with a test.", None),
    ("Add is_palindrome", "Add `textkit.palindrome.is_palindrome(text)` that ignores case and "
                          "punctuation, with tests.", None),
    ("Add truncate", "Add `textkit.truncate.truncate(text, width)`, ending in an ellipsis, with a test.", None),
    ("Write docs/usage.md", "Write a short usage guide for textkit.", None),
    ("Add title_case", "Add `textkit.title.title_case(text)` built on `textkit.slug.words`, with a test.", 0),
]

DEMO_CONFIG = """
[fleet]
slots = {slots}
target = "main"
pool_size = {slots}

[checks]
commands = ["{check}"]
fix_rounds = 1

[review]
auto_approve = ["low", "normal"]

[agents.builtin]
kind = "builtin"
provider = "openai"
model = "scripted"
base_url = "{base_url}"
max_steps = 10
"""


@dataclass
class Demo:
    project: Project
    server: ScriptedServer
    base_commit: str


def demo_script() -> Script:
    return Script.parse((resources.files("clawfleet") / "demo" / "script.toml").read_text())


def prepare_demo(directory: Path | None, slots: int) -> Demo:
    """Make the sample repository, start the scripted model, and queue the demo tasks."""
    root = Path(directory or tempfile.mkdtemp(prefix="claw-demo-")) / "textkit"
    if root.exists():
        raise ClawError(f"{root} already exists", hint="pass an empty folder with --dir, or remove it")
    git.init_repo(root, SAMPLE_FILES)
    server = ScriptedServer(demo_script())
    server.start()
    initialize(root)
    (root / ".claw" / "config.toml").write_text(
        DEMO_CONFIG.format(slots=slots, check=CHECK, base_url=server.openai_base_url))
    project = Project(root)
    ids: list[int] = []
    for title, body, depends in DEMO_TASKS:
        task = project.store.add_task(title, body=body, importance=Importance.low,
                                      depends_on=[ids[depends]] if depends is not None else [])
        ids.append(task.id)
    return Demo(project, server, git.branch_tip(root, "main"))


def check_target(demo: Demo) -> tuple[bool, str]:
    """Run the sample project's tests on the target branch as it now is."""
    result = subprocess.run([sys.executable, "-m", "unittest", "discover", "-s", "tests", "-q"],
                            cwd=demo.project.root, capture_output=True, text=True, timeout=120)
    last = (result.stderr or result.stdout).strip().splitlines()
    return result.returncode == 0, last[-3] if len(last) >= 3 else " ".join(last)


def landed_commits(demo: Demo) -> int:
    return len(git.commits_between(demo.project.root, demo.base_commit, "main"))
