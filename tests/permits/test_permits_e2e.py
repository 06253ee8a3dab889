"""Statutory services end to end, on every backend, with a controllable clock:

A. a drainage connection application with a correction request: the clock stops when the
   corrections are asked for (no due time, no timers, nothing fires at the old due time) and
   resumes when they arrive, with the due time moved by exactly the working time it stood;
   then accepted and approved within its limit (on time).
B. a soil-and-water conservation review nobody decides in time: reminded at 50 % and 80 %,
   overdue at its due time, escalated to the bureau leaders one working day later; decided
   late. The KPI figure counts one of two on time.

March 2026, local time; no holidays that month."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.inspections.fixtures import grid_point, principal

from watergrid.notify.models import InboxItem, OutboxMessage
from watergrid.permits import jobs, service
from watergrid.permits.demo import blank_pdf, credit_code
from watergrid.permits.documents import Upload
from watergrid.permits.models import Application, PermitEvent
from watergrid.permits.schemas import ApplicationCreate, StaffActionRequest
from watergrid.timers import service as timers
from watergrid.timers.clock import FrozenClock

LOCAL = ZoneInfo("Asia/Shanghai")
PDF = blank_pdf("test document")


def at(day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=LOCAL).astimezone(UTC)


def drainage_application(
    db: Session, key: str = "e2e-drain-0001", **over: object
) -> ApplicationCreate:
    lon, lat = grid_point(db, "W17")
    data: dict[str, object] = dict(
        service_code="drainage_connection",
        client_key=key,
        project_name="测试排水接驳项目",
        project_address="光明区测试路1号",
        lon=lon,
        lat=lat,
        applicant_name="深圳市测试建设有限公司",
        credit_code=credit_code(901),
        contact_name="王工",
        contact_phone="13700009001",
        sms_consent=True,
        details={"discharge_type": "both", "sewage_m3_per_day": 50, "connection_points": 2},
    )
    data.update(over)
    return ApplicationCreate.model_validate(data)


def swc_application(db: Session, key: str = "e2e-swc-0001") -> ApplicationCreate:
    lon, lat = grid_point(db, "W33")
    return ApplicationCreate(
        service_code="swc_plan",
        client_key=key,
        project_name="测试产业园水土保持方案",
        project_address="光明区测试路2号",
        lon=lon,
        lat=lat,
        applicant_name="深圳市测试园区有限公司",
        credit_code=credit_code(902),
        contact_name="李工",
        contact_phone="13700009002",
        details={"area_ha": 8.5, "earthwork_m3": 120000, "project_kind": "房屋建筑"},
    )


def docs(*codes: str) -> list[Upload]:
    return [Upload(c, f"{c}.pdf", PDF) for c in codes]


DRAIN_DOCS = ("application_form", "business_licence", "planning_permit", "drainage_drawings")
SWC_DOCS = ("application_letter", "plan_report", "project_approval", "business_licence")


def history(db: Session, app_id: int) -> list[tuple[str, str | None, str]]:
    return [
        (e.action, e.from_state, e.to_state)
        for e in db.scalars(
            select(PermitEvent).where(PermitEvent.application_id == app_id).order_by(PermitEvent.id)
        )
    ]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(at(2, 9))


@pytest.fixture
def tick(
    clock: FrozenClock, factory: Callable[[], Session], db: Session
) -> Callable[[datetime], int]:
    def run(when: datetime) -> int:
        clock.set(when)
        ran = timers.run_due(factory, worker_id="permits-e2e", now=clock.now())
        db.expire_all()
        return ran

    return run


def test_correction_stops_the_clock_and_the_decision_is_on_time(
    db: Session, clock: FrozenClock, tick: Callable[[datetime], int]
) -> None:
    handler = principal(db, "drainage")
    r = service.submit(
        db, data=drainage_application(db), uploads=docs(*DRAIN_DOCS), now=clock.now()
    )
    assert r.number == "PSBZ-2026-00001" and r.access_token and not r.replayed
    assert r.due_at == at(16, 9)  # Mon 2 March 09:00 + 10 working days
    assert {i.key for i in jobs.pending_items(db, application_id=r.id)} == {
        "remind:50",
        "remind:80",
        "overdue",
        "escalate",
    }

    # 补正: the clock stops. No due time, no timers.
    clock.set(at(3, 10))
    view = service.act(
        db,
        application_id=r.id,
        action="request_correction",
        actor=handler,
        now=clock.now(),
        req=StaffActionRequest(doc_codes=["drainage_drawings"], note="图纸未标明接驳井位置"),
    )
    assert view.state == "correction" and view.clock.paused and view.clock.due_at is None
    assert view.clock.used_workdays == pytest.approx(1 + 1 / 24, abs=0.01)
    assert jobs.pending_items(db, application_id=r.id) == []
    public = service.public_status(db, number=r.number, now=at(5, 12))
    assert public.paused and public.remaining_workdays == pytest.approx(10 - 1 - 1 / 24, abs=0.01)
    # The corrections take six calendar days; nothing fires at the original due time.
    assert tick(at(16, 9, 30)) == 0
    app = db.get(Application, r.id)
    assert app.overdue_at is None and app.state == "correction"

    # Back in the past to when they actually arrived: Monday 9 March 10:00. The applicant
    # needs the number and the token; every document asked for must come.
    with pytest.raises(Exception) as missing:
        service.supplement(
            db, number=r.number, token=r.access_token, uploads=[], note="", now=at(9, 10)
        )
    assert getattr(missing.value, "status", None) == 422
    with pytest.raises(Exception) as wrong:
        service.supplement(
            db,
            number=r.number,
            token="not-the-token",
            uploads=docs("drainage_drawings"),
            note="",
            now=at(9, 10),
        )
    assert getattr(wrong.value, "status", None) == 404
    view = service.supplement(
        db,
        number=r.number,
        token=r.access_token,
        uploads=docs("drainage_drawings"),
        note="已补充接驳井位置",
        now=at(9, 10),
    )
    # Stood still Tue 3 10:00 → Mon 9 10:00 = 4 working days: due moves from Mon 16 to Fri 20.
    assert view.state == "submitted" and not view.clock.paused
    assert view.clock.due_at == at(20, 9)
    assert view.suspensions[0].resumed_at == at(9, 10)
    assert {i.key for i in jobs.pending_items(db, application_id=r.id)} == {
        "remind:50",
        "remind:80",
        "overdue",
        "escalate",
    }
    # 50 % of the counted 240 h: 25 h before the stop, 95 h after Mon 9 10:00 -> Fri 13 09:00.
    assert jobs.pending_items(db, application_id=r.id)[0].due_at == at(13, 9)

    clock.set(at(10, 9))
    service.act(
        db,
        application_id=r.id,
        action="accept",
        actor=handler,
        now=clock.now(),
        req=StaffActionRequest(),
    )
    assert tick(at(13, 10)) == 1  # the 50 % reminder
    clock.set(at(13, 15))
    view = service.act(
        db,
        application_id=r.id,
        action="approve",
        actor=handler,
        now=clock.now(),
        req=StaffActionRequest(conditions="按核准图纸施工\n接驳完成后报验"),
    )
    assert view.state == "approved" and view.on_time is True
    assert view.decision_number == "光水许准〔2026〕1号"
    # Used (a working day counts 24 h): Mon 2 09:00-24:00 15 h + Tue 3 00:00-10:00 10 h, then
    # Mon 9 14 h, Tue-Thu 3 × 24 h, Fri 13 15 h = 126 h.
    assert view.clock.used_workdays == pytest.approx(126 / 24, abs=0.01)
    assert jobs.pending_items(db, application_id=r.id) == []
    assert history(db, r.id) == [
        ("submit", None, "submitted"),
        ("request_correction", "submitted", "correction"),
        ("supplement", "correction", "submitted"),
        ("accept", "submitted", "under_review"),
        ("remind", "under_review", "under_review"),
        ("approve", "under_review", "approved"),
    ]
    events = list(
        db.scalars(
            select(PermitEvent).where(PermitEvent.application_id == r.id).order_by(PermitEvent.id)
        )
    )
    assert events[0].actor_role == "applicant" and events[1].actor_name == handler.display_name
    assert events[1].note == "图纸未标明接驳井位置"
    # The applicant heard about it by SMS (consent given), at every step that concerns them.
    sms = [
        m.subject
        for m in db.scalars(
            select(OutboxMessage).where(
                OutboxMessage.channel == "sms",
                OutboxMessage.subject_id == str(r.id),
                OutboxMessage.subject_type == "permit_application",
            )
        )
    ]
    assert len(sms) == 4 and any(
        "补正" in m
        for m in db.scalars(
            select(OutboxMessage.body).where(
                OutboxMessage.channel == "sms", OutboxMessage.subject_id == str(r.id)
            )
        )
    )
    public = service.public_status(db, number=r.number.lower(), now=at(14))
    assert public.state == "approved" and public.decision_number == view.decision_number
    assert [e.action_label for e in public.timeline] == [
        "提交申请",
        "一次性告知补正",
        "补正材料已提交",
        "受理",
        "准予许可",
    ]
    assert "王工" not in public.model_dump_json() and "13700009001" not in public.model_dump_json()

    summary = service.on_time_summary(db, since=at(1, 0), until=at(31, 23))
    assert (summary.decided, summary.on_time, summary.rate) == (1, 1, 1.0)


def test_late_application_is_reminded_overdue_escalated_and_counts_as_late(
    db: Session, clock: FrozenClock, tick: Callable[[datetime], int]
) -> None:
    soil = principal(db, "admin")  # no soil-and-water account in the registry demo
    leader = principal(db, "leader")
    ontime = service.submit(
        db,
        data=drainage_application(db, key="e2e-drain-0002"),
        uploads=docs(*DRAIN_DOCS),
        now=at(2, 9),
    )
    r = service.submit(db, data=swc_application(db), uploads=docs(*SWC_DOCS), now=at(2, 9))
    assert r.number == "STBC-2026-00001" and r.due_at == at(23, 9)  # 15 working days
    service.act(
        db, application_id=r.id, action="accept", actor=soil, now=at(3, 9), req=StaffActionRequest()
    )
    drainage = principal(db, "drainage")
    service.act(
        db,
        application_id=ontime.id,
        action="accept",
        actor=drainage,
        now=at(3, 9),
        req=StaffActionRequest(),
    )
    service.act(
        db,
        application_id=ontime.id,
        action="approve",
        actor=drainage,
        now=at(5, 9),
        req=StaffActionRequest(),
    )

    tick(at(12, 9))  # 50 %: 7.5 working days -> Wed 11 21:00
    tick(at(18, 10))  # 80 %: 12 working days -> Wed 18 09:00
    app = db.get(Application, r.id)
    assert app.overdue_at is None
    tick(at(23, 9, 30))
    app = db.get(Application, r.id)
    assert app.overdue_at == at(23, 9, 30) and app.escalated_at is None
    assert service.clock(db, app=app, now=at(23, 10)).overdue
    tick(at(24, 9, 30))  # one working day later
    app = db.get(Application, r.id)
    assert app.escalated_at == at(24, 9, 30)
    assert [a for a, _, _ in history(db, r.id)] == [
        "submit",
        "accept",
        "remind",
        "remind",
        "overdue",
        "escalate",
    ]
    inbox = list(
        db.scalars(
            select(InboxItem).where(
                InboxItem.person_id == leader.person_id, InboxItem.topic == "permits.escalated"
            )
        )
    )
    assert len(inbox) == 1 and r.number in inbox[0].title
    listed = service.list_applications(db, actor=soil, now=at(24, 10), overdue=True)
    assert [x.number for x in listed] == [r.number] and listed[0].escalated
    # The section's desk (drainage staff) does not see it: other department.
    assert service.list_applications(db, actor=drainage, now=at(24, 10), overdue=True) == []

    view = service.act(
        db,
        application_id=r.id,
        action="approve",
        actor=soil,
        now=at(25, 10),
        req=StaffActionRequest(),
    )
    # Mon 2 09:00 → Wed 25 10:00: 15 h + 16 full working days + 10 h = 409 h.
    assert view.on_time is False and view.clock.used_workdays == pytest.approx(409 / 24, abs=0.01)
    assert tick(at(31, 9)) == 0
    summary = service.on_time_summary(db, since=at(1, 0), until=at(31, 23))
    assert (summary.decided, summary.on_time, summary.rate) == (2, 1, 0.5)
    by = {s.service_code: (s.decided, s.on_time) for s in summary.by_service}
    assert by == {"drainage_connection": (1, 1), "swc_plan": (1, 0)}
    # As of the 24th, one application was open and overdue.
    mid = service.on_time_summary(db, since=at(1, 0), until=at(24, 12))
    assert (mid.open, mid.open_overdue) == (1, 1)


def test_a_retried_submit_returns_the_same_application_and_token(db: Session) -> None:
    data = drainage_application(db, key="e2e-retry-0001")
    first = service.submit(db, data=data, uploads=docs(*DRAIN_DOCS), now=at(2, 9))
    again = service.submit(db, data=data, uploads=docs(*DRAIN_DOCS), now=at(2, 9, 1))
    assert again.replayed and (again.id, again.access_token) == (first.id, first.access_token)
    changed = data.model_copy(update={"project_name": "另一个项目"})
    with pytest.raises(Exception) as exc:
        service.submit(db, data=changed, uploads=docs(*DRAIN_DOCS), now=at(2, 9, 2))
    assert getattr(exc.value, "code", None) == "client_key_reused"
    assert (
        db.scalar(select(Application.id).where(Application.client_key == "e2e-retry-0001"))
        == first.id
    )
    assert first.due_at - at(2, 9) == timedelta(days=14)
