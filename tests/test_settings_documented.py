from pathlib import Path

from watergrid.docs_config import render, settings_classes


def test_every_setting_has_a_description() -> None:
    missing = [
        f"{cls.__name__}.{name}"
        for cls in settings_classes()
        for name, field in cls.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert not missing, f"undocumented settings: {missing}"


def test_configuration_doc_is_current() -> None:
    doc = Path(__file__).parents[1] / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8") == render(), "run `make docs`"
