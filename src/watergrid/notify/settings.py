"""Settings of the notification channels and the delivery worker (WATERGRID_NOTIFY_*).

Kept apart from watergrid.settings so the channel secrets live next to the only code that
reads them; every field carries a description because docs/notifications.md lists them and
a test fails when one is missing there."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WATERGRID_NOTIFY_", env_file=".env", extra="ignore"
    )

    http_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Timeout of one outgoing HTTP request (robots, webhook, SMS gateway) and "
        "of the SMTP connection, in seconds. A timeout counts as a transient failure.",
    )
    smtp_url: str = Field(
        "",
        description="Apprise mail URL of the outgoing SMTP server, without recipients, e.g. "
        "mailtos://user:password@smtp.exmail.qq.com:465?from=noreply@example.gov.cn. "
        "Empty disables e-mail: such messages fail permanently with a clear error.",
    )
    sms_url: str = Field(
        "",
        description="SMS gateway endpoint; receives a JSON POST {message_id, to, text}. "
        "Empty disables SMS.",
    )
    sms_token: str = Field(
        "",
        description="Bearer token sent to the SMS gateway in the Authorization header; "
        "empty sends none.",
    )
    dingtalk_secrets: dict[str, str] = Field(
        # pydantic copies a mutable default for each instance; {} also reads well in docs.
        {},
        description="Signing secrets (加签) of DingTalk group robots as a JSON object "
        'mapping each robot\'s access_token to its SEC... secret, e.g. {"abc123": "SEC..."}. '
        "Robots secured by keyword or IP list need no entry.",
    )
    webhook_secret: str = Field(
        "",
        description="If set, each generic webhook request carries X-Watergrid-Signature: "
        "sha256=<hex HMAC-SHA256 of the raw body under this secret>.",
    )
    text_prefix: str = Field(
        "",
        description="Prefix of every robot and SMS text, e.g. 【光明水务】. DingTalk robots "
        "secured by keyword only accept texts containing the keyword.",
    )
    max_attempts: int = Field(
        8,
        ge=1,
        description="Attempts before a message is given up as failed (transient errors and "
        "expired leases both count).",
    )
    backoff_base_s: float = Field(
        30.0,
        gt=0,
        description="Delay before the second attempt, in seconds; it doubles with each "
        "further attempt (with jitter) up to backoff_cap_s.",
    )
    backoff_cap_s: float = Field(
        3600.0, gt=0, description="Longest delay between two attempts, in seconds."
    )
    lease_s: float = Field(
        300.0,
        gt=0,
        description="How long a claimed message belongs to its worker. A message still "
        "'sending' after this is taken over by another worker (the first one crashed).",
    )
    batch_size: int = Field(50, ge=1, description="Messages a worker claims at a time.")
    poll_interval_s: float = Field(
        2.0,
        gt=0,
        description="How long an idle worker waits before looking for due messages again, "
        "in seconds.",
    )

    @property
    def send_margin_s(self) -> float:
        """Lease a worker keeps in hand before starting one more send: the request timeout
        plus time to record the result."""
        return self.http_timeout_s * 1.5 + 5.0

    @model_validator(mode="after")
    def _lease_fits_a_send(self) -> NotifySettings:
        if self.lease_s <= self.send_margin_s:
            raise ValueError(
                f"lease_s ({self.lease_s:g}) must exceed 1.5 x http_timeout_s + 5 s "
                f"({self.send_margin_s:g}), or no message could ever be sent within its lease"
            )
        return self


@lru_cache
def get_notify_settings() -> NotifySettings:
    return NotifySettings()
