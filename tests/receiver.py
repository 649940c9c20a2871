"""A real HTTP endpoint on 127.0.0.1 that records what is posted to it (notifications land here)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class Receiver:
    """`status` is what it answers; `posts` what it got: (path, parsed JSON or form, headers)."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {k: v[0] for k, v in parse_qs(raw).items()}
                receiver.posts.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def json_url(self) -> str:
        return f"json://127.0.0.1:{self.port}/notify"

    def messages(self) -> list[str]:
        return [post["body"].get("message", "") for post in self.posts]

    def wait_for(self, predicate, timeout: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not predicate(self.messages()):
            assert time.monotonic() < deadline, f"timed out; received: {self.messages()}"
            time.sleep(0.05)
        return self.messages()

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
