"""A campaign from creation to 100 % coverage, with faults rectified by each of the three
methods (现场交办, 发函提醒, 技术指导) and verified at re-inspection; one of them runs late, is
reminded, goes overdue, is escalated, fails its first re-inspection and passes its second.
Time is driven by a FrozenClock; the timers run through the shared sweeper (run_due). The
figures are checked against counts made by hand from the story below, on every backend.

The story (all March 2026, local time; no holidays that month):
  T1 W01 甲物业  02: A1 fault (on site), B1 fault (letter proposed); letter issued 03
                 A1 reported 05, verified 06; B1 reported 16, verified 17 08:00
  T2 W04 乙物业  02: no faults (inspected by grid01 as assigned inspector of W04)
  T3 W13 甲物业  02: A2 fault (technical guidance); verified 10 without a report
  T4 W13 丙物业  03: B2 fault and A1 fault (on site); A1 reported 06, verified 11;
                 B2: reminded 09, overdue 10, escalated 12, fails re-inspection 13,
                 second round, verified 18 -> late
  T5 W25 乙物业  03: no faults (B2 not applicable)
  T6 W25 甲物业  04: A2 fault, method left to the office; guidance assigned 05; verified 20
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.inspections.fixtures import grid_point, principal

from watergrid.inspections import figures, service
from watergrid.inspections.models import Finding, InspEvent, Letter, Rectification, Target
from watergrid.inspections.schemas import (
    AnswerIn,
    CampaignCreate,
    ChecklistItem,
    InspectionSubmit,
    RectifyAssign,
    RectifyLimits,
    TargetIn,
    TemplateCreate,
    VerdictIn,
)
from watergrid.notify.models import InboxItem, OutboxMessage
from watergrid.timers import service as timers
from watergrid.timers.clock import FrozenClock

LOCAL = ZoneInfo("Asia/Shanghai")
ITEMS = ("A1", "A2", "B1", "B2")


def at(day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=LOCAL).astimezone(UTC)


def template() -> TemplateCreate:
    return TemplateCreate(
        code="E2E-T",
        name="测试检查表",
        items=[
            ChecklistItem(
                code="A1",
                section="供水",
                text="水箱加盖加锁",
                fault_rule="未加锁",
                severity="major",
            ),
            ChecklistItem(
                code="A2", section="供水", text="泵房无积水", fault_rule="积水", severity="minor"
            ),
            ChecklistItem(
                code="B1",
                section="排水",
                text="雨污分流到位",
                fault_rule="混接",
                severity="critical",
            ),
            ChecklistItem(
                code="B2", section="排水", text="雨水口无堵塞", fault_rule="堵塞", severity="minor"
            ),
        ],
    )


def answers(faults: dict[str, str | None], na: tuple[str, ...] = ()) -> dict[str, AnswerIn]:
    out = {}
    for code in ITEMS:
        if code in faults:
            out[code] = AnswerIn(answer="fault", note=f"{code} 现场问题", method=faults[code])  # type: ignore[arg-type]
        else:
            out[code] = AnswerIn(answer="na" if code in na else "ok")
    return out


def finding(db: Session, target: Target, code: str) -> Finding:
    f = db.scalar(select(Finding).where(Finding.target_id == target.id, Finding.item_code == code))
    assert f is not None
    return f


def actions(db: Session, f: Finding) -> list[tuple[str, str | None, str]]:
    return [
        (e.action, e.from_state, e.to_state)
        for e in db.scalars(
            select(InspEvent).where(InspEvent.finding_id == f.id).order_by(InspEvent.id)
        )
    ]


def test_campaign_to_full_coverage_with_three_methods_verified(
    db: Session, factory: Callable[[], Session]
) -> None:
    clock = FrozenClock(at(2, 8))
    drainage = principal(db, "drainage")
    grid01 = principal(db, "grid01")
    grid13 = principal(db, "grid13")

    def tick(when: datetime) -> int:
        clock.set(when)
        ran = timers.run_due(factory, worker_id="e2e", now=clock.now())
        db.expire_all()
        return ran

    # -- creation: template, campaign, targets (CSV + map), inspectors ------------------
    service.create_template(db, data=template(), actor=drainage, now=clock.now())
    campaign = service.create_campaign(
        db,
        actor=drainage,
        now=clock.now(),
        data=CampaignCreate(
            code="E2E-2026",
            name="测试专项排查",
            period_start=at(2).date(),
            period_end=at(31).date(),
            lead_department_code="DRAINAGE",
            template_code="E2E-T",
            rectify_limits=RectifyLimits(on_site=5, letter=10, guidance=15),
            escalation_workdays=2,
        ),
    )
    rows = [
        ("T1", "W01", 0, "甲物业"),
        ("T2", "W04", 0, "乙物业"),
        ("T3", "W13", 0, "甲物业"),
        ("T4", "W13", 1, "丙物业"),
        ("T5", "W25", 0, "乙物业"),
    ]
    lines = ["编号,小区名称,经度,纬度,建成年份,物业公司,联系人,联系电话"]
    for code, grid, shift, company in rows:
        lon, lat = grid_point(db, grid, shift)
        lines.append(
            f"{code},{code}小区,{lon},{lat},2020,{company},联系人{code},1390000{code[1]}000"
        )
    report = service.import_targets_csv(
        db,
        campaign_id=campaign.id,
        actor=drainage,
        now=clock.now(),
        data=("\ufeff" + "\n".join(lines)).encode(),
    )
    assert (report.created, report.updated) == (5, 0)
    lon, lat = grid_point(db, "W25", 1)
    service.add_target(
        db,
        campaign_id=campaign.id,
        actor=drainage,
        source="map",
        now=clock.now(),
        data=TargetIn(
            code="T6", name="T6小区", lon=lon, lat=lat, build_year=2021, property_company="甲物业"
        ),
    )
    t = {x.code: x for x in db.scalars(select(Target).where(Target.campaign_id == campaign.id))}
    assert len(t) == 6
    grid_codes = {c: service.target_read(db, target=x).grid.code for c, x in t.items()}
    assert grid_codes == {
        "T1": "W01",
        "T2": "W04",
        "T3": "W13",
        "T4": "W13",
        "T5": "W25",
        "T6": "W25",
    }
    assert grid01.person_id is not None
    w01_person = service.list_inspectors(db, campaign_id=campaign.id)  # none yet
    assert w01_person == []
    from watergrid.org import service as org_service

    person_code = next(p.code for p in org_service.get_people(db) if p.id == grid01.person_id)
    service.assign_inspector(
        db, campaign_id=campaign.id, grid_code="W04", person_code=person_code, actor=drainage
    )

    def inspect(
        who,
        code: str,
        when: datetime,
        faults: dict[str, str | None],  # type: ignore[no-untyped-def]
        na: tuple[str, ...] = (),
    ) -> None:
        clock.set(when)
        service.submit_inspection(
            db,
            target_id=t[code].id,
            actor=who,
            now=clock.now(),
            data=InspectionSubmit(
                client_key=f"e2e-{code}-initial",
                lon=t[code].lon,
                lat=t[code].lat,
                answers=answers(faults, na),
            ),
        )

    def reinspect(who, code: str, when: datetime, verdicts: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
        clock.set(when)
        v = {
            finding(db, t[code], item).id: VerdictIn(
                result=r, note="" if r == "passed" else "仍堵塞"
            )  # type: ignore[arg-type]
            for item, r in verdicts.items()
        }
        service.submit_inspection(
            db,
            target_id=t[code].id,
            actor=who,
            now=clock.now(),
            data=InspectionSubmit(
                client_key=f"e2e-{code}-{when:%d%H%M}", kind="reinspection", verdicts=v
            ),
        )

    def report_done(who, code: str, item: str, when: datetime) -> None:  # type: ignore[no-untyped-def]
        clock.set(when)
        service.report_rectified(
            db, finding_id=finding(db, t[code], item).id, note="已整改", actor=who, now=clock.now()
        )

    # -- inspections: coverage goes to 100 % ---------------------------------------------
    inspect(grid01, "T1", at(2, 9), {"A1": "on_site", "B1": "letter"})
    inspect(grid01, "T2", at(2, 11), {})
    inspect(grid13, "T3", at(2, 9), {"A2": "guidance"})
    # The office issues the letter the next day: one number covers T1's B1.
    clock.set(at(3, 9))
    service.assign(
        db,
        target_id=t["T1"].id,
        actor=drainage,
        now=clock.now(),
        data=RectifyAssign(
            finding_ids=[finding(db, t["T1"], "B1").id],
            method="letter",
            contact_name="排水管理科",
            contact_phone="0755-00000003",
        ),
    )
    inspect(grid13, "T4", at(3, 9), {"B2": "on_site", "A1": "on_site"})
    inspect(drainage, "T5", at(3, 14), {}, na=("B2",))
    mid = figures.campaign_figures(db, campaign_id=campaign.id, actor=None, as_of=at(3, 18))
    assert (mid.total.inspected, mid.total.coverage) == (5, pytest.approx(5 / 6))
    inspect(drainage, "T6", at(4, 10), {"A2": None})
    clock.set(at(5, 9))
    service.assign(
        db,
        target_id=t["T6"].id,
        actor=drainage,
        now=clock.now(),
        data=RectifyAssign(
            finding_ids=[finding(db, t["T6"], "A2").id],
            method="guidance",
            guidance="泵房增设集水坑和排水泵",
        ),
    )
    assert (
        figures.campaign_figures(
            db, campaign_id=campaign.id, actor=None, as_of=at(5, 10)
        ).total.coverage
        == 1.0
    )

    # The deadlines, in working days (weekends skipped).
    rect = {
        (c, i): db.get(Rectification, finding(db, t[c], i).rectification_id)
        for c, i in [
            ("T1", "A1"),
            ("T1", "B1"),
            ("T3", "A2"),
            ("T4", "B2"),
            ("T4", "A1"),
            ("T6", "A2"),
        ]
    }
    assert rect[("T1", "A1")].due_at == at(9, 9)  # Mon 02 09:00 + 5 wd
    assert rect[("T4", "B2")].due_at == at(10, 9)  # Tue 03 + 5 wd
    assert rect[("T1", "B1")].due_at == at(17, 9)  # letter: Tue 03 + 10 wd
    assert rect[("T3", "A2")].due_at == at(23, 9)  # guidance: Mon 02 + 15 wd
    assert rect[("T6", "A2")].due_at == at(26, 9)  # guidance from Thu 05
    assert {r.method for r in rect.values()} == {"on_site", "letter", "guidance"}
    letter = db.scalar(select(Letter).where(Letter.target_id == t["T1"].id))
    assert letter is not None and letter.number == "光水排查函〔2026〕1号"
    assert letter.addressee == "甲物业" and letter.due_at == at(17, 9)
    assert [i["finding_id"] for i in letter.items] == [finding(db, t["T1"], "B1").id]

    # -- rectification and re-inspection, with the sweeper running --------------------------
    report_done(grid01, "T1", "A1", at(5, 15))
    reinspect(grid01, "T1", at(6, 10), {"A1": "passed"})
    report_done(grid13, "T4", "A1", at(6, 16))
    assert tick(at(9, 9, 30)) >= 1  # T4 B2 reached 80 % of its time: reminded
    reinspect(grid13, "T3", at(10, 8), {"A2": "passed"})
    tick(at(10, 9, 30))  # T4 B2 overdue
    reinspect(grid13, "T4", at(11, 10), {"A1": "passed"})
    mid = figures.campaign_figures(db, campaign_id=campaign.id, actor=None, as_of=at(12, 10))
    tick(at(12, 9, 30))  # T4 B2 escalated (2 working days after its due time)
    b2 = finding(db, t["T4"], "B2")
    assert db.get(Rectification, b2.rectification_id).escalated_at == at(12, 9, 30)
    reinspect(grid13, "T4", at(13, 10), {"B2": "failed"})
    b2 = finding(db, t["T4"], "B2")
    assert (b2.state, b2.rounds) == ("rectifying", 2)
    assert db.get(Rectification, b2.rectification_id).due_at == at(20, 10)
    tick(at(13, 10, 30))  # T1 B1's letter reaches 80 %: reminded
    report_done(drainage, "T1", "B1", at(16, 11))
    reinspect(drainage, "T1", at(17, 8), {"B1": "passed"})
    reinspect(grid13, "T4", at(18, 15), {"B2": "passed"})
    reinspect(drainage, "T6", at(20, 10), {"A2": "passed"})
    assert tick(at(31, 12)) == 0  # every timer was cancelled when its work was done

    # -- the history of the late one, row by row -------------------------------------------
    b2 = finding(db, t["T4"], "B2")
    assert actions(db, b2) == [
        ("create", None, "open"),
        ("assign", "open", "rectifying"),
        ("remind", "rectifying", "rectifying"),
        ("overdue", "rectifying", "rectifying"),
        ("escalate", "rectifying", "rectifying"),
        ("verify_failed", "rectifying", "open"),
        ("assign", "open", "rectifying"),
        ("verify", "rectifying", "verified"),
    ]
    assert b2.on_time is False
    events = list(
        db.scalars(select(InspEvent).where(InspEvent.finding_id == b2.id).order_by(InspEvent.id))
    )
    assert [e.actor_role for e in events][2:5] == ["system"] * 3
    assert events[0].actor_name == grid13.display_name and events[5].note == "仍堵塞"
    b1 = finding(db, t["T1"], "B1")
    assert [a for a, _, _ in actions(db, b1)] == [
        "create",
        "letter",
        "remind",
        "report_done",
        "verify",
    ]
    assert b1.on_time is True

    # Notifications went through the outbox: the escalation reached the bureau leader.
    leader = principal(db, "leader")
    escalations = list(
        db.scalars(
            select(InboxItem).where(
                InboxItem.person_id == leader.person_id, InboxItem.topic == "inspections.escalated"
            )
        )
    )
    assert len(escalations) == 1 and "T4小区" in escalations[0].title
    sms = list(
        db.scalars(
            select(OutboxMessage).where(
                OutboxMessage.channel == "sms", OutboxMessage.topic.like("inspections.%")
            )
        )
    )
    assert sms and all(m.address.startswith("1390000") for m in sms)

    # -- figures against the hand counts ---------------------------------------------------
    # Mid-campaign (12 March 10:00): T4 B2 open and overdue; due or done: T1 A1, T3 A2,
    # T4 A1 (verified) and T4 B2 (past due); T1 B1 and T6 A2 not yet due.
    assert (
        mid.total.verified,
        mid.total.due_or_done,
        mid.total.on_time,
        mid.total.open_overdue,
    ) == (3, 4, 3, 1)

    f = figures.campaign_figures(db, campaign_id=campaign.id, actor=None, as_of=at(31, 12))
    tot = f.total
    assert (tot.targets, tot.inspected, tot.coverage) == (6, 6, 1.0)
    assert (tot.faulty_targets, tot.fault_rate) == (4, pytest.approx(4 / 6))
    assert (tot.findings, tot.verified, tot.rectification_rate) == (6, 6, 1.0)
    assert (tot.due_or_done, tot.on_time, tot.on_time_rate) == (6, 5, pytest.approx(5 / 6))
    assert tot.open_overdue == 0
    assert f.by_method == {"on_site": 3, "letter": 1, "guidance": 2, "unassigned": 0}

    def row(rows, label):  # type: ignore[no-untyped-def]
        r = next(x for x in rows if x.label == label)
        return (
            r.targets,
            r.inspected,
            r.faulty_targets,
            r.findings,
            r.verified,
            r.on_time,
            r.on_time_rate,
        )

    assert row(f.by_subdistrict, "新湖街道") == (2, 2, 1, 2, 2, 2, 1.0)
    assert row(f.by_subdistrict, "马田街道") == (2, 2, 2, 3, 3, 2, pytest.approx(2 / 3))
    assert row(f.by_subdistrict, "公明街道") == (2, 2, 1, 1, 1, 1, 1.0)
    assert row(f.by_grid, "W01 楼村社区") == (1, 1, 1, 2, 2, 2, 1.0)
    assert row(f.by_grid, "W04 楼村社区第二网格") == (1, 1, 0, 0, 0, 0, None)
    assert row(f.by_grid, "W13 薯田埔社区") == (2, 2, 2, 3, 3, 2, pytest.approx(2 / 3))
    assert row(f.by_company, "甲物业") == (3, 3, 3, 4, 4, 4, 1.0)
    assert row(f.by_company, "乙物业") == (2, 2, 0, 0, 0, 0, None)
    assert row(f.by_company, "丙物业") == (1, 1, 1, 2, 2, 1, 0.5)
    assert sum(r.findings for r in f.by_grid) == tot.findings

    # The Excel export carries the same numbers.
    wb = load_workbook(io.BytesIO(figures.workbook(db, figures=f, actor=None)))
    assert wb.sheetnames == ["汇总", "按街道", "按网格", "按物业公司", "问题清单"]
    head = [c.value for c in wb["汇总"][1]]
    values = dict(zip(head, [c.value for c in wb["汇总"][2]], strict=True))
    assert values["覆盖率"] == 1.0 and values["按时整改率"] == pytest.approx(5 / 6)
    assert values["问题数"] == 6 and values["已整改销号"] == 6
    companies = {r[0].value: r[7].value for r in wb["按物业公司"].iter_rows(min_row=2)}
    assert companies == {"丙物业": 2, "乙物业": 0, "甲物业": 4}
    listing = list(wb["问题清单"].iter_rows(min_row=2, values_only=True))
    assert len(listing) == 6 and {r[8] for r in listing} == {"现场交办", "发函提醒", "技术指导"}
    assert sum(1 for r in listing if r[14] == "是") == 5
