"""Settings of the flood response: warnings, CAP, the call-and-response and dispatch
(WATERGRID_FLOOD_RESPONSE_*). Kept apart from the sensor settings because different
processes read them: these matter to the web app and the timer sweepers."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FloodResponseSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WATERGRID_FLOOD_RESPONSE_", env_file=".env", extra="ignore"
    )

    cap_sender: str = Field(
        default="flood-office@guangming.watergrid.invalid",
        description="CAP <sender> of published warnings: identifies the issuing office. No "
        "spaces, commas or '<' '&' (CAP 1.2, 3.2.1).",
    )
    cap_sender_name: str = Field(
        default="深圳市光明区水务局防汛办",
        description="CAP <senderName>: the office named to the public in each <info>.",
    )
    cap_max_vertices: int = Field(
        default=120,
        ge=4,
        le=2000,
        description="Most vertices of one CAP <polygon>. Subdistrict outlines are simplified "
        "until they fit; receivers such as cell-broadcast gateways refuse long polygons.",
    )
    sms_inbound_token: str = Field(
        default="",
        description="Bearer token the SMS gateway sends with replies it forwards to "
        "POST /api/v1/flood/calls/sms-inbound. Empty switches SMS replies off (the route "
        "answers 404).",
    )
    sweep_interval_s: int = Field(
        default=60,
        ge=10,
        description="How often the response sweep runs, in seconds: it compares rainfall "
        "with the warning criteria and picks up new waterlogging work orders for dispatch.",
    )
    hotline: str = Field(
        default="12345",
        description="Flood hotline printed on residents' service cards when a card names "
        "none (12345: the Shenzhen government service hotline).",
    )


@lru_cache
def get_response_settings() -> FloodResponseSettings:
    return FloodResponseSettings()
