"""One settings class. Every field is documented: docs/configuration.md is generated from it
and a test fails when a field has no description."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WATERGRID_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite:///./var/watergrid.db",
        description="SQLAlchemy URL. SQLite for the embedded default; "
        "postgresql+psycopg://user@host/db in production.",
    )
    timezone: str = Field(
        "Asia/Shanghai", description="Zone in which times are shown; storage is UTC."
    )
    secret_key: str = Field(
        "change-me-in-production",
        description="Signs session cookies and CSRF tokens. Must be set in production.",
    )
    cookie_secure: bool = Field(
        False, description="Mark the session cookie Secure (set true behind HTTPS)."
    )
    session_hours: int = Field(12, description="How long a page login lasts, in hours.")
    sqlite_busy_timeout_ms: int = Field(
        10_000, description="How long a SQLite writer waits for the lock before failing."
    )
    db_pool_size: int = Field(10, description="Connections per process (PostgreSQL).")
    tile_url: str = Field(
        "",
        description="Basemap tile URL template ({z}/{x}/{y}); empty draws the layers on a plain "
        "background, which works offline.",
    )
    tile_datum: str = Field(
        "wgs84",
        description="Datum of the basemap tiles: 'wgs84' (Tianditu, OSM) or 'gcj02' (AMap, "
        "Tencent). Layers are shifted to match.",
    )
    tile_attribution: str = Field("", description="Attribution text shown for the basemap.")
    public_base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Address the public reaches the service on; used in QR codes and links.",
    )
    assets_dir: Path = Field(
        Path("node_modules"),
        description="Folder holding the npm front-end libraries (leaflet, echarts, htmx).",
    )
    log_json: bool = Field(True, description="Write one JSON object per log line.")
    log_level: str = Field("INFO", description="Lowest log level written.")
    embedded_worker: bool | None = Field(
        None,
        description="Run the sweeper, outbox delivery and sensor ingestion inside `watergrid "
        "serve`. Empty: on for SQLite (the embedded default), off for PostgreSQL, where "
        "`watergrid worker` processes do it.",
    )
    bench_routes: bool = Field(
        False,
        description="Mount /bench/floor, the bare-INSERT endpoint bench/intake.py compares "
        "against. Never in production.",
    )
    default_language: str = Field("zh_CN", description="Language of pages: zh_CN or en.")
    intake_rate_per_minute: float = Field(
        60,
        description="Public intake (report form, anonymous POST /api/v1/orders, public photo "
        "upload, Open311 POST requests, tracking, permit applicants' forms; docs/security.md): "
        "submissions per minute allowed per client address, answered 429 with Retry-After "
        "beyond it. 0 switches the limit off (tests, benches). Generous because many citizens "
        "share one address behind mobile carriers' NAT.",
    )
    intake_rate_burst: int = Field(
        30,
        description="Public intake: submissions one address may make at once before the "
        "per-minute rate applies.",
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
