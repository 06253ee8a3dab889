"""Prometheus metrics. With several uvicorn workers each process counts its own, and a
scrape reaches only one of them; with PROMETHEUS_MULTIPROC_DIR set (to an empty directory,
before the processes start) every process writes its values there and /metrics adds them up
across processes (docs/operations.md)."""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "watergrid_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
LATENCY = Histogram(
    "watergrid_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

INTAKE_BATCH = Histogram(
    "watergrid_intake_batch_size",
    "Reports written per intake transaction (workorders.batching)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)


class Measure:
    """Counts and times every HTTP request by method, route template and status.

    A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware, which runs the rest
    of the app in a task of its own and pipes the response through a stream: a cost every
    request paid, the busiest (intake) included (docs/performance.md)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server answers if the app raises before starting a response

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The route template, not the raw path, so label cardinality stays bounded.
            name = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            REQUESTS.labels(method, name, str(status)).inc()
            LATENCY.labels(method, name).observe(time.perf_counter() - start)


def render() -> bytes:
    """The text a scrape of /metrics gets: this process's values, or with
    PROMETHEUS_MULTIPROC_DIR set, every process's values added up."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
