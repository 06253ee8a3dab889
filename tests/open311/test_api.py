"""Open311 GeoReport v2 as a spec-following client sees it, in JSON and in XML: discovery,
services, a service definition, creating requests with attributes, reading them back,
tokens, the updates feed, and every error a client can cause — each answered in the spec's
error list and storing nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.open311.spec_client import BASE, Open311

from watergrid.auth import service as auth_service
from watergrid.auth.models import ApiKey
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.open311.config import get_open311_settings
from watergrid.workorders import service

PHONE = "13800138000"
EMAIL = "reporter@example.cn"


@pytest.fixture(params=["json", "xml"])
def o311(request: pytest.FixtureRequest, client: TestClient) -> Open311:
    return Open311(client, request.param)


def inside(db: Session) -> tuple[float, float]:
    """(lat, long) well inside one of the district's grids."""
    from shapely.geometry import shape

    from watergrid.geo import service as geo_service

    grid = sorted(geo_service.get_all(db, kind="grid"), key=lambda a: a.code)[0]
    p = shape(grid.geometry).buffer(-0.0005).representative_point()
    return float(p.y), float(p.x)


def form(db: Session, key: str, **over: Any) -> dict[str, Any]:
    lat, lon = inside(db)
    body: dict[str, Any] = {
        "api_key": key,
        "service_code": "101",
        "lat": str(lat),
        "long": str(lon),
        "address_string": "光明大道123号",
        "description": "地下车库雨水倒灌 / storm water flowing into the car park",
        "attribute[premises]": "basement",
        "attribute[depth_cm]": "15",
        "first_name": "三",
        "last_name": "张",
        "phone": PHONE,
        "email": EMAIL,
        "device_id": "dev-42",
        "account_id": "acct-7",
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def counts(db: Session) -> dict[str, int]:
    """Rows of every table a create writes."""
    from watergrid.notify.models import OutboxMessage
    from watergrid.timers.models import DueItem
    from watergrid.workorders.models import (
        IdempotencyRecord,
        OrderCounter,
        OrderEvent,
        OrderFollower,
        WorkOrder,
    )

    db.flush()
    out = {
        m.__tablename__: int(db.scalar(select(func.count()).select_from(m)) or 0)
        for m in (WorkOrder, OrderEvent, OrderFollower, IdempotencyRecord, DueItem, OutboxMessage)
    }
    out["counter"] = int(db.scalar(select(func.coalesce(func.sum(OrderCounter.last), 0))) or 0)
    return out


def staff(db: Session, username: str = "duty") -> Principal:
    user = auth_service.get_by_username(db, username=username)
    assert user is not None
    return auth_service.load_principal(db, user=user)


def create(o311: Open311, db: Session, key: str, **over: Any) -> dict[str, str]:
    a = o311.post(form(db, key, **over))
    assert a.status == 201, a.raw
    assert len(a.body) == 1
    return a.body[0]  # type: ignore[no-any-return]


# -- discovery and services ---------------------------------------------------------------


def test_discovery(o311: Open311) -> None:
    a = o311.get("discovery", "discovery")
    assert a.status == 200
    (endpoint,) = a.body["endpoints"]
    assert endpoint["url"].endswith("/open311/v2")
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert set(endpoint["formats"]) == {"text/xml", "application/json"}
    assert a.body["changeset"].endswith("+08:00") and a.body["contact"] and a.body["key_service"]


def test_services_list(o311: Open311) -> None:
    a = o311.get("services", "services")
    assert a.status == 200
    by_code = {s["service_code"]: s for s in a.body}
    assert len(by_code) == 18
    assert set(a.body[0]) == {
        "service_code",
        "service_name",
        "description",
        "metadata",
        "type",
        "keywords",
        "group",
    }
    backflow = by_code["101"]
    assert backflow["service_name"] == "排水倒灌"
    assert backflow["metadata"] == "true" and backflow["type"] == "realtime"
    assert backflow["group"] and "倒灌" in backflow["keywords"].split(", ")
    assert by_code["104"]["metadata"] == "false"  # sewage overflow asks nothing more
    if o311.fmt == "json":
        # Codes are strings, never numbers.
        raw = o311.http.get(f"{BASE}/services.json").json()
        assert all(isinstance(s["service_code"], str) for s in raw)
        assert raw[0]["metadata"] in (True, False)


def test_services_in_english(o311: Open311) -> None:
    a = o311.get("services", "services", locale="en")
    names = {s["service_code"]: s["service_name"] for s in a.body}
    assert names["101"] == "Drain backflow"


def test_service_definition_with_attributes(o311: Open311) -> None:
    a = o311.get("services/101", "service_definition")
    assert a.status == 200
    assert a.body["service_code"] == "101"
    premises, depth = a.body["attributes"]
    assert premises == {
        "variable": "true",
        "code": "premises",
        "datatype": "singlevaluelist",
        "required": "true",
        "datatype_description": "",
        "order": "1",
        "description": "倒灌进入的场所",
        "values": premises["values"],
    }
    assert {v["key"] for v in premises["values"]} == {
        "home",
        "shop",
        "factory",
        "basement",
        "other",
    }
    assert all(set(v) == {"key", "name"} and v["name"] for v in premises["values"])
    assert depth["code"] == "depth_cm" and depth["datatype"] == "number"
    assert depth["required"] == "false" and depth["values"] == []

    multi = o311.get("services/204", "service_definition").body["attributes"][0]
    assert multi["datatype"] == "multivaluelist" and multi["required"] == "true"


def test_service_definition_xml_element_names(client: TestClient) -> None:
    r = client.get(f"{BASE}/services/105.xml")
    doc = etree.fromstring(r.content)
    assert doc.tag == "service_definition"
    assert [c.tag for c in doc] == ["service_code", "attributes"]
    attribute = doc.find("attributes/attribute")
    assert attribute is not None
    assert [c.tag for c in attribute] == [
        "variable",
        "code",
        "datatype",
        "required",
        "datatype_description",
        "order",
        "description",
        "values",
    ]
    value = attribute.find("values/value")
    assert value is not None and [c.tag for c in value] == ["key", "name"]


def test_unknown_service_definition_is_404(o311: Open311) -> None:
    a = o311.get("services/999", "service_definition")
    assert a.status == 404 and "999" in o311.error_text(a)


# -- creating and reading requests --------------------------------------------------------


def test_post_with_attributes_then_read_it_back(o311: Open311, db: Session, api_key: str) -> None:
    before = counts(db)
    item = create(o311, db, api_key)
    assert set(item) == {"service_request_id", "token", "service_notice", "account_id"}
    number = item["service_request_id"]
    assert number.startswith("GM-") and item["account_id"] == "acct-7"
    assert number in item["service_notice"] and "+08:00" in item["service_notice"]
    assert counts(db)["work_order"] == before["work_order"] + 1

    order = service.get_order(
        db,
        order_id=service.order_id_for_number(db, number=number),
        principal=staff(db),
        now=utcnow(),
    )
    assert order.source == "open311"
    assert order.category_code == "drainage.backflow"
    assert order.attributes == {"premises": "basement", "depth_cm": 15}
    assert order.reporter_name == "张三"
    assert order.address == "光明大道123号"

    a = o311.get(f"requests/{number}", "service_requests")
    assert a.status == 200
    (req,) = a.body
    assert req["service_request_id"] == number
    assert req["status"] == "open"
    assert req["service_code"] == "101" and req["service_name"] == "排水倒灌"
    assert req["description"].startswith("地下车库")
    assert req["requested_datetime"].endswith("+08:00")
    assert req["updated_datetime"].endswith("+08:00")
    assert req["expected_datetime"].endswith("+08:00")
    lat, lon = inside(db)
    assert abs(float(req["lat"]) - lat) < 1e-9 and abs(float(req["long"]) - lon) < 1e-9
    # The reporter's phone, e-mail and name never leave through a GET.
    text = a.raw.decode()
    for secret in (PHONE, PHONE[-4:], EMAIL, "张三", "acct-7", "dev-42"):
        assert secret not in text


def test_post_multivalue_attribute(o311: Open311, db: Session, api_key: str) -> None:
    item = create(
        o311,
        db,
        api_key,
        **{
            "service_code": "105",
            "attribute[premises]": None,
            "attribute[depth_cm]": None,
            "attribute[discharge_type][]": ["sewage", "oil"],
            "attribute[ongoing]": "yes",
        },
    )
    order_id = service.order_id_for_number(db, number=item["service_request_id"])
    order = service.get_order(db, order_id=order_id, principal=staff(db), now=utcnow())
    assert order.attributes == {"discharge_type": ["sewage", "oil"], "ongoing": "yes"}


def test_multivalue_as_repeated_key_and_single_bracket_value(
    client: TestClient, db: Session, api_key: str
) -> None:
    o = Open311(client, "json")
    body = form(db, api_key, service_code="204")
    body.pop("attribute[premises]")
    body.pop("attribute[depth_cm]")
    repeated = o.post({**body, "attribute[symptoms]": ["cloudy", "smell"]})
    assert repeated.status == 201
    one = o.post({**body, "attribute[symptoms][]": "colour", "description": "黄水"})
    assert one.status == 201
    got = {}
    for a in (repeated, one):
        oid = service.order_id_for_number(db, number=a.body[0]["service_request_id"])
        got[oid] = service.get_order(db, order_id=oid, principal=staff(db), now=utcnow()).attributes
    assert sorted(v["symptoms"] for v in got.values()) == [["cloudy", "smell"], ["colour"]]


def test_token_lookup(o311: Open311, db: Session, api_key: str) -> None:
    item = create(o311, db, api_key)
    a = o311.get(f"tokens/{item['token']}", "service_requests")
    assert a.status == 200
    assert a.body == [{"service_request_id": item["service_request_id"], "token": item["token"]}]
    missing = o311.get("tokens/not-a-token", "service_requests")
    assert missing.status == 404


def test_list_requests_filters_and_paging(o311: Open311, db: Session, api_key: str) -> None:
    first = create(o311, db, api_key)["service_request_id"]
    second = create(
        o311,
        db,
        api_key,
        service_code="104",
        **{"attribute[premises]": None, "attribute[depth_cm]": None},
    )["service_request_id"]

    a = o311.get("requests", "service_requests", service_code="101", status="open")
    ids = [r["service_request_id"] for r in a.body]
    assert first in ids and second not in ids
    assert int(a.headers["x-total-count"]) >= 1

    both = o311.get("requests", "service_requests", service_request_id=f"{first},{second}")
    assert {r["service_request_id"] for r in both.body} == {first, second}

    closed = o311.get("requests", "service_requests", status="closed")
    assert first not in [r["service_request_id"] for r in closed.body]

    paged = o311.get("requests", "service_requests", page="1", page_size="1")
    assert len(paged.body) == 1 and int(paged.headers["x-total-count"]) >= 2

    now = utcnow()
    past = o311.get(
        "requests",
        "service_requests",
        start_date=(now - timedelta(days=60)).isoformat(),
        end_date=(now - timedelta(days=30)).isoformat(),
    )
    assert first not in [r["service_request_id"] for r in past.body]


def test_updates_follow_the_order_without_staff_names(
    o311: Open311, db: Session, api_key: str
) -> None:
    number = create(o311, db, api_key)["service_request_id"]
    order_id = service.order_id_for_number(db, number=number)
    duty = staff(db)
    steps: list[tuple[str, dict[str, Any]]] = [
        ("accept", {}),
        ("dispatch", {}),
        ("respond", {"mode": "on_site"}),
        ("comment", {"note": "内部备注：联系了物业"}),
        ("resolve", {"note": "已疏通排水管，积水已排除"}),
    ]
    for action, params in steps:
        service.transition(db, order_id=order_id, action=action, actor=duty, now=utcnow(), **params)
    db.commit()

    a = o311.get("servicerequestupdates", "service_request_updates", service_request_id=number)
    assert a.status == 200
    assert all(
        set(u)
        == {
            "update_id",
            "service_request_id",
            "status",
            "updated_datetime",
            "description",
            "media_url",
        }
        for u in a.body
    )
    assert [u["status"] for u in a.body] == ["open", "open", "open", "open", "closed"]
    assert all(
        u["service_request_id"] == number and u["updated_datetime"].endswith("+08:00")
        for u in a.body
    )
    assert "已疏通排水管" in a.body[-1]["description"]
    text = a.raw.decode()
    assert "内部备注" not in text  # internal comments stay inside the bureau
    assert duty.display_name not in text and PHONE not in text

    req = o311.get(f"requests/{number}", "service_requests").body[0]
    assert req["status"] == "closed" and "已疏通排水管" in req["status_notes"]

    feed = o311.get("servicerequestupdates", "service_request_updates", page_size="200")
    assert {u["update_id"] for u in a.body} <= {u["update_id"] for u in feed.body}


def test_idempotency_key_replays_the_first_answer(o311: Open311, db: Session, api_key: str) -> None:
    body = form(db, api_key)
    headers = {"Idempotency-Key": "o311-test-key-1"}
    first = o311.post(body, headers)
    before = counts(db)
    again = o311.post(body, headers)
    assert (first.status, again.status) == (201, 200)
    assert again.body[0]["service_request_id"] == first.body[0]["service_request_id"]
    assert counts(db) == before

    other = o311.post({**body, "description": "另一件事"}, headers)
    assert other.status == 409
    assert counts(db) == before


# -- errors -------------------------------------------------------------------------------


def test_post_needs_a_valid_api_key(o311: Open311, db: Session, api_key: str) -> None:
    before = counts(db)
    missing = o311.post(form(db, api_key, api_key=None))
    assert missing.status == 403 and "api_key" in o311.error_text(missing)
    wrong = o311.post(form(db, "wgk_not-a-real-key"))
    assert wrong.status == 403

    row = auth_service.api_key_client(db, key=api_key)
    assert isinstance(row, ApiKey)
    row.revoked = True
    db.commit()
    revoked = o311.post(form(db, api_key))
    assert revoked.status == 403
    assert counts(db) == before


@pytest.mark.parametrize(
    ("over", "status", "mentions"),
    [
        ({"service_code": "999"}, 400, "service_code"),
        ({"service_code": None}, 400, "service_code"),
        ({"attribute[premises]": None}, 400, "attribute[premises]"),
        ({"attribute[premises]": "garden"}, 400, "attribute[premises]"),
        ({"attribute[depth_cm]": "deep"}, 400, "attribute[depth_cm]"),
        ({"attribute[colour]": "red"}, 400, "attribute[colour]"),
        ({"lat": "22.0", "long": "113.0"}, 400, "lat/long"),
        ({"lat": None, "long": None}, 400, "lat/long"),
        ({"lat": "north"}, 400, "lat"),
        ({"description": "水" * 4001}, 400, "description"),
        ({"description": None}, 400, "description"),
        ({"phone": "12345"}, 400, "phone"),
        ({"phone_consent": "false"}, 400, "phone_consent"),
        ({"email": "not-an-email"}, 400, "email"),
        ({"address_string": "路" * 201}, 400, "address_string"),
        ({"jurisdiction_id": "example.gov"}, 404, "jurisdiction_id"),
    ],
)
def test_bad_posts_are_refused_and_store_nothing(
    o311: Open311, db: Session, api_key: str, over: dict[str, Any], status: int, mentions: str
) -> None:
    before = counts(db)
    a = o311.post(form(db, api_key, **over), {"Idempotency-Key": "refused-1"})
    assert a.status == status, a.raw
    assert mentions in o311.error_text(a)
    assert counts(db) == before


def test_address_only_is_refused_with_a_reason(o311: Open311, db: Session, api_key: str) -> None:
    a = o311.post(form(db, api_key, lat=None, long=None))
    assert a.status == 400
    assert "address_string" in o311.error_text(a)


def test_several_problems_come_together(o311: Open311, db: Session, api_key: str) -> None:
    a = o311.post(form(db, api_key, **{"attribute[premises]": None, "phone": "123", "email": "x"}))
    assert a.status == 400
    fields = {e["description"].split("：")[0].split(":")[0] for e in a.body}
    assert {"attribute[premises]", "phone", "email"} <= fields


def test_english_error_descriptions(client: TestClient, db: Session, api_key: str) -> None:
    a = Open311(client, "json").post(
        form(db, api_key, locale="en", **{"attribute[premises]": None})
    )
    assert a.body == [{"code": "400", "description": "attribute[premises]: premises is required"}]


def test_form_encoding_is_required(client: TestClient, db: Session, api_key: str) -> None:
    r = client.post(f"{BASE}/requests.json", json=form(db, api_key))
    assert r.status_code == 400
    assert "form" in r.json()[0]["description"]


def test_jurisdiction_is_optional_but_checked(o311: Open311) -> None:
    ours = get_open311_settings().jurisdiction_id
    assert o311.get("services", "services", jurisdiction_id=ours).status == 200
    bad = o311.get("services", "services", jurisdiction_id="example.gov")
    assert bad.status == 404 and ours in o311.error_text(bad)
    assert o311.get("requests", "service_requests", jurisdiction_id="example.gov").status == 404


def test_unknown_request_is_404(o311: Open311) -> None:
    a = o311.get("requests/GM-1999-999999", "service_requests")
    assert a.status == 404 and "GM-1999-999999" in o311.error_text(a)


@pytest.mark.parametrize(
    "params",
    [
        {"start_date": "yesterday"},
        {"start_date": "2026-01-01T00:00:00+08:00", "end_date": "2026-06-01T00:00:00+08:00"},
        {"start_date": "2026-06-01T00:00:00+08:00", "end_date": "2026-01-01T00:00:00+08:00"},
        {"status": "pending"},
        {"page": "0"},
        {"page_size": "201"},
        {"page_size": "ten"},
        {"locale": "fr"},
        {"service_request_id": ",".join(f"GM-2026-{i:06d}" for i in range(201))},
    ],
)
def test_bad_query_parameters_are_400(o311: Open311, params: dict[str, str]) -> None:
    a = o311.get("requests", "service_requests", **params)
    assert a.status == 400, a.raw


def test_unencoded_offset_in_dates_is_understood(client: TestClient) -> None:
    # A '+' sent unencoded arrives as a space.
    r = client.get(f"{BASE}/requests.json?start_date=2026-11-01T00:00:00+08:00")
    assert r.status_code == 200, r.text


def test_unknown_paths_formats_and_methods_answer_in_open311_form(client: TestClient) -> None:
    r = client.get(f"{BASE}/services.html")
    assert r.status_code == 404 and r.json()[0]["code"] == 404
    r = client.get(f"{BASE}/nothing.xml")
    assert r.status_code == 404 and etree.fromstring(r.content).tag == "errors"
    r = client.get(f"{BASE}/services")
    assert r.status_code == 404 and ".json" in r.json()[0]["description"]
    r = client.delete(f"{BASE}/requests.json")
    assert r.status_code == 405 and r.json()[0]["code"] == 405


def test_error_xml_element_names(client: TestClient) -> None:
    r = client.post(f"{BASE}/requests.xml", data={"service_code": "101"})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/xml")
    doc = etree.fromstring(r.content)
    assert doc.tag == "errors"
    (err,) = doc
    assert err.tag == "error"
    assert [c.tag for c in err] == ["code", "description"]
    assert err.findtext("code") == "403"
