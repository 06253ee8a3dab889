"""The reporter's and the public's side: tracking by token, rating rules, the public listing
and updates (what Open311 is built on), badges and the supervision list."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.conftest import login_token
from tests.workorders.helpers import T0, grid_point, report

from watergrid.auth import service as auth_service
from watergrid.auth.principal import Principal
from watergrid.errors import AppError
from watergrid.notify.models import OutboxMessage
from watergrid.workorders import service
from watergrid.workorders.schemas import OrderCreate


def who(db: Session, username: str) -> Principal:
    user = auth_service.get_by_username(db, username=username)
    assert user is not None
    return auth_service.load_principal(db, user=user)


def _order(db: Session, grid: str = "W30", **over: object) -> service.OrderReceipt:
    lon, lat = grid_point(db, grid)
    return service.create_order(
        db,
        data=OrderCreate(**report(lon=lon, lat=lat, **over)),
        source="public_web",
        actor=None,
        idempotency_key=None,
        now=T0,
    ).receipt


def _resolve(db: Session, order_id: int) -> None:
    duty = who(db, "duty")
    for action, params in (
        ("accept", {}),
        ("dispatch", {}),
        ("respond", {"mode": "on_site"}),
        ("resolve", {"note": "已清理完毕"}),
    ):
        service.transition(
            db, order_id=order_id, action=action, actor=duty, now=T0 + timedelta(hours=1), **params
        )


def test_track_by_token_without_a_phone(client: TestClient, db: Session) -> None:
    lon, lat = grid_point(db, "W31")
    r = client.post(
        "/api/v1/orders", json=report(lon=lon, lat=lat, reporter_phone="", phone_consent=False)
    )
    assert r.status_code == 201
    number, token = r.json()["number"], r.json()["track_token"]
    t = client.post("/api/v1/track", json={"number": number, "token": token})
    assert t.status_code == 200 and t.json()["state"] == "submitted"
    assert client.post("/api/v1/track", json={"number": number, "token": "nope"}).status_code == 404
    assert (
        client.post("/api/v1/track", json={"number": number, "phone_last4": "0000"}).status_code
        == 404
    )
    assert service.number_for_token(db, token=token) == number


def test_rating_only_after_resolution_and_low_scores_alert(db: Session) -> None:
    r = _order(db)
    with pytest.raises(AppError) as e:
        service.rate(db, number=r.number, phone_last4="8000", score=5, now=T0)
    assert e.value.code == "not_resolved"
    _resolve(db, r.id)
    out = service.rate(
        db,
        number=r.number,
        phone_last4="8000",
        score=1,
        comment="没修好",
        now=T0 + timedelta(hours=2),
    )
    assert out.rating == 1 and out.can_rate is False
    assert out.state == "resolved"  # a low rating alerts; it does not reopen by itself
    alerts = db.scalars(
        select(OutboxMessage).where(
            OutboxMessage.subject_id == str(r.id), OutboxMessage.topic == "workorder.low_rating"
        )
    ).all()
    assert alerts
    assert out.timeline[-1].action == "rate" and out.timeline[-1].actor_role == "reporter"


def test_public_search_and_updates_hold_no_personal_data(db: Session) -> None:
    r = _order(db, "W32", reporter_name="张三")
    _resolve(db, r.id)
    rows, total = service.search_public(db, numbers=[r.number])
    assert total == 1
    row = rows[0]
    assert row.service_code == "102" and row.state == "resolved"
    assert row.status_note == "已清理完毕" and row.expected_at is not None
    assert "张三" not in repr(row) and "13800138000" not in repr(row)
    updates, n = service.list_public_updates(db, numbers=[r.number])
    assert [u.action for u in updates] == ["create", "accept", "dispatch", "respond", "resolve"]
    assert n == 5 and updates[-1].note == "已清理完毕"
    assert service.search_public(db, service_codes=["999"])[1] == 0


def test_queue_counts_and_filters(db: Session) -> None:
    r = _order(db, "W33")
    counts = service.queue_counts(db, principal=who(db, "leader"), now=T0 + timedelta(days=2))
    assert counts.open >= 1 and counts.overdue >= 1 and counts.awaiting_dispatch >= 1
    overdue = service.list_orders(
        db,
        principal=who(db, "leader"),
        filters=service.OrderFilter(overdue=True, number=r.number),
        now=T0 + timedelta(days=2),
    )
    assert [o.number for o in overdue.items] == [r.number] and overdue.items[0].overdue
    near = service.list_orders(
        db,
        principal=who(db, "leader"),
        filters=service.OrderFilter(near_deadline=True, number=r.number),
        now=T0 + timedelta(hours=1),
    )
    assert near.total == 1 and near.items[0].near_deadline
    none = service.list_orders(
        db, principal=who(db, "grid13"), filters=service.OrderFilter(number=r.number), now=T0
    )
    assert none.total == 0


def test_supervision_list_through_the_api(client: TestClient, db: Session) -> None:
    r = _order(db, "W34")
    service.transition(
        db, order_id=r.id, action="supervise", actor=who(db, "leader"), now=T0, note="请两日内办结"
    )
    got = client.get("/api/v1/supervisions?state=open", headers=login_token(client, "leader"))
    assert got.status_code == 200
    mine = [s for s in got.json() if s["order_number"] == r.number]
    assert mine and mine[0]["deadline"] == "manual" and mine[0]["opened_by"] == "staff"
    assert client.get("/api/v1/supervisions").status_code == 401
    out = client.get("/api/v1/supervisions", headers=login_token(client, "grid13")).json()
    assert r.number not in {s["order_number"] for s in out}
