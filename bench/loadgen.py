"""A small HTTP/1.1 load generator on asyncio streams: keep-alive connections, closed-loop
(as fast as the server answers) or open-loop at a fixed offered rate, where latency is
measured from the moment each request was due, so a slow server cannot hide its queue
(no coordinated omission). Lighter than an HTTP client library, so the client does not
eat the cores the server is being measured on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Request = tuple[str, str, dict[str, str], bytes]  # method, path, headers, body


@dataclass
class Result:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    bodies: list[bytes] = field(default_factory=list)
    elapsed_s: float = 0.0

    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        xs = sorted(self.latencies_ms)
        return round(xs[min(len(xs) - 1, int(q / 100 * len(xs)))], 2)

    def summary(self) -> dict[str, object]:
        return {
            "requests": sum(self.statuses.values()) + self.errors,
            "ok": self.ok(),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 2),
            "ok_per_s": round(self.ok() / self.elapsed_s, 1) if self.elapsed_s else 0,
            "p50_ms": self.percentile(50),
            "p95_ms": self.percentile(95),
            "p99_ms": self.percentile(99),
            "max_ms": round(max(self.latencies_ms), 2) if self.latencies_ms else None,
        }


class StaleConnection(ConnectionError):
    """A reused connection closed by the server before any answer."""


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, req: Request) -> tuple[int, bytes]:
        try:
            return await self._exchange(req)
        except StaleConnection:
            # The server closed this kept-alive connection while it idled (uvicorn does
            # after 5 s) and read nothing of the request: send it again on a new one, as
            # HTTP clients do. Any other failure counts as an error.
            self.close()
            return await self._exchange(req)

    async def _exchange(self, req: Request) -> tuple[int, bytes]:
        fresh = self.writer is None
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        method, path, headers, body = req
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        try:
            self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await self.writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            if not fresh:
                raise StaleConnection from None
            raise
        assert self.reader is not None
        try:
            status_line = await self.reader.readline()
        except ConnectionResetError:
            status_line = b""
        if not status_line:
            if not fresh:
                raise StaleConnection
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length = 0
        close = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            if k.lower() == "content-length":
                length = int(v.strip())
            elif k.lower() == "connection" and v.strip().lower() == "close":
                close = True
        data = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _target(base: str) -> tuple[str, int]:
    u = urlsplit(base)
    return u.hostname or "127.0.0.1", u.port or 80


async def _one(conn: Conn, req: Request, due: float, res: Result, keep_body: bool) -> None:
    try:
        status, body = await conn.send(req)
    except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
        res.errors += 1
        conn.close()
        return
    res.latencies_ms.append((time.perf_counter() - due) * 1000)
    res.statuses[status] = res.statuses.get(status, 0) + 1
    if keep_body:
        res.bodies.append(body)


async def closed_loop(
    base: str,
    make: Callable[[int], Request],
    *,
    concurrency: int,
    duration_s: float,
    keep_bodies: bool = False,
) -> Result:
    host, port = _target(base)
    res = Result()
    counter = iter(range(10**12))
    stop_at = time.perf_counter() + duration_s

    async def worker() -> None:
        conn = Conn(host, port)
        while time.perf_counter() < stop_at:
            due = time.perf_counter()
            await _one(conn, make(next(counter)), due, res, keep_bodies)
        conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    res.elapsed_s = time.perf_counter() - start
    return res


async def open_loop(
    base: str,
    make: Callable[[int], Request],
    *,
    rate: float,
    duration_s: float,
    max_connections: int = 512,
    keep_bodies: bool = False,
) -> Result:
    host, port = _target(base)
    res = Result()
    idle: list[Conn] = []
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    n = int(rate * duration_s)
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if not idle and len(tasks) >= max_connections:
            res.errors += 1  # the client's own limit: count as a failure, not a skip
            continue
        conn = idle.pop() if idle else Conn(host, port)

        async def run(c: Conn = conn, req: Request = make(i), d: float = due) -> None:
            await _one(c, req, d, res, keep_bodies)
            idle.append(c)

        t = asyncio.create_task(run())
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    res.elapsed_s = time.perf_counter() - start
    for c in idle:
        c.close()
    return res
