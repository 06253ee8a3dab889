"""Every route × every demo account (and the anonymous caller): the route's gate lets in
exactly the roles that PERMISSIONS grants its permission to.

The expectation comes from the PERMISSIONS table and each account's roles, never from a
per-route list, so the test fails when a gate misbehaves, when an account is loaded with the
wrong roles, or when something in front of the gate answers 401/403 for a caller who holds
the permission. For callers who hold it the route may still refuse for scope (403 on a record
outside their grid, zone or department); to tell that apart from the gate's own answer, each
gate is wrapped for the test in a probe that records whether the gate itself let the caller
through (the real gate still decides) and then answers at once."""

from __future__ import annotations

import inspect
import time
from typing import Annotated

from fastapi import Depends, Request
from tests.security.conftest import USERS, Deployment
from tests.security.routes import Route, fill, routes

from watergrid.auth.deps import optional_principal
from watergrid.auth.permissions import PERMISSIONS, ROLES
from watergrid.auth.principal import Principal
from watergrid.errors import AppError

JSON = {"Accept": "application/json"}
GATE_PASSED = 299


def holders(route: Route) -> set[str]:
    """Roles the PERMISSIONS table grants any of the route's permissions to."""
    out: set[str] = set()
    for p in route.permissions:
        assert p in PERMISSIONS, f"{route.method} {route.path}: unknown permission {p!r}"
        out |= PERMISSIONS[p]
    return out


def _probe(gate: object, log: dict[str, object]) -> object:
    async def probe(
        request: Request,
        principal: Annotated[Principal | None, Depends(optional_principal)],
    ) -> Principal:
        key = request.headers.get("x-probe", "")
        try:
            result = gate(principal)  # type: ignore[operator]
            if inspect.isawaitable(result):
                result = await result
        except AppError as exc:
            log[key] = exc.status
            raise
        log[key] = "pass"
        # The caller is through the gate, which is all the matrix asks; stopping here keeps
        # the 2,000 requests cheap and free of side effects. What the routes do for holders
        # is exercised by the fuzzing (test_schemathesis.py) and the scope tests.
        raise AppError(GATE_PASSED, "gate_passed", "through the gate", "已通过权限检查")

    return probe


def _send(dep: Deployment, route: Route, url: str, headers: dict[str, str]) -> object:
    body = {} if route.method in {"POST", "PUT", "PATCH"} else None
    return dep.client.request(route.method, url, headers=headers, json=body, follow_redirects=False)


def test_every_role_in_the_demo_has_its_account(dep: Deployment) -> None:
    # The matrix means little if a role had no account to try it with.
    covered = set().union(*USERS.values())
    assert covered == set(ROLES) - {"public"}
    for user, roles in USERS.items():
        me = dep.client.get("/api/v1/auth/me", headers=dep.headers[user]).json()
        assert set(me["roles"]) == roles, user


def test_permission_matrix(dep: Deployment) -> None:
    started = time.monotonic()
    all_routes = [r for r in routes(dep.app) if not r.is_public]
    assert len(all_routes) > 150
    log: dict[str, object] = {}
    gates = {r.gate for r in all_routes}
    for gate in gates:
        dep.app.dependency_overrides[gate] = _probe(gate, log)  # type: ignore[index]
    failures: list[str] = []
    checked = 0
    try:
        for route in all_routes:
            url = fill(route.path, dep.ids)
            allowed = holders(route)
            where = f"{route.method} {route.path}"

            r = _send(dep, route, url, {**JSON, "x-probe": "anon"})
            checked += 1
            if r.status_code != 401 or r.json()["error"]["code"] != "unauthenticated":  # type: ignore[attr-defined]
                failures.append(f"{where} anonymous: {r.status_code}")  # type: ignore[attr-defined]

            for user, roles in USERS.items():
                key = f"{user}:{where}"
                log.pop(key, None)
                r = _send(dep, route, url, {**JSON, **dep.headers[user], "x-probe": key})
                checked += 1
                status = r.status_code  # type: ignore[attr-defined]
                if roles & allowed:
                    if log.get(key) != "pass" or status != GATE_PASSED:
                        failures.append(f"{where} {user} holds it: gate {log.get(key)}, {status}")
                elif status != 403 or log.get(key) != 403:
                    failures.append(f"{where} {user} lacks it: gate {log.get(key)}, {status}")
    finally:
        for gate in gates:
            dep.app.dependency_overrides.pop(gate, None)  # type: ignore[arg-type]
    assert not failures, "\n".join(failures)
    assert checked == len(all_routes) * (len(USERS) + 1)
    print(f"permission matrix: {checked} requests in {time.monotonic() - started:.1f} s")


def test_pages_send_the_anonymous_to_sign_in(dep: Deployment) -> None:
    pages = [
        r
        for r in routes(dep.app)
        if not r.is_public and r.method == "GET" and not r.path.startswith("/api/")
    ]
    assert len(pages) > 20
    for route in pages:
        r = dep.client.get(
            fill(route.path, dep.ids), headers={"Accept": "text/html"}, follow_redirects=False
        )
        assert r.status_code == 303, (route.path, r.status_code)
        assert r.headers["location"].startswith("/login?next="), route.path


def test_the_matrix_would_catch_a_mis_granted_permission(dep: Deployment) -> None:
    """Grant a permission to a role the table does not give it to: a request that the table
    says must be refused now gets through, which is what the matrix compares against."""
    route = next(r for r in routes(dep.app) if r.path == "/api/v1/notify/outbox")
    assert holders(route) == {"admin"}
    url = fill(route.path, dep.ids)
    assert dep.client.get(url, headers=dep.headers["grid01"]).status_code == 403
    PERMISSIONS["ops.metrics"].add("grid_member")
    try:
        assert dep.client.get(url, headers=dep.headers["grid01"]).status_code == 200
    finally:
        PERMISSIONS["ops.metrics"].discard("grid_member")
