"""Open311 errors: the spec's error list (`[{"code": 400, "description": "..."}]`,
`<errors><error>…`) built from the work-order service's AppError or from our own checks.

Field names in descriptions are the Open311 parameter names the client sent (`phone`,
`attribute[premises]`, `lat/long` …), not the service's internal ones, so a client can find
the offending parameter."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from watergrid.errors import AppError

# Service field -> the Open311 parameter it came from (mapping.order_from_form).
FIELD_NAMES: dict[str, str] = {
    "category_code": "service_code",
    "description": "description",
    "lon": "long",
    "lat": "lat",
    "location": "lat/long",
    "address": "address_string",
    "reporter_name": "first_name/last_name",
    "reporter_phone": "phone",
    "phone_consent": "phone_consent",
    "reporter_email": "email",
    "media_url": "media_url",
    "external_ref": "account_id/device_id",
}

# GeoReport v2 names 400, 403 and 404. A service validation error (422) is a bad parameter
# (400); "sign in first" (401) means no usable api_key here (403). 409 (an Idempotency-Key
# reused for another request) has no GeoReport equivalent and keeps its own code.
STATUS_MAP = {422: 400, 401: 403}


@dataclass(frozen=True)
class Problem:
    code: int
    en: str
    zh: str

    def text(self, locale: str) -> str:
        return self.en if locale == "en" else self.zh


class Open311Error(Exception):
    """One or more problems; the HTTP status is the first problem's code."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.en for p in problems))
        self.problems = problems

    @property
    def status(self) -> int:
        return self.problems[0].code


def error(code: int, en: str, zh: str) -> Open311Error:
    return Open311Error([Problem(code, en, zh)])


def bad_param(name: str, en: str, zh: str) -> Open311Error:
    return error(400, f"{name}: {en}", f"{name}：{zh}")


def open311_field(field: str) -> str:
    if field.startswith("attributes."):
        return f"attribute[{field.split('.', 1)[1]}]"
    return FIELD_NAMES.get(field, field)


def from_app_error(exc: AppError) -> Open311Error:
    status = STATUS_MAP.get(exc.status, exc.status)
    if not exc.fields:
        return error(status, exc.message, exc.message_zh)
    return Open311Error(
        [
            Problem(
                status,
                f"{open311_field(f.field)}: {f.message}",
                f"{open311_field(f.field)}：{f.message_zh}",
            )
            for f in exc.fields
        ]
    )


def from_validation_error(exc: ValidationError) -> Open311Error:
    """Shape checks of OrderCreate (lengths of address_string, media_url, names …)."""
    problems = []
    for e in exc.errors():
        field = open311_field(".".join(str(p) for p in e["loc"]) or "body")
        problems.append(
            Problem(400, f"{field}: {e['msg']}", f"{field}：格式或长度不正确（{e['msg']}）")
        )
    return Open311Error(problems)
