"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from watergrid.auth.deps import public
from watergrid.db import session_scope
from watergrid.errors import AppError
from watergrid.ops.metrics import render as render_metrics

router = APIRouter(tags=["operations"])


@router.get("/healthz", dependencies=[Depends(public)])
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", dependencies=[Depends(public)])
def readyz() -> dict[str, str]:
    try:
        with session_scope(write=False) as db:
            db.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means not ready
        raise AppError(503, "database_unreachable", str(exc)[:200], "数据库不可达") from exc
    return {"status": "ready", "database": "ok"}


@router.get("/metrics", dependencies=[Depends(public)])
def metrics() -> Response:
    # Public like most exporters: it carries counts and latencies, never personal data.
    return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)
