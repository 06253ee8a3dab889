"""docs/flood-sensors.md documents every topic, payload field, dead-letter reason and
setting, so a device integrator never has to read the code."""

from __future__ import annotations

from pathlib import Path

from watergrid.flood.kinds import DEAD_LETTER_REASONS
from watergrid.flood.parse import subscriptions
from watergrid.flood.settings import FloodSettings

DOC = (Path(__file__).parents[2] / "docs" / "flood-sensors.md").read_text(encoding="utf-8")


def test_topics_and_fields_are_documented() -> None:
    prefix = FloodSettings().mqtt_topic_prefix
    for topic in subscriptions(prefix):
        assert f"`{topic}`" in DOC, topic
    for field in ("ts", "value", "unit", "seq", "sensor"):
        assert f"| `{field}` |" in DOC, field


def test_dead_letter_reasons_are_documented() -> None:
    missing = [r for r in DEAD_LETTER_REASONS if f"| `{r}` |" not in DOC]
    assert not missing, missing


def test_settings_are_documented() -> None:
    prefix = str(FloodSettings.model_config.get("env_prefix"))
    missing = [
        n
        for n, f in FloodSettings.model_fields.items()
        if f"`{prefix}{n.upper()}`" not in DOC or not (f.description or "").strip()
    ]
    assert not missing, missing
