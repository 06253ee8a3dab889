"""The flood response over HTTP: who may do what, the answer channels (link, API, staff
page, SMS reply through the gateway webhook), KPIs, and every page rendering."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.flood_response.conftest import login, outbox_for_calls

from watergrid.flood.response_settings import get_response_settings
from watergrid.flood.warning_models import Call, CallRound
from watergrid.org.models import Person
from watergrid.timers.clock import FrozenClock


@pytest.fixture
def duty(client: TestClient) -> dict[str, str]:
    return login(client, "duty")


@pytest.fixture
def sweep_now(sweep: Callable[[], int], clock: FrozenClock) -> Callable[[], int]:
    """Routes take the time from the system clock: sweep at it."""
    from watergrid.db import utcnow

    def run() -> int:
        clock.set(max(clock.now(), utcnow() + timedelta(seconds=1)))
        return sweep()

    return run


def _csrf(client: TestClient, path: str, headers: dict[str, str]) -> str:
    page = client.get(path, headers=headers)
    assert page.status_code == 200, page.text
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert m, "no csrf field"
    return m.group(1)


def _issue(
    client: TestClient, headers: dict[str, str], code: str = "440311003", **extra: object
) -> dict:
    r = client.post(
        "/api/v1/flood/warnings",
        json={"subdistrict_code": code, "level": "orange", **extra},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_permissions(client: TestClient, duty: dict[str, str]) -> None:
    body = {"subdistrict_code": "440311003", "level": "orange"}
    assert client.post("/api/v1/flood/warnings", json=body).status_code == 401
    grid = login(client, "grid01")
    assert client.post("/api/v1/flood/warnings", json=body, headers=grid).status_code == 403
    assert client.get("/api/v1/flood/warnings", headers=grid).status_code == 200
    assert (
        client.post(
            "/api/v1/flood/plans/YA-SUB-440311003/drill", json={"level": "red"}, headers=grid
        ).status_code
        == 403
    )
    w = _issue(client, duty)
    again = client.post("/api/v1/flood/warnings", json=body, headers=duty)
    assert again.status_code == 409 and "已有生效" in again.json()["error"]["message_zh"]
    bad = client.post(
        "/api/v1/flood/warnings", json={"subdistrict_code": "999", "level": "red"}, headers=duty
    )
    assert bad.status_code == 422
    assert (
        client.post(
            f"/api/v1/flood/warnings/{w['id']}/level", json={"level": "orange"}, headers=duty
        ).status_code
        == 409
    )
    assert client.get("/api/v1/flood/warnings/999999", headers=duty).status_code == 404


def test_answer_channels(
    client: TestClient,
    db: Session,
    duty: dict[str, str],
    sweep_now: Callable[[], int],
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = _issue(client, duty)
    sweep_now()
    rounds = client.get(f"/api/v1/flood/rounds?warning_id={w['id']}", headers=duty).json()
    assert rounds and all(r["state"] == "running" for r in rounds)
    calls = list(
        db.scalars(
            select(Call).where(Call.round_id.in_([r["id"] for r in rounds])).order_by(Call.id)
        )
    )
    by_link, by_api, by_sms, by_reply_one = calls[0], calls[1], calls[2], calls[3]

    # 1. The link: opening it does not answer (previews open links); the tap does.
    link = next(m.link for m in outbox_for_calls(db, [by_link.id]) if m.channel == "inapp")
    token = link.rsplit("/a/", 1)[1]
    page = client.get(f"/a/{token}")
    assert page.status_code == 200 and "收到，立即应答" in page.text
    db.refresh(by_link)
    assert by_link.state == "calling"
    done = client.post(f"/a/{token}")
    assert done.status_code == 200 and "已应答" in done.text
    db.refresh(by_link)
    assert by_link.state == "answered" and by_link.answered_via == "link"
    assert client.get("/a/not-a-real-token").status_code == 404

    # 2. The API, as the called person (any staff account linked to them).
    person = db.get(Person, by_api.person_id)
    from watergrid.auth import service as auth_service

    auth_service.create_user(
        db,
        username="callee",
        display_name=person.name,
        password="demo1234",
        roles=["grid_member"],
        scopes=[("district", None)],
        person_id=person.id,
    )
    callee = login(client, "callee")
    mine = client.get("/api/v1/flood/calls/mine", headers=callee).json()
    assert any(c["id"] == by_api.id for r in mine for c in r["calls"])
    assert (
        client.post(f"/api/v1/flood/calls/{by_link.id}/answer", headers=callee).status_code == 403
    )
    r = client.post(f"/api/v1/flood/calls/{by_api.id}/answer", headers=callee)
    assert r.status_code == 200 and r.json()["state"] == "answered"
    assert (
        client.post(f"/api/v1/flood/calls/{by_api.id}/answer", headers=callee).json()["already"]
        is True
    )

    # 3. SMS reply with the code, forwarded by the gateway.
    sms_person = db.get(Person, by_sms.person_id)
    msg = next(m for m in outbox_for_calls(db, [by_sms.id]) if m.channel == "inapp")
    code = re.search(r"回复短信 (\d{6})", msg.body).group(1)
    payload = {"from": f"+86 {sms_person.mobile}", "text": f"收到 {code}"}
    assert (
        client.post("/api/v1/flood/calls/sms-inbound", json=payload).status_code == 404
    )  # switched off
    monkeypatch.setenv("WATERGRID_FLOOD_RESPONSE_SMS_INBOUND_TOKEN", "gw-secret")
    get_response_settings.cache_clear()
    try:
        assert client.post("/api/v1/flood/calls/sms-inbound", json=payload).status_code == 401
        assert (
            client.post(
                "/api/v1/flood/calls/sms-inbound",
                json=payload,
                headers={"Authorization": "Bearer wrong"},
            ).status_code
            == 401
        )
        gw = {"Authorization": "Bearer gw-secret"}
        r = client.post("/api/v1/flood/calls/sms-inbound", json=payload, headers=gw)
        assert r.status_code == 200, r.text
        assert [a["call_id"] for a in r.json()] == [by_sms.id]
        db.refresh(by_sms)
        assert by_sms.state == "answered" and by_sms.answered_via == "sms"
        # A bare "1" answers the sender's only open call; with several it asks for the code.
        one = db.get(Person, by_reply_one.person_id)
        open_calls = db.scalars(
            select(Call).where(Call.person_id == one.id, Call.state == "calling")
        ).all()
        r = client.post(
            "/api/v1/flood/calls/sms-inbound", json={"from": one.mobile, "text": "1"}, headers=gw
        )
        if len(open_calls) == 1:
            assert r.status_code == 200
        else:
            assert r.status_code == 409 and "6位应答码" in r.json()["error"]["message_zh"]
        unknown = client.post(
            "/api/v1/flood/calls/sms-inbound", json={"from": "13000000000", "text": "1"}, headers=gw
        )
        assert unknown.status_code == 404
    finally:
        get_response_settings.cache_clear()

    # 4. The staff page.
    rest = next(c for c in calls if c.state == "calling" and c.id != by_reply_one.id)
    person = db.get(Person, rest.person_id)
    auth_service.create_user(
        db,
        username="callee2",
        display_name=person.name,
        password="demo1234",
        roles=["grid_member"],
        scopes=[("district", None)],
        person_id=person.id,
    )
    h2 = login(client, "callee2")
    page = client.get("/flood/calls", headers=h2)
    assert page.status_code == 200 and f'data-call="{rest.id}"' in page.text
    csrf = _csrf(client, "/flood/calls", h2)
    r = client.post(
        f"/flood/calls/{rest.id}/answer", data={"csrf": csrf}, headers=h2, follow_redirects=False
    )
    assert r.status_code == 303
    db.refresh(rest)
    assert rest.state == "answered" and rest.answered_via == "page"

    # The live board of a round shows who answered and how.
    board = client.get(f"/api/v1/flood/rounds/{by_link.round_id}", headers=duty).json()
    row = next(c for c in board["calls"] if c["id"] == by_link.id)
    assert row["state"] == "answered" and row["answered_via"] == "link"
    events = client.get(f"/api/v1/flood/rounds/{by_link.round_id}/events", headers=duty).json()
    assert {"started", "notified", "answered"} <= {e["action"] for e in events}

    kpi = client.get("/api/v1/flood/calls/kpi?group_by=role", headers=duty).json()
    assert kpi["definitions"]["answer_rate"]
    kpi = client.get(
        "/api/v1/flood/calls/kpi",
        params={
            "start": (clock.now() - timedelta(hours=1)).isoformat(),
            "end": (clock.now() + timedelta(hours=1)).isoformat(),
        },
        headers=duty,
    ).json()
    assert kpi["total"]["answered_self"] >= 4 and 0 < kpi["total"]["answer_rate"] <= 1


def test_drill_over_api(
    client: TestClient, duty: dict[str, str], sweep_now: Callable[[], int], db: Session
) -> None:
    r = client.post(
        "/api/v1/flood/plans/YA-GRID-W01/drill",
        json={"level": "red", "reason": "汛前演练"},
        headers=duty,
    )
    assert r.status_code == 201, r.text
    rnd = r.json()
    assert rnd["exercise"] and rnd["trigger_kind"] == "drill" and rnd["total"] >= 2
    sweep_now()
    calls = db.scalars(select(Call).where(Call.round_id == rnd["id"])).all()
    assert calls and all(c.exercise and c.state == "calling" for c in calls)
    again = client.post(
        "/api/v1/flood/plans/YA-GRID-W01/drill", json={"level": "red"}, headers=duty
    )
    assert again.status_code == 409
    closed = client.post(
        f"/api/v1/flood/rounds/{rnd['id']}/close", json={"reason": "演练结束"}, headers=duty
    )
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    assert db.get(CallRound, rnd["id"]).state == "closed"


def test_pages_render(
    client: TestClient, db: Session, duty: dict[str, str], sweep_now: Callable[[], int]
) -> None:
    w = _issue(client, duty, code="440311001")
    sweep_now()
    rnd = db.scalar(select(CallRound).where(CallRound.trigger_id == w["id"]))
    pages = [
        "/flood/board",
        "/flood/warnings",
        f"/flood/warnings/{w['id']}",
        "/flood/plans",
        "/flood/plans?kind=grid&subdistrict=440311001",
        "/flood/plans/YA-RES-GMSK",
        f"/flood/rounds/{rnd.id}",
        "/flood/calls",
        "/flood/dispatch",
        "/flood/cards/W01",
    ]
    for path in pages:
        r = client.get(path, headers=duty)
        assert r.status_code == 200, (path, r.text[:500])
        # A key without a text would show as itself.
        assert not re.search(r"\bflood\.[a-z_]+\.[a-z_]+", r.text), path
    board = client.get("/api/v1/flood/board", headers=duty).json()
    assert (
        board["warnings"]
        and board["subdistricts"]["features"]
        and board["sensors"]
        and board["crews"]
    )
    assert board["calls"]["total"] > 0
    red = [f for f in board["subdistricts"]["features"] if f["properties"]["code"] == "440311001"][
        0
    ]
    assert red["properties"]["level"] == "orange"
    # Public pages need no sign-in and show no whole mobile number.
    anon = client.get("/f/W01")
    assert anon.status_code == 200 and "****" in anon.text
    assert not re.search(r"1380000\d{4}", anon.text)
    printed = client.get("/flood/cards/W01", headers=duty)
    assert "<svg" in printed.text and "/f/W01" in printed.text
    assert client.get("/f/warnings").status_code == 200
    assert client.get("/flood/board").status_code in (401, 303)
    # The English catalog has every key the pages use.
    en = client.get("/flood/plans/YA-RES-GMSK?lang=en", headers=duty)
    assert en.status_code == 200 and "One-page plan" in en.text


def test_warning_forms(client: TestClient, db: Session, duty: dict[str, str]) -> None:
    csrf = _csrf(client, "/flood/warnings", duty)
    r = client.post(
        "/flood/warnings",
        data={
            "csrf": csrf,
            "subdistrict_code": "440311006",
            "level": "yellow",
            "reason": "预报",
            "exercise": "1",
        },
        headers=duty,
        follow_redirects=False,
    )
    assert r.status_code == 303
    wid = int(r.headers["location"].rsplit("/", 1)[1])
    r = client.post(
        f"/flood/warnings/{wid}/level",
        data={"csrf": csrf, "level": "red"},
        headers=duty,
        follow_redirects=False,
    )
    assert r.status_code == 303
    r = client.post(
        f"/flood/warnings/{wid}/lift", data={"csrf": csrf}, headers=duty, follow_redirects=False
    )
    assert r.status_code == 303
    detail = client.get(f"/api/v1/flood/warnings/{wid}", headers=duty).json()
    assert detail["exercise"] and detail["state"] == "lifted"
    assert [h["action"] for h in detail["history"]] == ["issued", "upgraded", "lifted"]
    assert (
        client.post(
            "/flood/warnings",
            data={"csrf": "bad", "subdistrict_code": "440311006", "level": "red"},
            headers=duty,
        ).status_code
        == 403
    )


@pytest.fixture(autouse=True)
def _no_leaked_settings() -> Iterator[None]:
    yield
    get_response_settings.cache_clear()
