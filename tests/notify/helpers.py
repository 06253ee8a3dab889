"""Small builders shared by the notification tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from tests.notify.sink import HttpSink

from watergrid.notify.channels import ChannelSender
from watergrid.notify.models import OutboxMessage
from watergrid.notify.settings import NotifySettings
from watergrid.org.models import Person

T0 = datetime(2025, 7, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shenzhen on a flood-season morning


def add_person(
    db: Session, code: str, *, mobile: str = "", email: str = "", active: bool = True
) -> Person:
    person = Person(code=code, name=f"测试{code}", mobile=mobile, email=email, active=active)
    db.add(person)
    db.flush()
    return person


def settings_for(sink: HttpSink, **overrides: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "sms_url": f"{sink.url}/sms",
        "http_timeout_s": 1.0,
        "lease_s": 60.0,
        "backoff_base_s": 30.0,
        "backoff_cap_s": 3600.0,
        "max_attempts": 5,
    }
    values.update(overrides)
    return NotifySettings(**values)


def sender_for(settings: NotifySettings) -> ChannelSender:
    return ChannelSender(settings, base_url="https://water.example.gov.cn")


def count(factory: sessionmaker[Session], **where: str) -> int:
    with factory() as db:
        q = select(func.count()).select_from(OutboxMessage)
        for k, v in where.items():
            q = q.where(getattr(OutboxMessage, k) == v)
        return int(db.scalar(q) or 0)


def seeded() -> random.Random:
    return random.Random(20250701)
