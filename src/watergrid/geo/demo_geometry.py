"""Reproducible demo geometry for Guangming District (光明区, 440311).

Only the district outline is real. No subdistrict (街道) or community (社区)
boundaries are published, so they are made up here: a seeded Voronoi split of
the real outline, labelled ``synthetic=True``. Codes and names are real
where known (see `_GRID_PLAN`).

All Voronoi lines and the district outline are noded together on a 1e-7
degree grid (snap rounding) and polygonised once, so neighbouring areas share
exactly the same vertices: the 37 grids tile the district with no gap or
overlap, and the same seed gives byte-identical WKB.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, shape
from shapely.geometry.base import BaseGeometry

from watergrid.geo.datum import gcj02_to_wgs84, transform_geometry

DATA_DIR = Path(__file__).resolve().parent.parent / "demo" / "data" / "guangming"
DISTRICT_CODE = "440311"
# ~1 cm; fine enough to keep the real outline, coarse enough that snap
# rounding merges the copies of a shared edge computed from either side.
PRECISION_DEG = 1e-7
_DECIMALS = 7

_KM_PER_DEG_LAT = 110.574
_KM_PER_DEG_LON_EQUATOR = 111.320


@dataclass(frozen=True)
class Area:
    code: str
    name_zh: str
    name_en: str
    geometry: BaseGeometry
    synthetic: bool


@dataclass(frozen=True)
class Grid(Area):
    """A community water grid (社区水务网格); the code number is its red chain
    leader joint party group (红色链长联合党小组) number."""

    subdistrict_code: str
    name_known: bool


@dataclass(frozen=True)
class DemoAreas:
    district: Area
    subdistricts: tuple[Area, ...]
    grids: tuple[Grid, ...]
    zones: tuple[Area, ...]


_SUBDISTRICT_NAME_EN = {
    "440311001": "Guangming Subdistrict",
    "440311002": "Gongming Subdistrict",
    "440311003": "Xinhu Subdistrict",
    "440311004": "Fenghuang Subdistrict",
    "440311005": "Yutang Subdistrict",
    "440311006": "Matian Subdistrict",
}

# Rough WGS84 centres, so the split resembles where each subdistrict really
# lies (公明 west/north-west, 玉塘 south-west, 马田 middle-south, 光明
# north-east, 凤凰 east/south-east, 新湖 north).
_SUBDISTRICT_ANCHOR = {
    "440311001": (113.962, 22.790),
    "440311002": (113.887, 22.783),
    "440311003": (113.925, 22.812),
    "440311004": (113.968, 22.737),
    "440311005": (113.897, 22.716),
    "440311006": (113.926, 22.748),
}
_ANCHOR_JITTER_DEG = 0.004

# (grid code, subdistrict code, community, pinyin, part). Part 1 is the real
# community (2016 name list); part 2 is a made-up second grid of a large
# community, needed because there are 37 party groups but 28 known names.
# W01 and W13 are fixed by the source article; the other community ->
# subdistrict assignments are best knowledge, not an official list.
_GRID_PLAN: tuple[tuple[str, str, str, str, int], ...] = (
    ("W01", "440311003", "楼村", "Loucun", 1),
    ("W02", "440311003", "新羌", "Xinqiang", 1),
    ("W03", "440311003", "圳美", "Zhenmei", 1),
    ("W04", "440311003", "楼村", "Loucun", 2),
    ("W05", "440311003", "新羌", "Xinqiang", 2),
    ("W06", "440311004", "凤凰", "Fenghuang", 1),
    ("W07", "440311004", "塘尾", "Tangwei", 1),
    ("W08", "440311004", "东坑", "Dongkeng", 1),
    ("W09", "440311004", "甲子塘", "Jiazitang", 1),
    ("W10", "440311004", "塘家", "Tangjia", 1),
    ("W11", "440311004", "凤凰", "Fenghuang", 2),
    ("W12", "440311006", "合水口", "Heshuikou", 1),
    ("W13", "440311006", "薯田埔", "Shutianpu", 1),
    ("W14", "440311006", "马山头", "Mashantou", 1),
    ("W15", "440311006", "将石", "Jiangshi", 1),
    ("W16", "440311006", "合水口", "Heshuikou", 2),
    ("W17", "440311001", "光明", "Guangming", 1),
    ("W18", "440311001", "东周", "Dongzhou", 1),
    ("W19", "440311001", "碧眼", "Biyan", 1),
    ("W20", "440311001", "白花", "Baihua", 1),
    ("W21", "440311001", "翠湖", "Cuihu", 1),
    ("W22", "440311001", "迳口", "Jingkou", 1),
    ("W23", "440311001", "光明", "Guangming", 2),
    ("W24", "440311001", "白花", "Baihua", 2),
    ("W25", "440311002", "公明", "Gongming", 1),
    ("W26", "440311002", "上村", "Shangcun", 1),
    ("W27", "440311002", "下村", "Xiacun", 1),
    ("W28", "440311002", "李松蓢", "Lisonglang", 1),
    ("W29", "440311002", "西田", "Xitian", 1),
    ("W30", "440311002", "根竹园", "Genzhuyuan", 1),
    ("W31", "440311002", "公明", "Gongming", 2),
    ("W32", "440311002", "李松蓢", "Lisonglang", 2),
    ("W33", "440311005", "玉律", "Yulü", 1),
    ("W34", "440311005", "长圳", "Changzhen", 1),
    ("W35", "440311005", "田寮", "Tianliao", 1),
    ("W36", "440311005", "红星", "Hongxing", 1),
    ("W37", "440311005", "长圳", "Changzhen", 2),
)

# (code, name_zh, name_en, grid the zone is drawn next to or None). Only
# 白花片区 is tied to its namesake community; the other outlines are placed
# at random because no public source locates them.
_ZONE_PLAN: tuple[tuple[str, str, str, str | None], ...] = (
    ("Z01", "白花片区", "Baihua Area", "W20"),
    ("Z02", "光明云谷片区", "Guangming Cloud Valley Area", None),
    ("Z03", "明湖智谷片区", "Minghu Smart Valley Area", None),
    ("Z04", "茅洲河中央水岸", "Maozhou River Central Waterfront", None),
    ("Z05", "新兴湖片区", "Xinxing Lake Area", None),
    ("Z06", "科学公馆片区", "Science Mansion Area", None),
    ("Z07", "大运会片区", "Universiade Area", None),
)
_ZONE_AREA_KM2 = (1.3, 3.5)
_ZONE_GAP_DEG = 0.002  # ~200 m between zones so they read as separate places
_ZONE_MIN_SHARE = 0.10  # "straddles" = at least two grids hold 10% each
_LLOYD_STEPS = 4


def load_district_wgs84(data_dir: Path = DATA_DIR) -> BaseGeometry:
    """The real 光明区 outline, converted from GCJ-02 (AMap-derived) to WGS84."""
    with open(data_dir / "guangming_district_440311.geojson", encoding="utf-8") as fh:
        feature = json.load(fh)["features"][0]
    wgs = transform_geometry(shape(feature["geometry"]), gcj02_to_wgs84)
    return _polygonal(_rounded(wgs))


def build_demo_areas(seed: int = 2024) -> DemoAreas:
    """District, 6 subdistricts, 37 grids and 7 zones; same seed, same bytes."""
    rng = np.random.default_rng(seed)
    outline = load_district_wgs84()
    names = _read_subdistrict_names()
    sub_codes = sorted(_SUBDISTRICT_ANCHOR)

    sub_seeds = np.array([_SUBDISTRICT_ANCHOR[c] for c in sub_codes])
    sub_seeds = sub_seeds + rng.uniform(-_ANCHOR_JITTER_DEG, _ANCHOR_JITTER_DEG, sub_seeds.shape)
    sub_cells = _voronoi_cells(sub_seeds, outline)

    plan_by_sub = {c: [row for row in _GRID_PLAN if row[1] == c] for c in sub_codes}
    grid_seeds = {}
    for code, cell in zip(sub_codes, sub_cells, strict=True):
        region = _polygonal(shapely.intersection(cell, outline))
        seeds = _relaxed_seeds(rng, region, len(plan_by_sub[code]))
        grid_seeds[code] = _label_seeds(rng, seeds, plan_by_sub[code])

    grid_geoms = _tile(outline, sub_seeds, sub_codes, grid_seeds)
    grid_geoms = _absorb_detached_parts(grid_geoms)
    sub_of = {row[0]: row[1] for row in _GRID_PLAN}

    grids = tuple(
        Grid(
            code=code,
            name_zh=f"{community}社区" + ("" if part == 1 else "第二网格"),
            name_en=f"{pinyin} Community" + ("" if part == 1 else " Grid 2"),
            geometry=grid_geoms[code],
            synthetic=True,
            subdistrict_code=sub_code,
            name_known=part == 1,
        )
        for code, sub_code, community, pinyin, part in _GRID_PLAN
    )
    subdistricts = tuple(
        Area(
            code=code,
            name_zh=names[code],
            name_en=_SUBDISTRICT_NAME_EN[code],
            geometry=_union([g for c, g in grid_geoms.items() if sub_of[c] == code]),
            synthetic=True,
        )
        for code in sub_codes
    )
    district_geom = _union(list(grid_geoms.values()))
    district = Area(DISTRICT_CODE, names[DISTRICT_CODE], "Guangming District", district_geom, False)
    zones = _make_zones(rng, district_geom, grid_geoms)
    return DemoAreas(district, subdistricts, grids, zones)


def approx_area_km2(geom: BaseGeometry) -> float:
    """Area on a local equirectangular plane; good to ~0.1% at district scale."""
    lat = geom.centroid.y
    return geom.area * _KM_PER_DEG_LAT * _KM_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat))


def _read_subdistrict_names(data_dir: Path = DATA_DIR) -> dict[str, str]:
    with open(data_dir / "guangming_subdistricts.csv", encoding="utf-8", newline="") as fh:
        return {row["code"]: row["name"] for row in csv.DictReader(fh)}


def _voronoi_cells(seeds: np.ndarray, outline: BaseGeometry) -> list[BaseGeometry]:
    frame = shapely.box(*outline.buffer(0.05).bounds)
    cells = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=frame, ordered=True)
    return list(shapely.get_parts(cells))


def _random_points_in(rng: np.random.Generator, region: BaseGeometry, n: int) -> np.ndarray:
    x0, y0, x1, y1 = region.bounds
    shapely.prepare(region)
    found: list[np.ndarray] = []
    count = 0
    while count < n:
        xy = rng.uniform((x0, y0), (x1, y1), size=(4 * n, 2))
        inside = xy[shapely.contains_xy(region, xy[:, 0], xy[:, 1])]
        found.append(inside)
        count += len(inside)
    return np.concatenate(found)[:n]


def _relaxed_seeds(rng: np.random.Generator, region: BaseGeometry, n: int) -> np.ndarray:
    """Random seeds spread out by a few Lloyd steps, so grids get similar sizes."""
    seeds = _random_points_in(rng, region, n)
    for _ in range(_LLOYD_STEPS):
        moved = []
        for cell in _voronoi_cells(seeds, region):
            piece = shapely.intersection(cell, region)
            centre = piece.centroid
            if not region.contains(centre):
                centre = piece.representative_point()
            moved.append((centre.x, centre.y))
        seeds = np.round(np.array(moved), _DECIMALS)
    return seeds


def _label_seeds(
    rng: np.random.Generator, seeds: np.ndarray, plan: Sequence[tuple[str, str, str, str, int]]
) -> dict[str, tuple[float, float]]:
    """Give real communities random seeds, and each made-up second grid the
    free seed nearest its community, so the two halves end up adjacent."""
    order = list(rng.permutation(len(seeds)))
    by_community: dict[str, tuple[float, float]] = {}
    labelled: dict[str, tuple[float, float]] = {}
    for code, _, community, _, part in plan:
        if part == 1:
            xy = tuple(seeds[order.pop(0)])
            by_community[community] = xy
            labelled[code] = xy
    for code, _, community, _, part in plan:
        if part != 1:
            home = np.array(by_community[community])
            nearest = min(order, key=lambda i: float(np.hypot(*(seeds[i] - home))))
            order.remove(nearest)
            labelled[code] = tuple(seeds[nearest])
    return labelled


def _tile(
    outline: BaseGeometry,
    sub_seeds: np.ndarray,
    sub_codes: list[str],
    grid_seeds: dict[str, dict[str, tuple[float, float]]],
) -> dict[str, BaseGeometry]:
    frame = shapely.box(*outline.buffer(0.05).bounds)
    lines = [outline.boundary]
    lines.append(
        shapely.voronoi_polygons(shapely.multipoints(sub_seeds), extend_to=frame, only_edges=True)
    )
    sub_cells = _voronoi_cells(sub_seeds, outline)
    for code, cell in zip(sub_codes, sub_cells, strict=True):
        pts = np.array(list(grid_seeds[code].values()))
        edges = shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=frame, only_edges=True)
        lines.append(shapely.intersection(edges, cell))
    # One snap-rounded noding of every line is what makes shared edges exact.
    noded = shapely.union_all(lines, grid_size=PRECISION_DEG)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))

    shapely.prepare(outline)
    probes = shapely.point_on_surface(faces)
    faces = faces[shapely.contains(outline, probes)]
    probes = shapely.get_coordinates(shapely.point_on_surface(faces))

    # Nearest seed decides the Voronoi cell, so no predicate on slivers is needed.
    sub_idx = np.argmin(((probes[:, None, :] - sub_seeds[None, :, :]) ** 2).sum(-1), axis=1)
    pieces: dict[str, list[BaseGeometry]] = {row[0]: [] for row in _GRID_PLAN}
    for face, probe, s in zip(faces, probes, sub_idx, strict=True):
        seeds = grid_seeds[sub_codes[s]]
        code = min(
            seeds, key=lambda c: (seeds[c][0] - probe[0]) ** 2 + (seeds[c][1] - probe[1]) ** 2
        )
        pieces[code].append(face)
    empty = [c for c, p in pieces.items() if not p]
    if empty:
        raise ValueError(f"seed layout left grids without area: {empty}")
    return {code: _union(parts) for code, parts in pieces.items()}


def _absorb_detached_parts(grids: dict[str, BaseGeometry]) -> dict[str, BaseGeometry]:
    """A concave outline can cut a Voronoi cell in two; hand each stray piece
    to the neighbour (same subdistrict first) it shares most border with."""
    grids = dict(grids)
    for code in sorted(grids):
        parts = sorted(shapely.get_parts(grids[code]), key=lambda p: -p.area)
        if len(parts) == 1:
            continue
        grids[code] = parts[0]
        for stray in parts[1:]:
            target = _best_neighbour(grids, code, stray)
            grids[target] = _union([grids[target], stray])
    return grids


def _best_neighbour(grids: dict[str, BaseGeometry], code: str, piece: BaseGeometry) -> str:
    sub_of = {row[0]: row[1] for row in _GRID_PLAN}

    def rank(other: str) -> tuple[bool, float]:
        border = shapely.intersection(piece.boundary, grids[other].boundary).length
        return (sub_of[other] == sub_of[code] and border > 0, border)

    return max((c for c in grids if c != code), key=rank)


def _make_zones(
    rng: np.random.Generator, district: BaseGeometry, grids: dict[str, BaseGeometry]
) -> tuple[Area, ...]:
    codes = sorted(grids)
    tree = shapely.STRtree([grids[c] for c in codes])
    shapely.prepare(district)
    borders = _grid_borders(grids)
    zones: list[Area] = []
    taken: list[BaseGeometry] = []
    for code, name_zh, name_en, near in _ZONE_PLAN:
        candidates = [b for b in borders if near in b[0]] if near else borders
        for _attempt in range(500):
            _, line = candidates[int(rng.integers(len(candidates)))]
            centre = line.interpolate(float(rng.uniform(0.2, 0.8)), normalized=True)
            outline = _blob(rng, centre, float(rng.uniform(*_ZONE_AREA_KM2)))
            if not district.contains(outline):
                continue
            if any(outline.distance(t) < _ZONE_GAP_DEG for t in taken):
                continue
            hit = tree.query(outline, predicate="intersects")
            shares = shapely.intersection(outline, [grids[codes[i]] for i in hit])
            if np.count_nonzero(shapely.area(shares) >= _ZONE_MIN_SHARE * outline.area) < 2:
                continue
            break
        else:
            raise RuntimeError(f"could not place zone {code}; try another seed")
        taken.append(outline)
        zones.append(Area(code, name_zh, name_en, outline, True))
    return tuple(zones)


def _grid_borders(grids: dict[str, BaseGeometry]) -> list[tuple[tuple[str, str], BaseGeometry]]:
    codes = sorted(grids)
    out = []
    for i, a in enumerate(codes):
        for b in codes[i + 1 :]:
            line = shapely.line_merge(shapely.intersection(grids[a].boundary, grids[b].boundary))
            if line.length > 0:
                longest = max(shapely.get_parts(line), key=lambda g: g.length)
                out.append(((a, b), longest))
    return out


def _blob(rng: np.random.Generator, centre: Point, area_km2: float) -> Polygon:
    """A smooth irregular star-shaped outline with exactly the asked area."""
    n = int(rng.integers(10, 15))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False) * 0.6 + angles * 0.4
    angles.sort()
    radii = 1.0 + 0.3 * rng.standard_normal(n)
    radii = np.clip((radii + np.roll(radii, 1) + np.roll(radii, -1)) / 3.0, 0.55, 1.6)
    x_km = radii * np.cos(angles)
    y_km = radii * np.sin(angles)
    unit_area = 0.5 * abs(np.dot(x_km, np.roll(y_km, -1)) - np.dot(y_km, np.roll(x_km, -1)))
    scale = math.sqrt(area_km2 / unit_area)
    km_per_deg_lon = _KM_PER_DEG_LON_EQUATOR * math.cos(math.radians(centre.y))
    lon = centre.x + x_km * scale / km_per_deg_lon
    lat = centre.y + y_km * scale / _KM_PER_DEG_LAT
    return _polygonal(_rounded(Polygon(np.column_stack([lon, lat]))))


def _rounded(geom: BaseGeometry) -> BaseGeometry:
    return shapely.transform(geom, lambda xy: np.round(xy, _DECIMALS))


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    """Valid, polygon-only geometry (make_valid can leave stray lines/points)."""
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    polys = [p for p in _leaves(geom) if isinstance(p, Polygon) and not p.is_empty]
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def _leaves(geom: BaseGeometry) -> list[BaseGeometry]:
    if isinstance(geom, (MultiPolygon, shapely.GeometryCollection)):
        return [leaf for part in shapely.get_parts(geom) for leaf in _leaves(part)]
    return [geom]


def _union(parts: Sequence[BaseGeometry]) -> BaseGeometry:
    # The parts come from one polygonisation and share exact edges, so the
    # cheap coverage union applies and adds no new vertices.
    merged = shapely.coverage_union_all(list(parts))
    return _rounded(shapely.normalize(merged))
