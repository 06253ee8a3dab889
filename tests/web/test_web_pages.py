"""The map, card and service-card pages without a browser: gates, scope, datum, languages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import login_token

from watergrid.settings import get_settings

HTML = {"Accept": "text/html"}
MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
WEB = Path(__file__).resolve().parents[2] / "src" / "watergrid" / "web"


def as_user(client: TestClient, username: str) -> dict[str, str]:
    return {**HTML, **login_token(client, username)}


def map_config(html: str) -> dict[str, object]:
    m = re.search(r'<script type="application/json" id="wg-map-config">(.*?)</script>', html, re.S)
    assert m, "map configuration missing"
    return json.loads(m.group(1))  # type: ignore[no-any-return]


@pytest.fixture
def tiles(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Change basemap settings through the environment for one test."""
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def test_pages_send_the_anonymous_to_sign_in(client: TestClient) -> None:
    for path in ("/map", "/grids/W01", "/zones/Z01", "/zones/Z01/service-card"):
        r = client.get(path, headers=HTML, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"] == f"/login?next={path}"


def test_grid_card_in_scope_and_403_outside(client: TestClient) -> None:
    h = as_user(client, "grid01")
    r = client.get("/grids/W01", headers=h)
    assert r.status_code == 200
    assert "楼村社区" in r.text and "红色链长第1联合党小组" in r.text
    for tag in ("局机关干部", "专业队伍", "社区党员"):
        assert tag in r.text
    assert 'id="work-orders"' in r.text
    r = client.get("/grids/W02", headers=h)
    assert r.status_code == 403
    assert "超出您的权限或管辖范围" in r.text
    assert "红色链长第2联合党小组" not in r.text


def test_unknown_or_wrong_kind_is_a_chinese_404(client: TestClient) -> None:
    h = as_user(client, "admin")
    for path in ("/grids/W99", "/grids/Z01", "/zones/W01", "/zones/Z99/service-card"):
        r = client.get(path, headers=h)
        assert r.status_code == 404, path
        assert "未找到区域" in r.text


def test_zone_pages_follow_scope(client: TestClient) -> None:
    h = as_user(client, "grid01")
    # The zone lying on one's own grid opens; another zone does not.
    assert client.get("/zones/Z03", headers=h).status_code == 200
    assert client.get("/zones/Z01", headers=h).status_code == 403
    assert client.get("/zones/Z01/service-card", headers=h).status_code == 403


def test_service_card_has_qr_to_the_zone_landing(client: TestClient) -> None:
    r = client.get("/zones/Z01/service-card", headers=as_user(client, "chain1"))
    assert r.status_code == 200
    assert re.search(r'<svg[^>]*class="qr"', r.text)
    assert f"{get_settings().public_base_url.rstrip('/')}/s/Z01" in r.text
    for category in ("排水管理", "供水管理", "水土保持", "海绵城市", "防灾减灾", "管网查询"):
        assert category in r.text
    assert 'class="service-card"' in r.text


def test_public_landing_needs_no_sign_in_and_shows_no_mobile(client: TestClient) -> None:
    r = client.get("/s/Z03", headers=HTML)
    assert r.status_code == 200
    assert "明湖智谷片区" in r.text
    assert 'href="/report?zone=Z03"' in r.text
    assert not MOBILE.search(r.text)
    assert client.get("/s/W01", headers=HTML).status_code == 404


def test_map_without_tiles_draws_in_wgs84(client: TestClient, tiles: pytest.MonkeyPatch) -> None:
    tiles.setenv("WATERGRID_TILE_URL", "")
    r = client.get("/map", headers=as_user(client, "grid01"))
    assert r.status_code == 200
    cfg = map_config(r.text)
    assert cfg["tiles"] is None
    assert cfg["geojson"] == "/api/v1/areas.geojson?datum=wgs84"
    assert cfg["mine"] == ["W01"]
    assert "W01" in cfg["mayOpen"] and "W02" not in cfg["mayOpen"]  # type: ignore[operator]


@pytest.mark.parametrize("datum", ["gcj02", "wgs84"])
def test_map_follows_the_basemap_datum(
    client: TestClient, tiles: pytest.MonkeyPatch, datum: str
) -> None:
    tiles.setenv("WATERGRID_TILE_URL", "https://tiles.example.invalid/{z}/{x}/{y}.png")
    tiles.setenv("WATERGRID_TILE_DATUM", datum)
    tiles.setenv("WATERGRID_TILE_ATTRIBUTION", "© Example Maps")
    r = client.get("/map", headers=as_user(client, "admin"))
    cfg = map_config(r.text)
    assert cfg["geojson"] == f"/api/v1/areas.geojson?datum={datum}"
    assert cfg["tiles"] == {
        "url": "https://tiles.example.invalid/{z}/{x}/{y}.png",
        "attribution": "© Example Maps",
        "datum": datum,
    }
    # The small map on a card is drawn in the same datum as the basemap.
    card = client.get("/grids/W01", headers=as_user(client, "admin")).text
    m = re.search(r'id="grid-map-view-config">(.*?)</script>', card, re.S)
    assert m
    small = json.loads(m.group(1))
    assert small["tiles"]["datum"] == datum
    main = small["features"]["features"][0]
    assert main["properties"]["code"] == "W01" and main["properties"]["role"] == "main"
    api = client.get(
        f"/api/v1/areas.geojson?kind=grid&datum={datum}", headers=as_user(client, "admin")
    )
    w01 = next(f for f in api.json()["features"] if f["id"] == "W01")
    assert main["geometry"] == w01["geometry"]


def test_english_pages(client: TestClient) -> None:
    h = as_user(client, "grid01")
    r = client.get("/grids/W01?lang=en", headers=h)
    assert '<html lang="en">' in r.text
    assert "Red chain leader joint party group" in r.text
    assert "Community party members" in r.text
    r = client.get("/s/Z03?lang=en", headers=HTML)
    assert "Online reporting opens at /report?zone=Z03" in r.text


def test_both_catalogs_hold_every_text_the_templates_use() -> None:
    zh = json.loads((WEB / "i18n" / "zh_CN.json").read_text(encoding="utf-8"))
    en = json.loads((WEB / "i18n" / "en.json").read_text(encoding="utf-8"))
    assert set(zh) == set(en), set(zh) ^ set(en)
    used: set[str] = set()
    for tpl in (WEB / "templates").glob("*.html"):
        used |= set(re.findall(r"\bt\('([a-z0-9_.]+)'", tpl.read_text(encoding="utf-8")))
    # Keys built at run time ('tag.' ~ tag) are listed instead of their prefixes.
    used = {k for k in used if not k.endswith(".")}
    used |= {f"tag.{t}" for t in ("bureau_cadre", "professional_team", "community_party_member")}
    used |= {f"map.kind.{k}" for k in ("subdistrict", "grid", "zone")}
    missing = sorted(k for k in used if k not in zh)
    assert not missing, missing
