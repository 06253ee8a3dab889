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


def test_every_settings_class_is_listed() -> None:
    """A domain that adds a settings class must add it to SETTINGS_CLASSES."""
    import importlib
    import inspect
    import pkgutil

    from pydantic_settings import BaseSettings

    import watergrid

    listed = set(settings_classes())
    found = set()
    for mod in pkgutil.walk_packages(watergrid.__path__, "watergrid."):
        if ".migrations" in mod.name or mod.name.endswith("__main__"):
            continue
        m = importlib.import_module(mod.name)
        for _, obj in inspect.getmembers(m, inspect.isclass):
            if (
                issubclass(obj, BaseSettings)
                and obj is not BaseSettings
                and obj.__module__ == m.__name__
            ):
                found.add(obj)
    assert found <= listed, f"settings classes missing from docs_config: {found - listed}"
