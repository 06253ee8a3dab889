"""The statements on the ingest hot path, written per engine because SQLAlchemy's per-row
parameter handling (and, on PostgreSQL, one pipelined statement per row for executemany)
was most of a batch's time when measured. They run on the session's own DBAPI connection,
inside the caller's transaction; every other query goes through SQLAlchemy as usual.

- PostgreSQL: one statement per table per batch, the rows passed as arrays and unpacked
  with unnest().
- SQLite: multi-row VALUES in chunks under the bound-parameter limit, and statements that
  yield (almost) no rows: sqlite3 releases and retakes the interpreter lock around every
  step, and behind a busy MQTT thread each retake can wait out the switch interval, so a
  statement per row (executemany) or a row per reading (RETURNING) measured 20× slower.
  Timestamps are written in exactly the text form SQLAlchemy's DateTime uses on SQLite, so
  every other query reads them back the same way.

Rows are sorted by key by the callers, so two writers lock shared rows in one order."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from watergrid.flood.models import RainBucket, RainHour, Reading, Sensor

SQLITE_CHUNK = 500  # rows per statement; at most 5 parameters each, far under 32766

READING = Reading.__tablename__
SENSOR = Sensor.__tablename__
RAIN_TABLES = (RainBucket.__tablename__, RainHour.__tablename__)


def sqlite_ts(ts: datetime) -> str:
    """SQLAlchemy's SQLite storage form of a UTC instant ('YYYY-MM-DD HH:MM:SS.ffffff')."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return ts.replace(tzinfo=None).isoformat(" ", "microseconds")


def _raw(db: Session) -> tuple[str, Any]:
    conn = db.connection()
    name = conn.dialect.name
    if name not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"no ingest statements for dialect {name}")
    return name, conn.connection.driver_connection


def _chunks(rows: Sequence[Any]) -> list[Sequence[Any]]:
    return [rows[i : i + SQLITE_CHUNK] for i in range(0, len(rows), SQLITE_CHUNK)]


def insert_readings(
    db: Session, rows: Sequence[tuple[int, datetime, float, int, int | None]]
) -> set[tuple[int, datetime]] | None:
    """Insert (sensor_id, ts, value, flag, seq) rows, ignoring keys already stored. Returns
    the keys inserted, or None when all were (the common case, spared building a set)."""
    if not rows:
        return None
    dialect, raw = _raw(db)
    if dialect == "postgresql":
        with raw.cursor() as cur:
            cur.execute(
                f"INSERT INTO {READING} (sensor_id, ts, value, flag, seq) SELECT * FROM unnest("
                "%b::integer[], %b::timestamptz[], %b::float8[], %b::smallint[], %b::integer[]) "
                "ON CONFLICT DO NOTHING RETURNING sensor_id, ts",
                [list(c) for c in zip(*rows, strict=True)],
            )
            got = cur.fetchall()
        if len(got) == len(rows):
            return None
        return {(sid, ts.astimezone(UTC)) for sid, ts in got}
    return _insert_readings_sqlite(raw, rows)


def _insert_readings_sqlite(
    raw: Any, rows: Sequence[tuple[int, datetime, float, int, int | None]]
) -> set[tuple[int, datetime]] | None:
    # Not RETURNING: sqlite3 gives up and takes back the interpreter lock for every row a
    # statement yields, and with the MQTT thread busy each take-back can wait out the
    # switch interval. Instead the keys already stored are looked up first (one statement,
    # usually yielding nothing) and only new rows inserted; the transaction began
    # IMMEDIATE, so no other writer can slip a row in between.
    texts = [sqlite_ts(r[1]) for r in rows]
    stored: set[tuple[int, str]] = set()
    cur = raw.cursor()
    try:
        for lo in range(0, len(rows), SQLITE_CHUNK):
            keys: list[Any] = []
            for i in range(lo, min(lo + SQLITE_CHUNK, len(rows))):
                keys += (rows[i][0], texts[i])
            found = cur.execute(
                f"SELECT r.sensor_id, r.ts FROM {READING} r JOIN (VALUES "
                + ",".join(["(?,?)"] * (len(keys) // 2))
                + ") v ON r.sensor_id = v.column1 AND r.ts = v.column2",
                keys,
            ).fetchall()
            stored.update((sid, text) for sid, text in found)
        fresh = [i for i, r in enumerate(rows) if (r[0], texts[i]) not in stored]
        for lo in range(0, len(fresh), SQLITE_CHUNK):
            chunk = fresh[lo : lo + SQLITE_CHUNK]
            params: list[Any] = []
            for i in chunk:
                sid, _, value, flag, seq = rows[i]
                params += (sid, texts[i], value, flag, seq)
            cur.execute(
                f"INSERT INTO {READING} (sensor_id, ts, value, flag, seq) VALUES "
                + ",".join(["(?,?,?,?,?)"] * len(chunk))
                + " ON CONFLICT DO NOTHING",
                params,
            )
    finally:
        cur.close()
    if not stored:
        return None
    return {(rows[i][0], rows[i][1]) for i in fresh}


def add_rain(db: Session, table: str, rows: Sequence[tuple[int, datetime, float]]) -> None:
    """Add (sensor_id, end_at, mm) to a rain bucket table; keys must be unique in `rows`.
    The addition happens in the database, so concurrent writers never lose a sum."""
    if table not in RAIN_TABLES:
        raise ValueError(f"not a rain table: {table}")
    if not rows:
        return
    dialect, raw = _raw(db)
    if dialect == "postgresql":
        with raw.cursor() as cur:
            cur.execute(
                f"INSERT INTO {table} (sensor_id, end_at, mm) SELECT * FROM unnest("
                "%b::integer[], %b::timestamptz[], %b::float8[]) "
                f"ON CONFLICT (sensor_id, end_at) DO UPDATE SET mm = {table}.mm + EXCLUDED.mm",
                [list(c) for c in zip(*rows, strict=True)],
            )
        return
    cur = raw.cursor()
    try:
        for chunk in _chunks(rows):
            params: list[Any] = []
            for sid, end, mm in chunk:
                params += (sid, sqlite_ts(end), mm)
            cur.execute(
                f"INSERT INTO {table} (sensor_id, end_at, mm) VALUES "
                + ",".join(["(?,?,?)"] * len(chunk))
                + " ON CONFLICT (sensor_id, end_at) DO UPDATE SET mm = mm + excluded.mm",
                params,
            )
    finally:
        cur.close()


_NEWER = "last_reading_at IS NULL OR last_reading_at < {ts}"
_HEALTH_SET = (
    "last_seen_at = {now}, "
    "last_value = CASE WHEN " + _NEWER + " THEN {value} ELSE last_value END, "
    "last_reading_at = CASE WHEN " + _NEWER + " THEN {ts} ELSE last_reading_at END, "
    "flagged_count = flagged_count + {flagged}, "
    "last_flagged_at = CASE WHEN {flagged} > 0 THEN {now} ELSE last_flagged_at END, "
    "last_flag = CASE WHEN {flagged} > 0 THEN {flag} ELSE last_flag END"
)


def update_health(
    db: Session, *, now: datetime, rows: Sequence[tuple[int, datetime, float, int, int]]
) -> None:
    """Per sensor (id, newest ts, its value, readings flagged, last flag): last seen now,
    newest reading kept if newer than the stored one (a late batch never moves it back),
    flag counts added."""
    if not rows:
        return
    dialect, raw = _raw(db)
    if dialect == "postgresql":
        sets = _HEALTH_SET.format(
            now="%(now)s", ts="u.ts", value="u.value", flagged="u.flagged", flag="u.flag"
        )
        with raw.cursor() as cur:
            cur.execute(
                f"UPDATE {SENSOR} SET {sets} FROM unnest(%(id)b::integer[], %(ts)b::timestamptz[], "
                "%(value)b::float8[], %(flagged)b::integer[], %(flag)b::smallint[]) "
                f"AS u(id, ts, value, flagged, flag) WHERE {SENSOR}.id = u.id",
                dict(
                    zip(
                        ("id", "ts", "value", "flagged", "flag"),
                        (list(c) for c in zip(*rows, strict=True)),
                        strict=True,
                    )
                )
                | {"now": now},
            )
        return
    # One UPDATE … FROM (VALUES …) per chunk rather than executemany, which would give up
    # and retake the interpreter lock once per row (see _insert_readings_sqlite).
    sets = _HEALTH_SET.format(
        now="?1", ts="u.column2", value="u.column3", flagged="u.column4", flag="u.column5"
    )
    cur = raw.cursor()
    try:
        for chunk in _chunks(rows):
            params: list[Any] = [sqlite_ts(now)]
            holes = []
            for n, (sid, ts, value, flagged, flag) in enumerate(chunk):
                b = 2 + 5 * n
                holes.append(f"(?{b},?{b + 1},?{b + 2},?{b + 3},?{b + 4})")
                params += (sid, sqlite_ts(ts), value, flagged, flag)
            cur.execute(
                f"UPDATE {SENSOR} SET {sets} FROM (VALUES {','.join(holes)}) AS u "
                f"WHERE {SENSOR}.id = u.column1",
                params,
            )
    finally:
        cur.close()
