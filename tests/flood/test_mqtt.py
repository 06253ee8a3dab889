"""Readings through the real Mosquitto into the database: accumulations and alarms right,
duplicates and disorder harmless, bad data dead-lettered without stopping the consumer, and
nothing published with QoS 1 lost across consumer and broker restarts."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from tests.flood.helpers import GONGMING, river, sensor, stored, wait_for
from tests.flood.mqtt_helpers import PrivateBroker, consumer, publish, publisher, settings_for

from watergrid.flood import mqtt as flood_mqtt
from watergrid.flood import rain
from watergrid.flood.models import Alarm, DeadLetter, Reading
from watergrid.flood.mqtt import start_consumer_thread

pytestmark = pytest.mark.mqtt
M = timedelta(minutes=1)


def _base() -> datetime:
    now = datetime.now(UTC)
    return now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0) - timedelta(
        hours=2
    )


def _item(ts: datetime, value: float, **extra: Any) -> dict[str, Any]:
    return {"ts": ts.astimezone(UTC).isoformat(), "value": value, **extra}


def test_readings_alarms_and_dead_letters(
    sf: sessionmaker[Session], tag: str, mqtt_broker: tuple[str, int]
) -> None:
    with sf() as db:
        r = river(db, tag)
        lg = sensor(db, f"LG-{tag}", "level_gauge", asset_code=r.code, max_rate=3.0)
        a = sensor(db, f"RA-{tag}", "rain_gauge", at=GONGMING)
        b = sensor(db, f"RB-{tag}", "rain_gauge", at=GONGMING)
        db.commit()
    base, pre = _base(), f"wg-test/{tag}"
    rng = random.Random(tag)
    # Gauge A: one reading per message, shuffled, a third of them sent twice.
    singles = [
        (f"{pre}/sensors/RA-{tag}/readings", _item(base + i * 5 * M, 1.0 + i / 10))
        for i in range(1, 25)
    ]
    singles += rng.sample(singles, 8)
    rng.shuffle(singles)
    # Gauge B: one message carrying a list; the level gauge through a gateway, in the
    # datalogger's local time (+08:00), rising through yellow.
    batch = [
        (f"{pre}/sensors/RB-{tag}/readings", [_item(base + i * 5 * M, 0.5) for i in range(1, 25)])
    ]
    local = [
        _item(base + i * M, v).copy()
        | {
            "ts": (base + i * M)
            .astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
            .isoformat(),
            "sensor": f"LG-{tag}",
        }
        for i, v in enumerate([9.0, 9.4, 9.8, 10.1, 10.4, 10.6])
    ]
    gateway = [(f"{pre}/gateways/gw-{tag}/readings", {"readings": local})]
    bad = [
        (f"{pre}/sensors/RA-{tag}/readings", b"{oops"),
        (f"{pre}/sensors/RA-{tag}/readings", b'["not a reading"]'),
        (f"{pre}/sensors/NOPE-{tag}/readings", _item(base, 1.0)),
        (f"{pre}/sensors/RA-{tag}/readings", _item(base + 3 * M, -2.0)),
        (f"{pre}/sensors/LG-{tag}/readings", _item(base + 30 * M, 250.0)),
        (f"{pre}/sensors/RA-{tag}/readings", _item(datetime.now(UTC) + timedelta(hours=3), 1.0)),
    ]
    after = [
        (f"{pre}/sensors/RA-{tag}/readings", _item(base - 40 * M, 7.0))
    ]  # late, after the bad ones
    with consumer(sf, settings_for(tag)) as stats, publisher(tag) as pub:
        publish(pub, singles + batch + gateway + bad + after)
        wait_for(
            lambda: stats.stored >= 24 + 24 + 6 + 1 and stats.dead_letters >= 6, 20, "all readings"
        )
        assert stats.duplicates == 8
    with sf() as db:
        assert (
            len(stored(db, a.id)) == 25
            and len(stored(db, b.id)) == 24
            and len(stored(db, lg.id)) == 6
        )
        end = base + 2 * 60 * M
        sums = rain.window_sums(db, sensor_ids=[a.id, b.id], now=end)
        expect_a = sum(1.0 + i / 10 for i in range(1, 25)) + 7.0
        assert sums[a.id][3] == pytest.approx(expect_a)
        assert sums[b.id][3] == pytest.approx(12.0)
        assert sums[a.id][1] == pytest.approx(sum(1.0 + i / 10 for i in range(13, 25)))
        alarm = db.scalars(select(Alarm).where(Alarm.sensor_id == lg.id)).one()
        assert (alarm.state, alarm.level, alarm.reading_at) == ("raised", 2, base + 3 * M)
        reasons = (
            db.execute(select(DeadLetter.reason).where(DeadLetter.topic.like(f"{pre}/%")))
            .scalars()
            .all()
        )
        assert sorted(reasons) == sorted(
            [
                "malformed_json",
                "bad_shape",
                "unknown_sensor",
                "negative_rain",
                "out_of_range",
                "future_timestamp",
            ]
        )


def test_a_poisonous_message_is_isolated(
    sf: sessionmaker[Session],
    tag: str,
    mqtt_broker: tuple[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with sf() as db:
        g = sensor(db, f"RG-{tag}", "rain_gauge", at=GONGMING)
        db.commit()
    real = flood_mqtt.ingest

    def fragile(db: Session, **kw: Any) -> Any:
        # Stands for a bug that some one payload triggers deep inside a batch.
        if any(r.value == 66.6 for r in kw["readings"]):
            raise RuntimeError("bug triggered by this payload")
        return real(db, **kw)

    monkeypatch.setattr(flood_mqtt, "ingest", fragile)
    base, pre = _base(), f"wg-test/{tag}/sensors/RG-{tag}/readings"
    msgs = [(pre, _item(base + i * M, 1.0)) for i in range(5)]
    msgs.insert(2, (pre, _item(base + 30 * M, 66.6)))
    with consumer(sf, settings_for(tag, batch_linger_ms=200)) as stats, publisher(tag) as pub:
        publish(pub, msgs)
        wait_for(
            lambda: stats.stored >= 5 and stats.dead_letters >= 1, 20, "the batch around the poison"
        )
        assert stats.isolated_failures == 1
    with sf() as db:
        assert len(stored(db, g.id)) == 5
        dl = db.scalars(select(DeadLetter).where(DeadLetter.topic == pre)).one()
        assert (
            dl.reason == "internal_error" and "66.6" in dl.payload and "bug triggered" in dl.detail
        )


def _count(sf: sessionmaker[Session], sensor_id: int) -> int:
    with sf() as db:
        return int(
            db.scalar(
                select(func.count()).select_from(Reading).where(Reading.sensor_id == sensor_id)
            )
            or 0
        )


def test_nothing_is_lost_across_consumer_and_broker_restarts(
    sf: sessionmaker[Session], tag: str, private_broker: PrivateBroker
) -> None:
    broker = private_broker
    with sf() as db:
        g = sensor(db, f"RG-{tag}", "rain_gauge", at=GONGMING)
        db.commit()
    settings = settings_for(tag, port=broker.port)
    topic = f"wg-test/{tag}/sensors/RG-{tag}/readings"
    base = _base()

    def wave(start: int, n: int) -> list[tuple[str, object]]:
        return [(topic, _item(base + (start + i) * M, 0.2)) for i in range(n)]

    with consumer(sf, settings) as stats, publisher(tag, port=broker.port) as pub:
        publish(pub, wave(0, 20))
        wait_for(lambda: _count(sf, g.id) == 20, 20, "the first wave")
    # Consumer down: the broker queues for its persistent session.
    with publisher(tag, port=broker.port) as pub:
        publish(pub, wave(20, 20))
    with consumer(sf, settings) as stats:
        wait_for(lambda: _count(sf, g.id) == 40, 20, "the wave sent while the consumer was down")
        # Broker restart: stopped (it saves its state), started again; published to at
        # once, before the consumer has had time to reconnect.
        broker.stop()
        wait_for(lambda: not stats.connected, 10, "the consumer to notice")
        broker.start()
        with publisher(tag, port=broker.port) as pub:
            publish(pub, wave(40, 30))
        wait_for(lambda: _count(sf, g.id) == 70, 30, "the wave sent after the broker restart")
        assert stats.connects >= 2
    assert _count(sf, g.id) == 70


def test_the_consumer_waits_for_a_broker_that_is_down_at_start(
    sf: sessionmaker[Session], tag: str, private_broker: PrivateBroker
) -> None:
    broker = private_broker
    with sf() as db:
        g = sensor(db, f"RG-{tag}", "rain_gauge", at=GONGMING)
        db.commit()
    broker.stop()
    thread, stop, stats = start_consumer_thread(sf, settings=settings_for(tag, port=broker.port))
    try:
        time.sleep(0.5)  # the first attempt fails
        assert stats.connects == 0 and thread.is_alive()
        broker.start()
        wait_for(lambda: stats.connected, 15, "the consumer to connect once the broker is up")
        with publisher(tag, port=broker.port) as pub:
            publish(pub, [(f"wg-test/{tag}/sensors/RG-{tag}/readings", _item(_base(), 1.0))])
        wait_for(lambda: _count(sf, g.id) == 1, 10, "the reading")
    finally:
        stop.set()
        thread.join(15)


def test_a_dead_receiver_process_is_replaced(
    sf: sessionmaker[Session], tag: str, mqtt_broker: tuple[str, int]
) -> None:
    with sf() as db:
        g = sensor(db, f"RG-{tag}", "rain_gauge", at=GONGMING)
        db.commit()
    topic = f"wg-test/{tag}/sensors/RG-{tag}/readings"
    base = _base()
    with consumer(sf, settings_for(tag)) as stats, publisher(tag) as pub:
        publish(pub, [(topic, _item(base, 1.0))])
        wait_for(lambda: _count(sf, g.id) == 1, 10, "the first reading")
        receiver = next(p for p in mp.active_children() if p.name.startswith("flood-mqtt-receiver"))
        os.kill(receiver.pid, signal.SIGKILL)  # a process this test started, by its id
        wait_for(lambda: not stats.connected, 10, "the writer to notice")
        publish(pub, [(topic, _item(base + M, 1.0))])  # queued for the persistent session
        wait_for(lambda: _count(sf, g.id) == 2, 20, "a new receiver to deliver it")
