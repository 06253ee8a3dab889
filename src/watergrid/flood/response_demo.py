"""Demo data of the flood response: the warning criteria, a one-page plan for every
reservoir, river, waterlogging point, subdistrict and community grid, the residents'
service cards, and a contact person for each pump truck and team.

Everything here is synthetic and built from the registry and flood demos (people, phone
numbers, the assignment of people to roles, the action checklists and the timings), except
the criteria, which come from the public criteria table. Needs the registry demo and the
flood demo loaded first. Running it again adds nothing. It does not commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.db import utcnow
from watergrid.demo.org import BUREAU, WATER_COMPANY, subdistrict_office_code
from watergrid.flood import alarms as alarm_service
from watergrid.flood import assets as asset_service
from watergrid.flood import calls as call_service
from watergrid.flood import dispatch, kinds, wiring
from watergrid.flood import plans as plan_service
from watergrid.flood import warnings as warning_service
from watergrid.flood.cards import default_contact, nearest_shelters
from watergrid.flood.models import FloodAsset
from watergrid.flood.response_schemas import (
    CalledRole,
    ContactLine,
    LevelBlock,
    PlanBody,
    PlanCreate,
    PlanKind,
    RoleHolder,
    TransferRoute,
)
from watergrid.flood.schemas import AssetUpdate
from watergrid.flood.warning_models import CallRound, CrewTask, ServiceCardConfig
from watergrid.geo import service as geo_service
from watergrid.geo.models import Area
from watergrid.org import service as org_service
from watergrid.org.models import Person

FLOOD_OFFICE = "FLOOD"
# Minutes to answer, and how often to repeat meanwhile, per level: the higher the level,
# the less time anyone has.
TIMING = {"blue": (30, 10), "yellow": (15, 5), "orange": (10, 5), "red": (5, 2)}
CALLED = {
    "blue": ["patrol", "technical"],
    "yellow": ["patrol", "technical", "administrative"],
    "orange": ["administrative", "technical", "patrol", "transfer"],
    "red": ["administrative", "technical", "patrol", "transfer"],
}
AREA_ACTIONS = {
    "yellow": [
        "网格员巡查低洼点、地下空间和危险边坡",
        "通知地下室、低洼商铺备好挡水板和沙袋",
        "转移责任人核对危险区域人员名单",
    ],
    "orange": [
        "停止户外作业和集体活动，工地停工",
        "组织地下空间、低洼处人员和车辆撤离",
        "开放避险安置点，安排专人接收登记",
        "抢险队伍和物资到位待命",
    ],
    "red": [
        "按名单转移危险区域群众，逐户确认到位",
        "封闭危险路段、下穿通道和地下空间入口",
        "安置点保障饮水、食品和照明",
        "每30分钟向上级报告转移和险情",
    ],
}
AREA_TRIGGERS = {
    "yellow": "本街道发布暴雨黄色预警信号",
    "orange": "本街道发布暴雨橙色预警信号",
    "red": "本街道发布暴雨红色预警信号",
}
RESERVOIR_ACTIONS = {
    "blue": ["加密巡查坝体、溢洪道和放水设施，每2小时一次", "核对库容和预报来水，准备预泄方案"],
    "yellow": [
        "按调度指令预泄，库水位控制在汛限水位以下",
        "巡查人员驻守坝区，每小时报告水位",
        "检查下游行洪通道和闸门启闭",
    ],
    "orange": [
        "按调度指令加大泄量，提前通知下游",
        "抢险队伍、物资到坝区待命",
        "通知下游社区做好转移准备",
    ],
    "red": [
        "按泄洪预案泄洪，下游河道禁止人员进入",
        "组织下游危险区群众立即转移",
        "坝体险情每30分钟报告区三防办",
    ],
}
RIVER_ACTIONS = {
    "blue": ["巡查堤岸、排水口和拦河设施，清理阻水物", "检查水位站数据和视频是否正常"],
    "yellow": [
        "巡查人员沿河值守，每小时报告水位",
        "关闭河道亲水平台和绿道入口",
        "泵站做好开机准备",
    ],
    "orange": [
        "封闭沿河绿道和亲水设施，劝离人员",
        "泵站全力抽排，打开分洪设施",
        "通知沿河低洼社区做好转移准备",
    ],
    "red": [
        "组织沿河危险区群众立即转移",
        "抢险队伍上堤巡查，发现险情立即处置",
        "险情每30分钟报告区三防办",
    ],
}
POINT_ACTIONS = {
    "blue": ["巡查人员到点查看，清理雨水口和截水沟杂物", "检查积水监测仪和警示设施"],
    "yellow": ["设置警示标志，安排专人值守", "移动泵车前置待命"],
    "orange": [
        "封闭积水路段，疏导交通",
        "启动泵车抽排，每30分钟报告水深",
        "提醒周边商铺、住户做好挡水",
    ],
    "red": ["封闭道路和下穿通道，严禁车辆行人通过", "转移周边低洼处人员", "持续抽排直至积水退去"],
}


def _today(now: dt.datetime) -> dt.date:
    return now.astimezone(ZoneInfo("Asia/Shanghai")).date()


def _people(db: Session, department: str) -> list[Person]:
    dept = org_service.get_department(db, code=department)
    if dept is None:
        return []
    return list(
        db.scalars(
            select(Person)
            .where(Person.department_id == dept.id, Person.active.is_(True))
            .order_by(Person.code)
        )
    )


def _by_title(people: Sequence[Person], word: str) -> list[Person]:
    return [p for p in people if word in p.title]


class _Org:
    """The demo people the plans draw on, by what they do."""

    def __init__(self, db: Session) -> None:
        self.db = db
        bureau = _people(db, BUREAU)
        self.deputies = [p for p in bureau if "副局长" in p.title or "总工" in p.title] or bureau
        flood = _people(db, FLOOD_OFFICE)
        self.flood_head = (_by_title(flood, "主任") or flood)[:1]
        self.flood_deputy = (_by_title(flood, "副主任") or flood)[:1]
        self.duty = (_by_title(flood, "值班") or flood)[:1]
        company = _people(db, WATER_COMPANY)
        self.co_manager = _by_title(company, "排水运营部经理")
        self.co_foremen = _by_title(company, "班长")
        self.co_patrol = _by_title(company, "巡查员")
        self.co_tech = _by_title(company, "技术员")
        self.co_station = _by_title(company, "泵站")
        self.company = company

    def office(self, sub_code: str) -> tuple[list[Person], list[Person]]:
        staff = _people(self.db, subdistrict_office_code(sub_code))
        heads = _by_title(staff, "主任") or staff[:1]
        officers = [p for p in staff if p not in heads]
        return heads, officers or heads

    def community(self, grid: Area) -> list[Person]:
        group = org_service.party_group_for_grid(self.db, grid_id=grid.id)
        if group is None:
            return []
        return [
            p
            for m, p in org_service.party_group_members(self.db, group_id=group.id)
            if m.tag == "community_party_member" and p.active
        ]

    def escalation(self, *heads: Sequence[Person]) -> list[Person]:
        out: list[Person] = []
        for group in heads:
            for p in group:
                if p not in out:
                    out.append(p)
        return out[:3]


def _pick(items: Sequence[Person], i: int) -> Person:
    return items[i % len(items)]


def _roles(**by_role: Sequence[Person]) -> list[RoleHolder]:
    out = []
    for role, people in by_role.items():
        seen: set[str] = set()
        for p in people[:3]:
            if p.code in seen:
                continue
            seen.add(p.code)
            out.append(RoleHolder.model_validate({"role": role, "person_code": p.code}))
    return out


def _levels(
    levels: Sequence[str], triggers: dict[str, str], actions: dict[str, list[str]]
) -> dict[Any, LevelBlock]:
    return {
        lvl: LevelBlock(
            trigger_zh=triggers[lvl][:60],
            actions_zh=actions[lvl],
            call_roles=cast(list[CalledRole], CALLED[lvl]),
            answer_within_min=TIMING[lvl][0],
            repeat_every_min=TIMING[lvl][1],
        )
        for lvl in levels
    }


def _contacts(db: Session, sub_code: str | None) -> list[ContactLine]:
    lines = []
    flood = org_service.get_department(db, code=FLOOD_OFFICE)
    if flood and flood.phone:
        lines.append(ContactLine(label="区三防办值班", phone=flood.phone))
    if sub_code:
        office = org_service.get_department(db, code=subdistrict_office_code(sub_code))
        if office and office.phone:
            lines.append(ContactLine(label="街道城建办", phone=office.phone))
    company = org_service.get_department(db, code=WATER_COMPANY)
    if company and company.phone:
        lines.append(ContactLine(label="水务公司抢险", phone=company.phone))
    lines.append(ContactLine(label="报警/消防/急救", phone="110/119/120"))
    return lines


def _shelters_and_routes(
    db: Session, *, lon: float, lat: float, who: str, n: int = 2
) -> tuple[list[str], list[TransferRoute]]:
    near = nearest_shelters(db, lon=lon, lat=lat, n=n)
    routes = [
        TransferRoute(
            from_zh=who[:24],
            via_zh=f"沿就近主干道步行约{(s.distance_m or 0) / 1000:.1f}公里，随转移责任人行进"[:48],
            shelter_code=s.code,
        )
        for s in near[:1]
    ]
    return [s.code for s in near], routes


def _create(db: Session, data: PlanCreate, now: dt.datetime) -> bool:
    if plan_service.get(db, code=data.code) is not None:
        return False
    plan_service.create(db, data=data, actor_user_id=None, actor_name="演示数据", now=now)
    return True


def _threshold_text(db: Session, asset: FloodAsset, level: int, unit: str, what: str) -> str | None:
    for t in asset_service.thresholds(db, asset_id=asset.id):
        if t.level == level:
            return f"{what}达{t.raise_at:g}{unit}"
    return None


def _asset_plans(db: Session, org: _Org, now: dt.datetime, review: dt.date) -> int:
    made = 0
    subs = {a.id: a.code for a in geo_service.get_all(db, kind="subdistrict")}
    grids = {a.id: a for a in geo_service.get_all(db, kind="grid")}
    names = {1: "blue", 2: "yellow", 3: "orange", 4: "red"}
    signal = {"yellow": "黄色", "orange": "橙色", "red": "红色"}
    for i, a in enumerate(asset_service.get_all(db, active_only=True)):
        if a.kind not in ("reservoir", "river", "waterlogging_point"):
            continue
        sub_code = subs.get(a.subdistrict_id or -1)
        heads, officers = org.office(sub_code) if sub_code else ([], [])
        grid = grids.get(a.grid_id or -1)
        community = org.community(grid) if grid else []
        if a.kind == "reservoir":
            unit, what, actions = "米", "库水位", RESERVOIR_ACTIONS
            roles = _roles(
                administrative=[_pick(org.deputies, 0)],
                technical=org.co_station[:1] + org.flood_deputy,
                patrol=org.co_patrol[:2],
                transfer=heads[:1] + officers[:1],
                escalation=org.escalation(org.flood_head, org.duty),
            )
            code = f"YA-RES-{a.code}"
        elif a.kind == "river":
            unit, what, actions = "米", "水位", RIVER_ACTIONS
            roles = _roles(
                administrative=[_pick(org.deputies, i)],
                technical=[_pick(org.co_tech, i)],
                patrol=[_pick(org.co_patrol, i)],
                transfer=officers[:1] or heads[:1],
                escalation=org.escalation(org.flood_head, org.duty),
            )
            code = f"YA-RIV-{a.code}"
        else:
            unit, what, actions = "厘米", "积水深度", POINT_ACTIONS
            patrol = (
                [p for p in community if "网格员" in p.title][:1] or community[:1] or officers[:1]
            )
            transfer = [p for p in community if p not in patrol][:1] or officers[:1]
            roles = _roles(
                administrative=heads[:1] or org.flood_deputy,
                technical=[_pick(org.co_foremen, i)],
                patrol=patrol,
                transfer=transfer,
                escalation=org.escalation(org.flood_deputy, org.duty),
            )
            code = f"YA-PT-{a.code}"
        triggers: dict[str, str] = {}
        for lvl_no, lvl in names.items():
            text = _threshold_text(db, a, lvl_no, unit, what)
            if a.kind == "river" and text is None:
                # A main stem without levels of its own answers to its sections' gauges.
                text = f"任一河段水位达{kinds.LEVELS[lvl_no][1]}告警线"
            if lvl in signal:
                text = (
                    f"{text}，或所在街道发布暴雨{signal[lvl]}预警"
                    if text
                    else f"所在街道发布暴雨{signal[lvl]}预警"
                )
            if text:
                triggers[lvl] = text
        levels = [lvl for lvl in ("blue", "yellow", "orange", "red") if lvl in triggers]
        shelters, routes = _shelters_and_routes(
            db,
            lon=a.lon,
            lat=a.lat,
            who="下游及周边低洼处群众"
            if a.kind != "waterlogging_point"
            else "周边低洼处住户、商铺",
        )
        facts = {
            k: v
            for k, v in (a.attrs or {}).items()
            if k in ("storage_1e8_m3", "water_area_km2", "length_in_district_km")
        }
        summary = a.name_zh
        if a.kind == "reservoir":
            summary += (
                (
                    f"：汛限水位{a.flood_limit_level_m:g}米，正常蓄水位{a.normal_level_m:g}米，"
                    f"校核洪水位{a.check_level_m:g}米"
                )
                if a.flood_limit_level_m
                else ""
            )
            if "storage_1e8_m3" in facts:
                summary += f"，总库容{facts['storage_1e8_m3']:g}亿立方米"
        elif a.kind == "river" and "length_in_district_km" in facts:
            summary += f"：区内干流长{facts['length_in_district_km']:g}公里"
        coverage = None
        if a.code == "MZH":
            # The main stem runs from 玉塘街道 to 公明街道 (data README); its sections
            # lie in 马田 too, so a warning in any of them calls its people.
            coverage = [c for c in ("440311005", "440311006", "440311002") if c in subs.values()]
        made += _create(
            db,
            PlanCreate(
                code=code,
                kind=cast(PlanKind, a.kind),
                target_code=a.code,
                name_zh=f"{a.name_zh}防汛一页纸预案"[:60],
                coverage=coverage,
                body=PlanBody(
                    summary_zh=summary[:120],
                    levels=_levels(levels, triggers, actions),
                    contacts=_contacts(db, sub_code),
                    routes=routes,
                    shelters=shelters,
                ),
                roles=roles,
                review_by=review,
                change_note="演示数据初始版本",
            ),
            now,
        )
    return made


def _area_plans(db: Session, org: _Org, now: dt.datetime, review: dt.date) -> int:
    made = 0
    grids = geo_service.get_all(db, kind="grid")
    for k, sub in enumerate(geo_service.get_all(db, kind="subdistrict")):
        heads, officers = org.office(sub.code)
        mine = [g for g in grids if g.parent_id == sub.id]
        community = [p for g in mine for p in org.community(g)]
        committee = [p for p in community if "党委" in p.title]
        pt = plan_service.plan_anchor_of_geometry(sub.geometry)
        near = nearest_shelters(db, lon=pt[0], lat=pt[1], n=3)
        shelters = [s.code for s in near]
        routes = [
            TransferRoute(
                from_zh=who,
                via_zh=f"沿就近主干道步行约{(s.distance_m or 0) / 1000:.1f}公里，由转移责任人带领",
                shelter_code=s.code,
            )
            for who, s in zip(
                ("城中村低洼片区群众", "地下空间、低洼商铺人员", "沿河、边坡周边住户"),
                near,
                strict=False,
            )
        ]
        made += _create(
            db,
            PlanCreate(
                code=f"YA-SUB-{sub.code}",
                kind="subdistrict",
                target_code=sub.code,
                name_zh=f"{sub.name_zh}防汛一页纸预案",
                body=PlanBody(
                    summary_zh=f"{sub.name_zh}：辖{len(mine)}个社区水务网格；暴雨预警按街道发布，本预案随之启动",
                    levels=_levels(("yellow", "orange", "red"), AREA_TRIGGERS, AREA_ACTIONS),
                    contacts=_contacts(db, sub.code)
                    + [ContactLine(label="城管应急", phone="0755-12319")],
                    routes=routes,
                    shelters=shelters,
                ),
                roles=_roles(
                    administrative=heads[:1] + [_pick(org.deputies, k)],
                    technical=officers[:1] + org.co_manager[:1] + [_pick(org.co_tech, k)],
                    patrol=officers[1:2] + [_pick(org.co_patrol, k)] + [_pick(org.co_foremen, k)],
                    transfer=(committee or community or officers)[:3],
                    escalation=org.escalation(org.flood_head, org.duty, org.flood_deputy),
                ),
                review_by=review,
                change_note="演示数据初始版本",
            ),
            now,
        )
        for g in mine:
            people = org.community(g)
            gridman = [p for p in people if "网格员" in p.title][:1] or people[:1]
            admin = [p for p in people if "党委" in p.title][:1] or gridman
            others = [p for p in people if p not in gridman and p not in admin]
            gpt = plan_service.plan_anchor_of_geometry(g.geometry)
            g_shelters, g_routes = _shelters_and_routes(
                db, lon=gpt[0], lat=gpt[1], who="低洼处、地下空间住户"
            )
            made += _create(
                db,
                PlanCreate(
                    code=f"YA-GRID-{g.code}",
                    kind="grid",
                    target_code=g.code,
                    name_zh=f"{g.name_zh}防汛一页纸预案",
                    body=PlanBody(
                        summary_zh=f"{sub.name_zh}{g.name_zh}（{g.code}）社区水务网格",
                        levels=_levels(("yellow", "orange", "red"), AREA_TRIGGERS, AREA_ACTIONS),
                        contacts=_contacts(db, sub.code),
                        routes=g_routes,
                        shelters=g_shelters,
                    ),
                    roles=_roles(
                        administrative=admin,
                        technical=officers[:1] or heads[:1],
                        patrol=gridman,
                        transfer=others[:2] or gridman,
                        escalation=org.escalation(heads, org.duty),
                    ),
                    review_by=review,
                    change_note="演示数据初始版本",
                ),
                now,
            )
    return made


def _set_contact(db: Session, asset: FloodAsset, person: Person) -> None:
    attrs = {**(asset.attrs or {}), "contact_person_code": person.code}
    asset_service.update(db, asset=asset, data=AssetUpdate.model_validate({"attrs": attrs}))


def _crew_contacts(db: Session, org: _Org) -> None:
    """Each pump truck gets a water-company contact, each team its subdistrict's officer."""
    subs = {a.id: a.code for a in geo_service.get_all(db, kind="subdistrict")}
    trucks = asset_service.get_all(db, kind="pump_truck")
    pool = org.co_station + org.co_foremen + org.co_patrol + org.co_tech or org.company
    for i, t in enumerate(trucks):
        if (t.attrs or {}).get("contact_person_code") or not pool:
            continue
        _set_contact(db, t, pool[i % len(pool)])
    for t in asset_service.get_all(db, kind="team"):
        if (t.attrs or {}).get("contact_person_code"):
            continue
        sub_code = subs.get(t.subdistrict_id or -1)
        heads, officers = org.office(sub_code) if sub_code else ([], [])
        person = (officers or heads)[:1]
        if person:
            _set_contact(db, t, person[0])


def _service_cards(db: Session, now: dt.datetime) -> int:
    flood = org_service.get_department(db, code=FLOOD_OFFICE)
    hotline = flood.phone if flood and flood.phone else ""
    made = 0
    have = set(db.scalars(select(ServiceCardConfig.grid_id)))
    for g in geo_service.get_all(db, kind="grid"):
        if g.id in have:
            continue
        person = default_contact(db, g)
        db.add(
            ServiceCardConfig(
                grid_id=g.id,
                hotline=hotline,
                contact_person_id=person.id if person else None,
                shelter_codes=[],
                note_zh="",
                updated_at=now,
                updated_by="演示数据",
            )
        )
        made += 1
    db.flush()
    return made


def _catch_up(db: Session, now: dt.datetime) -> None:
    """Alarms raised before the plans existed (the flood demo's storm) get the rounds and
    crews they would have had — once: an alarm that already has either is left alone."""
    called = set(db.scalars(select(CallRound.trigger_id).where(CallRound.trigger_kind == "alarm")))
    sent = set(db.scalars(select(CrewTask.alarm_id).where(CrewTask.alarm_id.is_not(None))))
    for al in alarm_service.get_all(db, open_only=True, limit=500):
        asset = db.get(FloodAsset, al.asset_id)
        if asset is None or al.level not in kinds.LEVELS:
            continue
        level = kinds.LEVELS[al.level][0]
        if al.id not in called:
            ids = [asset.id]
            if asset.kind == "river_section" and asset.parent_id:
                ids.append(asset.parent_id)
            trigger = call_service.Trigger(
                "alarm", al.id, f"{asset.name_zh}{kinds.LEVELS[al.level][1]}告警", al.exercise
            )
            plans = [p for aid in ids for p in plan_service.for_asset(db, asset_id=aid)]
            call_service.start_rounds(
                db, plans=plans, level=level, trigger=trigger, started_by_user_id=None, now=now
            )
        is_ponding = asset.kind == "waterlogging_point" and al.metric == "ponding_depth"
        if is_ponding and al.id not in sent:
            dispatch.open_for_point(
                db,
                point=asset,
                source="alarm",
                alarm_id=al.id,
                exercise=al.exercise,
                actor_user_id=None,
                actor_name="系统",
                reason="积水告警",
                now=now,
            )


def load_flood_response_demo(
    db: Session, *, now: dt.datetime | None = None, catch_up: bool = True
) -> dict[str, int]:
    """Load into the caller's transaction; returns what was added."""
    now = now or utcnow()
    review = _today(now) + dt.timedelta(days=365)
    org = _Org(db)
    out = {
        "criteria": warning_service.seed_criteria(db, now=now),
        "asset_plans": _asset_plans(db, org, now, review),
        "area_plans": _area_plans(db, org, now, review),
        "service_cards": _service_cards(db, now),
    }
    _crew_contacts(db, org)
    if catch_up:
        _catch_up(db, now)
    wiring.ensure_sweep(db, now=now)
    db.flush()
    return out
