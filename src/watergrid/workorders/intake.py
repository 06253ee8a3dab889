"""Intake: validation (every problem at once, nothing written), routing, numbering,
idempotency, duplicates, photos. `service.create_order` is the entry point."""

from __future__ import annotations

import json
import math
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    URL,
    Engine,
    Table,
    bindparam,
    create_engine,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from watergrid.auth.principal import Principal
from watergrid.db import Statement, json_param, pg_insert_from_json, pg_together
from watergrid.errors import AppError, FieldError, forbidden
from watergrid.geo import locate as geo_locate
from watergrid.geo.models import RegistryState
from watergrid.geo.schemas import AreaRef, DepartmentRef
from watergrid.org import service as org_service
from watergrid.settings import get_settings
from watergrid.timers.deadlines import compute_due
from watergrid.timers.spans import require_aware
from watergrid.workorders import flows, jobs, lifecycle, people
from watergrid.workorders.common import field_error, local_tz, raise_fields, sha256_hex
from watergrid.workorders.config import get_wo_settings
from watergrid.workorders.lifecycle import DUPLICATE_CANDIDATE_STATES
from watergrid.workorders.models import (
    Attachment,
    AttachmentBlob,
    Category,
    IdempotencyRecord,
    OrderCounter,
    OrderEvent,
    OrderFollower,
    WorkOrder,
)
from watergrid.workorders.photos import CheckedPhoto, PhotoUpload, check_photo
from watergrid.workorders.queries import attachment_read
from watergrid.workorders.schemas import (
    PUBLIC_SOURCES,
    SOURCES,
    AttachmentRead,
    CreateResult,
    DuplicateCandidate,
    OrderCreate,
    OrderReceipt,
)

MAX_DESCRIPTION = 4000


MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")


EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


KEY_RE = re.compile(r"^[\x21-\x7e]+$")


EARTH_RADIUS_M = 6_371_008.8


def normalise_mobile(raw: str) -> str | None:
    """A mainland mobile number as 11 digits, or None when it is not one. Spaces, dashes and
    a +86 / 0086 prefix are accepted."""
    s = re.sub(r"[\s\-()]", "", raw or "")
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    return s if MOBILE_RE.match(s) else None


def _attr_error(code: str, en: str, zh: str) -> tuple[str, FieldError]:
    return ("bad_attribute", field_error(f"attributes.{code}", en, zh))


def check_attributes(
    defs: list[dict[str, Any]], given: dict[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, FieldError]]]:
    """Validate attribute values against a category's definitions (Open311 datatypes).
    Returns the normalised values and the problems."""
    out: dict[str, Any] = {}
    problems: list[tuple[str, FieldError]] = []
    by_code = {d["code"]: d for d in defs}
    for code in given:
        if code not in by_code:
            problems.append(
                _attr_error(code, f"Unknown attribute {code}", f"该类别没有属性 {code}")
            )
    for d in sorted(defs, key=lambda a: (a.get("order", 0), a["code"])):
        code, kind, desc = d["code"], d["datatype"], d.get("description", d["code"])
        if not d.get("variable", True):
            continue
        raw = given.get(code)
        empty = raw is None or raw == "" or raw == []
        if empty:
            if d.get("required"):
                problems.append(
                    (
                        "attribute_required",
                        field_error(f"attributes.{code}", f"{code} is required", f"请填写：{desc}"),
                    )
                )
            continue
        keys = {v["key"] for v in d.get("values", [])}
        if kind == "number":
            try:
                num = math.nan if raw is None or isinstance(raw, bool | list) else float(raw)
            except (TypeError, ValueError):
                num = math.nan
            if isinstance(raw, list) or not math.isfinite(num):
                problems.append(
                    _attr_error(code, f"{code} must be a number", f"{desc}：请填写数字")
                )
                continue
            out[code] = int(num) if num.is_integer() else num
        elif kind == "datetime":
            try:
                when = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
            except ValueError:
                problems.append(
                    _attr_error(
                        code,
                        f"{code} must be an ISO 8601 date and time",
                        f"{desc}：时间格式应为 2026-07-01T08:30+08:00",
                    )
                )
                continue
            if when.tzinfo is None:
                # A form's local time is Beijing time.
                when = when.replace(tzinfo=local_tz())
            out[code] = when.isoformat()
        elif kind in ("string", "text"):
            if isinstance(raw, list):
                problems.append(_attr_error(code, f"{code} must be text", f"{desc}：请填写文字"))
                continue
            text = str(raw).strip()
            limit = 200 if kind == "string" else 2000
            if len(text) > limit:
                problems.append(
                    _attr_error(
                        code,
                        f"{code} is longer than {limit} characters",
                        f"{desc}：最多 {limit} 字",
                    )
                )
                continue
            out[code] = text
        elif kind == "singlevaluelist":
            if isinstance(raw, list):
                raw = raw[0] if len(raw) == 1 else raw
            if isinstance(raw, list) or str(raw) not in keys:
                problems.append(
                    _attr_error(
                        code, f"{code} must be one of {sorted(keys)}", f"{desc}：请从选项中选择一项"
                    )
                )
                continue
            out[code] = str(raw)
        elif kind == "multivaluelist":
            values = raw if isinstance(raw, list) else [raw]
            values = [str(v) for v in values]
            bad = [v for v in values if v not in keys]
            if bad:
                problems.append(
                    _attr_error(
                        code, f"{code}: {bad} not among {sorted(keys)}", f"{desc}：选项无效 {bad}"
                    )
                )
                continue
            out[code] = list(dict.fromkeys(values))
    return out, problems


def _check_idempotency_key(key: str) -> str:
    limit = get_wo_settings().idempotency_key_max_length
    if not key or len(key) > limit or not KEY_RE.match(key):
        raise AppError(
            400,
            "bad_idempotency_key",
            f"Idempotency-Key must be 1-{limit} printable ASCII characters",
            f"Idempotency-Key 应为 1–{limit} 个可打印 ASCII 字符",
        )
    return key


# The fields a request hash covers: those of OrderCreate, also when a route passes its own
# subclass (with `source`) so that the body is not validated twice. Hashes are stored with
# the keys, so what they cover must not change.
_HASHED_FIELDS = frozenset(OrderCreate.model_fields)


def _request_hash(
    *, data: OrderCreate, source: str, actor: Principal | None, photos: Sequence[PhotoUpload]
) -> str:
    body = {
        "source": source,
        "actor": actor.user_id if actor else None,
        "data": data.model_dump(mode="json", include=set(_HASHED_FIELDS)),
        "photos": [sha256_hex(p.data) for p in photos],
    }
    return sha256_hex(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def _replay(stored: tuple[str, dict[str, Any] | None], request_hash: str) -> CreateResult:
    request_sha256, receipt = stored
    if request_sha256 != request_hash or receipt is None:
        raise AppError(
            409,
            "idempotency_conflict",
            "This Idempotency-Key was used with a different request",
            "该 Idempotency-Key 已用于另一份不同的提交",
        )
    return CreateResult(receipt=OrderReceipt.model_validate(receipt), replayed=True)


_STORED_KEY = select(IdempotencyRecord.request_sha256, IdempotencyRecord.receipt).where(
    IdempotencyRecord.key == bindparam("key")
)


def _stored_key(db: Session, key: str) -> tuple[str, dict[str, Any] | None] | None:
    """The hash and receipt stored under an Idempotency-Key, read fresh from the database."""
    row = db.connection().execute(_STORED_KEY, {"key": key}).first()
    return (row[0], row[1]) if row is not None else None


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance (haversine), in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


MAX_DUPLICATES_SHOWN = 10

# Open orders of one category in a small box around the point (ix_work_order_category_lat_lon
# narrows it); built once, with the box as parameters.
_NEARBY = select(
    WorkOrder.id,
    WorkOrder.number,
    WorkOrder.state,
    WorkOrder.created_at,
    WorkOrder.lon,
    WorkOrder.lat,
).where(
    WorkOrder.category_code == bindparam("category_code"),
    WorkOrder.lat.between(bindparam("lat_lo"), bindparam("lat_hi")),
    WorkOrder.lon.between(bindparam("lon_lo"), bindparam("lon_hi")),
    WorkOrder.created_at >= bindparam("since"),
    # The states are constants of the code: written into the SQL, not an expanding
    # parameter, which SQLAlchemy would render into the statement anew on every execution.
    WorkOrder.state.in_([literal_column(f"'{s}'") for s in sorted(DUPLICATE_CANDIDATE_STATES)]),
)
_NEARBY_EXCEPT = _NEARBY.where(WorkOrder.id != bindparam("exclude_id"))


def _box(lon: float, lat: float, radius: float) -> dict[str, float]:
    """A box around the point that holds the circle of `radius` metres."""
    dlat = radius / 111_000.0 * 1.05
    dlon = dlat / max(math.cos(math.radians(lat)), 0.01)
    return {"lat_lo": lat - dlat, "lat_hi": lat + dlat, "lon_lo": lon - dlon, "lon_hi": lon + dlon}


def _candidate(
    lon: float, lat: float, radius: float, category_code: str, row: tuple[Any, ...]
) -> tuple[float, int, DuplicateCandidate] | None:
    """(distance, order id, candidate) of an order row (id, number, state, created_at, lon,
    lat) within `radius` of the point; None when it lies outside."""
    oid, number, state, created_at, olon, olat = row
    d = distance_m(lon, lat, olon, olat)
    if d > radius:
        return None
    return (
        d,
        oid,
        DuplicateCandidate(
            number=number,
            category_code=category_code,
            state=state,
            distance_m=round(d, 1),
            created_at=created_at,
        ),
    )


def find_duplicates(
    db: Session,
    *,
    category_code: str,
    lon: float,
    lat: float,
    now: datetime,
    exclude_id: int | None = None,
    radius_m: float | None = None,
    window_hours: float | None = None,
) -> list[tuple[int, DuplicateCandidate]]:
    """Open orders of the same category within `radius_m` made in the last `window_hours`
    (settings by default): (order id, candidate), nearest first, at most 10. Reads only the
    columns it shows: a cluster of reports at one spot must not slow every new one down."""
    cfg = get_wo_settings()
    radius = cfg.duplicate_radius_m if radius_m is None else radius_m
    hours = cfg.duplicate_window_hours if window_hours is None else window_hours
    params: dict[str, Any] = {
        "category_code": category_code,
        "since": now - timedelta(hours=hours),
        **_box(lon, lat, radius),
    }
    if exclude_id is None:
        q = _NEARBY
    else:
        q = _NEARBY_EXCEPT
        params["exclude_id"] = exclude_id
    if db.autoflush:
        db.flush()  # as a session query would: orders written just now are candidates too
    hits = []
    for row in db.connection().execute(q, params):
        hit = _candidate(lon, lat, radius, category_code, tuple(row))
        if hit is not None:
            hits.append(hit)
    return _nearest(hits)


class _CategoryFacts(NamedTuple):
    """What intake reads of a category."""

    id: int
    code: str
    group_code: str
    name_zh: str
    name_en: str
    default_priority: str
    deadlines: dict[str, Any]
    attributes: list[dict[str, Any]] | None


# The category, and with it the registry version, which says whether the routing view in
# hand is current (_registry_view): one round trip for both. Reading geo's version row here
# rather than through geo.service is on purpose, see docs/performance.md.
_ACTIVE_CATEGORY = select(
    Category.id,
    Category.code,
    Category.group_code,
    Category.name_zh,
    Category.name_en,
    Category.default_priority,
    Category.deadlines,
    Category.attributes,
    select(RegistryState.version).where(RegistryState.id == 1).scalar_subquery(),
).where(Category.code == bindparam("code"), Category.active.is_(True))


class _Looked(NamedTuple):
    """A category as intake reads it (None: no such active category) and the registry view
    current in this transaction, which answers the service card's zone, the point's areas
    and the routing."""

    category: _CategoryFacts | None
    registry: geo_locate.RegistryView


# The same for every code of a batch at once on PostgreSQL, sent with the transaction's
# BEGIN (db.pg_together): a row with the version even when no code is an active category.
_ACTIVE_CATEGORIES_PG = (
    "SELECT c.id, c.code, c.group_code, c.name_zh, c.name_en, c.default_priority, "
    "c.deadlines, c.attributes, r.version FROM registry_state r "
    "LEFT JOIN order_category c ON c.code = ANY(%(codes)s::varchar[]) AND c.active "
    "WHERE r.id = 1"
)


def _look_up(db: Session, codes: Sequence[str]) -> dict[str, _Looked]:
    """The categories of a batch's reports and the registry version: one round trip on
    PostgreSQL, one per code elsewhere."""
    if not codes:
        return {}
    if db.get_bind().dialect.name != "postgresql":
        return {code: _look_up_one(db, code) for code in codes}
    (rows,) = pg_together(db, [(_ACTIVE_CATEGORIES_PG, {"codes": list(codes)})])
    version = rows[0][-1] if rows else None
    found = {row[1]: _CategoryFacts(*row[:-1]) for row in rows if row[0] is not None}
    view = _registry_view(db, version) if rows else geo_locate.view(db)
    return {code: _Looked(found.get(code), view) for code in codes}


def _look_up_one(db: Session, code: str) -> _Looked:
    row = db.connection().execute(_ACTIVE_CATEGORY, {"code": code}).first()
    if row is None:
        return _Looked(None, geo_locate.view(db))
    return _Looked(_CategoryFacts(*row[:-1]), _registry_view(db, row[-1]))


def _registry_view(db: Session, version: int | None) -> geo_locate.RegistryView:
    """geo's registry view for `version` (read in this transaction): the one intake's
    directory was built for when that is still the version, else geo's own (which looks
    at the version again and rebuilds when it has moved)."""
    known = people.directory_view()
    if known is not None and known.snapshot.links.version == (
        str(db.get_bind().engine.url),
        version or 0,
    ):
        return known
    return geo_locate.view(db)


@dataclass
class _Prepared:
    category: _CategoryFacts
    description: str
    phone: str
    email: str
    attributes: dict[str, Any]
    priority: str
    photos: list[CheckedPhoto]
    pending: list[Attachment]
    grid: AreaRef
    subdistrict: AreaRef
    zone_id: int | None
    zone: AreaRef | None
    department_id: int | None
    department: DepartmentRef | None
    party_group_number: int | None
    directory: people.Directory
    followers: list[tuple[int, str]] = field(default_factory=list)


def _whereabouts(
    db: Session, view: geo_locate.RegistryView, *, lon: float, lat: float
) -> tuple[int, int, list[int]]:
    """(grid id, subdistrict id, zone ids) of a point, from the registry view in hand; a
    point that is not a coordinate or lies outside the district goes through geo's locate,
    which raises the error the reporter sees."""
    snap = view.snapshot
    idx = -1
    if math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90:
        idx = snap.locator.grid_index(lon, lat)
    if idx < 0:
        loc = geo_locate.locate(db, lon=lon, lat=lat)
        return loc.grid.id, loc.subdistrict.id, [z.id for z in loc.zones]
    grid_id = snap.grid_ids[idx]
    zone_ids = [snap.zone_id_by_code[c] for c in snap.locator.zone_codes_at(lon, lat)]
    return grid_id, snap.links.grid_subdistrict[grid_id], zone_ids


def _check_source(source: str, actor: Principal | None) -> None:
    if source not in SOURCES:
        raise AppError(
            422,
            "unknown_source",
            f"Unknown source {source}",
            f"未知的诉求来源：{source}",
            [field_error("source", f"one of {list(SOURCES)}", "来源无效")],
        )
    if source not in PUBLIC_SOURCES and (actor is None or not actor.can("orders.create_staff")):
        if actor is None:
            raise AppError(
                401,
                "unauthenticated",
                "Sign in to enter patrol or phone reports",
                "登记巡查发现或来电诉求请先登录",
            )
        raise forbidden()


def _prepare(
    db: Session,
    *,
    data: OrderCreate,
    actor: Principal | None,
    photos: Sequence[PhotoUpload],
    looked_up: _Looked,
) -> _Prepared:
    """Everything intake decides before writing: validation (all problems at once) and
    routing. Raises AppError; writes nothing."""
    cfg = get_wo_settings()
    problems: list[tuple[str, FieldError]] = []

    cat, registry = looked_up
    if cat is None:
        problems.append(
            (
                "unknown_category",
                field_error(
                    "category_code",
                    f"Unknown category {data.category_code}",
                    f"未知的诉求类别：{data.category_code}",
                ),
            )
        )

    description = data.description.strip()
    if not description:
        problems.append(
            (
                "description_required",
                field_error("description", "Describe the problem", "请填写问题描述"),
            )
        )
    elif len(description) > MAX_DESCRIPTION:
        problems.append(
            (
                "description_too_long",
                field_error(
                    "description",
                    f"Description has {len(description)} characters; at most {MAX_DESCRIPTION:,}",
                    f"问题描述最多 {MAX_DESCRIPTION} 字，当前 {len(description)} 字",
                ),
            )
        )

    phone = ""
    if data.reporter_phone.strip():
        normal = normalise_mobile(data.reporter_phone)
        if normal is None:
            problems.append(
                (
                    "bad_phone",
                    field_error(
                        "reporter_phone",
                        "Not an 11-digit mainland mobile number",
                        "手机号码格式不正确，应为11位大陆手机号",
                    ),
                )
            )
        else:
            phone = normal
            if not data.phone_consent:
                problems.append(
                    (
                        "consent_required",
                        field_error(
                            "phone_consent",
                            "Agree that we store your number and contact you, or leave it out",
                            "如需留下手机号，请勾选同意我们保存并回访；也可以不留",
                        ),
                    )
                )

    email = data.reporter_email.strip()
    if email and not EMAIL_RE.match(email):
        problems.append(
            (
                "bad_email",
                field_error("reporter_email", "Not an e-mail address", "电子邮箱格式不正确"),
            )
        )

    attributes: dict[str, Any] = {}
    if cat is not None:
        attributes, attr_problems = check_attributes(cat.attributes or [], data.attributes)
        problems.extend(attr_problems)

    card_zone: AreaRef | None = None
    if data.zone_code:
        card_zone_id = registry.snapshot.zone_id_by_code.get(data.zone_code)
        if card_zone_id is None:
            problems.append(
                (
                    "unknown_zone",
                    field_error(
                        "zone_code",
                        f"Unknown zone {data.zone_code}",
                        f"未知的片区：{data.zone_code}",
                    ),
                )
            )
        else:
            card_zone = registry.areas[card_zone_id]

    if data.priority is not None and (actor is None or not actor.is_staff):
        problems.append(
            (
                "priority_staff_only",
                field_error("priority", "Priority is set by staff", "紧急程度由工作人员确定"),
            )
        )

    checked: list[CheckedPhoto] = []
    pending: list[Attachment] = []
    if len(photos) + len(data.attachment_keys) > cfg.photo_max_count:
        problems.append(
            (
                "too_many_photos",
                field_error(
                    "photos",
                    f"At most {cfg.photo_max_count} photos",
                    f"最多上传 {cfg.photo_max_count} 张照片",
                ),
            )
        )
    else:
        for i, p in enumerate(photos):
            try:
                checked.append(
                    check_photo(
                        p,
                        field=f"photos.{i}",
                        max_bytes=cfg.photo_max_bytes,
                        max_pixels=cfg.photo_max_pixels,
                        public_max_side=cfg.public_photo_max_side,
                    )
                )
            except AppError as e:
                problems.append((e.code, e.fields[0]))
        keys = list(dict.fromkeys(data.attachment_keys))
        if keys:
            found = {
                a.key: a for a in db.scalars(select(Attachment).where(Attachment.key.in_(keys)))
            }
            for k in keys:
                a = found.get(k)
                if a is None or a.order_id is not None:
                    problems.append(
                        (
                            "unknown_attachment",
                            field_error(
                                "attachment_keys",
                                f"No pending upload {k}",
                                f"照片 {k} 不存在或已使用",
                            ),
                        )
                    )
                else:
                    pending.append(a)

    located: tuple[int, int, list[int]] | None = None
    try:
        located = _whereabouts(db, registry, lon=data.lon, lat=data.lat)
    except AppError as e:
        problems.append((e.code, field_error("location", e.message, e.message_zh)))

    raise_fields(problems)
    assert cat is not None and located is not None
    grid_id, subdistrict_id, zone_ids = located

    dept_id = org_service.responsible_department(
        registry.rules,
        category_code=cat.code,
        grid_id=grid_id,
        zone_ids=zone_ids,
        subdistrict_id=subdistrict_id,
    )
    # A service card names the enterprise's own zone: its chain leader is their contact
    # even when the problem lies just outside the zone's outline.
    if card_zone is not None:
        zone: AreaRef | None = card_zone
    elif zone_ids:
        zone = registry.areas[zone_ids[0]]
    else:
        zone = None
    directory = people.directory(db, registry)
    group_number, group_leader = directory.groups.get(grid_id, (None, None))
    followers: list[tuple[int, str]] = []
    chain = directory.chain_leaders.get(zone.id) if zone is not None else None
    if chain is not None:
        followers.append((chain, "chain_leader"))
    if group_leader is not None and group_leader != chain:
        followers.append((group_leader, "party_group_leader"))
    priority = data.priority or cat.default_priority
    return _Prepared(
        category=cat,
        description=description,
        phone=phone,
        email=email,
        attributes=attributes,
        priority=priority,
        photos=checked,
        pending=pending,
        grid=registry.areas[grid_id],
        subdistrict=registry.areas[subdistrict_id],
        zone_id=zone.id if zone else None,
        zone=zone,
        department_id=dept_id,
        department=registry.departments.get(dept_id) if dept_id is not None else None,
        party_group_number=group_number,
        directory=directory,
        followers=followers,
    )


_numbering_lock = threading.Lock()
_numbering_engines: dict[URL, Engine] = {}


def _numbering_engine(db: Session) -> Engine:
    """A small autocommit pool of its own for the counter (PostgreSQL): borrowing from the
    session's pool while holding one of its connections could starve it under load.

    Its commits do not wait for the WAL flush (synchronous_commit off), which is what kept
    every create in every process queueing on the counter row for a disk flush each. That
    loses nothing: an order's own commit is synchronous and flushes the WAL up to its
    commit record, which lies after the counter's, so a durable order always has a durable
    counter at or past its number; after a crash the counter may only go back to numbers
    that no committed order holds (the unique constraint on the number stands guard too).

    No ping before each use, which would cost a round trip per create: a connection found
    dead is replaced and the increment tried once more (next_number)."""
    url = db.get_bind().engine.url
    engine = _numbering_engines.get(url)
    if engine is None:
        with _numbering_lock:
            engine = _numbering_engines.get(url)
            if engine is None:
                # As many kept connections as requests a process admits at once (app.py),
                # so a burst of creates does not open and close connections per create.
                size = get_settings().db_pool_size
                engine = create_engine(
                    url,
                    pool_size=size,
                    max_overflow=2,  # creates from background jobs, beside the requests
                    isolation_level="AUTOCOMMIT",
                    connect_args={"options": "-c synchronous_commit=off"},
                )
                _numbering_engines[url] = engine
    return engine


_COUNTER = cast(Table, OrderCounter.__table__)
_NEXT_NUMBER_SQLITE = (
    sqlite_insert(_COUNTER)
    .values(year=bindparam("year"), last=1)
    .on_conflict_do_update(index_elements=["year"], set_={"last": _COUNTER.c.last + 1})
    .returning(_COUNTER.c.last)
)


def order_number(year: int, n: int) -> str:
    """The human number of the year's n-th order, e.g. GM-2026-000123."""
    return f"{get_wo_settings().number_prefix}-{year}-{n:06d}"


def next_number(db: Session, *, now: datetime) -> str:
    """PREFIX-YYYY-NNNNNN (settings: number_prefix) from the year's counter row,
    incremented by one atomic upsert.

    On PostgreSQL the increment commits on its own at once, so concurrent creates hold the
    row lock for one statement rather than for their whole transaction (which would make
    every create in every process wait in line); a create that fails after numbering leaves
    a gap. On SQLite, where writers are serialised anyway, it runs in the caller's
    transaction and numbers have no gaps."""
    if db.get_bind().dialect.name == "postgresql":
        return _numbers_and_ids_pg(db, [now])[0][0]
    year = now.astimezone(local_tz()).year
    n = db.execute(_NEXT_NUMBER_SQLITE, {"year": year}).scalar_one()
    return order_number(year, n)


def actor_fields(db: Session, actor: Principal | None, role: str | None) -> dict[str, Any]:
    if actor is None:
        return {"actor_role": role or "reporter"}
    dept = people.person_department_id(db, person_id=actor.person_id)
    if dept is None and actor.department_ids:
        dept = min(actor.department_ids)
    return {
        "actor_user_id": actor.user_id,
        "actor_person_id": actor.person_id,
        "actor_role": role or lifecycle.primary_role(actor),
        "actor_department_id": dept,
        "actor_name": actor.display_name[:64],
    }


def store_photos(
    db: Session,
    *,
    order_id: int,
    event_id: int | None,
    photos: Sequence[CheckedPhoto],
    pending: Sequence[Attachment],
    actor: Principal | None,
    now: datetime,
) -> None:
    for p in photos:
        a = Attachment(
            key=secrets.token_hex(16),
            order_id=order_id,
            event_id=event_id,
            filename=p.filename,
            content_type=p.content_type,
            original_content_type=p.original_content_type,
            size=len(p.public),
            original_size=len(p.original),
            width=p.width,
            height=p.height,
            sha256=sha256_hex(p.original),
            uploaded_by_user_id=actor.user_id if actor else None,
            created_at=now,
        )
        db.add(a)
        db.flush()
        db.add(AttachmentBlob(attachment_id=a.id, original=p.original, public=p.public))
    for a in pending:
        a.order_id = order_id
        a.event_id = event_id
    db.flush()


_KEYS = cast(Table, IdempotencyRecord.__table__)
_CLAIM_KEY = (
    sqlite_insert(_KEYS).on_conflict_do_nothing(index_elements=["key"]).returning(_KEYS.c.key)
)
_CLAIM_KEYS_PG = (
    pg_insert_from_json(
        _KEYS, ("key", "request_sha256", "order_id", "receipt", "created_at"), "rows", many=True
    )
    + " ORDER BY key ON CONFLICT (key) DO NOTHING RETURNING key"
)
_SET_RECEIPT = (
    update(_KEYS)
    .where(_KEYS.c.key == bindparam("k"))
    .values(order_id=bindparam("order_id"), receipt=bindparam("receipt"))
)
_ORDERS = cast(Table, WorkOrder.__table__)
_INSERT_ORDER = insert(_ORDERS).returning(_ORDERS.c.id)
_EVENTS = cast(Table, OrderEvent.__table__)
_INSERT_EVENT = insert(_EVENTS)
_INSERT_EVENT_ID = insert(_EVENTS).returning(_EVENTS.c.id)
_FOLLOWERS = cast(Table, OrderFollower.__table__)
_INSERT_FOLLOWERS = insert(_FOLLOWERS)


@dataclass(frozen=True)
class CreateRequest:
    """One report to take in (create_orders)."""

    data: OrderCreate
    source: str
    actor: Principal | None
    idempotency_key: str | None
    now: datetime
    photos: Sequence[PhotoUpload] = ()


# What create_orders answers for each request: the receipt, or the error it gets.
Outcome = CreateResult | AppError


@dataclass
class _Taken:
    """A request that passed validation and holds its key: what its rows are made from."""

    index: int
    request: CreateRequest
    key: str | None
    prep: _Prepared
    limits: dict[str, Any]
    number: str = ""
    order_id: int | None = None
    duplicates: list[tuple[int, DuplicateCandidate]] = field(default_factory=list)
    order_row: dict[str, Any] = field(default_factory=dict)
    event_row: dict[str, Any] = field(default_factory=dict)
    receipt: OrderReceipt | None = None
    event_id: int | None = None


def create_order(
    db: Session,
    *,
    data: OrderCreate,
    source: str,
    actor: Principal | None,
    idempotency_key: str | None,
    now: datetime,
    photos: Sequence[PhotoUpload] = (),
) -> CreateResult:
    """Take in a report: validate, route, number it, start its response clock, tell the
    department and the followers. With `idempotency_key`, a repeat of the same request gets
    the first receipt back (replayed=True) and a different request under the same key is a
    409. Everything is written into the caller's transaction; nothing when it raises."""
    (outcome,) = create_orders(
        db, [CreateRequest(data, source, actor, idempotency_key, now, tuple(photos))]
    )
    if isinstance(outcome, AppError):
        raise outcome
    return outcome


def create_orders(db: Session, requests: Sequence[CreateRequest]) -> list[Outcome]:
    """create_order() for several reports in the caller's one transaction, each answered on
    its own: a request that fails validation gets its error and writes nothing, the others
    go ahead. A key given twice in the list: the later request is answered like a retry of
    the first. Any other error (the database's) raises and the caller rolls back.

    Intake is the busiest write path (docs/performance.md). Reports arriving together are
    taken in together (workorders.batching): each statement here serves the whole list, so
    a busy minute costs a few statements per batch rather than per report. Rows are written
    with Core statements rather than the ORM's unit of work (on PostgreSQL every order's own
    rows in one statement), and what a registry version or the calendar can answer comes
    from a per-process cache."""
    out: list[Outcome | None] = [None] * len(requests)
    hashes = [""] * len(requests)
    keys: list[str | None] = [None] * len(requests)
    for i, r in enumerate(requests):
        require_aware(r.now, "now")
        try:
            _check_source(r.source, r.actor)
            hashes[i] = _request_hash(data=r.data, source=r.source, actor=r.actor, photos=r.photos)
            if r.idempotency_key is not None:
                keys[i] = _check_idempotency_key(r.idempotency_key)
        except AppError as e:
            out[i] = e
    if db.autoflush:
        db.flush()  # as a session query would: rows the caller added must be seen

    # A key repeated in the list waits for the first request with it, like a retry.
    first_with: dict[str, int] = {}
    repeats: dict[int, int] = {}
    for i, k in enumerate(keys):
        if out[i] is None and k is not None:
            if k in first_with:
                repeats[i] = first_with[k]
            else:
                first_with[k] = i

    looked_up = _look_up(
        db,
        list(
            dict.fromkeys(
                r.data.category_code
                for i, r in enumerate(requests)
                if out[i] is None and i not in repeats
            )
        ),
    )
    taken: dict[int, _Taken] = {}
    for i, r in enumerate(requests):
        if out[i] is not None or i in repeats:
            continue
        key = keys[i]
        if key is not None and r.photos:
            # Checking photos is the costly part of a create: a retry should not pay it twice.
            stored = _stored_key(db, key)
            if stored is not None:
                out[i] = _replay_outcome(stored, hashes[i])
                continue
        try:
            prep = _prepare(
                db,
                data=r.data,
                actor=r.actor,
                photos=r.photos,
                looked_up=looked_up[r.data.category_code],
            )
        except AppError as e:
            # A retry of a request that was taken gets its receipt even if the category or
            # the registry has changed since; only a request never taken is judged afresh.
            stored = _stored_key(db, key) if key is not None else None
            out[i] = _replay_outcome(stored, hashes[i]) if stored is not None else e
            continue
        limits = prep.category.deadlines[prep.priority]
        taken[i] = _Taken(i, r, key, prep, limits)

    with_keys = [t for t in taken.values() if t.key is not None]
    claims = [(t.key, hashes[t.index], t.request.now) for t in with_keys]
    read: _ReadAhead | None = None
    if taken and db.get_bind().dialect.name == "postgresql":
        # The claims, the duplicate search and the notices' recipients in one round trip,
        # in that order: a claim that waited for another transaction's key sees that
        # transaction's orders too. (What is read for a report whose key turns out to be
        # taken is not used.)
        look = list(taken.values())
        told = list(dict.fromkeys(p for t in look for p in _told(t.prep)))
        statements = [_claims_pg(claims)] if claims else []
        *results, found, people = pg_together(
            db, [*statements, _GENERIC_PLANS, _nearby_pg(look), flows.recipients_pg(told)]
        )
        claimed = {row[0] for row in results[0]} if claims else set()
        read = _ReadAhead(_nearby_hits(look, found), (told, people))
    else:
        claimed = _claim_keys(db, claims)
    lost = [t for t in with_keys if t.key not in claimed]
    if lost:
        # Taken by an earlier request (committed: the claim waited for it): its receipt,
        # or a 409 when the request differs. Rare (retries), so one look-up each.
        for t in lost:
            assert t.key is not None
            held = _stored_key(db, t.key)
            assert held is not None
            out[t.index] = _replay_outcome(held, hashes[t.index])
            del taken[t.index]

    if taken:
        _write_taken(db, list(taken.values()), read)
    for i, t in taken.items():
        assert t.receipt is not None
        out[i] = CreateResult(receipt=t.receipt, replayed=False)
    if repeats:
        # Now that the first request with each key has its outcome in this transaction,
        # the repeats are retries of it.
        again = create_orders(db, [requests[i] for i in repeats])
        for i, outcome in zip(repeats, again, strict=True):
            out[i] = outcome
    answered = [o for o in out if o is not None]
    assert len(answered) == len(requests), "every request gets an answer"
    return answered


def _replay_outcome(stored: tuple[str, dict[str, Any] | None], request_hash: str) -> Outcome:
    try:
        return _replay(stored, request_hash)
    except AppError as e:
        return e


class _ReadAhead(NamedTuple):
    """What a batch reads on PostgreSQL with its key claims: each report's duplicate
    candidates in the table (_nearby_hits), and the people its notices go to with the rows
    that say how to reach them (flows.recipients_pg)."""

    nearby: dict[int, list[tuple[float, int, DuplicateCandidate]]]
    recipients: tuple[list[int], list[tuple[Any, ...]]]


def _claim_keys(db: Session, rows: list[tuple[str | None, str, datetime]]) -> set[str]:
    """Insert the key rows before the orders, so that a concurrent request with one of the
    keys waits on it (PostgreSQL) and then finds this request's receipt instead of making a
    second order. The keys that are ours; the others are taken. In key order, so that two
    batches sharing keys lock them in the same order and cannot deadlock."""
    if not rows:
        return set()
    return set(db.connection().execute(_CLAIM_KEY, _key_rows(rows)).scalars())


def _claims_pg(rows: list[tuple[str | None, str, datetime]]) -> Statement:
    """_claim_keys on PostgreSQL, as a statement answering the keys that are ours. One JSON
    parameter: one statement text whatever the batch's size (prepared once)."""
    return _CLAIM_KEYS_PG, {"rows": json_param(_key_rows(rows))}


def _key_rows(rows: list[tuple[str | None, str, datetime]]) -> list[dict[str, Any]]:
    return [
        {"key": k, "request_sha256": h, "order_id": None, "receipt": None, "created_at": now}
        for k, h, now in sorted(rows, key=lambda r: r[0] or "")
    ]


def _told(prep: _Prepared) -> list[int]:
    """The people a new order's notice goes to: its department's, and its followers."""
    department = {prep.department_id} if prep.department_id is not None else set()
    return prep.directory.department_person_ids(department) + [p for p, _ in prep.followers]


def _write_taken(db: Session, taken: list[_Taken], read: _ReadAhead | None) -> None:
    """Number, look for duplicates, write the orders with their history, followers and
    receipts, arm their response clocks and queue their notices. `read`: on PostgreSQL,
    what was read with the key claims (the duplicate candidates in the table and the
    notices' recipients)."""
    pg = read is not None
    cal = jobs.calendar(db)
    if pg:
        numbered = _numbers_and_ids_pg(db, [t.request.now for t in taken])
    for n, t in enumerate(taken):
        r = t.request
        if pg:
            t.number, t.order_id = numbered[n]
            found = read.nearby.get(t.index, []) if read is not None else []
            t.duplicates = _nearest(found + _in_batch(t, taken[:n]))
        else:
            # One at a time, in order: each sees the ones before it in the database.
            t.duplicates = find_duplicates(
                db, category_code=t.prep.category.code, lon=r.data.lon, lat=r.data.lat, now=r.now
            )
            t.number = next_number(db, now=r.now)
        token = _make_rows(db, t, cal)
        if not pg:
            t.order_id, t.event_id = _write_order(
                db,
                order_row=t.order_row,
                event_row=t.event_row,
                followers=t.prep.followers,
                event_id_wanted=bool(t.prep.photos or t.prep.pending),
            )
        t.receipt = _receipt(t, token)
        if not pg and t.key is not None:
            db.connection().execute(
                _SET_RECEIPT,
                {"k": t.key, "order_id": t.order_id, "receipt": t.receipt.model_dump(mode="json")},
            )
    now = max(t.request.now for t in taken)
    deadlines = [
        jobs.NewDeadline(
            t.order_id,  # type: ignore[arg-type]
            "response",
            t.request.now,
            t.order_row["response_due_at"],
            t.order_row["response_limit"],
        )
        for t in taken
    ]
    notices = [
        flows.NewOrder(
            t.order_id,  # type: ignore[arg-type]
            t.number,
            t.prep.category.name_zh,
            flows.where_text(t.order_row["address"], t.request.data.lon, t.request.data.lat),
            t.order_row["response_due_at"],
            t.prep.description,
            _told(t.prep),
        )
        for t in taken
    ]
    if read is not None:
        # The orders with their own rows, their response clocks and their notices in one
        # round trip: nothing written is read back but the create events' ids.
        together = [
            _orders_pg(taken),
            jobs.arm_new_orders_pg(db, deadlines, now=now),
            flows.orders_created_pg(db, notices, now=now, recipients=read.recipients),
        ]
        written = pg_together(db, [s for s in together if s is not None])
        event_ids = {int(o): int(e) for o, e in written[0]}
        for t in taken:
            t.event_id = event_ids[t.order_id]  # type: ignore[index]
    else:
        jobs.arm_new_orders(db, deadlines, now=now)
        flows.orders_created(db, notices, now=now)
    for t in taken:
        assert t.order_id is not None
        if t.prep.photos or t.prep.pending:
            store_photos(
                db,
                order_id=t.order_id,
                event_id=t.event_id,
                photos=t.prep.photos,
                pending=t.prep.pending,
                actor=t.request.actor,
                now=t.request.now,
            )


def _make_rows(db: Session, t: _Taken, cal: Any) -> str:
    """The order's row and its create event's, on `t`; returns the tracking token (only
    its hash is stored)."""
    r, prep, cat, data = t.request, t.prep, t.prep.category, t.request.data
    response_due = compute_due(
        r.now,
        amount=float(t.limits["response"]["amount"]),
        unit=t.limits["response"]["unit"],
        calendar=cal,
    )
    token = secrets.token_urlsafe(16)
    t.order_row = {
        "number": t.number,
        "category_id": cat.id,
        "category_code": cat.code,
        "group_code": cat.group_code,
        "priority": prep.priority,
        "source": r.source,
        "state": "submitted",
        "description": prep.description,
        "address": data.address.strip(),
        "lon": data.lon,
        "lat": data.lat,
        "attributes": prep.attributes,
        "media_url": data.media_url,
        "external_ref": data.external_ref,
        "reporter_name": data.reporter_name.strip(),
        "reporter_phone": prep.phone,
        "reporter_email": prep.email,
        "phone_consent": bool(prep.phone) and data.phone_consent,
        "track_token_sha256": sha256_hex(token),
        "created_by_user_id": r.actor.user_id if r.actor else None,
        "grid_id": prep.grid.id,
        "subdistrict_id": prep.subdistrict.id,
        "zone_id": prep.zone_id,
        "party_group_number": prep.party_group_number,
        "department_id": prep.department_id,
        "response_limit": dict(t.limits["response"]),
        "handling_limit": {**t.limits["handling"], "extended_by": 0},
        "response_due_at": response_due.due_at,
        "deadline_warnings": list(response_due.warnings),
        "duplicate_candidate_ids": [oid for oid, _ in t.duplicates],
        "created_at": r.now,
        "updated_at": r.now,
    }
    t.event_row = {
        "at": r.now,
        "action": "create",
        "from_state": None,
        "to_state": "submitted",
        "note": "",
        "data": {
            "source": r.source,
            "priority": prep.priority,
            "department": prep.department.code if prep.department else None,
            "response_due_at": response_due.due_at.isoformat(),
            "possible_duplicates": [c.number for _, c in t.duplicates],
        },
        "actor_user_id": None,
        "actor_person_id": None,
        "actor_department_id": None,
        "actor_name": None,
        **actor_fields(db, r.actor, None if r.actor else "reporter"),
    }
    return token


def _receipt(t: _Taken, token: str) -> OrderReceipt:
    prep, o = t.prep, t.order_row
    assert t.order_id is not None
    return OrderReceipt(
        id=t.order_id,
        number=t.number,
        state="submitted",
        source=t.request.source,
        category_code=prep.category.code,
        category_name_zh=prep.category.name_zh,
        category_name_en=prep.category.name_en,
        priority=prep.priority,
        created_at=t.request.now,
        response_due_at=o["response_due_at"],
        subdistrict=prep.subdistrict,
        grid=prep.grid,
        zone=prep.zone,
        department=prep.department,
        reporter_phone_masked=flows.masked(prep.phone),
        track_token=token,
        possible_duplicates=[c for _, c in t.duplicates],
        warnings=list(o["deadline_warnings"]),
    )


def _write_order(
    db: Session,
    *,
    order_row: dict[str, Any],
    event_row: dict[str, Any],
    followers: list[tuple[int, str]],
    event_id_wanted: bool,
) -> tuple[int, int | None]:
    """The order, its create event and its followers, one Core statement per table: the
    order's id and (when asked for, to tie photos to it) the event's."""
    conn = db.connection()
    order_id = int(conn.execute(_INSERT_ORDER, order_row).scalar_one())
    event = {"order_id": order_id, **event_row}
    event_id: int | None = None
    if event_id_wanted:
        event_id = int(conn.execute(_INSERT_EVENT_ID, event).scalar_one())
    else:
        conn.execute(_INSERT_EVENT, event)
    if followers:
        conn.execute(
            _INSERT_FOLLOWERS,
            [{"order_id": order_id, "person_id": p, "reason": r} for p, r in followers],
        )
    return order_id, event_id


_pg_write_sql: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}


def _orders_pg(taken: list[_Taken]) -> Statement:
    """Every order of the batch, its create event, its followers and its key's receipt in
    one statement of data-modifying CTEs (PostgreSQL checks the foreign keys at its end,
    when the order rows are there). Rows travel as one JSON array per table, so the SQL is
    the same whatever the batch's size: built once, prepared by psycopg, planned once per
    connection. It answers (order id, create event id) for each order."""
    orders = [{"id": t.order_id, **t.order_row} for t in taken]
    events = [{"order_id": t.order_id, **t.event_row} for t in taken]
    shape = (tuple(orders[0]), tuple(events[0]))
    sql = _pg_write_sql.get(shape)
    if sql is None:
        sql = (
            f"WITH o AS ({pg_insert_from_json(_ORDERS, shape[0], 'orders', many=True)}), "
            f"e AS ({pg_insert_from_json(_EVENTS, shape[1], 'events', many=True)} "
            "RETURNING id, order_id), "
            f"f AS (INSERT INTO {_FOLLOWERS.name} (order_id, person_id, reason) "
            "SELECT u.order_id, u.person_id, u.reason "
            "FROM unnest(%(f_order)s::integer[], %(f_person)s::integer[], "
            "%(f_reason)s::varchar[]) AS u(order_id, person_id, reason)), "
            # The keys again as an array, for the index: joined only to the JSON rows
            # (which the planner takes for 100), the update scanned the whole table.
            f"k AS (UPDATE {_KEYS.name} SET order_id = u.order_id, receipt = u.receipt "
            "FROM json_to_recordset(%(keys)s::json) AS u(key varchar, order_id integer, "
            f"receipt json) WHERE {_KEYS.name}.key = u.key "
            f"AND {_KEYS.name}.key = ANY(%(key_list)s::varchar[])) "
            "SELECT order_id, id FROM e"
        )
        _pg_write_sql[shape] = sql
    followers = [(t.order_id, p, r) for t in taken for p, r in t.prep.followers]
    keys = [
        {"key": t.key, "order_id": t.order_id, "receipt": t.receipt.model_dump(mode="json")}
        for t in taken
        if t.key is not None and t.receipt is not None
    ]
    params = {
        "orders": json_param(orders),
        "events": json_param(events),
        "f_order": [o for o, _, _ in followers],
        "f_person": [p for _, p, _ in followers],
        "f_reason": [r for _, _, r in followers],
        "keys": json_param(keys),
        "key_list": [k["key"] for k in keys],
    }
    return sql, params


_NEXT_NUMBERS_PG = (
    "WITH c AS (INSERT INTO order_counter (year, last) VALUES (%(year)s, %(n)s) "
    "ON CONFLICT (year) DO UPDATE SET last = order_counter.last + %(n)s RETURNING last) "
    "SELECT c.last, nextval(pg_get_serial_sequence('work_order', 'id')) "
    "FROM c, generate_series(1, %(n)s)"
)


def _numbers_and_ids_pg(db: Session, nows: Sequence[datetime]) -> list[tuple[str, int]]:
    """A number and an order id for each `now`, in order: per year one increment of the
    counter by as many as it needs and as many values of the id sequence, in one round
    trip on the counter's own connection (see _numbering_engine)."""
    years = [now.astimezone(local_tz()).year for now in nows]
    out: dict[int, tuple[str, int]] = {}
    engine = _numbering_engine(db)
    for year in dict.fromkeys(years):
        slots = [i for i, y in enumerate(years) if y == year]
        for attempt in (1, 2):
            try:
                with engine.connect() as conn:
                    rows = conn.exec_driver_sql(
                        _NEXT_NUMBERS_PG, {"year": year, "n": len(slots)}
                    ).all()
                break
            except DBAPIError as exc:
                # A pooled connection the server has dropped (a restart): the pool has
                # thrown it away; one more try gets a fresh one. A repeat at worst leaves
                # a gap, which numbering on PostgreSQL allows anyway.
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        last = int(rows[0][0])
        ids = sorted(int(r[1]) for r in rows)
        first = last - len(slots) + 1
        for n, (slot, order_id) in enumerate(zip(slots, ids, strict=True)):
            out[slot] = (order_number(year, first + n), order_id)
    return [out[i] for i in range(len(nows))]


# One index look-up per report: LATERAL with OFFSET 0, which keeps PostgreSQL from
# flattening it into a plain join. Flattened, the generic plan, and the plan for any batch of
# six reports or more, hashed the reports and scanned every open order of the table once per
# batch, so each batch cost more as the table grew (3.5 ms for 8 reports at 2,800 orders,
# against 0.13 ms as index look-ups).
_NEARBY_MANY_PG = (
    "SELECT q.i, w.id, w.number, w.state, w.created_at, w.lon, w.lat "
    "FROM unnest(%(i)s::integer[], %(code)s::varchar[], %(lat_lo)s::float8[], "
    "%(lat_hi)s::float8[], %(lon_lo)s::float8[], %(lon_hi)s::float8[], "
    "%(since)s::timestamptz[]) AS q(i, code, lat_lo, lat_hi, lon_lo, lon_hi, since) "
    "CROSS JOIN LATERAL (SELECT w.id, w.number, w.state, w.created_at, w.lon, w.lat "
    "FROM work_order w WHERE w.category_code = q.code "
    "AND w.lat BETWEEN q.lat_lo AND q.lat_hi AND w.lon BETWEEN q.lon_lo AND q.lon_hi "
    "AND w.created_at >= q.since AND w.state IN ("
    + ", ".join(f"'{s}'" for s in sorted(DUPLICATE_CANDIDATE_STATES))
    + ") OFFSET 0) AS w"
)


# For the rest of the transaction, the prepared statements' generic plans. The duplicate
# search's is the same nested loop of index look-ups as a plan made for the batch at hand
# (_NEARBY_MANY_PG), but PostgreSQL, which prices the generic plan for ten reports and a
# batch is usually one or two, would otherwise plan it afresh for every batch (about half a
# millisecond of its CPU each time). Every other statement of a create is planned
# generically anyway.
_GENERIC_PLANS: Statement = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)",
    {},
)


def _nearby_pg(taken: list[_Taken]) -> Statement:
    """find_duplicates for every request of a batch as one query (PostgreSQL); its rows
    are read by _nearby_hits."""
    cfg = get_wo_settings()
    radius, hours = cfg.duplicate_radius_m, cfg.duplicate_window_hours
    cols: dict[str, list[Any]] = {
        k: [] for k in ("i", "code", "lat_lo", "lat_hi", "lon_lo", "lon_hi", "since")
    }
    for t in taken:
        d = t.request.data
        box = _box(d.lon, d.lat, radius)
        cols["i"].append(t.index)
        cols["code"].append(t.prep.category.code)
        for k in ("lat_lo", "lat_hi", "lon_lo", "lon_hi"):
            cols[k].append(box[k])
        cols["since"].append(t.request.now - timedelta(hours=hours))
    return _NEARBY_MANY_PG, cols


def _nearby_hits(
    taken: list[_Taken], rows: Sequence[Sequence[Any]]
) -> dict[int, list[tuple[float, int, DuplicateCandidate]]]:
    """Each request's candidates among the stored orders, by request index, unsorted."""
    radius = get_wo_settings().duplicate_radius_m
    by_index = {t.index: t for t in taken}
    out: dict[int, list[tuple[float, int, DuplicateCandidate]]] = {}
    for i, oid, number, state, created_at, olon, olat in rows:
        d = by_index[i].request.data
        hit = _candidate(
            d.lon,
            d.lat,
            radius,
            by_index[i].prep.category.code,
            (oid, number, state, created_at.astimezone(UTC), olon, olat),
        )
        if hit is not None:
            out.setdefault(i, []).append(hit)
    return out


def _in_batch(t: _Taken, earlier: list[_Taken]) -> list[tuple[float, int, DuplicateCandidate]]:
    """Candidates among the batch's earlier requests, which a report taken alone after
    them would have found in the database."""
    radius = get_wo_settings().duplicate_radius_m
    d = t.request.data
    hits = []
    for e in earlier:
        if e.prep.category.code != t.prep.category.code:
            continue
        ed = e.request.data
        row = (e.order_id, e.number, "submitted", e.request.now, ed.lon, ed.lat)
        hit = _candidate(d.lon, d.lat, radius, t.prep.category.code, row)
        if hit is not None:
            hits.append(hit)
    return hits


def _nearest(
    hits: list[tuple[float, int, DuplicateCandidate]],
) -> list[tuple[int, DuplicateCandidate]]:
    hits.sort(key=lambda h: (h[0], h[1]))
    return [(oid, c) for _, oid, c in hits[:MAX_DUPLICATES_SHOWN]]


def upload_attachment(
    db: Session, *, photo: PhotoUpload, actor: Principal | None, now: datetime
) -> AttachmentRead:
    """Store a checked photo not yet tied to an order; the create (or an action) claims it by
    its key. Unclaimed uploads are removed by purge_unclaimed_uploads."""
    cfg = get_wo_settings()
    p = check_photo(
        photo,
        field="file",
        max_bytes=cfg.photo_max_bytes,
        max_pixels=cfg.photo_max_pixels,
        public_max_side=cfg.public_photo_max_side,
    )
    a = Attachment(
        key=secrets.token_hex(16),
        order_id=None,
        event_id=None,
        filename=p.filename,
        content_type=p.content_type,
        original_content_type=p.original_content_type,
        size=len(p.public),
        original_size=len(p.original),
        width=p.width,
        height=p.height,
        sha256=sha256_hex(p.original),
        uploaded_by_user_id=actor.user_id if actor else None,
        created_at=now,
    )
    db.add(a)
    db.flush()
    db.add(AttachmentBlob(attachment_id=a.id, original=p.original, public=p.public))
    db.flush()
    return attachment_read(a)


def purge_unclaimed_uploads(db: Session, *, before: datetime) -> int:
    """Delete uploads never attached to an order, made before `before`."""
    ids = list(
        db.scalars(
            select(Attachment.id).where(
                Attachment.order_id.is_(None), Attachment.created_at < before
            )
        )
    )
    for i in ids:
        blob = db.get(AttachmentBlob, i)
        if blob is not None:
            db.delete(blob)
        a = db.get(Attachment, i)
        if a is not None:
            db.delete(a)
    db.flush()
    return len(ids)
