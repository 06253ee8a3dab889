"""Sign-in, tokens, 401 for the anonymous and 403 outside one's scope."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from tests.conftest import api_routes, login_token

from watergrid.auth.deps import GATE_ATTR


def _staff_get_routes(client: TestClient) -> list[str]:
    paths = []
    for path, methods, dependant in api_routes(client.app):
        if "GET" not in methods:
            continue
        gates = [d.call for d in dependant.dependencies if hasattr(d.call, GATE_ATTR)]  # type: ignore[attr-defined]
        if gates and getattr(gates[0], GATE_ATTR) != ("public",):
            paths.append(path)
    return paths


def test_anonymous_gets_401_on_every_staff_api(client: TestClient) -> None:
    paths = [p for p in _staff_get_routes(client) if p.startswith("/api/")]
    assert "/api/v1/locate" in paths and "/api/v1/grids/{code}/card" in paths
    for path in paths:
        url = path.replace("{code}", "W01").replace("{id}", "1")
        r = client.get(url, params={"lon": 113.93, "lat": 22.76})
        assert r.status_code == 401, (path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "unauthenticated"


def test_wrong_password_and_bad_token(client: TestClient) -> None:
    r = client.post("/api/v1/auth/token", json={"username": "grid01", "password": "nope"})
    assert r.status_code == 401
    assert r.json()["error"]["message_zh"] == "用户名或密码错误"
    r = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer wgt_forged"})
    assert r.status_code == 401


def test_grid_member_sees_own_grid_only(client: TestClient) -> None:
    h = login_token(client, "grid01")
    me = client.get("/api/v1/auth/me", headers=h).json()
    assert me["roles"] == ["grid_member"] and len(me["grid_ids"]) == 1
    own = client.get("/api/v1/grids/W01/card", headers=h)
    assert own.status_code == 200
    assert own.json()["grid"]["name_zh"] == "楼村社区"
    assert own.json()["party_group"]["number"] == 1
    for other in ("W02", "W13", "W37"):
        r = client.get(f"/api/v1/grids/{other}/card", headers=h)
        assert r.status_code == 403, other
        assert r.json()["error"]["code"] == "forbidden"
    assert client.get("/api/v1/areas/W02", headers=h).status_code == 403
    assert client.get("/api/v1/areas/W01", headers=h).status_code == 200


def test_zone_scope_reaches_the_grids_it_straddles(client: TestClient) -> None:
    h = login_token(client, "chain1")
    card = client.get("/api/v1/zones/Z01/card", headers=h).json()
    straddled = {g["code"] for g in card["grids"]}
    assert len(straddled) >= 2
    for code in straddled:
        assert client.get(f"/api/v1/grids/{code}/card", headers=h).status_code == 200
    outside = next(f"W{n:02d}" for n in range(1, 38) if f"W{n:02d}" not in straddled)
    assert client.get(f"/api/v1/grids/{outside}/card", headers=h).status_code == 403


@pytest.mark.parametrize("user", ["leader", "admin", "duty"])
def test_district_users_see_every_grid(client: TestClient, user: str) -> None:
    h = login_token(client, user)
    for code in ("W01", "W13", "W37"):
        assert client.get(f"/api/v1/grids/{code}/card", headers=h).status_code == 200


def test_lists_mask_phone_numbers(client: TestClient) -> None:
    h = login_token(client, "leader")
    people = client.get("/api/v1/people", headers=h).json()
    assert people
    for p in people:
        if p["mobile_masked"]:
            assert "****" in p["mobile_masked"] and len(p["mobile_masked"]) == 11
