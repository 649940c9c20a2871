"""The HTTP webhook: the shared commands over JSON on 127.0.0.1, behind a bearer token.

    POST /tasks                 {"title", "body"?, "kind"?, "importance"?}   -> 201 {"id", ...}
    GET  /status
    GET  /tasks/{id}            the latest attempt's summary and diff stats
    POST /tasks/{id}/approve
    POST /tasks/{id}/reject     {"feedback"?}   (with feedback: sent back for a new attempt)
    POST /ask                   {"question"}
    POST /command               {"text": "/reject 4 use the new API"}   (the chat form)

Every answer is {"ok": true, "text": ..., **data} or {"ok": false, "error", "hint"} with 400,
401 (no or wrong token), 404 (no such task) or 409 (not in a state for that).
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..errors import ClawError, NotFound, UsageError
from ..project import Project
from . import commands

TOKEN_FILE = "webhook.token"


def webhook_token(project: Project) -> str:
    """The token from the configured variable, else the one kept in .claw/run (made once)."""
    from_env = os.environ.get(project.config.webhook.token_env)
    if from_env:
        return from_env
    path = project.run_dir / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


class NewTask(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = ""
    kind: str = "feature"
    importance: str = "normal"


class Feedback(BaseModel):
    feedback: str | None = None


class Question(BaseModel):
    question: str = Field(min_length=1)


class ChatText(BaseModel):
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


def make_app(root: Path, token: str, open_project: Callable[[], Project] | None = None,
             on_change: Callable[[], None] = lambda: None) -> FastAPI:
    """The webhook app for the repository at `root`. Each request opens the project anew: its own
    database connection, so concurrent requests never share a transaction. `on_change` is called
    after a command that may give the fleet work (the daemon wakes its loop)."""
    open_project = open_project or (lambda: Project(root))
    app = FastAPI(title="clawfleet webhook", docs_url=None, redoc_url=None, openapi_url=None)

    def authorised(authorization: str | None = Header(None)) -> None:
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise _Unauthorised()

    @app.exception_handler(_Unauthorised)
    async def _refuse(request: Request, exc: _Unauthorised) -> JSONResponse:
        return JSONResponse({"ok": False, "error": "missing or wrong token",
                             "hint": "send Authorization: Bearer TOKEN"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

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

    guard = [Depends(authorised)]

    @app.post("/tasks", dependencies=guard)
    def add_task(new: NewTask) -> JSONResponse:
        return run(lambda p: commands.add(p, new.title, new.body, kind=new.kind,
                                          importance=new.importance, source="webhook"), 201)

    @app.get("/status", dependencies=guard)
    def status() -> JSONResponse:
        return run(commands.status)

    @app.get("/tasks/{task_id}", dependencies=guard)
    def show(task_id: int) -> JSONResponse:
        return run(lambda p: commands.show(p, task_id))

    @app.post("/tasks/{task_id}/approve", dependencies=guard)
    def approve(task_id: int) -> JSONResponse:
        return run(lambda p: commands.approve(p, task_id, by="webhook"))

    @app.post("/tasks/{task_id}/reject", dependencies=guard)
    def reject(task_id: int, feedback: Feedback | None = None) -> JSONResponse:
        return run(lambda p: commands.reject(p, task_id, feedback.feedback if feedback else None))

    @app.post("/ask", dependencies=guard)
    def ask(question: Question) -> JSONResponse:
        return run(lambda p: commands.ask(p, question.question))

    @app.post("/command", dependencies=guard)
    def command(message: ChatText) -> JSONResponse:
        return run(lambda p: commands.run_text(p, message.text, source="webhook"))

    return app


class _Unauthorised(Exception):
    pass


def start_webhook(project: Project, port: int | None = None, on_change: Callable[[], None] = lambda: None):
    """Serve the webhook from a background thread; returns the running server (`.url`, `.stop()`)."""
    from ..llm.serve import BackgroundServer

    app = make_app(project.root, webhook_token(project), on_change=on_change)
    server = BackgroundServer(app, port=project.config.webhook.port if port is None else port, name="webhook")
    return server.start()
