"""The adapter's pure parts: the POST form, the status mapping (and that docs/open311.md
states it for every work-order state), the date window, XML safety, key issuing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from watergrid.open311 import mapping
from watergrid.open311.errors import Open311Error
from watergrid.open311.formats import local_iso, to_xml
from watergrid.open311.params import parse_datetime, window
from watergrid.workorders.lifecycle import STATES

DOC = Path(__file__).parents[2] / "docs" / "open311.md"


def test_attribute_forms() -> None:
    items = [
        ("attribute[a]", "1"),
        ("attribute[b][]", "x"),
        ("attribute[b][]", "y"),
        ("attribute[c]", "p"),
        ("attribute[c]", "q"),
        ("attribute[d][]", "only"),
        ("attribute[e][]", ""),
        ("description", "not an attribute"),
    ]
    assert mapping.attributes_from(items) == {
        "a": "1",
        "b": ["x", "y"],
        "c": ["p", "q"],
        "d": ["only"],
        "e": [],
    }


@pytest.mark.parametrize("key", ["attribute", "attribute[]", "attribute[a][b]", "attributes[a]"])
def test_malformed_attribute_names_are_refused(key: str) -> None:
    with pytest.raises(Open311Error) as e:
        mapping.attributes_from([(key, "v")])
    assert e.value.status == 400 and key in e.value.problems[0].en


def test_every_state_maps_to_open_or_closed_and_the_doc_says_so() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for state in STATES:
        m = re.search(rf"^\| `{state}` \| (open|closed) \|$", doc, re.MULTILINE)
        assert m, f"docs/open311.md does not map state {state}"
        assert m.group(1) == mapping.status_of(state), state
    assert mapping.states_for("open") == list(mapping.OPEN_STATES)
    assert set(mapping.states_for("closed")) == mapping.CLOSED_STATES
    assert mapping.states_for("open,closed") == [] == mapping.states_for(None)


def test_chinese_names_join_family_name_first() -> None:
    assert mapping._full_name("三", "张") == "张三"
    assert mapping._full_name("Wei", "Li") == "Wei Li"
    assert mapping._full_name("", "张") == "张"


def test_window_rules() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    w = window(None, None, now=now)
    assert (w.start, w.end) == (now - timedelta(days=90), now)
    start = parse_datetime("start_date", "2026-06-01")
    assert start.isoformat() == "2026-06-01T00:00:00+08:00"
    assert window("2026-06-01", None, now=now).end == start + timedelta(days=90)
    with pytest.raises(Open311Error):
        window("2026-01-01", "2026-06-01", now=now)


def test_datetimes_carry_the_beijing_offset() -> None:
    assert local_iso(datetime(2026, 3, 2, 1, 0, 30, 123456, tzinfo=UTC)) == (
        "2026-03-02T09:00:30+08:00"
    )


def test_xml_survives_characters_xml_cannot_hold() -> None:
    body = to_xml("service_requests", [{"description": "bell\x07 and tab\t 水", "flag": True}])
    doc = etree.fromstring(body)
    assert doc.findtext("request/description") == "bell and tab\t 水"
    assert doc.findtext("request/flag") == "true"


def test_issue_key_from_the_command_line(o311_url: str) -> None:
    from watergrid import db as dbmod
    from watergrid.auth import service as auth_service
    from watergrid.open311.keys import issue, main

    key = issue("CLI client", o311_url)
    assert key.startswith("wgk_")
    with dbmod.session_scope(write=False) as s:
        client = auth_service.api_key_client(s, key=key)
        assert client is not None and client.client_name == "CLI client"
    assert main([]) == 2
