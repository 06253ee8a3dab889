"""Reading GeoReport query parameters. Every parameter arrives as a string and is checked
here, so that a bad value gets the spec's error list instead of the REST API's error shape."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from watergrid.open311.config import (
    IDS_MAX,
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    WINDOW_DAYS,
    get_open311_settings,
)
from watergrid.open311.errors import bad_param, error
from watergrid.open311.formats import FORMATS
from watergrid.settings import get_settings

# A '+' in an unencoded query string arrives as a space ("…T08:00:00 08:00"); clients that
# forget to encode the offset are common enough to read it back as '+'.
_SPACE_OFFSET = re.compile(r"^(.*T[\d:.]+) (\d{2}(?::?\d{2})?)$")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise error(
            404,
            f"Unknown format .{fmt}: use .json or .xml",
            f"不支持的格式 .{fmt}：请使用 .json 或 .xml",
        )
    return fmt


def locale_of(raw: str | None) -> str:
    """'en' or 'zh'. Without a `locale` parameter: the site's default language."""
    value = (raw or get_settings().default_language).strip().lower().replace("-", "_")
    if value.startswith("en"):
        return "en"
    if value.startswith("zh"):
        return "zh"
    raise bad_param("locale", "use zh_CN or en", "请使用 zh_CN 或 en")


def check_jurisdiction(raw: str | None) -> None:
    """jurisdiction_id is optional (this server serves one jurisdiction) but a wrong one is
    refused: the client is talking to the wrong server and should hear so."""
    if raw is None or raw == "":
        return
    ours = get_open311_settings().jurisdiction_id
    if raw.strip().lower() != ours.lower():
        raise error(
            404,
            f"jurisdiction_id {raw} not found: this server serves {ours}",
            f"jurisdiction_id {raw} 不存在：本服务的辖区为 {ours}",
        )


def csv(raw: str | None) -> list[str]:
    """A comma-separated parameter as its non-empty items, in order, without repeats."""
    if not raw:
        return []
    return list(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))


def request_ids(raw: str | None) -> list[str]:
    ids = csv(raw)
    if len(ids) > IDS_MAX:
        raise bad_param(
            "service_request_id",
            f"at most {IDS_MAX} ids at once",
            f"一次最多查询 {IDS_MAX} 个编号",
        )
    return ids


def parse_datetime(name: str, raw: str) -> datetime:
    """ISO 8601; a value without offset is local time (Asia/Shanghai), a bare date its
    local midnight."""
    text = raw.strip()
    m = _SPACE_OFFSET.match(text)
    if m:
        text = f"{m.group(1)}+{m.group(2)}"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise bad_param(
            name,
            f"{raw!r} is not an ISO 8601 date-time (e.g. 2026-03-01T08:00:00+08:00)",
            f"{raw!r} 不是 ISO 8601 时间（例如 2026-03-01T08:00:00+08:00）",
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(get_settings().timezone))
    return value


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def window(start_raw: str | None, end_raw: str | None, *, now: datetime) -> Window:
    """The spec's date range: the last 90 days by default; one end given, the other is 90
    days away from it; both given, at most 90 days apart."""
    span = timedelta(days=WINDOW_DAYS)
    start = parse_datetime("start_date", start_raw) if start_raw else None
    end = parse_datetime("end_date", end_raw) if end_raw else None
    if start is None and end is None:
        return Window(now - span, now)
    if start is None:
        assert end is not None
        return Window(end - span, end)
    if end is None:
        return Window(start, start + span)
    if end < start:
        raise bad_param("end_date", "is before start_date", "早于 start_date")
    if end - start > span:
        raise bad_param(
            "start_date/end_date",
            f"the range may span at most {WINDOW_DAYS} days",
            f"时间范围最多 {WINDOW_DAYS} 天",
        )
    return Window(start, end)


def _positive_int(name: str, raw: str | None, default: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise bad_param(name, f"{raw!r} is not a whole number", f"{raw!r} 不是整数") from None
    if value < 1:
        raise bad_param(name, "must be 1 or more", "应不小于 1")
    return value


def paging(page_raw: str | None, size_raw: str | None) -> tuple[int, int]:
    page = _positive_int("page", page_raw, 1)
    size = _positive_int("page_size", size_raw, PAGE_SIZE_DEFAULT)
    if size > PAGE_SIZE_MAX:
        raise bad_param("page_size", f"at most {PAGE_SIZE_MAX}", f"每页最多 {PAGE_SIZE_MAX} 条")
    return page, size
