"""Inside the sandbox: the agent's only way out. `127.0.0.1:PORT` forwarded to a UNIX socket.

    python -S -E netrelay.py PORT=SOCKET [PORT=SOCKET...] -- COMMAND [ARGS...]

The sandbox has no network of its own; outside, `egress.py` listens on each SOCKET and connects
it on to the gateway, or through an allow-listed HTTPS proxy to the agent's provider. This
process listens on the ports, starts COMMAND as its child and exits with its status. It imports
only `_socket`, `select`, `signal` and `os`, so that it adds about 10 ms to an agent's start.
"""

import _socket
import os
import select
import signal
import sys

CHUNK = 65536


def _listen(port: int) -> "_socket.socket":
    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    return listener


def _start(command: list) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        except OSError as error:
            os.write(2, f"sandbox: cannot run {command[0]}: {error}\n".encode())
        os._exit(127)
    return pid


def main(argv: list) -> int:
    split = argv.index("--")
    routes = [item.split("=", 1) for item in argv[:split]]
    command = argv[split + 1:]
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        signal.signal(getattr(signal, name), lambda number, _frame: os.kill(child, number))
    listeners = {}
    for port, path in routes:
        listener = _listen(int(port))
        listeners[listener.fileno()] = (listener, path)
    child = _start(command)
    for listener, _ in listeners.values():
        os.set_inheritable(listener.fileno(), False)
    poll = select.poll()
    poll.register(wake_read, select.POLLIN)
    for fd in listeners:
        poll.register(fd, select.POLLIN)
    peers = {}     # fd -> (socket, the socket it forwards to)
    while True:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        try:
            ready = poll.poll()
        except InterruptedError:
            continue
        for fd, _ in ready:
            if fd == wake_read:
                os.read(wake_read, 512)
            elif fd in listeners:
                listener, path = listeners[fd]
                try:
                    inside = _socket.socket(fileno=listener._accept()[0])
                    outside = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                    outside.connect(path)
                except OSError:
                    continue
                for one, other in ((inside, outside), (outside, inside)):
                    peers[one.fileno()] = (one, other)
                    poll.register(one.fileno(), select.POLLIN)
            elif fd in peers:
                one, other = peers[fd]
                try:
                    data = one.recv(CHUNK)
                except OSError:
                    data = b""
                if data:
                    try:
                        other.sendall(data)
                        continue
                    except OSError:
                        pass
                for sock in (one, other):   # either side ended: the connection ends
                    if sock.fileno() in peers:
                        poll.unregister(sock.fileno())
                        del peers[sock.fileno()]
                        sock.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
