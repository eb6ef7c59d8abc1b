#!/usr/bin/env python
"""A fast local webhook receiver for the relay benchmark: raw asyncio, HTTP/1.1 keep-alive.

    python bench/receiver.py --port 8099 [--record]

Answers every ``POST`` with ``200`` and an empty body, counts the requests and the distinct
``webhook-id`` values (duplicates show up as count > unique), and notes the first and last
arrival. With ``--record`` it also parses each body and keeps ``(subject, type, arrival)``
for the latency benchmark. Control endpoints (``GET``): ``/_stats``, ``/_arrivals``,
``/_reset``. No framework: the receiver must cost far less than what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time

RESPONSE_200 = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class State:
    def __init__(self, record: bool) -> None:
        self.record = record
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.ids: set[bytes] = set()
        self.first = None
        self.last = None
        self.arrivals: list[tuple[str, str, float]] = []

    def stats(self) -> dict:
        return {
            "count": self.count,
            "unique": len(self.ids),
            "first": self.first,
            "last": self.last,
        }


class Http(asyncio.Protocol):
    state: State

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop if stop >= 0 else None].strip())
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = self.buffer[end + 4 : total]
            self.buffer = self.buffer[total:]
            self.handle(head, lower, body)

    def handle(self, head: bytes, lower: bytes, body: bytes) -> None:
        state = self.state
        if head.startswith(b"POST"):
            now = time.time()
            state.count += 1
            if state.first is None:
                state.first = now
            state.last = now
            at = lower.find(b"\r\nwebhook-id:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                state.ids.add(lower[at + 13 : stop if stop >= 0 else None].strip())
            if state.record:
                event = json.loads(body)
                state.arrivals.append((event.get("subject"), event.get("type"), now))
            self.transport.write(RESPONSE_200)
            return
        path = head.split(b" ", 2)[1]
        if path == b"/_stats":
            payload = json.dumps(state.stats()).encode()
        elif path == b"/_arrivals":
            payload = json.dumps(state.arrivals).encode()
        elif path == b"/_reset":
            state.reset()
            payload = b"{}"
        else:
            payload = b"{}"
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )


async def main(port: int, record: bool) -> None:
    Http.state = State(record)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", port, backlog=1024)
    print(f"receiver listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.port, args.record))
