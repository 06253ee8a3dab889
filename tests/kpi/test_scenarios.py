"""Hand-built scenarios, each giving exactly the figures worked out by hand in docs/kpi.md.

Clock: T0 is Monday 2026-03-02 09:00 (Asia/Shanghai). Every order is a drain backflow
(urgent): response due 2 clock hours after intake (11:00); handling due 2 working days after
dispatch (dispatch at 09:10 -> Wednesday 09:10)."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest
from sqlalchemy.orm import Session
from tests.kpi.helpers import T0, D, H, M, act, dispatched, new_order, rate

from watergrid.kpi import rollups, service
from watergrid.kpi.models import OrderFact

MARCH = (date(2026, 3, 1), date(2026, 3, 31))
LATER = T0 + 10 * D  # every deadline of every scenario has passed


def fact(db: Session, oid: int) -> OrderFact:
    db.expire_all()
    f = db.get(OrderFact, oid)
    assert f is not None
    return f


def district(db: Session, now=LATER) -> service.Figures:  # type: ignore[no-untyped-def]
    return service.figures(db, dim="all", key="", start=MARCH[0], end=MARCH[1], now=now)


def outcomes(db: Session, oid: int) -> tuple[str, str]:
    f = fact(db, oid)
    return f.resp_outcome, f.hand_outcome


def test_answered_and_handled_on_time(db: Session) -> None:
    oid = dispatched(db)
    act(db, oid, "respond", "watercorp", 1 * H, mode="on_site")
    act(db, oid, "resolve", "watercorp", 1 * D, note="已处理")
    assert outcomes(db, oid) == ("met", "met")
    f = fact(db, oid)
    assert f.resp_seconds == 3600 and f.hand_seconds == 24 * 3600 - 600
    fig = district(db)
    assert fig.value("response_rate") == 1 and fig.value("handling_rate") == 1
    assert fig.value("response_mean_h") == 1.0


def test_answered_late(db: Session) -> None:
    oid = dispatched(db)
    act(db, oid, "respond", "watercorp", 3 * H, mode="on_site")  # 12:00 > 11:00
    act(db, oid, "resolve", "watercorp", 1 * D, note="已处理")
    assert outcomes(db, oid) == ("missed", "met")
    fig = district(db)
    assert fig.value("response_rate") == 0 and fig.value("response_missed") == 1
    assert fig.value("handling_rate") == 1


def test_suspended_before_its_deadline_is_left_out_until_resumed(db: Session) -> None:
    oid = dispatched(db)
    act(db, oid, "suspend", "watercorp", 30 * M, note="等待业主配合")
    assert outcomes(db, oid) == ("paused", "paused")
    assert district(db).r_due == 0 and district(db).h_due == 0
    # Resumed on Wednesday 09:00: 1.5 h of the response limit were left -> due 10:30.
    act(db, oid, "resume", "watercorp", 2 * D)
    f = fact(db, oid)
    assert f.resp_outcome == "open" and f.resp_due_day == date(2026, 3, 4)
    act(db, oid, "respond", "watercorp", 2 * D + 1 * H, mode="on_site")  # Wed 10:00
    act(db, oid, "resolve", "watercorp", 3 * D, note="已处理")  # Thu 09:00 < Fri 08:40
    assert outcomes(db, oid) == ("met", "met")
    # 49 h from intake to response, 47.5 h of them suspended.
    assert fact(db, oid).resp_seconds == int(1.5 * 3600)


def test_suspended_after_its_response_deadline_stays_missed(db: Session) -> None:
    oid = dispatched(db)
    act(db, oid, "suspend", "watercorp", 3 * H, note="等待业主配合")  # 12:00, unanswered
    assert outcomes(db, oid) == ("missed", "paused")
    fig = district(db)
    assert (fig.r_due, fig["r_missed"], fig.h_due) == (1, 1, 0)


def test_extended_handling_is_judged_against_the_approved_deadline(db: Session) -> None:
    oid = dispatched(db)
    act(db, oid, "respond", "watercorp", 1 * H, mode="on_site")
    act(db, oid, "request_extension", "watercorp", 1 * D, amount=1, note="需要更换管段")
    act(db, oid, "approve_extension", "leader", 1 * D + 1 * H)
    act(db, oid, "resolve", "watercorp", 2 * D + 2 * H, note="已处理")  # Wed 11:00 < Thu 09:10
    assert outcomes(db, oid) == ("met", "met")
    f = fact(db, oid)
    assert f.extensions == 1 and f.hand_due_day == date(2026, 3, 5)
    assert district(db)["extensions"] == 1


def test_rejected_in_time_answers_the_response_and_is_not_a_case(db: Session) -> None:
    oid = new_order(db)
    act(db, oid, "reject", "watercorp", 30 * M, reason="not_water_affairs", note="非水务事项")
    assert outcomes(db, oid) == ("met", "none")
    fig = district(db)
    assert (fig["created"], fig["valid"], fig["rejected"]) == (1, 0, 1)
    assert fig.value("response_rate") == 1 and fig.h_due == 0
    assert fig.value("self_discovery_rate") is None


def test_rejected_late_is_a_late_response(db: Session) -> None:
    oid = new_order(db)
    act(db, oid, "reject", "watercorp", 5 * H, reason="invalid", note="信息无效")
    assert outcomes(db, oid) == ("missed", "none")
    assert fact(db, oid).resp_seconds == 5 * 3600


def test_merged_in_time_is_left_out_and_merged_late_stays_missed(db: Session) -> None:
    survivor = dispatched(db)
    early = new_order(db, at=5 * M)
    late = new_order(db, at=5 * M)
    from watergrid.workorders.models import WorkOrder

    number = db.get(WorkOrder, survivor).number  # type: ignore[union-attr]
    act(db, early, "merge", "watercorp", 20 * M, into_number=number)
    act(db, late, "merge", "watercorp", 4 * H, into_number=number)  # due was 11:05
    assert outcomes(db, early) == ("none", "none")
    assert outcomes(db, late) == ("missed", "none")
    fig = district(db)
    assert (fig["created"], fig["valid"], fig["merged"]) == (3, 1, 2)


def test_reopened_after_an_on_time_resolution(db: Session) -> None:
    oid = dispatched(db)
    act(db, oid, "respond", "watercorp", 1 * H, mode="on_site")
    act(db, oid, "resolve", "watercorp", 1 * D, note="已处理")
    act(db, oid, "verify", "grid01", 1 * D + 1 * H)
    act(db, oid, "reopen", "leader", 1 * D + 2 * H, note="群众反映仍倒灌")  # Tue 11:00
    assert outcomes(db, oid) == ("met", "open")  # fresh deadline: Thu 11:00
    act(db, oid, "respond", "watercorp", 1 * D + 3 * H, mode="on_site")
    act(db, oid, "resolve", "watercorp", 2 * D, note="加装止回阀")  # Wed 09:00
    f = fact(db, oid)
    assert (f.resp_outcome, f.hand_outcome, f.reworks) == ("met", "met", 1)
    assert f.hand_seconds == 22 * 3600 and f.hand_due_day == date(2026, 3, 5)
    assert district(db)["reworks"] == 1


def test_reopened_after_a_late_resolution_stays_late(db: Session) -> None:
    oid = dispatched(db)
    act(db, oid, "respond", "watercorp", 1 * H, mode="on_site")
    act(db, oid, "resolve", "watercorp", 3 * D, note="已处理")  # Thu 09:00 > Wed 09:10
    act(db, oid, "reopen", "leader", 3 * D + 1 * H, note="复查未通过")
    assert outcomes(db, oid) == ("met", "missed")  # decided: an earlier round was late
    act(db, oid, "respond", "watercorp", 3 * D + 90 * M, mode="on_site")
    act(db, oid, "resolve", "watercorp", 3 * D + 2 * H, note="返工完成")
    assert outcomes(db, oid) == ("met", "missed")


def test_still_open_before_and_after_its_deadline(db: Session) -> None:
    oid = dispatched(db)
    assert outcomes(db, oid) == ("open", "open")
    before = district(db, now=T0 + 1 * H)  # 10:00: nothing due yet
    assert (before.r_due, before.r_pending, before.value("response_rate")) == (0, 1, None)
    after = district(db, now=T0 + 3 * H)  # 12:00: the response deadline has passed
    assert (after.r_due, after.r_overdue_open, after.value("response_rate")) == (1, 1, 0)
    assert (after.h_due, after.h_pending) == (0, 1)
    much_later = district(db, now=T0 + 3 * D)  # Thursday: the handling one too
    assert (much_later.h_due, much_later.h_overdue_open) == (1, 1)
    assert service.overdue_now(db, dim="all", key="", now=T0 + 3 * D) == {
        "response": 1,
        "handling": 1,
    }
    # Today's deadlines are split at `now`: one due at 11:00 on the day itself.
    same_day = service.figures(
        db, dim="all", key="", start=date(2026, 3, 2), end=date(2026, 3, 2), now=T0 + 3 * H
    )
    assert same_day.r_overdue_open == 1 and same_day["r_open_today_overdue"] == 1


def test_all_scenarios_together_give_the_worked_example(db: Session) -> None:
    """docs/kpi.md, "Worked example": twelve orders in March 2026."""
    from watergrid.workorders.models import WorkOrder

    a = dispatched(db, source="patrol", actor="grid01")  # A: on time, patrol
    act(db, a, "respond", "watercorp", 1 * H, mode="on_site")
    act(db, a, "resolve", "watercorp", 1 * D, note="ok")
    number_a = db.get(WorkOrder, a).number  # type: ignore[union-attr]
    b = dispatched(db)  # B: answered late
    act(db, b, "respond", "watercorp", 3 * H, mode="on_site")
    act(db, b, "resolve", "watercorp", 1 * D, note="ok")
    c = dispatched(db)  # C: suspended in time, resumed, on time
    act(db, c, "suspend", "watercorp", 30 * M, note="wait")
    act(db, c, "resume", "watercorp", 2 * D)
    act(db, c, "respond", "watercorp", 2 * D + 1 * H, mode="on_site")
    act(db, c, "resolve", "watercorp", 3 * D, note="ok")
    d = dispatched(db)  # D: suspended after the response deadline, still suspended
    act(db, d, "suspend", "watercorp", 3 * H, note="wait")
    e = dispatched(db)  # E: extended, resolved within the extension
    act(db, e, "respond", "watercorp", 1 * H, mode="on_site")
    act(db, e, "request_extension", "watercorp", 1 * D, amount=1, note="more")
    act(db, e, "approve_extension", "leader", 1 * D + 1 * H)
    act(db, e, "resolve", "watercorp", 2 * D + 2 * H, note="ok")
    f_ = new_order(db)  # F: rejected in time
    act(db, f_, "reject", "watercorp", 30 * M, reason="not_water_affairs", note="no")
    g = new_order(db)  # G: rejected late
    act(db, g, "reject", "watercorp", 5 * H, reason="invalid", note="no")
    h = new_order(db, at=5 * M)  # H: merged in time
    act(db, h, "merge", "watercorp", 20 * M, into_number=number_a)
    i = new_order(db, at=5 * M)  # I: merged after its response deadline
    act(db, i, "merge", "watercorp", 4 * H, into_number=number_a)
    j = dispatched(db)  # J: reopened after an on-time resolution, on time again
    act(db, j, "respond", "watercorp", 1 * H, mode="on_site")
    act(db, j, "resolve", "watercorp", 1 * D, note="ok")
    act(db, j, "reopen", "leader", 1 * D + 2 * H, note="again")
    act(db, j, "respond", "watercorp", 1 * D + 3 * H, mode="on_site")
    act(db, j, "resolve", "watercorp", 2 * D, note="ok")
    k = dispatched(db)  # K: late resolution, reopened, quick rework
    act(db, k, "respond", "watercorp", 1 * H, mode="on_site")
    act(db, k, "resolve", "watercorp", 3 * D, note="ok")
    act(db, k, "reopen", "leader", 3 * D + 1 * H, note="again")
    act(db, k, "respond", "watercorp", 3 * D + 90 * M, mode="on_site")
    act(db, k, "resolve", "watercorp", 3 * D + 2 * H, note="ok")
    dispatched(db, source="patrol", actor="grid01")  # L: never acted on
    rate(db, a, 5, 2 * D)
    rate(db, b, 3, 2 * D)
    rate(db, e, 4, 3 * D)

    fig = district(db)
    # Response: met A C E F J K; missed B D G I L; H not counted.
    assert (fig["r_met"], fig.r_due) == (6, 11)
    assert Fraction(fig["r_met"], fig.r_due) == Fraction(6, 11)
    assert round(fig.value("response_rate") * 100, 2) == 54.55  # type: ignore[operator]
    # Handling: met A B C E J; missed K, L (overdue); D paused; F G H I not dispatched.
    assert (fig["h_met"], fig.h_due) == (5, 7)
    assert round(fig.value("handling_rate") * 100, 2) == 71.43  # type: ignore[operator]
    assert round(fig.value("closure_rate") * 100, 2) == 85.71  # type: ignore[operator]
    # Self-discovery: valid A B C D E J K L, patrol A L.
    assert (fig["patrol"], fig["valid"]) == (2, 8) and fig.value("self_discovery_rate") == 0.25
    assert fig.value("satisfaction_rate") == pytest.approx(2 / 3)
    assert fig.value("rating_mean") == 4.0
    assert (fig.value("response_missed"), fig.value("handling_missed")) == (5, 2)
    assert (fig["reworks"], fig["extensions"]) == (2, 1)

    # The same figures, rebuilt from history, match the incremental ones.
    before = rollups.rollup_snapshot(db)
    rollups.rebuild(db, now=LATER)
    assert rollups.rollup_snapshot(db) == before


def test_rebuilt_sums_hold_more_than_32_bits(db: Session) -> None:
    """A busy day's seconds add up past 2**31; the SQL rebuild must not overflow."""
    from sqlalchemy import select, update

    from watergrid.kpi.models import kpi_daily

    oid = dispatched(db)
    act(db, oid, "respond", "watercorp", 1 * H, mode="on_site")
    db.execute(update(OrderFact).where(OrderFact.order_id == oid).values(resp_seconds=3 * 10**9))
    rollups.rebuild_rollups(db)
    got = db.execute(
        select(kpi_daily.c.r_secs).where(
            kpi_daily.c.dim == "all", kpi_daily.c.day == date(2026, 3, 2)
        )
    ).scalar_one()
    assert got == 3 * 10**9
