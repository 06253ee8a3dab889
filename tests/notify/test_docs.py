"""docs/notifications.md keeps up with the code: every setting, channel and route."""

from __future__ import annotations

from pathlib import Path

from fastapi.routing import APIRoute

from watergrid.notify.api import router
from watergrid.notify.models import CHANNELS
from watergrid.notify.settings import NotifySettings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "notifications.md").read_text("utf-8")


def test_every_setting_has_a_description_and_is_documented() -> None:
    prefix = NotifySettings.model_config.get("env_prefix", "")
    assert prefix == "WATERGRID_NOTIFY_"
    for name, field in NotifySettings.model_fields.items():
        assert field.description and len(field.description) > 20, name
        assert f"`{prefix}{name.upper()}`" in DOC, f"{prefix}{name.upper()} missing from the doc"


def test_every_channel_and_route_is_documented() -> None:
    for channel in CHANNELS:
        assert f"| `{channel}` |" in DOC, channel
    for route in router.routes:
        assert isinstance(route, APIRoute)
        assert route.path in DOC, route.path
