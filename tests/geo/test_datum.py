import math

import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon

from watergrid.geo.datum import gcj02_to_wgs84, transform_geometry, wgs84_to_gcj02

# Inside the datum rectangle with a margin wider than the ~1 km offset, so a
# converted point never leaves the rectangle.
china_lon = st.floats(min_value=73.0, max_value=135.0)
china_lat = st.floats(min_value=1.0, max_value=55.0)


def metres(dlon: float, dlat: float, lat: float) -> tuple[float, float]:
    return dlon * 111_320 * math.cos(math.radians(lat)), dlat * 110_574


def test_forward_matches_published_example() -> None:
    # Example output printed with the widely used coordtransform library
    # (WGS84 116.404, 39.915 in Beijing); the formula is the same everywhere.
    lon, lat = wgs84_to_gcj02(116.404, 39.915)
    assert lon == pytest.approx(116.41024449916938, abs=1e-12)
    assert lat == pytest.approx(39.91640428150164, abs=1e-12)


@pytest.mark.parametrize("lon, lat", [(113.93, 22.76), (114.06, 22.54)])
def test_shenzhen_offset_is_about_600_m_to_the_east_south_east(lon: float, lat: float) -> None:
    glon, glat = wgs84_to_gcj02(lon, lat)
    east, north = metres(glon - lon, glat - lat, lat)
    assert 400 < east < 600
    assert -400 < north < -250
    assert 500 < math.hypot(east, north) < 700


@given(china_lon, china_lat)
def test_round_trip_from_wgs84(lon: float, lat: float) -> None:
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert abs(back[0] - lon) < 1e-9
    assert abs(back[1] - lat) < 1e-9


@given(china_lon, china_lat)
def test_round_trip_from_gcj02(lon: float, lat: float) -> None:
    back = wgs84_to_gcj02(*gcj02_to_wgs84(lon, lat))
    assert abs(back[0] - lon) < 1e-9
    assert abs(back[1] - lat) < 1e-9


def test_inverse_is_not_the_one_step_approximation() -> None:
    # The common shortcut (2*gcj - f(gcj)) is off by ~2.5e-7 deg here; the
    # iterative inverse must land on the point that maps back exactly.
    wlon, wlat = gcj02_to_wgs84(116.404, 39.915)
    assert abs(wlon - 116.39775550083061) > 1e-7
    assert wgs84_to_gcj02(wlon, wlat) == pytest.approx((116.404, 39.915), abs=1e-12)


def test_scalars_give_floats_and_arrays_keep_shape() -> None:
    lon, lat = wgs84_to_gcj02(113.9, 22.7)
    assert type(lon) is float and type(lat) is float
    grid_lon, grid_lat = np.meshgrid(np.linspace(113.8, 114.1, 4), np.linspace(22.6, 22.9, 3))
    out_lon, out_lat = gcj02_to_wgs84(grid_lon, grid_lat)
    assert out_lon.shape == (3, 4) and out_lat.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert (out_lon[i, j], out_lat[i, j]) == gcj02_to_wgs84(grid_lon[i, j], grid_lat[i, j])


@pytest.mark.parametrize(
    "lon, lat",
    [(-0.1276, 51.5072), (151.21, -33.87), (139.69, 35.69), (100.5, 0.5), (70.0, 30.0)],
)
def test_points_outside_china_pass_through(lon: float, lat: float) -> None:
    assert wgs84_to_gcj02(lon, lat) == (lon, lat)
    assert gcj02_to_wgs84(lon, lat) == (lon, lat)


def test_mixed_arrays_shift_only_points_in_china() -> None:
    lon = np.array([113.93, -0.1276])
    lat = np.array([22.76, 51.5072])
    out_lon, out_lat = wgs84_to_gcj02(lon, lat)
    assert out_lon[0] != lon[0] and out_lat[0] != lat[0]
    assert out_lon[1] == lon[1] and out_lat[1] == lat[1]


def test_transform_geometry_moves_every_vertex_and_keeps_type() -> None:
    square = Polygon([(113.9, 22.7), (113.95, 22.7), (113.95, 22.75), (113.9, 22.75)])
    multi = MultiPolygon([square, affinity.translate(square, 0.1, 0.0)])
    moved = transform_geometry(multi, wgs84_to_gcj02)
    assert moved.geom_type == "MultiPolygon"
    before = shapely.get_coordinates(multi)
    after = shapely.get_coordinates(moved)
    expected = np.column_stack(wgs84_to_gcj02(before[:, 0], before[:, 1]))
    np.testing.assert_array_equal(after, expected)
    back = transform_geometry(moved, gcj02_to_wgs84)
    np.testing.assert_allclose(shapely.get_coordinates(back), before, atol=1e-9, rtol=0)
