from __future__ import annotations

from fastapi.testclient import TestClient
from shapely.geometry import shape
from tests.conftest import login_token


def test_locate_api_inside_and_outside(client: TestClient) -> None:
    h = login_token(client, "leader")
    w13 = client.get("/api/v1/areas/W13", headers=h).json()
    p = shape(w13["geometry"]).representative_point()
    r = client.get("/api/v1/locate", params={"lon": p.x, "lat": p.y}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["grid"]["code"] == "W13" and body["subdistrict"]["name_zh"] == "马田街道"
    assert body["party_group"]["number"] == 13
    far = client.get("/api/v1/locate", params={"lon": 116.4, "lat": 39.9}, headers=h)
    assert far.status_code == 422
    assert far.json()["error"]["code"] == "outside_district"
    bad = client.get("/api/v1/locate", params={"lon": "east", "lat": 22.7}, headers=h)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "lon"


def test_geojson_in_both_datums(client: TestClient) -> None:
    h = login_token(client, "leader")
    wgs = client.get("/api/v1/areas.geojson", params={"kind": "grid"}, headers=h).json()
    gcj = client.get(
        "/api/v1/areas.geojson", params={"kind": "grid", "datum": "gcj02"}, headers=h
    ).json()
    assert len(wgs["features"]) == 37 and gcj["datum"] == "gcj02"
    a = shape(wgs["features"][0]["geometry"]).centroid
    b = shape(gcj["features"][0]["geometry"]).centroid
    # GCJ-02 shifts Guangming about 500 m east and 330 m south.
    assert 0.004 < b.x - a.x < 0.006 and 0.002 < a.y - b.y < 0.004
    kinds = client.get("/api/v1/areas", headers=h).json()
    counts = {k: sum(1 for a in kinds if a["kind"] == k) for k in ("subdistrict", "grid", "zone")}
    assert counts == {"subdistrict": 6, "grid": 37, "zone": 7}
