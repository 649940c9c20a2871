"""Transcripts of model calls: written with secrets redacted, and turned into a scripted-model script.

Each line of `.claw/run/attempts/<id>/transcript.jsonl` is one call: the request body, the reply
(text and tool calls, the same for every API) and, for a non-streamed call, the response body.
`script_from_transcript` makes one rule per conversation (its opening user text) with one step
per model turn, each a tool call or a text as recorded, so `claw fake-llm --script` replays the
run offline: a real agent CLI pointed at it does the same again.

    toml_text = script_from_transcript(read_transcript(path))
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ClawError
from ..redact import REDACTED, Secret, current, learn

# In a transcript, beyond what the redactor knows: NAME=value where the name says it is a
# secret (keep the name, hide the value), and every string under a field named like a secret.
_ASSIGNMENT = re.compile(r"\b([A-Za-z0-9_]*(?:KEY|SECRET|TOKEN|PASSWORD|PASSWD)[A-Za-z0-9_]*)"
                         r"(\s*[=:]\s*)(['\"]?)([^\s'\"]{6,})")
_SECRET_FIELD = re.compile(r"(?i)(api[-_]?key|secret|password|passwd|authorization|credential"
                           r"|access[-_]?token|auth[-_]?token|refresh[-_]?token|^token$)")


def _redactor(secrets: Iterable[str]):
    """The process's redactor, taught `secrets` (the gateway's upstream keys) when it lacks one."""
    redactor = current()
    missing = [s for s in secrets if s and s not in redactor.secrets]
    return learn(Secret(s, "a gateway upstream key") for s in missing) if missing else redactor


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    return _redact_text(text, _redactor(secrets))


def _redact_text(text: str, redactor) -> str:
    text = redactor.text(text)
    return _ASSIGNMENT.sub(lambda m: m.group(1) + m.group(2) + m.group(3) + REDACTED
                           if m.group(4) != REDACTED else m.group(0), text)


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON value with secrets replaced: what the redactor knows (the given values
    among them), known key formats, and every string under a field named like a secret
    (api_key, password, authorization...)."""
    return _redact(value, _redactor(secrets))


def _redact(value: Any, redactor) -> Any:
    if isinstance(value, str):
        return _redact_text(value, redactor)
    if isinstance(value, list):
        return [_redact(item, redactor) for item in value]
    if isinstance(value, dict):
        return {key: REDACTED if isinstance(item, str) and _SECRET_FIELD.search(str(key))
                else _redact(item, redactor) for key, item in value.items()}
    return value


def append_entry(path: Path, entry: dict[str, Any], secrets: Iterable[str] = ()) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = json.dumps(redact(entry, secrets), ensure_ascii=False)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def read_transcript(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ClawError(f"cannot read the transcript {path}: {error.strerror}",
                        hint="transcripts are at .claw/run/attempts/ID/transcript.jsonl") from None
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise ClawError(f"{path}:{number} is not a JSON line",
                            hint="a transcript has one JSON object per line, as the gateway writes it") from None
    return entries


# -- replay ---------------------------------------------------------------------------------

def _text(content: Any) -> str:
    """Message text as the scripted model reads it (parts joined by newlines)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text(part.get("text", part.get("content")))
                         for part in content if isinstance(part, dict)
                         and ("text" in part or "content" in part))
    return ""


def conversation_of(api: str, request: Any) -> tuple[str, int] | None:
    """(opening user text, model turns so far) of a request, read as the scripted model reads it."""
    from .scripted import READERS, ScriptError

    if not isinstance(request, dict) or api not in READERS:
        return None
    try:
        conversation = READERS[api](request)
    except ScriptError:
        return None
    return (conversation.opening, conversation.turn) if conversation.opening else None


def _step(entry: dict[str, Any]) -> dict[str, Any] | None:
    """What the model answered on one call: its first tool call (a client runs it and comes
    back, which makes the next turn), else its text; an error as it was."""
    status = entry.get("http_status") or 0
    if status >= 400:
        return {"error": status, "message": entry.get("error") or "recorded error"}
    if entry.get("status") != "ok":
        return None  # refused, unreachable, cut short: nothing the model said
    reply = entry.get("reply") or {}
    tools = reply.get("tool_calls") or []
    if tools and tools[0].get("name"):
        arguments = tools[0].get("arguments") or "{}"
        try:
            valid = isinstance(json.loads(arguments), dict)
        except ValueError:
            valid = False
        return {"tool": tools[0]["name"], "input_json": arguments if valid else "{}"}
    return {"text": reply.get("text", "")}


def _distinct_prefix(text: str, others: list[str], minimum: int = 160) -> str:
    """The shortest start of `text` (at least `minimum` characters) no other message shares,
    compared with paths and commit ids counted as equal (they change from run to run, so they
    cannot tell two conversations apart in a replay); it never ends inside one of them."""
    parts = _volatile_parts(text)
    mine = _normalized(parts)
    length = min(len(mine), minimum)
    for other in others:
        theirs = _normalized(_volatile_parts(other))
        common = 0
        for a, b in zip(mine, theirs):
            if a != b:
                break
            common += 1
        length = max(length, min(common + 1, len(mine)))
    prefix, used = "", 0
    for literal, volatile in parts:     # back from normalized length to the text's own
        if used >= length:
            break
        take = min(len(literal), length - used)
        prefix, used = prefix + literal[:take], used + take
        if used < length and volatile:
            prefix, used = prefix + volatile, used + 1
    return prefix


def _volatile_parts(text: str) -> list[tuple[str, str]]:
    """`text` as (literal, volatile) pairs: each path or commit id with the text before it."""
    parts, start = [], 0
    for match in _PATH.finditer(text):
        parts.append((text[start:match.start()], match.group(0)))
        start = match.end()
    parts.append((text[start:], ""))
    return parts


def _normalized(parts: list[tuple[str, str]]) -> str:
    return "".join(literal + ("\0" if volatile else "") for literal, volatile in parts)


def script_from_transcript(entries: list[dict[str, Any]]) -> str:
    """A scripted-model script (TOML) that answers each recorded conversation as it was answered."""
    conversations: dict[str, dict[int, tuple[dict[str, Any], dict[str, Any]]]] = {}
    for entry in entries:
        found = conversation_of(entry.get("api", "chat"), entry.get("request"))
        step = _step(entry)
        if found is None or step is None:
            continue
        first, turn = found
        conversations.setdefault(first, {})[turn] = (step, entry)  # a retry's answer wins
    if not conversations:
        raise ClawError("the transcript has no answered conversation to replay",
                        hint="record a run through the gateway first (`[gateway] transcripts = true`)")
    firsts = list(conversations)
    rules = []
    for number, first in enumerate(firsts):
        prefix = _distinct_prefix(first, [f for f in firsts if f != first])
        whole = prefix == first and any(f.startswith(first) for f in firsts if f != first)
        match = r"\A" + _loose(prefix) + (r"\Z" if whole else "")
        turns = conversations[first]
        steps, notes = [], []
        for turn in range(max(turns) + 1):
            if turn not in turns:
                steps.append({"error": 500, "message": f"turn {turn} was not recorded"})
                continue
            step, entry = turns[turn]
            steps.append(step)
            reply = entry.get("reply") or {}
            tools = reply.get("tool_calls") or []
            if len(tools) > 1:
                notes.append(f"turn {turn} called {len(tools)} tools at once; only the first is replayed: "
                             + ", ".join(str(t.get("name")) for t in tools))
            if tools and reply.get("text"):
                notes.append(f"turn {turn} said something along with its tool call; only the call is replayed")
        rules.append((len(prefix), number, first, match, steps, notes))
    # Longer matches first, so a conversation whose start another one shares is still found.
    rules.sort(key=lambda rule: (-rule[0], rule[1]))
    out = ["# Replays a recorded run: one rule per conversation, one step per assistant turn.",
           "# Made by `claw gateway script`; serve it with `claw fake-llm --script FILE`.", ""]
    for _, number, first, match, steps, notes in rules:
        out.append("[[rule]]")
        out.append(f"name = {_toml(f'conversation-{number + 1}')}")
        out.append(f"match = {_toml(match)}")
        out.extend(f"# {note}" for note in notes)
        for step in steps:
            out.append("[[rule.steps]]")
            out.extend(f"{key} = {_toml(value)}" for key, value in step.items())
        out.append("")
    return "\n".join(out)


# Absolute paths (a worktree, a temporary folder) and commit ids (a commit's time is in its id)
# differ from one run to the next.
_PATH = re.compile(r"/(?:[\w.@+-]+/)+[\w.@+-]*|\b[0-9a-f]{7,40}\b")


def _loose(text: str) -> str:
    """A regex for `text` in which each absolute path matches any path and each commit id any
    commit id, so the script also answers the same conversation held in another folder, on
    other commits (a replay in a test's own tmp dir; agents such as Claude Code put the
    repository's recent commits in their prompt)."""
    parts = _PATH.split(text)
    return r"[^\s'\"<>]*".join(re.escape(part) for part in parts)


def _toml(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    # A JSON string is a TOML basic string, except that TOML wants DEL escaped too.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")
