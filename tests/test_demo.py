"""The offline demo is the newcomer's first contact: it must work end to end."""

from __future__ import annotations

import json

from clawfleet import git

from conftest import claw


def test_demo_lands_every_task_with_main_green(tmp_path):
    result = claw(tmp_path, "demo", "--dir", str(tmp_path), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tasks: 6/6 landed" in result.stdout
    assert "fix rounds: 1" in result.stdout
    assert "main's tests: green" in result.stdout
    repo = tmp_path / "textkit"
    # Linear history on main, every demo module present, no agent branch left behind.
    assert git.out("rev-list", "--merges", "main", cwd=repo) == ""
    for module in ("slug", "count", "palindrome", "truncate", "title"):
        assert (repo / "textkit" / f"{module}.py").exists()
    assert (repo / "docs" / "usage.md").exists()
    assert git.all_branches(repo, "claw/") == []
    tasks = json.loads(claw(repo, "status", "--all", "--json").stdout)
    assert all(t["state"] == "merged" for t in tasks) and len(tasks) == 6
    palindrome = next(t for t in tasks if t["title"] == "Add is_palindrome")
    assert palindrome["latest_attempt"]["fix_rounds"] == 1
    assert palindrome["latest_attempt"]["input_tokens"] > 0


def test_demo_refuses_a_folder_that_already_has_it(tmp_path):
    (tmp_path / "textkit").mkdir()
    result = claw(tmp_path, "demo", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert "already exists" in result.stderr and "Traceback" not in result.stderr
