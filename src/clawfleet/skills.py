"""Skills: folders in the Agent Skills format, `skills/<name>/SKILL.md` in the project.

A SKILL.md opens with YAML frontmatter holding `name` (lowercase letters, digits and single
hyphens, the folder's name) and `description` (what it does and when to use it), then markdown
instructions; the reference validator (`skills-ref`) judges every skill before it is listed,
installed, put in a prompt or copied into an agent's skills folder. Every prompt lists the skills (name, description, path); before an attempt each
skill is copied to where its agent kind looks for skills in the worktree, for the kinds that
document such a place, and kept out of the attempt's commits.

A skill is plain files and folders: one holding a symlink (`ssh-dir -> ~/.ssh`, `up -> ..`), a
device or a pipe is refused, by `claw skill install` with one line naming it, and at attempt
time it is skipped (an event says so), never followed: the attempt goes on without it.

    >>> path = new_skill(project.root, "release-notes", "Write release notes from git history")
    >>> [s.name for s in discover(project.root)]
    ['release-notes']
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import git
from .errors import ClawError

SKILLS_DIR = "skills"
SKILL_FILE = "SKILL.md"
NAME_MAX = 64
DESCRIPTION_MAX = 1024
_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_FILES = 1000
MAX_BYTES = 50 << 20        # a skill is instructions and small scripts, not a data set

# Where each agent kind reads a workspace's skills, from its own documentation:
# Claude Code `.claude/skills/`, Codex `.agents/skills/` (repository scope), Gemini CLI
# `.gemini/skills/` (workspace scope). Other kinds get the index in their prompt only.
INSTALL_DIRS = {"claude": ".claude/skills", "codex": ".agents/skills", "gemini": ".gemini/skills"}


@dataclass
class Skill:
    name: str
    description: str
    path: Path                      # the SKILL.md
    body: str = ""

    @property
    def folder(self) -> Path:
        return self.path.parent

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "description": self.description, "path": str(self.path)}


def skills_dir(project_root: Path) -> Path:
    return project_root / SKILLS_DIR


def check_name(name: str) -> str:
    """The name if it is a valid skill name, else a ClawError saying what a valid one looks like."""
    if not name or len(name) > NAME_MAX or not _NAME.match(name):
        raise ClawError(f"'{name}' is not a valid skill name",
                        hint=f"use lowercase letters, digits and single hyphens, at most {NAME_MAX} "
                             "characters, e.g. `release-notes`")
    return name


def parse_skill(path: Path) -> Skill:
    """Read and validate one SKILL.md; a ClawError names the file and the problem."""
    return parse_skill_as(path, path.parent.name)


def parse_skill_as(path: Path, folder_name: str) -> Skill:
    """`parse_skill` for a SKILL.md whose folder is (or will be, once installed) `folder_name`.

    The Agent Skills reference validator (`skills-ref`) decides what is valid: its frontmatter
    parser (strict YAML), its fields, its name and description rules. A ClawError carries its
    messages, with the fix where we know one."""
    from skills_ref.errors import ParseError
    from skills_ref.parser import parse_frontmatter
    from skills_ref.validator import validate_metadata

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ClawError(f"{path}: cannot be read: {error}", hint="save it as UTF-8 text") from None
    try:
        meta, body = parse_frontmatter(text)
    except ParseError as error:
        raise ClawError(f"{path}: {_one_line(error)}",
                        hint="start the file with ---, `name:` and `description:` lines, then ---; "
                             "quote a description that holds a colon") from None
    problems = validate_metadata(meta, Path(folder_name))
    if problems:
        raise ClawError(f"{path}: {'; '.join(problems)}", hint=_hint(problems, folder_name))
    return Skill(meta["name"], " ".join(meta["description"].split()), path, body)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


def _hint(problems: list[str], folder_name: str) -> str:
    said = " ".join(problems)
    if "Missing required field in frontmatter: name" in said:
        return f"add `name: {folder_name}`"
    if "Directory name" in said:
        return "rename the folder or the skill so they match"
    if "Unexpected fields" in said:
        return "keep only the fields the Agent Skills format knows; put the rest under `metadata:`"
    if "description" in said:
        return f"a `description:` saying what the skill does and when to use it, under {DESCRIPTION_MAX} characters"
    return f"use lowercase letters, digits and single hyphens, at most {NAME_MAX} characters, e.g. `release-notes`"


def check_files(folder: Path, shown: str | None = None) -> None:
    """Raise a ClawError naming the first thing in `folder` that is not a plain file or folder
    (a symlink above all: copying would follow it), or the limit it goes past. Nothing followed."""
    shown = shown or str(folder)
    if folder.is_symlink():
        raise ClawError(f"the skill {shown} is a symlink (to {os.readlink(folder)}); a skill is copied, never followed",
                        hint="replace it with a folder of plain files")
    count = size = 0
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(root) / name
            info = path.lstat()
            relative = path.relative_to(folder).as_posix()
            if stat.S_ISLNK(info.st_mode):
                raise ClawError(f"the skill {shown} holds a symlink: {relative} -> {os.readlink(path)}",
                                hint="a skill is copied, never followed: put a copy of the file there, or remove it")
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise ClawError(f"the skill {shown} holds {relative}, which is not a plain file or folder",
                                hint="remove it; a skill is plain files")
            count += 1
            size += info.st_size if stat.S_ISREG(info.st_mode) else 0
        if count > MAX_FILES or size > MAX_BYTES:
            raise ClawError(f"the skill {shown} is too big ({count} files, {size:,} bytes)",
                            hint=f"a skill holds at most {MAX_FILES} files and {MAX_BYTES >> 20} MB")


def discover(project_root: Path) -> tuple[list[Skill], list[ClawError]]:
    """The project's valid skills by name, and the problems of the invalid ones (a skill holding
    a symlink among them: it is neither listed in prompts nor copied)."""
    root = skills_dir(project_root)
    found, problems = [], []
    if root.is_symlink():
        return found, [ClawError(f"{root} is a symlink; skills are read from a plain folder",
                                 hint="make skills/ a folder of its own")]
    if not root.is_dir():
        return found, problems
    for folder in sorted(p for p in root.iterdir() if (p.is_dir() or p.is_symlink()) and not p.name.startswith(".")):
        try:
            check_files(folder, f"skills/{folder.name}")
            if not (folder / SKILL_FILE).exists():
                continue
            found.append(parse_skill(folder / SKILL_FILE))
        except ClawError as error:
            problems.append(error)
        except OSError as error:
            problems.append(ClawError(f"the skill skills/{folder.name} cannot be read: {error.strerror}"))
    return found, problems


def copy_files(source: Path, destination: Path) -> None:
    """Copy a skill's plain files and folders; never follows a symlink (one met is an error)."""
    destination.mkdir(parents=True)
    for root, dirs, files in os.walk(source, followlinks=False):
        target = destination / Path(root).relative_to(source)
        for name in dirs:
            if (Path(root) / name).is_symlink():
                raise ClawError(f"{Path(root) / name} is a symlink", hint="a skill is copied, never followed")
            (target / name).mkdir()
        for name in files:
            path = Path(root) / name
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)  # refuses a symlink made meanwhile
            with os.fdopen(descriptor, "rb") as reader, open(target / name, "xb") as writer:
                info = os.fstat(reader.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise ClawError(f"{path} is not a plain file", hint="a skill is plain files")
                shutil.copyfileobj(reader, writer)
                os.fchmod(writer.fileno(), stat.S_IMODE(info.st_mode) & 0o755)


def install_skill(project_root: Path, source: Path, *, name: str | None = None, replace: bool = False) -> Skill:
    """`claw skill install`: copy a skill folder into the project's skills/, checked first.

    A symlink, a device, a bad SKILL.md or too many files fails here, naming it, and nothing is
    copied; a skill that installs is one every attempt can use.
    """
    source = source.expanduser()
    if not source.exists() and not source.is_symlink():
        raise ClawError(f"there is no skill folder at {source}", hint="give the folder that holds its SKILL.md")
    check_files(source)
    if not (source / SKILL_FILE).is_file():
        raise ClawError(f"{source} has no {SKILL_FILE}", hint="a skill folder holds SKILL.md with name and description")
    skill = parse_skill_as(source / SKILL_FILE, name or _frontmatter_name(source / SKILL_FILE) or source.name)
    destination = skills_dir(project_root) / skill.name
    if destination.exists() or destination.is_symlink():
        if not replace:
            raise ClawError(f"the skill '{skill.name}' exists already: {destination}",
                            hint="pass --replace to put this one in its place, or --name to install it under another name")
    root = skills_dir(project_root)
    if root.is_symlink():
        raise ClawError(f"{root} is a symlink; skills are installed into a plain folder",
                        hint="make skills/ a folder of its own")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{skill.name}-", dir=root))
    try:
        copy_files(source, staging / skill.name)
        parse_skill(staging / skill.name / SKILL_FILE)  # what landed is what was checked
        if destination.exists() or destination.is_symlink():
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)
            else:
                destination.unlink()
        (staging / skill.name).rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return parse_skill(destination / SKILL_FILE)


def _frontmatter_name(path: Path) -> str | None:
    import yaml

    match = re.match(r"^---[ \t]*\n(.*?)\n---", path.read_text(errors="replace"), re.S)
    try:
        meta = yaml.safe_load(match.group(1)) if match else None
    except yaml.YAMLError:
        return None
    return meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else None



def get_skill(project_root: Path, name: str) -> Skill:
    path = skills_dir(project_root) / name / SKILL_FILE
    if not path.exists():
        known = ", ".join(s.name for s in discover(project_root)[0]) or "none yet"
        raise ClawError(f"there is no skill '{name}' (known: {known})",
                        hint=f"`claw skill new {name}` makes one")
    return parse_skill(path)


def render_skill(name: str, description: str, body: str) -> str:
    import yaml

    front = yaml.safe_dump({"name": name, "description": description}, sort_keys=False,
                           allow_unicode=True, width=1000)
    return f"---\n{front}---\n\n{body.strip()}\n"


def new_skill(project_root: Path, name: str, description: str, body: str | None = None) -> Path:
    """Write `skills/NAME/SKILL.md` from a starting template; never overwrite one."""
    check_name(name)
    if not description.strip():
        raise ClawError("a skill needs a description", hint="say what it does and when to use it")
    path = skills_dir(project_root) / name / SKILL_FILE
    if path.exists():
        raise ClawError(f"the skill '{name}' exists already: {path}", hint="edit it, or pick another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    title = name.replace("-", " ").capitalize()
    path.write_text(render_skill(name, description, body or f"""\
# {title}

## When to use this
Describe the situations where this skill applies, and where it does not.

## Steps
1. The first thing to do, with the exact command where there is one.
2. How to check that it worked.

## Pitfalls
- What went wrong before, and how to avoid it.
"""))
    parse_skill(path)  # what we write must be what we accept
    return path


# -- in a worktree ---------------------------------------------------------------------------

def install_dir(agent_kind: str | None) -> str | None:
    """Where `agent_kind` reads skills in its workspace, or None when it documents no place."""
    return INSTALL_DIRS.get(agent_kind or "")


def install(project_root: Path, worktree: Path, agent_kind: str | None) -> list[Path]:
    """Copy the project's skills to where the agent kind reads them in `worktree`.

    A skill the worktree already has at that place (tracked by the project) is left alone. The
    copies are listed in the repository's info/exclude, so no commit of the attempt takes them
    (the runner's, nor the one that saves a stopped agent's work).
    """
    target = install_dir(agent_kind)
    if target is None:
        return []
    if any((worktree / part).is_symlink() for part in _prefixes(target)):
        return []  # e.g. `.claude -> ~`: copying there would write outside the worktree
    skills, _ = discover(project_root)   # the ones holding a symlink are not among them
    installed, patterns = [], []
    for skill in skills:
        destination = worktree / target / skill.name
        if destination.exists() or destination.is_symlink():
            continue
        try:
            copy_files(skill.folder, destination)
        except (ClawError, OSError):  # changed since it was checked: skipped, never followed
            shutil.rmtree(destination, ignore_errors=True)
            continue
        installed.append(destination / SKILL_FILE)
        patterns.append(f"/{target}/{skill.name}/")
    if patterns:
        _exclude(worktree, patterns)
    return installed


def _prefixes(relative: str) -> list[str]:
    parts = relative.split("/")
    return ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]


def _exclude(worktree: Path, patterns: list[str]) -> None:
    exclude = git.common_dir(worktree) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    missing = [p for p in patterns if p not in lines]
    if missing:
        header = "# clawfleet's copies of skills in attempt worktrees"
        exclude.write_text("\n".join([*lines, *([header] if header not in lines else []), *missing]) + "\n")


def index(project_root: Path, agent_kind: str | None) -> list[dict[str, str]]:
    """The skills for a prompt: name, description, and the path the agent should read."""
    skills, _ = discover(project_root)
    target = install_dir(agent_kind)
    entries = []
    for skill in skills:
        path = f"{target}/{skill.name}/{SKILL_FILE}" if target else str(skill.path)
        entries.append({"name": skill.name, "description": skill.description, "path": path})
    return entries


# -- learning a skill from an attempt ----------------------------------------------------------

LEARNABLE = ("ready", "approved", "merged")     # attempts whose way of working is worth keeping
DIFF_LIMIT = 12_000

LEARN_PROMPT = """\
A coding agent finished the task below successfully. Turn how it was done into a reusable skill
in the Agent Skills format, for the next agent that meets a similar task. Reply with exactly:
DESCRIPTION: <one sentence: what the skill does and when to use it>
then a blank line, then the skill's markdown body: when to use it, the steps (with exact
commands), and the pitfalls this attempt shows. No frontmatter, no code fence around it all.

Task {task_id}: {title}
{body}

The agent's summary: {summary}
Checks: {checks}
Files changed: {files}

Diff:
{diff}
"""


@dataclass
class Draft:
    path: Path
    by_model: str | None            # the model that wrote it; None: from the template
    note: str = ""                  # why the template was used, when a model was meant to write it


def learn(project, attempt_id: int, *, name: str | None = None, use_model: bool = True) -> Draft:
    """Draft `skills/NAME/SKILL.md` from a successful attempt, for the person to edit.

    With a built-in agent that has a model (the default agent, else `builtin`), the model writes
    it from the task, the summary and the diff; without one, a template is filled from the task,
    the summary and the diff stats.
    """
    store = project.store
    attempt = store.get_attempt(attempt_id)
    if str(attempt.state) not in LEARNABLE or not attempt.head_commit:
        raise ClawError(f"attempt {attempt_id} is {attempt.state}: only a successful attempt "
                        f"({', '.join(LEARNABLE)}) teaches a skill",
                        hint="`claw show TASK` lists the attempts and their states")
    task = store.get_task(attempt.task_id)
    name = check_name(name or git.slugify(task.title) or f"task-{task.id}")
    stats = git.diff_stats(project.root, attempt.base_commit, attempt.head_commit)
    files = ", ".join(f"{s.path} (+{s.added} -{s.deleted})" for s in stats) or "none"
    checks = {True: "passed", False: "failed", None: "none configured"}[attempt.checks_passed]
    summary = (attempt.summary or "").strip() or "(the agent left no summary)"
    model, why_not = (_learning_model(project) if use_model else (None, "--no-model"))
    if model is not None:
        diff = git.diff(project.root, attempt.base_commit, attempt.head_commit)
        if len(diff) > DIFF_LIMIT:
            diff = diff[:DIFF_LIMIT] + f"\n[... {len(diff) - DIFF_LIMIT} more characters ...]"
        reply = model.complete([{"role": "user", "content": LEARN_PROMPT.format(
            task_id=task.id, title=task.title, body=task.body, summary=summary, checks=checks,
            files=files, diff=diff)}])
        drafted = _parse_draft(reply.text)
        if drafted:
            path = new_skill(project.root, name, drafted[0][:DESCRIPTION_MAX], drafted[1])
            return Draft(path, model.settings.model)
        why_not = f"the model's reply had no DESCRIPTION line (it began {reply.text[:80]!r})"
    description = f"How task {task.id} was done: {task.title}. Use for similar work."
    body = f"""\
# {task.title}

Drafted by `claw skill learn {attempt_id}` from task {task.id}, attempt {attempt.number}
({attempt.agent}), whose checks {checks}. Edit it into instructions worth following.

## When to use this
Tasks like: {task.title}
{task.body.strip()}

## What worked
{summary}

## Files it touched
{chr(10).join(f"- `{s.path}` (+{s.added} -{s.deleted})" for s in stats) or "- none"}

## Steps
1. (Write the steps the attempt took, with exact commands.)
2. Run the checks before finishing.

## Pitfalls
- (What to watch out for.)
"""
    return Draft(new_skill(project.root, name, description, body), None, why_not or "")


def _learning_model(project):
    """The model that drafts skills, and why there is none when there is none."""
    from .agents.builtin import model_of
    from .config import BuiltinAgentConfig

    config = project.config
    for agent_name in dict.fromkeys([config.fleet.default_agent, "builtin"]):
        try:
            agent = config.agent(agent_name)
        except ClawError:
            continue
        if isinstance(agent, BuiltinAgentConfig):
            try:
                return model_of(agent_name, agent), None
            except ClawError as error:
                return None, f"no model: {error.message}"
    return None, "no built-in agent is configured"


def _parse_draft(text: str) -> tuple[str, str] | None:
    match = re.search(r"^\s*DESCRIPTION:\s*(.+?)\s*$", text, re.M)
    if not match:
        return None
    body = text[match.end():].strip()
    body = re.sub(r"^---\n.*?\n---\n", "", body, flags=re.S).strip()  # frontmatter is ours to write
    return match.group(1).strip(), body or "# (the model wrote no body)"
