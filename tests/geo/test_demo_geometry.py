import csv
import itertools
import json

import numpy as np
import pytest
import shapely

from watergrid.geo.demo_geometry import (
    DATA_DIR,
    DemoAreas,
    approx_area_km2,
    build_demo_areas,
    load_district_wgs84,
)


def all_areas(areas: DemoAreas):
    return (areas.district, *areas.subdistricts, *areas.grids, *areas.zones)


def assert_exact_tiling(parts, whole) -> None:
    geoms = [p.geometry for p in parts]
    assert shapely.coverage_is_valid(geoms)
    total = sum(g.area for g in geoms)
    assert abs(total - whole.area) / whole.area < 1e-9
    assert shapely.union_all(geoms).symmetric_difference(whole).area / whole.area < 1e-9
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    for i, j in zip(left, right, strict=True):
        if i < j:
            assert shapely.intersection(geoms[i], geoms[j]).area < 1e-12 * whole.area


def test_counts_and_codes(demo_areas: DemoAreas) -> None:
    assert demo_areas.district.code == "440311"
    assert demo_areas.district.name_zh == "光明区"
    assert demo_areas.district.name_en == "Guangming District"
    assert [g.code for g in demo_areas.grids] == [f"W{i:02d}" for i in range(1, 38)]
    assert [z.code for z in demo_areas.zones] == [f"Z{i:02d}" for i in range(1, 8)]
    assert len(demo_areas.subdistricts) == 6


def test_subdistricts_use_official_codes_and_names(demo_areas: DemoAreas) -> None:
    with open(DATA_DIR / "guangming_subdistricts.csv", encoding="utf-8") as fh:
        official = {r["code"]: r["name"] for r in csv.DictReader(fh) if r["level"] == "subdistrict"}
    assert {s.code: s.name_zh for s in demo_areas.subdistricts} == official
    assert {s.code: s.name_en for s in demo_areas.subdistricts}[
        "440311002"
    ] == "Gongming Subdistrict"


def test_seed_article_grids(demo_areas: DemoAreas) -> None:
    grids = {g.code: g for g in demo_areas.grids}
    assert (grids["W01"].name_zh, grids["W01"].subdistrict_code) == ("楼村社区", "440311003")
    assert (grids["W13"].name_zh, grids["W13"].subdistrict_code) == ("薯田埔社区", "440311006")
    assert grids["W01"].name_known and grids["W13"].name_known


def test_every_2016_community_name_is_used_once(demo_areas: DemoAreas) -> None:
    with open(DATA_DIR / "guangming_communities_2016_legacy_codes.csv", encoding="utf-8") as fh:
        legacy = [
            r["name"].replace("居民委员会", "社区")
            for r in csv.DictReader(fh)
            if r["level"] == "community_2016"
        ]
    known = [g.name_zh for g in demo_areas.grids if g.name_known]
    assert sorted(known) == sorted(legacy) and len(legacy) == 28
    made_up = [g for g in demo_areas.grids if not g.name_known]
    assert len(made_up) == 9
    for grid in made_up:
        community = grid.name_zh.removesuffix("第二网格")
        assert community in legacy and community != grid.name_zh
    assert len({g.name_zh for g in demo_areas.grids}) == 37
    for grid in demo_areas.grids:
        suffix = " Community" if grid.name_known else " Community Grid 2"
        assert grid.name_en.endswith(suffix), grid.code
    assert demo_areas.grids[0].name_en == "Loucun Community"


def test_each_subdistrict_has_at_least_four_grids(demo_areas: DemoAreas) -> None:
    codes = {s.code for s in demo_areas.subdistricts}
    counts = {c: sum(g.subdistrict_code == c for g in demo_areas.grids) for c in codes}
    assert min(counts.values()) >= 4 and sum(counts.values()) == 37


def test_synthetic_flags(demo_areas: DemoAreas) -> None:
    assert demo_areas.district.synthetic is False
    assert all(
        a.synthetic for a in (*demo_areas.subdistricts, *demo_areas.grids, *demo_areas.zones)
    )


def test_same_seed_is_byte_identical_and_rounded(demo_areas: DemoAreas) -> None:
    again = build_demo_areas(2024)
    for a, b in zip(all_areas(demo_areas), all_areas(again), strict=True):
        assert a.geometry.wkb == b.geometry.wkb
        xy = shapely.get_coordinates(a.geometry)
        np.testing.assert_array_equal(np.round(xy, 7), xy)
    other = build_demo_areas(7)
    assert other.grids[0].geometry.wkb != demo_areas.grids[0].geometry.wkb


def test_geometry_is_valid_and_polygonal(demo_areas: DemoAreas) -> None:
    for area in all_areas(demo_areas):
        assert area.geometry.is_valid, area.code
        assert area.geometry.geom_type in ("Polygon", "MultiPolygon"), area.code
        assert not area.geometry.is_empty


def test_district_is_the_real_outline_in_wgs84(demo_areas: DemoAreas) -> None:
    outline = load_district_wgs84()
    # Snap rounding may move the outline by at most one 1e-7 degree step.
    assert shapely.hausdorff_distance(demo_areas.district.geometry, outline) < 2e-7
    assert 150 < approx_area_km2(outline) < 160
    # AMap's GCJ-02 outline sits ~500 m east of the WGS84 one in Shenzhen.
    with open(DATA_DIR / "guangming_district_440311.geojson", encoding="utf-8") as fh:
        raw = shapely.geometry.shape(json.load(fh)["features"][0]["geometry"])
    assert 0.004 < raw.centroid.x - outline.centroid.x < 0.006


@pytest.mark.parametrize("seed", [2024, 0, 11])
def test_grids_and_subdistricts_tile_the_district_exactly(seed: int, demo_areas: DemoAreas) -> None:
    areas = demo_areas if seed == 2024 else build_demo_areas(seed)
    district = areas.district.geometry
    assert_exact_tiling(areas.grids, district)
    assert_exact_tiling(areas.subdistricts, district)
    subs = {s.code: s.geometry for s in areas.subdistricts}
    for grid in areas.grids:
        assert grid.geometry.covered_by(subs[grid.subdistrict_code]), grid.code
        # A grid in two pieces would be a confusing map; stray pieces are merged.
        assert grid.geometry.geom_type == "Polygon", grid.code


def test_subdistricts_sit_roughly_where_they_really_are(demo_areas: DemoAreas) -> None:
    centre = {s.name_en.split()[0]: s.geometry.centroid for s in demo_areas.subdistricts}
    assert min(centre, key=lambda n: centre[n].x) == "Gongming"
    assert min(centre, key=lambda n: centre[n].y) == "Yutang"
    assert max(centre, key=lambda n: centre[n].y) == "Xinhu"
    assert max(centre, key=lambda n: centre[n].x) in ("Guangming", "Fenghuang")
    assert centre["Guangming"].y > centre["Fenghuang"].y


def test_zones(demo_areas: DemoAreas) -> None:
    expected = [
        "白花片区",
        "光明云谷片区",
        "明湖智谷片区",
        "茅洲河中央水岸",
        "新兴湖片区",
        "科学公馆片区",
        "大运会片区",
    ]
    assert [z.name_zh for z in demo_areas.zones] == expected
    district = demo_areas.district.geometry
    grids = [g.geometry for g in demo_areas.grids]
    for zone in demo_areas.zones:
        assert zone.geometry.covered_by(district), zone.code
        assert 1.0 <= approx_area_km2(zone.geometry) <= 4.0, zone.code
        shares = shapely.area(shapely.intersection(zone.geometry, grids)) / zone.geometry.area
        assert np.count_nonzero(shares > 0.05) >= 2, zone.code
    for a, b in itertools.combinations(demo_areas.zones, 2):
        assert not a.geometry.intersects(b.geometry), (a.code, b.code)
    baihua = next(g for g in demo_areas.grids if g.name_zh == "白花社区")
    assert demo_areas.zones[0].geometry.intersection(baihua.geometry).area > 0
