"""CAP 1.2 output: every kind of message we publish validates against the official XSD
(tests/flood_response/data/CAP-v1.2.xsd, see the README there), and keeps the rules the
schema cannot check: times with an offset and no 'Z', identifiers without spaces or commas,
polygons as closed WGS84 "lat,lon" rings inside the subdistrict, references to every
earlier message. The Atom feed lists them, drills only on request."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from shapely.geometry import Point, shape
from sqlalchemy.orm import Session
from tests.flood_response.conftest import actor, login

from watergrid.flood import cap
from watergrid.flood import warnings as warning_service
from watergrid.flood.response_schemas import WarningIssue
from watergrid.geo import service as geo_service
from watergrid.timers.clock import FrozenClock

XSD = Path(__file__).parent / "data" / "CAP-v1.2.xsd"
NS = {"c": cap.CAP_NS}
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


@lru_cache
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD)))


def validate(xml: str | bytes) -> etree._Element:
    doc = etree.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml)
    s = schema()
    assert s.validate(doc), s.error_log
    return doc


def _lifecycle(
    db: Session, clock: FrozenClock, exercise: bool
) -> list[warning_service.WarningEvent]:
    w = warning_service.issue(
        db,
        data=WarningIssue(subdistrict_code="440311002", level="yellow", exercise=exercise),
        actor=actor(),
        now=clock.now(),
    )
    clock.advance(minutes=20)
    warning_service.change_level(
        db, warning_id=w.id, level="red", actor=actor(), reason="", now=clock.now()
    )
    clock.advance(minutes=40)
    warning_service.change_level(
        db, warning_id=w.id, level="orange", actor=actor(), reason="", now=clock.now()
    )
    clock.advance(minutes=30)
    warning_service.lift(db, warning_id=w.id, actor=actor(), reason="", now=clock.now())
    return warning_service.events(db, warning_id=w.id)


@pytest.mark.parametrize("exercise", [False, True])
def test_every_message_validates_and_follows_cap_rules(
    db: Session, clock: FrozenClock, exercise: bool
) -> None:
    events = _lifecycle(db, clock, exercise)
    assert [e.cap_msg_type for e in events] == ["Alert", "Update", "Update", "Cancel"]
    area = shape(geo_service.get_or_404(db, code="440311002").geometry)
    seen: list[tuple[str, str, str]] = []
    for e in events:
        doc = validate(e.cap_xml)

        def get(path: str, doc: etree._Element = doc) -> str | None:
            return doc.findtext(path, namespaces=NS)

        assert get("c:status") == ("Exercise" if exercise else "Actual")
        assert get("c:msgType") == e.cap_msg_type
        assert get("c:identifier") == e.cap_identifier
        assert not re.search(r"[\s,<&]", e.cap_identifier)
        assert TIME_RE.match(get("c:sent")) and get("c:sent").endswith("+08:00")
        refs = get("c:references")
        if seen:
            assert refs == " ".join(",".join(r) for r in seen)
        else:
            assert refs is None
        seen.append((get("c:sender"), get("c:identifier"), get("c:sent")))
        infos = doc.findall("c:info", NS)
        assert [i.findtext("c:language", namespaces=NS) for i in infos] == ["zh-CN", "en-US"]
        for info in infos:
            for tag in ("c:effective", "c:onset", "c:expires"):
                if info.findtext(tag, namespaces=NS):
                    assert TIME_RE.match(info.findtext(tag, namespaces=NS))
            polys = info.findall("c:area/c:polygon", NS)
            assert polys
            for poly in polys:
                pairs = poly.text.split(" ")
                assert len(pairs) >= 4 and pairs[0] == pairs[-1]
                for pair in pairs:
                    lat, lon = (float(x) for x in pair.split(","))
                    assert 22.6 < lat < 22.9 and 113.8 < lon < 114.1  # lat first, in Guangming
                    assert area.buffer(0.003).contains(Point(lon, lat))
                assert len(pairs) <= 120
            assert info.findtext("c:area/c:geocode/c:value", namespaces=NS) == "440311002"
        if exercise:
            assert "演练" in (get("c:note") or "")
            assert doc.find("c:info/c:headline", NS).text.startswith("【演练】")
    cancel = validate(events[-1].cap_xml)
    assert cancel.findtext("c:info/c:responseType", namespaces=NS) == "AllClear"
    upd = validate(events[1].cap_xml)
    assert upd.findtext("c:info/c:severity", namespaces=NS) == "Extreme"


def test_polygons_simplify_to_the_vertex_budget_and_keep_the_shape(db: Session) -> None:
    for a in geo_service.get_all(db, kind="subdistrict"):
        full = shape(a.geometry)
        for budget in (12, 40, 120):
            polys = cap.polygons(a.geometry, max_vertices=budget)
            for text in polys:
                pairs = text.split(" ")
                assert 4 <= len(pairs) <= budget and pairs[0] == pairs[-1]
            ring = [tuple(float(x) for x in p.split(",")) for p in polys[0].split(" ")]
            from shapely.geometry import Polygon

            approx = Polygon([(lon, lat) for lat, lon in ring])
            # The simplified outline still covers most of the subdistrict's largest part.
            biggest = max(getattr(full, "geoms", [full]), key=lambda g: g.area)
            assert approx.intersection(biggest).area / biggest.area > (
                0.85 if budget >= 40 else 0.7
            )


def test_builder_refuses_bad_identifiers_and_naive_times() -> None:
    import datetime as dt

    with pytest.raises(ValueError):
        cap.cap_time(dt.datetime(2025, 1, 1))
    alert = cap.Alert(
        identifier="a b",
        sender="x",
        sent=dt.datetime.now(dt.UTC),
        status="Actual",
        msg_type="Alert",
        references=[],
        infos=[],
    )
    with pytest.raises(ValueError):
        cap.build(alert)


def test_feed_and_documents_over_http(client: TestClient, db: Session, clock: FrozenClock) -> None:
    real = _lifecycle(db, clock, exercise=False)
    drill = _lifecycle(db, clock, exercise=True)
    r = client.get(f"/api/v1/flood/cap/{real[0].cap_identifier}.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/cap+xml")
    validate(r.content)
    assert client.get("/api/v1/flood/cap/nope.xml").status_code == 404

    feed = etree.fromstring(client.get("/api/v1/flood/cap/feed.atom").content)
    atom = {"a": cap.ATOM_NS}
    links = [e.get("href") for e in feed.findall("a:entry/a:link", atom)]
    assert feed.findtext("a:id", namespaces=atom) and feed.find("a:author/a:name", atom) is not None
    assert all(any(link.endswith(f"/{e.cap_identifier}.xml") for link in links) for e in real)
    assert not any(link.endswith(f"/{drill[0].cap_identifier}.xml") for link in links)
    with_drills = etree.fromstring(
        client.get("/api/v1/flood/cap/feed.atom?include_exercise=true").content
    )
    assert any(
        e.get("href").endswith(f"/{drill[0].cap_identifier}.xml")
        for e in with_drills.findall("a:entry/a:link", atom)
    )
    # Issuing over the API publishes too, and the warning points at its CAP document.
    w = client.post(
        "/api/v1/flood/warnings",
        json={"subdistrict_code": "440311004", "level": "orange"},
        headers=login(client, "duty"),
    )
    assert w.status_code == 201, w.text
    validate(client.get(w.json()["cap_url"]).content)
