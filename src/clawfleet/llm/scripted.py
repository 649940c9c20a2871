"""The scripted model server: a real HTTP server that answers like an LLM provider, from a script.

It speaks OpenAI chat completions, the OpenAI Responses API, Anthropic Messages and the Gemini API,
streaming and not, so the built-in agent and the real agent CLIs (Claude Code, Codex, Gemini CLI)
pointed at it by base URL run offline, deterministically. A script is a list of rules; the first
rule whose `match` is found in the conversation's opening user text answers, with its step N for
the N-th model turn (N = model turns already in the conversation: assistant messages, Responses
output items or Gemini `model` contents). Stateless: the conversation itself says where it is.
A client that opens with example exchanges of its own (aider) is matched too: a rule's `match`
is looked for in each later user message in turn, and its turns are counted from there.

A step is a reply text (`text`, `command`, `done`), an HTTP error (`error`), or a tool call
(`tool` + `input`), answered in the shape the API asks for: an Anthropic `tool_use` block, an
OpenAI chat `tool_calls` entry, a Responses `function_call` item or a Gemini `functionCall` part.
The client runs the tool and sends its result back, which makes the next turn.

    with ScriptedServer(Script.load("script.toml")) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="none")
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import re
import struct
import threading
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..errors import ClawError
from .serve import BackgroundServer

STEP_KINDS = ("command", "text", "done", "error", "tool")
STEP_KEYS = {*STEP_KINDS, "message", "delay", "input", "input_json"}


@dataclass(frozen=True)
class Step:
    kind: str
    value: str = ""                     # the text, the error message, or the tool's name
    status: int = 200
    delay: float = 0.0
    input: str = "{}"                   # a tool call's arguments, as JSON (hashable, sent as is)

    def reply_text(self) -> str:
        if self.kind == "command":
            return f"THOUGHT: next step.\n\n```bash\n{self.value}\n```"
        if self.kind == "done":
            return f"DONE: {self.value}"
        return self.value


@dataclass(frozen=True)
class Rule:
    name: str
    steps: tuple[Step, ...]
    match: re.Pattern[str] | None = None
    not_match: re.Pattern[str] | None = None
    match_title: re.Pattern[str] | None = None   # searched in the task's title only
    match_task: re.Pattern[str] | None = None    # in its title and body only

    def matches(self, first_user: str) -> bool:
        if self.match is not None and not self.match.search(first_user):
            return False
        if self.match_title is not None or self.match_task is not None:
            title, task = task_of(first_user)
            if self.match_title is not None and not self.match_title.search(title):
                return False
            if self.match_task is not None and not self.match_task.search(task):
                return False
        return self.not_match is None or not self.not_match.search(first_user)


# An attempt's prompt (templates/attempt.md.j2) holds the task under this heading, its title on
# the next line; the body runs to the template's next paragraph. The rest of the prompt (SOUL.md,
# AGENTS.md, memory notes) names other tasks too, so `match` on it answers the wrong ones.
_TASK = re.compile(r"^# Your task \(task \d+[^)\n]*\)\n(?P<title>[^\n]*)\n(?P<body>.*?)"
                   r"(?=^This is a \w+ task: its result|^You work in a git worktree|\Z)", re.M | re.S)


def task_of(prompt: str) -> tuple[str, str]:
    """The task's title, and its title and body, from an attempt's prompt ("" when it has none)."""
    found = _TASK.search(prompt)
    if found is None:
        return "", ""
    return found["title"], f"{found['title']}\n{found['body'].strip()}"


class ScriptError(ClawError):
    """No rule or no step answers a conversation."""


@dataclass
class Script:
    rules: list[Rule] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | str) -> "Script":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise ClawError(f"cannot read the script {path}: {error.strerror}",
                            hint="check the path given to --script") from None
        return cls.parse(text, source=str(path))

    @classmethod
    def parse(cls, text: str, source: str = "script") -> "Script":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ClawError(f"{source}: not valid TOML: {error}", hint="fix the syntax") from None
        return cls.from_rules(data.get("rule"), source=source)

    @classmethod
    def from_rules(cls, rules: list[dict[str, Any]], source: str = "script") -> "Script":
        if not isinstance(rules, list) or not rules:
            raise ClawError(f"{source}: no [[rule]] tables", hint="see README.md, 'The scripted model'")
        return cls([_rule(index, raw, source) for index, raw in enumerate(rules)])

    def step_for(self, first_user: str, turn: int, later: tuple[tuple[str, int], ...] = ()) -> Step:
        """The step answering a conversation: the first rule matching its opening, at `turn`;
        else the first rule whose `match` finds a later user message, at the turns after it."""
        found = next(((rule, turn) for rule in self.rules if rule.matches(first_user)), None)
        if found is None:
            found = next(((rule, turns) for rule in self.rules
                          if (rule.match or rule.match_title or rule.match_task) is not None
                          for text, turns in later if rule.matches(text)), None)
        if found is None:
            raise ScriptError("scripted model: no rule matches this conversation; first user message "
                              f"starts: {first_user[:120]!r}")
        rule, at = found
        if at >= len(rule.steps):
            raise ScriptError(f"scripted model: rule '{rule.name}' has no step {at} (it has {len(rule.steps)})")
        return rule.steps[at]


def _rule(index: int, raw: Any, source: str) -> Rule:
    if not isinstance(raw, dict):
        raise ClawError(f"{source}: rule {index} is not a table", hint="each rule is a [[rule]] table")
    name = str(raw.get("name") or f"rule-{index}")
    where = f"{source}: rule '{name}'"
    unknown = set(raw) - {"name", "match", "not_match", "match_title", "match_task", "steps"}
    if unknown:
        raise ClawError(f"{where}: unknown key(s) {sorted(unknown)}",
                        hint="a rule has name, match, match_title, match_task, not_match and steps")
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ClawError(f"{where}: needs a non-empty `steps` list", hint="add [[rule.steps]] tables")
    return Rule(name, tuple(_step(s, where, n) for n, s in enumerate(steps)),
                _regex(raw.get("match"), where), _regex(raw.get("not_match"), where),
                _regex(raw.get("match_title"), where), _regex(raw.get("match_task"), where))


def _regex(pattern: Any, where: str) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        if not isinstance(pattern, str):
            raise re.error("it is not a string")
        return re.compile(pattern, re.S)
    except re.error as error:
        raise ClawError(f"{where}: bad regex {pattern!r}: {error}", hint="fix the pattern") from None


def _step(raw: Any, where: str, number: int) -> Step:
    if not isinstance(raw, dict):
        raise ClawError(f"{where}: step {number} is not a table", hint="e.g. { command = \"ls\" }")
    unknown = set(raw) - STEP_KEYS
    kinds = [k for k in STEP_KINDS if k in raw]
    if unknown or len(kinds) != 1:
        raise ClawError(f"{where}: step {number} needs exactly one of {', '.join(STEP_KINDS)}"
                        + (f" (unknown: {sorted(unknown)})" if unknown else ""),
                        hint="optional keys: delay (seconds), message (with error)")
    kind, value, message, delay = kinds[0], raw[kinds[0]], raw.get("message", "scripted error"), raw.get("delay", 0)
    arguments = raw.get("input", {})
    if "input_json" in raw:   # the arguments as recorded (JSON has nulls and shapes TOML lacks)
        try:
            arguments = json.loads(raw["input_json"]) if isinstance(raw["input_json"], str) else None
        except ValueError:
            arguments = None
        if arguments is None or "input" in raw:
            arguments = f"input_json {raw['input_json']!r} (give one of input or input_json, a JSON object)"
    problem = None
    if kind == "error" and (type(value) is not int or not 400 <= value <= 599):
        problem = f"error must be an HTTP status from 400 to 599, not {value!r}"
    elif kind != "error" and not isinstance(value, str):
        problem = f"{kind} must be a string, not {value!r}"
    elif not isinstance(message, str) or ("message" in raw and kind != "error"):
        problem = "message is a string, and only for error steps"
    elif ("input" in raw or "input_json" in raw) and kind != "tool":
        problem = "input is only for tool steps"
    elif not isinstance(arguments, dict):
        problem = f"input must be a table of the tool's arguments, not {arguments!r}"
    elif type(delay) not in (int, float) or delay < 0:
        problem = f"delay must be a number of seconds >= 0, not {delay!r}"
    if problem:
        raise ClawError(f"{where}: step {number}: {problem}",
                        hint='e.g. { command = "ls" }, { tool = "Bash", input = { command = "ls" } } '
                             'or { error = 500, message = "overloaded", delay = 1.5 }')
    if kind == "error":
        return Step("error", message, value, float(delay))
    if kind == "tool":
        return Step("tool", value, 200, float(delay), json.dumps(arguments, default=str))
    return Step(kind, value, 200, float(delay))


# -- conversations ------------------------------------------------------------------------

def _text(content: Any) -> str:
    """Text of a message content: a string, or a list of text parts/blocks (others skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
                elif "content" in part:
                    parts.append(_text(part["content"]))
        return "\n".join(parts)
    return ""


@dataclass(frozen=True)
class Conversation:
    """What the server needs from a request: the text rules match, the turn, the input size."""
    opening: str            # the text a rule's `match` is searched in
    turn: int               # model turns already taken: step `turn` answers
    input_tokens: int       # an estimate: characters / 4
    later: tuple[tuple[str, int], ...] = ()   # each later user message, with the model turns after it


def _messages_conversation(body: dict[str, Any]) -> Conversation:
    """OpenAI chat and Anthropic Messages: the first user message; one turn per assistant message.

    Tool results come back as `tool` messages (OpenAI) or `tool_result` blocks in a user message
    (Anthropic), so counting assistant messages counts tool calls too.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ScriptError("scripted model: the request has no `messages` list of objects")
    users = [(n, _text(m.get("content"))) for n, m in enumerate(messages) if m.get("role") == "user"]
    first_user = users[0][1] if users else ""
    turns = sum(1 for m in messages if m.get("role") == "assistant")
    later = tuple((text, sum(1 for m in messages[n:] if m.get("role") == "assistant")) for n, text in users[1:])
    size = len(_text(body.get("system"))) + sum(len(_text(m.get("content"))) for m in messages)
    return Conversation(first_user, turns, _tokens(size), later)


# Responses input items a model turn leaves in the conversation (one per scripted step).
_MODEL_ITEMS = {"function_call", "custom_tool_call", "local_shell_call"}


def _responses_conversation(body: dict[str, Any]) -> Conversation:
    """Responses API: the user messages before the first model turn; one turn per model item.

    Codex sends its environment context as a user message of its own before the prompt, so all
    the opening user messages are matched, not only the first.
    """
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ScriptError("scripted model: the request has no `input` string or list of objects")
    opening: list[str] = []
    turns, size = 0, len(_text(body.get("instructions")))
    for item in items:
        kind, role = item.get("type", "message"), item.get("role")
        if kind in _MODEL_ITEMS or (kind == "message" and role == "assistant"):
            turns += 1
        elif kind == "message" and role == "user" and not turns:
            opening.append(_text(item.get("content")))
        size += len(_text(item.get("content"))) + len(str(item.get("output") or item.get("arguments") or ""))
    return Conversation("\n".join(opening), turns, _tokens(size))


def _gemini_conversation(body: dict[str, Any]) -> Conversation:
    """Gemini API: the user contents before the first model turn; one turn per `model` content.

    Function results come back as `functionResponse` parts in a user content, so counting model
    contents counts tool calls too.
    """
    contents = body.get("contents")
    if not isinstance(contents, list) or not all(isinstance(c, dict) for c in contents):
        raise ScriptError("scripted model: the request has no `contents` list of objects")
    opening: list[str] = []
    turns, size = 0, len(_text((body.get("systemInstruction") or {}).get("parts")))
    for content in contents:
        parts = content.get("parts") if isinstance(content.get("parts"), list) else []
        if content.get("role") == "model":
            turns += 1
        elif not turns:
            opening.append(_text(parts))
        size += len(_text(parts)) + sum(len(json.dumps(p.get("functionResponse") or ""))
                                         for p in parts if isinstance(p, dict))
    return Conversation("\n".join(opening), turns, _tokens(size))


# How each API's request reads as a conversation (the transcript's script maker reads them alike).
READERS: dict[str, Callable[[dict[str, Any]], Conversation]] = {
    "chat": _messages_conversation, "messages": _messages_conversation,
    "responses": _responses_conversation, "gemini": _gemini_conversation}


def trigram_vector(text: str, dimensions: int = 256) -> list[float]:
    """A stand-in embedding: the text's letter trigrams hashed into a fixed number of signed
    dimensions, so texts sharing letter sequences (a word misspelt, another form of it) are
    near; deterministic across processes, which Python's own hash() is not."""
    vector = [0.0] * dimensions
    words = re.findall(r"\w+", text.lower())
    for word in words:
        padded = f" {word} "
        for i in range(len(padded) - 2):
            digest = hashlib.blake2b(padded[i:i + 3].encode(), digest_size=4).digest()
            slot = int.from_bytes(digest, "big")
            vector[slot % dimensions] += 1.0 if slot & 0x80000000 else -1.0
    return vector


def _tokens(chars: int) -> int:
    return max(1, chars // 4)


def _chunks(text: str, size: int = 24) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _sse(data: dict[str, Any], event: str | None = None) -> str:
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"


def _stream(events: Callable[[], AsyncIterator[str]]) -> StreamingResponse:
    return StreamingResponse(events(), media_type="text/event-stream")


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}


def _error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def openai_error(status: int, message: str) -> JSONResponse:
    kind = "server_error" if _error_type(status) == "api_error" else _error_type(status)
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}},
                        status_code=status)


def anthropic_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "error": {"type": _error_type(status), "message": message}},
                        status_code=status)


_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                  404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}


def gemini_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message,
                                   "status": _GOOGLE_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")}},
                        status_code=status)


class _Api:
    """The three wire formats: each answers a body with a step (a text or a tool call)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def _output_tokens(self, step: Step) -> int:
        return _tokens(len(step.value) + len(step.input)) if step.kind == "tool" else _tokens(len(step.reply_text()))

    # -- OpenAI chat completions ------------------------------------------------------------

    def chat(self, body: dict[str, Any], step: Step, input_tokens: int) -> Any:
        number = next(self._ids)
        ident, model, created = f"chatcmpl-scripted-{number}", body.get("model", "scripted"), int(time.time())
        output_tokens = self._output_tokens(step)
        usage = {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                 "total_tokens": input_tokens + output_tokens}
        call = ({"id": f"call_scripted_{number}", "type": "function",
                 "function": {"name": step.value, "arguments": step.input}} if step.kind == "tool" else None)
        finish = "tool_calls" if call else "stop"
        if not body.get("stream"):
            message = ({"role": "assistant", "content": None, "tool_calls": [call]} if call
                       else {"role": "assistant", "content": step.reply_text()})
            return JSONResponse({"id": ident, "object": "chat.completion", "created": created,
                                 "model": model, "usage": usage, "choices": [
                                     {"index": 0, "finish_reason": finish, "message": message}]})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            return _sse({"id": ident, "object": "chat.completion.chunk", "created": created,
                         "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        async def events() -> AsyncIterator[str]:
            if call:
                yield chunk({"role": "assistant", "content": None, "tool_calls": [
                    {"index": 0, "id": call["id"], "type": "function",
                     "function": {"name": step.value, "arguments": ""}}]})
                for piece in _chunks(step.input):
                    yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            else:
                yield chunk({"role": "assistant", "content": ""})
                for piece in _chunks(step.reply_text()):
                    yield chunk({"content": piece})
            yield chunk({}, finish)
            if include_usage:
                yield _sse({"id": ident, "object": "chat.completion.chunk", "created": created,
                            "model": model, "choices": [], "usage": usage})
            yield "data: [DONE]\n\n"

        return _stream(events)

    # -- Anthropic Messages -----------------------------------------------------------------

    def anthropic(self, body: dict[str, Any], step: Step, input_tokens: int) -> Any:
        number = next(self._ids)
        ident, model = f"msg_scripted_{number}", body.get("model", "scripted")
        output_tokens = self._output_tokens(step)
        if step.kind == "tool":
            block = {"type": "tool_use", "id": f"toolu_scripted_{number}", "name": step.value,
                     "input": json.loads(step.input)}
            stop_reason = "tool_use"
        else:
            block, stop_reason = {"type": "text", "text": step.reply_text()}, "end_turn"
        message = {"id": ident, "type": "message", "role": "assistant", "model": model,
                   "content": [block], "stop_reason": stop_reason, "stop_sequence": None,
                   "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}
        if not body.get("stream"):
            return JSONResponse(message)

        async def events() -> AsyncIterator[str]:
            start = {**message, "content": [], "stop_reason": None,
                     "usage": {"input_tokens": input_tokens, "output_tokens": 1}}
            yield _sse({"type": "message_start", "message": start}, "message_start")
            if step.kind == "tool":
                yield _sse({"type": "content_block_start", "index": 0,
                            "content_block": {**block, "input": {}}}, "content_block_start")
                for piece in _chunks(step.input):
                    yield _sse({"type": "content_block_delta", "index": 0,
                                "delta": {"type": "input_json_delta", "partial_json": piece}},
                               "content_block_delta")
            else:
                yield _sse({"type": "content_block_start", "index": 0,
                            "content_block": {"type": "text", "text": ""}}, "content_block_start")
                for piece in _chunks(block["text"]):
                    yield _sse({"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
            yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            yield _sse({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                        "usage": {"output_tokens": output_tokens}}, "message_delta")
            yield _sse({"type": "message_stop"}, "message_stop")

        return _stream(events)

    # -- OpenAI Responses -------------------------------------------------------------------

    def responses(self, body: dict[str, Any], step: Step, input_tokens: int) -> Any:
        number = next(self._ids)
        output_tokens = self._output_tokens(step)
        if step.kind == "tool":
            item = {"type": "function_call", "id": f"fc_scripted_{number}", "call_id": f"call_scripted_{number}",
                    "name": step.value, "arguments": step.input, "status": "completed"}
        else:
            item = {"type": "message", "id": f"msg_scripted_{number}", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": step.reply_text(), "annotations": []}]}
        response = {"id": f"resp_scripted_{number}", "object": "response", "created_at": int(time.time()),
                    "model": body.get("model", "scripted"), "status": "completed", "error": None,
                    "incomplete_details": None, "instructions": body.get("instructions"), "metadata": {},
                    "parallel_tool_calls": bool(body.get("parallel_tool_calls", True)),
                    "tool_choice": body.get("tool_choice", "auto"), "tools": [], "output": [item],
                    "usage": {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
                              "output_tokens": output_tokens,
                              "output_tokens_details": {"reasoning_tokens": 0},
                              "total_tokens": input_tokens + output_tokens}}
        if not body.get("stream"):
            return JSONResponse(response)
        sequence = itertools.count()

        def event(kind: str, **data: Any) -> str:
            return _sse({"type": kind, "sequence_number": next(sequence), **data}, kind)

        async def events() -> AsyncIterator[str]:
            # Codex reads the output items from their `done` events and ends the turn only on
            # `response.completed`: a stream without it is retried, then fails.
            pending = {**response, "status": "in_progress", "output": [], "usage": None}
            yield event("response.created", response=pending)
            yield event("response.in_progress", response=pending)
            where = {"item_id": item["id"], "output_index": 0}
            if step.kind == "tool":
                yield event("response.output_item.added", output_index=0,
                            item={**item, "arguments": "", "status": "in_progress"})
                for piece in _chunks(step.input):
                    yield event("response.function_call_arguments.delta", **where, delta=piece)
                yield event("response.function_call_arguments.done", **where, arguments=step.input)
            else:
                text, part = step.reply_text(), {"type": "output_text", "text": "", "annotations": []}
                yield event("response.output_item.added", output_index=0,
                            item={**item, "content": [], "status": "in_progress"})
                yield event("response.content_part.added", **where, content_index=0, part=part)
                for piece in _chunks(text):
                    yield event("response.output_text.delta", **where, content_index=0, delta=piece)
                yield event("response.output_text.done", **where, content_index=0, text=text)
                yield event("response.content_part.done", **where, content_index=0, part={**part, "text": text})
            yield event("response.output_item.done", output_index=0, item=item)
            yield event("response.completed", response=response)

        return _stream(events)


    # -- Gemini API (generateContent, streamGenerateContent) --------------------------------

    def gemini(self, body: dict[str, Any], step: Step, input_tokens: int, model: str, stream: bool) -> Any:
        output_tokens = self._output_tokens(step)
        part = ({"functionCall": {"name": step.value, "args": json.loads(step.input)}} if step.kind == "tool"
                else {"text": step.reply_text()})
        usage = {"promptTokenCount": input_tokens, "candidatesTokenCount": output_tokens,
                 "totalTokenCount": input_tokens + output_tokens}

        def response(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
            candidate = {"content": {"role": "model", "parts": parts}, "index": 0}
            if finish:
                candidate["finishReason"] = finish
            return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
                    "responseId": f"scripted-{next(self._ids)}"}

        if not stream:
            return JSONResponse(response([part], "STOP"))

        async def events() -> AsyncIterator[str]:
            if step.kind == "tool":
                yield _sse(response([part], "STOP"))  # a function call arrives whole
                return
            pieces = _chunks(part["text"])
            for number, piece in enumerate(pieces):
                yield _sse(response([{"text": piece}], "STOP" if number == len(pieces) - 1 else None))

        return _stream(events)


def build_app(script: Script, requests: list[dict[str, Any]], lock: threading.Lock) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    api = _Api()

    async def answer(request: Request, read: Callable[[dict[str, Any]], Conversation], reply, error) -> Any:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "scripted model: the request body is not JSON")
        with lock:
            requests.append({"path": request.url.path, "body": body})
        try:
            if not isinstance(body, dict):
                raise ScriptError("scripted model: the request body is not a JSON object")
            conversation = read(body)
            step = script.step_for(conversation.opening, conversation.turn, conversation.later)
        except ScriptError as problem:
            return error(400, problem.message)
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.kind == "error":
            return error(step.status, step.value)
        return reply(body, step, conversation.input_tokens)

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await answer(request, _messages_conversation, api.chat, openai_error)

    @app.post("/v1/responses")
    @app.post("/responses")
    async def responses(request: Request) -> Any:
        return await answer(request, _responses_conversation, api.responses, openai_error)

    @app.post("/v1/messages")
    @app.post("/messages")
    async def messages(request: Request) -> Any:
        return await answer(request, _messages_conversation, api.anthropic, anthropic_error)

    @app.post("/v1beta/models/{target}")
    @app.post("/v1/models/{target}")
    async def gemini(target: str, request: Request) -> Any:
        # The path is `models/MODEL:ACTION`, e.g. `models/gemini-2.5-pro:streamGenerateContent`.
        model, _, action = target.partition(":")
        if action == "countTokens":
            body = await request.json()
            return {"totalTokens": _gemini_conversation(body if "contents" in body else
                                                        body.get("generateContentRequest") or {}).input_tokens}
        if action not in ("generateContent", "streamGenerateContent"):
            return gemini_error(404, f"scripted model: no method {action!r} (it answers generateContent, "
                                     "streamGenerateContent and countTokens)")
        return await answer(request, _gemini_conversation,
                            lambda body, step, tokens: api.gemini(body, step, tokens, model,
                                                                  action == "streamGenerateContent"),
                            gemini_error)

    @app.post("/v1/embeddings")
    @app.post("/embeddings")
    async def embeddings(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            return openai_error(400, "scripted model: the request body is not JSON")
        texts = body.get("input") if isinstance(body, dict) else None
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return openai_error(400, "scripted model: `input` must be a string or a list of strings")
        with lock:
            requests.append({"path": request.url.path, "body": body})
        tokens = sum(_tokens(len(t)) for t in texts)

        def encoded(vector: list[float]) -> Any:   # as the SDKs ask by default: float32 in base64
            if body.get("encoding_format") != "base64":
                return vector
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        return {"object": "list", "model": body.get("model", "scripted"),
                "data": [{"object": "embedding", "index": n, "embedding": encoded(trigram_vector(t))}
                         for n, t in enumerate(texts)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.get("/v1/models")
    @app.get("/models")
    async def models() -> dict[str, Any]:
        # One body both SDKs read: OpenAI's fields and Anthropic's side by side.
        model = {"id": "scripted", "object": "model", "created": 0, "owned_by": "clawfleet", "type": "model",
                 "display_name": "Scripted model", "created_at": "2025-01-01T00:00:00Z"}
        return {"object": "list", "data": [model], "has_more": False, "first_id": "scripted", "last_id": "scripted"}

    return app


class ScriptedServer(BackgroundServer):
    """Serve a script on 127.0.0.1 from a background thread; `port=0` picks a free port."""

    def __init__(self, script: Script, host: str = "127.0.0.1", port: int = 0) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        super().__init__(build_app(script, self.requests, threading.Lock()), host, port,
                         name="scripted model server")

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"
