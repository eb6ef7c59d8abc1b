"""Real socket servers on loopback that misbehave the way a broken peer does: accept and go
silent, or answer one byte at a time, each byte well within any socket timeout.

Each runs an accept thread and a thread per connection; ``close()`` ends them all. They
record what they saw, so a test can tell that the client gave up and dropped the connection
(``dropped``) instead of reading on.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import BinaryIO


class PeerServer:
    """The accept loop and bookkeeping; subclasses answer in :meth:`serve`."""

    def __init__(self, interval: float = 0.05, tls: ssl.SSLContext | None = None) -> None:
        #: Seconds between two bytes of a trickled answer.
        self.interval = interval
        #: A server-side TLS context: each connection is wrapped in it (after its accept).
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.connections = 0
        #: Connections the client closed (or reset) while this server was still answering.
        self.dropped = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def __enter__(self) -> PeerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def serve(self, conn: socket.socket, stream: BinaryIO) -> None:
        raise NotImplementedError

    def trickle(self, conn: socket.socket, data: bytes) -> bool:
        """Send ``data`` one byte per :attr:`interval`; ``False`` if the client went away."""
        for byte in data:
            if self.stopping.wait(self.interval):
                return False
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                with self.lock:
                    self.dropped += 1
                return False
        return True

    def wait_silently(self, conn: socket.socket) -> None:
        """Answer nothing; return when the client closes the connection (or at close())."""
        conn.settimeout(0.05)
        while not self.stopping.is_set():
            try:
                if not conn.recv(65536):
                    with self.lock:
                        self.dropped += 1
                    return
            except TimeoutError:
                continue
            except OSError:
                with self.lock:
                    self.dropped += 1
                return

    def close(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        self._acceptor.join(5)
        self.listener.close()
        with self.lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for conn in sockets:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            with self.lock:
                self.connections += 1
                self._sockets.append(conn)
                self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                with self.lock:
                    self._sockets.append(conn)
            with conn, conn.makefile("rb") as stream:
                self.serve(conn, stream)


class SilentPeer(PeerServer):
    """Accepts TCP connections, reads what comes, never answers a byte."""

    def serve(self, conn: socket.socket, stream: BinaryIO) -> None:
        self.wait_silently(conn)


class TricklingReceiver(PeerServer):
    """An HTTP/1.1 webhook receiver that answers slowly.

    ``plan(body)`` picks the answer to each request:

    - ``"trickle-body"``: ``200 OK`` with ``Content-Length: 1000`` at once, then the body one
      byte per :attr:`interval`;
    - ``"trickle-head"``: the status line and headers themselves one byte per interval;
    - ``"silent"``: nothing at all;
    - ``"ok"``: ``204 No Content`` at once, the connection kept alive.

    ``bodies`` keeps every request's body, ``answered`` counts the ``"ok"`` answers.
    """

    BODY_LENGTH = 1000

    def __init__(
        self,
        plan: Callable[[bytes], str] = lambda body: "trickle-body",
        interval: float = 0.05,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(interval, tls)
        self.plan = plan
        self.bodies: list[bytes] = []
        self.answered = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hooks"

    def serve(self, conn: socket.socket, stream: BinaryIO) -> None:
        while not self.stopping.is_set():
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if not line:
                return  # the client closed a kept-alive connection
            body = stream.read(length)
            with self.lock:
                self.bodies.append(body)
            how = self.plan(body)
            if how == "ok":
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                with self.lock:
                    self.answered += 1
                continue
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {self.BODY_LENGTH}\r\n\r\n".encode()
            if how == "silent":
                self.wait_silently(conn)
            elif how == "trickle-head":
                self.trickle(conn, head + b"x" * self.BODY_LENGTH)
            else:
                conn.sendall(head)
                self.trickle(conn, b"x" * self.BODY_LENGTH)
            return


class TricklingRedis(PeerServer):
    """A Redis server that answers ``XADD`` one byte per :attr:`interval`.

    The handshake is answered at once (``HELLO 3`` with protocol 3, every other command
    with ``+OK``: redis-py's ``CLIENT SETINFO``), so the connection opens normally and only
    the stream entries' replies trickle.
    ``commands`` keeps the name of every command received.
    """

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(interval)
        self.commands: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def serve(self, conn: socket.socket, stream: BinaryIO) -> None:
        while not self.stopping.is_set():
            header = stream.readline()
            if not header.startswith(b"*"):
                return  # closed, or not a RESP array
            arguments = []
            for _ in range(int(header[1:])):
                size = int(stream.readline()[1:])
                arguments.append(stream.read(size + 2)[:-2])
            name = arguments[0].decode().upper()
            with self.lock:
                self.commands.append(name)
            if name == "HELLO" and arguments[1:2] == [b"3"]:
                conn.sendall(b"%1\r\n$5\r\nproto\r\n:3\r\n")  # RESP3, as redis-py asks
            elif name != "XADD":
                conn.sendall(b"+OK\r\n")
            elif not self.trickle(conn, b"$15\r\n1700000000000-0\r\n"):
                return
