"""The HTTP webhook: the shared commands over JSON on 127.0.0.1, behind a bearer token.

    POST /tasks                 {"title", "body"?, "kind"?, "importance"?}   -> 201 {"id", ...}
    GET  /status
    GET  /tasks/{id}            the latest attempt's summary and diff stats
    POST /tasks/{id}/approve
    POST /tasks/{id}/reject     {"feedback"?}   (with feedback: sent back for a new attempt)
    POST /ask                   {"question"}
    POST /command               {"text": "/reject 4 use the new API"}   (the chat form)

Every answer is {"ok": true, "text": ..., **data} or {"ok": false, "error", "hint"} with 400
(bad input: invalid JSON, a lone surrogate, an id no task can have), 401 (no or wrong token),
404 (no such task), 409 (not in a state for that) or 413 (a body over `[webhook] max_body`).

The token and the body's size are checked by `Guard`, in front of the app, before one byte of
the body is read: an unauthenticated or oversized request costs the daemon nothing but a reply.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Path as PathParam, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from ..errors import ClawError, NotFound, UsageError
from ..project import Project
from . import commands

TOKEN_FILE = "webhook.token"
MAX_ID = 2**63 - 1               # SQLite's largest integer: a bigger id names no task
TaskIdParam = Annotated[int, PathParam(ge=1, le=MAX_ID)]


def webhook_token(project: Project) -> str:
    """The token from the configured variable, else the one kept in .claw/run (made once)."""
    return bearer_token(project, project.config.webhook.token_env, TOKEN_FILE)


def bearer_token(project: Project, env: str, file_name: str) -> str:
    """$`env`, else the token kept in .claw/run/`file_name` (made once, readable only by you)."""
    from_env = os.environ.get(env)
    if from_env:
        return from_env
    path = project.run_dir / file_name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


class _Body(BaseModel):
    @field_validator("*")
    @classmethod
    def _whole_characters(cls, value: Any) -> Any:
        # JSON may escape half a UTF-16 pair ("\ud800"): pydantic passes it in a plain str
        # field, and no database or chat can store it.
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("holds a lone surrogate (half of a UTF-16 pair); send whole characters") from None
        return value


class NewTask(_Body):
    title: str = Field(min_length=1, max_length=200)
    body: str = ""
    kind: str = "feature"
    importance: str = "normal"


class Feedback(_Body):
    feedback: str | None = None


class Question(_Body):
    question: str = Field(min_length=1)


class ChatText(_Body):
    text: str


def _reply(reply: commands.Reply, status: int = 200) -> JSONResponse:
    return JSONResponse({"ok": True, "text": reply.text, **reply.data}, status_code=status)


def _status_of(error: ClawError) -> int:
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, UsageError):
        return 400
    if "not waiting for review" in error.message or "cannot become" in error.message:
        return 409
    return 400


class Guard:
    """ASGI middleware: the bearer token, then the body's size, before the app reads the body.

    A Content-Length over `max_body` is refused (413) at once; a body without one (chunked) is
    read up to `max_body` and refused as soon as it goes past: memory stays bounded whatever is
    sent. The body read is handed to the app as one message.
    """

    def __init__(self, app: Any, token: str, max_body: int,
                 limit_hint: str = "send less, or raise [webhook] max_body in .claw/config.toml") -> None:
        self.app = app
        self.token = token.encode()
        self.max_body = max_body
        self.limit_hint = limit_hint

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"").removeprefix(b"Bearer ").strip()
        if not given or not hmac.compare_digest(given, self.token):
            await _answer(send, 401, "missing or wrong token", "send Authorization: Bearer TOKEN",
                          [(b"www-authenticate", b"Bearer")])
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._too_large(send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await self._too_large(send)
                return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as a server would

        await self.app(scope, replay, send)

    async def _too_large(self, send: Callable) -> None:
        await _answer(send, 413, f"the request body is over {self.max_body:,} bytes",
                      self.limit_hint, [(b"connection", b"close")])


async def _answer(send: Callable, status: int, error: str, hint: str,
                  headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"ok": False, "error": error, "hint": hint}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def make_app(root: Path, token: str, open_project: Callable[[], Project] | None = None,
             on_change: Callable[[], None] = lambda: None, max_body: int = 1 << 20) -> Guard:
    """The webhook app for the repository at `root`, behind its `Guard`. Each request opens the
    project anew: its own database connection, so concurrent requests never share a transaction.
    `on_change` is called after a command that may give the fleet work (the daemon wakes its loop)."""
    open_project = open_project or (lambda: Project(root))
    app = FastAPI(title="clawfleet webhook", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problem = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in problem.get("loc", ())[1:]) or "the request"
        message = problem.get("msg", "is not valid")
        if problem.get("type") == "json_invalid":
            where, message = "the body", "is not valid JSON"
        return JSONResponse({"ok": False, "error": f"{where}: {message}"[:300],
                             "hint": "see the request formats at the top of channels/webhook.py (README: Webhook)"},
                            status_code=400)

    @app.exception_handler(ClawError)
    async def _claw_error(request: Request, exc: ClawError) -> JSONResponse:
        return JSONResponse({"ok": False, "error": exc.message, "hint": exc.hint}, status_code=_status_of(exc))

    def run(action: Callable[[Project], commands.Reply], status: int = 200) -> JSONResponse:
        project = open_project()
        try:
            reply = action(project)
        finally:
            project.store.close()
        on_change()
        return _reply(reply, status)

    @app.post("/tasks")
    def add_task(new: NewTask) -> JSONResponse:
        return run(lambda p: commands.add(p, new.title, new.body, kind=new.kind,
                                          importance=new.importance, source="webhook"), 201)

    @app.get("/status")
    def status() -> JSONResponse:
        return run(commands.status)

    @app.get("/tasks/{task_id}")
    def show(task_id: TaskIdParam) -> JSONResponse:
        return run(lambda p: commands.show(p, task_id))

    @app.post("/tasks/{task_id}/approve")
    def approve(task_id: TaskIdParam) -> JSONResponse:
        return run(lambda p: commands.approve(p, task_id, by="webhook"))

    @app.post("/tasks/{task_id}/reject")
    def reject(task_id: TaskIdParam, feedback: Feedback | None = None) -> JSONResponse:
        return run(lambda p: commands.reject(p, task_id, feedback.feedback if feedback else None))

    @app.post("/ask")
    def ask(question: Question) -> JSONResponse:
        return run(lambda p: commands.ask(p, question.question))

    @app.post("/command")
    def command(message: ChatText) -> JSONResponse:
        return run(lambda p: commands.run_text(p, message.text, source="webhook"))

    return Guard(app, token, max_body)


def start_webhook(project: Project, port: int | None = None, on_change: Callable[[], None] = lambda: None):
    """Serve the webhook from a background thread; returns the running server (`.url`, `.stop()`)."""
    from ..llm.serve import BackgroundServer

    app = make_app(project.root, webhook_token(project), on_change=on_change,
                   max_body=project.config.webhook.max_body)
    server = BackgroundServer(app, port=project.config.webhook.port if port is None else port, name="webhook")
    return server.start()
