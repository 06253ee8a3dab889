"""Build the database the flood response browser tests serve: migrated (and the tables the
migrations lack created from the models), the Guangming demo, the flood demo with its storm
of readings, the flood response demo, then a situation worth looking at: red, orange and
yellow signals in three subdistricts, a drill in a fourth, their first notifications sent
and some answered, and a plan filled to every limit of the one-page format.

    python tests/flood_response/live_prep.py sqlite:///path/to.db
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

FULLEST_CODE = "YA-LIMITS"


def fullest_plan(db: object, now: object) -> None:
    """A plan at every limit of response_schemas (people per role, actions, lengths), with
    the longest titles people have in the demo: if it prints on one page, any plan does."""
    from sqlalchemy import select

    from watergrid.flood import plans as plan_service
    from watergrid.flood.response_schemas import (
        MAX_ACTION_CHARS,
        MAX_ACTIONS,
        MAX_CONTACTS,
        MAX_SUMMARY_CHARS,
        MAX_TRIGGER_CHARS,
        ContactLine,
        LevelBlock,
        PlanBody,
        PlanCreate,
        RoleHolder,
        TransferRoute,
    )
    from watergrid.org.models import Person

    if plan_service.get(db, code=FULLEST_CODE) is not None:  # type: ignore[arg-type]
        return
    people = sorted(db.scalars(select(Person)), key=lambda p: -len(p.title))  # type: ignore[attr-defined]
    codes = iter(p.code for p in people)
    roles = [
        RoleHolder(
            role=role, person_code=next(codes), duty="负责本级全部事项的组织协调与督促落实"[:24]
        )
        for role in ("administrative", "technical", "patrol", "transfer", "escalation")
        for _ in range(3)
    ]
    text = "立即组织巡查人员到岗到位，逐一排查低洼地带、地下空间、危险边坡和在建工地并及时上报险情"
    levels = {
        lvl: LevelBlock(
            trigger_zh=(
                "雨量站或水位站监测值达到本级阈值，或所在街道发布本级暴雨预警信号并预计持续" * 2
            )[:MAX_TRIGGER_CHARS],
            actions_zh=[text[:MAX_ACTION_CHARS]] * MAX_ACTIONS,
            answer_within_min=5,
            repeat_every_min=2,
        )
        for lvl in ("blue", "yellow", "orange", "red")
    }
    from watergrid.flood import assets as asset_service

    shelters = [a.code for a in asset_service.get_all(db, kind="shelter")][:3]  # type: ignore[arg-type]
    plan_service.create(
        db,  # type: ignore[arg-type]
        data=PlanCreate(
            code=FULLEST_CODE,
            kind="waterlogging_point",
            target_code="WP-GOM-1",
            name_zh="公明街道1号内涝积水点（最满版式校验）防汛一页纸预案"[:60],
            body=PlanBody(
                summary_zh=(
                    "本预案用于校验一页纸版式：每个字段都取到允许的最大长度和最多条数，以确认任何合规预案都能打印在一张A4纸上。"
                    * 3
                )[:MAX_SUMMARY_CHARS],
                levels=levels,
                contacts=[
                    ContactLine(label=f"联系单位名称较长的值班室{i}"[:16], phone="0755-12345678-90")
                    for i in range(MAX_CONTACTS)
                ],
                routes=[
                    TransferRoute(
                        from_zh="城中村低洼片区及地下空间全部人员"[:24],
                        via_zh=(
                            "沿就近主干道向地势较高处步行，由转移责任人带领并清点人数后进入安置点"
                            * 2
                        )[:48],
                        shelter_code=s,
                    )
                    for s in shelters
                ],
                shelters=shelters,
            ),
            roles=roles,
            review_by=(now + timedelta(days=365)).date(),  # type: ignore[operator]
            change_note="版式校验用：所有内容取最大值",
        ),
        actor_user_id=None,
        actor_name="测试",
        now=now,  # type: ignore[arg-type]
    )


def main(url: str) -> None:
    import watergrid.models  # noqa: F401
    from watergrid import db as dbmod
    from watergrid.db import Base, make_engine, utcnow
    from watergrid.demo.load import load_demo
    from watergrid.flood import calls as call_service
    from watergrid.flood import warnings as warning_service
    from watergrid.flood import wiring  # noqa: F401
    from watergrid.flood.demo import load_flood_demo
    from watergrid.flood.response_demo import load_flood_response_demo
    from watergrid.flood.response_schemas import WarningIssue
    from watergrid.flood.warning_models import Call, CallKey
    from watergrid.migrate import upgrade
    from watergrid.timers.service import run_due

    upgrade(url)
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    dbmod.configure(url)
    now = utcnow() - timedelta(minutes=6)
    with dbmod.session_scope() as s:
        load_demo(s)
    with dbmod.session_scope() as s:
        load_flood_demo(s, now=now)
    with dbmod.session_scope() as s:
        load_flood_response_demo(s, now=now)
        fullest_plan(s, now)
    duty = warning_service.Actor(None, "防汛值班员")
    with dbmod.session_scope() as s:
        for code, level, drill in (
            ("440311002", "red", False),
            ("440311005", "orange", False),
            ("440311001", "yellow", False),
            ("440311004", "orange", True),
        ):
            warning_service.issue(
                s,
                data=WarningIssue(
                    subdistrict_code=code, level=level, exercise=drill, reason="演示"
                ),  # type: ignore[arg-type]
                actor=duty,
                now=now,
            )
    factory = dbmod.session_factory()
    while run_due(factory, worker_id="prep", now=now, limit=200) == 200:
        pass
    # Two thirds answer within a few minutes; the rest are late and being repeated.
    from sqlalchemy import select

    with dbmod.session_scope() as s:
        calls = list(s.scalars(select(Call).where(Call.state == "calling").order_by(Call.id)))
        for i, c in enumerate(calls):
            if i % 3 == 2:
                continue
            key = s.scalar(
                select(CallKey).where(CallKey.call_id == c.id, CallKey.person_id == c.person_id)
            )
            if key is None:
                continue
            call_service.answer_as_person(
                s,
                call_id=c.id,
                person_id=c.person_id,
                via="sms" if i % 2 else "link",
                actor_user_id=None,
                now=now + timedelta(minutes=1 + i % 4),
            )
    while run_due(factory, worker_id="prep", now=utcnow(), limit=200) == 200:
        pass


if __name__ == "__main__":
    main(sys.argv[1])
