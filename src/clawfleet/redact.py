"""The redactor: one place that knows the secret values and takes them out of what clawfleet writes.

Everything clawfleet writes that came from an agent, a model or a check (agent logs, transcripts,
trajectories, status and summaries, check logs, memory notes, events, notifications, the AI
reviewer's comments) goes through it. It replaces with [REDACTED]:

- known values: the provider keys in the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, ... and
  every variable whose name says it holds a key, token, secret or password), the variables the
  config names (the gateway's upstream `key_env`s, agents' `api_key_env`, `[secrets] env`), and
  the values in files that `[workspace] include` copies into workspaces (a `.env`);
- strings in well-known key formats (sk-..., ghp_..., AKIA..., private key blocks, our own
  claw-N.sig attempt keys), in free text only: never in the store's structural fields.

Values shorter than MIN_LENGTH characters are left alone: redacting "1" or "true" everywhere
would mangle every log and find nothing worth hiding.

    redactor = redact.current()            # this process's: its environment + what was learned
    redact.learn_files([root / ".env"])    # values of included files, from now on
    clean = redact.text(agent_output)

Matching is plain substring search (C speed) for the known values and one regex per key format,
each tried only when its literal prefix occurs in the text. bench/redact.py measures it: a 10 MB
log with 20 known values in 0.05-0.6 s on this 2-core machine (quiet to heavily loaded), ten
times faster than one combined regex of the same.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REDACTED = "[REDACTED]"
MIN_LENGTH = 8
MAX_FILE_BYTES = 1 << 20          # an included file larger than this is not read for values

# The provider keys named outright, for names the pattern below would miss.
PROVIDER_VARIABLES = (
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "GEMINI_API_KEY", "GOOGLE_API_KEY",
    "OPENROUTER_API_KEY", "MISTRAL_API_KEY", "GROQ_API_KEY", "DEEPSEEK_API_KEY", "XAI_API_KEY",
    "TOGETHER_API_KEY", "FIREWORKS_API_KEY", "COHERE_API_KEY", "AZURE_OPENAI_API_KEY", "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN", "GITHUB_TOKEN", "GH_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "CLAW_GATEWAY_KEY", "CLAW_WEBHOOK_TOKEN", "TELEGRAM_BOT_TOKEN",
)
# A variable whose name says it holds a secret: ..._API_KEY, ..._TOKEN, ..._SECRET, PASSWORD...
SECRET_NAME = re.compile(r"(?:^|_)(?:API_?KEY|ACCESS_KEY|SECRET_KEY|PRIVATE_KEY|TOKEN|SECRET|PASSWORD|"
                         r"PASSWD|CREDENTIALS?)(?:$|_)|(?:^|_)KEY$", re.I)

# Key formats worth catching in free text even when nobody told us the value. Each is tried only
# when its literal prefix is in the text: one combined regex would lose the engine's fast
# literal-prefix search and run 3-4 times slower (measured: bench/redact.py).
FORMATS = [
    # sk-... keys of OpenAI and Anthropic: a run of 16 letters and digits, unlike "sk-learn-compat-fixes"
    ("sk-", re.compile(r"sk-(?=[A-Za-z0-9_\-]*?[A-Za-z0-9]{16})[A-Za-z0-9_\-]{20,}")),
    ("claw-", re.compile(r"claw-x?\d+\.[0-9a-f]{16,}")),        # our per-attempt gateway keys
    ("AKIA", re.compile(r"AKIA[0-9A-Z]{16}")),                 # AWS access key ids
    ("gh", re.compile(r"gh[pousr]_[A-Za-z0-9]{30,}")),          # GitHub tokens
    ("github_pat_", re.compile(r"github_pat_[A-Za-z0-9_]{30,}")),
    ("xox", re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}")),       # Slack
    ("AIza", re.compile(r"AIza[0-9A-Za-z_\-]{35}")),             # Google
    ("PRIVATE KEY-----", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)),
    # "Bearer TOKEN": the word is kept (a group, not a lookbehind: 3x faster on a 10 MB log).
    ("earer ", re.compile(r"([Bb]earer )[A-Za-z0-9._~+/\-]{12,}=*")),
]
_KEEP = {"earer ": r"\1" + REDACTED.replace("\\", "\\\\")}

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.\-]*)\s*[=:]\s*(.*?)\s*$")


@dataclass(frozen=True)
class Secret:
    value: str
    source: str          # where it is known from, said instead of the value: "$OPENAI_API_KEY"
    strong: bool = True  # surely a credential (a key variable, a named one): a diff holding it never lands


class Redactor:
    """Known secret values (and, for free text, key formats) replaced by [REDACTED]."""

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        known: dict[str, Secret] = {}
        for secret in secrets:
            if len(secret.value) < MIN_LENGTH:
                continue
            previous = known.get(secret.value)
            if previous is None or (secret.strong and not previous.strong):
                known[secret.value] = secret
        self.secrets = known
        # Also the forms a value takes inside JSON text (the store keeps event data as JSON).
        forms: dict[str, Secret] = dict(known)
        for value, secret in known.items():
            for form in (json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]):
                forms.setdefault(form, secret)
        # Longest first: a value inside a longer one must not leave the longer one's rest behind.
        self._values = sorted(forms, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def known(self, text: str) -> str:
        """`text` with the known values replaced (no key formats: for fields that must stay exact)."""
        if not text or not self._values:
            return text
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def text(self, text: str) -> str:
        """`text` with the known values and every string in a known key format replaced."""
        if not text:
            return text
        text = self.known(text)
        for prefix, pattern in FORMATS:
            if prefix in text:
                text = pattern.sub(_KEEP.get(prefix, REDACTED), text)
        return text

    def data(self, value: Any) -> Any:
        """A copy of a JSON-like value with `text` applied to every string in it (keys kept)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list | tuple):
            return [self.data(item) for item in value]
        if isinstance(value, dict):
            return {key: self.data(item) for key, item in value.items()}
        return value

    def found(self, text: str, strong_only: bool = False) -> list[Secret]:
        """The known secrets that occur in `text` (for the diff scan: which, never where the value is)."""
        return [secret for value, secret in self.secrets.items()
                if value in text and (secret.strong or not strong_only)]

    def file(self, path: Path) -> bool:
        """Redact a file in place (whole or not at all, 0600 after); True when it changed.

        Binary files are read as UTF-8 with surrogate escapes, so their bytes come back as they were.
        """
        try:
            if path.is_symlink() or not path.is_file():
                return False
            raw = path.read_bytes()
        except OSError:
            return False
        text = raw.decode("utf-8", "surrogateescape")
        clean = self.text(text)
        if clean == text:
            return False
        tmp = path.with_name(path.name + ".redacting")
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(clean.encode("utf-8", "surrogateescape"))
        os.replace(tmp, path)
        return True

    def tree(self, folder: Path, skip: Iterable[str] = ()) -> int:
        """Redact every regular file under `folder` (symlinks never followed); how many changed.

        `skip`: names of subfolders left alone (a checkout of the code under review).
        """
        changed = 0
        skipped = set(skip)
        for root, dirs, files in os.walk(folder, followlinks=False):
            dirs[:] = [d for d in dirs if d not in skipped]
            for name in files:
                if self.file(Path(root) / name):
                    changed += 1
        return changed


# -- where the values come from ---------------------------------------------------------------

def secrets_from_env(env: Mapping[str, str], names: Iterable[str] = ()) -> list[Secret]:
    """The values of the provider variables, of every variable named like a secret, and of `names`."""
    wanted = set(names)
    found = []
    for name, value in env.items():
        if name in wanted or name in PROVIDER_VARIABLES or SECRET_NAME.search(name):
            found.append(Secret(value.strip(), f"${name}"))
    return found


def secrets_from_file(path: Path, label: str | None = None) -> list[Secret]:
    """The values in a file of NAME=value (or NAME: value) lines, such as a `.env`.

    A value whose name says it is a secret, or that looks random (letters and digits or symbols,
    12 characters or more), is strong: a diff that holds it never lands. Other values
    (APP_ENV=development) are redacted from what clawfleet writes, but may appear in code.
    Any other line (of a certificate, a key) counts as a whole.
    """
    label = label or path.name
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            return []
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(line)
        value = _unquote(match.group(2)) if match else ""
        if len(value) >= MIN_LENGTH:
            name = match.group(1)
            found.append(Secret(value, f"the value of {name} in {label}",
                                strong=bool(SECRET_NAME.search(name)) or _looks_random(value)))
        else:  # not NAME=value (a line of a key or certificate), or a value too short alone
            found.append(Secret(stripped, f"a line of {label}", strong=_looks_random(stripped)))
    return found


def files_under(paths: Iterable[Path], limit: int = 1000) -> list[Path]:
    """The regular files among `paths` and under the folders among them (no symlink followed)."""
    found: list[Path] = []
    for path in paths:
        if path.is_symlink():
            continue
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            for root, dirs, files in os.walk(path, followlinks=False):
                found += [Path(root) / name for name in sorted(files) if not (Path(root) / name).is_symlink()]
        if len(found) >= limit:
            return found[:limit]
    return found


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value.split(" #", 1)[0].strip()   # an unquoted value's trailing comment


def _looks_random(value: str) -> bool:
    if len(value) < 12 or " " in value:
        return False
    classes = sum(bool(re.search(pattern, value)) for pattern in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]"))
    return classes >= 2 and len(set(value)) >= 8


# -- this process's redactor ------------------------------------------------------------------

_lock = threading.Lock()
_learned: dict[str, Secret] = {}
_env_names: set[str] = set()
_current: Redactor | None = None


def current() -> Redactor:
    """The redactor of this process: its environment's secrets and every value learned so far.

    What is learned is never forgotten (a process that worked for a project keeps hiding its
    secrets); `refresh()` reads the environment again.
    """
    global _current
    if _current is None:
        refresh()
    return _current  # type: ignore[return-value]


def refresh() -> Redactor:
    """Build this process's redactor again from its environment and what it learned."""
    global _current
    with _lock:
        for secret in secrets_from_env(os.environ, _env_names):
            _learned.setdefault(secret.value, secret)
        _current = Redactor(_learned.values())
        return _current


def learn(secrets: Iterable[Secret]) -> Redactor:
    """Add values to this process's redactor (from now on, everywhere)."""
    with _lock:
        for secret in secrets:
            if len(secret.value) >= MIN_LENGTH and (secret.value not in _learned or secret.strong):
                _learned[secret.value] = secret
    return refresh()


def learn_env(names: Iterable[str]) -> Redactor:
    """Treat these variables as secrets too (the config names them), now and on every refresh."""
    with _lock:
        _env_names.update(names)
    return refresh()


def learn_files(paths: Iterable[Path], root: Path | None = None) -> Redactor:
    """Add the values in these files (and under these folders) to this process's redactor."""
    secrets: list[Secret] = []
    for path in files_under(paths):
        label = path.relative_to(root).as_posix() if root and path.is_relative_to(root) else path.name
        secrets += secrets_from_file(path, label)
    return learn(secrets)


def text(value: str) -> str:
    """This process's redactor applied to free text (known values and key formats)."""
    return current().text(value)


def data(value: Any) -> Any:
    return current().data(value)


def config_secret_names(config: Any) -> list[str]:
    """The variables a project's config says hold secrets: the gateway's upstream keys, agents'
    `api_key_env`, the embeddings key, the bots' tokens and `[secrets] env`."""
    names = [up.key_env for up in config.gateway.upstreams.values() if up.key_env]
    names += [agent.api_key_env for agent in config.agents.values() if getattr(agent, "api_key_env", None)]
    names += [config.memory.embeddings_api_key_env or "OPENAI_API_KEY", config.telegram.token_env,
              config.webhook.token_env]
    names += list(getattr(getattr(config, "secrets", None), "env", None) or [])
    return [name for name in dict.fromkeys(names) if name]


def for_project(project: Any) -> Redactor:
    """This process's redactor, taught a project's secrets: the variables its config names and
    the values in the files its `[workspace] include` (and `link`) copies into workspaces."""
    config = project.config
    learn_env(config_secret_names(config))
    if not (config.workspace.include or config.workspace.link):
        return current()
    from .includes import include_paths  # the same expansion of the globs as the copying

    try:
        included = [project.root / path for path, _ in include_paths(project, config.workspace)]
    except (OSError, ValueError):
        included = []
    return learn_files(included, project.root) if included else current()
