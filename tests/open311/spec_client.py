"""A small GeoReport v2 client for the tests: it asks for `.json` or `.xml`, checks the
document the way a spec-following client relies on it (content type, XML declaration and
element names) and returns one comparable shape for both formats — every leaf as text
(booleans "true"/"false", numbers as written, null as "")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from lxml import etree

BASE = "/open311/v2"
LIST_ROOTS = {
    "services": "service",
    "service_requests": "request",
    "service_request_updates": "request_update",
    "errors": "error",
}
NESTED_LISTS = {
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}


def text_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: text_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [text_tree(v) for v in value]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _element(el: etree._Element) -> Any:
    children = list(el)
    if el.tag in NESTED_LISTS:
        assert all(c.tag == NESTED_LISTS[el.tag] for c in children), (
            f"<{el.tag}> holds {[c.tag for c in children]}"
        )
        return [_element(c) for c in children]
    if not children:
        return el.text or ""
    return {c.tag: _element(c) for c in children}


def parse_xml(body: bytes, root: str) -> Any:
    assert body.startswith(b"<?xml"), body[:60]
    assert b"encoding='UTF-8'" in body[:60] or b'encoding="UTF-8"' in body[:60]
    doc = etree.fromstring(body)
    assert doc.tag == root, f"root <{doc.tag}>, expected <{root}>"
    if root in LIST_ROOTS:
        child = LIST_ROOTS[root]
        assert all(c.tag == child for c in doc), f"<{root}> holds {[c.tag for c in doc]}"
        return [_element(c) for c in doc]
    return {c.tag: _element(c) for c in doc}


@dataclass
class Answer:
    status: int
    body: Any
    raw: bytes
    headers: Any


class Open311:
    def __init__(self, http: TestClient, fmt: str) -> None:
        self.http, self.fmt = http, fmt

    def _answer(self, r: Any, root: str) -> Answer:
        ctype = r.headers["content-type"]
        if self.fmt == "xml":
            assert ctype.startswith("text/xml"), ctype
            root = "errors" if r.status_code >= 400 else root
            body = parse_xml(r.content, root)
        else:
            assert ctype.startswith("application/json"), ctype
            body = text_tree(r.json())
        if r.status_code >= 400:
            assert isinstance(body, list) and body, body
            for e in body:
                assert set(e) == {"code", "description"}, e
                assert e["code"] == str(r.status_code) and e["description"], e
        return Answer(r.status_code, body, r.content, r.headers)

    def get(self, path: str, root: str, **params: Any) -> Answer:
        return self._answer(self.http.get(f"{BASE}/{path}.{self.fmt}", params=params), root)

    def post(self, data: dict[str, Any], headers: dict[str, str] | None = None) -> Answer:
        r = self.http.post(f"{BASE}/requests.{self.fmt}", data=data, headers=headers or {})
        return self._answer(r, "service_requests")

    def error_text(self, a: Answer) -> str:
        return " | ".join(e["description"] for e in a.body)
