"""The inbox routes (own items only) and the administrators' outbox view."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from tests.notify.helpers import add_person

from watergrid.auth import service as auth_service
from watergrid.notify import service

ORDER = {"topic": "order.escalated", "subject_type": "order", "subject_id": "GM-2025-0001"}


@dataclass
class World:
    client: TestClient
    alice: dict[str, str]  # grid member, person A
    bob: dict[str, str]  # department handler, person B
    root: dict[str, str]  # administrator, no person
    citizen: dict[str, str]  # public role
    a_items: list[int]
    b_item: int


def _bearer(db: Session, username: str, roles: list[str], person_id: int | None) -> dict[str, str]:
    user = auth_service.create_user(
        db,
        username=username,
        display_name=username,
        password="pw-not-used-here",
        roles=roles,
        person_id=person_id,
    )
    return {"Authorization": f"Bearer {auth_service.issue_token(db, user_id=user.id, name='t')}"}


@pytest.fixture
def world(
    factory: sessionmaker[Session], notify_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    from watergrid import db as dbmod
    from watergrid.app import create_app

    # These users sign in with bearer tokens only; skip argon2's deliberate 0.4 s per hash.
    monkeypatch.setattr(auth_service, "hash_password", lambda pw: "unusable")
    with factory() as db:
        a = add_person(db, "PA", mobile="13812345678")
        b = add_person(db, "PB")
        service.set_preference(db, person_id=a.id, channel="sms")
        heads = {
            "alice": _bearer(db, "alice", ["grid_member"], a.id),
            "bob": _bearer(db, "bob", ["dept_handler"], b.id),
            "root": _bearer(db, "root", ["admin"], None),
            "citizen": _bearer(db, "citizen", ["public"], None),
        }
        for n in range(3):
            service.enqueue(db, person_ids=[a.id], subject=f"告警{n}", body="b", link="/x", **ORDER)
        service.enqueue(db, person_ids=[b.id], subject="theirs", body="b", **ORDER)
        a_items = [i.id for i in service.inbox(db, person_id=a.id)]
        b_item = service.inbox(db, person_id=b.id)[0].id
        db.commit()
    app = create_app(notify_url)
    with TestClient(app) as client:
        yield World(client=client, a_items=a_items, b_item=b_item, **heads)
    dbmod.get_engine().dispose()


def test_inbox_shows_only_the_callers_items(world: World) -> None:
    r = world.client.get("/api/v1/inbox", headers=world.alice)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [i["title"] for i in body["items"]] == ["告警2", "告警1", "告警0"]
    assert body["unread"] == 3 and body["items"][0]["link"] == "/x"
    r = world.client.get("/api/v1/inbox", headers=world.bob)
    assert [i["title"] for i in r.json()["items"]] == ["theirs"]


def test_mark_read_own_items_only(world: World) -> None:
    c = world.client
    r = c.post(f"/api/v1/inbox/{world.a_items[0]}/read", headers=world.alice)
    assert r.status_code == 200 and r.json()["read_at"] is not None
    r = c.get("/api/v1/inbox", params={"unread_only": True}, headers=world.alice)
    assert [i["id"] for i in r.json()["items"]] == world.a_items[1:]
    assert r.json()["unread"] == 2

    # Someone else's item, and one that does not exist, look the same: 404.
    for item_id in (world.b_item, 987_654):
        r = c.post(f"/api/v1/inbox/{item_id}/read", headers=world.alice)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = c.get("/api/v1/inbox", params={"unread_only": True}, headers=world.bob)
    assert r.json()["unread"] == 1


def test_inbox_gates(world: World) -> None:
    c = world.client
    assert c.get("/api/v1/inbox").status_code == 401
    assert c.get("/api/v1/inbox", headers=world.citizen).status_code == 403
    # An administrator without a linked person has an empty inbox, and nothing to mark.
    r = c.get("/api/v1/inbox", headers=world.root)
    assert r.status_code == 200 and r.json() == {"items": [], "unread": 0}
    assert c.post(f"/api/v1/inbox/{world.b_item}/read", headers=world.root).status_code == 404


def test_outbox_for_administrators_with_masked_addresses(world: World) -> None:
    c = world.client
    assert c.get("/api/v1/notify/outbox", headers=world.alice).status_code == 403
    r = c.get("/api/v1/notify/outbox", params={"state": "pending"}, headers=world.root)
    assert r.status_code == 200, r.text
    rows = r.json()
    assert len(rows) == 3 and {x["channel"] for x in rows} == {"sms"}
    assert {x["address_masked"] for x in rows} == {"138****5678"}
    assert "13812345678" not in r.text
    r = c.get("/api/v1/notify/outbox", params={"limit": 2}, headers=world.root)
    first_page = r.json()
    assert len(first_page) == 2
    r = c.get(
        "/api/v1/notify/outbox", params={"before_id": first_page[-1]["id"]}, headers=world.root
    )
    assert len(r.json()) == 7 - 2
    assert (
        c.get("/api/v1/notify/outbox", params={"state": "lost"}, headers=world.root).status_code
        == 422
    )
