"""GeoReport shapes <-> work-order schemas. Pure functions: no database, no rules of their
own beyond naming (which language, which field), so the work-order service stays the one
place that decides anything about an order."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from watergrid.open311.errors import Open311Error, bad_param, error, from_validation_error
from watergrid.open311.formats import local_iso
from watergrid.open311.params import csv
from watergrid.settings import get_settings
from watergrid.workorders.lifecycle import DONE_STATES, FINAL_STATES, STATE_LABELS, STATES
from watergrid.workorders.schemas import CategoryRead, OrderCreate, OrderReceipt, PublicUpdate
from watergrid.workorders.service import PublicSummary

# -- status ---------------------------------------------------------------------------------

# GeoReport knows two statuses. "closed" is the spec's "it has been resolved": the work is
# done (resolved, verified, closed) or will not be done (rejected, merged). Everything else
# is still in the bureau's hands. A reopened order goes back to dispatched, so it reads
# "open" again.
CLOSED_STATES: frozenset[str] = DONE_STATES | FINAL_STATES
OPEN_STATES: tuple[str, ...] = tuple(s for s in STATES if s not in CLOSED_STATES)
STATUSES = ("open", "closed")


def status_of(state: str) -> str:
    return "closed" if state in CLOSED_STATES else "open"


def states_for(raw: str | None) -> list[str]:
    """The work-order states behind a `status` parameter (comma list of open/closed);
    an empty list means no filter."""
    wanted = [s.lower() for s in csv(raw)]
    bad = [s for s in wanted if s not in STATUSES]
    if bad:
        raise bad_param(
            "status", f"{bad} unknown: use open or closed", f"{bad} 无效：应为 open 或 closed"
        )
    if not wanted or set(wanted) == set(STATUSES):
        return []
    return sorted(CLOSED_STATES) if wanted == ["closed"] else list(OPEN_STATES)


# -- names ----------------------------------------------------------------------------------


def pick(locale: str, zh: str, en: str) -> str:
    """The text in the caller's language, falling back to the other when it is empty."""
    return (en or zh) if locale == "en" else (zh or en)


def _absolute(url: str | None) -> str | None:
    if not url:
        return None
    if url.startswith(("http://", "https://")):
        return url
    return get_settings().public_base_url.rstrip("/") + url


# -- services -------------------------------------------------------------------------------


def service_item(c: CategoryRead, locale: str) -> dict[str, Any]:
    return {
        "service_code": c.service_code,
        "service_name": pick(locale, c.name_zh, c.name_en),
        "description": pick(locale, c.description_zh, c.description_en),
        "metadata": bool(c.attributes),
        # Orders are made while the client waits: it gets the service_request_id at once.
        "type": "realtime",
        "keywords": ", ".join(c.keywords),
        "group": pick(locale, c.group_name_zh, c.group_name_en),
    }


def service_definition(c: CategoryRead, locale: str) -> dict[str, Any]:
    return {
        "service_code": c.service_code,
        "attributes": [
            {
                "variable": a.variable,
                "code": a.code,
                "datatype": a.datatype,
                "required": a.required,
                "datatype_description": a.datatype_description or None,
                "order": a.order,
                "description": pick(locale, a.description, a.description_en),
                "values": [
                    {"key": v.key, "name": pick(locale, v.name, v.name_en)} for v in a.values
                ],
            }
            for a in c.attributes
        ],
    }


# -- service requests -----------------------------------------------------------------------


def request_item(s: PublicSummary, locale: str) -> dict[str, Any]:
    """One order as GeoReport shows it to anyone. PublicSummary carries no reporter data,
    so no phone, e-mail or name can appear here."""
    label = STATE_LABELS.get(s.state, (s.state, s.state))
    media = s.media_url or (s.photo_urls[0] if s.photo_urls else None)
    return {
        "service_request_id": s.number,
        "status": status_of(s.state),
        "status_notes": s.status_note or None,
        "service_name": pick(locale, s.category_name_zh, s.category_name_en),
        "service_code": s.service_code,
        "description": s.description,
        "agency_responsible": pick(locale, s.department.name_zh, s.department.name_en)
        if s.department
        else None,
        # The detailed state (dispatched, in progress, suspended …) for people reading along.
        "service_notice": pick(locale, *label),
        "requested_datetime": local_iso(s.created_at),
        "updated_datetime": local_iso(s.updated_at),
        "expected_datetime": local_iso(s.expected_at),
        "address": s.address or None,
        "address_id": None,
        "zipcode": None,
        "lat": s.lat,
        "long": s.lon,
        "media_url": _absolute(media),
    }


def update_item(u: PublicUpdate, locale: str) -> dict[str, Any]:
    """One public history row (servicerequestupdates). PublicUpdate holds neither who acted
    nor any reporter data: only what the public timeline shows."""
    label = pick(locale, u.label_zh, u.label_en)
    sep = "：" if locale != "en" else ": "
    return {
        "update_id": str(u.id),
        "service_request_id": u.number,
        "status": status_of(u.state),
        "updated_datetime": local_iso(u.at),
        "description": f"{label}{sep}{u.note}" if u.note else label,
        "media_url": None,
    }


def receipt_item(r: OrderReceipt, *, account_id: str | None, locale: str) -> dict[str, Any]:
    due = local_iso(r.response_due_at)
    dups = len(r.possible_duplicates)
    if locale == "en":
        notice = f"Received as {r.number}."
        if due:
            notice += f" Response due by {due}."
        if dups:
            notice += f" {dups} similar open report(s) nearby."
    else:
        notice = f"已受理，编号 {r.number}。"
        if due:
            notice += f"响应时限：{due}。"
        if dups:
            notice += f"附近已有 {dups} 件同类诉求正在办理。"
    return {
        "service_request_id": r.number,
        # The order's track token: tokens/{token} resolves it, and the reporter can track
        # and rate with it. A secret of the reporter's, shown only in this answer.
        "token": r.track_token,
        "service_notice": notice,
        "account_id": account_id or None,
    }


# -- the POST form --------------------------------------------------------------------------

_ATTRIBUTE = re.compile(r"^attribute\[([^\[\]]*)\](\[\])?$")
_CJK = re.compile(r"^[\u3400-\u9fff\uf900-\ufaff·]+$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass
class FormInput:
    """The POST body as (name, value) pairs in order (repeats kept, for attribute[code][]),
    plus the query string for api_key / jurisdiction_id / locale, which some clients send
    there. `problem` is set when the body could not be read as a form."""

    items: list[tuple[str, str]] = field(default_factory=list)
    query: dict[str, str] = field(default_factory=dict)
    problem: Open311Error | None = None

    def get(self, name: str) -> str | None:
        for key, value in self.items:
            if key == name:
                return value
        return None

    def param(self, name: str) -> str | None:
        value = self.get(name)
        return value if value not in (None, "") else self.query.get(name)


def attributes_from(items: Sequence[tuple[str, str]]) -> dict[str, str | list[str]]:
    """attribute[code]=v (one value), attribute[code][]=v (a list, for multivaluelist) and
    a repeated attribute[code]=v (also a list, as some clients send multivaluelists)."""
    single: dict[str, list[str]] = {}
    listed: set[str] = set()
    for key, value in items:
        m = _ATTRIBUTE.match(key)
        if m is None:
            if key.startswith("attribute"):
                raise bad_param(
                    key,
                    "write attribute[code] or attribute[code][]",
                    "应写作 attribute[code] 或 attribute[code][]",
                )
            continue
        code = m.group(1)
        if not code:
            raise bad_param(key, "the attribute code is missing", "缺少属性编码")
        single.setdefault(code, []).append(value)
        if m.group(2):
            listed.add(code)
    out: dict[str, str | list[str]] = {}
    for code, values in single.items():
        if code in listed or len(values) > 1:
            out[code] = [v for v in values if v != ""]
        else:
            out[code] = values[0]
    return out


def _full_name(first: str, last: str) -> str:
    first, last = first.strip(), last.strip()
    # Chinese names are written family name first and without a space (张 + 三 = 张三).
    if first and last and _CJK.match(first + last):
        return last + first
    return " ".join(p for p in (first, last) if p)


def _coordinate(form: FormInput, name: str) -> float:
    raw = (form.get(name) or "").strip()
    try:
        value = float(raw)
    except ValueError:
        raise bad_param(
            name, f"{raw!r} is not a number (WGS84 degrees)", f"{raw!r} 不是数字（WGS84 经纬度）"
        ) from None
    if not math.isfinite(value):
        raise bad_param(name, "must be a finite number", "应为有限数值")
    return value


def _consent(form: FormInput, phone: str) -> bool:
    """An Open311 client collects the reporter's consent under its api_key agreement, so a
    phone it sends counts as given with consent; a client may still say phone_consent=false,
    and the work-order service then refuses the number."""
    raw = (form.get("phone_consent") or "").strip().lower()
    if raw == "":
        return bool(phone.strip())
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise bad_param("phone_consent", "use true or false", "应为 true 或 false")


def external_ref(client_id: int, form: FormInput) -> str:
    """Which client sent the order, and the client's own account/device ids: staff can trace
    a report back, and two clients never share an Idempotency-Key's receipt (the service
    hashes the whole request, this included)."""
    parts = [f"open311:{client_id}"]
    for name in ("account_id", "device_id"):
        value = (form.get(name) or "").strip()
        if value:
            parts.append(f"{name}={value}")
    return " ".join(parts)


def order_from_form(form: FormInput, *, category_code: str, client_id: int) -> OrderCreate:
    """The OrderCreate behind a POST requests form. The district routes every order by its
    point, so lat and long are required; address_string is kept as the address text and
    address_id is not used."""
    has_lat, has_long = (
        bool((form.get("lat") or "").strip()),
        bool((form.get("long") or "").strip()),
    )
    if not (has_lat and has_long):
        if form.get("address_string") or form.get("address_id"):
            raise bad_param(
                "lat/long",
                "required: this jurisdiction places every request by its coordinates and "
                "cannot place one by address_string or address_id alone",
                "必填：本辖区按经纬度定位并分派诉求，不能仅凭 address_string 或 address_id 定位",
            )
        raise bad_param(
            "lat/long", "both are required (WGS84 degrees)", "经度和纬度均为必填（WGS84）"
        )
    lat, lon = _coordinate(form, "lat"), _coordinate(form, "long")
    description = form.get("description")
    if description is None or description == "":
        raise bad_param("description", "is required", "请填写问题描述")
    phone = form.get("phone") or ""
    try:
        return OrderCreate.model_validate(
            {
                "category_code": category_code,
                "description": description,
                "lon": lon,
                "lat": lat,
                "address": (form.get("address_string") or "").strip(),
                "attributes": attributes_from(form.items),
                "reporter_name": _full_name(
                    form.get("first_name") or "", form.get("last_name") or ""
                ),
                "reporter_phone": phone,
                "phone_consent": _consent(form, phone),
                "media_url": (form.get("media_url") or "").strip() or None,
                "reporter_email": (form.get("email") or "").strip(),
                "external_ref": external_ref(client_id, form),
            }
        )
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def no_files() -> Open311Error:
    return error(
        400,
        "file uploads are not accepted: give a public link in media_url",
        "不接受文件上传：请在 media_url 中提供图片的公开链接",
    )
