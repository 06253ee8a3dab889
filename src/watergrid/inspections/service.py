"""Campaigns, targets, inspectors, inspections, findings, rectification rounds and letters.

Typed keyword-only functions taking a Session. They never commit (the caller's transaction
holds the change, its history rows, its timers and its outbox rows together), never send,
and take `now` from the caller so that tests drive time. Errors a user can cause are
AppError with Chinese and English messages and change nothing: everything is checked before
the first write.

Scope (who may do what where) is decided here, record by record:
  read      staff of any department or the whole district; others the grids they reach
            (their own grid, a zone's grids) and the grids they are assigned to inspect
  inspect   the district, the campaign's lead department, grid members reaching the
            target's grid, and the campaign's inspectors of that grid
  manage    the district or the campaign's lead department (targets, inspectors, letters,
            withdrawing a finding)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from watergrid.auth.principal import Principal
from watergrid.errors import AppError, FieldError, forbidden, invalid, not_found
from watergrid.geo import locate as geo_locate
from watergrid.geo import service as geo_service
from watergrid.geo.datum import gcj02_to_wgs84
from watergrid.inspections import flows, history, jobs
from watergrid.inspections.models import (
    Campaign,
    ChecklistTemplate,
    Finding,
    Inspection,
    Inspector,
    InspEvent,
    Letter,
    LetterCounter,
    Photo,
    PhotoBlob,
    Rectification,
    Target,
)
from watergrid.inspections.schemas import (
    METHOD_LABELS,
    STATE_LABELS,
    AreaBrief,
    CampaignCreate,
    CampaignRead,
    ChecklistItem,
    DepartmentBrief,
    EventRead,
    FindingRead,
    ImportReport,
    InspectionRead,
    InspectionSubmit,
    InspectorRead,
    LetterRead,
    PhotoRead,
    RectificationRead,
    RectifyAssign,
    RectifyLimits,
    TargetIn,
    TargetRead,
    TemplateCreate,
    TemplateRead,
)
from watergrid.org import service as org_service
from watergrid.org.service import mask_mobile
from watergrid.timers.deadlines import compute_due
from watergrid.timers.spans import require_aware
from watergrid.workorders.photos import CheckedPhoto, PhotoUpload, check_photo

PHOTO_MAX_COUNT = 12
PHOTO_MAX_BYTES = 8 * 1024 * 1024
PHOTO_MAX_PIXELS = 40_000_000
PUBLIC_PHOTO_MAX_SIDE = 2048
# Farther than this from the target's recorded point, the inspection carries a warning.
GPS_FAR_M = 500.0
CSV_MAX_BYTES = 2 * 1024 * 1024
CSV_MAX_ROWS = 5000
MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
LANDLINE_RE = re.compile(r"^0\d{2,3}-?\d{7,8}$")
ISSUER = "深圳市光明区水务局"
EARTH_RADIUS_M = 6_371_008.8

# CSV headers accepted, Chinese or English, mapped to TargetIn fields.
CSV_COLUMNS: dict[str, str] = {
    "code": "code",
    "编号": "code",
    "小区编号": "code",
    "name": "name",
    "名称": "name",
    "小区名称": "name",
    "address": "address",
    "地址": "address",
    "lon": "lon",
    "经度": "lon",
    "lat": "lat",
    "纬度": "lat",
    "datum": "datum",
    "坐标系": "datum",
    "build_year": "build_year",
    "建成年份": "build_year",
    "property_company": "property_company",
    "物业公司": "property_company",
    "物业服务企业": "property_company",
    "contact_name": "contact_name",
    "联系人": "contact_name",
    "contact_phone": "contact_phone",
    "联系电话": "contact_phone",
}


# =====================================================================================
# small helpers
# =====================================================================================


def _field(name: str, en: str, zh: str, line: int | None = None) -> FieldError:
    return FieldError(field=name, message=en, message_zh=zh, line=line)


def _one(code: str, name: str, en: str, zh: str, status: int = 422) -> AppError:
    return AppError(status, code, en, zh, [_field(name, en, zh)])


def _sha256(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def normalise_phone(raw: str, *, field_name: str) -> str:
    """A mobile (13800138000) or a landline (0755-12345678); '' stays ''. Spaces, dashes in a
    mobile and a +86 prefix are tolerated."""
    s = re.sub(r"[\s()]", "", raw or "")
    if not s:
        return ""
    if s.startswith("+86"):
        s = s[3:]
    digits = s.replace("-", "")
    if MOBILE_RE.match(digits):
        return digits
    if LANDLINE_RE.match(s):
        return s
    raise _one(
        "bad_phone",
        field_name,
        f"{raw!r} is neither a mobile nor a landline number",
        "电话号码格式不正确（手机11位，座机如0755-12345678）",
    )


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine on a spherical Earth: metres of error at
    the distances a phone's position is checked over)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _pg(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def validation_error(exc: ValidationError) -> AppError:
    return invalid(
        [
            _field(".".join(str(p) for p in e["loc"]) or "body", e["msg"], "格式或取值不正确")
            for e in exc.errors()
        ]
    )


# =====================================================================================
# scope
# =====================================================================================


def is_lead(actor: Principal, campaign: Campaign) -> bool:
    return actor.district or campaign.lead_department_id in actor.department_ids


def _assigned_grids(db: Session, actor: Principal, campaign_id: int) -> set[int]:
    if actor.person_id is None:
        return set()
    return set(
        db.scalars(
            select(Inspector.grid_id).where(
                Inspector.campaign_id == campaign_id, Inspector.person_id == actor.person_id
            )
        )
    )


def _reaches(actor: Principal, grid_id: int) -> bool:
    return grid_id in actor.grid_ids or grid_id in actor.reach_grid_ids


def visible_grid_ids(db: Session, *, actor: Principal, campaign: Campaign) -> set[int] | None:
    """Grids whose targets `actor` may see; None for all of them."""
    if actor.district or actor.department_ids:
        return None
    return set(actor.grid_ids) | set(actor.reach_grid_ids) | _assigned_grids(db, actor, campaign.id)


def can_read(db: Session, *, actor: Principal, campaign: Campaign, target: Target) -> bool:
    grids = visible_grid_ids(db, actor=actor, campaign=campaign)
    return grids is None or target.grid_id in grids


def can_inspect(db: Session, *, actor: Principal, campaign: Campaign, target: Target) -> bool:
    if not actor.can("insp.inspect"):
        return False
    if is_lead(actor, campaign):
        return True
    if "grid_member" in actor.roles and _reaches(actor, target.grid_id):
        return True
    return target.grid_id in _assigned_grids(db, actor, campaign.id)


def can_manage(actor: Principal, campaign: Campaign) -> bool:
    return actor.can("insp.manage") and is_lead(actor, campaign)


def _require_manage(actor: Principal, campaign: Campaign) -> None:
    if not can_manage(actor, campaign):
        raise forbidden()


def _require_active(campaign: Campaign) -> None:
    if campaign.state != "active":
        raise AppError(409, "campaign_closed", "The campaign is closed", "该专项排查已结束")


# =====================================================================================
# templates and campaigns
# =====================================================================================


def _template_read(t: ChecklistTemplate) -> TemplateRead:
    return TemplateRead(
        id=t.id,
        code=t.code,
        name=t.name,
        description=t.description,
        items=[ChecklistItem.model_validate(i) for i in t.items],
    )


def list_templates(db: Session) -> list[TemplateRead]:
    return [
        _template_read(t)
        for t in db.scalars(select(ChecklistTemplate).order_by(ChecklistTemplate.code))
    ]


def create_template(
    db: Session, *, data: TemplateCreate, actor: Principal | None, now: datetime
) -> TemplateRead:
    """Add a checklist template. `actor` None is the system (the demo loader)."""
    if actor is not None and not actor.can("insp.manage"):
        raise forbidden()
    if db.scalar(select(ChecklistTemplate.id).where(ChecklistTemplate.code == data.code)):
        raise _one(
            "template_exists",
            "code",
            f"Template {data.code} exists",
            f"检查表编号 {data.code} 已存在",
            409,
        )
    t = ChecklistTemplate(
        code=data.code,
        name=data.name,
        description=data.description,
        items=[i.model_dump() for i in data.items],
        created_at=now,
        updated_at=now,
    )
    db.add(t)
    db.flush()
    return _template_read(t)


def get_template(db: Session, *, code: str) -> ChecklistTemplate:
    t = db.scalar(select(ChecklistTemplate).where(ChecklistTemplate.code == code))
    if t is None:
        raise not_found("checklist template", "检查表", code)
    return t


def create_campaign(
    db: Session, *, data: CampaignCreate, actor: Principal | None, now: datetime
) -> Campaign:
    """Start a campaign; its checklist is copied from the template now. The actor must lead
    it (be in its lead department) unless they act for the whole district."""
    require_aware(now, "now")
    dept = org_service.get_department(db, code=data.lead_department_code)
    if dept is None:
        raise _one(
            "unknown_department",
            "lead_department_code",
            f"No department {data.lead_department_code}",
            f"牵头部门 {data.lead_department_code} 不存在",
        )
    if actor is not None:
        if not actor.can("insp.manage"):
            raise forbidden()
        if not actor.district and dept.id not in actor.department_ids:
            raise _one(
                "not_your_department",
                "lead_department_code",
                "You can only start campaigns led by your own department",
                "只能发起由本部门牵头的专项排查",
                403,
            )
    template = db.scalar(
        select(ChecklistTemplate).where(ChecklistTemplate.code == data.template_code)
    )
    if template is None:
        raise _one(
            "unknown_template",
            "template_code",
            f"No template {data.template_code}",
            f"检查表 {data.template_code} 不存在",
        )
    if db.scalar(select(Campaign.id).where(Campaign.code == data.code)):
        raise _one(
            "campaign_exists",
            "code",
            f"Campaign {data.code} exists",
            f"专项排查编号 {data.code} 已存在",
            409,
        )
    c = Campaign(
        code=data.code,
        name=data.name.strip(),
        scope=data.scope.strip(),
        period_start=data.period_start,
        period_end=data.period_end,
        lead_department_id=dept.id,
        template_id=template.id,
        checklist=list(template.items),
        rectify_limits=data.rectify_limits.model_dump(),
        escalation_workdays=data.escalation_workdays,
        letter_prefix=data.letter_prefix.strip(),
        state="active",
        created_at=now,
        created_by_user_id=actor.user_id if actor else None,
    )
    db.add(c)
    db.flush()
    return c


def get_campaign(db: Session, *, campaign_id: int) -> Campaign:
    c = db.get(Campaign, campaign_id)
    if c is None:
        raise not_found("campaign", "专项排查", campaign_id)
    return c


def get_campaign_by_code(db: Session, *, code: str) -> Campaign | None:
    return db.scalar(select(Campaign).where(Campaign.code == code))


def checklist(campaign: Campaign) -> list[ChecklistItem]:
    return [ChecklistItem.model_validate(i) for i in campaign.checklist]


def _dept_brief(db: Session, dept_id: int | None) -> DepartmentBrief | None:
    if dept_id is None:
        return None
    refs = geo_locate.view(db).departments
    ref = refs.get(dept_id)
    return DepartmentBrief(code=ref.code, name_zh=ref.name_zh) if ref else None


def campaign_read(db: Session, *, campaign: Campaign, actor: Principal) -> CampaignRead:
    grids = visible_grid_ids(db, actor=actor, campaign=campaign)
    q = select(func.count(), func.count(Target.inspected_at)).where(
        Target.campaign_id == campaign.id
    )
    if grids is not None:
        q = q.where(Target.grid_id.in_(grids))
    total, inspected = db.execute(q).one()
    lead = _dept_brief(db, campaign.lead_department_id)
    assert lead is not None
    return CampaignRead(
        id=campaign.id,
        code=campaign.code,
        name=campaign.name,
        scope=campaign.scope,
        period_start=campaign.period_start,
        period_end=campaign.period_end,
        state=campaign.state,
        lead_department=lead,
        checklist=checklist(campaign),
        rectify_limits=RectifyLimits.model_validate(campaign.rectify_limits),
        escalation_workdays=campaign.escalation_workdays,
        letter_prefix=campaign.letter_prefix,
        created_at=campaign.created_at,
        targets=int(total),
        inspected=int(inspected),
    )


def list_campaigns(db: Session, *, actor: Principal) -> list[CampaignRead]:
    rows = db.scalars(select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id.desc()))
    return [campaign_read(db, campaign=c, actor=actor) for c in rows]


def close_campaign(db: Session, *, campaign_id: int, actor: Principal, now: datetime) -> Campaign:
    c = get_campaign(db, campaign_id=campaign_id)
    _require_manage(actor, c)
    _require_active(c)
    c.state, c.closed_at = "closed", now
    db.flush()
    return c


# =====================================================================================
# targets and inspectors
# =====================================================================================


@dataclass(frozen=True)
class _Located:
    lon: float
    lat: float
    grid_id: int
    subdistrict_id: int
    zone_id: int | None


def _locate(db: Session, *, lon: float, lat: float, datum: str) -> _Located:
    if datum == "gcj02":
        lon, lat = gcj02_to_wgs84(lon, lat)
    loc = geo_locate.locate(db, lon=lon, lat=lat)
    return _Located(
        lon=round(lon, 7),
        lat=round(lat, 7),
        grid_id=loc.grid.id,
        subdistrict_id=loc.subdistrict.id,
        zone_id=loc.zones[0].id if loc.zones else None,
    )


def _apply_target(t: Target, data: TargetIn, loc: _Located, phone: str) -> None:
    t.name = data.name.strip()
    t.address = data.address.strip()
    t.lon, t.lat = loc.lon, loc.lat
    t.grid_id, t.subdistrict_id, t.zone_id = loc.grid_id, loc.subdistrict_id, loc.zone_id
    t.build_year = data.build_year
    t.property_company = data.property_company.strip()
    t.contact_name = data.contact_name.strip()
    t.contact_phone = phone


def add_target(
    db: Session,
    *,
    campaign_id: int,
    data: TargetIn,
    actor: Principal | None,
    source: str,
    now: datetime,
) -> tuple[Target, bool]:
    """Add a target (a point picked on the map, or a row of an import), or update the one with
    the same code. Returns (target, created). The point must lie in the district."""
    campaign = get_campaign(db, campaign_id=campaign_id)
    if actor is not None:
        _require_manage(actor, campaign)
    _require_active(campaign)
    phone = normalise_phone(data.contact_phone, field_name="contact_phone")
    loc = _locate(db, lon=data.lon, lat=data.lat, datum=data.datum)
    t = db.scalar(select(Target).where(Target.campaign_id == campaign.id, Target.code == data.code))
    created = t is None
    if t is None:
        t = Target(campaign_id=campaign.id, code=data.code, source=source, created_at=now)
        db.add(t)
    _apply_target(t, data, loc, phone)
    db.flush()
    return t, created


def _decode_csv(data: bytes) -> str:
    # Excel on a Chinese Windows saves CSV in GB18030/GBK; everything else sends UTF-8.
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise _one(
        "bad_encoding",
        "file",
        "The file is neither UTF-8 nor GB18030 text",
        "文件编码无法识别，请另存为 UTF-8 编码的 CSV",
    )


def parse_targets_csv(data: bytes) -> list[TargetIn]:
    """Rows of a target CSV, all checked: any problem raises one 422 listing every bad row
    (with its line number), so nothing is imported from a file with errors."""
    if len(data) > CSV_MAX_BYTES:
        raise _one("file_too_large", "file", "CSV larger than 2 MB", "CSV 文件超过 2 MB")
    text = _decode_csv(data)
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise _one("empty_file", "file", "The file is empty", "文件为空") from None
    columns = [CSV_COLUMNS.get(h.strip().lower(), CSV_COLUMNS.get(h.strip(), "")) for h in header]
    missing = [c for c in ("code", "name", "lon", "lat") if c not in columns]
    if missing:
        raise _one(
            "missing_columns",
            "file",
            f"Missing columns: {missing}",
            f"缺少必填列：{'、'.join(missing)}（编号、小区名称、经度、纬度）",
        )
    rows: list[TargetIn] = []
    problems: list[FieldError] = []
    seen: dict[str, int] = {}
    for line, raw in enumerate(reader, start=2):
        if not any(cell.strip() for cell in raw):
            continue
        if len(rows) + len(problems) >= CSV_MAX_ROWS:
            raise _one(
                "too_many_rows",
                "file",
                f"More than {CSV_MAX_ROWS} rows",
                f"行数超过 {CSV_MAX_ROWS}",
            )
        values: dict[str, Any] = {}
        for col, cell in zip(columns, raw, strict=False):
            if col and cell.strip():
                values[col] = cell.strip()
        try:
            row = TargetIn.model_validate(values)
        except ValidationError as exc:
            for e in exc.errors():
                name = ".".join(str(p) for p in e["loc"]) or "row"
                problems.append(
                    _field(name, e["msg"], f"第{line}行“{name}”格式或取值不正确", line=line)
                )
            continue
        if row.code in seen:
            problems.append(
                _field(
                    "code",
                    f"code {row.code} repeats line {seen[row.code]}",
                    f"第{line}行编号 {row.code} 与第{seen[row.code]}行重复",
                    line=line,
                )
            )
            continue
        seen[row.code] = line
        rows.append(row)
    if problems:
        raise invalid(problems, "The file has errors; nothing was imported")
    if not rows:
        raise _one("empty_file", "file", "No rows", "文件中没有数据行")
    return rows


def import_targets_csv(
    db: Session, *, campaign_id: int, data: bytes, actor: Principal, now: datetime
) -> ImportReport:
    """Import (or update by code) the targets of a CSV. All rows are checked, located and
    their phones normalised before anything is written: a bad row anywhere leaves the
    campaign as it was."""
    campaign = get_campaign(db, campaign_id=campaign_id)
    _require_manage(actor, campaign)
    _require_active(campaign)
    rows = parse_targets_csv(data)
    prepared: list[tuple[TargetIn, _Located, str]] = []
    problems: list[FieldError] = []
    for line, row in enumerate(rows, start=2):
        try:
            phone = normalise_phone(row.contact_phone, field_name="contact_phone")
            loc = _locate(db, lon=row.lon, lat=row.lat, datum=row.datum)
        except AppError as exc:
            problems.append(
                _field(
                    exc.fields[0].field if exc.fields else "row",
                    exc.message,
                    f"编号 {row.code}：{exc.message_zh}",
                    line=line,
                )
            )
            continue
        prepared.append((row, loc, phone))
    if problems:
        raise invalid(problems, "The file has errors; nothing was imported")
    existing = {
        t.code: t for t in db.scalars(select(Target).where(Target.campaign_id == campaign.id))
    }
    created = updated = 0
    for row, loc, phone in prepared:
        t = existing.get(row.code)
        if t is None:
            t = Target(campaign_id=campaign.id, code=row.code, source="csv", created_at=now)
            db.add(t)
            created += 1
        else:
            updated += 1
        _apply_target(t, row, loc, phone)
    db.flush()
    return ImportReport(created=created, updated=updated, codes=[r.code for r, _, _ in prepared])


def _area_brief(db: Session, area_id: int) -> AreaBrief:
    kind, code, zh, _ = geo_service.area_links(db).by_id[area_id]
    return AreaBrief(id=area_id, code=code, name_zh=zh)


def target_read(
    db: Session, *, target: Target, counts: tuple[int, int] | None = None
) -> TargetRead:
    if counts is None:
        counts = _finding_counts(db, [target.id]).get(target.id, (0, 0))
    return TargetRead(
        id=target.id,
        campaign_id=target.campaign_id,
        code=target.code,
        name=target.name,
        address=target.address,
        lon=target.lon,
        lat=target.lat,
        grid=_area_brief(db, target.grid_id),
        subdistrict=_area_brief(db, target.subdistrict_id),
        build_year=target.build_year,
        property_company=target.property_company,
        contact_name=target.contact_name,
        contact_phone=target.contact_phone,
        inspected_at=target.inspected_at,
        findings=counts[0],
        open_findings=counts[1],
    )


def _finding_counts(db: Session, target_ids: list[int]) -> dict[int, tuple[int, int]]:
    """target id -> (findings not withdrawn, of which not yet verified)."""
    if not target_ids:
        return {}
    rows = db.execute(
        select(Finding.target_id, Finding.state, func.count())
        .where(Finding.target_id.in_(target_ids), Finding.state != "void")
        .group_by(Finding.target_id, Finding.state)
    ).all()
    out: dict[int, list[int]] = {}
    for tid, state, n in rows:
        c = out.setdefault(tid, [0, 0])
        c[0] += n
        if state != "verified":
            c[1] += n
    return {k: (v[0], v[1]) for k, v in out.items()}


def list_targets(
    db: Session,
    *,
    campaign_id: int,
    actor: Principal,
    grid_code: str | None = None,
    status: str | None = None,
) -> list[TargetRead]:
    """Targets the actor may see; status "pending" (not yet inspected), "inspected", "open"
    (with unverified findings)."""
    campaign = get_campaign(db, campaign_id=campaign_id)
    q = select(Target).where(Target.campaign_id == campaign.id).order_by(Target.code)
    grids = visible_grid_ids(db, actor=actor, campaign=campaign)
    if grids is not None:
        q = q.where(Target.grid_id.in_(grids))
    if grid_code:
        grid = geo_service.get_or_404(db, code=grid_code, kind="grid")
        q = q.where(Target.grid_id == grid.id)
    if status == "pending":
        q = q.where(Target.inspected_at.is_(None))
    elif status in ("inspected", "open"):
        q = q.where(Target.inspected_at.is_not(None))
    targets = list(db.scalars(q))
    counts = _finding_counts(db, [t.id for t in targets])
    out = [target_read(db, target=t, counts=counts.get(t.id, (0, 0))) for t in targets]
    if status == "open":
        out = [t for t in out if t.open_findings]
    return out


def get_target(db: Session, *, target_id: int, actor: Principal) -> tuple[Target, Campaign]:
    """The target, 404 when missing, 403 when outside the actor's reach."""
    t = db.get(Target, target_id)
    if t is None:
        raise not_found("target", "排查对象", target_id)
    c = get_campaign(db, campaign_id=t.campaign_id)
    if not can_read(db, actor=actor, campaign=c, target=t):
        raise forbidden()
    return t, c


def assign_inspector(
    db: Session, *, campaign_id: int, grid_code: str, person_code: str, actor: Principal | None
) -> InspectorRead:
    campaign = get_campaign(db, campaign_id=campaign_id)
    if actor is not None:
        _require_manage(actor, campaign)
    grid = geo_service.get(db, code=grid_code)
    if grid is None or grid.kind != "grid":
        raise _one("unknown_grid", "grid_code", f"No grid {grid_code}", f"网格 {grid_code} 不存在")
    person = org_service.get_person(db, code=person_code)
    if person is None or not person.active:
        raise _one(
            "unknown_person",
            "person_code",
            f"No active person {person_code}",
            f"人员 {person_code} 不存在或已停用",
        )
    exists = db.scalar(
        select(Inspector).where(
            Inspector.campaign_id == campaign.id,
            Inspector.grid_id == grid.id,
            Inspector.person_id == person.id,
        )
    )
    if exists is None:
        db.add(Inspector(campaign_id=campaign.id, grid_id=grid.id, person_id=person.id))
        db.flush()
    return InspectorRead(
        grid=AreaBrief(id=grid.id, code=grid.code, name_zh=grid.name_zh),
        person_code=person.code,
        name=person.name,
    )


def remove_inspector(
    db: Session, *, campaign_id: int, grid_code: str, person_code: str, actor: Principal
) -> None:
    campaign = get_campaign(db, campaign_id=campaign_id)
    _require_manage(actor, campaign)
    grid = geo_service.get_or_404(db, code=grid_code, kind="grid")
    person = org_service.get_person(db, code=person_code)
    row = db.scalar(
        select(Inspector).where(
            Inspector.campaign_id == campaign.id,
            Inspector.grid_id == grid.id,
            Inspector.person_id == (person.id if person else -1),
        )
    )
    if row is None:
        raise not_found("inspector", "检查人员", f"{grid_code}/{person_code}")
    db.delete(row)
    db.flush()


def list_inspectors(db: Session, *, campaign_id: int) -> list[InspectorRead]:
    campaign = get_campaign(db, campaign_id=campaign_id)
    rows = db.scalars(select(Inspector).where(Inspector.campaign_id == campaign.id))
    people = {p.id: p for p in org_service.get_people(db)}
    out = []
    for r in rows:
        p = people.get(r.person_id)
        if p is not None:
            out.append(
                InspectorRead(grid=_area_brief(db, r.grid_id), person_code=p.code, name=p.name)
            )
    out.sort(key=lambda i: (i.grid.code, i.person_code))
    return out


# =====================================================================================
# inspections
# =====================================================================================


def _request_hash(target_id: int, data: InspectionSubmit, photos: Sequence[PhotoUpload]) -> str:
    body = json.dumps(
        {
            "target": target_id,
            "data": data.model_dump(mode="json"),
            "photos": [_sha256(p.data) for p in photos],
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return _sha256(body)


def _inspection_read(
    db: Session, insp: Inspection, *, replayed: bool = False, warnings: list[str] | None = None
) -> InspectionRead:
    finding_ids = list(
        db.scalars(select(Finding.id).where(Finding.inspection_id == insp.id).order_by(Finding.id))
    )
    return InspectionRead(
        id=insp.id,
        target_id=insp.target_id,
        kind=insp.kind,
        inspected_at=insp.inspected_at,
        inspector_name=insp.inspector_name,
        lon=insp.lon,
        lat=insp.lat,
        accuracy_m=insp.accuracy_m,
        distance_m=insp.distance_m,
        notes=insp.notes,
        answers=insp.answers,
        verdicts=insp.verdicts,
        fault_count=insp.fault_count,
        findings=finding_ids,
        replayed=replayed,
        warnings=warnings or [],
    )


@dataclass
class _RoundSpec:
    method: str
    party: str
    contact: str
    phone: str
    limit: float
    guide_department_id: int | None = None
    guidance: str = ""
    letter_id: int | None = None


@dataclass
class _Batch:
    """Rounds started in one request, told to the responsible party as one message."""

    rounds: list[Rectification] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def _limit(campaign: Campaign, method: str, override: float | None = None) -> float:
    if override is not None:
        return float(override)
    return float(RectifyLimits.model_validate(campaign.rectify_limits).model_dump()[method])


def _start_round(
    db: Session,
    *,
    campaign: Campaign,
    finding: Finding,
    spec: _RoundSpec,
    actor: Principal | None,
    now: datetime,
    note: str = "",
    inspection_id: int | None = None,
    batch: _Batch | None = None,
) -> Rectification:
    """Open the next rectification round of an open finding: compute its due time in working
    days, move the finding to "rectifying", write the history row and arm the timers."""
    due = compute_due(now, amount=spec.limit, unit="workdays", calendar=jobs.calendar(db))
    finding.rounds += 1
    rect = Rectification(
        finding_id=finding.id,
        round=finding.rounds,
        method=spec.method,
        responsible_party=spec.party,
        responsible_contact=spec.contact,
        responsible_phone=spec.phone,
        guide_department_id=spec.guide_department_id,
        guidance=spec.guidance,
        letter_id=spec.letter_id,
        limit_workdays=spec.limit,
        started_at=now,
        due_at=due.due_at,
        deadline_warnings=list(due.warnings),
        created_by_user_id=actor.user_id if actor else None,
    )
    db.add(rect)
    db.flush()
    before = finding.state
    finding.state = "rectifying"
    finding.rectification_id = rect.id
    finding.proposed_method = None
    if finding.first_due_at is None:
        finding.first_due_at = rect.due_at
    finding.updated_at = now
    history.record(
        db,
        finding=finding,
        action="letter" if spec.method == "letter" else "assign",
        from_state=before,
        to_state="rectifying",
        actor=actor,
        now=now,
        note=note,
        data={
            "method": spec.method,
            "round": rect.round,
            "due_at": rect.due_at.isoformat(),
            "responsible_party": spec.party,
            "limit_workdays": spec.limit,
        },
        rectification_id=rect.id,
        inspection_id=inspection_id,
        letter_id=spec.letter_id,
    )
    jobs.schedule_round(db, rect=rect, campaign=campaign, now=now)
    if batch is not None:
        batch.rounds.append(rect)
        batch.texts.append(finding.item_text)
    return rect


def _close_round(db: Session, *, rect: Rectification, outcome: str | None, now: datetime) -> None:
    rect.outcome = outcome
    rect.closed_at = now
    jobs.cancel_round(db, rect_id=rect.id, now=now)


def _check_photos(
    photos: Sequence[PhotoUpload], tags: list[str], allowed: set[str]
) -> list[CheckedPhoto]:
    if len(photos) != len(tags):
        raise _one(
            "photo_tags",
            "photo_tags",
            f"{len(photos)} photos but {len(tags)} tags",
            "照片与标注数量不一致",
        )
    if len(photos) > PHOTO_MAX_COUNT:
        raise _one(
            "too_many_photos",
            "photos",
            f"At most {PHOTO_MAX_COUNT} photos",
            f"最多上传 {PHOTO_MAX_COUNT} 张照片",
        )
    bad = [t for t in tags if t and t not in allowed]
    if bad:
        raise _one(
            "photo_tags",
            "photo_tags",
            f"Photos tagged with unknown items {bad}",
            "照片对应的检查项不存在",
        )
    return [
        check_photo(
            p,
            field=f"photos.{i}",
            max_bytes=PHOTO_MAX_BYTES,
            max_pixels=PHOTO_MAX_PIXELS,
            public_max_side=PUBLIC_PHOTO_MAX_SIDE,
        )
        for i, p in enumerate(photos)
    ]


def _store_photo(
    db: Session,
    *,
    photo: CheckedPhoto,
    inspection_id: int | None,
    finding_id: int | None,
    item_code: str,
    event_id: int | None,
    actor: Principal,
    now: datetime,
) -> Photo:
    p = Photo(
        key=secrets.token_hex(16),
        inspection_id=inspection_id,
        finding_id=finding_id,
        event_id=event_id,
        item_code=item_code,
        filename=photo.filename,
        content_type=photo.content_type,
        original_content_type=photo.original_content_type,
        size=len(photo.public),
        width=photo.width,
        height=photo.height,
        sha256=_sha256(photo.original),
        uploaded_by_user_id=actor.user_id,
        created_at=now,
    )
    db.add(p)
    db.flush()
    db.add(PhotoBlob(photo_id=p.id, original=photo.original, public=photo.public))
    return p


def _validate_initial(campaign: Campaign, data: InspectionSubmit) -> list[ChecklistItem]:
    items = checklist(campaign)
    codes = {i.code for i in items}
    problems: list[FieldError] = []
    unknown = sorted(set(data.answers) - codes)
    if unknown:
        problems.append(
            _field(
                "answers",
                f"Unknown checklist items {unknown}",
                f"检查项不存在：{'、'.join(unknown)}",
            )
        )
    for item in items:
        a = data.answers.get(item.code)
        if a is None:
            problems.append(
                _field(
                    f"answers.{item.code}",
                    f"{item.code} is not answered",
                    f"未填写：{item.code} {item.text}",
                )
            )
        elif a.answer == "fault" and not a.note.strip():
            problems.append(
                _field(
                    f"answers.{item.code}.note",
                    f"{item.code}: describe the fault",
                    f"{item.code} 存在问题，请写明问题情况和位置",
                )
            )
    if data.verdicts:
        problems.append(
            _field("verdicts", "Verdicts belong to a re-inspection", "首次检查不填写复查结论")
        )
    if problems:
        raise invalid(problems, "The checklist is incomplete")
    return items


def _validate_reinspection(
    db: Session, target: Target, data: InspectionSubmit
) -> dict[int, Finding]:
    if target.inspected_at is None:
        raise AppError(
            409,
            "not_inspected",
            "Inspect the target before re-inspecting it",
            "该对象尚未完成首次检查，不能复查",
        )
    if data.answers:
        raise _one(
            "answers_in_reinspection",
            "answers",
            "A re-inspection gives verdicts only",
            "复查只需对未销号问题逐项给出结论",
        )
    if not data.verdicts:
        raise _one(
            "no_verdicts",
            "verdicts",
            "Give a verdict on at least one finding",
            "请至少对一项问题给出复查结论",
        )
    findings = {
        f.id: f
        for f in db.scalars(
            select(Finding).where(
                Finding.target_id == target.id,
                Finding.id.in_(list(data.verdicts)),
            )
        )
    }
    problems: list[FieldError] = []
    for fid, verdict in data.verdicts.items():
        f = findings.get(fid)
        if f is None:
            problems.append(
                _field(
                    f"verdicts.{fid}",
                    f"No finding {fid} at this target",
                    f"问题 {fid} 不属于该对象",
                )
            )
        elif f.state not in ("rectifying", "rectified"):
            label = STATE_LABELS[f.state][0]
            problems.append(
                _field(
                    f"verdicts.{fid}",
                    f"Finding {fid} is {f.state}",
                    f"问题 {fid} 当前为“{label}”，无需复查",
                )
            )
        elif verdict.result == "failed" and not verdict.note.strip():
            problems.append(
                _field(
                    f"verdicts.{fid}.note",
                    "Say what is still wrong",
                    "复查不合格请写明仍存在的问题",
                )
            )
    if problems:
        raise invalid(problems, "Some verdicts do not apply")
    return findings


def submit_inspection(
    db: Session,
    *,
    target_id: int,
    data: InspectionSubmit,
    photos: Sequence[PhotoUpload] = (),
    actor: Principal,
    now: datetime,
) -> InspectionRead:
    """Record a visit. Initial: every checklist item answered; each fault becomes a finding,
    put under rectification at once when the inspector chose on-site assignment or technical
    guidance, or left open (a letter is the office's to issue). Re-inspection: verdicts on the
    target's unverified findings; a pass verifies, a failure opens the next round.

    The phone's `client_key` makes a retried submit return the first result (replayed) instead
    of recording the visit twice; the same key with different content is a 409."""
    require_aware(now, "now")
    target = db.get(Target, target_id, with_for_update=_pg(db))
    if target is None:
        raise not_found("target", "排查对象", target_id)
    campaign = get_campaign(db, campaign_id=target.campaign_id)
    if not can_inspect(db, actor=actor, campaign=campaign, target=target):
        raise forbidden()
    request_hash = _request_hash(target.id, data, photos)
    previous = db.scalar(select(Inspection).where(Inspection.client_key == data.client_key))
    if previous is not None:
        if previous.request_sha256 != request_hash or previous.target_id != target.id:
            raise AppError(
                409,
                "client_key_reused",
                "This form key was already used for a different submission",
                "该表单已提交过不同的内容，请刷新页面重新填写",
            )
        return _inspection_read(db, previous, replayed=True)
    _require_active(campaign)

    party = data.responsible_party.strip() or target.property_company or "物业服务企业"
    phone = normalise_phone(
        data.responsible_phone or target.contact_phone, field_name="responsible_phone"
    )
    contact = data.responsible_contact.strip() or target.contact_name
    warnings: list[str] = []
    items: list[ChecklistItem] = []
    verdict_findings: dict[int, Finding] = {}
    if data.kind == "initial":
        if target.inspected_at is not None:
            raise AppError(
                409,
                "already_inspected",
                "This target has been inspected; re-inspect it",
                "该对象已完成首次检查，如需核查整改情况请使用“复查”",
            )
        items = _validate_initial(campaign, data)
        allowed = {i.code for i in items}
    else:
        verdict_findings = _validate_reinspection(db, target, data)
        allowed = {f"f{fid}" for fid in verdict_findings}
    checked = _check_photos(photos, data.photo_tags, allowed)

    dist = None
    if data.lon is not None and data.lat is not None:
        dist = round(distance_m(target.lon, target.lat, data.lon, data.lat), 1)
        if dist > GPS_FAR_M:
            warnings.append(f"定位距登记位置约 {dist:.0f} 米，请确认是否在现场")
    else:
        warnings.append("未获取定位")

    insp = Inspection(
        campaign_id=campaign.id,
        target_id=target.id,
        kind=data.kind,
        client_key=data.client_key,
        request_sha256=request_hash,
        inspector_user_id=actor.user_id,
        inspector_person_id=actor.person_id,
        inspector_name=actor.display_name[:64],
        inspected_at=now,
        observed_at=data.observed_at,
        lon=data.lon,
        lat=data.lat,
        accuracy_m=data.accuracy_m,
        distance_m=dist,
        notes=data.notes.strip(),
        answers={k: v.model_dump() for k, v in data.answers.items()},
        verdicts={str(k): v.model_dump() for k, v in data.verdicts.items()},
        fault_count=sum(1 for a in data.answers.values() if a.answer == "fault"),
    )
    db.add(insp)
    db.flush()

    by_tag: dict[str, list[CheckedPhoto]] = {}
    for tag, photo in zip(data.photo_tags, checked, strict=True):
        by_tag.setdefault(tag, []).append(photo)
    for photo in by_tag.pop("", []):
        _store_photo(
            db,
            photo=photo,
            inspection_id=insp.id,
            finding_id=None,
            item_code="",
            event_id=None,
            actor=actor,
            now=now,
        )

    batches: dict[str, _Batch] = {}
    if data.kind == "initial":
        target.inspected_at = now
        for item in items:
            a = data.answers[item.code]
            if a.answer != "fault":
                for photo in by_tag.pop(item.code, []):
                    _store_photo(
                        db,
                        photo=photo,
                        inspection_id=insp.id,
                        finding_id=None,
                        item_code=item.code,
                        event_id=None,
                        actor=actor,
                        now=now,
                    )
                continue
            f = Finding(
                campaign_id=campaign.id,
                target_id=target.id,
                inspection_id=insp.id,
                item_code=item.code,
                item_text=item.text,
                section=item.section,
                severity=item.severity,
                note=a.note.strip(),
                state="open",
                proposed_method="letter" if a.method == "letter" else None,
                created_at=now,
                updated_at=now,
            )
            db.add(f)
            db.flush()
            ev = history.record(
                db,
                finding=f,
                action="create",
                from_state=None,
                to_state="open",
                actor=actor,
                now=now,
                note=a.note,
                inspection_id=insp.id,
                data={
                    "item_code": item.code,
                    "severity": item.severity,
                    "proposed_method": a.method,
                },
            )
            for photo in by_tag.pop(item.code, []):
                _store_photo(
                    db,
                    photo=photo,
                    inspection_id=insp.id,
                    finding_id=f.id,
                    item_code=item.code,
                    event_id=ev.id,
                    actor=actor,
                    now=now,
                )
            if a.method in ("on_site", "guidance"):
                spec = _RoundSpec(
                    method=a.method,
                    party=party,
                    contact=contact,
                    phone=phone,
                    limit=_limit(campaign, a.method),
                    guide_department_id=campaign.lead_department_id
                    if a.method == "guidance"
                    else None,
                    guidance=a.note.strip() if a.method == "guidance" else "",
                )
                _start_round(
                    db,
                    campaign=campaign,
                    finding=f,
                    spec=spec,
                    actor=actor,
                    now=now,
                    inspection_id=insp.id,
                    batch=batches.setdefault(a.method, _Batch()),
                )
    else:
        for fid, verdict in sorted(data.verdicts.items()):
            f = verdict_findings[fid]
            photos_here = by_tag.pop(f"f{fid}", [])
            ev = _verdict(
                db,
                campaign=campaign,
                finding=f,
                result=verdict.result,
                note=verdict.note,
                method=verdict.method,
                actor=actor,
                now=now,
                inspection_id=insp.id,
                batches=batches,
            )
            for photo in photos_here:
                _store_photo(
                    db,
                    photo=photo,
                    inspection_id=insp.id,
                    finding_id=f.id,
                    item_code=f.item_code,
                    event_id=ev.id,
                    actor=actor,
                    now=now,
                )
    for method, batch in batches.items():
        flows.rectifications_started(
            db,
            campaign=campaign,
            target=target,
            rounds=batch.rounds,
            item_texts=batch.texts,
            cause=f"i{insp.id}:{method}",
            now=now,
        )
    db.flush()
    return _inspection_read(db, insp, warnings=warnings)


def _verdict(
    db: Session,
    *,
    campaign: Campaign,
    finding: Finding,
    result: str,
    note: str,
    method: str | None,
    actor: Principal,
    now: datetime,
    inspection_id: int,
    batches: dict[str, _Batch],
) -> InspEvent:
    """Apply one re-inspection verdict; returns the history row the photos belong to."""
    rect = db.get(Rectification, finding.rectification_id) if finding.rectification_id else None
    if rect is None:  # pragma: no cover - rectifying findings always have a round
        raise AppError(409, "no_round", "No rectification round", "该问题没有整改记录")
    before = finding.state
    if result == "passed":
        rect.rectified_at = rect.rectified_at or now
        _close_round(db, rect=rect, outcome="passed", now=now)
        finding.state = "verified"
        finding.verified_at = now
        finding.on_time = bool(finding.first_due_at and rect.rectified_at <= finding.first_due_at)
        finding.updated_at = now
        return history.record(
            db,
            finding=finding,
            action="verify",
            from_state=before,
            to_state="verified",
            actor=actor,
            now=now,
            note=note,
            rectification_id=rect.id,
            inspection_id=inspection_id,
            data={"on_time": finding.on_time, "round": rect.round},
        )
    _close_round(db, rect=rect, outcome="failed", now=now)
    next_method = method or rect.method
    finding.state = "open"
    finding.proposed_method = "letter" if next_method == "letter" else None
    finding.updated_at = now
    ev = history.record(
        db,
        finding=finding,
        action="verify_failed",
        from_state=before,
        to_state="open",
        actor=actor,
        now=now,
        note=note,
        rectification_id=rect.id,
        inspection_id=inspection_id,
        data={"round": rect.round, "next_method": next_method},
    )
    if next_method != "letter":
        spec = _RoundSpec(
            method=next_method,
            party=rect.responsible_party,
            contact=rect.responsible_contact,
            phone=rect.responsible_phone,
            limit=_limit(campaign, next_method),
            guide_department_id=rect.guide_department_id
            or (campaign.lead_department_id if next_method == "guidance" else None),
            guidance=note.strip() if next_method == "guidance" else "",
        )
        _start_round(
            db,
            campaign=campaign,
            finding=finding,
            spec=spec,
            actor=actor,
            now=now,
            note="复查不合格，重新交办",
            inspection_id=inspection_id,
            batch=batches.setdefault(next_method, _Batch()),
        )
    return ev


# =====================================================================================
# findings: assignment, letters, reports, withdrawal
# =====================================================================================


def _finding_for_update(db: Session, finding_id: int) -> Finding:
    f = db.get(Finding, finding_id, with_for_update=_pg(db))
    if f is None:
        raise not_found("finding", "问题", finding_id)
    return f


def _state_conflict(f: Finding, action_zh: str) -> AppError:
    return AppError(
        409,
        "invalid_transition",
        f"Finding {f.id} is {f.state}",
        f"问题当前为“{STATE_LABELS[f.state][0]}”，不能{action_zh}",
    )


def _next_letter_seq(db: Session, *, prefix: str, year: int) -> int:
    """One atomic upsert: concurrent issuers on PostgreSQL queue on the counter row."""
    table = cast(Table, LetterCounter.__table__)
    ins = pg_insert(table) if _pg(db) else sqlite_insert(table)
    stmt = (
        ins.values(prefix=prefix, year=year, last=1)
        .on_conflict_do_update(index_elements=["prefix", "year"], set_={"last": table.c.last + 1})
        .returning(table.c.last)
    )
    return int(db.execute(stmt).scalar_one())


def letter_number(prefix: str, year: int, seq: int) -> str:
    """发文字号 as GB/T 9704 writes it: 光水排查函〔2024〕7号 (六角括号, no leading zeros)."""
    return f"{prefix}〔{year}〕{seq}号"


def assign(
    db: Session, *, target_id: int, data: RectifyAssign, actor: Principal, now: datetime
) -> list[FindingRead]:
    """Put open findings of one target under rectification by one method. On-site assignment
    and technical guidance may be given by whoever may inspect the target; a reminder letter
    is the office's (manage scope) and covers all the findings given, under one number."""
    require_aware(now, "now")
    target = db.get(Target, target_id, with_for_update=_pg(db))
    if target is None:
        raise not_found("target", "排查对象", target_id)
    campaign = get_campaign(db, campaign_id=target.campaign_id)
    if data.method == "letter":
        _require_manage(actor, campaign)
    elif not can_inspect(db, actor=actor, campaign=campaign, target=target):
        raise forbidden()
    _require_active(campaign)
    ids = list(dict.fromkeys(data.finding_ids))
    findings = [_finding_for_update(db, fid) for fid in ids]
    for f in findings:
        if f.target_id != target.id:
            raise _one(
                "wrong_target",
                "finding_ids",
                f"Finding {f.id} is not at this target",
                f"问题 {f.id} 不属于该对象",
            )
        if f.state != "open":
            raise _state_conflict(f, "交办整改")
    party = data.responsible_party.strip() or target.property_company or "物业服务企业"
    phone = normalise_phone(
        data.responsible_phone or target.contact_phone, field_name="responsible_phone"
    )
    contact = data.responsible_contact.strip() or target.contact_name
    guide_id: int | None = None
    if data.method == "guidance":
        if data.guide_department_code:
            dept = org_service.get_department(db, code=data.guide_department_code)
            if dept is None:
                raise _one(
                    "unknown_department",
                    "guide_department_code",
                    f"No department {data.guide_department_code}",
                    f"部门 {data.guide_department_code} 不存在",
                )
            guide_id = dept.id
        else:
            guide_id = campaign.lead_department_id
        if not data.guidance.strip():
            raise _one(
                "guidance_required",
                "guidance",
                "Say what guidance is given",
                "技术指导请填写指导意见",
            )
    limit = _limit(campaign, data.method, data.limit_workdays)
    letter: Letter | None = None
    if data.method == "letter":
        letter = _issue_letter(
            db,
            campaign=campaign,
            target=target,
            findings=findings,
            addressee=party,
            limit=limit,
            data=data,
            actor=actor,
            now=now,
        )
    batch = _Batch()
    for f in findings:
        spec = _RoundSpec(
            method=data.method,
            party=party,
            contact=contact,
            phone=phone,
            limit=limit,
            guide_department_id=guide_id,
            guidance=data.guidance.strip(),
            letter_id=letter.id if letter else None,
        )
        _start_round(
            db,
            campaign=campaign,
            finding=f,
            spec=spec,
            actor=actor,
            now=now,
            note=data.note,
            batch=batch,
        )
    cause = f"l{letter.id}" if letter else f"a{batch.rounds[0].id}"
    flows.rectifications_started(
        db,
        campaign=campaign,
        target=target,
        rounds=batch.rounds,
        item_texts=batch.texts,
        cause=cause,
        now=now,
    )
    if letter is not None:
        flows.letter_issued(
            db, campaign=campaign, target=target, letter_id=letter.id, number=letter.number, now=now
        )
    db.flush()
    return [finding_read(db, finding=f, actor=actor, now=now) for f in findings]


def _issue_letter(
    db: Session,
    *,
    campaign: Campaign,
    target: Target,
    findings: list[Finding],
    addressee: str,
    limit: float,
    data: RectifyAssign,
    actor: Principal,
    now: datetime,
) -> Letter:
    due = compute_due(now, amount=limit, unit="workdays", calendar=jobs.calendar(db))
    year = now.astimezone(jobs.calendar(db).tz).year
    seq = _next_letter_seq(db, prefix=campaign.letter_prefix, year=year)
    sub = geo_service.area_links(db).by_id[target.subdistrict_id][2]
    # A grid's community is served by its community workstation (社区工作站): 楼村社区第二网格
    # is still 楼村社区.
    grid = geo_service.area_links(db).by_id[target.grid_id][2].replace("第二网格", "")
    office = _dept_brief(db, campaign.lead_department_id)
    letter = Letter(
        campaign_id=campaign.id,
        target_id=target.id,
        number=letter_number(campaign.letter_prefix, year, seq),
        prefix=campaign.letter_prefix,
        year=year,
        seq=seq,
        addressee=addressee,
        title=f"关于督促{target.name}供排水设施问题整改的函",
        items=[
            {
                "finding_id": f.id,
                "item_text": f.item_text,
                "note": f.note,
                "severity": f.severity,
                "section": f.section,
            }
            for f in findings
        ],
        issued_at=now,
        due_at=due.due_at,
        issuer=ISSUER,
        contact_name=data.contact_name.strip() or (office.name_zh if office else ""),
        contact_phone=data.contact_phone.strip(),
        copy_to=data.copy_to.strip() or f"{sub}办事处，{grid}工作站",
        issued_by_user_id=actor.user_id,
    )
    db.add(letter)
    db.flush()
    return letter


def report_rectified(
    db: Session,
    *,
    finding_id: int,
    note: str,
    photos: Sequence[PhotoUpload] = (),
    actor: Principal,
    now: datetime,
) -> FindingRead:
    """The responsible party says the work is done (told to whoever may inspect the target):
    the round's clock stops here, the finding waits for re-inspection."""
    require_aware(now, "now")
    f = _finding_for_update(db, finding_id)
    target = db.get(Target, f.target_id)
    assert target is not None
    campaign = get_campaign(db, campaign_id=f.campaign_id)
    if not can_inspect(db, actor=actor, campaign=campaign, target=target):
        raise forbidden()
    if f.state != "rectifying":
        raise _state_conflict(f, "报告已整改")
    if not note.strip():
        raise _one("note_required", "note", "Say what was done", "请说明整改情况")
    checked = _check_photos(photos, [""] * len(photos), set())
    rect = db.get(Rectification, f.rectification_id) if f.rectification_id else None
    assert rect is not None
    rect.rectified_at = now
    rect.rectified_note = note.strip()
    jobs.cancel_round(db, rect_id=rect.id, now=now)
    f.state, f.updated_at = "rectified", now
    ev = history.record(
        db,
        finding=f,
        action="report_done",
        from_state="rectifying",
        to_state="rectified",
        actor=actor,
        now=now,
        note=note,
        rectification_id=rect.id,
        data={"before_due": now <= rect.due_at, "round": rect.round},
    )
    for photo in checked:
        _store_photo(
            db,
            photo=photo,
            inspection_id=None,
            finding_id=f.id,
            item_code=f.item_code,
            event_id=ev.id,
            actor=actor,
            now=now,
        )
    db.flush()
    return finding_read(db, finding=f, actor=actor, now=now)


def void_finding(
    db: Session, *, finding_id: int, note: str, actor: Principal, now: datetime
) -> FindingRead:
    """Withdraw a finding recorded in error. The office's decision, with a reason; figures
    leave withdrawn findings out."""
    require_aware(now, "now")
    f = _finding_for_update(db, finding_id)
    campaign = get_campaign(db, campaign_id=f.campaign_id)
    _require_manage(actor, campaign)
    if f.state in ("verified", "void"):
        raise _state_conflict(f, "撤销")
    if not note.strip():
        raise _one("note_required", "note", "Say why it is withdrawn", "请说明撤销原因")
    rect = db.get(Rectification, f.rectification_id) if f.rectification_id else None
    if rect is not None and rect.closed_at is None:
        _close_round(db, rect=rect, outcome="void", now=now)
    before = f.state
    f.state, f.updated_at, f.proposed_method = "void", now, None
    history.record(
        db,
        finding=f,
        action="void",
        from_state=before,
        to_state="void",
        actor=actor,
        now=now,
        note=note,
        rectification_id=rect.id if rect else None,
    )
    db.flush()
    return finding_read(db, finding=f, actor=actor, now=now)


# =====================================================================================
# reading
# =====================================================================================


def _rect_read(db: Session, rect: Rectification, now: datetime) -> RectificationRead:
    letter_number_ = None
    if rect.letter_id is not None:
        letter_number_ = db.scalar(select(Letter.number).where(Letter.id == rect.letter_id))
    return RectificationRead(
        id=rect.id,
        round=rect.round,
        method=rect.method,
        method_label=METHOD_LABELS[rect.method][0],
        responsible_party=rect.responsible_party,
        responsible_contact=rect.responsible_contact,
        responsible_phone_masked=mask_mobile(rect.responsible_phone)
        if rect.responsible_phone
        else "",
        guide_department=_dept_brief(db, rect.guide_department_id),
        guidance=rect.guidance,
        letter_id=rect.letter_id,
        letter_number=letter_number_,
        limit_workdays=rect.limit_workdays,
        started_at=rect.started_at,
        due_at=rect.due_at,
        rectified_at=rect.rectified_at,
        outcome=rect.outcome,
        closed_at=rect.closed_at,
        overdue=rect.closed_at is None and rect.rectified_at is None and rect.due_at < now,
        escalated_at=rect.escalated_at,
        warnings=list(rect.deadline_warnings or []),
    )


def finding_actions(db: Session, *, finding: Finding, actor: Principal) -> list[str]:
    target = db.get(Target, finding.target_id)
    campaign = db.get(Campaign, finding.campaign_id)
    if target is None or campaign is None or campaign.state != "active":
        return []
    out: list[str] = []
    inspect = can_inspect(db, actor=actor, campaign=campaign, target=target)
    manage = can_manage(actor, campaign)
    if finding.state == "open":
        if inspect:
            out += ["assign_on_site", "assign_guidance"]
        if manage:
            out.append("assign_letter")
    if finding.state == "rectifying" and inspect:
        out.append("report_done")
    if finding.state in ("rectifying", "rectified") and inspect:
        out.append("reinspect")
    if finding.state in ("open", "rectifying", "rectified") and manage:
        out.append("void")
    return out


def finding_read(
    db: Session, *, finding: Finding, actor: Principal | None, now: datetime
) -> FindingRead:
    target = db.get(Target, finding.target_id)
    rect = db.get(Rectification, finding.rectification_id) if finding.rectification_id else None
    return FindingRead(
        id=finding.id,
        target_id=finding.target_id,
        target_name=target.name if target else "",
        item_code=finding.item_code,
        item_text=finding.item_text,
        section=finding.section,
        severity=finding.severity,
        note=finding.note,
        state=finding.state,
        state_label=STATE_LABELS[finding.state][0],
        proposed_method=finding.proposed_method,
        rounds=finding.rounds,
        first_due_at=finding.first_due_at,
        verified_at=finding.verified_at,
        on_time=finding.on_time,
        created_at=finding.created_at,
        rectification=_rect_read(db, rect, now) if rect else None,
        actions=finding_actions(db, finding=finding, actor=actor) if actor else [],
    )


def get_finding(db: Session, *, finding_id: int, actor: Principal, now: datetime) -> FindingRead:
    f = db.get(Finding, finding_id)
    if f is None:
        raise not_found("finding", "问题", finding_id)
    get_target(db, target_id=f.target_id, actor=actor)
    return finding_read(db, finding=f, actor=actor, now=now)


def list_findings(
    db: Session,
    *,
    campaign_id: int,
    actor: Principal,
    now: datetime,
    state: str | None = None,
    target_id: int | None = None,
) -> list[FindingRead]:
    campaign = get_campaign(db, campaign_id=campaign_id)
    q = select(Finding).where(Finding.campaign_id == campaign.id).order_by(Finding.id)
    grids = visible_grid_ids(db, actor=actor, campaign=campaign)
    if grids is not None:
        q = q.join(Target, Target.id == Finding.target_id).where(Target.grid_id.in_(grids))
    if state:
        q = q.where(Finding.state == state)
    if target_id is not None:
        q = q.where(Finding.target_id == target_id)
    return [finding_read(db, finding=f, actor=actor, now=now) for f in db.scalars(q)]


def target_events(db: Session, *, target_id: int, lang: str = "zh_CN") -> list[EventRead]:
    rows = db.scalars(
        select(InspEvent).where(InspEvent.target_id == target_id).order_by(InspEvent.id)
    )
    return [
        EventRead(
            id=e.id,
            at=e.at,
            action=e.action,
            action_label=history.label(e.action, lang),
            from_state=e.from_state,
            to_state=e.to_state,
            actor_name=e.actor_name,
            actor_role=e.actor_role,
            note=e.note,
            data={**e.data, "finding_id": e.finding_id},
        )
        for e in rows
    ]


def target_inspections(db: Session, *, target_id: int) -> list[InspectionRead]:
    rows = db.scalars(
        select(Inspection).where(Inspection.target_id == target_id).order_by(Inspection.id)
    )
    return [_inspection_read(db, i) for i in rows]


def target_photos(db: Session, *, target_id: int) -> list[PhotoRead]:
    insp_ids = select(Inspection.id).where(Inspection.target_id == target_id)
    finding_ids = select(Finding.id).where(Finding.target_id == target_id)
    rows = db.scalars(
        select(Photo)
        .where((Photo.inspection_id.in_(insp_ids)) | (Photo.finding_id.in_(finding_ids)))
        .order_by(Photo.id)
    )
    return [
        PhotoRead(
            key=p.key,
            item_code=p.item_code,
            finding_id=p.finding_id,
            width=p.width,
            height=p.height,
            url=f"/api/v1/inspections/photos/{p.key}",
        )
        for p in rows
    ]


@dataclass(frozen=True)
class PhotoContent:
    data: bytes
    content_type: str


def photo_content(db: Session, *, key: str, variant: str, actor: Principal) -> PhotoContent:
    """Inspection photos are staff material: both copies need read scope on the target; the
    original (with the inspector's EXIF position) only for whoever may manage the campaign."""
    p = db.scalar(select(Photo).where(Photo.key == key))
    if p is None:
        raise not_found("photo", "照片", key)
    target_id: int | None = None
    if p.inspection_id is not None:
        target_id = db.scalar(select(Inspection.target_id).where(Inspection.id == p.inspection_id))
    elif p.finding_id is not None:
        target_id = db.scalar(select(Finding.target_id).where(Finding.id == p.finding_id))
    if target_id is None:  # pragma: no cover - photos always hang off one of the two
        raise not_found("photo", "照片", key)
    _, campaign = get_target(db, target_id=target_id, actor=actor)
    blob = db.get(PhotoBlob, p.id)
    if blob is None:  # pragma: no cover
        raise not_found("photo", "照片", key)
    if variant == "original":
        if not can_manage(actor, campaign):
            raise forbidden()
        return PhotoContent(blob.original, p.original_content_type)
    return PhotoContent(blob.public, p.content_type)


def letter_read(db: Session, letter: Letter) -> LetterRead:
    target = db.get(Target, letter.target_id)
    return LetterRead(
        id=letter.id,
        number=letter.number,
        title=letter.title,
        addressee=letter.addressee,
        target_id=letter.target_id,
        target_name=target.name if target else "",
        issued_at=letter.issued_at,
        due_at=letter.due_at,
        items=letter.items,
        issuer=letter.issuer,
        contact_name=letter.contact_name,
        contact_phone=letter.contact_phone,
        copy_to=letter.copy_to,
    )


def get_letter(db: Session, *, letter_id: int, actor: Principal) -> LetterRead:
    letter = db.get(Letter, letter_id)
    if letter is None:
        raise not_found("letter", "提醒函", letter_id)
    get_target(db, target_id=letter.target_id, actor=actor)
    return letter_read(db, letter)


def list_letters(
    db: Session, *, campaign_id: int, actor: Principal, target_id: int | None = None
) -> list[LetterRead]:
    campaign = get_campaign(db, campaign_id=campaign_id)
    q = select(Letter).where(Letter.campaign_id == campaign.id).order_by(Letter.id)
    if target_id is not None:
        q = q.where(Letter.target_id == target_id)
    grids = visible_grid_ids(db, actor=actor, campaign=campaign)
    if grids is not None:
        q = q.join(Target, Target.id == Letter.target_id).where(Target.grid_id.in_(grids))
    return [letter_read(db, letter) for letter in db.scalars(q)]


def ids_of(rows: Iterable[FindingRead]) -> list[int]:
    return [r.id for r in rows]
