"""Uploads checked by their bytes, CSRF on forms, session cookie flags, personal data masked
in public and Open311 output, append-only history, the intake rate limit, and work-order
scope on each database backend (the shared `client` fixture runs on SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import delete, update
from sqlalchemy.orm import Session
from tests.conftest import login_token
from tests.security.conftest import Deployment
from tests.security.routes import fill, routes

PHONE = "13912345678"
JSON = {"Accept": "application/json"}


def _point(
    client: TestClient, code: str, headers: dict[str, str] | None = None
) -> tuple[float, float]:
    from shapely.geometry import shape

    headers = headers or login_token(client, "admin")
    area = client.get(f"/api/v1/areas/{code}", headers=headers).json()
    p = shape(area["geometry"]).buffer(-0.001).representative_point()
    return float(p.x), float(p.y)


def _report(client: TestClient, code: str, category: str, **extra: object) -> dict[str, object]:
    lon, lat = _point(client, code)
    body = {
        "category_code": category,
        "description": "井盖缺失 / security check",
        "lon": lon,
        "lat": lat,
        "reporter_phone": PHONE,
        "phone_consent": True,
        **extra,
    }
    r = client.post("/api/v1/orders", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


# -- work-order scope, on every backend ------------------------------------------------------


def test_work_order_scope_on_this_backend(client: TestClient) -> None:
    w01 = _report(client, "W01", "drainage.blocked_drain")
    water = _report(client, "W13", "water_supply.low_pressure")
    grid01, grid13 = login_token(client, "grid01"), login_token(client, "grid13")
    drainage = login_token(client, "drainage")
    assert client.get(f"/api/v1/orders/{w01['id']}", headers=grid01).status_code == 200
    r = client.get(f"/api/v1/orders/{w01['id']}", headers=grid13)
    assert r.status_code == 403 and "security check" not in r.text
    r = client.post(f"/api/v1/orders/{w01['id']}/actions/accept", headers=grid13, json={})
    assert r.status_code == 403
    assert water["department"]["code"] != "DRAINAGE"  # type: ignore[index]
    r = client.post(f"/api/v1/orders/{water['id']}/actions/accept", headers=drainage, json={})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = client.get(f"/api/v1/orders/{water['id']}", headers=drainage)
    assert r.status_code == 403


# -- uploads ---------------------------------------------------------------------------------


def _image(fmt: str, gps: bool = True) -> bytes:
    img = Image.new("RGB", (80, 60), (200, 40, 40))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    if gps:
        g = exif.get_ifd(0x8825)
        g[1], g[2], g[3], g[4] = "N", (22.0, 45.0, 30.0), "E", (113.0, 56.0, 10.0)
    buf = io.BytesIO()
    img.save(buf, fmt, exif=exif.tobytes())
    return buf.getvalue()


def _has_gps(data: bytes) -> bool:
    img = Image.open(io.BytesIO(data))
    return bool(img.getexif().get_ifd(0x8825))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_public_copy_is_re_encoded_without_location(client: TestClient, fmt: str) -> None:
    original = _image(fmt) + b"<script>alert(1)</script>"  # bytes hidden after the image
    assert _has_gps(original)
    up = client.post("/api/v1/attachments", files={"file": ("p.bin", original, "text/plain")})
    assert up.status_code == 201, up.text
    r = client.get(f"/api/v1/attachments/{up.json()['key']}")
    assert r.status_code == 200
    # The type comes from the bytes, not from the name or the client's Content-Type.
    assert r.headers["content-type"] == f"image/{fmt.lower()}"
    assert r.content != original and b"<script>" not in r.content
    assert not _has_gps(r.content)
    assert Image.open(io.BytesIO(r.content)).size == (80, 60)


def test_uploads_that_are_not_images_or_too_large_are_refused(client: TestClient) -> None:
    from watergrid.workorders.config import get_wo_settings

    fake = b"GIF89a-not-really" + b"\x00" * 100
    r = client.post("/api/v1/attachments", files={"file": ("p.jpg", fake, "image/jpeg")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "photo_not_image"
    # A JPEG header on bytes that are no image.
    r = client.post(
        "/api/v1/attachments", files={"file": ("p.jpg", b"\xff\xd8\xff" + b"x" * 500, "image/jpeg")}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "photo_not_image"
    big = b"\xff\xd8\xff" + b"\x00" * get_wo_settings().photo_max_bytes
    r = client.post("/api/v1/attachments", files={"file": ("p.jpg", big, "image/jpeg")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "photo_too_large"


# -- CSRF and the session cookie -------------------------------------------------------------


def _csrf_from(html: str) -> str:
    m = re.search(r'name="csrf"\s+value="([0-9a-f]+)"', html)
    assert m, "no CSRF field in the form"
    return m.group(1)


@pytest.fixture
def browser(dep: Deployment) -> Iterator[TestClient]:
    """A client that signs in as a browser does: the login form and a session cookie."""
    with TestClient(dep.app, raise_server_exceptions=False) as c:
        token = _csrf_from(c.get("/login").text)
        r = c.post(
            "/login",
            data={"username": "admin", "password": "demo1234", "csrf": token},
            follow_redirects=False,
        )
        assert r.status_code == 303 and "wg_session" in c.cookies
        yield c


def test_login_without_the_form_token_is_refused(dep: Deployment) -> None:
    with TestClient(dep.app) as c:
        c.get("/login")
        r = c.post("/login", data={"username": "admin", "password": "demo1234"})
        assert r.status_code == 403 and "wg_session" not in c.cookies


def test_login_posted_from_another_site_is_refused(dep: Deployment) -> None:
    """A cross-site POST arrives without our cookies; the token of an empty basis is the
    same for everyone, so it must not be enough to sign a browser in (login CSRF)."""
    from starlette.requests import Request

    from watergrid.web.render import csrf_token

    empty_basis = csrf_token(Request({"type": "http", "headers": []}))
    with TestClient(dep.app) as c:
        token = _csrf_from(c.get("/login").text)
        c.cookies.clear()
        for csrf in (token, empty_basis):
            r = c.post(
                "/login",
                data={"username": "admin", "password": "demo1234", "csrf": csrf},
                follow_redirects=False,
            )
            assert r.status_code == 403 and "wg_session" not in c.cookies


def test_cookie_session_form_posts_need_the_token(browser: TestClient, dep: Deployment) -> None:
    """Every page form route (not the API, which takes bearer tokens that a browser never
    sends by itself): a signed-in browser's POST without the token changes nothing."""
    forms = [
        r
        for r in routes(dep.app)
        if r.method == "POST" and not r.path.startswith(("/api/", "/open311/", "/login"))
    ]
    assert len(forms) > 25
    refused_for_csrf = 0
    for route in forms:
        url = fill(route.path, dep.ids)
        r = browser.post(
            url, data={}, headers={"Accept": "application/json"}, follow_redirects=False
        )
        assert r.status_code in (403, 404, 422) or (
            # The public forms answer with the form again, its error in Chinese.
            r.status_code == 200 and "表单已过期" in r.text
        ), (route.path, r.status_code, r.text[:200])
        if r.status_code == 403:
            assert "csrf" in r.text or "表单已过期" in r.text, (route.path, r.text[:300])
            refused_for_csrf += 1
    assert refused_for_csrf > 15
    assert browser.get("/api/v1/auth/me").status_code == 200  # still signed in


def test_logout_needs_the_token(browser: TestClient) -> None:
    assert browser.post("/logout", data={}, follow_redirects=False).status_code == 403
    assert browser.get("/api/v1/auth/me").status_code == 200
    token = _csrf_from(browser.get("/", headers={"Accept": "text/html"}).text)
    r = browser.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303


def _set_cookie(r: object, name: str) -> str:
    for value in r.headers.get_list("set-cookie"):  # type: ignore[attr-defined]
        if value.startswith(name + "="):
            return str(value)
    raise AssertionError(f"no {name} cookie set")


@pytest.mark.parametrize("secure", [False, True])
def test_session_cookie_flags(
    dep: Deployment, monkeypatch: pytest.MonkeyPatch, secure: bool
) -> None:
    from watergrid.settings import get_settings

    monkeypatch.setattr(get_settings(), "cookie_secure", secure)
    with TestClient(dep.app) as c:
        page = c.get("/login")
        anon = _set_cookie(page, "wg_anon").lower()
        assert "httponly" in anon and "samesite=lax" in anon
        r = c.post(
            "/login",
            data={"username": "leader", "password": "demo1234", "csrf": _csrf_from(page.text)},
            follow_redirects=False,
        )
        cookie = _set_cookie(r, "wg_session").lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "max-age=" in cookie
    assert ("; secure" in cookie) is secure


# -- personal data in public output ----------------------------------------------------------


def test_public_and_open311_output_mask_the_reporter(client: TestClient) -> None:
    order = _report(client, "W05", "drainage.blocked_drain", reporter_name="张三")
    assert order["reporter_phone_masked"] != PHONE and PHONE[-4:] in str(
        order["reporter_phone_masked"]
    )
    number = order["number"]
    public = [
        client.get(f"/open311/v2/requests/{number}.json"),
        client.get(f"/open311/v2/requests/{number}.xml"),
        client.get("/open311/v2/requests.json"),
        client.get("/open311/v2/requests.xml"),
        client.get("/open311/v2/servicerequestupdates.json"),
        client.post("/api/v1/track", json={"number": number, "token": order["track_token"]}),
        client.post("/api/v1/track", json={"number": number, "phone_last4": PHONE[-4:]}),
        client.get(f"/open311/v2/tokens/{order['track_token']}.json"),
    ]
    assert public[0].status_code == 200 and number in public[0].text
    assert public[5].status_code == 200 and number in public[5].text
    for r in public:
        assert PHONE not in r.text and PHONE[3:7] not in r.text, r.url
        assert "张三" not in r.text, r.url
    # Staff who may contact the reporter see the number.
    staff = client.get(f"/api/v1/orders/{order['id']}", headers=login_token(client, "admin"))
    assert PHONE in staff.text


# -- append-only history ---------------------------------------------------------------------


def test_history_has_no_update_or_delete_route(dep: Deployment) -> None:
    """History is read through .../events routes; nothing may change or remove it."""
    history = [r for r in routes(dep.app) if re.search(r"/events\b|histor|/log\b", r.path)]
    assert history, "the history routes have moved: update this test"
    writers = [f"{r.method} {r.path}" for r in history if r.method != "GET"]
    assert not writers, writers
    changing = [
        f"{r.method} {r.path}"
        for r in routes(dep.app)
        if r.method in {"PUT", "PATCH", "DELETE"} and re.search(r"event|histor|version", r.path)
    ]
    assert not changing, changing


def test_history_rows_cannot_be_changed_through_the_orm(db: Session) -> None:
    from watergrid.flood.warning_models import HISTORY_TABLES
    from watergrid.inspections.models import InspEvent
    from watergrid.permits.models import PermitEvent
    from watergrid.workorders.models import OrderEvent

    for model in (OrderEvent, InspEvent, PermitEvent, *HISTORY_TABLES):
        for stmt in (update(model).values(id=model.id), delete(model)):  # type: ignore[attr-defined]
            with pytest.raises(RuntimeError, match="never"):
                db.execute(stmt)


# -- rate limit on public intake -------------------------------------------------------------


def test_token_bucket_refills_at_its_rate() -> None:
    from watergrid.ops.ratelimit import TokenBuckets

    now = [0.0]
    b = TokenBuckets(per_minute=60, burst=2, clock=lambda: now[0])
    assert b.take("a") == 0 and b.take("a") == 0
    wait = b.take("a")
    assert 0.9 <= wait <= 1.0
    assert b.take("b") == 0  # another address has its own bucket
    now[0] += 1.0
    assert b.take("a") == 0
    assert b.take("a") > 0


@pytest.fixture
def limited(dep: Deployment, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The deployment's app again, with a small limit switched on (the setting is read when
    the app is made)."""
    from watergrid.app import create_app
    from watergrid.deps import get_db
    from watergrid.settings import get_settings

    monkeypatch.setattr(get_settings(), "intake_rate_per_minute", 6)
    monkeypatch.setattr(get_settings(), "intake_rate_burst", 2)
    app = create_app(dep.url)
    app.dependency_overrides[get_db] = dep.app.dependency_overrides[get_db]
    with TestClient(app) as c:
        yield c


def test_public_intake_is_rate_limited_per_address(limited: TestClient, dep: Deployment) -> None:
    lon, lat = _point(limited, "W02", dep.headers["admin"])
    body = {
        "category_code": "drainage.blocked_drain",
        "description": "堵塞",
        "lon": lon,
        "lat": lat,
    }
    assert [limited.post("/api/v1/orders", json=body).status_code for _ in range(2)] == [201, 201]
    r = limited.post("/api/v1/orders", json=body)
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 10
    assert r.json()["error"]["code"] == "rate_limited"
    assert r.json()["error"]["message_zh"] == "提交过于频繁，请稍后再试"
    # The same address is limited on every public way in, each in its own terms.
    r = limited.post("/open311/v2/requests.json", data={"service_code": "102"})
    assert r.status_code == 429 and r.json()[0]["code"] == 429
    assert "稍后" in r.json()[0]["description"]
    r = limited.post("/open311/v2/requests.xml?locale=en", data={"service_code": "102"})
    assert r.status_code == 429 and b"<errors>" in r.content and b"wait" in r.content
    r = limited.post("/report", data={}, headers={"Accept": "text/html"})
    assert r.status_code == 429 and "请稍后再试" in r.text and r.headers["retry-after"]
    assert "<nav" in r.text or "<header" in r.text  # the site's own page, with its way back
    r = limited.post("/api/v1/attachments", files={"file": ("p.jpg", b"x", "image/jpeg")})
    assert r.status_code == 429
    # Tracking takes a guessable secret (the phone's last four digits): limited as well.
    r = limited.post("/api/v1/track", json={"number": "GM-2026-000001", "phone_last4": "0000"})
    assert r.status_code == 429
    assert limited.post("/api/v1/permits/applicant", json={}).status_code == 429
    # A made-up credential does not get round the limit.
    for fake in ({"Authorization": "Bearer wgt_made_up"}, {"Cookie": "wg_session=forged.value"}):
        assert limited.post("/api/v1/orders", json=body, headers=fake).status_code == 429
    # Staff are not limited, nor is anything but the public intake.
    r = limited.post("/api/v1/orders", json=body, headers=dep.headers["grid01"])
    assert r.status_code == 201
    assert limited.get("/api/v1/categories").status_code == 200


def test_limit_is_off_when_set_to_zero(client: TestClient) -> None:
    # tests/conftest.py sets WATERGRID_INTAKE_RATE_PER_MINUTE=0, as benches do.
    from watergrid.ops.ratelimit import IntakeRateLimit

    assert not any(m.cls is IntakeRateLimit for m in client.app.user_middleware)  # type: ignore[attr-defined]
    lon, lat = _point(client, "W02")
    body = {
        "category_code": "drainage.blocked_drain",
        "description": "堵塞",
        "lon": lon,
        "lat": lat,
    }
    assert {client.post("/api/v1/orders", json=body).status_code for _ in range(40)} == {201}


def test_api_refuses_what_a_cross_site_form_can_send(browser: TestClient, dep: Deployment) -> None:
    """The API accepts the session cookie too (pages call it with fetch). A form on another
    site can only send form-encoded or text/plain bodies — and SameSite=Lax keeps the cookie
    off such a cross-site POST anyway; the API reads JSON only, so neither acts."""
    oid = dep.orders["w01_drain"][0]
    url = f"/api/v1/orders/{oid}/actions/comment"
    as_form = browser.post(url, data={"note": "cross-site"})
    as_text = browser.post(
        url, content=b'{"note": "cross-site"}', headers={"Content-Type": "text/plain"}
    )
    assert as_form.status_code == 422 and as_text.status_code == 422
    # The same session with a JSON body (what the pages' own scripts send) is accepted.
    assert browser.post(url, json={"note": "from the page"}).status_code == 200
