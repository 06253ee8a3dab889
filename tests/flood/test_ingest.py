"""Batch ingestion against the database (SQLite and PostgreSQL): de-duplication, late and
out-of-order data, impossible values to the dead-letter table, implausible values flagged
and kept out of sums and alarms, sensor health, alarms raised in the same transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from tests.flood.helpers import GONGMING, put, raw, river, sensor, stored

from watergrid.flood import alarms, rain, sensors
from watergrid.flood.models import Alarm, AlarmEvent, DeadLetter, Sensor
from watergrid.flood.schemas import SensorUpdate
from watergrid.flood.state import IngestState

M = timedelta(minutes=1)


def _setup(sf: sessionmaker[Session], tag: str, **river_kw: int) -> tuple[int, int]:
    with sf() as db:
        r = river(db, tag, **river_kw)
        lg = sensor(db, f"LG-{tag}", "level_gauge", asset_code=r.code, max_rate=3.0)  # m per minute
        rg = sensor(db, f"RG-{tag}", "rain_gauge", at=GONGMING)
        db.commit()
        return lg.id, rg.id


def test_duplicates_and_out_of_order_count_once(
    sf: sessionmaker[Session], tag: str, t0: datetime
) -> None:
    _, rg = _setup(sf, tag)
    state = IngestState()
    code = f"RG-{tag}"
    batch = [raw(code, t0 + i * 5 * M, 1.0) for i in range(1, 13)]  # 12 mm in the hour to t0+60'
    first = put(sf, list(reversed(batch[6:])) + batch[6:8], state=state, now=t0 + 2 * 60 * M)
    assert (first.stored, first.duplicates) == (6, 2)
    again = put(
        sf, batch, state=IngestState(), now=t0 + 2 * 60 * M
    )  # a second consumer, cold memory
    assert (again.stored, again.duplicates) == (6, 6)
    with sf() as db:
        assert len(stored(db, rg)) == 12
        sums = rain.window_sums(db, sensor_ids=[rg], now=t0 + 60 * M)
        assert sums[rg][1] == pytest.approx(12.0)
        late = put(sf, [raw(code, t0 - 30 * M, 4.0)], state=state, now=t0 + 2 * 60 * M)
        assert late.stored == 1
        db.rollback()  # end the read snapshot to see the other session's commit
        sums = rain.window_sums(db, sensor_ids=[rg], now=t0 + 60 * M)
        assert sums[rg][1] == pytest.approx(12.0)  # 30 minutes too early for the last hour
        assert sums[rg][3] == pytest.approx(16.0)  # but in the last three


def test_impossible_values_go_to_the_dead_letter_table(
    sf: sessionmaker[Session], tag: str, t0: datetime
) -> None:
    lg, _ = _setup(sf, tag)
    with sf() as db:
        sensors.update(
            db, sensor=db.get(Sensor, lg), data=SensorUpdate(min_value=0.0, max_value=40.0)
        )  # type: ignore[arg-type]
        db.commit()
    out = put(
        sf,
        [
            raw(f"RG-{tag}", t0, -1.0),
            raw(f"LG-{tag}", t0, 55.0),
            raw(f"LG-{tag}", t0 + M, 950.0, unit="cm"),  # 9.5 m: converted and stored
            raw(f"LG-{tag}", t0 + 2 * M, 9.5, unit="kg"),
            raw(f"NOPE-{tag}", t0, 1.0),
        ],
        state=IngestState(),
        now=t0,
    )
    assert out.stored == 1
    reasons = sorted(r.reason for r in out.rejected)
    assert reasons == ["bad_unit", "negative_rain", "out_of_range", "unknown_sensor"]
    with sf() as db:
        rows = db.execute(
            select(
                DeadLetter.reason, DeadLetter.sensor_code, DeadLetter.detail, DeadLetter.payload
            ).where(DeadLetter.sensor_code.like(f"%{tag}"))
        ).all()
        assert sorted(r.reason for r in rows) == reasons
        assert all(r.detail and r.payload for r in rows)
        assert stored(db, lg) == [(t0 + M, 9.5, 0)]
        db.get(Sensor, lg).active = False  # type: ignore[union-attr]
        db.commit()
    off = put(sf, [raw(f"LG-{tag}", t0 + 3 * M, 9.0)], state=IngestState(), now=t0)
    assert [r.reason for r in off.rejected] == ["inactive_sensor"]


def test_implausible_values_are_flagged_and_left_out(
    sf: sessionmaker[Session], tag: str, t0: datetime
) -> None:
    lg, rg = _setup(sf, tag)
    state = IngestState()
    rain_out = put(
        sf,
        [
            raw(f"RG-{tag}", t0 + M, 150.0),
            raw(f"RG-{tag}", t0 + 2 * M, 60.0),
            raw(f"RG-{tag}", t0 + 6 * M, 3.0),
        ],
        state=state,
        now=t0 + 10 * M,
    )
    assert (rain_out.stored, rain_out.flagged) == (3, 1)  # 210 mm in one 5-minute bucket
    # A level gauge: 9 m, then a 6 m spike in one minute (flagged, no alarm), then back.
    lvl = put(
        sf,
        [raw(f"LG-{tag}", t0 + i * M, v) for i, v in enumerate([9.0, 9.1, 15.1, 9.2])],
        state=state,
        now=t0 + 10 * M,
    )
    assert (lvl.stored, lvl.flagged, lvl.notices) == (4, 1, [])
    with sf() as db:
        assert rain.window_sums(db, sensor_ids=[rg], now=t0 + 10 * M)[rg][1] == pytest.approx(153.0)
        assert [f for _, _, f in stored(db, lg)] == [0, 0, 2, 0]
        h = sensors.health(db.get(Sensor, lg), now=t0 + 10 * M)  # type: ignore[arg-type]
        assert (h.flagged_count, h.last_flag, h.last_value) == (1, "level_jump", 9.2)


def test_a_real_level_shift_is_believed_after_a_few_readings(
    sf: sessionmaker[Session], tag: str, t0: datetime
) -> None:
    lg, _ = _setup(sf, tag)
    values = [5.0, 5.0, 20.0, 20.0, 20.0, 20.0]  # the gauge was moved: 15 m higher from now on
    put(
        sf,
        [raw(f"LG-{tag}", t0 + i * M, v) for i, v in enumerate(values)],
        state=IngestState(),
        now=t0 + 9 * M,
    )
    with sf() as db:
        assert [f for _, _, f in stored(db, lg)] == [0, 0, 2, 2, 2, 0]


def test_health_never_moves_back_with_late_data(
    sf: sessionmaker[Session], tag: str, t0: datetime
) -> None:
    lg, _ = _setup(sf, tag)
    state = IngestState()
    put(sf, [raw(f"LG-{tag}", t0 + 10 * M, 9.0)], state=state, now=t0 + 10 * M)
    put(sf, [raw(f"LG-{tag}", t0, 8.0)], state=IngestState(), now=t0 + 11 * M)
    with sf() as db:
        s = db.get(Sensor, lg)
        assert (s.last_reading_at, s.last_value, s.last_seen_at) == (t0 + 10 * M, 9.0, t0 + 11 * M)  # type: ignore[union-attr]
        assert sensors.health(s, now=t0 + 20 * M).status == "ok"  # type: ignore[arg-type]
        assert sensors.health(s, now=t0 + 27 * M).status == "stale"  # type: ignore[arg-type]


def test_alarm_lifecycle_from_readings(sf: sessionmaker[Session], tag: str, t0: datetime) -> None:
    lg, _ = _setup(sf, tag, raise_after_s=120, clear_after_s=300)
    heard: list[alarms.AlarmNotice] = []

    def hook(db: Session, notice: alarms.AlarmNotice) -> None:
        # Runs inside the ingest transaction: the alarm row is already there.
        assert db.get(Alarm, notice.alarm_id) is not None
        heard.append(notice)

    alarms.on_alarm_raised.append(hook)
    alarms.on_alarm_cleared.append(hook)
    try:
        state = IngestState()
        code = f"LG-{tag}"
        # Above yellow at minutes 1..4; raised once it has held 2 minutes (minute 3).
        out = put(
            sf,
            [raw(code, t0 + i * M, v) for i, v in enumerate([9.5, 10.2, 10.3, 10.4, 10.3])],
            state=state,
            now=t0 + 5 * M,
        )
        assert [(n.action, n.level) for n in out.notices] == [("raised", 2)]
        assert out.notices[0].reading_at == t0 + 3 * M
        # A restart (cold memory) carries on from the open alarm: to red, back to yellow, clear.
        state = IngestState()
        put(sf, [raw(code, t0 + i * M, 12.3) for i in range(5, 8)], state=state, now=t0 + 8 * M)
        put(sf, [raw(code, t0 + i * M, 10.5) for i in range(8, 15)], state=state, now=t0 + 15 * M)
        put(sf, [raw(code, t0 + i * M, 9.0) for i in range(15, 22)], state=state, now=t0 + 22 * M)
    finally:
        alarms.on_alarm_raised.remove(hook)
        alarms.on_alarm_cleared.remove(hook)
    assert [(n.action, n.previous_level, n.level) for n in heard] == [
        ("raised", 0, 2),
        ("escalated", 2, 4),
        ("cleared", 2, 0),
    ]
    with sf() as db:
        alarm = db.scalars(select(Alarm).where(Alarm.sensor_id == lg)).one()
        assert (alarm.state, alarm.level, alarm.peak_level) == ("cleared", 0, 4)
        events = db.execute(
            select(
                AlarmEvent.action, AlarmEvent.from_level, AlarmEvent.to_level, AlarmEvent.actor_id
            )
            .where(AlarmEvent.alarm_id == alarm.id)
            .order_by(AlarmEvent.id)
        ).all()
        assert [tuple(e) for e in events] == [
            ("raised", 0, 2, None),
            ("escalated", 2, 4, None),
            ("downgraded", 4, 2, None),
            ("cleared", 2, 0, None),
        ]


def test_a_failing_hook_costs_nothing_but_itself(
    sf: sessionmaker[Session], tag: str, t0: datetime
) -> None:
    lg, _ = _setup(sf, tag)

    def broken(db: Session, notice: alarms.AlarmNotice) -> None:
        db.add(AlarmEvent(alarm_id=notice.alarm_id, action="bogus", to_state="x", to_level=0))
        db.flush()
        raise RuntimeError("call round service down")

    alarms.on_alarm_raised.append(broken)
    try:
        out = put(sf, [raw(f"LG-{tag}", t0, 10.5)], state=IngestState(), now=t0)
    finally:
        alarms.on_alarm_raised.remove(broken)
    assert out.stored == 1 and len(out.notices) == 1
    with sf() as db:
        assert db.scalar(select(func.count()).select_from(Alarm).where(Alarm.sensor_id == lg)) == 1
        actions = db.scalars(
            select(AlarmEvent.action)
            .join(Alarm, Alarm.id == AlarmEvent.alarm_id)
            .where(Alarm.sensor_id == lg)
        ).all()
        assert actions == ["raised"]  # the hook's own write was undone with it


def test_late_readings_count_for_rain_but_not_for_alarms(
    sf: sessionmaker[Session], tag: str, t0: datetime
) -> None:
    lg, _ = _setup(sf, tag)
    state = IngestState()
    put(sf, [raw(f"LG-{tag}", t0 + 10 * M, 9.0)], state=state, now=t0 + 10 * M)
    out = put(sf, [raw(f"LG-{tag}", t0 + 5 * M, 11.0)], state=state, now=t0 + 11 * M)
    assert out.stored == 1 and out.notices == []
