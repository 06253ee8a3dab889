"""Walking the app's routes for the security tests: each route's gate and concrete URLs for
its path templates, filled with names and ids that exist in the demo deployment."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi.dependencies.models import Dependant
from tests.conftest import api_routes

from watergrid.auth.deps import GATE_ATTR

PARAM = re.compile(r"\{([a-z_]+)(?::path)?\}")


@dataclass(frozen=True)
class Route:
    path: str
    method: str
    gate: object  # the gate callable (allow(...)'s closure or `public`)
    permissions: tuple[str, ...]  # ("public",) for public routes

    @property
    def is_public(self) -> bool:
        return self.permissions == ("public",)


def _gate(dep: Dependant) -> object | None:
    if dep.call is not None and hasattr(dep.call, GATE_ATTR):
        return dep.call
    for sub in dep.dependencies:
        found = _gate(sub)
        if found is not None:
            return found
    return None


def routes(app: object) -> list[Route]:
    out = []
    for path, methods, dependant in api_routes(app):
        gate = _gate(dependant)  # type: ignore[arg-type]
        assert gate is not None, f"{path} has no gate (tests/test_route_permissions.py)"
        for m in sorted(methods - {"HEAD"}):
            out.append(Route(path, m, gate, tuple(getattr(gate, GATE_ATTR))))
    return sorted(out, key=lambda r: (r.path, r.method))


def params(path: str) -> list[str]:
    return PARAM.findall(path)


def fill(path: str, ids: dict[str, str]) -> str:
    """A URL for `path` naming something the demo holds (which thing depends on where the
    parameter sits: `{code}` is a grid under /grids/, a plan under /flood/plans/...)."""

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        before = path[: m.start()]
        if name == "code":
            for prefix, key in (
                ("/api/v1/areas/", "W01"),
                ("/grids/", "W01"),
                ("/zones/", "Z01"),
                ("/s/", "Z01"),
                ("/categories/", ids["category"]),
                ("/flood/assets/", ids["asset"]),
                ("/flood/sensors/", ids["sensor"]),
                ("/rain/gauges/", ids["gauge"]),
                ("/rain/subdistricts/", ids["subdistrict"]),
                ("/plans/", ids["plan"]),
            ):
                if before.endswith(prefix):
                    return key
            raise AssertionError(f"no demo value for {{code}} in {path}")
        if name == "task_id":
            return ids["crew_task_id"] if "/flood/" in before else "1"
        if name == "number":
            if "/plans/" in before:
                return ids["plan_version"]
            return ids["permit_number"] if "/permits/" in before else ids["order_number"]
        if name == "key":
            return ids["document_key"] if "/permits/" in before else "0" * 32
        fixed = {
            "grid_code": "W01",
            "person_code": "P0001",
            "service_code": ids["permit_service"] if path.startswith("/permits") else "102",
            "item_id": ids["inbox_item_id"],
            "action": "accept",
            "decision": "accept",
            "fmt": "json",
            "rest": "unknown",
            "name": "inspect.js",
            "token": "0" * 32,
            "identifier": "unknown",
            "service_request_id": ids["order_number"],
            "milestone_id": "1",
            "suggestion_id": "1",
            "warning_id": "1",
        }
        if name in fixed:
            return fixed[name]
        if name in ids:
            return ids[name]
        raise AssertionError(f"no demo value for {{{name}}} in {path}")

    return PARAM.sub(value, path)
