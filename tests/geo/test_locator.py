import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import box
from shapely.geometry import Polygon

from watergrid.geo.demo_geometry import DemoAreas
from watergrid.geo.locator import Locator

SQUARES = [
    ("SW", box(0, 0, 1, 1)),
    ("SE", box(1, 0, 2, 1)),
    ("NW", box(0, 1, 1, 2)),
    ("NE", box(1, 1, 2, 2)),
]


def shapely_reference(polygons, x, y) -> np.ndarray:
    """Lowest index whose interior holds the point, else -1."""
    out = np.full(len(x), -1, dtype=np.int32)
    for i, poly in enumerate(polygons):
        shapely.prepare(poly)
        out[shapely.contains_xy(poly, x, y) & (out < 0)] = i
    return out


def random_points(bounds, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = bounds
    return rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)


@pytest.fixture(scope="module")
def grids_as_zones(demo_areas: DemoAreas) -> Locator:
    """Grids passed as zones: `zone_codes_at` then lists every grid that
    claims a point, which must be exactly one inside the district."""
    pairs = [(g.code, g.geometry) for g in demo_areas.grids]
    return Locator.build(pairs, pairs, cells_per_side=128)


def test_batch_and_single_agree_with_shapely_on_100k_points(
    demo_areas: DemoAreas, locator: Locator
) -> None:
    polygons = [g.geometry for g in demo_areas.grids]
    x, y = random_points(demo_areas.district.geometry.bounds, 100_000, seed=1)
    expected = shapely_reference(polygons, x, y)
    batch = locator.grid_indices(x, y)
    assert batch.dtype == np.int32
    np.testing.assert_array_equal(batch, expected)
    single = np.array(
        [locator.grid_index(a, b) for a, b in zip(x.tolist(), y.tolist(), strict=True)]
    )
    np.testing.assert_array_equal(single, expected)
    # Both outcomes must actually occur, or the comparison proves little.
    assert (expected == -1).mean() > 0.2 and len(np.unique(expected)) == 38


def test_zones_agree_with_shapely(demo_areas: DemoAreas, locator: Locator) -> None:
    x, y = random_points(demo_areas.district.geometry.bounds, 20_000, seed=2)
    zones = demo_areas.zones
    hits = 0
    for a, b in zip(x.tolist(), y.tolist(), strict=True):
        expected = [z.code for z in zones if shapely.contains_xy(z.geometry, a, b)]
        got = locator.zone_codes_at(a, b)
        assert got == expected
        hits += bool(got)
    assert hits > 100


def test_grid_codes_follow_input_order(demo_areas: DemoAreas, locator: Locator) -> None:
    assert locator.grid_codes == [g.code for g in demo_areas.grids]
    w13 = next(g for g in demo_areas.grids if g.code == "W13").geometry.representative_point()
    assert locator.grid_code_at(w13.x, w13.y) == "W13"


inside_lon = st.floats(min_value=113.84, max_value=114.02)
inside_lat = st.floats(min_value=22.67, max_value=22.85)


@settings(max_examples=300, deadline=None)
@given(inside_lon, inside_lat)
def test_each_point_gets_one_grid_in_the_right_subdistrict(
    demo_areas: DemoAreas, locator: Locator, grids_as_zones: Locator, lon: float, lat: float
) -> None:
    district = demo_areas.district.geometry
    found = locator.grid_index(lon, lat)
    assert locator.grid_indices(np.array([lon]), np.array([lat]))[0] == found
    if shapely.contains_xy(district, lon, lat):
        assert found >= 0
        assert grids_as_zones.zone_codes_at(lon, lat) == [locator.grid_codes[found]]
        grid = demo_areas.grids[found]
        sub = next(s for s in demo_areas.subdistricts if s.code == grid.subdistrict_code)
        assert shapely.intersects_xy(sub.geometry, lon, lat)
        assert shapely.intersects_xy(grid.geometry, lon, lat)
    elif not shapely.intersects_xy(district, lon, lat):
        assert found == -1
        assert grids_as_zones.zone_codes_at(lon, lat) == []


def test_far_and_invalid_points_are_outside(locator: Locator) -> None:
    for lon, lat in [
        (0.0, 0.0),
        (114.5, 22.7),
        (113.9, 23.5),
        (float("nan"), 22.7),
        (float("inf"), 22.7),
    ]:
        assert locator.grid_index(lon, lat) == -1
        assert locator.zone_codes_at(lon, lat) == []
    out = locator.grid_indices(np.array([[0.0, np.nan], [114.5, -np.inf]]), np.full((2, 2), 22.7))
    assert out.shape == (2, 2) and (out == -1).all()


def test_tie_break_on_shared_edges_goes_east_then_north() -> None:
    loc = Locator.build(SQUARES, cells_per_side=4)
    cases = {
        (1.0, 0.5): "SE",  # vertical edge: the square to the east
        (0.5, 1.0): "NW",  # horizontal edge: the square to the north
        (1.0, 1.0): "NE",  # corner of four
        (0.0, 0.5): "SW",  # outer west edge: inside lies east
        (2.0, 0.5): None,  # outer east edge: nothing lies east
        (0.5, 2.0): None,  # outer north edge
        (0.5, 0.0): "SW",  # outer south edge: inside lies north
    }
    xs = np.array([p[0] for p in cases])
    ys = np.array([p[1] for p in cases])
    batch = loc.grid_indices(xs, ys)
    for (point, expected), b in zip(cases.items(), batch, strict=True):
        assert loc.grid_code_at(*point) == expected, point
        assert (b if b >= 0 else None) == (
            None if expected is None else loc.grid_codes.index(expected)
        )


def test_shared_vertices_of_demo_grids_belong_to_exactly_one(
    demo_areas: DemoAreas, locator: Locator, grids_as_zones: Locator
) -> None:
    district = demo_areas.district.geometry
    xy = np.unique(
        np.concatenate([shapely.get_coordinates(g.geometry) for g in demo_areas.grids]), axis=0
    )
    inner = xy[~shapely.intersects_xy(district.boundary, xy[:, 0], xy[:, 1])]
    assert len(inner) > 20
    batch = locator.grid_indices(inner[:, 0], inner[:, 1])
    for (x, y), b in zip(inner.tolist(), batch.tolist(), strict=True):
        found = locator.grid_index(x, y)
        assert found == b >= 0
        assert grids_as_zones.zone_codes_at(x, y) == [locator.grid_codes[found]]
        assert shapely.intersects_xy(demo_areas.grids[found].geometry, x, y)


def test_overlaps_lowest_index_wins_and_zones_list_all() -> None:
    a = box(0, 0, 2, 2)
    b = box(1, 1, 3, 3)
    loc = Locator.build([("A", a), ("B", b)], [("ZA", a), ("ZB", b)], cells_per_side=8)
    assert loc.grid_code_at(1.5, 1.5) == "A"
    assert loc.grid_code_at(2.5, 2.5) == "B"
    assert loc.zone_codes_at(1.5, 1.5) == ["ZA", "ZB"]
    assert loc.zone_codes_at(0.5, 0.5) == ["ZA"]
    x, y = random_points((0, 0, 3, 3), 5000, seed=3)
    np.testing.assert_array_equal(loc.grid_indices(x, y), shapely_reference([a, b], x, y))


def test_holes_and_multipolygons() -> None:
    ring = Polygon(box(0, 0, 4, 4).exterior.coords, [box(1, 1, 3, 3).exterior.coords])
    islands = shapely.MultiPolygon([box(1.5, 1.5, 2.5, 2.5), box(5, 5, 6, 6)])
    loc = Locator.build([("ring", ring), ("islands", islands)], cells_per_side=16)
    x, y = random_points((-1, -1, 7, 7), 20_000, seed=4)
    expected = shapely_reference([ring, islands], x, y)
    np.testing.assert_array_equal(loc.grid_indices(x, y), expected)
    assert [loc.grid_index(a, b) for a, b in zip(x[:2000], y[:2000], strict=True)] == expected[
        :2000
    ].tolist()
    assert loc.grid_code_at(2.0, 2.0) == "islands" and loc.grid_code_at(1.2, 1.2) is None


@pytest.mark.parametrize("cells", [3, 64])
def test_cell_resolution_does_not_change_answers(
    demo_areas: DemoAreas, locator: Locator, cells: int
) -> None:
    pairs = [(g.code, g.geometry) for g in demo_areas.grids]
    coarse = Locator.build(pairs, cells_per_side=cells)
    x, y = random_points(demo_areas.district.geometry.bounds, 20_000, seed=5)
    np.testing.assert_array_equal(coarse.grid_indices(x, y), locator.grid_indices(x, y))
    single = [coarse.grid_index(a, b) for a, b in zip(x[:2000], y[:2000], strict=True)]
    assert single == locator.grid_indices(x[:2000], y[:2000]).tolist()


def test_empty_inputs() -> None:
    loc = Locator.build([], [])
    assert loc.grid_index(114.0, 22.7) == -1
    assert loc.zone_codes_at(114.0, 22.7) == []
    assert loc.grid_indices(np.array([114.0]), np.array([22.7])).tolist() == [-1]
