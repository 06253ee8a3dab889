"""Work-order settings. Every field carries a description so the configuration page and
docs/workorders.md can list it; environment variables use the WATERGRID_WO_ prefix."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkOrderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WATERGRID_WO_", env_file=".env", extra="ignore")

    reminder_fractions: tuple[float, ...] = Field(
        (0.5, 0.8),
        description="Fractions of a deadline's counted time at which the handlers are "
        "reminded (JSON list, each within (0, 1)).",
    )
    response_escalation_hours: float = Field(
        2.0,
        description="Clock hours after a missed response deadline at which the bureau "
        "leaders are told and a supervision record (督办) is opened.",
    )
    handling_escalation_workdays: float = Field(
        1.0,
        description="Working days after a missed handling deadline at which the bureau "
        "leaders are told and a supervision record (督办) is opened.",
    )
    duplicate_radius_m: float = Field(
        100.0,
        description="Open orders of the same category within this many metres are "
        "offered as possible duplicates at intake.",
    )
    duplicate_window_hours: float = Field(
        48.0, description="How far back (hours) intake looks for possible duplicates."
    )
    near_deadline_hours: float = Field(
        24.0,
        description="An open deadline falling due within this many hours counts as "
        "'near deadline' in lists and badges.",
    )
    photo_max_count: int = Field(6, description="Most photos one order (or one action) may carry.")
    photo_max_bytes: int = Field(
        8 * 1024 * 1024, description="Largest photo accepted, in bytes (before re-encoding)."
    )
    photo_max_pixels: int = Field(
        40_000_000,
        description="Largest photo accepted, in pixels; guards against decompression bombs.",
    )
    public_photo_max_side: int = Field(
        2048, description="Longest side, in pixels, of the EXIF-free copy shown publicly."
    )
    low_rating_threshold: int = Field(
        2,
        description="A reporter's rating at or below this tells the chain leader (or the "
        "grid's party group leader) and the dispatch desk, who may reopen the order.",
    )
    idempotency_key_max_length: int = Field(128, description="Longest Idempotency-Key accepted.")
    number_prefix: str = Field(
        "GM",
        pattern=r"^[A-Z]{2,6}$",
        description="Letters that start every work-order number (GM-2026-000123): one per "
        "district (GM is Guangming), so that numbers are unique across a city. Changing it "
        "affects new orders only; the count per year goes on.",
    )


@lru_cache
def get_wo_settings() -> WorkOrderSettings:
    return WorkOrderSettings()
