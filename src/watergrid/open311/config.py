"""Open311 settings and the fixed limits of the adapter (docs/open311.md)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The spec's window for GET requests: a search with no dates covers the last 90 days and an
# explicit one may not be wider, so that an anonymous caller cannot page the whole archive
# in one query.
WINDOW_DAYS = 90
# The work-order service clamps public lists at 200 rows a page; asking for more is
# refused here rather than silently shortened, so a client's paging arithmetic stays true.
PAGE_SIZE_MAX = 200
PAGE_SIZE_DEFAULT = 50
# Several service_request_id values in one GET: as many as one page holds.
IDS_MAX = PAGE_SIZE_MAX
# Date of the last change to what this adapter serves (discovery `changeset`); bump it when
# the fields or routes change so that clients caching discovery notice.
CHANGESET = "2026-11-26T00:00:00+08:00"
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"


class Open311Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WATERGRID_OPEN311_", env_file=".env", extra="ignore"
    )

    jurisdiction_id: str = Field(
        "guangming.sz.gov.cn",
        description="Open311 jurisdiction_id this server answers for. Optional on every "
        "request; when a client sends another value the request fails with 404.",
    )
    contact: str = Field(
        "深圳市光明区水务局 Guangming District Water Affairs Bureau, Shenzhen",
        description="Who to contact about the Open311 service (discovery `contact`).",
    )
    key_service: str = Field(
        "api_key 由区水务局系统管理员发放 / api_keys are issued by the bureau's administrator",
        description="How a client obtains an api_key (discovery `key_service`).",
    )


@lru_cache
def get_open311_settings() -> Open311Settings:
    return Open311Settings.model_validate({})
