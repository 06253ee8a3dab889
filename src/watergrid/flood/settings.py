"""Settings of sensor ingestion and the MQTT consumer (WATERGRID_FLOOD_*).

Kept apart from watergrid.settings like the notification settings: only the flood worker
reads them. docs/flood-sensors.md explains each in context."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FloodSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WATERGRID_FLOOD_", env_file=".env", extra="ignore"
    )

    mqtt_host: str = Field(
        "127.0.0.1", description="MQTT broker host the sensor consumer connects to."
    )
    mqtt_port: int = Field(1883, description="MQTT broker port.")
    mqtt_username: str = Field("", description="MQTT user name; empty connects anonymously.")
    mqtt_password: str = Field("", description="MQTT password (with mqtt_username).")
    mqtt_tls: bool = Field(False, description="Connect to the broker over TLS (system CA store).")
    mqtt_client_id: str = Field(
        "watergrid-flood-consumer",
        description="Fixed client id of the consumer. The broker keeps its persistent session "
        "(subscriptions and undelivered QoS 1 messages) under this id, so it must be the same "
        "across restarts and unique per consumer.",
    )
    mqtt_topic_prefix: str = Field(
        "watergrid/v1",
        description="Prefix of every sensor topic: {prefix}/sensors/{code}/readings and "
        "{prefix}/gateways/{id}/readings.",
    )
    mqtt_session_expiry_s: int = Field(
        7 * 24 * 3600,
        description="How long the broker keeps the consumer's session (and queues its QoS 1 "
        "messages) while it is disconnected, in seconds (MQTT v5 session expiry).",
    )
    mqtt_receive_maximum: int = Field(
        65535,
        description="QoS 1 messages the broker may send the consumer before it acknowledges "
        "them (acknowledgements follow the database commit). A backlog beyond this waits in "
        "the broker's per-client queue (Mosquitto: max_queued_messages), then is dropped by "
        "the broker, so keep it large; 65535 is the most MQTT allows.",
    )
    batch_max: int = Field(
        5000, description="Most readings written in one transaction by the consumer."
    )
    batch_linger_ms: int = Field(
        25,
        description="How long the consumer waits to fill a batch once the first message is in, "
        "in milliseconds. Adds at most this much to alarm latency.",
    )
    max_payload_bytes: int = Field(
        1_000_000, description="Larger MQTT payloads or HTTP batches are dead-lettered."
    )
    max_batch_readings: int = Field(
        10_000, description="Most readings one MQTT message or HTTP request may carry."
    )
    future_tolerance_s: int = Field(
        300,
        description="How far a reading's timestamp may lie ahead of the server clock (device "
        "clock drift) before it is refused as impossible, in seconds.",
    )
    late_limit_days: int = Field(
        30,
        description="Oldest late data accepted, in days; older timestamps are refused (a device "
        "whose clock was reset to 1970 must not rewrite history).",
    )
    stale_after_min: int = Field(
        15, description="Default minutes without data after which a new sensor counts as stale."
    )
    directory_refresh_s: float = Field(
        60.0,
        description="How often the consumer reloads sensors and thresholds from the database, in "
        "seconds. Unknown sensor codes are looked up at once regardless.",
    )


@lru_cache
def get_flood_settings() -> FloodSettings:
    return FloodSettings()
