"""Photos (sniffed, re-encoded without EXIF) and categories (seed, admin edits)."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.conftest import login_token
from tests.workorders.helpers import T0, grid_point, jpeg, report

from watergrid.errors import AppError
from watergrid.org.categories import SERVICE_CATEGORIES
from watergrid.workorders import service
from watergrid.workorders.categories import seed_categories
from watergrid.workorders.models import Category, WorkOrder
from watergrid.workorders.photos import PhotoUpload, check_photo, sniff
from watergrid.workorders.schemas import CategoryUpdate, OrderCreate

LIMITS = {"max_bytes": 8 * 1024 * 1024, "max_pixels": 40_000_000, "public_max_side": 2048}


def _img(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "fmt,mime", [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
def test_jpeg_png_webp_are_accepted(fmt: str, mime: str) -> None:
    p = check_photo(PhotoUpload("x.bin", _img(fmt)), field="f", **LIMITS)
    assert p.content_type == mime and (p.width, p.height) == (40, 30)


@pytest.mark.parametrize(
    "data", [_img("GIF"), _img("BMP"), b"<svg xmlns='x'/>", b"", b"\xff\xd8\xff\xe0 truncated jpeg"]
)
def test_other_content_is_refused_whatever_the_name(data: bytes) -> None:
    with pytest.raises(AppError) as e:
        check_photo(PhotoUpload("photo.jpg", data, "image/jpeg"), field="f", **LIMITS)
    assert e.value.code == "photo_not_image" and e.value.fields[0].message_zh


def test_public_copy_has_no_exif_and_is_upright() -> None:
    original = jpeg(size=(64, 48), exif=True)
    assert Image.open(io.BytesIO(original)).getexif()
    p = check_photo(PhotoUpload("p.jpg", original), field="f", **LIMITS)
    public = Image.open(io.BytesIO(p.public))
    assert not public.getexif()
    assert b"PhoneMaker" not in p.public
    # Orientation 6 (rotate 90°) applied before EXIF was dropped: 64×48 shows as 48×64.
    assert public.size == (48, 64)
    assert p.original == original


def test_decompression_bombs_are_refused() -> None:
    huge = _img("PNG", size=(10_000, 10_000), mode="1")
    assert len(huge) < 1_000_000 and sniff(huge) == "PNG"
    with pytest.raises(AppError) as e:
        check_photo(PhotoUpload("bomb.png", huge), field="f", **LIMITS)
    assert e.value.code in ("photo_too_large", "photo_not_image")


def test_large_photos_are_scaled_for_the_public() -> None:
    p = check_photo(PhotoUpload("big.png", _img("PNG", size=(3000, 1000))), field="f", **LIMITS)
    assert (p.width, p.height) == (2048, 683)


# -- categories ---------------------------------------------------------------------------


def test_seed_has_the_six_service_categories_and_is_idempotent(db: Session) -> None:
    assert seed_categories(db) == 0  # already seeded by the fixture
    cats = service.list_categories(db)
    assert {c.group_code for c in cats} == set(SERVICE_CATEGORIES)
    assert len(cats) == 18
    codes = [c.service_code for c in cats]
    assert len(set(codes)) == len(codes) and all(isinstance(c, str) for c in codes)
    water = service.get_category(db, code="disaster.waterlogging")
    depth = next(a for a in water.attributes if a.code == "depth")
    assert depth.required and depth.datatype == "singlevaluelist" and len(depth.values) == 4
    for c in cats:
        assert set(c.deadlines) == {"emergency", "urgent", "normal"}
        assert c.deadlines["emergency"].response.unit == "hours"
        assert c.deadlines["normal"].handling.unit == "workdays"
    assert db.scalar(select(func.count()).select_from(Category)) == 18


def test_open311_lookup_by_service_code(db: Session) -> None:
    assert (
        service.get_category_by_service_code(db, service_code="501").code == "disaster.waterlogging"
    )
    with pytest.raises(AppError) as e:
        service.get_category_by_service_code(db, service_code="999")
    assert e.value.status == 404


def test_admin_edits_categories_and_orders_keep_their_deadlines(
    client: TestClient, db: Session
) -> None:
    lon, lat = grid_point(db, "W15")
    r = service.create_order(
        db,
        data=OrderCreate(**report(lon=lon, lat=lat)),
        source="api",
        actor=None,
        idempotency_key=None,
        now=T0,
    ).receipt
    admin = login_token(client, "admin")
    patch = {
        "deadlines": {
            p: {
                "response": {"amount": 3, "unit": "hours"},
                "handling": {"amount": 1, "unit": "workdays"},
            }
            for p in ("emergency", "urgent", "normal")
        }
    }
    assert (
        client.patch(
            "/api/v1/categories/drainage.blocked_drain",
            json=patch,
            headers=login_token(client, "duty"),
        ).status_code
        == 403
    )
    up = client.patch("/api/v1/categories/drainage.blocked_drain", json=patch, headers=admin)
    assert up.status_code == 200, up.text
    assert up.json()["deadlines"]["normal"]["response"] == {"amount": 3, "unit": "hours"}
    order = db.get(WorkOrder, r.id)
    assert order is not None and order.response_limit == {"amount": 1, "unit": "workdays"}

    new = {
        "code": "drainage.odour",
        "name_zh": "排水口异味",
        "name_en": "Drain odour",
        "default_priority": "normal",
        "service_code": "106",
        "deadlines": patch["deadlines"],
        "attributes": [
            {
                "code": "strength",
                "datatype": "singlevaluelist",
                "required": True,
                "description": "异味程度",
                "values": [{"key": "mild", "name": "轻微"}],
            }
        ],
    }
    created = client.post("/api/v1/categories", json=new, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["group_code"] == "drainage"
    dup = client.post("/api/v1/categories", json={**new, "code": "drainage.odour2"}, headers=admin)
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "service_code_taken"
    bad = client.post(
        "/api/v1/categories", json={**new, "code": "gas.leak", "service_code": "901"}, headers=admin
    )
    assert bad.status_code == 422
    listed = client.get("/api/v1/categories").json()
    assert "drainage.odour" in {c["code"] for c in listed}


def test_deactivated_category_takes_no_new_orders(db: Session) -> None:
    service.update_category(db, code="sponge_city.consultation", data=CategoryUpdate(active=False))
    lon, lat = grid_point(db, "W15")
    with pytest.raises(AppError) as e:
        service.create_order(
            db,
            data=OrderCreate(**report(lon=lon, lat=lat, category_code="sponge_city.consultation")),
            source="api",
            actor=None,
            idempotency_key=None,
            now=T0,
        )
    assert e.value.code == "unknown_category"
    assert "sponge_city.consultation" not in {c.code for c in service.list_categories(db)}


def test_attribute_datatypes(db: Session) -> None:
    defs = [
        a.model_dump()
        for a in service.get_category(db, code="pipe_network.pre_construction_query").attributes
    ]
    ok, problems = service.check_attributes(
        defs,
        {
            "radius_m": "50",
            "dig_depth_m": 2.5,
            "start_date": "2026-04-01T08:00",
            "company": " 某建设公司 ",
        },
    )
    assert problems == []
    assert ok["radius_m"] == 50 and ok["dig_depth_m"] == 2.5
    assert ok["start_date"] == "2026-04-01T08:00:00+08:00" and ok["company"] == "某建设公司"
    _, problems = service.check_attributes(
        defs, {"radius_m": "far", "company": "x", "start_date": "tomorrow", "colour": "red"}
    )
    assert {f.field for _, f in problems} == {
        "attributes.radius_m",
        "attributes.start_date",
        "attributes.colour",
    }
    wq = [
        a.model_dump()
        for a in service.get_category(db, code="water_supply.water_quality").attributes
    ]
    ok, problems = service.check_attributes(wq, {"symptoms": ["smell", "cloudy", "smell"]})
    assert problems == [] and ok["symptoms"] == ["smell", "cloudy"]
    _, problems = service.check_attributes(wq, {"symptoms": ["smell", "glitter"]})
    assert problems and problems[0][0] == "bad_attribute"
