"""A full disk: one clear line (never a traceback), read-only commands still work, and a landing
that fails midway leaves the person's checkout exactly as it was.

The project and the person's checkout live on a small tmpfs of their own (mounting needs root,
which CI has; elsewhere these tests skip and say why)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import agent_script, claw
from test_run import configure, status_json

from clawfleet import git


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,nr_inodes=6000", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture
def full_repo(small_disk: Path) -> Path:
    path = small_disk / "repo"
    git.init_repo(path, {"README.md": "# sample\n", "app.txt": "one\n"})
    return path


def fill(disk: Path) -> Path:
    """Take every free byte of the disk; return the filler (remove it to free the disk)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):  # down to the last bytes
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as error:
                assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def no_traceback(result) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


@pytest.mark.slow
def test_a_full_disk_is_one_clear_line_and_read_only_commands_still_work(full_repo, small_disk):
    agent = agent_script(full_repo, "w", "echo feature > feature.txt\n")
    configure(full_repo, {"w": agent})
    assert claw(full_repo, "add", "a feature").returncode == 0
    filler = fill(small_disk)
    for command in (["status"], ["status", "--json"], ["show", "1"], ["review"]):
        result = claw(full_repo, *command)
        no_traceback(result)
        assert result.returncode == 0, (command, result.stderr)
    assert "a feature" in claw(full_repo, "status").stdout
    for command in (["add", "another"], ["run"], ["cancel", "1"]):
        result = claw(full_repo, *command)
        no_traceback(result)
        assert result.returncode == 1, (command, result.stdout)
        assert "the disk holding" in result.stderr and "is full" in result.stderr, result.stderr
        assert "free space, then `claw run` again" in " ".join(result.stderr.split())
    filler.unlink()
    assert claw(full_repo, "run").returncode == 0
    assert [t["state"] for t in status_json(full_repo)] == ["merged"]


def fill_inodes_when_landing(disk: Path) -> str:
    """A check that, run by the merge queue (in its integration worktree), takes all but a few
    of the disk's files: as if another program filled the disk between the check and landing."""
    return (f'case "$PWD" in */integration) {sys.executable} -c "'
            "import os, sys; d = sys.argv[1]; os.makedirs(d, exist_ok=True); n = 0\n"
            "while os.statvfs(d).f_ffree > 40: open(os.path.join(d, str(n)), 'w').close(); n += 1"
            f'" {disk}/inodes ;; esac')


def snapshot(checkout: Path) -> dict[str, bytes]:
    found = {}
    for folder, dirs, files in os.walk(checkout):
        dirs[:] = [d for d in dirs if d not in (".git", ".claw")]
        for name in [*files, *dirs]:
            path = Path(folder) / name
            found[str(path.relative_to(checkout))] = path.read_bytes() if path.is_file() else b"<dir>"
    return found


@pytest.mark.slow
def test_a_landing_that_fails_midway_leaves_the_checkout_exactly_as_it_was(full_repo, small_disk):
    agent = agent_script(full_repo, "w", """
        mkdir -p data/deep
        for n in $(seq 1 300); do echo "row $n" > "data/deep/$n.txt"; done
        echo "two" > app.txt
        """)
    configure(full_repo, {"w": agent}, auto_approve="[]", checks=[fill_inodes_when_landing(small_disk)])
    assert claw(full_repo, "add", "write many files").returncode == 0
    assert claw(full_repo, "run").returncode == 0
    assert claw(full_repo, "approve", "1").returncode == 0
    # The person works on: a commit of theirs (so the merge queue checks again) and a file of theirs.
    (full_repo / "README.md").write_text("# sample, edited\n")
    git.git("commit", "-qam", "my edit", cwd=full_repo)
    (full_repo / "notes.txt").write_text("my notes\n")
    before, head = snapshot(full_repo), git.branch_tip(full_repo, "main")
    result = claw(full_repo, "merge")
    no_traceback(result)
    assert "the disk holding" in result.stdout and "is full" in result.stdout, result.stdout
    # Nothing of the landing is left in the checkout: same files, same contents, same HEAD, clean.
    assert snapshot(full_repo) == before
    assert git.branch_tip(full_repo, "main") == head
    assert git.out("status", "--porcelain", cwd=full_repo).splitlines() == ["?? .claw/", "?? notes.txt"]
    [task] = status_json(full_repo)
    assert task["state"] == "approved" and "is full" in task["merge_wait"]
    # Once there is room again, the landing goes through.
    subprocess.run(["rm", "-rf", str(small_disk / "inodes")], check=True)
    configure(full_repo, {"w": agent}, auto_approve="[]")
    result = claw(full_repo, "merge")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (full_repo / "data/deep/300.txt").read_text() == "row 300\n"
    assert (full_repo / "notes.txt").read_text() == "my notes\n"
