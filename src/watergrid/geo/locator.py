"""Point -> community water grid (and key zone) lookup.

Every work order and sensor reading is located, so lookups must be cheap.
A regular cell index over the bounding box answers most points with one
array read; only points in cells crossed by a polygon edge run an exact
crossing-number (even-odd) test over the few edges stored for that cell.

Tie-break (points exactly on an edge): a point belongs to a polygon when a
point nudged infinitesimally east of it (+lon) does; if the edge there runs
exactly east-west, nudge north (+lat) instead. This is the half-open rule of
the classic crossing test with a ray cast towards +lon, so on an edge shared
by two grids the point goes to exactly one of them, deterministically, and
the outer district edge counts only where the district lies east/north. If
polygons overlap, the lowest index wins.

Away from edges the result equals ``shapely.contains_xy`` on each polygon.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry.base import BaseGeometry

DEFAULT_CELLS_PER_SIDE = 512
_BOUNDARY = -2
# Cells are tested with a slightly enlarged box, so a point whose cell index
# is off by one through rounding still gets a cell whose answer covers it.
_MARGIN_FRACTION = 1e-6
# Bounds the temporary (point x edge) arrays of the batch path.
_BATCH_CHUNK = 1 << 16

Edge = tuple[float, float, float, float]  # y_low, y_high, x at y_low, dx/dy


@dataclass(frozen=True)
class _Cell:
    tests: tuple[tuple[int, tuple[Edge, ...]], ...]  # (polygon, its edges) per candidate
    first_tests: tuple[tuple[int, tuple[Edge, ...]], ...]
    fallback: int  # answer for `first` when no tested candidate holds the point


class _CellIndex:
    """Cell index over polygons; `first` gives the lowest-index polygon
    holding a point, `every` gives all of them."""

    first_list: list[int]  # per cell: polygon, -1, or _BOUNDARY (list: fastest scalar read)
    first_arr: NDArray[np.integer]  # the same as an array, for the batch path
    set_list: list[int]  # per cell: index into `sets`, or _BOUNDARY
    sets: list[tuple[int, ...]]
    boundary: dict[int, _Cell]

    def __init__(self, polygons: Sequence[BaseGeometry], cells_per_side: int) -> None:
        if cells_per_side < 1:
            raise ValueError("cells_per_side must be >= 1")
        self.count = len(polygons)
        if not polygons:
            self._empty_frame()
            return
        geoms = np.array(polygons, dtype=object)
        if shapely.is_empty(geoms).any():
            raise ValueError("empty geometry given to the locator")
        x0, y0, x1, y1 = shapely.total_bounds(geoms)
        step = max(x1 - x0, y1 - y0, 1e-12) / cells_per_side
        self.x0, self.y0, self.inv_step = float(x0), float(y0), 1.0 / step
        # One spare column/row so a point just below the max bound can never
        # round into a cell that does not exist.
        self.nx = int((x1 - x0) / step) + 1
        self.ny = int((y1 - y0) / step) + 1
        margin = step * _MARGIN_FRACTION

        n_cells = self.nx * self.ny
        iy, ix = np.divmod(np.arange(n_cells), self.nx)
        cx0, cy0 = x0 + ix * step, y0 + iy * step

        def boxes(cells: NDArray[np.int64]) -> NDArray:
            return shapely.box(
                cx0[cells] - margin, cy0[cells] - margin,
                cx0[cells] + step + margin, cy0[cells] + step + margin,
            )  # fmt: skip

        owners, seg = _segments(geoms)
        near = self._cells_near_segments(seg, step)
        seg_lines = shapely.linestrings(seg.reshape(-1, 2, 2))
        hit = shapely.STRtree(seg_lines).query(boxes(near), predicate="intersects")[0]
        boundary = np.zeros(n_cells, dtype=bool)
        boundary[near[hit]] = True

        # Cells no edge touches lie wholly inside or outside each polygon, so
        # their centre decides for the whole (enlarged) cell.
        member_cells, member_polys = self._pure_memberships(geoms, ~boundary, step)
        self._set_tables(n_cells, member_cells, member_polys, boundary)

        b_cells = np.flatnonzero(boundary)
        b_boxes = boxes(b_cells)
        cand_cells, cand_polys = shapely.STRtree(geoms).query(b_boxes, predicate="intersects")
        # Candidates in index order make `first` honour "lowest index wins".
        order = np.lexsort((cand_polys, cand_cells))
        cand_cells, cand_polys = cand_cells[order], cand_polys[order]
        union = shapely.union_all(geoms)
        shapely.prepare(union)
        covered = shapely.covers(union, b_boxes)
        edges = _crossing_edges(owners, seg)
        self.boundary = self._cells_from(
            b_cells, cand_cells, cand_polys, covered, edges, cx0, cy0, step, margin
        )
        self._pack_batch_arrays(b_cells)

    def _empty_frame(self) -> None:
        self.x0 = self.y0 = 0.0
        self.inv_step = 1.0
        self.nx = self.ny = 0
        self.first_list = []
        self.first_arr = np.zeros(0, dtype=np.int16)
        self.set_list = []
        self.sets = [()]
        self.boundary = {}
        self._pack_batch_arrays(np.zeros(0, dtype=np.int64))

    def _cells_near_segments(self, seg: NDArray[np.float64], step: float) -> NDArray[np.int64]:
        """Cells that may touch an edge: a cheap superset, so that the exact
        box/edge test runs on a few thousand cells rather than all of them."""
        xa, ya, xb, yb = seg.T
        pieces = np.maximum(np.ceil(np.maximum(abs(xb - xa), abs(yb - ya)) / step), 1).astype(int)
        owner = np.repeat(np.arange(len(seg)), pieces)
        t0 = (np.arange(len(owner)) - np.repeat(np.cumsum(pieces) - pieces, pieces)) / pieces[owner]
        t1 = t0 + 1.0 / pieces[owner]
        px0, px1 = xa[owner] + (xb - xa)[owner] * t0, xa[owner] + (xb - xa)[owner] * t1
        py0, py1 = ya[owner] + (yb - ya)[owner] * t0, ya[owner] + (yb - ya)[owner] * t1
        # Each piece spans at most one cell per axis; one extra cell on each
        # side absorbs the margin and any rounding in the piece ends.
        lo_x = np.floor((np.minimum(px0, px1) - self.x0) * self.inv_step).astype(np.int64) - 1
        lo_y = np.floor((np.minimum(py0, py1) - self.y0) * self.inv_step).astype(np.int64) - 1
        found = []
        for dx in range(4):
            for dy in range(4):
                cx, cy = lo_x + dx, lo_y + dy
                ok = (cx >= 0) & (cx < self.nx) & (cy >= 0) & (cy < self.ny)
                found.append(cy[ok] * self.nx + cx[ok])
        return np.unique(np.concatenate(found))

    def _pure_memberships(
        self, geoms: NDArray, pure: NDArray[np.bool_], step: float
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(cell, polygon) pairs for edge-free cells whose centre is inside."""
        pure_2d = pure.reshape(self.ny, self.nx)
        cells_out, polys_out = [], []
        for i, geom in enumerate(geoms):
            gx0, gy0, gx1, gy1 = geom.bounds
            c0 = max(int((gx0 - self.x0) * self.inv_step), 0)
            r0 = max(int((gy0 - self.y0) * self.inv_step), 0)
            c1 = min(int((gx1 - self.x0) * self.inv_step) + 1, self.nx - 1)
            r1 = min(int((gy1 - self.y0) * self.inv_step) + 1, self.ny - 1)
            rows, cols = np.nonzero(pure_2d[r0 : r1 + 1, c0 : c1 + 1])
            rows, cols = rows + r0, cols + c0
            shapely.prepare(geom)
            inside = shapely.contains_xy(
                geom, self.x0 + (cols + 0.5) * step, self.y0 + (rows + 0.5) * step
            )
            cells_out.append(rows[inside] * self.nx + cols[inside])
            polys_out.append(np.full(np.count_nonzero(inside), i))
        return np.concatenate(cells_out).astype(np.int64), np.concatenate(polys_out).astype(
            np.int64
        )

    def _set_tables(
        self, n_cells: int, member_cells: NDArray, member_polys: NDArray, boundary: NDArray
    ) -> None:
        order = np.lexsort((member_polys, member_cells))
        member_cells, member_polys = member_cells[order], member_polys[order]
        first = np.full(n_cells, -1, dtype=np.int64)
        # Sorted by (cell, polygon): a cell's first row holds its lowest index.
        cells_once, first_row = np.unique(member_cells, return_index=True)
        first[cells_once] = member_polys[first_row]
        first[boundary] = _BOUNDARY
        dtype = np.int16 if self.count < np.iinfo(np.int16).max else np.int32
        self.first_arr = first.astype(dtype)
        self.first_list = first.tolist()

        # Set id 0 is "no polygon"; ids 1..n are single polygons; overlaps
        # get further ids, so pure cells answer `every` with one read too.
        self.sets = [()] + [(i,) for i in range(self.count)]
        set_ids = np.zeros(n_cells, dtype=np.int64)
        set_ids[member_cells] = member_polys + 1
        counts = np.bincount(member_cells, minlength=n_cells)
        known: dict[tuple[int, ...], int] = {}
        starts = np.searchsorted(member_cells, np.flatnonzero(counts > 1))
        for cell, start in zip(np.flatnonzero(counts > 1), starts, strict=True):
            key = tuple(int(p) for p in member_polys[start : start + counts[cell]])
            if key not in known:
                known[key] = len(self.sets)
                self.sets.append(key)
            set_ids[cell] = known[key]
        set_ids[boundary] = _BOUNDARY
        self.set_list = set_ids.tolist()

    def _cells_from(
        self,
        b_cells: NDArray[np.int64],
        cand_cells: NDArray[np.int64],
        cand_polys: NDArray[np.int64],
        covered: NDArray[np.bool_],
        edges: tuple[NDArray, ...],
        cx0: NDArray[np.float64],
        cy0: NDArray[np.float64],
        step: float,
        margin: float,
    ) -> dict[int, _Cell]:
        ay, by, ax, k, xmax, owner = edges
        by_poly: dict[int, list[int]] = {}
        for row, p in enumerate(cand_polys.tolist()):
            by_poly.setdefault(p, []).append(row)
        # (candidate row) -> edges of that polygon able to cross a +lon ray
        # cast from anywhere in the enlarged cell.
        row_edges: dict[int, tuple[Edge, ...]] = {}
        for p, rows in by_poly.items():
            mine = np.flatnonzero(owner == p)
            cells = b_cells[cand_cells[rows]]
            lo, hi, left = cy0[cells] - margin, cy0[cells] + step + margin, cx0[cells] - margin
            usable = (
                (ay[mine][None, :] <= hi[:, None])
                & (by[mine][None, :] > lo[:, None])
                & (xmax[mine][None, :] >= left[:, None])
            )
            for row, mask in zip(rows, usable, strict=True):
                sel = mine[mask]
                row_edges[row] = tuple(
                    zip(
                        ay[sel].tolist(),
                        by[sel].tolist(),
                        ax[sel].tolist(),
                        k[sel].tolist(),
                        strict=True,
                    )
                )

        out: dict[int, _Cell] = {}
        bounds = np.searchsorted(cand_cells, np.arange(len(b_cells) + 1))
        for i, cell in enumerate(b_cells.tolist()):
            span = range(bounds[i], bounds[i + 1])
            tests = tuple((int(cand_polys[r]), row_edges[r]) for r in span)
            if covered[i] and tests:
                # The candidates cover the cell: failing all but the last
                # means the last, so it need not be tested.
                first_tests, fallback = tests[:-1], tests[-1][0]
            else:
                first_tests, fallback = tests, -1
            out[cell] = _Cell(tests, first_tests, fallback)
        return out

    def _pack_batch_arrays(self, b_cells: NDArray) -> None:
        """Flatten the `first` tests so the batch path can run in numpy."""
        self.slot_of_cell = np.full(self.nx * self.ny, -1, dtype=np.int64)
        self.slot_of_cell[b_cells] = np.arange(len(b_cells))
        cells = [self.boundary[int(c)] for c in b_cells]
        width = max([len(c.first_tests) for c in cells] + [1])
        self.slot_poly = np.full((len(cells), width), -1, dtype=np.int32)
        self.slot_fallback = np.array([c.fallback for c in cells], dtype=np.int32)
        rows: list[Edge] = []
        which: list[int] = []
        starts = [0]
        for s, c in enumerate(cells):
            for j, (poly, edges) in enumerate(c.first_tests):
                self.slot_poly[s, j] = poly
                rows.extend(edges)
                which.extend([j] * len(edges))
            starts.append(len(rows))
        self.edge_start = np.array(starts, dtype=np.int64)
        self.edges = np.array(rows, dtype=np.float64).reshape(-1, 4)
        self.edge_which = np.array(which, dtype=np.int64)
        self.width = width

    def first(self, x: float, y: float) -> int:
        fx = (x - self.x0) * self.inv_step
        fy = (y - self.y0) * self.inv_step
        if not (0.0 <= fx < self.nx and 0.0 <= fy < self.ny):  # NaN fails too
            return -1
        cell = int(fy) * self.nx + int(fx)
        found = self.first_list[cell]
        if found != _BOUNDARY:
            return found
        entry = self.boundary[cell]
        for poly, edges in entry.first_tests:
            if _odd_crossings(edges, x, y):
                return poly
        return entry.fallback

    def every(self, x: float, y: float) -> tuple[int, ...]:
        fx = (x - self.x0) * self.inv_step
        fy = (y - self.y0) * self.inv_step
        if not (0.0 <= fx < self.nx and 0.0 <= fy < self.ny):
            return ()
        cell = int(fy) * self.nx + int(fx)
        found = self.set_list[cell]
        if found != _BOUNDARY:
            return self.sets[found]
        return tuple(
            poly for poly, edges in self.boundary[cell].tests if _odd_crossings(edges, x, y)
        )

    def first_many(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.int32]:
        fx = (x - self.x0) * self.inv_step
        fy = (y - self.y0) * self.inv_step
        ok = (fx >= 0.0) & (fx < self.nx) & (fy >= 0.0) & (fy < self.ny)
        ix = np.where(ok, fx, 0.0).astype(np.int64)
        iy = np.where(ok, fy, 0.0).astype(np.int64)
        cell = iy * self.nx + ix
        out = self.first_arr[cell].astype(np.int32) if self.nx else np.full(x.shape, -1, np.int32)
        out[~ok] = -1
        todo = np.flatnonzero(out == _BOUNDARY)
        for lo in range(0, len(todo), _BATCH_CHUNK):
            idx = todo[lo : lo + _BATCH_CHUNK]
            out[idx] = self._resolve_many(x[idx], y[idx], self.slot_of_cell[cell[idx]])
        return out

    def _resolve_many(self, x: NDArray, y: NDArray, slot: NDArray) -> NDArray[np.int32]:
        start = self.edge_start[slot]
        count = self.edge_start[slot + 1] - start
        point = np.repeat(np.arange(len(x)), count)
        row = start[point] + (np.arange(len(point)) - np.repeat(np.cumsum(count) - count, count))
        e = self.edges[row]
        px, py = x[point], y[point]
        # Same expression, same operand order as `_odd_crossings`, so the
        # batch and single paths round identically.
        hit = (e[:, 0] <= py) & (py < e[:, 1]) & (px < e[:, 2] + (py - e[:, 0]) * e[:, 3])
        key = point[hit] * self.width + self.edge_which[row[hit]]
        odd = (np.bincount(key, minlength=len(x) * self.width) & 1).reshape(len(x), self.width)
        chosen = self.slot_poly[slot, odd.argmax(axis=1)]
        return np.where(odd.any(axis=1), chosen, self.slot_fallback[slot]).astype(np.int32)


def _odd_crossings(edges: tuple[Edge, ...], x: float, y: float) -> bool:
    inside = False
    for y_low, y_high, x_at_low, slope in edges:
        if y_low <= y < y_high and x < x_at_low + (y - y_low) * slope:
            inside = not inside
    return inside


def _segments(geoms: NDArray) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Every ring edge as (x_a, y_a, x_b, y_b) with the polygon it bounds."""
    owners, segs = [], []
    for i, geom in enumerate(geoms):
        for ring in shapely.get_rings(shapely.get_parts(geom)):
            xy = shapely.get_coordinates(ring)
            segs.append(np.hstack([xy[:-1], xy[1:]]))
            owners.append(np.full(len(xy) - 1, i))
    return np.concatenate(owners), np.concatenate(segs)


def _crossing_edges(owners: NDArray, seg: NDArray) -> tuple[NDArray, ...]:
    """Edges in the form the crossing test wants: oriented upwards so both
    polygons sharing an edge compute the very same crossing x (hence the
    tie-break is exact), with east-west edges dropped as they never count."""
    xa, ya, xb, yb = seg.T
    keep = ya != yb
    up = ya < yb
    x_low = np.where(up, xa, xb)[keep]
    y_low = np.where(up, ya, yb)[keep]
    x_high = np.where(up, xb, xa)[keep]
    y_high = np.where(up, yb, ya)[keep]
    slope = (x_high - x_low) / (y_high - y_low)
    return y_low, y_high, x_low, slope, np.maximum(x_low, x_high), owners[keep]


class Locator:
    """Grid and zone lookup for WGS84 lon/lat. See the module doc for the
    rule applied to points exactly on an edge."""

    def __init__(
        self, grid_codes: list[str], zone_codes: list[str], grids: _CellIndex, zones: _CellIndex
    ) -> None:
        self.grid_codes = grid_codes
        self.zone_codes = zone_codes
        self._grids = grids
        self._zones = zones

    @classmethod
    def build(
        cls,
        grids: Sequence[tuple[str, BaseGeometry]],
        zones: Sequence[tuple[str, BaseGeometry]] = (),
        *,
        cells_per_side: int = DEFAULT_CELLS_PER_SIDE,
    ) -> Locator:
        """`cells_per_side` cells span the longer side of the bounding box;
        more cells mean fewer exact tests per lookup but a slower build."""
        return cls(
            [code for code, _ in grids],
            [code for code, _ in zones],
            _CellIndex([g for _, g in grids], cells_per_side),
            _CellIndex([g for _, g in zones], cells_per_side),
        )

    def grid_index(self, lon: float, lat: float) -> int:
        """Index into `grid_codes`, or -1 outside every grid."""
        return self._grids.first(lon, lat)

    def grid_code_at(self, lon: float, lat: float) -> str | None:
        i = self._grids.first(lon, lat)
        return None if i < 0 else self.grid_codes[i]

    def grid_indices(self, lon: ArrayLike, lat: ArrayLike) -> NDArray[np.int32]:
        """Vectorised `grid_index`; returns int32 with -1 outside every grid."""
        x, y = np.broadcast_arrays(
            np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        )
        return self._grids.first_many(x.ravel(), y.ravel()).reshape(x.shape)

    def zone_codes_at(self, lon: float, lat: float) -> list[str]:
        return [self.zone_codes[i] for i in self._zones.every(lon, lat)]
