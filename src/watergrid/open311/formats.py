"""Rendering GeoReport answers as JSON or XML.

Both formats come from one value tree (dicts, lists, str/int/float/bool/None), so they can
never drift apart. XML element names follow the spec: a list is a wrapper element whose
children take the singular name from CHILD (services/service, service_requests/request,
errors/error, attributes/attribute, values/value …)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.responses import Response

from watergrid.open311.errors import Open311Error
from watergrid.settings import get_settings

FORMATS = ("json", "xml")
MEDIA_TYPES = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}

CHILD: dict[str, str] = {
    "services": "service",
    "service_requests": "request",
    "service_request_updates": "request_update",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}

# Characters XML 1.0 cannot carry at all (not even escaped). A reporter's description may
# hold one pasted from elsewhere; dropping it beats answering a document no parser accepts.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def local_iso(value: datetime | None) -> str | None:
    """ISO 8601 with the offset of the display zone (Asia/Shanghai: +08:00), to the second.
    Every datetime of every answer goes through here, so they all read the same way."""
    if value is None:
        return None
    return value.astimezone(ZoneInfo(get_settings().timezone)).isoformat(timespec="seconds")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _XML_ILLEGAL.sub("", str(value))


def _append(parent: ET.Element, name: str, value: Any) -> None:
    el = ET.SubElement(parent, name)
    _fill(el, name, value)


def _fill(el: ET.Element, name: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _append(el, key, sub)
    elif isinstance(value, list):
        child = CHILD.get(name, "item")
        for sub in value:
            _append(el, child, sub)
    else:
        el.text = _text(value)


def to_xml(root: str, value: Any) -> bytes:
    el = ET.Element(root)
    _fill(el, root, value)
    return ET.tostring(el, encoding="UTF-8", xml_declaration=True)


def to_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def render(
    fmt: str,
    root: str,
    value: Any,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """`root` names the XML document element; JSON is the value itself (a list for
    services, requests, updates and errors; an object for discovery and a definition)."""
    body = to_xml(root, value) if fmt == "xml" else to_json(value)
    return Response(body, status_code=status, media_type=MEDIA_TYPES[fmt], headers=headers)


def render_error(fmt: str, err: Open311Error, locale: str) -> Response:
    items = [{"code": p.code, "description": p.text(locale)} for p in err.problems]
    return render(fmt if fmt in FORMATS else "json", "errors", items, status=err.status)
