"""Serve an ASGI app on 127.0.0.1 from a background thread (the scripted model, the gateway).

    with BackgroundServer(app, name="gateway") as server:
        httpx.get(server.url + "/v1/models")
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from typing import Any

import uvicorn

from ..errors import ClawError


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (0: any free port), a clash being one clear error."""
    # proto=IPPROTO_TCP: asyncio then sets TCP_NODELAY on each accepted connection; without
    # it, a reply written as headers then body waits ~40 ms on Nagle and delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ClawError(f"port {port} on {host} is already in use",
                            hint="pick another --port, or 0 for any free one") from None
        raise ClawError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


class BackgroundServer:
    """`port=0` picks a free port; the real one is known as soon as `start()` returns."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, name: str = "server") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "BackgroundServer":
        # Bind first, so the port is ours before uvicorn runs and a clash is a clear error.
        sock = bound_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=self.name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ClawError(f"the {self.name} did not start")
            time.sleep(0.005)
        return self

    def wait(self) -> None:
        """Block until the server stops (or Ctrl-C)."""
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
