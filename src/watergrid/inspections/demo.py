"""The demo campaign: "2019年以来新建住宅小区供排水设施专项排查" over 89 residential
communities, as the seed describes it, run through the same service functions a user's
requests use (so its history, deadlines and letters are what the real thing would write).

Everything here is synthetic and says so in docs/inspections.md: community names are made
from the grid's community name and common estate words, property companies and contacts are
drawn by a seeded generator, mobiles come from the one synthetic block 1390000xxxx, points
are drawn inside the synthetic grid outlines. The same seed gives the same data.

Most communities are already inspected, with findings in every stage (on site, letter,
guidance; verified, being rectified, overdue); a few in every grid member's grid are left to
inspect, so that the phone form has work to do."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from shapely.geometry import Point, shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.auth import service as auth_service
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.geo import service as geo_service
from watergrid.inspections import service
from watergrid.inspections.checklists import RESIDENTIAL_SUPPLY_DRAINAGE
from watergrid.inspections.jobs import calendar, reset_calendar_cache
from watergrid.inspections.models import (
    Campaign,
    ChecklistTemplate,
    Finding,
    Rectification,
    Target,
)
from watergrid.inspections.schemas import (
    AnswerIn,
    CampaignCreate,
    InspectionSubmit,
    Method,
    RectifyAssign,
    TargetIn,
    VerdictIn,
)
from watergrid.org import service as org_service
from watergrid.timers.calendar import seed_calendar

SEED = 2019
CAMPAIGN_CODE = "GMZX-01"
CAMPAIGN_NAME = "2019年以来新建住宅小区供排水设施专项排查"
COMMUNITIES = 89
LEAD_DEPARTMENT = "DRAINAGE"
# The demo account that records the demo's visits (a member of the lead department).
DEMO_INSPECTOR = "drainage"
# Grids whose demo grid members should find communities still to inspect.
KEEP_PENDING = {"W01": 2, "W13": 2}
# On-site assignment is the usual way; a letter or technical guidance less often.
DEMO_METHODS: tuple[Method, ...] = ("on_site", "on_site", "letter", "guidance")
OTHER_PENDING = 9

_ESTATE = (
    "花园",
    "华庭",
    "雅苑",
    "名苑",
    "府",
    "尚居",
    "公馆",
    "嘉园",
    "锦苑",
    "家园",
    "云筑",
    "水岸",
    "天悦",
    "御府",
    "新城",
)
_QUALITY = ("", "", "锦", "悦", "润", "嘉", "云", "汇", "泊", "熙")
_FIRM = "澜晖翰桐栖禾朗曜樾岚璟澄钰荟蔚霖"
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾"
_GIVEN = "伟芳敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚华建国文辉玲斌宇浩凯鹏俊婷晨"


@dataclass(frozen=True)
class DemoCommunity:
    code: str
    name: str
    grid_code: str
    lon: float
    lat: float
    build_year: int
    company: str
    contact: str
    phone: str


def _base_name(grid_name: str) -> str:
    return grid_name.replace("第二网格", "").replace("社区", "")


def build_communities(db: Session, seed: int = SEED) -> list[DemoCommunity]:
    """89 communities spread over the 37 grids: two in each, the rest drawn at random."""
    rng = random.Random(seed)
    grids = geo_service.get_all(db, kind="grid")
    picks = [g for g in grids for _ in range(2)]
    picks += rng.sample(grids, COMMUNITIES - len(picks))
    firms: list[str] = []
    while len(firms) < 12:
        name = f"深圳市{''.join(rng.sample(_FIRM, 2))}物业服务有限公司"
        if name not in firms:
            firms.append(name)
    used: set[str] = set()
    out: list[DemoCommunity] = []
    picks.sort(key=lambda g: g.code)
    for n, grid in enumerate(picks, start=1):
        poly = shape(grid.geometry).buffer(-0.0008)
        if poly.is_empty:
            poly = shape(grid.geometry)
        minx, miny, maxx, maxy = poly.bounds
        while True:
            lon, lat = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
            if poly.contains(Point(lon, lat)):
                break
        while True:
            name = _base_name(grid.name_zh) + rng.choice(_QUALITY) + rng.choice(_ESTATE)
            if name not in used:
                used.add(name)
                break
        contact = rng.choice(_SURNAMES) + "".join(
            rng.choice(_GIVEN) for _ in range(rng.choice((1, 2)))
        )
        out.append(
            DemoCommunity(
                code=f"R{n:03d}",
                name=name,
                grid_code=grid.code,
                lon=round(lon, 6),
                lat=round(lat, 6),
                build_year=rng.choice((2019, 2019, 2020, 2020, 2021, 2021, 2022, 2023)),
                company=rng.choice(firms),
                contact=contact,
                # 1390000xxxx: one synthetic block, the number echoing the community code.
                phone=f"1390000{n:04d}",
            )
        )
    return out


def _ensure_inspectors(db: Session, campaign: Campaign) -> None:
    """Each grid's first community party member (the demo grid member) inspects it."""
    for grid in geo_service.get_all(db, kind="grid"):
        group = org_service.party_group_for_grid(db, grid_id=grid.id)
        if group is None:
            continue
        members = [
            p
            for m, p in org_service.party_group_members(db, group_id=group.id)
            if m.tag == "community_party_member"
        ]
        if members:
            service.assign_inspector(
                db,
                campaign_id=campaign.id,
                grid_code=grid.code,
                person_code=members[0].code,
                actor=None,
            )


def _key(rng: random.Random) -> str:
    return "demo-" + "".join(rng.choice("0123456789abcdef") for _ in range(20))


def load_inspections_demo(db: Session, *, now: datetime | None = None) -> Campaign:
    """Load the demo campaign into the caller's transaction; a second run changes nothing.
    Needs the Guangming registry demo loaded first (grids, departments, demo users). Seeds
    the working calendar for the years it uses (idempotent) so deadlines skip holidays."""
    existing = service.get_campaign_by_code(db, code=CAMPAIGN_CODE)
    if existing is not None:
        return existing
    now = now or utcnow()
    seed_calendar(db, years=range(now.year - 1, now.year + 2))
    reset_calendar_cache()
    if (
        db.scalar(
            select(ChecklistTemplate.id).where(
                ChecklistTemplate.code == RESIDENTIAL_SUPPLY_DRAINAGE.code
            )
        )
        is None
    ):
        service.create_template(db, data=RESIDENTIAL_SUPPLY_DRAINAGE, actor=None, now=now)
    start = now - timedelta(days=56)
    today = now.date()
    campaign = service.create_campaign(
        db,
        data=CampaignCreate(
            code=CAMPAIGN_CODE,
            name=CAMPAIGN_NAME,
            scope="辖区内2019年以来新建（竣工交付）的住宅小区，逐小区核查供水、排水设施，"
            "发现问题通过现场交办、发函提醒、技术指导等方式督促整改，目标核查覆盖率100%。",
            period_start=start.date(),
            period_end=max(today + timedelta(days=30), date(today.year, today.month, 28)),
            lead_department_code=LEAD_DEPARTMENT,
            template_code=RESIDENTIAL_SUPPLY_DRAINAGE.code,
        ),
        actor=None,
        now=start,
    )
    communities = build_communities(db)
    for c in communities:
        service.add_target(
            db,
            campaign_id=campaign.id,
            actor=None,
            source="demo",
            now=start,
            data=TargetIn(
                code=c.code,
                name=c.name,
                address=f"光明区{c.name}",
                lon=c.lon,
                lat=c.lat,
                build_year=c.build_year,
                property_company=c.company,
                contact_name=c.contact,
                contact_phone=c.phone,
            ),
        )
    _ensure_inspectors(db, campaign)
    _simulate(db, campaign=campaign, communities=communities, start=start, now=now)
    db.flush()
    return campaign


def _simulate(
    db: Session,
    *,
    campaign: Campaign,
    communities: list[DemoCommunity],
    start: datetime,
    now: datetime,
) -> None:
    user = auth_service.get_by_username(db, username=DEMO_INSPECTOR)
    if user is None:
        return  # the registry demo without its users: targets only
    actor = auth_service.load_principal(db, user=user)
    rng = random.Random(SEED + 1)
    items = service.checklist(campaign)
    pending: set[str] = set()
    for grid_code, n in KEEP_PENDING.items():
        pending |= set(sorted(c.code for c in communities if c.grid_code == grid_code)[:n])
    others = [c.code for c in communities if c.code not in pending]
    pending |= set(rng.sample(others, OTHER_PENDING))
    targets = {
        t.code: t for t in db.scalars(select(Target).where(Target.campaign_id == campaign.id))
    }
    todo = [c for c in communities if c.code not in pending]
    cal = calendar(db)
    span = (now - timedelta(days=4) - (start + timedelta(days=2))).total_seconds()
    for i, c in enumerate(todo):
        t = targets[c.code]
        at = start + timedelta(days=2, seconds=span * i / max(len(todo), 1))
        at = at.replace(hour=2 + (i % 6), minute=(i * 7) % 60)  # 10:00–15:00 local
        while not cal.is_workday(cal.local_date(at)):
            at += timedelta(days=1)  # nobody inspects on a public holiday
        if at > now - timedelta(hours=2):
            continue
        faults = rng.sample(items, rng.choice((0, 0, 0, 1, 1, 2, 3)))
        answers = {}
        for item in items:
            if item in faults:
                method: Method = rng.choice(DEMO_METHODS)
                answers[item.code] = AnswerIn(
                    answer="fault", note=_NOTES.get(item.code, "现场发现问题"), method=method
                )
            else:
                answers[item.code] = AnswerIn(
                    answer="na" if item.code == "S06" and rng.random() < 0.1 else "ok"
                )
        service.submit_inspection(
            db,
            target_id=t.id,
            actor=actor,
            now=at,
            data=InspectionSubmit(
                client_key=_key(rng),
                lon=c.lon + rng.uniform(-2e-4, 2e-4),
                lat=c.lat + rng.uniform(-2e-4, 2e-4),
                accuracy_m=12.0,
                notes="现场核查，物业公司负责人陪同。",
                answers=answers,
            ),
        )
        _progress(db, campaign=campaign, target=t, actor=actor, at=at, now=now, rng=rng)


def _progress(
    db: Session,
    *,
    campaign: Campaign,
    target: Target,
    actor: Principal,
    at: datetime,
    now: datetime,
    rng: random.Random,
) -> None:
    """Move the target's findings on as a real campaign would: letters issued a day or two
    later, most faults fixed and verified, some still running, a few late."""
    findings = list(db.scalars(select(Finding).where(Finding.target_id == target.id)))
    letters = [f for f in findings if f.state == "open" and f.proposed_method == "letter"]
    if letters:
        when = at + timedelta(days=rng.choice((1, 2)))
        if when < now:
            service.assign(
                db,
                target_id=target.id,
                actor=actor,
                now=when,
                data=RectifyAssign(
                    finding_ids=[f.id for f in letters],
                    method="letter",
                    contact_name="排水管理科",
                    contact_phone="0755-00000003",
                    note="按排查结果发函督促整改",
                ),
            )
    for f in findings:
        db.refresh(f)
        if f.state != "rectifying" or f.rectification_id is None:
            continue
        rect = db.get(Rectification, f.rectification_id)
        assert rect is not None
        # Most parties fix in time; rounds already past due are mostly done by now.
        if rng.random() > (0.92 if rect.due_at < now else 0.45):
            continue
        share = rng.uniform(0.3, 0.95) if rng.random() > 0.1 else rng.uniform(1.05, 1.4)
        done_at = rect.started_at + (rect.due_at - rect.started_at) * share
        check_at = done_at + timedelta(days=rng.choice((1, 2)))
        if check_at >= now:
            continue
        service.report_rectified(
            db, finding_id=f.id, note="已按要求完成整改，请复查。", actor=actor, now=done_at
        )
        service.submit_inspection(
            db,
            target_id=target.id,
            actor=actor,
            now=check_at,
            data=InspectionSubmit(
                client_key=_key(rng),
                kind="reinspection",
                lon=target.lon,
                lat=target.lat,
                accuracy_m=10.0,
                verdicts={f.id: VerdictIn(result="passed", note="复查合格")},
            ),
        )


_NOTES = {
    "S01": "2号楼屋顶水箱人孔未上锁，通气管防虫网破损",
    "S02": "物业未能提供近半年水箱清洗消毒记录",
    "S03": "地下二层生活泵房地面积水约3厘米",
    "S04": "3栋管井内阀门渗漏，管道无标识",
    "S05": "小区东门水表井积水，井盖松动",
    "S06": "二次供水设施尚未移交，未签委托管理协议",
    "D01": "5栋北侧雨水检查井内可见污水流入",
    "D02": "部分阳台洗衣废水接入雨水立管",
    "D03": "化粪池满溢，周边有异味",
    "D04": "中心花园2处雨水口被落叶堵塞，1处井盖破损",
    "D05": "小区污水接驳点未见接驳核准手续",
    "D06": "地下车库出入口未设挡水板，集水井水泵无法启动",
    "D07": "小区南侧排水管淤堵，一年内无疏通记录",
}
