"""FastAPI factory: mounts each domain's API routes and pages."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from watergrid import db as dbmod
from watergrid.db import is_overload
from watergrid.errors import AppError, FieldError, invalid, overloaded
from watergrid.ops import metrics, ratelimit
from watergrid.ops.logs import setup_logging
from watergrid.settings import get_settings

log = logging.getLogger("watergrid.app")
WEB_DIR = Path(__file__).parent / "web"


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/open311/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def _error_response(request: Request, exc: AppError) -> Response:
    if _wants_html(request):
        if exc.status == 401:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        from watergrid.web.render import error_page

        return error_page(request, exc)
    return JSONResponse(exc.as_dict(), status_code=exc.status)


def _busy_response(request: Request) -> Response:
    """503 in the caller's terms (page, JSON error, Open311 error list) with Retry-After."""
    err = overloaded()
    if request.url.path.startswith("/open311/"):
        from watergrid.open311.errors import from_app_error
        from watergrid.open311.formats import render_error

        fmt = "xml" if request.url.path.endswith(".xml") else "json"
        locale = "en" if request.query_params.get("locale", "").startswith("en") else "zh"
        response = render_error(fmt, from_app_error(err), locale)
    else:
        response = _error_response(request, err)
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> Response:
        response = _error_response(request, exc)
        if exc.status == 503:  # busy or stopping: a client may come back
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        fields = [
            FieldError(
                field=".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path")),
                message=e["msg"],
                message_zh="格式或取值不正确",
            )
            for e in exc.errors()
        ]
        return await app_error(request, invalid(fields))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        zh = {404: "页面不存在", 405: "不支持该请求方法"}.get(exc.status_code, "请求无法处理")
        err = AppError(exc.status_code, "http_error", str(exc.detail), zh)
        return await app_error(request, err)

    @app.exception_handler(OverflowError)
    async def number_out_of_range(request: Request, exc: OverflowError) -> Response:
        # An id or number too large for the database's integers (SQLite refuses to bind
        # one beyond 64 bits) names nothing that can exist: the caller's error, not ours.
        field = FieldError(field="", message="Number out of range", message_zh="数值超出范围")
        return await app_error(request, invalid([field]))

    @app.exception_handler(SQLAlchemyTimeoutError)
    async def pool_timeout(request: Request, exc: SQLAlchemyTimeoutError) -> Response:
        log.warning("no database connection free in time: answering 503")
        return _busy_response(request)

    @app.exception_handler(OperationalError)
    async def database_busy(request: Request, exc: OperationalError) -> Response:
        if not is_overload(exc):
            raise exc  # a real fault: the server's 500, logged with its traceback
        log.warning("database busy: answering 503", extra={"fields": {"error": str(exc.orig)}})
        return _busy_response(request)


# What a client that may retry is told to wait, in seconds.
RETRY_AFTER_S = 2
# How long a request may wait for its turn (Admission) before it is told to come back.
ADMISSION_WAIT_S = 10.0


class Admission:
    """No more requests at once per process than the database pool has connections.

    Routes and their dependencies run in a pool of worker threads, and a write request
    takes its connection in one thread step and needs further steps to finish. With more
    requests in flight than connections, threads fill up with requests waiting for a
    connection while those holding one wait for a thread: throughput collapsed to a few
    requests per pool timeout (measured, docs/performance.md). Here the excess waits for a
    slot in the event loop, where waiting costs nothing, in arrival order; past
    ADMISSION_WAIT_S it is answered 503 with Retry-After instead.

    `queued` routes (method, path) pass by: they hold neither a thread nor a connection
    while they wait, and bound their own queue (the report API, workorders.batching)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        slots: int,
        wait_s: float = ADMISSION_WAIT_S,
        queued: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self.app = app
        self.slots = asyncio.Semaphore(slots)
        self.wait_s = wait_s
        self.queued = queued

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in self.queued:
            await self.app(scope, receive, send)
            return
        if self.slots.locked():
            try:
                await asyncio.wait_for(self.slots.acquire(), self.wait_s)
            except TimeoutError:
                log.warning("no request slot free in time: answering 503")
                await _busy_response(Request(scope))(scope, receive, send)
                return
        else:
            await self.slots.acquire()
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()


def _embedded(settings_url: str) -> bool:
    flag = get_settings().embedded_worker
    return flag if flag is not None else settings_url.startswith("sqlite")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    worker = None
    if app.state.embedded_worker:
        from watergrid.ops import worker as worker_mod

        worker = worker_mod.start(worker_id=f"embedded-{os.getpid()}")
    yield
    if worker is not None:
        worker.stop()


def create_app(database_url: str | None = None, *, embedded_worker: bool | None = None) -> FastAPI:
    """`embedded_worker=None` follows the settings; tests pass False and drive jobs
    themselves with a controllable clock."""
    settings = get_settings()
    setup_logging(level=settings.log_level, as_json=settings.log_json)
    dbmod.configure(database_url)
    if settings.secret_key == "change-me-in-production" and not (
        database_url or settings.database_url
    ).startswith("sqlite"):
        log.warning("WATERGRID_SECRET_KEY is the default: set it before serving the public")

    app = FastAPI(
        lifespan=lifespan,
        title="watergrid",
        version="0.1.0",
        description=(
            "District water-affairs bureau: grid registry, work orders, KPIs, flood season."
        ),
    )
    app.state.embedded_worker = (
        embedded_worker
        if embedded_worker is not None
        else _embedded(database_url or settings.database_url)
    )
    _install_error_handlers(app)
    # Requests in flight per process: as many as the pool keeps connections, so requests
    # never open (and close) connections beyond it; the overflow is for the odd background
    # session, not for request load.
    from watergrid.workorders.batching import QUEUED_ROUTES

    app.add_middleware(Admission, slots=settings.db_pool_size, queued=QUEUED_ROUTES)
    # Outside admission (a throttled request takes no slot), inside the metrics (it is counted).
    ratelimit.install(app)
    app.add_middleware(metrics.Measure)

    from watergrid.auth.api import router as auth_router
    from watergrid.flood.api import router as flood_router
    from watergrid.flood.flood_api2 import router as flood_response_router
    from watergrid.flood.flood_pages import router as flood_pages
    from watergrid.geo.api import router as geo_router
    from watergrid.geo.pages import router as geo_pages
    from watergrid.inspections.api import router as inspections_router
    from watergrid.inspections.pages import router as inspections_pages
    from watergrid.kpi.api import router as kpi_router
    from watergrid.kpi.pages import router as kpi_pages
    from watergrid.notify.api import router as notify_router
    from watergrid.open311.api import router as open311_router
    from watergrid.ops.api import router as ops_router
    from watergrid.org.api import router as org_router
    from watergrid.org.pages import router as org_pages
    from watergrid.permits.api import router as permits_router
    from watergrid.permits.pages import router as permits_pages
    from watergrid.web.pages import router as web_router
    from watergrid.workorders.api import router as workorders_router
    from watergrid.workorders.pages import router as workorders_pages

    routers = [
        ops_router,
        auth_router,
        geo_router,
        org_router,
        web_router,
        geo_pages,
        org_pages,
        notify_router,
        workorders_router,
        flood_router,
        open311_router,
        kpi_router,
        kpi_pages,
        flood_response_router,
        flood_pages,
        inspections_router,
        inspections_pages,
        permits_router,
        permits_pages,
        workorders_pages,
    ]
    if settings.bench_routes:
        from watergrid.ops.bench_api import router as bench_router

        # Just before the work-order API, so that the floor of bench/intake.py pays the
        # same route matching (routes are tried in order) as the intake it is compared with.
        routers.insert(routers.index(workorders_router), bench_router)
    for router in routers:
        app.include_router(router)

    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    assets = Path(settings.assets_dir)
    if assets.is_dir():
        app.mount("/vendor", StaticFiles(directory=assets), name="vendor")
    else:
        log.warning("front-end assets missing at %s: run `make assets`", assets)
    return app
