"""Prometheus metrics. With several uvicorn workers each process counts its own; set
PROMETHEUS_MULTIPROC_DIR in production to aggregate them (docs/operations.md)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "watergrid_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
LATENCY = Histogram(
    "watergrid_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    start = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    # The route template, not the raw path, so label cardinality stays bounded.
    name = getattr(route, "path", "unmatched")
    REQUESTS.labels(request.method, name, str(response.status_code)).inc()
    LATENCY.labels(request.method, name).observe(time.perf_counter() - start)
    return response
