"""Writes docs/configuration.md from the settings classes: `python -m watergrid.docs_config`.
tests/test_settings_documented.py fails when a setting lacks a description or the file is
out of date."""

from __future__ import annotations

from pydantic_settings import BaseSettings

from watergrid.settings import Settings


def settings_classes() -> list[type[BaseSettings]]:
    classes: list[type[BaseSettings]] = [Settings]
    try:  # domains with settings of their own register them here
        from watergrid.notify.settings import NotifySettings

        classes.append(NotifySettings)
    except ImportError:
        pass
    return classes


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
            default = field.default if field.default is not None else ""
            lines.append(
                f"| `{prefix}{name.upper()}` | `{default}` | {field.description or ''} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
