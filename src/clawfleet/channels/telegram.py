"""The Telegram bot: /add, /status, /show, /approve, /reject, /ask, mapped onto the shared commands.

Needs the optional extra: pip install 'clawfleet[telegram]' (python-telegram-bot). It polls the
Bot API (`getUpdates`), so no public address is needed. Only chats listed in `[telegram]
chat_ids` may command the fleet; others are told their chat id, so the owner can add it.
`base_url` points it at another Bot API server (a self-hosted one, or an emulator in tests).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path

from ..config import TelegramConfig
from ..errors import ClawError
from ..project import Project
from .commands import describe_error, run_text

COMMANDS = ("add", "status", "show", "approve", "reject", "ask", "help", "start")
MESSAGE_LIMIT = 4000  # Telegram refuses messages over 4096 characters


def answer(root: Path, chat_id: int, text: str, allowed: list[int]) -> str:
    """The bot's reply to one message: the shared command's text, or why it cannot run."""
    if chat_id not in allowed:
        return (f"This chat ({chat_id}) may not command this fleet. To allow it, add {chat_id} to "
                "chat_ids under [telegram] in .claw/config.toml and restart the daemon.")
    project = Project(root)
    try:
        reply = run_text(project, text, source="telegram").text
    except ClawError as error:
        reply = "error: " + describe_error(error)
    finally:
        project.store.close()
    return reply if len(reply) <= MESSAGE_LIMIT else reply[:MESSAGE_LIMIT - 1] + "…"


class TelegramBot:
    """python-telegram-bot's Application, polling from its own thread and event loop."""

    def __init__(self, root: Path, config: TelegramConfig, token: str, poll_interval: float = 0.5,
                 on_change: Callable[[], None] = lambda: None) -> None:
        try:
            from telegram.ext import Application
        except ImportError:
            raise ClawError("the Telegram bot needs python-telegram-bot",
                            hint="pip install 'clawfleet[telegram]', or set enabled = false under [telegram]") from None
        self.root = root
        self.config = config
        self.on_change = on_change
        self.poll_interval = poll_interval
        self.application = Application.builder().token(token).base_url(config.base_url).build()
        self._register()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @classmethod
    def from_config(cls, project: Project, on_change: Callable[[], None] = lambda: None) -> TelegramBot:
        config = project.config.telegram
        token = os.environ.get(config.token_env)
        if not token:
            raise ClawError(f"[telegram] is enabled but ${config.token_env} is not set",
                            hint="export the bot's token from @BotFather, or set enabled = false")
        return cls(project.root, config, token, on_change=on_change)

    def _register(self) -> None:
        from telegram.ext import CommandHandler

        async def handle(update, context) -> None:
            message = update.effective_message
            if message is None or not message.text:
                return
            reply = await asyncio.to_thread(answer, self.root, update.effective_chat.id, message.text,
                                            self.config.chat_ids)
            self.on_change()
            await message.reply_text(reply)

        self.application.add_handler(CommandHandler(list(COMMANDS), handle))

    def start(self, timeout: float = 30.0) -> None:
        self._thread = threading.Thread(target=self._run, name="telegram", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            error = self._error
            self.stop()
            raise ClawError(f"the Telegram bot could not start: {error or 'no answer from the Bot API'}",
                            hint="check the token and that the Bot API is reachable") from None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to start() or logged by stop()
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.application:
            await self.application.start()
            await self.application.updater.start_polling(poll_interval=self.poll_interval, timeout=5)
            self._ready.set()
            await self._stop.wait()
            await self.application.updater.stop()
            await self.application.stop()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass  # the loop has already ended
        if self._thread is not None:
            self._thread.join(15)
