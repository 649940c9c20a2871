"""Outside the sandbox: where an attempt's network traffic may go, and nowhere else.

Each route is a UNIX socket in a private folder (shown inside the sandbox, where `netrelay.py`
forwards a loopback port to it). A `forward` route connects straight on to one address (the
gateway, a local model); a `proxy` route is an HTTPS CONNECT proxy that opens tunnels only to
the hosts allowed (a provider's API, its login server) and answers 403 to anything else.
Threads, one pair per connection: an attempt has few connections, and they are long streams.

    >>> egress = Egress()
    >>> egress.forward(8080, "127.0.0.1", 8080)      # inside 127.0.0.1:8080 -> the gateway
    >>> egress.proxy(3128, {"api.anthropic.com:443"})
    >>> relays = egress.relays                        # for sandbox.wrap
    >>> egress.close()
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from .sandbox import Relay

INSIDE_DIR = "/run/claw-net"        # where the sockets are seen inside (under a hidden /run)
MAX_HEADER = 16_384
CONNECT_TIMEOUT_S = 15.0


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _splice(a: socket.socket, b: socket.socket) -> None:
    other = threading.Thread(target=_pump, args=(b, a), daemon=True)
    other.start()
    _pump(a, b)
    other.join()
    a.close()
    b.close()


def host_port(address: str, default_port: int = 443) -> str:
    """`host:port` in lower case, the form allow lists are kept in."""
    host, _, port = address.strip().lower().rpartition(":") if ":" in address else (address, "", "")
    if not host:
        host, port = address.strip().lower(), ""
    return f"{host.strip('[]')}:{port or default_port}"


class Egress:
    """The routes of one sandboxed process; `close()` ends them and removes the sockets."""

    def __init__(self, on_refused: Callable[[str], None] = lambda target: None,
                 on_event: Callable[[str], None] = lambda line: None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="claw-net-"))   # short: UNIX paths are <108 bytes
        os.chmod(self.folder, 0o700)
        self.relays: list[Relay] = []
        self.refused: list[str] = []
        self._on_refused = on_refused
        self._on_event = on_event
        self._servers: list[socket.socket] = []
        self._closed = threading.Event()

    @property
    def inside(self) -> str:
        return INSIDE_DIR

    def forward(self, port: int, host: str, target_port: int) -> None:
        self._serve(port, lambda client: self._connect_on(client, host, target_port))

    def proxy(self, port: int, allowed: Iterable[str]) -> None:
        allowed = {host_port(entry) for entry in allowed}
        self._serve(port, lambda client: self._tunnel(client, allowed))

    def _serve(self, port: int, handle: Callable[[socket.socket], None]) -> None:
        name = f"{port}.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.folder / name))
        server.listen(64)
        self._servers.append(server)
        self.relays.append(Relay(port, f"{INSIDE_DIR}/{name}"))

        def accept() -> None:
            while not self._closed.is_set():
                try:
                    client, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=handle, args=(client,), daemon=True).start()

        threading.Thread(target=accept, name=f"egress {port}", daemon=True).start()

    def _connect_on(self, client: socket.socket, host: str, port: int) -> None:
        try:
            upstream = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        _splice(client, upstream)

    def _tunnel(self, client: socket.socket, allowed: set[str]) -> None:
        head = b""
        try:
            client.settimeout(CONNECT_TIMEOUT_S)
            while b"\r\n\r\n" not in head and len(head) < MAX_HEADER:
                chunk = client.recv(4096)
                if not chunk:
                    break
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, *_ = line.split(" ") + ["", ""]
            if method.upper() != "CONNECT" or host_port(target) not in allowed:
                self.refused.append(target or line[:100])
                self._on_refused(target or line[:100])
                self._on_event(f"[sandbox] refused a connection to {target or line[:100]}: not its model's address")
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                client.close()
                return
            host, _, port = host_port(target).rpartition(":")
            self._on_event(f"[sandbox] tunnel to {host}:{port}")
            upstream = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S)
            upstream.settimeout(None)
            client.settimeout(None)
            client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else b""
            if rest:
                upstream.sendall(rest)
        except (OSError, ValueError) as error:
            self._on_event(f"[sandbox] could not reach {target if 'target' in locals() else '?'}: {error}")
            try:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            client.close()
            return
        _splice(client, upstream)

    def close(self) -> None:
        self._closed.set()
        for server in self._servers:
            try:
                server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            server.close()
        shutil.rmtree(self.folder, ignore_errors=True)
