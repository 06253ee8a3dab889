"""Writes docs/configuration.md from the settings classes: `python -m watergrid.docs_config`.
tests/test_settings_documented.py fails when a setting lacks a description or the file is
out of date."""

from __future__ import annotations

import importlib

from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

# Every settings class of the project: the shared one and each domain's own.
SETTINGS_CLASSES = (
    "watergrid.settings:Settings",
    "watergrid.workorders.config:WorkOrderSettings",
    "watergrid.notify.settings:NotifySettings",
    "watergrid.open311.config:Open311Settings",
    "watergrid.flood.settings:FloodSettings",
    "watergrid.flood.response_settings:FloodResponseSettings",
)


def settings_classes() -> list[type[BaseSettings]]:
    out = []
    for ref in SETTINGS_CLASSES:
        module, name = ref.split(":")
        out.append(getattr(importlib.import_module(module), name))
    return out


def render() -> str:
    lines = [
        "# Configuration",
        "",
        "Generated from the settings classes by `make docs`; do not edit by hand.",
        "Every setting is an environment variable (or a line in `.env`).",
        "",
    ]
    for cls in settings_classes():
        prefix = str(cls.model_config.get("env_prefix", ""))
        lines += [f"## {cls.__name__}", "", "| variable | default | meaning |", "|---|---|---|"]
        for name, field in cls.model_fields.items():
            default = field.default if field.default not in (None, PydanticUndefined) else ""
            if field.default_factory is not None:
                default = field.default_factory()  # type: ignore[call-arg]
            lines.append(f"| `{prefix}{name.upper()}` | `{default}` | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
