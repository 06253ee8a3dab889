"""A year (or any number of days) of synthetic but lifelike history for the demo and the
benchmark: work orders with their whole event trail, leader field visits and the year's KPI
attack map.

What makes it lifelike: volumes follow the season (the April–June "dragon-boat water" rains,
the July–September typhoons, single storm days with three times the usual reports, quiet
Spring Festival weeks); grids differ in size and in how well they work; timeliness and
self-discovery improve through the year the way the seed's figures did (response on time
from about 60 % to 99.9 %, self-discovery from about 50 % to 93 %); some orders are rejected,
merged, suspended, extended, reopened; the last days leave work open, some of it overdue.

How it stays true to the rules: every step is looked up in the work-order state machine
(workorders.lifecycle) and refused if the machine would refuse it; deadlines come from the
same arithmetic as live orders (timers.deadlines, with the working calendar); the event rows
carry the same data the work-order service writes. Rows are written in bulk (COPY on
PostgreSQL), then the KPI facts and rollups are rebuilt. Nothing is sent: no notifications,
no timers for orders closed long ago."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import time as _time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shapely.geometry import Point, shape
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from watergrid.kpi.definitions import DOMAINS
from watergrid.settings import get_settings

log = logging.getLogger("watergrid.kpi.history")

SEED = 20240705
# Orders per day, on average over the year, before the season and the weekday are applied.
DEFAULT_PER_DAY = 32.0
MONTH_WEIGHT = {
    1: 0.7,
    2: 0.55,
    3: 0.8,
    4: 1.3,
    5: 1.9,
    6: 2.2,
    7: 1.6,
    8: 1.7,
    9: 1.5,
    10: 1.0,
    11: 0.8,
    12: 0.7,
}
GROUP_WEIGHT = {
    "drainage": 0.38,
    "water_supply": 0.25,
    "disaster": 0.12,
    "sponge_city": 0.07,
    "soil_water": 0.10,
    "pipe_network": 0.08,
}
RAINY_MONTHS = frozenset({4, 5, 6, 7, 8, 9})
# The department a desk dispatches a category to when no responsibility rule names one.
GROUP_DEPARTMENT = {
    "drainage": "DRAINAGE",
    "water_supply": "SUPPLY",
    "soil_water": "SOILWATER",
    "sponge_city": "SPONGE",
    "disaster": "FLOOD",
    "pipe_network": "PIPENET",
}
PUBLIC_SOURCES = (
    ("public_web", 0.45),
    ("phone", 0.3),
    ("service_card", 0.12),
    ("open311", 0.08),
    ("api", 0.05),
)
DESCRIPTIONS = {
    "drainage": [
        "雨水口被垃圾堵塞，路面积水",
        "小区排水管道返水，地下车库进水",
        "检查井井盖破损",
        "污水冒溢，气味明显",
        "道路积水约15厘米，车辆难以通行",
    ],
    "water_supply": [
        "小区停水，无通知",
        "水压偏低，高层用水困难",
        "供水管道破裂漏水",
        "自来水发黄有异味",
    ],
    "disaster": ["暴雨后低洼路段积水", "山体边坡有滑移迹象", "河道水位上涨，护栏损坏"],
    "sponge_city": ["透水铺装破损", "下沉式绿地积水不退", "雨水花园杂草堵塞溢流口"],
    "soil_water": [
        "工地裸土未覆盖，雨后泥水外流",
        "渣土外运未冲洗，道路泥泞",
        "边坡未防护，水土流失",
    ],
    "pipe_network": ["施工前查询地下管线", "开挖前申请管网资料"],
}
TASKS: list[tuple[str, str, str, list[tuple[str, int, int]]]] = [
    # domain, title, target, milestones (title, month, day)
    (
        "reclaimed",
        "全域推进再生水利用配置综合示范",
        "再生水利用率达到 70% 以上",
        [
            ("编制再生水利用配置方案", 3, 31),
            ("完成公明再生水厂配套管网 12 公里", 7, 31),
            ("新增工业用户 8 家接入", 10, 31),
            ("示范区年度评估", 12, 20),
        ],
    ),
    (
        "sponge",
        "科学城海绵城市示范片区建设",
        "新增海绵城市达标面积 6 平方公里",
        [
            ("示范项目清单确定", 2, 28),
            ("完成 20 个源头减排项目", 6, 30),
            ("雨季监测评估", 9, 30),
            ("年度考核材料", 12, 10),
        ],
    ),
    (
        "sponge",
        "海绵城市建设考核保持全市第一",
        "年度考核排名全市第一",
        [("自评报告", 4, 30), ("迎检整改", 8, 31), ("考核答辩", 11, 30)],
    ),
    (
        "flood",
        "洪涝安全韧性能力提升",
        "内涝积水点动态清零",
        [
            ("积水点台账更新", 3, 15),
            ("汛前完成 12 处积水点整治", 4, 30),
            ("泵站智能化改造", 8, 31),
            ("汛后总结", 11, 15),
        ],
    ),
    (
        "flood",
        "“一页纸”防汛操作预案全覆盖",
        "水库、河道、积水点、街道、社区预案 100% 覆盖",
        [("水库预案", 3, 31), ("河道与积水点预案", 4, 20), ("街道社区预案", 5, 15)],
    ),
    (
        "conservation",
        "国家水土保持示范县巩固提升",
        "生产建设项目水保方案审批率 100%",
        [("在建项目全面排查", 4, 30), ("违规项目整改销号", 8, 31), ("示范县复核", 11, 30)],
    ),
    (
        "saving",
        "县域节水型社会建设达标巩固",
        "万元GDP用水量下降 3%",
        [("重点用水单位名录", 3, 31), ("节水型小区创建 10 个", 9, 30), ("年度节水评估", 12, 15)],
    ),
    (
        "supply_drainage",
        "2019年以来新建住宅小区供排水设施排查",
        "核查 89 个小区，覆盖率 100%",
        [("排查方案", 2, 28), ("完成 89 个小区核查", 6, 30), ("问题小区整改", 10, 31)],
    ),
    (
        "supply_drainage",
        "老旧小区优质饮用水入户",
        "改造 30 个小区",
        [("小区清单", 3, 31), ("完成 15 个", 7, 31), ("完成 30 个", 11, 30)],
    ),
    (
        "rivers",
        "茅洲河美丽河湖长效管护",
        "水质稳定达到地表水 IV 类",
        [("排口溯源整治", 4, 30), ("旱季零直排复核", 7, 31), ("全年水质评估", 12, 31)],
    ),
    (
        "rivers",
        "光明湖省级水利风景区提升",
        "完成景区提升工程",
        [("设计方案", 3, 31), ("施工完成", 9, 30), ("验收", 12, 15)],
    ),
]
VISIT_FINDINGS = [
    "旧村雨污分流推进缓慢，需街道协调施工围挡",
    "低洼路段暴雨时自排效率低，建议增设挡水板",
    "小区地下车库入口缺少挡水设施",
    "工地裸土覆盖不到位，已现场交办整改",
    "排水管网错接混接，需专业队伍溯源",
    "供水二次加压设施老化，建议纳入改造计划",
    "河道垃圾拦截设施损坏",
    "社区防汛物资储备不足",
]


def _tz() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


@dataclass
class HistoryReport:
    orders: int = 0
    events: int = 0
    visits: int = 0
    tasks: int = 0
    seconds: float = 0.0
    by_state: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        states = ", ".join(f"{k} {v}" for k, v in sorted(self.by_state.items()))
        return [
            f"orders: {self.orders} ({states})",
            f"events: {self.events}",
            f"field visits: {self.visits}",
            f"attack-map tasks: {self.tasks}",
            f"took {self.seconds:.1f} s",
        ]


# =====================================================================================
# the world the orders happen in
# =====================================================================================


@dataclass
class _Spot:
    lon: float
    lat: float
    zone_id: int | None
    zone_ids: list[int]


@dataclass
class _Grid:
    id: int
    code: str
    subdistrict_id: int
    weight: float
    late_factor: float
    patrol_factor: float
    spots: list[_Spot]
    people: list[int]


@dataclass
class _World:
    categories: list[Any]
    grids: list[_Grid]
    calendar: Any
    book: Any
    dept_people: dict[int, list[int]]
    dept_code: dict[int, str]
    dept_by_code: dict[str, int]
    desk_id: int | None
    chain_leader_of_zone: dict[int, int]
    leaders: list[int]
    dept_cache: dict[tuple[int, int, str], int | None] = field(default_factory=dict)


def _spots(
    geometry: dict[str, Any],
    rng: random.Random,
    locator: Any,
    zone_ids: dict[str, int],
    n: int = 10,
) -> list[_Spot]:
    g = shape(geometry)
    minx, miny, maxx, maxy = g.bounds
    out: list[_Spot] = []
    tries = 0
    while len(out) < n and tries < 2000:
        tries += 1
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if not g.contains(Point(x, y)):
            continue
        zs = [zone_ids[c] for c in locator.zone_codes_at(x, y)]
        out.append(_Spot(x, y, zs[0] if zs else None, zs))
    if not out:
        p = g.representative_point()
        out.append(_Spot(p.x, p.y, None, []))
    return out


def _world(db: Session, rng: random.Random) -> _World:
    from watergrid.geo import service as geo_service
    from watergrid.org import service as org_service
    from watergrid.org.models import PartyGroup, PartyGroupMember, Person, ZoneRole
    from watergrid.workorders import jobs as wo_jobs
    from watergrid.workorders.models import Category

    snap = geo_service.snapshot(db)
    cats = list(db.scalars(select(Category).where(Category.active.is_(True)).order_by(Category.id)))
    if not cats:
        raise RuntimeError("no work-order categories: seed them first")
    group_of_grid = {g.grid_id: g.id for g in db.scalars(select(PartyGroup))}
    members: dict[int, list[int]] = defaultdict(list)
    for gid, pid, tag in db.execute(
        select(PartyGroupMember.group_id, PartyGroupMember.person_id, PartyGroupMember.tag)
    ):
        if tag == "community_party_member":
            members[gid].append(pid)
    grids = []
    for area in geo_service.get_all(db, kind="grid"):
        grids.append(
            _Grid(
                id=area.id,
                code=area.code,
                subdistrict_id=snap.links.grid_subdistrict.get(area.id, 0),
                weight=math.exp(rng.gauss(0, 0.45)),
                late_factor=math.exp(rng.gauss(0, 0.6)),
                patrol_factor=min(1.08, max(0.75, rng.gauss(1.0, 0.08))),
                spots=_spots(area.geometry, rng, snap.locator, snap.zone_id_by_code),
                people=sorted(members.get(group_of_grid.get(area.id, -1), [])),
            )
        )
    dept_people: dict[int, list[int]] = defaultdict(list)
    for pid, did in db.execute(
        select(Person.id, Person.department_id).where(Person.active.is_(True))
    ):
        if did is not None:
            dept_people[did].append(pid)
    depts = org_service.get_departments(db)
    chain = {
        z: p
        for z, p, r in db.execute(select(ZoneRole.zone_id, ZoneRole.person_id, ZoneRole.role))
        if r == "chain_leader"
    }
    desk = org_service.get_department(db, code=org_service.DISPATCH_DESK_CODE)
    return _World(
        categories=cats,
        grids=grids,
        calendar=wo_jobs.calendar(db),
        book=org_service.rule_book(db),
        dept_people=dept_people,
        dept_code={d.id: d.code for d in depts},
        dept_by_code={d.code: d.id for d in depts},
        desk_id=desk.id if desk else None,
        chain_leader_of_zone=chain,
        leaders=sorted(set(chain.values())),
    )


# =====================================================================================
# one order's life
# =====================================================================================


class _Stop(Exception):
    """The next step would happen after the end of the history: the order stays as it is."""


class _Life:
    """One order walked through the state machine, collecting its row and events."""

    def __init__(self, row: dict[str, Any], end: datetime) -> None:
        self.row = row
        self.end = end
        self.events: list[dict[str, Any]] = []
        self.spans: list[tuple[datetime, datetime | None]] = []
        self.at: datetime = row["created_at"]

    def step(
        self,
        action: str,
        at: datetime,
        *,
        person: int | None,
        role: str,
        dept: int | None = None,
        note: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        from watergrid.workorders import lifecycle

        at = max(at, self.at + timedelta(seconds=1))
        if at > self.end:
            raise _Stop
        state = self.row["state"]
        t = lifecycle.find(state, action)
        if t is None:
            raise AssertionError(f"history broke the rules: {action} from {state}")
        to = lifecycle.target_state(t, state=state, suspended_from=self.row["suspended_from"])
        self.events.append(
            {
                "order_id": self.row["id"],
                "at": at,
                "action": action,
                "from_state": state,
                "to_state": to,
                "actor_user_id": None,
                "actor_person_id": person,
                "actor_role": role,
                "actor_department_id": dept,
                "actor_name": None,
                "note": note,
                "data": data or {},
            }
        )
        self.row["state"] = to
        self.row["updated_at"] = at
        self.at = at


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d else None


def _pick(rng: random.Random, items: Sequence[Any]) -> Any:
    return items[rng.randrange(len(items))] if items else None


def _weighted(rng: random.Random, pairs: Sequence[tuple[Any, float]]) -> Any:
    total = sum(w for _, w in pairs)
    x = rng.random() * total
    for item, w in pairs:
        x -= w
        if x <= 0:
            return item
    return pairs[-1][0]


def _due(
    world: _World,
    start: datetime,
    limit: dict[str, Any],
    spans: Sequence[tuple[datetime, datetime | None]] = (),
) -> datetime:
    from watergrid.timers.deadlines import DueResult, compute_due_suspended

    r = compute_due_suspended(
        start,
        amount=float(limit["amount"]),
        unit=limit["unit"],
        calendar=world.calendar,
        suspensions=list(spans),
    )
    assert isinstance(r, DueResult)
    return r.due_at


def _live(
    world: _World,
    rng: random.Random,
    life: _Life,
    *,
    quality: dict[str, float],
    merge_target: dict[str, Any] | None,
) -> None:
    """Walk the order from intake to wherever it gets before the end."""
    row = life.row
    t0 = row["created_at"]
    r_due = row["response_due_at"]
    lead = row["department_id"]
    desk = world.desk_id
    handler_dept = (
        lead if lead != desk else world.dept_by_code.get(GROUP_DEPARTMENT[row["group_code"]])
    )
    nobody: list[int | None] = [None]
    handlers: list[int | None] = list(
        world.dept_people.get(handler_dept or -1) or world.dept_people.get(desk or -1) or nobody
    )
    desk_people = world.dept_people.get(desk or -1) or handlers
    grid_people = next((g.people for g in world.grids if g.id == row["grid_id"]), [])
    approver = world.chain_leader_of_zone.get(row["zone_id"] or -1) or _pick(rng, world.leaders)

    def h() -> int | None:
        return _pick(rng, handlers)

    fate = rng.random()
    if fate < 0.03:  # not water affairs / invalid / duplicate
        late = rng.random() < quality["resp_late"]
        at = (
            r_due + timedelta(minutes=rng.uniform(10, 300))
            if late
            else t0 + (r_due - t0) * rng.uniform(0.1, 0.9)
        )
        reason = _weighted(rng, [("not_water_affairs", 0.6), ("invalid", 0.3), ("duplicate", 0.1)])
        life.step(
            "reject",
            at,
            person=_pick(rng, desk_people),
            role="dept_handler",
            dept=desk,
            note="经核实不属于水务事项" if reason == "not_water_affairs" else "信息不全，无法核实",
            data={"reason": reason},
        )
        row["rejected_reason"] = reason
        return
    if merge_target is not None and fate < 0.05:
        at = t0 + timedelta(minutes=rng.uniform(15, 150))
        if merge_target["open_until"] is None or merge_target["open_until"] > at:
            life.step(
                "merge",
                at,
                person=_pick(rng, desk_people),
                role="dept_handler",
                dept=desk,
                note="同一问题重复反映",
                data={"into": merge_target["number"]},
            )
            row["merged_into_id"] = merge_target["id"]
            merge_target["merged_in"].append((at, row["number"], life.events[-1]))
            return

    # The desk works to the response clock: a one-hour emergency is passed on in minutes.
    window = r_due - t0
    accept_at = t0 + min(timedelta(minutes=rng.uniform(3, 35)), window * rng.uniform(0.03, 0.15))
    life.step("accept", accept_at, person=_pick(rng, desk_people), role="dept_handler", dept=desk)
    row["accepted_at"] = life.at
    dispatch_at = life.at + min(
        timedelta(minutes=rng.uniform(4, 50)), window * rng.uniform(0.03, 0.15)
    )
    if lead == desk or lead is None:
        row["department_id"] = handler_dept
    life.step(
        "dispatch",
        dispatch_at,
        person=_pick(rng, desk_people),
        role="dept_handler",
        dept=desk,
        data={"department": world.dept_code.get(row["department_id"] or -1)},
    )
    row["dispatched_at"] = row["handling_started_at"] = life.at
    row["handling_due_at"] = _due(world, life.at, row["handling_limit"])
    life.events[-1]["data"]["handling_due_at"] = _iso(row["handling_due_at"])

    def respond(after: datetime) -> None:
        late = rng.random() < quality["resp_late"]
        if late or r_due <= after:
            at = max(r_due, after) + timedelta(minutes=rng.uniform(5, 360))
        else:
            at = after + (r_due - after) * rng.uniform(0.05, 0.9)
        if grid_people and rng.random() < 0.3:
            action, person, role, dept, mode = (
                "check_in",
                _pick(rng, grid_people),
                "grid_member",
                None,
                None,
            )
        else:
            action, person, role, dept = "respond", h(), "dept_handler", row["department_id"]
            mode = _weighted(rng, [("on_site", 0.7), ("contacted", 0.3)])
        data: dict[str, Any] = {}
        if mode:
            data["mode"] = mode
        if action == "check_in":
            data["check_in"] = True
        first = row["responded_at"] is None
        at = max(at, life.at + timedelta(seconds=1))
        if first:
            data["response_on_time"] = at <= r_due
        life.step(action, at, person=person, role=role, dept=dept, data=data)
        if first:
            row["responded_at"] = life.at

    def resolve() -> bool:
        """Work it to resolution; True when it was on time."""
        if rng.random() < 0.6:
            life.step(
                "start",
                life.at + timedelta(minutes=rng.uniform(10, 240)),
                person=h(),
                role="dept_handler",
                dept=row["department_id"],
            )
        due = row["handling_due_at"]
        late = rng.random() < quality["hand_late"]
        if late:
            at = due + timedelta(hours=rng.uniform(2, 72))
        else:
            at = life.at + max(timedelta(minutes=20), (due - life.at) * rng.uniform(0.05, 0.9))
        at = max(at, life.at + timedelta(minutes=20))
        on_time = at <= due
        life.step(
            "resolve",
            at,
            person=h(),
            role="dept_handler",
            dept=row["department_id"],
            note="已现场处置完毕",
            data={"handling_on_time": on_time},
        )
        row["resolved_at"] = life.at
        return on_time

    respond(life.at)
    if rng.random() < 0.02:  # waiting on an owner, a permit, the weather
        s_at = life.at + timedelta(hours=rng.uniform(1, 20))
        life.step(
            "suspend",
            s_at,
            person=h(),
            role="dept_handler",
            dept=row["department_id"],
            note="等待业主配合",
        )
        row["suspended_from"] = "responded"
        life.spans.append((life.at, None))
        row["_suspensions"].append([life.at, None])
        r_at = life.at + timedelta(days=rng.uniform(1, 6))
        life.step("resume", r_at, person=h(), role="dept_handler", dept=row["department_id"])
        row["suspended_from"] = None
        life.spans[-1] = (life.spans[-1][0], life.at)
        row["_suspensions"][-1][1] = life.at
        row["handling_due_at"] = _due(
            world, row["handling_started_at"], row["handling_limit"], life.spans
        )
        life.events[-1]["data"]["handling_due_at"] = _iso(row["handling_due_at"])
    if rng.random() < 0.04:  # more time asked for and granted
        amount = 1 if row["handling_limit"]["unit"] == "workdays" else 24
        life.step(
            "request_extension",
            life.at + timedelta(hours=rng.uniform(2, 20)),
            person=h(),
            role="dept_handler",
            dept=row["department_id"],
            note="需协调第三方施工",
            data={"amount": amount, "unit": row["handling_limit"]["unit"]},
        )
        previous = row["handling_due_at"]
        life.step(
            "approve_extension",
            life.at + timedelta(hours=rng.uniform(1, 8)),
            person=approver,
            role="chain_leader",
            data={"amount": amount, "unit": row["handling_limit"]["unit"]},
        )
        lim = dict(row["handling_limit"])
        lim["amount"] = float(lim["amount"]) + amount
        lim["extended_by"] = float(lim.get("extended_by", 0)) + amount
        row["handling_limit"] = lim
        row["handling_due_at"] = _due(world, row["handling_started_at"], lim, life.spans)
        life.events[-1]["data"].update(
            previous_due_at=_iso(previous), handling_due_at=_iso(row["handling_due_at"])
        )
    on_time = resolve()
    life.step(
        "verify",
        life.at + timedelta(hours=rng.uniform(1, 30)),
        person=_pick(rng, grid_people) or h(),
        role="grid_member",
    )
    row["verified_at"] = life.at
    if rng.random() < 0.015:  # the problem came back
        life.step(
            "reopen",
            life.at + timedelta(hours=rng.uniform(12, 72)),
            person=_pick(rng, desk_people),
            role="dept_handler",
            dept=desk,
            note="群众反映问题复发",
        )
        row["resolved_at"] = row["verified_at"] = None
        lim = dict(row["handling_limit"])
        lim["amount"] = float(lim["amount"]) - float(lim.get("extended_by", 0))
        lim["extended_by"] = 0
        row["handling_limit"] = lim
        row["handling_started_at"] = life.at
        row["handling_due_at"] = _due(world, life.at, lim, life.spans)
        life.events[-1]["data"]["handling_due_at"] = _iso(row["handling_due_at"])
        respond(life.at)
        on_time = resolve() and on_time
        life.step(
            "verify",
            life.at + timedelta(hours=rng.uniform(1, 24)),
            person=_pick(rng, grid_people) or h(),
            role="grid_member",
        )
        row["verified_at"] = life.at
    life.step(
        "close",
        life.at + timedelta(hours=rng.uniform(1, 48)),
        person=_pick(rng, desk_people),
        role="dept_handler",
        dept=desk,
    )
    row["closed_at"] = life.at
    if row["source"] != "patrol" and rng.random() < 0.55:
        weights = (
            [(5, 70), (4, 22), (3, 6), (2, 1.5), (1, 0.5)]
            if on_time
            else [(5, 30), (4, 30), (3, 25), (2, 10), (1, 5)]
        )
        score = _weighted(rng, weights)
        at = max(life.at, row["resolved_at"]) + timedelta(hours=rng.uniform(1, 72))
        if at <= life.end:
            life.events.append(
                {
                    "order_id": row["id"],
                    "at": at,
                    "action": "rate",
                    "from_state": row["state"],
                    "to_state": row["state"],
                    "actor_user_id": None,
                    "actor_person_id": None,
                    "actor_role": "reporter",
                    "actor_department_id": None,
                    "actor_name": None,
                    "note": "",
                    "data": {"score": score},
                }
            )
            row["rating"], row["rating_comment"], row["rated_at"] = score, "", at
            row["updated_at"] = max(row["updated_at"], at)


# =====================================================================================
# writing in bulk
# =====================================================================================


def _copy_value(v: Any) -> Any:
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return v


def bulk_insert(db: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows fast: COPY on PostgreSQL, executemany elsewhere."""
    if not rows:
        return
    cols = list(rows[0])
    if db.get_bind().dialect.name == "postgresql":
        raw = db.connection().connection.driver_connection
        assert raw is not None
        names = ", ".join(f'"{c}"' for c in cols)
        with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as cp:
            for r in rows:
                cp.write_row([_copy_value(r[c]) for c in cols])
        return
    for start in range(0, len(rows), 5000):
        db.execute(table.insert(), list(rows[start : start + 5000]))


def _number_block(db: Session, counts: dict[int, int]) -> dict[int, int]:
    """Reserve `counts[year]` order numbers per year; returns the first number of each."""
    from watergrid.workorders.models import OrderCounter

    first: dict[int, int] = {}
    for year, n in counts.items():
        row = db.get(OrderCounter, year)
        if row is None:
            row = OrderCounter(year=year, last=0)
            db.add(row)
            db.flush()
        first[year] = row.last + 1
        row.last += n
    db.flush()
    return first


# =====================================================================================
# the whole history
# =====================================================================================


def _season(day: date, storm_days: set[date]) -> float:
    w = MONTH_WEIGHT[day.month]
    if day.weekday() >= 5:
        w *= 0.8
    if day in storm_days:
        w *= 3.0
    return w


def _quality(progress: float, grid: _Grid) -> dict[str, float]:
    """How late and how self-discovering work is at this point of the year, in this grid."""
    behind = (1 - progress) ** 3
    return {
        "resp_late": min(0.9, (0.40 * behind + 0.0008) * grid.late_factor),
        "hand_late": min(0.9, (0.45 * behind + 0.0015) * grid.late_factor),
        "patrol": min(0.985, (0.50 + 0.43 * progress) * grid.patrol_factor),
    }


def generate_orders(
    db: Session,
    *,
    days: int,
    end: datetime,
    seed: int = SEED,
    per_day: float = DEFAULT_PER_DAY,
    chunk_days: int = 15,
    progress: Any = None,
) -> HistoryReport:
    """Write `days` days of orders ending at `end` (bulk), then rebuild the KPI facts and
    rollups. Returns what was written."""
    from watergrid.org import service as org_service
    from watergrid.workorders import intake as wo_intake
    from watergrid.workorders.models import OrderEvent, OrderSuspension, WorkOrder

    started = _time.monotonic()
    rng = random.Random(seed)
    world = _world(db, rng)
    tz = _tz()
    end = end.astimezone(UTC)
    first_day = (end.astimezone(tz) - timedelta(days=days - 1)).date()
    all_days = [first_day + timedelta(days=i) for i in range(days)]
    storms = {d for d in all_days if d.month in (5, 6, 7, 8, 9) and rng.random() < 0.07}
    by_group: dict[str, list[Any]] = defaultdict(list)
    for c in world.categories:
        by_group[c.group_code].append(c)
    next_id = int(db.scalar(select(func.coalesce(func.max(WorkOrder.id), 0))) or 0) + 1
    report = HistoryReport()
    recent: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)

    for c0 in range(0, len(all_days), chunk_days):
        chunk = all_days[c0 : c0 + chunk_days]
        lives: list[_Life] = []
        for day in chunk:
            p = (day - first_day).days / max(1, days - 1)
            n = int(rng.gauss(per_day * _season(day, storms), math.sqrt(per_day)))
            rainy = day.month in RAINY_MONTHS
            groups = [
                (
                    g,
                    w
                    * (
                        1.5
                        if rainy and g == "drainage"
                        else 2.5
                        if rainy and g == "disaster"
                        else 1
                    ),
                )
                for g, w in GROUP_WEIGHT.items()
                if by_group.get(g)
            ]
            for _ in range(max(0, n)):
                grid = _weighted(rng, [(g, g.weight) for g in world.grids])
                q = _quality(p, grid)
                si = rng.randrange(len(grid.spots))
                spot = grid.spots[si]
                cat = _pick(rng, by_group[_weighted(rng, groups)])
                minute = int(
                    _weighted(rng, [(h, 3 if 8 <= h <= 20 else 1) for h in range(24)]) * 60
                    + rng.randrange(60)
                )
                created = datetime.combine(day, datetime.min.time(), tzinfo=tz) + timedelta(
                    minutes=minute
                )
                created = created.astimezone(UTC)
                if created > end:
                    continue
                patrol = rng.random() < q["patrol"] and bool(grid.people)
                source = "patrol" if patrol else _weighted(rng, PUBLIC_SOURCES)
                dkey = (grid.id, si, cat.code)
                if dkey not in world.dept_cache:
                    world.dept_cache[dkey] = org_service.responsible_department(
                        world.book,
                        category_code=cat.code,
                        grid_id=grid.id,
                        zone_ids=spot.zone_ids,
                        subdistrict_id=grid.subdistrict_id,
                    )
                dept = world.dept_cache[dkey]
                priority = cat.default_priority
                limits = cat.deadlines[priority]
                oid = next_id
                next_id += 1
                token = f"{seed}:{oid}"
                row: dict[str, Any] = {
                    "id": oid,
                    "number": None,
                    "category_id": cat.id,
                    "category_code": cat.code,
                    "group_code": cat.group_code,
                    "priority": priority,
                    "source": source,
                    "state": "submitted",
                    "description": _pick(rng, DESCRIPTIONS.get(cat.group_code, ["涉水问题"])),
                    "address": f"{grid.code} 附近",
                    "lon": round(spot.lon + rng.uniform(-3e-4, 3e-4), 6),
                    "lat": round(spot.lat + rng.uniform(-3e-4, 3e-4), 6),
                    "attributes": {},
                    "media_url": None,
                    "external_ref": "history",
                    "reporter_name": "" if patrol else "市民",
                    "reporter_phone": "" if patrol else f"139{rng.randrange(10**8):08d}",
                    "reporter_email": "",
                    "phone_consent": not patrol,
                    "track_token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                    "created_by_user_id": None,
                    "grid_id": grid.id,
                    "subdistrict_id": grid.subdistrict_id,
                    "zone_id": spot.zone_id,
                    "party_group_number": None,
                    "department_id": dept,
                    "response_limit": dict(limits["response"]),
                    "handling_limit": {**limits["handling"], "extended_by": 0},
                    "response_due_at": _due(world, created, limits["response"]),
                    "handling_started_at": None,
                    "handling_due_at": None,
                    "deadline_warnings": [],
                    "extension_pending": None,
                    "accepted_at": None,
                    "dispatched_at": None,
                    "responded_at": None,
                    "resolved_at": None,
                    "verified_at": None,
                    "closed_at": None,
                    "rejected_reason": None,
                    "suspended_from": None,
                    "merged_into_id": None,
                    "duplicate_candidate_ids": [],
                    "rating": None,
                    "rating_comment": None,
                    "rated_at": None,
                    "created_at": created,
                    "updated_at": created,
                    "_suspensions": [],
                }
                life = _Life(row, end)
                person = _pick(rng, grid.people) if patrol else None
                life.events.append(
                    {
                        "order_id": oid,
                        "at": created,
                        "action": "create",
                        "from_state": None,
                        "to_state": "submitted",
                        "actor_user_id": None,
                        "actor_person_id": person,
                        "actor_role": "grid_member" if patrol else "reporter",
                        "actor_department_id": None,
                        "actor_name": None,
                        "note": "",
                        "data": {
                            "source": source,
                            "priority": priority,
                            "department": world.dept_code.get(dept or -1),
                            "response_due_at": _iso(row["response_due_at"]),
                            "possible_duplicates": [],
                        },
                    }
                )
                candidates = [
                    c
                    for c in recent[(grid.id, cat.code)]
                    if created - c["created_at"] < timedelta(hours=48)
                ]
                target = candidates[-1] if candidates else None
                lives.append(life)
                row["_life"] = life
                recent[(grid.id, cat.code)].append(
                    {
                        "id": oid,
                        "number": None,
                        "created_at": created,
                        "open_until": None,
                        "merged_in": [],
                        "row": row,
                    }
                )
                recent[(grid.id, cat.code)] = recent[(grid.id, cat.code)][-5:]
                row["_merge_target"] = target
                row["_quality"] = q
        # numbers in order of creation, per year
        lives.sort(key=lambda lf: (lf.row["created_at"], lf.row["id"]))
        years: dict[int, int] = defaultdict(int)
        for lf in lives:
            years[lf.row["created_at"].astimezone(tz).year] += 1
        first = _number_block(db, dict(years))
        for lf in lives:
            y = lf.row["created_at"].astimezone(tz).year
            lf.row["number"] = wo_intake.order_number(y, first[y])
            first[y] += 1
        for lf in lives:
            for c in recent.get((lf.row["grid_id"], lf.row["category_code"]), []):
                if c["id"] == lf.row["id"]:
                    c["number"] = lf.row["number"]
        # lives in order of creation, so a merge target has already been walked
        walked: dict[int, dict[str, Any]] = {}
        for lf in lives:
            target = lf.row.pop("_merge_target")
            tinfo = None
            if target is not None and target["id"] in walked:
                tinfo = walked[target["id"]]
            with contextlib.suppress(_Stop):  # the history ends before the order does
                _live(world, rng, lf, quality=lf.row.pop("_quality"), merge_target=tinfo)
            lf.row.pop("_life", None)
            info = {
                "id": lf.row["id"],
                "number": lf.row["number"],
                "open_until": lf.row["closed_at"] or lf.row["resolved_at"]
                if lf.row["state"] in ("resolved", "verified", "closed")
                else (lf.at if lf.row["state"] in ("rejected", "merged") else None),
                "merged_in": [],
                "state_ref": lf,
            }
            walked[lf.row["id"]] = info
        # merged_in events on the surviving orders
        extra_events: list[dict[str, Any]] = []
        for info in walked.values():
            for at, number, _ev in info["merged_in"]:
                lf = info["state_ref"]
                extra_events.append(
                    {
                        "order_id": info["id"],
                        "at": at,
                        "action": "merged_in",
                        "from_state": lf.row["state"],
                        "to_state": lf.row["state"],
                        "actor_user_id": None,
                        "actor_person_id": None,
                        "actor_role": "dept_handler",
                        "actor_department_id": world.desk_id,
                        "actor_name": None,
                        "note": "",
                        "data": {"from": number},
                    }
                )
        orders, events, suspensions = [], [], []
        for lf in lives:
            row = lf.row
            for s, e in row.pop("_suspensions"):
                suspensions.append(
                    {
                        "order_id": row["id"],
                        "suspended_at": s,
                        "resumed_at": e,
                        "reason": "等待业主配合",
                    }
                )
            if row["state"] == "suspended":
                row["suspended_from"] = row["suspended_from"] or "responded"
            orders.append(row)
            events.extend(lf.events)
            report.by_state[row["state"]] = report.by_state.get(row["state"], 0) + 1
        events.extend(extra_events)
        events.sort(key=lambda e: (e["at"], e["order_id"]))
        bulk_insert(db, WorkOrder.__table__, orders)
        bulk_insert(db, OrderEvent.__table__, events)
        bulk_insert(db, OrderSuspension.__table__, suspensions)
        report.orders += len(orders)
        report.events += len(events)
        if progress is not None:
            progress(chunk[-1], report)
    if db.get_bind().dialect.name == "postgresql":
        db.execute(
            text(
                "SELECT setval(pg_get_serial_sequence('work_order', 'id'), "
                "(SELECT COALESCE(MAX(id), 1) FROM work_order))"
            )
        )
    report.seconds = _time.monotonic() - started
    return report


def schedule_open_deadlines(db: Session, *, now: datetime, since: datetime) -> int:
    """Arm the work-order timers of the generated orders still open, as intake would have."""
    from watergrid.workorders import jobs as wo_jobs
    from watergrid.workorders.models import WorkOrder

    n = 0
    q = select(WorkOrder).where(
        WorkOrder.created_at >= since,
        WorkOrder.external_ref == "history",
        WorkOrder.state.not_in(
            ("rejected", "merged", "closed", "resolved", "verified", "suspended")
        ),
    )
    for o in db.scalars(q):
        if o.responded_at is None:
            wo_jobs.schedule_deadline(db, order=o, deadline="response", now=now)
        if o.handling_started_at is not None:
            wo_jobs.schedule_deadline(db, order=o, deadline="handling", now=now)
        n += 1
    return n


# =====================================================================================
# visits and tasks
# =====================================================================================


def generate_visits(
    db: Session, *, days: int, end: datetime, seed: int = SEED, per_year: int = 172
) -> int:
    """Leader visits to the grids (下沉) spread over the period, each with a few issues
    coordinated on site, some linked to orders of that grid from around the visit."""
    from watergrid.kpi.models import Visit, VisitIssue, VisitMember
    from watergrid.org.models import ZoneRole
    from watergrid.workorders.models import WorkOrder

    rng = random.Random(seed + 1)
    tz = _tz()
    snap_links = __import__("watergrid.geo.service", fromlist=["area_links"]).area_links(db)
    roles = db.execute(select(ZoneRole.zone_id, ZoneRole.person_id, ZoneRole.role)).all()
    leaders = [(z, p) for z, p, r in roles if r == "chain_leader"]
    liaisons: dict[int, list[int]] = defaultdict(list)
    for z, p, r in roles:
        if r == "liaison":
            liaisons[z].append(p)
    if not leaders:
        return 0
    n = max(1, round(per_year * days / 365))
    end_day = end.astimezone(tz).date()
    now = end.astimezone(UTC)
    count = 0
    for _ in range(n):
        zone_id, leader = _pick(rng, leaders)
        grids = (
            sorted(snap_links.zone_grids.get(zone_id, frozenset()))
            or [g for g in snap_links.grid_subdistrict][:1]
        )
        grid_id = _pick(rng, grids)
        day = end_day - timedelta(days=int(rng.triangular(0, days - 1, days * 0.45)))
        v = Visit(
            visit_date=day,
            grid_id=grid_id,
            zone_id=zone_id,
            leader_person_id=leader,
            findings=_pick(rng, VISIT_FINDINGS),
            created_by_user_id=None,
            created_at=now,
        )
        db.add(v)
        db.flush()
        for p in rng.sample(liaisons.get(zone_id, []), k=min(len(liaisons.get(zone_id, [])), 1)):
            db.add(VisitMember(visit_id=v.id, person_id=p))
        lo = datetime.combine(day, datetime.min.time(), tzinfo=tz) - timedelta(days=3)
        hi = lo + timedelta(days=7)
        near = list(
            db.scalars(
                select(WorkOrder.id)
                .where(
                    WorkOrder.grid_id == grid_id,
                    WorkOrder.created_at >= lo,
                    WorkOrder.created_at < hi,
                )
                .limit(6)
            )
        )
        k = max(1, int(rng.gauss(3.6, 1.2)))
        for i in range(k):
            linked = near[i] if i < len(near) and rng.random() < 0.6 else None
            db.add(
                VisitIssue(
                    visit_id=v.id,
                    summary=_pick(rng, VISIT_FINDINGS),
                    order_id=linked,
                    link="moved" if linked else None,
                )
            )
        count += 1
    db.flush()
    return count


def generate_tasks(db: Session, *, year: int, today: date, seed: int = SEED) -> int:
    """The year's attack map: the tasks above, claimed by leaders and section heads, with
    milestones done, late or coming up as of `today`."""
    from watergrid.kpi.models import Milestone, Task, TaskMember
    from watergrid.org.models import Person, ZoneRole

    if db.scalar(select(func.count()).select_from(Task).where(Task.year == year)):
        return 0
    rng = random.Random(seed + 2)
    leaders = sorted(
        {p for p, r in db.execute(select(ZoneRole.person_id, ZoneRole.role)) if r == "chain_leader"}
    )
    staff = list(
        db.scalars(select(Person.id).where(Person.department_id.is_not(None)).order_by(Person.id))
    )
    now = datetime.now(UTC)
    n = 0
    for i, (domain, title, target, stones) in enumerate(TASKS):
        assert domain in DOMAINS
        owner = leaders[i % len(leaders)] if leaders and rng.random() < 0.9 else None
        t = Task(
            year=year,
            domain=domain,
            title=title,
            target=target,
            owner_person_id=owner,
            claimed_at=now if owner else None,
            created_at=now,
        )
        db.add(t)
        db.flush()
        for p in rng.sample(staff, k=min(3, len(staff))):
            db.add(TaskMember(task_id=t.id, person_id=p))
        slip = rng.random()
        # A real year has a task that slipped and one that finished a milestone late.
        slip = {4: 0.05, 8: 0.2}.get(i, max(slip, 0.3))
        for pos, (mt, month, dd) in enumerate(stones):
            due = date(year, month, dd)
            done = None
            if due < today:
                if (
                    slip < 0.12
                    and pos == sum(1 for _, m, d in stones if date(year, m, d) < today) - 1
                ):
                    done = None  # the one that slipped: late
                else:
                    done = (
                        due - timedelta(days=rng.randrange(0, 12))
                        if slip > 0.25
                        else due + timedelta(days=rng.randrange(1, 10))
                    )
                    done = min(done, today)
            db.add(
                Milestone(
                    task_id=t.id,
                    position=pos,
                    title=mt,
                    due_date=due,
                    weight=1.0,
                    done_date=done,
                    evidence="验收材料已上传" if done else "",
                )
            )
        n += 1
    db.flush()
    return n


def generate(
    db: Session,
    *,
    days: int = 365,
    end: datetime | None = None,
    seed: int = SEED,
    per_day: float = DEFAULT_PER_DAY,
    visits: bool = True,
    tasks: bool = True,
    timers: bool = True,
    force: bool = False,
) -> HistoryReport:
    """`watergrid kpi history` / `watergrid demo --history N`: orders, visits and tasks, then
    the KPI rebuild. Seeds the categories and the working calendar when they are missing.
    Does nothing when generated history is there already, unless `force`."""
    from watergrid.kpi import rollups
    from watergrid.timers.calendar import seed_calendar
    from watergrid.workorders.categories import seed_categories
    from watergrid.workorders.models import WorkOrder

    end = end or datetime.now(UTC)
    if not force and db.scalar(
        select(WorkOrder.id).where(WorkOrder.external_ref == "history").limit(1)
    ):
        # Running the demo again must not pile a second year on the first.
        return HistoryReport()
    seed_categories(db)
    years = range((end - timedelta(days=days)).year, end.year + 2)
    seed_calendar(db, years=years)
    db.flush()
    report = generate_orders(db, days=days, end=end, seed=seed, per_day=per_day)
    if timers:
        schedule_open_deadlines(db, now=end, since=end - timedelta(days=days + 1))
    if visits:
        report.visits = generate_visits(db, days=days, end=end, seed=seed)
    if tasks:
        today = end.astimezone(_tz()).date()
        report.tasks = generate_tasks(db, year=today.year, today=today, seed=seed)
    rollups.rebuild(db, now=end)
    return report
