"""The floor for bench/intake.py: one single-row INSERT … RETURNING through the same stack
(uvicorn, FastAPI, the request session) as a real intake, so the two rates compare what
the intake itself costs. Mounted only with WATERGRID_BENCH_ROUTES=true."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import text

from watergrid.auth.deps import public
from watergrid.deps import SessionDep

router = APIRouter(prefix="/bench", tags=["benchmark"], include_in_schema=False)

FLOOR_TABLE_DDL = {
    "postgresql": "CREATE TABLE IF NOT EXISTS bench_floor "
    "(id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT now(), body TEXT NOT NULL)",
    "sqlite": "CREATE TABLE IF NOT EXISTS bench_floor "
    "(id INTEGER PRIMARY KEY, at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, body TEXT NOT NULL)",
}


@router.post("/floor", dependencies=[Depends(public)])
def floor(db: SessionDep, body: dict[str, object]) -> dict[str, int]:
    new_id = db.execute(
        text("INSERT INTO bench_floor (body) VALUES (:b) RETURNING id"), {"b": str(body)[:500]}
    ).scalar_one()
    db.commit()
    return {"id": int(new_id)}
