"""CAP 1.2 (OASIS Common Alerting Protocol) documents and an Atom feed of them.

A small builder on lxml rather than generated bindings: the documents we publish use a
fixed subset of CAP, and the tests validate every kind of them (Alert, Update, Cancel;
Actual and Exercise) against the official XSD, which is what matters to a receiver.

Beyond the XSD, CAP 1.2 asks (and the tests check) that times carry an explicit offset and
no "Z", identifiers hold no spaces, commas, '<' or '&', polygons are WGS84 "lat,lon" pairs
separated by spaces with the first pair repeated at the end (at least four pairs), and that
<references> lists "sender,identifier,sent" of every earlier message, space-separated."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from lxml import etree
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MIME = "application/cap+xml"
# Parts of a subdistrict smaller than this share of its area (slivers left by clipping to
# the district boundary) are left out of the alert area: receivers gain nothing from them
# and some refuse alerts with many polygons.
MIN_PART_SHARE = 0.005
COORD_DECIMALS = 5  # about 1 m: more only lengthens the message


def cap_time(at: dt.datetime, zone: str = "Asia/Shanghai") -> str:
    """CAP dateTime: local time with its numeric offset, seconds, never 'Z'."""
    if at.tzinfo is None:
        raise ValueError("naive datetime")
    return at.astimezone(ZoneInfo(zone)).replace(microsecond=0).isoformat()


def _ring_text(coords: Sequence[tuple[float, ...]]) -> str:
    pairs = [f"{lat:.{COORD_DECIMALS}f},{lon:.{COORD_DECIMALS}f}" for lon, lat, *_ in coords]
    # Rounding can merge neighbouring points; drop repeats but keep the ring closed.
    out: list[str] = []
    for p in pairs:
        if not out or out[-1] != p:
            out.append(p)
    if out[0] != out[-1]:
        out.append(out[0])
    return " ".join(out)


def _simplified(poly: Polygon, max_vertices: int) -> Polygon:
    """The exterior ring, simplified until it has at most `max_vertices` points (closing
    point included). CAP polygons have no holes: the outline is what receivers draw."""
    ring = Polygon(poly.exterior)
    if len(ring.exterior.coords) <= max_vertices:
        return ring
    # Start near the size of a street block and double until it fits.
    tolerance = 1e-5
    current = ring
    while len(current.exterior.coords) > max_vertices:
        simpler = ring.simplify(tolerance, preserve_topology=True)
        if isinstance(simpler, Polygon) and not simpler.is_empty:
            current = simpler
        tolerance *= 2
        if tolerance > 1.0:
            break
    return current


def polygons(geometry: dict[str, Any] | BaseGeometry, *, max_vertices: int) -> list[str]:
    """CAP <polygon> texts of a WGS84 (Multi)Polygon, one per sizeable part."""
    geom = shape(geometry) if isinstance(geometry, dict) else geometry
    parts: list[Polygon]
    if isinstance(geom, Polygon):
        parts = [geom]
    elif isinstance(geom, MultiPolygon):
        parts = list(geom.geoms)
    else:
        raise ValueError(f"area geometry must be polygonal, not {geom.geom_type}")
    total = sum(p.area for p in parts) or 1.0
    keep = [p for p in parts if p.area / total >= MIN_PART_SHARE] or [
        max(parts, key=lambda p: p.area)
    ]
    keep.sort(key=lambda p: -p.area)
    return [_ring_text(list(_simplified(p, max_vertices).exterior.coords)) for p in keep]


@dataclass
class Info:
    language: str
    event: str
    urgency: str
    severity: str
    certainty: str
    headline: str
    description: str
    instruction: str
    sender_name: str
    area_desc: str
    polygons: list[str]
    response_types: list[str] = field(default_factory=list)
    event_codes: list[tuple[str, str]] = field(default_factory=list)
    effective: dt.datetime | None = None
    onset: dt.datetime | None = None
    expires: dt.datetime | None = None
    web: str | None = None
    contact: str | None = None
    parameters: list[tuple[str, str]] = field(default_factory=list)
    geocodes: list[tuple[str, str]] = field(default_factory=list)
    category: str = "Met"


@dataclass
class Alert:
    identifier: str
    sender: str
    sent: dt.datetime
    status: str  # Actual / Exercise
    msg_type: str  # Alert / Update / Cancel
    references: list[tuple[str, str, str]]  # (sender, identifier, sent-as-written)
    infos: list[Info]
    note: str | None = None
    incidents: str | None = None
    source: str | None = None
    scope: str = "Public"


def _check_token(value: str, what: str) -> None:
    if not value or any(c in value for c in " ,<&\t\n"):
        raise ValueError(f"CAP {what} must not be empty or hold spaces, commas, '<' or '&'")


def _sub(parent: Any, tag: str, text: str | None = None) -> Any:
    el = etree.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = text
    return el


def _pair(parent: Any, tag: str, name: str, value: str) -> None:
    el = _sub(parent, tag)
    _sub(el, "valueName", name)
    _sub(el, "value", value)


def build(alert: Alert) -> bytes:
    """The alert as a UTF-8 XML document, elements in the order the schema requires."""
    _check_token(alert.identifier, "identifier")
    _check_token(alert.sender, "sender")
    root = etree.Element(f"{{{CAP_NS}}}alert", nsmap={None: CAP_NS})
    _sub(root, "identifier", alert.identifier)
    _sub(root, "sender", alert.sender)
    _sub(root, "sent", cap_time(alert.sent))
    _sub(root, "status", alert.status)
    _sub(root, "msgType", alert.msg_type)
    if alert.source:
        _sub(root, "source", alert.source)
    _sub(root, "scope", alert.scope)
    if alert.note:
        _sub(root, "note", alert.note)
    if alert.references:
        _sub(root, "references", " ".join(",".join(r) for r in alert.references))
    if alert.incidents:
        _sub(root, "incidents", alert.incidents)
    for info in alert.infos:
        el = _sub(root, "info")
        _sub(el, "language", info.language)
        _sub(el, "category", info.category)
        _sub(el, "event", info.event)
        for rt in info.response_types:
            _sub(el, "responseType", rt)
        _sub(el, "urgency", info.urgency)
        _sub(el, "severity", info.severity)
        _sub(el, "certainty", info.certainty)
        for name, value in info.event_codes:
            _pair(el, "eventCode", name, value)
        if info.effective:
            _sub(el, "effective", cap_time(info.effective))
        if info.onset:
            _sub(el, "onset", cap_time(info.onset))
        if info.expires:
            _sub(el, "expires", cap_time(info.expires))
        _sub(el, "senderName", info.sender_name)
        _sub(el, "headline", info.headline)
        _sub(el, "description", info.description)
        if info.instruction:
            _sub(el, "instruction", info.instruction)
        if info.web:
            _sub(el, "web", info.web)
        if info.contact:
            _sub(el, "contact", info.contact)
        for name, value in info.parameters:
            _pair(el, "parameter", name, value)
        area = _sub(el, "area")
        _sub(area, "areaDesc", info.area_desc)
        for poly in info.polygons:
            _sub(area, "polygon", poly)
        for name, value in info.geocodes:
            _pair(area, "geocode", name, value)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


@dataclass
class FeedEntry:
    identifier: str
    title: str
    summary: str
    sent: dt.datetime
    url: str
    status: str
    msg_type: str


def atom_feed(
    *,
    feed_id: str,
    title: str,
    self_url: str,
    author: str,
    entries: Sequence[FeedEntry],
    now: dt.datetime,
) -> bytes:
    """An Atom feed whose entries link to the CAP documents (the usual way CAP is offered
    to aggregators): newest first; `updated` is the newest entry's time."""
    A = f"{{{ATOM_NS}}}"
    root = etree.Element(f"{A}feed", nsmap={None: ATOM_NS})
    etree.SubElement(root, f"{A}id").text = feed_id
    etree.SubElement(root, f"{A}title").text = title
    newest = max((e.sent for e in entries), default=now)
    etree.SubElement(root, f"{A}updated").text = cap_time(newest)
    etree.SubElement(root, f"{A}link", rel="self", href=self_url, type="application/atom+xml")
    etree.SubElement(etree.SubElement(root, f"{A}author"), f"{A}name").text = author
    for e in entries:
        entry = etree.SubElement(root, f"{A}entry")
        etree.SubElement(entry, f"{A}id").text = f"urn:cap:{e.identifier}"
        etree.SubElement(entry, f"{A}title").text = e.title
        etree.SubElement(entry, f"{A}updated").text = cap_time(e.sent)
        etree.SubElement(entry, f"{A}link", rel="alternate", href=e.url, type=CAP_MIME)
        etree.SubElement(entry, f"{A}summary").text = e.summary
        etree.SubElement(entry, f"{A}category", term=f"{e.status}/{e.msg_type}")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
