"""Building blocks of the flood tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from watergrid.db import begin_write
from watergrid.flood import assets, sensors
from watergrid.flood.ingest import Outcome, ingest
from watergrid.flood.models import FloodAsset, Reading, Sensor
from watergrid.flood.parse import RawReading
from watergrid.flood.schemas import AssetCreate, SensorCreate, ThresholdIn
from watergrid.flood.state import IngestState

# Inside 公明街道 (440311002) of the demo geometry, and inside 光明街道 (440311001).
GONGMING = (113.895, 22.79)
GUANGMING = (113.95, 22.80)


def river(db: Session, tag: str, *, raise_after_s: int = 0, clear_after_s: int = 0) -> FloodAsset:
    """A river with warning level 10 m and guaranteed level 12 m, and a two-level ladder:
    yellow at 10 (clears below 9.8), red at 12 (clears below 11.8)."""
    a = assets.create(
        db,
        data=AssetCreate(
            code=f"R-{tag}",
            kind="river",
            name_zh=f"测试河{tag}",
            lon=GONGMING[0],
            lat=GONGMING[1],
            warning_level_m=10.0,
            guaranteed_level_m=12.0,
        ),
    )
    assets.set_thresholds(
        db,
        asset=a,
        items=[
            ThresholdIn(
                metric="water_level",
                level=2,
                raise_at=10.0,
                clear_at=9.8,
                raise_after_s=raise_after_s,
                clear_after_s=clear_after_s,
            ),
            ThresholdIn(
                metric="water_level",
                level=4,
                raise_at=12.0,
                clear_at=11.8,
                raise_after_s=raise_after_s,
                clear_after_s=clear_after_s,
            ),
        ],
    )
    return a


def sensor(
    db: Session,
    code: str,
    kind: str,
    *,
    asset_code: str | None = None,
    at: tuple[float, float] = GONGMING,
    **extra: object,
) -> Sensor:
    return sensors.create(
        db,
        data=SensorCreate(
            code=code,
            kind=kind,
            name_zh=code,
            asset_code=asset_code,  # type: ignore[arg-type]
            lon=None if asset_code else at[0],
            lat=None if asset_code else at[1],
            **extra,
        ),
    )


def raw(code: str, ts: datetime, value: float, unit: str | None = None) -> RawReading:
    return RawReading(
        code, ts, value, unit, None, {"sensor": code, "ts": ts.isoformat(), "value": value}
    )


def put(
    sf: sessionmaker[Session], readings: Sequence[RawReading], *, state: IngestState, now: datetime
) -> Outcome:
    """Ingest in a transaction of its own, committed, as the consumer does."""
    with sf() as db:
        begin_write(db)
        out = ingest(db, readings=readings, source="test", state=state, now=now)
        db.commit()
    return out


def stored(db: Session, sensor_id: int) -> list[tuple[datetime, float, int]]:
    return [
        tuple(r)
        for r in db.execute(  # type: ignore[misc]
            select(Reading.ts, Reading.value, Reading.flag)
            .where(Reading.sensor_id == sensor_id)
            .order_by(Reading.ts)
        )
    ]


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
