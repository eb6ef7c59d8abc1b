"""A TCP proxy for tests that need a service to hang, drop connections or go away."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


class TcpProxy:
    """A loopback TCP proxy to a service that a test can pause, cut and refuse.

    ``forwarding.clear()`` holds every byte in transit (a hung peer), ``cut()`` drops the
    connections (a restart or a network failure), ``accepting = False`` refuses new ones
    (the service is down). For a peer that misbehaves in one direction only:
    ``replies.clear()`` holds what the service sends while the client's bytes still go
    through, ``first_reply_delay`` holds the service's first bytes on each connection that
    many seconds (a slow handshake), and ``on_client_data`` sees each chunk the client sends
    before it is forwarded (to react to a given request).
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.forwarding = threading.Event()
        self.forwarding.set()
        self.replies = threading.Event()
        self.replies.set()
        self.first_reply_delay = 0.0
        self.on_client_data: Callable[[bytes], None] | None = None
        self.accepting = True
        self.connections = 0
        self._pairs: list[tuple[socket.socket, socket.socket, list[threading.Thread]]] = []
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self.accepting:
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            self.connections += 1
            threads = [
                threading.Thread(target=self._pump, args=(client, server, False), daemon=True),
                threading.Thread(target=self._pump, args=(server, client, True), daemon=True),
            ]
            self._pairs.append((client, server, threads))
            for thread in threads:
                thread.start()

    def _pump(self, source: socket.socket, target: socket.socket, replies: bool) -> None:
        first = True
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                break
            if not data:
                break
            if replies and first and self.first_reply_delay:
                time.sleep(self.first_reply_delay)
            first = False
            if not replies and self.on_client_data is not None:
                self.on_client_data(data)
            gates = (self.forwarding, self.replies) if replies else (self.forwarding,)
            while not all(gate.wait(0.05) for gate in gates):
                if self._closed:
                    return
            try:
                target.sendall(data)
            except OSError:
                break
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every proxied connection, as a broker restart or a network failure does."""
        pairs, self._pairs = self._pairs, []
        for client, server, threads in pairs:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self.forwarding.set()
            self.replies.set()
            for thread in threads:
                thread.join(5)
            client.close()
            server.close()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._acceptor.join(5)
        self.listener.close()
