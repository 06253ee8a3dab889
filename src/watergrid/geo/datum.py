"""WGS84 <-> GCJ-02 datum conversion.

GCJ-02 (国测局坐标, the "Mars" datum) is the obfuscated datum that AMap
(高德) and Tencent basemaps are drawn in. Sensors and GNSS phones report
WGS84, so everything stored by watergrid is WGS84 and converted to GCJ-02
only at the edge, when drawn on a Chinese basemap.

The forward transform is the published GCJ-02 formula on the Krasovsky 1940
ellipsoid. There is no closed-form inverse, so `gcj02_to_wgs84` solves the
forward transform by fixed-point iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry.base import BaseGeometry

# Krasovsky 1940 semi-major axis (m) and first eccentricity squared, as fixed
# by the GCJ-02 definition; using WGS84's values here would shift results.
KRASOVSKY_A = 6378245.0
KRASOVSKY_EE = 0.00669342162296594323

# The datum is only defined inside this rectangle; outside it the published
# algorithm leaves coordinates untouched, and so must we to interoperate.
_CHINA_LON = (72.004, 137.8347)
_CHINA_LAT = (0.8293, 55.8271)

# The forward offset changes by < 1e-4 per degree, so each inverse step gains
# several digits; the cap only guards against non-finite input.
_INVERSE_TOLERANCE_DEG = 1e-12
_INVERSE_MAX_STEPS = 30

CoordFn = Callable[[NDArray[np.float64], NDArray[np.float64]], tuple[ArrayLike, ArrayLike]]


def outside_china(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
    """True where GCJ-02 defines no offset (the point is passed through)."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    return ~(
        (lon >= _CHINA_LON[0])
        & (lon <= _CHINA_LON[1])
        & (lat >= _CHINA_LAT[0])
        & (lat <= _CHINA_LAT[1])
    )


def _offset_north_m(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    # x, y are degrees relative to (105E, 35N); the result is a shift in metres.
    third = 2.0 / 3.0
    out = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    out += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * third
    out += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * third
    out += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * third
    return out


def _offset_east_m(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    third = 2.0 / 3.0
    out = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    out += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * third
    out += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * third
    out += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * third
    return out


def _gcj_shift_deg(
    lon: NDArray[np.float64], lat: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """GCJ-02 minus WGS84, in degrees, evaluated at a WGS84 position."""
    x = lon - 105.0
    y = lat - 35.0
    phi = np.radians(lat)
    w = 1.0 - KRASOVSKY_EE * np.sin(phi) ** 2
    # Metres -> degrees via the meridional (M) and prime-vertical (N) radii.
    meridional = KRASOVSKY_A * (1.0 - KRASOVSKY_EE) / (w * np.sqrt(w))
    prime_vertical = KRASOVSKY_A / np.sqrt(w)
    dlat = _offset_north_m(x, y) * 180.0 / (meridional * np.pi)
    dlon = _offset_east_m(x, y) * 180.0 / (prime_vertical * np.cos(phi) * np.pi)
    keep = outside_china(lon, lat)
    return np.where(keep, 0.0, dlon), np.where(keep, 0.0, dlat)


@overload
def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]: ...
@overload
def wgs84_to_gcj02(
    lon: ArrayLike, lat: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...
def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[Any, Any]:
    """WGS84 -> GCJ-02. Scalars give floats, arrays give float64 arrays."""
    x, y = _as_arrays(lon, lat)
    dlon, dlat = _gcj_shift_deg(x, y)
    return _like_input(lon, lat, x + dlon, y + dlat)


@overload
def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]: ...
@overload
def gcj02_to_wgs84(
    lon: ArrayLike, lat: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...
def gcj02_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[Any, Any]:
    """GCJ-02 -> WGS84 by iteration; round trip error is below 1e-9 degree.

    Whether a point is "in China" is judged on the GCJ-02 input, so a point
    within a few hundred metres of the datum rectangle's edge may be treated
    differently from the forward direction; no watergrid data is near it.
    """
    gx, gy = _as_arrays(lon, lat)
    wx, wy = gx.copy(), gy.copy()
    for _ in range(_INVERSE_MAX_STEPS):
        dlon, dlat = _gcj_shift_deg(wx, wy)
        rx = wx + dlon - gx
        ry = wy + dlat - gy
        wx = wx - rx
        wy = wy - ry
        worst = max(np.max(np.abs(rx), initial=0.0), np.max(np.abs(ry), initial=0.0))
        if not worst > _INVERSE_TOLERANCE_DEG:  # also stops on NaN input
            break
    keep = outside_china(gx, gy)
    wx = np.where(keep, gx, wx)
    wy = np.where(keep, gy, wy)
    return _like_input(lon, lat, wx, wy)


def transform_geometry(geom: BaseGeometry, fn: CoordFn) -> BaseGeometry:
    """Apply a coordinate function such as `gcj02_to_wgs84` to any geometry."""

    def both(
        x: NDArray[np.float64], y: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        nx, ny = fn(x, y)
        return np.asarray(nx, dtype=np.float64), np.asarray(ny, dtype=np.float64)

    return shapely.transform(geom, both, interleaved=False)


def _as_arrays(lon: ArrayLike, lat: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    x, y = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    return np.array(x), np.array(y)


def _like_input(
    lon: ArrayLike, lat: ArrayLike, x: NDArray[np.float64], y: NDArray[np.float64]
) -> tuple[Any, Any]:
    if np.ndim(lon) == 0 and np.ndim(lat) == 0:
        return float(x), float(y)
    return x, y
