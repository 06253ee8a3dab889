"""Small helpers shared by the work-order service modules: bilingual field errors, hashing,
the display time zone, paging limits."""

from __future__ import annotations

import hashlib
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from watergrid.errors import AppError, FieldError, invalid
from watergrid.settings import get_settings

PAGE_SIZE_MAX = 200
GLOBAL_ROLES = frozenset({"admin", "bureau_leader", "duty_officer"})


def local_tz() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


def sha256_hex(value: str | bytes) -> str:
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()


def field_error(field_name: str, en: str, zh: str) -> FieldError:
    return FieldError(field=field_name, message=en, message_zh=zh)


def raise_fields(problems: list[tuple[str, FieldError]]) -> None:
    """One problem keeps its own code (outside_district, bad_phone, ...); several are
    reported together as `invalid`, each with its field."""
    if not problems:
        return
    if len(problems) == 1:
        code, fe = problems[0]
        raise AppError(422, code, fe.message, fe.message_zh, [fe])
    raise invalid([fe for _, fe in problems])


def validation_error(exc: ValidationError) -> AppError:
    return invalid(
        [
            field_error(".".join(str(p) for p in e["loc"]) or "body", e["msg"], "格式或取值不正确")
            for e in exc.errors()
        ]
    )
