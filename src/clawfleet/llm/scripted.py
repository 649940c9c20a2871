"""The scripted model server: a real HTTP server that answers like an LLM provider, from a script.

It speaks OpenAI chat completions and Anthropic Messages, streaming and not, so the built-in
agent (and anything else pointed at it by base URL) runs offline, deterministically. A script is
a list of rules; the first rule whose `match` is found in the conversation's first user message
answers, with its step N for the N-th turn (N = assistant messages so far). Stateless: the
conversation itself says where it is.

    with ScriptedServer(Script.load("script.toml")) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="none")
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..errors import ClawError
from .serve import BackgroundServer

STEP_KINDS = ("command", "text", "done", "error")
STEP_KEYS = {*STEP_KINDS, "message", "delay"}


@dataclass(frozen=True)
class Step:
    kind: str
    value: str = ""
    status: int = 200
    delay: float = 0.0

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

    def matches(self, first_user: str) -> bool:
        if self.match is not None and not self.match.search(first_user):
            return False
        return self.not_match is None or not self.not_match.search(first_user)


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

    def step_for(self, first_user: str, turn: int) -> Step:
        for rule in self.rules:
            if rule.matches(first_user):
                if turn >= len(rule.steps):
                    raise ScriptError(f"scripted model: rule '{rule.name}' has no step {turn} "
                                      f"(it has {len(rule.steps)})")
                return rule.steps[turn]
        raise ScriptError("scripted model: no rule matches this conversation; first user message "
                          f"starts: {first_user[:120]!r}")


def _rule(index: int, raw: Any, source: str) -> Rule:
    if not isinstance(raw, dict):
        raise ClawError(f"{source}: rule {index} is not a table", hint="each rule is a [[rule]] table")
    name = str(raw.get("name") or f"rule-{index}")
    where = f"{source}: rule '{name}'"
    unknown = set(raw) - {"name", "match", "not_match", "steps"}
    if unknown:
        raise ClawError(f"{where}: unknown key(s) {sorted(unknown)}",
                        hint="a rule has name, match, not_match and steps")
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ClawError(f"{where}: needs a non-empty `steps` list", hint="add [[rule.steps]] tables")
    return Rule(name, tuple(_step(s, where, n) for n, s in enumerate(steps)),
                _regex(raw.get("match"), where), _regex(raw.get("not_match"), where))


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
    problem = None
    if kind == "error" and (type(value) is not int or not 400 <= value <= 599):
        problem = f"error must be an HTTP status from 400 to 599, not {value!r}"
    elif kind != "error" and not isinstance(value, str):
        problem = f"{kind} must be a string, not {value!r}"
    elif not isinstance(message, str) or ("message" in raw and kind != "error"):
        problem = "message is a string, and only for error steps"
    elif type(delay) not in (int, float) or delay < 0:
        problem = f"delay must be a number of seconds >= 0, not {delay!r}"
    if problem:
        raise ClawError(f"{where}: step {number}: {problem}",
                        hint='e.g. { command = "ls" } or { error = 500, message = "overloaded", delay = 1.5 }')
    if kind == "error":
        return Step("error", message, value, float(delay))
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


def _conversation(body: dict[str, Any]) -> tuple[str, int, int]:
    """(first user message, assistant turns so far, approximate input tokens)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ScriptError("scripted model: the request has no `messages` list of objects")
    first_user = next((_text(m.get("content")) for m in messages if m.get("role") == "user"), "")
    turns = sum(1 for m in messages if m.get("role") == "assistant")
    size = len(_text(body.get("system"))) + sum(len(_text(m.get("content"))) for m in messages)
    return first_user, turns, _tokens(size)


def _tokens(chars: int) -> int:
    return max(1, chars // 4)


def _chunks(text: str, size: int = 24) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _sse(data: dict[str, Any], event: str | None = None) -> str:
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}


def _error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


class _Api:
    """The two wire formats: each answers a body with a reply text, or an error."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def openai_error(self, status: int, message: str) -> JSONResponse:
        kind = "server_error" if _error_type(status) == "api_error" else _error_type(status)
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}},
                            status_code=status)

    def anthropic_error(self, status: int, message: str) -> JSONResponse:
        return JSONResponse({"type": "error", "error": {"type": _error_type(status), "message": message}},
                            status_code=status)

    def openai(self, body: dict[str, Any], text: str, input_tokens: int) -> Any:
        ident, model, created = f"chatcmpl-scripted-{next(self._ids)}", body.get("model", "scripted"), int(time.time())
        usage = {"prompt_tokens": input_tokens, "completion_tokens": _tokens(len(text)),
                 "total_tokens": input_tokens + _tokens(len(text))}
        if not body.get("stream"):
            return JSONResponse({"id": ident, "object": "chat.completion", "created": created,
                                 "model": model, "usage": usage, "choices": [
                                     {"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": text}}]})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            return _sse({"id": ident, "object": "chat.completion.chunk", "created": created,
                         "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        async def events() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            for piece in _chunks(text):
                yield chunk({"content": piece})
            yield chunk({}, "stop")
            if include_usage:
                yield _sse({"id": ident, "object": "chat.completion.chunk", "created": created,
                            "model": model, "choices": [], "usage": usage})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def anthropic(self, body: dict[str, Any], text: str, input_tokens: int) -> Any:
        ident, model = f"msg_scripted_{next(self._ids)}", body.get("model", "scripted")
        output_tokens = _tokens(len(text))
        message = {"id": ident, "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                   "stop_sequence": None,
                   "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}
        if not body.get("stream"):
            return JSONResponse(message)

        async def events() -> AsyncIterator[str]:
            start = {**message, "content": [], "stop_reason": None,
                     "usage": {"input_tokens": input_tokens, "output_tokens": 1}}
            yield _sse({"type": "message_start", "message": start}, "message_start")
            yield _sse({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}}, "content_block_start")
            for piece in _chunks(text):
                yield _sse({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
            yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            yield _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": output_tokens}}, "message_delta")
            yield _sse({"type": "message_stop"}, "message_stop")

        return StreamingResponse(events(), media_type="text/event-stream")


def build_app(script: Script, requests: list[dict[str, Any]], lock: threading.Lock) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    api = _Api()

    async def answer(request: Request, reply, error) -> Any:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "scripted model: the request body is not JSON")
        with lock:
            requests.append({"path": request.url.path, "body": body})
        try:
            if not isinstance(body, dict):
                raise ScriptError("scripted model: the request body is not a JSON object")
            first_user, turn, input_tokens = _conversation(body)
            step = script.step_for(first_user, turn)
        except ScriptError as problem:
            return error(400, problem.message)
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.kind == "error":
            return error(step.status, step.value)
        return reply(body, step.reply_text(), input_tokens)

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await answer(request, api.openai, api.openai_error)

    @app.post("/v1/messages")
    @app.post("/messages")
    async def messages(request: Request) -> Any:
        return await answer(request, api.anthropic, api.anthropic_error)

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
