"""What a model call used and said, read from its reply: a JSON body, or an event stream as it passes.

The four wire formats count tokens differently; `Usage` is the common form, where
`input_tokens` includes cached input (OpenAI's way; Anthropic's cache reads are added in) and
`output_tokens` includes reasoning (Gemini's thoughts are added in).

    tap = StreamTap("messages")
    for chunk in upstream_chunks:
        client.send(tap.feed(chunk))       # whole events, in order, as soon as they are complete
    tap.usage, tap.reply.text, tap.completed
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


@dataclass
class Reply:
    """The assistant's answer, the same for every API: its text and tool calls."""
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "tool_calls": self.tool_calls}


def _int(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


def usage_of(api: str, usage: Any) -> Usage:
    """Normalise a `usage` object of the given API."""
    if not isinstance(usage, dict):
        return Usage()
    if api == "messages":
        cached = _int(usage.get("cache_read_input_tokens"))
        written = _int(usage.get("cache_creation_input_tokens"))
        return Usage(_int(usage.get("input_tokens")) + cached + written,
                     _int(usage.get("output_tokens")), cached)
    if api == "gemini":  # usageMetadata
        return Usage(_int(usage.get("promptTokenCount")),
                     _int(usage.get("candidatesTokenCount")) + _int(usage.get("thoughtsTokenCount")),
                     _int(usage.get("cachedContentTokenCount")))
    if api == "responses":
        details = usage.get("input_tokens_details") or {}
        return Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")),
                     _int(details.get("cached_tokens")) if isinstance(details, dict) else 0)
    details = usage.get("prompt_tokens_details") or {}
    return Usage(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")),
                 _int(details.get("cached_tokens")) if isinstance(details, dict) else 0)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content
                       if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def reply_of(api: str, body: Any) -> Reply:
    """The reply in a non-streamed response body."""
    reply = Reply()
    if not isinstance(body, dict):
        return reply
    if api == "chat":
        choices = body.get("choices") or [{}]
        message = (choices[0] if isinstance(choices[0], dict) else {}).get("message") or {}
        reply.text = _text(message.get("content"))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            reply.tool_calls.append({"id": call.get("id"), "name": function.get("name"),
                                     "arguments": function.get("arguments", "")})
    elif api == "messages":
        for block in body.get("content") or []:
            if block.get("type") == "text":
                reply.text += block.get("text", "")
            elif block.get("type") == "tool_use":
                reply.tool_calls.append({"id": block.get("id"), "name": block.get("name"),
                                         "arguments": json.dumps(block.get("input", {}))})
    elif api == "gemini":
        reply = _gemini_parts(reply, body)
    else:
        for item in body.get("output") or []:
            if item.get("type") == "message":
                reply.text += _text([c for c in item.get("content") or [] if c.get("type") == "output_text"])
            elif item.get("type") == "function_call":
                reply.tool_calls.append({"id": item.get("call_id"), "name": item.get("name"),
                                         "arguments": item.get("arguments", "")})
    return reply


def _gemini_parts(reply: Reply, body: dict[str, Any]) -> Reply:
    """Add the first candidate's text and function calls (a whole response or one stream chunk)."""
    candidates = body.get("candidates") or [{}]
    content = (candidates[0] if isinstance(candidates[0], dict) else {}).get("content") or {}
    for part in content.get("parts") or []:
        if not isinstance(part, dict) or part.get("thought"):
            continue
        if isinstance(part.get("text"), str):
            reply.text += part["text"]
        elif isinstance(part.get("functionCall"), dict):
            call = part["functionCall"]
            reply.tool_calls.append({"id": call.get("id"), "name": call.get("name"),
                                     "arguments": json.dumps(call.get("args", {}))})
    return reply


def error_of(body: Any) -> str | None:
    """The message of an error body in any of the four formats."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or body["error"])
    return None


_FINAL_RESPONSE_EVENTS = ("response.completed", "response.incomplete", "response.failed")


class StreamTap:
    """Split an SSE byte stream into whole events, passing them on while reading usage and text.

    `drop_usage_chunk`: the gateway asked an OpenAI chat stream for usage the client did not want,
    so the usage-only chunk (empty `choices`) is read and not passed on.
    """

    def __init__(self, api: str, *, drop_usage_chunk: bool = False, clock=time.perf_counter) -> None:
        self.api = api
        self.drop_usage_chunk = drop_usage_chunk
        self.usage = Usage()
        self.reply = Reply()
        self.completed = False          # the stream's own end marker was seen
        self.error: str | None = None   # an error event, or events that are not JSON
        self.malformed = False          # some event's data was not JSON
        self.first_output_at: float | None = None
        self.events = 0
        self._clock = clock
        self._buffer = b""
        self._tools: dict[int, dict[str, Any]] = {}

    def feed(self, chunk: bytes) -> bytes:
        """Take bytes from upstream; return the complete events to pass on now."""
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        out = []
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            event, buffer = buffer[:end + 2], buffer[end + 2:]
            if self._read(event):
                out.append(event)
        self._buffer = buffer
        return b"".join(out)

    def flush(self) -> bytes:
        """What is left when the upstream closed: a last event without its blank line."""
        rest, self._buffer = self._buffer, b""
        if rest.strip() and not self._read(rest):
            return b""
        return rest

    def _read(self, event: bytes) -> bool:
        """Read one event; False to hold it back from the client."""
        data = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if not data:
            return True
        payload = b"\n".join(data)
        self.events += 1
        if payload == b"[DONE]":
            self.completed = True
            return True
        try:
            obj = json.loads(payload)
        except ValueError:
            self.error, self.malformed = "the upstream stream has an event that is not JSON", True
            return True
        if not isinstance(obj, dict):
            return True
        if self.api == "chat":
            return self._chat(obj)
        if self.api == "messages":
            self._messages(obj)
        elif self.api == "gemini":
            self._gemini(obj)
        else:
            self._responses(obj)
        return True

    def _output(self) -> None:
        if self.first_output_at is None:
            self.first_output_at = self._clock()

    def _chat(self, obj: dict[str, Any]) -> bool:
        if obj.get("usage"):
            self.usage = usage_of("chat", obj["usage"])
        if isinstance(obj.get("error"), dict):
            self.error = error_of(obj)
        choices = obj.get("choices")
        for choice in choices or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self._output()
                self.reply.text += _text(delta["content"])
            for call in delta.get("tool_calls") or []:
                self._output()
                tool = self._tools.setdefault(call.get("index", 0), {"id": None, "name": None, "arguments": ""})
                function = call.get("function") or {}
                tool["id"] = call.get("id") or tool["id"]
                tool["name"] = function.get("name") or tool["name"]
                tool["arguments"] += function.get("arguments") or ""
                self.reply.tool_calls = [self._tools[i] for i in sorted(self._tools)]
        return not (self.drop_usage_chunk and choices == [] and obj.get("usage"))

    def _messages(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "message_start":
            self.usage = usage_of("messages", (obj.get("message") or {}).get("usage"))
        elif kind == "content_block_start":
            block = obj.get("content_block") or {}
            if block.get("type") == "tool_use":
                self._tools[obj.get("index", 0)] = {"id": block.get("id"), "name": block.get("name"),
                                                    "arguments": ""}
                self.reply.tool_calls = [self._tools[i] for i in sorted(self._tools)]
        elif kind == "content_block_delta":
            self._output()
            delta = obj.get("delta") or {}
            if delta.get("type") == "text_delta":
                self.reply.text += delta.get("text", "")
            elif delta.get("type") == "input_json_delta" and obj.get("index", 0) in self._tools:
                self._tools[obj.get("index", 0)]["arguments"] += delta.get("partial_json", "")
        elif kind == "message_delta":
            usage = obj.get("usage") or {}
            # output_tokens here is the running total; newer servers repeat the input counts too
            late = usage_of("messages", usage)
            self.usage.output_tokens = late.output_tokens or self.usage.output_tokens
            if late.input_tokens:
                self.usage.input_tokens, self.usage.cached_tokens = late.input_tokens, late.cached_tokens
        elif kind == "message_stop":
            self.completed = True
        elif kind == "error":
            self.error = error_of(obj)

    def _responses(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type", "")
        if kind.endswith(".delta"):
            self._output()
            if kind == "response.output_text.delta":
                self.reply.text += obj.get("delta", "")
        elif kind in _FINAL_RESPONSE_EVENTS:
            response = obj.get("response") or {}
            self.usage = usage_of("responses", response.get("usage"))
            self.reply = reply_of("responses", response)
            self.completed = True
            if kind == "response.failed":
                self.error = error_of(response) or "the response failed"
        elif kind == "error":
            self.error = str(obj.get("message") or error_of(obj) or obj)

    def _gemini(self, obj: dict[str, Any]) -> None:
        # Every chunk is a whole GenerateContentResponse; usage in each is the running total.
        if obj.get("usageMetadata"):
            self.usage = usage_of("gemini", obj["usageMetadata"])
        if isinstance(obj.get("error"), dict):
            self.error = error_of(obj)
        before = (len(self.reply.text), len(self.reply.tool_calls))
        _gemini_parts(self.reply, obj)
        if (len(self.reply.text), len(self.reply.tool_calls)) != before:
            self._output()
        candidates = obj.get("candidates") or []
        if candidates and isinstance(candidates[0], dict) and candidates[0].get("finishReason"):
            self.completed = True
