"""Every route declares who may call it: exactly one gate (allow(...) or public)."""

from __future__ import annotations

from fastapi.dependencies.models import Dependant
from tests.conftest import api_routes

from watergrid.app import create_app
from watergrid.auth.deps import GATE_ATTR


def _gates(dep: Dependant) -> list[tuple[str, ...]]:
    found = []
    if dep.call is not None and hasattr(dep.call, GATE_ATTR):
        found.append(getattr(dep.call, GATE_ATTR))
    for sub in dep.dependencies:
        found.extend(_gates(sub))
    return found


def test_every_route_has_exactly_one_gate(demo_url: str) -> None:
    app = create_app(demo_url)
    routes = api_routes(app)
    assert len(routes) > 10
    missing = [f"{sorted(m)} {p}" for p, m, d in routes if not _gates(d)]  # type: ignore[arg-type]
    assert not missing, f"routes without a permission gate: {missing}"
    doubled = [f"{p}: {_gates(d)}" for p, _, d in routes if len(_gates(d)) > 1]  # type: ignore[arg-type]
    assert not doubled, f"routes with more than one gate: {doubled}"


def test_gate_detection_would_catch_an_ungated_route(demo_url: str) -> None:
    app = create_app(demo_url)

    @app.get("/ungated-probe")
    def probe() -> dict[str, str]:
        return {}

    dependant = next(d for p, _, d in api_routes(app) if p == "/ungated-probe")
    assert _gates(dependant) == []  # type: ignore[arg-type]
