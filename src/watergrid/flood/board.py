"""The flood board's picture in one JSON document: warnings by subdistrict, sensors coloured
by their level, open alarms, call-round progress and crews. The page polls it; everything
is read in one short transaction, positions already in the basemap's datum."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from watergrid.flood import alarms as alarm_service
from watergrid.flood import assets as asset_service
from watergrid.flood import calls as call_service
from watergrid.flood import dispatch, kinds, rain
from watergrid.flood import sensors as sensor_service
from watergrid.flood import warnings as warning_service
from watergrid.flood.response_schemas import LEVEL_RANK, LEVEL_ZH, TASK_STATE_ZH
from watergrid.geo import service as geo_service
from watergrid.geo.api import to_datum
from watergrid.geo.datum import wgs84_to_gcj02
from watergrid.settings import get_settings

ROUND_WINDOW = dt.timedelta(hours=12)
TASK_WINDOW = dt.timedelta(hours=6)
# Rain gauges are coloured by their 3-hour total against the Shenzhen figures (orange 50 mm,
# red 100 mm in 3 h) and a yellow step at half the orange one.
RAIN_STEPS = ((100.0, "red"), (50.0, "orange"), (25.0, "yellow"), (0.1, "blue"))


def _pt(lon: float, lat: float, datum: str) -> list[float]:
    if datum == "gcj02":
        x, y = wgs84_to_gcj02(lon, lat)
        return [round(float(x), 6), round(float(y), 6)]
    return [round(lon, 6), round(lat, 6)]


def _hm(at: dt.datetime) -> str:
    """Clock time in the bureau's zone, whatever zone the browser is set to."""
    return at.astimezone(ZoneInfo(get_settings().timezone)).strftime("%H:%M")


def _rain_level(mm: float | None) -> str | None:
    if mm is None:
        return None
    for limit, level in RAIN_STEPS:
        if mm >= limit:
            return level
    return None


def board(db: Session, *, now: dt.datetime, datum: str = "wgs84") -> dict[str, Any]:
    subs = geo_service.get_all(db, kind="subdistrict")
    active = warning_service.list_warnings(db, active_only=True)
    real = {w.subdistrict_id: w for w in active if not w.exercise}
    drill = {w.subdistrict_id: w for w in active if w.exercise}
    features = []
    for a in subs:
        w, d = real.get(a.id), drill.get(a.id)
        features.append(
            {
                "type": "Feature",
                "geometry": to_datum(a.geometry, datum),
                "properties": {
                    "code": a.code,
                    "name": a.name_zh,
                    "level": w.level if w else None,
                    "level_zh": LEVEL_ZH[w.level] if w else None,
                    "number": w.number if w else None,
                    "warning_id": w.id if w else None,
                    "drill_level": d.level if d else None,
                    "drill_number": d.number if d else None,
                },
            }
        )

    open_alarms = alarm_service.get_all(db, open_only=True, limit=500)
    level_by_sensor: dict[int, int] = {}
    for al in open_alarms:
        if al.sensor_id is not None:
            level_by_sensor[al.sensor_id] = max(level_by_sensor.get(al.sensor_id, 0), al.level)
    rain_3h = {g.sensor_code: g.mm.get("3h") for g in rain.gauge_accumulations(db, now=now)}
    sensors = []
    for s in sensor_service.get_all(db):
        if not s.active:
            continue
        health = sensor_service.health(s, now=now).status
        if s.kind == "rain_gauge":
            mm = rain_3h.get(s.code)
            level = _rain_level(mm)
            value = f"{mm:.1f} mm/3h" if mm is not None else ""
        else:
            lvl = level_by_sensor.get(s.id, 0)
            level = kinds.LEVELS[lvl][0] if lvl in kinds.LEVELS else None
            unit = kinds.METRIC_UNIT[kinds.SENSOR_METRIC[s.kind]]
            value = f"{s.last_value:g} {unit}" if s.last_value is not None else ""
        sensors.append(
            {
                "code": s.code,
                "kind": s.kind,
                "kind_zh": kinds.SENSOR_KINDS.get(s.kind, s.kind),
                "name": s.name_zh,
                "at": _pt(s.lon, s.lat, datum),
                "level": level,
                "stale": health != "ok",
                "value": value,
            }
        )

    alarm_rows = [
        {
            "id": a.id,
            "asset": a.asset_name_zh,
            "metric": a.metric,
            "level": a.level_name,
            "level_zh": LEVEL_ZH.get(a.level_name, ""),
            "state": a.state,
            "exercise": a.exercise,
            "raised_at": a.raised_at.isoformat(),
            "raised_hm": _hm(a.raised_at),
            "value": a.last_value,
        }
        for a in alarm_service.to_read(db, open_alarms[:50])
    ]

    rounds = call_service.list_rounds(db, running_or_since=now - ROUND_WINDOW, limit=300)
    round_rows = [
        {
            "id": r.id,
            "plan": r.plan_name_zh,
            "plan_code": r.plan_code,
            "trigger": r.trigger_label,
            "level": r.level,
            "level_zh": LEVEL_ZH[r.level],
            "exercise": r.exercise,
            "state": r.state,
            "total": r.total,
            "answered": r.answered,
            "late": r.late,
            "waiting": r.waiting,
            "started_at": r.started_at.isoformat(),
            "started_hm": _hm(r.started_at),
        }
        for r in call_service.round_reads(db, rounds, now=now)
    ]

    # What needs attention first: running, real before drills, the highest level, the
    # fewest answered.
    def urgency(r: dict[str, Any]) -> tuple[bool, bool, int, float]:
        share = r["answered"] / r["total"] if r["total"] else 1.0
        return (r["state"] != "running", bool(r["exercise"]), -LEVEL_RANK[r["level"]], share)

    round_rows.sort(key=urgency)
    running = [r for r in round_rows if r["state"] == "running"]

    tasks = dispatch.to_read(db, dispatch.list_tasks(db, open_only=False, since=now - TASK_WINDOW))
    busy = {t.crew_code for t in tasks if t.state in dispatch.BUSY_STATES}
    crews = [
        {
            "code": c.code,
            "name": c.name_zh,
            "kind": c.kind,
            "at": _pt(c.lon, c.lat, datum),
            "busy": c.code in busy,
        }
        for kind in dispatch.CREW_KINDS
        for c in asset_service.get_all(db, kind=kind, active_only=True)
    ]
    task_rows = [
        {
            "id": t.id,
            "label": t.label_zh,
            "state": t.state,
            "state_zh": TASK_STATE_ZH[t.state],
            "crew": t.crew_name_zh,
            "crew_code": t.crew_code,
            "at": _pt(t.lon, t.lat, datum),
            "crew_at": _pt(t.crew_lon, t.crew_lat, datum)
            if t.crew_lon is not None and t.crew_lat is not None
            else None,
            "distance_m": t.distance_m,
            "exercise": t.exercise,
        }
        for t in tasks
    ]
    shelters = [
        {"code": s.code, "name": s.name_zh, "at": _pt(s.lon, s.lat, datum), "capacity": s.capacity}
        for s in asset_service.get_all(db, kind="shelter", active_only=True)
    ]
    points = [
        {"code": p.code, "name": p.name_zh, "at": _pt(p.lon, p.lat, datum)}
        for p in asset_service.get_all(db, kind="waterlogging_point", active_only=True)
    ]
    suggestions = [
        warning_service.suggestion_read(db, s).model_dump(mode="json")
        for s in warning_service.suggestions(db)
    ]
    worst = max((LEVEL_RANK[w.level] for w in real.values()), default=0)
    return {
        "updated_at": now.isoformat(),
        "updated_hm": _hm(now),
        "datum": datum,
        "subdistricts": {"type": "FeatureCollection", "features": features},
        "warnings": [
            {
                "id": w.id,
                "number": w.number,
                "subdistrict": next((a.name_zh for a in subs if a.id == w.subdistrict_id), ""),
                "level": w.level,
                "level_zh": LEVEL_ZH[w.level],
                "exercise": w.exercise,
                "issued_at": w.issued_at.isoformat(),
                "issued_hm": _hm(w.issued_at),
            }
            for w in active
        ],
        "worst_level": next((lvl for lvl, r in LEVEL_RANK.items() if r == worst), None),
        "sensors": sensors,
        "alarms": alarm_rows,
        "open_alarms": len(open_alarms),
        "rounds": round_rows,
        "calls": {
            "running_rounds": len(running),
            "total": sum(r["total"] for r in running),
            "answered": sum(r["answered"] for r in running),
            "late": sum(r["late"] for r in running),
        },
        "tasks": task_rows,
        "crews": crews,
        "shelters": shelters,
        "points": points,
        "suggestions": suggestions,
    }
