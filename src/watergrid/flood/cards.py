"""The residents' flood service card (防汛便民服务卡) of a community: the hotline, the
community contact, the nearest shelters, what to do under each signal, and a QR code to the
public page of the card (the live signal, the same advice, and where to report ponding).

What a card says is the registry's and the flood assets' data plus a small per-community
configuration (flood_service_card); without one, sensible defaults apply."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from shapely.geometry import shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.errors import AppError, FieldError, invalid
from watergrid.flood import assets as asset_service
from watergrid.flood.plans import distance_m
from watergrid.flood.response_schemas import LEVEL_ZH, ServiceCardUpdate, ShelterLine
from watergrid.flood.response_settings import get_response_settings
from watergrid.flood.warning_models import RainstormWarning, ServiceCardConfig
from watergrid.geo import service as geo_service
from watergrid.geo.models import Area
from watergrid.org import service as org_service
from watergrid.org.models import Department, Person
from watergrid.settings import get_settings

SHELTERS_ON_CARD = 2
# What residents do under each signal: short lines that fit a printed card.
ADVICE: dict[str, list[str]] = {
    "yellow": [
        "关注预警，少外出，远离河道、涵洞和低洼路段",
        "地下室、低洼商铺备好挡水板、沙袋",
    ],
    "orange": [
        "留在室内，停止户外活动",
        "地下车库、低洼处的人员和车辆及时撤离",
    ],
    "red": [
        "不要外出，不涉水，不进入地下空间",
        "听从社区指挥，立即转移到避险安置点",
    ],
}


@dataclass
class CardView:
    grid: Area
    subdistrict: Area
    hotline: str
    office_phone: str
    contact_name: str
    contact_title: str
    contact_phone: str
    shelters: list[ShelterLine]
    advice: list[tuple[str, str, list[str]]]
    note: str
    public_url: str
    report_url: str
    synthetic: bool
    current_level: str | None = None
    current_number: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _config(db: Session, grid_id: int) -> ServiceCardConfig | None:
    return db.scalar(select(ServiceCardConfig).where(ServiceCardConfig.grid_id == grid_id))


def default_contact(db: Session, grid: Area) -> Person | None:
    """The community's water grid member (社区水务网格员) of its party group, else the
    group's first community member, else its leader."""
    group = org_service.party_group_for_grid(db, grid_id=grid.id)
    if group is None:
        return None
    members = org_service.party_group_members(db, group_id=group.id)
    community = [p for m, p in members if m.tag == "community_party_member" and p.active]
    for p in community:
        if "网格员" in p.title:
            return p
    if community:
        return community[0]
    return db.get(Person, group.leader_id) if group.leader_id else None


def office_phone(db: Session, subdistrict: Area) -> str:
    """The subdistrict office's line (a public number, never a personal mobile)."""
    for d in db.scalars(select(Department).where(Department.kind == "subdistrict_office")):
        if d.name_zh.startswith(subdistrict.name_zh) and d.phone:
            return d.phone
    for d in org_service.get_departments(db):
        if d.kind == "bureau" and d.phone:
            return d.phone
    return ""


def nearest_shelters(db: Session, *, lon: float, lat: float, n: int) -> list[ShelterLine]:
    shelters = asset_service.get_all(db, kind="shelter", active_only=True)
    ranked = sorted(shelters, key=lambda a: distance_m(lon, lat, a.lon, a.lat))[:n]
    return [
        ShelterLine(
            code=a.code,
            name_zh=a.name_zh,
            capacity=a.capacity,
            distance_m=round(distance_m(lon, lat, a.lon, a.lat)),
        )
        for a in ranked
    ]


def card(db: Session, *, grid: Area, public: bool) -> CardView:
    """The card of a community grid. `public` masks the contact's mobile (the public page);
    the printed card carries it, as the contact is there to be called."""
    if grid.kind != "grid":
        raise AppError(404, "not_found", f"{grid.code} is not a community grid", "未找到该社区")
    sub = db.get(Area, grid.parent_id) if grid.parent_id else None
    if sub is None:
        raise AppError(404, "not_found", "grid without subdistrict", "社区缺少所属街道")
    cfg = _config(db, grid.id)
    s = get_response_settings()
    person = db.get(Person, cfg.contact_person_id) if cfg and cfg.contact_person_id else None
    person = person or default_contact(db, grid)
    pt = shape(grid.geometry).representative_point()
    shelters: list[ShelterLine]
    if cfg and cfg.shelter_codes:
        rows = {a.code: a for a in asset_service.get_all(db, kind="shelter")}
        shelters = [
            ShelterLine(
                code=c,
                name_zh=rows[c].name_zh,
                capacity=rows[c].capacity,
                distance_m=round(distance_m(pt.x, pt.y, rows[c].lon, rows[c].lat)),
            )
            for c in cfg.shelter_codes
            if c in rows
        ]
    else:
        shelters = nearest_shelters(db, lon=pt.x, lat=pt.y, n=SHELTERS_ON_CARD)
    warning = db.scalar(
        select(RainstormWarning).where(
            RainstormWarning.subdistrict_id == sub.id,
            RainstormWarning.state == "active",
            RainstormWarning.exercise.is_(False),
        )
    )
    base = get_settings().public_base_url.rstrip("/")
    mobile = person.mobile if person else ""
    return CardView(
        grid=grid,
        subdistrict=sub,
        hotline=(cfg.hotline if cfg and cfg.hotline else s.hotline),
        office_phone=office_phone(db, sub),
        contact_name=person.name if person else "",
        contact_title=person.title if person else "",
        contact_phone=org_service.mask_mobile(mobile) if public else mobile,
        shelters=shelters,
        advice=[(lvl, LEVEL_ZH[lvl], ADVICE[lvl]) for lvl in ("yellow", "orange", "red")],
        note=cfg.note_zh if cfg else "",
        public_url=f"{base}/f/{grid.code}",
        report_url=f"/report?category=disaster.waterlogging&grid={grid.code}",
        synthetic=grid.synthetic,
        current_level=warning.level if warning else None,
        current_number=warning.number if warning else None,
    )


def update(
    db: Session, *, grid: Area, data: ServiceCardUpdate, actor_name: str, now: dt.datetime
) -> ServiceCardConfig:
    cfg = _config(db, grid.id)
    if cfg is None:
        cfg = ServiceCardConfig(grid_id=grid.id, shelter_codes=[])
        db.add(cfg)
    changes = data.model_dump(exclude_unset=True)
    if "contact_person_code" in changes:
        code = changes.pop("contact_person_code")
        if code:
            person = org_service.get_person(db, code=code)
            if person is None:
                raise invalid(
                    [FieldError("contact_person_code", f"no person {code}", f"未找到人员：{code}")]
                )
            cfg.contact_person_id = person.id
        else:
            cfg.contact_person_id = None
    if "shelter_codes" in changes:
        codes = list(dict.fromkeys(changes.pop("shelter_codes") or []))
        known = {a.code for a in asset_service.get_all(db, kind="shelter")}
        unknown = [c for c in codes if c not in known]
        if unknown:
            raise invalid(
                [
                    FieldError(
                        "shelter_codes",
                        f"no shelters {unknown}",
                        f"未找到避险安置点：{'、'.join(unknown)}",
                    )
                ]
            )
        cfg.shelter_codes = codes
    for k, v in changes.items():
        setattr(cfg, k, v or "")
    cfg.updated_at, cfg.updated_by = now, actor_name
    db.flush()
    return cfg


def grid_or_404(db: Session, code: str) -> Area:
    area = geo_service.get(db, code=code.upper())
    if area is None or area.kind != "grid":
        raise AppError(404, "not_found", f"no community grid {code}", f"未找到社区：{code}")
    return area
