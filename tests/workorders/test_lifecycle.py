"""The state machine end to end: a public report through to closure with its history; who
may do what; return, suspension, extension, merge, reopen; the history is append-only."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from tests.conftest import login_token
from tests.workorders.helpers import T0, counts, grid_point, report

from watergrid.auth import service as auth_service
from watergrid.auth.principal import Principal
from watergrid.errors import AppError
from watergrid.notify.models import OutboxMessage
from watergrid.org.models import Department
from watergrid.workorders import lifecycle, service
from watergrid.workorders.models import HistoryIsAppendOnly, OrderEvent, WorkOrder
from watergrid.workorders.schemas import OrderCreate

DOCS = Path(__file__).resolve().parents[2] / "docs"


def who(db: Session, username: str) -> Principal:
    user = auth_service.get_by_username(db, username=username)
    assert user is not None
    return auth_service.load_principal(db, user=user)


def backflow(db: Session, grid: str = "W01", **over: object) -> int:
    lon, lat = grid_point(db, grid)
    body = report(
        lon=lon, lat=lat, category_code="drainage.backflow", attributes={"premises": "shop"}, **over
    )
    return service.create_order(
        db, data=OrderCreate(**body), source="public_web", actor=None, idempotency_key=None, now=T0
    ).receipt.id


def act(
    db: Session,
    order_id: int,
    action: str,
    user: str,
    at: timedelta = timedelta(0),
    **params: object,
) -> service.OrderRead:
    return service.transition(
        db, order_id=order_id, action=action, actor=who(db, user), now=T0 + at, **params
    )


def test_public_report_to_closure_through_the_api(client: TestClient, db: Session) -> None:
    lon, lat = grid_point(db, "W01")
    body = report(
        lon=lon,
        lat=lat,
        category_code="drainage.backflow",
        attributes={"premises": "shop", "depth_cm": "15"},
        source="public_web",
    )
    created = client.post("/api/v1/orders", json=body, headers={"Idempotency-Key": "e2e-1"})
    assert created.status_code == 201, created.text
    oid, number = created.json()["id"], created.json()["number"]
    # Backflow goes to the water company everywhere (a sub-category rule beats the grid's).
    assert created.json()["department"]["code"] == "WATERCO"

    corp, grid, drain, duty = (
        login_token(client, u) for u in ("watercorp", "grid01", "drainage", "duty")
    )

    def do(h: dict[str, str], action: str, **payload: object) -> dict[str, object]:
        r = client.post(f"/api/v1/orders/{oid}/actions/{action}", json=payload, headers=h)
        assert r.status_code == 200, (action, r.text)
        return r.json()  # type: ignore[no-any-return]

    assert do(corp, "accept")["state"] == "accepted"
    got = do(corp, "dispatch", co_department_codes=["DRAINAGE"], note="排水科协办")
    assert got["state"] == "dispatched" and got["handling_due_at"]
    assert [d["code"] for d in got["co_departments"]] == ["DRAINAGE"]
    assert do(grid, "check_in", note="党员已到现场")["state"] == "responded"
    assert do(drain, "comment", note="协办：已核查管道")["state"] == "responded"
    assert do(corp, "start")["state"] == "in_progress"
    assert do(corp, "resolve", note="已疏通倒灌管段并加装止回阀")["state"] == "resolved"
    assert do(grid, "verify", note="现场复核无倒灌")["state"] == "verified"
    final = do(duty, "close")
    assert final["state"] == "closed" and final["closed_at"]

    history = [(e["action"], e["from_state"], e["to_state"]) for e in final["events"]]
    assert history == [
        ("create", None, "submitted"),
        ("accept", "submitted", "accepted"),
        ("dispatch", "accepted", "dispatched"),
        ("check_in", "dispatched", "responded"),
        ("comment", "responded", "responded"),
        ("start", "responded", "in_progress"),
        ("resolve", "in_progress", "resolved"),
        ("verify", "resolved", "verified"),
        ("close", "verified", "closed"),
    ]
    roles = [e["actor"]["role"] for e in final["events"]]
    assert roles == [
        "reporter",
        "dept_handler",
        "dept_handler",
        "grid_member",
        "dept_handler",
        "dept_handler",
        "dept_handler",
        "grid_member",
        "duty_officer",
    ]
    assert all(e["actor"]["name"] for e in final["events"][1:])  # staff see who

    # The reporter heard of the resolution by SMS, with no staff name in it.
    sms = db.scalars(
        select(OutboxMessage).where(
            OutboxMessage.subject_id == str(oid), OutboxMessage.channel == "sms"
        )
    ).all()
    assert any(m.topic == "workorder.resolved" and m.address == "13800138000" for m in sms)

    # The public timeline: roles and departments only.
    t = client.post("/api/v1/track", json={"number": number, "phone_last4": "8000"})
    assert t.status_code == 200, t.text
    timeline = t.json()["timeline"]
    assert [e["action"] for e in timeline] == [
        "create",
        "accept",
        "dispatch",
        "check_in",
        "start",
        "resolve",
        "verify",
        "close",
    ]
    text = t.text
    for e in final["events"][1:]:
        assert e["actor"]["name"] not in text
    assert "13800138000" not in text and t.json()["reporter_phone_masked"] == "138****8000"
    assert timeline[5]["note"] == "已疏通倒灌管段并加装止回阀"
    assert t.json()["can_rate"] is True

    rated = client.post(
        "/api/v1/track/rate",
        json={"number": number, "phone_last4": "8000", "score": 5, "comment": "很快"},
    )
    assert rated.status_code == 200 and rated.json()["rating"] == 5
    again = client.post(
        "/api/v1/track/rate", json={"number": number, "phone_last4": "8000", "score": 1}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_rated"
    wrong = client.post("/api/v1/track", json={"number": number, "phone_last4": "0000"})
    assert wrong.status_code == 404


def test_a_transition_the_user_may_not_make_changes_nothing(
    client: TestClient, db: Session
) -> None:
    oid = backflow(db, "W01")
    act(db, oid, "accept", "watercorp")
    before = counts(db)
    # A grid member of another grid may neither see nor act on the order.
    h13 = login_token(client, "grid13")
    r = client.post(f"/api/v1/orders/{oid}/actions/dispatch", json={}, headers=h13)
    assert r.status_code == 403 and r.json()["error"]["message_zh"]
    # The drainage section is not (yet) a handler of this order.
    hd = login_token(client, "drainage")
    r = client.post(f"/api/v1/orders/{oid}/actions/dispatch", json={}, headers=hd)
    assert r.status_code == 403
    # The grid's own member reads it but may not dispatch.
    h01 = login_token(client, "grid01")
    assert client.get(f"/api/v1/orders/{oid}", headers=h01).status_code == 200
    r = client.post(f"/api/v1/orders/{oid}/actions/dispatch", json={}, headers=h01)
    assert r.status_code == 403
    # A wrong state is a 409, an unknown action a 404.
    hc = login_token(client, "watercorp")
    r = client.post(f"/api/v1/orders/{oid}/actions/close", json={}, headers=hc)
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"
    r = client.post(f"/api/v1/orders/{oid}/actions/teleport", json={}, headers=hc)
    assert r.status_code == 404
    assert counts(db) == before


def test_404_for_a_missing_order_403_outside_scope(client: TestClient, db: Session) -> None:
    oid = backflow(db, "W01")
    h13 = login_token(client, "grid13")
    assert client.get(f"/api/v1/orders/{oid}", headers=h13).status_code == 403
    assert client.get("/api/v1/orders/999999999", headers=h13).status_code == 404
    assert client.get(f"/api/v1/orders/{oid}").status_code == 401


def test_lists_are_scoped_and_masked(client: TestClient, db: Session) -> None:
    in_w01 = backflow(db, "W01")
    in_w13 = backflow(db, "W13")
    h01 = login_token(client, "grid01")
    page = client.get("/api/v1/orders?page_size=200", headers=h01).json()
    ids = {o["id"] for o in page["items"]}
    assert in_w01 in ids and in_w13 not in ids
    assert all(o["grid"]["code"] == "W01" for o in page["items"])
    assert all(
        "*" in o["reporter_phone_masked"] or not o["reporter_phone_masked"] for o in page["items"]
    )
    assert "13800138000" not in client.get("/api/v1/orders", headers=h01).text
    corp = client.get(
        "/api/v1/orders?page_size=200&mine=true", headers=login_token(client, "watercorp")
    ).json()
    assert {in_w01, in_w13} <= {o["id"] for o in corp["items"]}
    leader = client.get(
        "/api/v1/orders?page_size=200&category=drainage", headers=login_token(client, "leader")
    ).json()
    assert {in_w01, in_w13} <= {o["id"] for o in leader["items"]}
    # Full number only in the detail view of a staff member in scope.
    detail = client.get(f"/api/v1/orders/{in_w01}", headers=h01).json()
    assert detail["reporter_phone"] == "13800138000"


def test_return_goes_to_the_desk_and_is_dispatched_again(db: Session) -> None:
    oid = backflow(db)
    act(db, oid, "accept", "watercorp")
    d = act(db, oid, "dispatch", "watercorp")
    due = d.handling_due_at
    with pytest.raises(AppError) as e:
        act(db, oid, "return", "watercorp")  # a note is required
    assert e.value.code == "note_required"
    r = act(db, oid, "return", "watercorp", note="不是管网问题，属排水执法")
    assert r.state == "returned" and r.department is not None and r.department.code == "DISPATCH"
    r = act(db, oid, "dispatch", "duty", department_code="ENFORCE")
    assert r.state == "dispatched" and r.department is not None and r.department.code == "ENFORCE"
    # The citizen's handling clock is not restarted by the bureau's misrouting.
    assert r.handling_due_at == due


def test_suspension_stops_the_clock(db: Session) -> None:
    oid = backflow(db)
    act(db, oid, "accept", "watercorp")
    act(db, oid, "dispatch", "watercorp", at=timedelta(minutes=10))
    responded = act(db, oid, "respond", "watercorp", at=timedelta(minutes=30), mode="contacted")
    due = responded.handling_due_at
    assert due is not None
    s = act(db, oid, "suspend", "watercorp", at=timedelta(hours=1), note="等待业主配合开门")
    assert s.state == "suspended" and not s.overdue
    r = act(db, oid, "resume", "watercorp", at=timedelta(hours=1, minutes=45))
    assert r.state == "responded"
    # Urgent backflow: 2 working days; 45 minutes suspended on a Monday moves it 45 minutes.
    assert r.handling_due_at == due + timedelta(minutes=45)
    assert [(x.suspended_at, x.resumed_at) for x in r.suspensions] == [
        (T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=45))
    ]


def test_extension_needs_a_leader(db: Session) -> None:
    oid = backflow(db)
    act(db, oid, "accept", "watercorp")
    due = act(db, oid, "dispatch", "watercorp").handling_due_at
    assert due is not None
    act(db, oid, "request_extension", "watercorp", amount=2, note="需更换管段，材料未到")
    with pytest.raises(AppError) as e:
        act(db, oid, "approve_extension", "watercorp")
    assert e.value.status == 403
    with pytest.raises(AppError) as e:
        act(db, oid, "approve_extension", "duty")  # the duty officer is no approver
    assert e.value.status == 403
    r = act(db, oid, "approve_extension", "leader")
    assert r.extension_pending is None
    # Monday 09:00 + 2 + 2 working days: Friday 09:00.
    assert r.handling_due_at == due + timedelta(days=2)
    assert r.handling_deadline.amount == 4
    act(db, oid, "request_extension", "watercorp", amount=5, note="再延")
    r = act(db, oid, "refuse_extension", "leader")
    assert r.handling_due_at == due + timedelta(days=2) and r.extension_pending is None


def test_chain_leader_approves_in_their_zone(db: Session) -> None:
    from tests.workorders.helpers import zone_point

    lon, lat = zone_point(db, "Z01")
    body = report(
        lon=lon, lat=lat, category_code="drainage.backflow", attributes={"premises": "home"}
    )
    oid = service.create_order(
        db, data=OrderCreate(**body), source="public_web", actor=None, idempotency_key=None, now=T0
    ).receipt.id
    act(db, oid, "accept", "watercorp")
    act(db, oid, "dispatch", "watercorp")
    act(db, oid, "request_extension", "watercorp", amount=1, note="延一天")
    outbox = db.scalars(
        select(OutboxMessage).where(
            OutboxMessage.subject_id == str(oid),
            OutboxMessage.topic == "workorder.extension_requested",
        )
    ).all()
    chain = who(db, "chain1")
    assert {m.person_id for m in outbox} == {chain.person_id}
    assert act(db, oid, "approve_extension", "chain1").extension_pending is None
    assert act(db, oid, "supervise", "chain1", note="请加快").state == "dispatched"


def test_merge_and_the_merged_reporter_hears_the_outcome(db: Session) -> None:
    survivor = backflow(db, "W05")
    dup = backflow(db, "W05", reporter_phone="13911112222")
    r = act(db, dup, "merge", "watercorp", into_number=db.get(WorkOrder, survivor).number)
    assert r.state == "merged" and r.merged_into_number == db.get(WorkOrder, survivor).number
    act(db, survivor, "accept", "watercorp")
    act(db, survivor, "dispatch", "watercorp")
    act(db, survivor, "respond", "watercorp", mode="on_site")
    done = act(db, survivor, "resolve", "watercorp", note="已处理")
    assert done.merged_numbers == [db.get(WorkOrder, dup).number]
    texts = db.scalars(
        select(OutboxMessage.address).where(
            OutboxMessage.topic == "workorder.resolved", OutboxMessage.channel == "sms"
        )
    ).all()
    assert "13911112222" in texts and "13800138000" in texts
    with pytest.raises(AppError) as e:
        act(db, survivor, "merge", "watercorp", into_number=db.get(WorkOrder, dup).number)
    assert e.value.status == 409


def test_reopen_gives_a_fresh_handling_deadline(db: Session) -> None:
    oid = backflow(db)
    for a, u, p in (
        ("accept", "watercorp", {}),
        ("dispatch", "watercorp", {}),
        ("respond", "watercorp", {"mode": "on_site"}),
        ("resolve", "watercorp", {"note": "ok"}),
        ("verify", "duty", {}),
        ("close", "duty", {}),
    ):
        act(db, oid, a, u, **p)
    r = act(db, oid, "reopen", "duty", at=timedelta(days=3), note="再次倒灌")
    assert r.state == "dispatched" and r.resolved_at is None and r.closed_at is None
    # Reopened Thursday 09:00 + 2 working days: Monday 09:00.
    assert r.handling_due_at == T0 + timedelta(days=7)


def test_reject_with_a_reason(db: Session) -> None:
    oid = backflow(db)
    with pytest.raises(AppError) as e:
        act(db, oid, "reject", "watercorp", reason="boring")
    assert e.value.code == "bad_reason"
    r = act(db, oid, "reject", "watercorp", reason="not_water_affairs", note="属燃气问题")
    assert r.state == "rejected" and r.rejected_reason == "not_water_affairs"


def test_history_is_append_only(db: Session) -> None:
    oid = backflow(db)
    ev = db.scalar(select(OrderEvent).where(OrderEvent.order_id == oid))
    assert ev is not None
    ev.note = "rewritten"
    with pytest.raises(HistoryIsAppendOnly):
        db.flush()
    db.rollback()
    with pytest.raises(HistoryIsAppendOnly):
        db.execute(update(OrderEvent).where(OrderEvent.order_id == oid).values(note="x"))
    with pytest.raises(HistoryIsAppendOnly):
        db.execute(delete(OrderEvent).where(OrderEvent.order_id == oid))


def test_the_state_machine_document_lists_every_transition() -> None:
    """The diagram draws every state change (self-loops are in the table only); the table has
    a row per action."""
    text = (DOCS / "state-machine.md").read_text(encoding="utf-8")
    for t in lifecycle.TRANSITIONS:
        assert f"| `{t.action}` |" in text, f"docs/state-machine.md lacks the row of {t.action}"
        if t.target == lifecycle.STAY:
            continue
        targets = list(lifecycle.WORKING_STATES) if t.target == lifecycle.RESTORE else [t.target]
        for source in t.sources:
            for target in targets:
                line = f"{source} --> {target}: {t.action}"
                assert line in text, f"docs/state-machine.md lacks `{line}`"


def test_a_refused_action_leaves_the_order_as_it_was(db: Session) -> None:
    oid = backflow(db)
    act(db, oid, "accept", "watercorp")
    before = counts(db)
    with pytest.raises(AppError) as e:
        act(db, oid, "dispatch", "duty", department_code="DISPATCH")  # not to the desk itself
    assert e.value.code == "department_required"
    db.flush()  # as a caller that caught the error and went on would
    order = db.get(WorkOrder, oid)
    assert order is not None and order.state == "accepted"
    assert order.department_id is not None
    assert (
        db.scalar(select(Department.code).where(Department.id == order.department_id)) == "WATERCO"
    )
    assert counts(db) == before
