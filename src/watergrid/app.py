"""FastAPI factory: mounts each domain's API routes and pages."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from watergrid import db as dbmod
from watergrid.errors import AppError, FieldError, invalid
from watergrid.ops import metrics
from watergrid.ops.logs import setup_logging
from watergrid.settings import get_settings

log = logging.getLogger("watergrid.app")
WEB_DIR = Path(__file__).parent / "web"


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/open311/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> Response:
        if _wants_html(request):
            if exc.status == 401:
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            from watergrid.web.render import error_page

            return error_page(request, exc)
        return JSONResponse(exc.as_dict(), status_code=exc.status)

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
        description="District water-affairs bureau: grid registry, work orders, KPIs, flood season.",
    )
    app.state.embedded_worker = (
        embedded_worker
        if embedded_worker is not None
        else _embedded(database_url or settings.database_url)
    )
    _install_error_handlers(app)
    app.middleware("http")(metrics.measure)

    from watergrid.ops.api import router as ops_router
    from watergrid.geo.api import router as geo_router
    from watergrid.org.api import router as org_router
    from watergrid.auth.api import router as auth_router
    from watergrid.web.pages import router as web_router
    from watergrid.geo.pages import router as geo_pages
    from watergrid.org.pages import router as org_pages
    from watergrid.notify.api import router as notify_router
    from watergrid.workorders.api import router as workorders_router
    from watergrid.flood.api import router as flood_router

    routers = (
        ops_router, auth_router, geo_router, org_router, web_router, geo_pages, org_pages,
        notify_router, workorders_router, flood_router,
    )
    for router in routers:
        app.include_router(router)

    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    assets = Path(settings.assets_dir)
    if assets.is_dir():
        app.mount("/vendor", StaticFiles(directory=assets), name="vendor")
    else:
        log.warning("front-end assets missing at %s: run `make assets`", assets)
    return app
