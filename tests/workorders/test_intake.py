"""Intake: routing, numbering, idempotency, duplicates, and every bad input refused with a
clear error and nothing stored."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.conftest import login_token
from tests.workorders.helpers import T0, counts, grid_point, jpeg, report, zone_point

from watergrid.errors import AppError
from watergrid.geo import service as geo_service
from watergrid.org import service as org_service
from watergrid.timers.models import DueItem
from watergrid.workorders import service
from watergrid.workorders.models import OrderEvent, OrderFollower, WorkOrder
from watergrid.workorders.photos import PhotoUpload
from watergrid.workorders.schemas import OrderCreate


def _create(db: Session, key: str | None = None, **over: object) -> service.CreateResult:
    return service.create_order(
        db,
        data=OrderCreate(**report(**over)),
        source="public_web",
        actor=None,
        idempotency_key=key,
        now=T0,
    )


def test_public_report_is_numbered_routed_followed_and_timed(db: Session) -> None:
    lon, lat = zone_point(db, "Z01")
    before = counts(db)
    res = _create(db, lon=lon, lat=lat, category_code="drainage.blocked_drain")
    r = res.receipt
    assert not res.replayed
    assert re.fullmatch(r"GM-2026-\d{6}", r.number)
    assert r.state == "submitted"
    assert r.zone is not None and r.zone.code == "Z01"
    assert r.department is not None
    assert r.reporter_phone_masked == "138****8000"
    # 1 working day from Monday 09:00 is Tuesday 09:00.
    assert r.response_due_at == T0 + timedelta(days=1)

    order = db.get(WorkOrder, r.id)
    assert order is not None and order.reporter_phone == "13800138000"
    loc_grid = geo_service.get_or_404(db, code=r.grid.code)
    assert order.grid_id == loc_grid.id and order.subdistrict_id == r.subdistrict.id
    chain = org_service.zone_people(db, zone_id=r.zone.id, role="chain_leader")[0]
    followers = dict(
        db.execute(
            select(OrderFollower.person_id, OrderFollower.reason).where(
                OrderFollower.order_id == r.id
            )
        ).all()
    )
    assert followers[chain.id] == "chain_leader"
    group = org_service.party_group_for_grid(db, grid_id=loc_grid.id)
    assert group is not None and order.party_group_number == group.number
    if group.leader_id != chain.id:
        assert followers[group.leader_id] == "party_group_leader"

    after = counts(db)
    assert after["work_order"] == before["work_order"] + 1
    assert after["order_event"] == before["order_event"] + 1
    ev = db.scalar(select(OrderEvent).where(OrderEvent.order_id == r.id))
    assert ev is not None and ev.action == "create" and ev.to_state == "submitted"
    assert ev.actor_role == "reporter" and ev.actor_user_id is None
    # One step of the response chain is armed at a time: first the 50 % reminder.
    items = db.execute(
        select(DueItem.key, DueItem.due_at).where(DueItem.subject_id == str(r.id))
    ).all()
    assert [(k, at) for k, at in items] == [("response:remind:50", T0 + timedelta(hours=12))]
    assert after["outbox"] > before["outbox"]  # the department and the followers hear of it


def test_no_rule_routes_to_the_dispatch_desk(db: Session) -> None:
    from watergrid.org.models import ResponsibilityRule

    # Take away every rule for the category: the desk gets the order.
    for rule in db.scalars(
        select(ResponsibilityRule).where(
            ResponsibilityRule.category_code.in_(["sponge_city", "sponge_city.consultation", "*"])
        )
    ):
        db.delete(rule)
    geo_service.bump_version(db)
    db.flush()
    lon, lat = grid_point(db, "W20")
    r = _create(
        db, lon=lon, lat=lat, category_code="sponge_city.consultation", attributes={}
    ).receipt
    assert r.department is not None and r.department.code == org_service.DISPATCH_DESK_CODE


def test_service_card_prefills_the_zone(db: Session) -> None:
    lon, lat = grid_point(db, "W05")
    r = service.create_order(
        db,
        data=OrderCreate(**report(lon=lon, lat=lat, zone_code="Z03")),
        source="service_card",
        actor=None,
        idempotency_key=None,
        now=T0,
    ).receipt
    assert r.zone is not None and r.zone.code == "Z03"


def test_numbers_count_up_within_the_year(db: Session) -> None:
    lon, lat = grid_point(db, "W07")
    a = _create(db, lon=lon, lat=lat).receipt.number
    b = _create(db, lon=lon, lat=lat, description="另一处").receipt.number
    assert int(b.rsplit("-", 1)[1]) == int(a.rsplit("-", 1)[1]) + 1


def test_a_district_numbers_with_its_own_prefix(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from watergrid.workorders.config import get_wo_settings

    lon, lat = grid_point(db, "W07")
    before = _create(db, lon=lon, lat=lat).receipt.number
    monkeypatch.setenv("WATERGRID_WO_NUMBER_PREFIX", "BA")
    get_wo_settings.cache_clear()
    try:
        after = _create(db, lon=lon, lat=lat, description="另一处").receipt.number
    finally:
        monkeypatch.delenv("WATERGRID_WO_NUMBER_PREFIX")
        get_wo_settings.cache_clear()
    assert before.startswith("GM-2026-") and after.startswith("BA-2026-")
    # One count per year, whatever the prefix: the next number, not a fresh start.
    assert int(after.rsplit("-", 1)[1]) == int(before.rsplit("-", 1)[1]) + 1


def test_a_number_prefix_that_is_not_capital_letters_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from watergrid.workorders.config import WorkOrderSettings

    for bad in ("gm", "G", "GM-1", "GUANGMING"):
        monkeypatch.setenv("WATERGRID_WO_NUMBER_PREFIX", bad)
        with pytest.raises(ValidationError):
            WorkOrderSettings()


# -- idempotency --------------------------------------------------------------------------


def test_same_key_same_body_gives_the_same_order_once(db: Session) -> None:
    lon, lat = grid_point(db, "W08")
    first = _create(db, "retry-1", lon=lon, lat=lat)
    mid = counts(db)
    again = _create(db, "retry-1", lon=lon, lat=lat)
    assert again.replayed and again.receipt == first.receipt
    assert counts(db) == mid


def test_same_key_other_body_is_a_conflict(db: Session) -> None:
    lon, lat = grid_point(db, "W08")
    _create(db, "retry-2", lon=lon, lat=lat)
    mid = counts(db)
    with pytest.raises(AppError) as e:
        _create(db, "retry-2", lon=lon, lat=lat, description="不同的描述")
    assert e.value.status == 409 and e.value.code == "idempotency_conflict"
    assert counts(db) == mid


def test_api_idempotency_201_then_200_with_the_same_body(client: TestClient, db: Session) -> None:
    lon, lat = grid_point(db, "W09")
    body = report(lon=lon, lat=lat, source="public_web")
    r1 = client.post("/api/v1/orders", json=body, headers={"Idempotency-Key": "api-k-1"})
    assert r1.status_code == 201, r1.text
    mid = counts(db)
    r2 = client.post("/api/v1/orders", json=body, headers={"Idempotency-Key": "api-k-1"})
    assert r2.status_code == 200 and r2.json() == r1.json()
    assert counts(db) == mid
    r3 = client.post(
        "/api/v1/orders", json={**body, "address": "别处"}, headers={"Idempotency-Key": "api-k-1"}
    )
    assert r3.status_code == 409 and r3.json()["error"]["code"] == "idempotency_conflict"
    assert counts(db) == mid


# -- duplicates ---------------------------------------------------------------------------


def test_possible_duplicates_same_category_near_and_recent(db: Session) -> None:
    lon, lat = grid_point(db, "W10")
    first = _create(db, lon=lon, lat=lat).receipt
    near = _create(db, lon=lon + 0.0005, lat=lat).receipt  # ~50 m east
    assert [d.number for d in near.possible_duplicates] == [first.number]
    assert 40 < near.possible_duplicates[0].distance_m < 60
    far = _create(db, lon=lon + 0.002, lat=lat).receipt  # ~200 m
    assert far.possible_duplicates == []
    other = _create(db, lon=lon, lat=lat, category_code="drainage.sewage_overflow").receipt
    assert other.possible_duplicates == []
    later = service.create_order(
        db,
        data=OrderCreate(**report(lon=lon, lat=lat)),
        source="public_web",
        actor=None,
        idempotency_key=None,
        now=T0 + timedelta(hours=49),
    ).receipt
    assert later.possible_duplicates == []


# -- bad input: a clear error each, nothing stored ----------------------------------------


def _post_bad(
    client: TestClient, db: Session, body: dict[str, object], code: str, field: str
) -> dict[str, object]:
    before = counts(db)
    r = client.post("/api/v1/orders", json=body, headers={"Idempotency-Key": f"bad-{code}"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert err["message"] and err["message_zh"]
    assert any(f["field"] == field and f["message_zh"] for f in err["fields"]), err
    assert counts(db) == before
    return err


def test_point_outside_the_district(client: TestClient, db: Session) -> None:
    _post_bad(client, db, report(lon=114.2, lat=22.55), "outside_district", "location")


def test_unknown_category(client: TestClient, db: Session) -> None:
    lon, lat = grid_point(db, "W11")
    _post_bad(
        client,
        db,
        report(lon=lon, lat=lat, category_code="drainage.unicorn"),
        "unknown_category",
        "category_code",
    )


def test_missing_required_attribute(client: TestClient, db: Session) -> None:
    lon, lat = grid_point(db, "W11")
    err = _post_bad(
        client,
        db,
        report(lon=lon, lat=lat, category_code="disaster.waterlogging"),
        "attribute_required",
        "attributes.depth",
    )
    assert "积水深度" in err["message_zh"]


def test_bad_attribute_value(client: TestClient, db: Session) -> None:
    lon, lat = grid_point(db, "W11")
    _post_bad(
        client,
        db,
        report(
            lon=lon, lat=lat, category_code="disaster.waterlogging", attributes={"depth": "knee"}
        ),
        "bad_attribute",
        "attributes.depth",
    )


def test_description_of_4001_characters(client: TestClient, db: Session) -> None:
    lon, lat = grid_point(db, "W11")
    err = _post_bad(
        client,
        db,
        report(lon=lon, lat=lat, description="水" * 4001),
        "description_too_long",
        "description",
    )
    assert "4000" in err["message_zh"]


def test_description_of_4000_characters_is_fine(db: Session) -> None:
    lon, lat = grid_point(db, "W11")
    r = _create(db, lon=lon, lat=lat, description="水" * 4000).receipt
    assert r.number


@pytest.mark.parametrize("phone", ["1380013800", "23800138000", "138-0013-80000", "phone"])
def test_malformed_phone(client: TestClient, db: Session, phone: str) -> None:
    lon, lat = grid_point(db, "W11")
    _post_bad(
        client, db, report(lon=lon, lat=lat, reporter_phone=phone), "bad_phone", "reporter_phone"
    )


def test_phone_without_consent(client: TestClient, db: Session) -> None:
    lon, lat = grid_point(db, "W11")
    _post_bad(
        client,
        db,
        report(lon=lon, lat=lat, phone_consent=False),
        "consent_required",
        "phone_consent",
    )


def test_phone_is_optional_and_normalised(db: Session) -> None:
    lon, lat = grid_point(db, "W11")
    r = _create(db, lon=lon, lat=lat, reporter_phone="", phone_consent=False).receipt
    assert r.reporter_phone_masked == ""
    r2 = _create(db, lon=lon, lat=lat, reporter_phone="+86 139-1234-5678").receipt
    order = db.get(WorkOrder, r2.id)
    assert order is not None and order.reporter_phone == "13912345678"


def test_several_problems_are_reported_together(client: TestClient, db: Session) -> None:
    before = counts(db)
    r = client.post(
        "/api/v1/orders",
        json=report(lon=114.2, lat=22.55, reporter_phone="12", description="x" * 4001),
    )
    assert r.status_code == 422
    fields = {f["field"] for f in r.json()["error"]["fields"]}
    assert {"location", "reporter_phone", "description"} <= fields
    assert counts(db) == before


def test_non_image_photo(client: TestClient, db: Session) -> None:
    before = counts(db)
    r = client.post(
        "/api/v1/attachments", files={"file": ("photo.jpg", b"%PDF-1.4 not an image", "image/jpeg")}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "photo_not_image"
    assert r.json()["error"]["fields"][0]["message_zh"]
    assert counts(db) == before


def test_over_size_photo(client: TestClient, db: Session) -> None:
    from watergrid.workorders.config import get_wo_settings

    big = jpeg() + b"\0" * get_wo_settings().photo_max_bytes
    before = counts(db)
    r = client.post("/api/v1/attachments", files={"file": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "photo_too_large"
    assert counts(db) == before


def test_bad_photo_in_a_create_stores_nothing(db: Session) -> None:
    lon, lat = grid_point(db, "W11")
    before = counts(db)
    with pytest.raises(AppError) as e:
        service.create_order(
            db,
            data=OrderCreate(**report(lon=lon, lat=lat)),
            source="public_web",
            actor=None,
            idempotency_key="photo-bad",
            now=T0,
            photos=[PhotoUpload("ok.jpg", jpeg()), PhotoUpload("evil.png", b"GIF89a....")],
        )
    assert e.value.code == "photo_not_image"
    assert counts(db) == before


def test_seven_photos_are_too_many(db: Session) -> None:
    lon, lat = grid_point(db, "W11")
    before = counts(db)
    with pytest.raises(AppError) as e:
        service.create_order(
            db,
            data=OrderCreate(**report(lon=lon, lat=lat)),
            source="public_web",
            actor=None,
            idempotency_key=None,
            now=T0,
            photos=[PhotoUpload(f"{i}.jpg", jpeg()) for i in range(7)],
        )
    assert e.value.code == "too_many_photos"
    assert counts(db) == before


def test_uploaded_photo_is_claimed_by_the_create(client: TestClient, db: Session) -> None:
    up = client.post(
        "/api/v1/attachments", files={"file": ("a.jpg", jpeg(exif=True), "image/jpeg")}
    )
    assert up.status_code == 201, up.text
    key = up.json()["key"]
    lon, lat = grid_point(db, "W12")
    r = client.post("/api/v1/orders", json=report(lon=lon, lat=lat, attachment_keys=[key]))
    assert r.status_code == 201, r.text
    pub = client.get(f"/api/v1/attachments/{key}")
    assert pub.status_code == 200 and pub.headers["content-type"] == "image/jpeg"
    # A second order cannot take the same photo.
    r2 = client.post("/api/v1/orders", json=report(lon=lon, lat=lat, attachment_keys=[key]))
    assert r2.status_code == 422 and r2.json()["error"]["code"] == "unknown_attachment"
    # The original (with EXIF) is for staff only.
    assert client.get(f"/api/v1/attachments/{key}?variant=original").status_code == 403
    h = login_token(client, "duty")
    orig = client.get(f"/api/v1/attachments/{key}?variant=original", headers=h)
    assert orig.status_code == 200 and len(orig.content) > 0


def test_public_caller_cannot_enter_patrol_or_set_priority(client: TestClient, db: Session) -> None:
    lon, lat = grid_point(db, "W12")
    before = counts(db)
    r = client.post("/api/v1/orders", json=report(lon=lon, lat=lat, source="patrol"))
    assert r.status_code == 401
    r = client.post("/api/v1/orders", json=report(lon=lon, lat=lat, priority="emergency"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "priority_staff_only"
    assert counts(db) == before


def test_grid_member_patrol_report_is_self_discovered(client: TestClient, db: Session) -> None:
    lon, lat = grid_point(db, "W01")
    h = login_token(client, "grid01")
    body = report(
        lon=lon, lat=lat, source="patrol", reporter_phone="", phone_consent=False, priority="urgent"
    )
    r = client.post("/api/v1/orders", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["priority"] == "urgent"
    got = client.get(f"/api/v1/orders/{r.json()['id']}", headers=h).json()
    assert got["self_discovered"] is True and got["source"] == "patrol"
    assert got["events"][0]["actor"]["role"] == "grid_member"
