"""What registry rows must satisfy, for imported files and the demo alike.

Rows are checked against the registry as it will be after the import (the database rows
overlaid with the given rows, or the given rows alone under --replace), so a reference may
point to a row already in the database or to one arriving in the same import. Every problem
is collected, each naming its file, line and field; nothing is written unless the list is
empty."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from watergrid.errors import FieldError
from watergrid.geo.models import AREA_KINDS
from watergrid.org.categories import SERVICE_CATEGORIES
from watergrid.org.models import DEPARTMENT_KINDS, MEMBER_TAGS, ZONE_ROLES
from watergrid.registry import rows as R
from watergrid.registry.rows import (
    AreaRow,
    DepartmentRow,
    PartyGroupRow,
    PersonRow,
    RegistryData,
    Source,
    ZoneRoleRow,
)

CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
CODE_MAX = 32
MOBILE = re.compile(r"1[3-9][0-9]{9}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PHONE = re.compile(r"[0-9+\-() ]*")
CATEGORY = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")

# Which kind of area an area's parent must be.
PARENT_KIND = {
    "district": None,
    "subdistrict": "district",
    "grid": "subdistrict",
    "zone": "district",
}
# A rule's area: the district is "" (whole district) so that there is one way to say it.
RULE_AREA_KINDS = ("subdistrict", "grid", "zone")

# How far (degrees, ~10 cm) a child may stray outside its parent: outlines drawn or
# rounded separately rarely share every vertex exactly.
CONTAINMENT_TOLERANCE_DEG = 1e-6

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass
class _Ctx:
    errors: list[FieldError]

    def add(self, src: Source | None, fld: str, message: str, message_zh: str) -> None:
        self.errors.append(
            FieldError(
                field=fld,
                message=message,
                message_zh=message_zh,
                line=src.line if src else None,
                file=src.file if src else None,
            )
        )


def _where(src: Source | None) -> str:
    return f"line {src.line}" if src and src.line else "an earlier row"


def _where_zh(src: Source | None) -> str:
    return f"第 {src.line} 行" if src and src.line else "前面的行"


def _merge(
    current: list[T] | None, given: list[T] | None, key: Callable[[T], K], replace_all: bool
) -> dict[K, T]:
    """The rows of one table as they will be after the import."""
    merged: dict[K, T] = {}
    if current is not None and not (replace_all and given is not None):
        merged.update((key(r), r) for r in current)
    for r in given or []:
        merged[key(r)] = r
    return merged


def _duplicates(
    ctx: _Ctx, rows: Iterable[T], key: Callable[[T], K], fld: str, what: str, what_zh: str
) -> None:
    first: dict[K, Source | None] = {}
    for r in rows:
        k = key(r)
        src: Source | None = r.source  # type: ignore[attr-defined]
        if k in first:
            shown = "/".join(str(p) for p in k) if isinstance(k, tuple) else str(k)
            ctx.add(
                src,
                fld,
                f"duplicate {what} {shown} (first on {_where(first[k])})",
                f"{what_zh}重复：{shown}（首次出现在{_where_zh(first[k])}）",
            )
        else:
            first[k] = src


def _code(ctx: _Ctx, src: Source | None, fld: str, value: str, *, required: bool = True) -> bool:
    if value == "":
        if required:
            ctx.add(src, fld, "required", "必填")
        return False
    if len(value) > CODE_MAX or not CODE.fullmatch(value):
        ctx.add(
            src,
            fld,
            f"{value!r} is not a valid code (letters, digits, _ . -; at most {CODE_MAX})",
            f"“{value}”不是有效编码（字母、数字、_ . -，最长 {CODE_MAX} 位）",
        )
        return False
    return True


def _text(
    ctx: _Ctx, src: Source | None, fld: str, value: str, max_len: int, *, required: bool
) -> None:
    if required and value == "":
        ctx.add(src, fld, "required", "必填")
    elif len(value) > max_len:
        ctx.add(src, fld, f"longer than {max_len} characters", f"超过 {max_len} 个字符")


def _one_of(ctx: _Ctx, src: Source | None, fld: str, value: str, allowed: Iterable[str]) -> bool:
    allowed = tuple(allowed)
    if value not in allowed:
        ctx.add(
            src,
            fld,
            f"unknown {fld} {value!r}; expected one of {', '.join(allowed)}",
            f"未知取值“{value}”；应为 {'、'.join(allowed)} 之一",
        )
        return False
    return True


def _missing(
    ctx: _Ctx, src: Source | None, fld: str, what: str, what_zh: str, value: object
) -> None:
    ctx.add(src, fld, f"unknown {what} {value}", f"未知{what_zh}：{value}")


# --------------------------------------------------------------------------- geometry


class GeometryError(ValueError):
    def __init__(self, message: str, message_zh: str) -> None:
        super().__init__(message)
        self.message_zh = message_zh


def _position(p: Any) -> list[float]:
    if (
        not isinstance(p, list | tuple)
        or len(p) < 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in p[:2])
    ):
        raise GeometryError(f"{p!r} is not a [lon, lat] position", f"{p!r} 不是 [经度, 纬度]")
    lon, lat = float(p[0]), float(p[1])
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise GeometryError("coordinates must be finite numbers", "坐标须为有限数值")
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise GeometryError(
            f"({lon}, {lat}) is not a WGS84 longitude/latitude",
            f"({lon}, {lat}) 不是 WGS84 经纬度",
        )
    # Elevation, if any, is dropped: areas are flat outlines.
    return [lon, lat]


def _ring(r: Any) -> list[list[float]]:
    if not isinstance(r, list | tuple):
        raise GeometryError("a ring must be an array of positions", "环须为坐标数组")
    ring = [_position(p) for p in r]
    if len(ring) < 4:
        raise GeometryError("a ring needs at least 4 positions", "每个环至少需要 4 个坐标点")
    if ring[0] != ring[-1]:
        raise GeometryError(
            "a ring must end where it starts (RFC 7946)", "环的首尾坐标须相同（RFC 7946）"
        )
    return ring


def _polygon(p: Any) -> list[list[list[float]]]:
    if not isinstance(p, list | tuple) or not p:
        raise GeometryError(
            "a polygon must be a non-empty array of rings", "多边形须为非空的环数组"
        )
    return [_ring(r) for r in p]


def normalize_geometry(geometry: Any) -> tuple[dict[str, Any], BaseGeometry]:
    """The canonical stored form (type and coordinates only, 2-D float positions in
    lists) and its shapely geometry. Raises GeometryError for anything but a valid,
    non-empty Polygon or MultiPolygon."""
    if not isinstance(geometry, dict):
        raise GeometryError("a geometry object is required", "缺少几何对象")
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        norm: dict[str, Any] = {"type": "Polygon", "coordinates": _polygon(coords)}
    elif kind == "MultiPolygon":
        if not isinstance(coords, list | tuple) or not coords:
            raise GeometryError(
                "a MultiPolygon needs at least one polygon", "MultiPolygon 至少需要一个多边形"
            )
        norm = {"type": "MultiPolygon", "coordinates": [_polygon(p) for p in coords]}
    else:
        raise GeometryError(
            f"geometry must be a Polygon or MultiPolygon, not {kind}",
            f"几何类型须为 Polygon 或 MultiPolygon，而不是 {kind}",
        )
    try:
        geom = shape(norm)
    except Exception as exc:
        raise GeometryError(f"unreadable geometry: {exc}", f"无法解析的几何：{exc}") from exc
    if geom.is_empty or geom.area <= 0:
        raise GeometryError("geometry has no area", "几何面积为零")
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        raise GeometryError(f"invalid geometry: {reason}", f"几何无效：{reason}")
    return norm, geom


def lies_within(child: BaseGeometry, parent: BaseGeometry) -> bool:
    if parent.contains(child):
        return True
    return bool(parent.buffer(CONTAINMENT_TOLERANCE_DEG).contains(child))


# --------------------------------------------------------------------------- tables


def _areas(
    ctx: _Ctx, data: RegistryData, current: RegistryData, replace_all: bool
) -> tuple[list[AreaRow] | None, dict[str, AreaRow]]:
    given = data.areas
    normalized: list[AreaRow] | None = None
    shapes: dict[str, BaseGeometry] = {}
    if given is not None:
        normalized = []
        _duplicates(ctx, given, R.area_key, "properties.code", "area code", "区域编码")
        existing = {a.code: a for a in current.areas or []}
        for r in given:
            src = r.source
            kind_ok = _one_of(ctx, src, "properties.kind", r.kind, AREA_KINDS)
            _code(ctx, src, "properties.code", r.code)
            _text(ctx, src, "properties.name_zh", r.name_zh, 100, required=True)
            _text(ctx, src, "properties.name_en", r.name_en, 100, required=False)
            old = existing.get(r.code)
            if kind_ok and old is not None and old.kind != r.kind and not replace_all:
                ctx.add(
                    src,
                    "properties.kind",
                    f"area {r.code} is a {old.kind} in the database; its kind changes only "
                    "with --replace, which checks everything that refers to it",
                    f"区域 {r.code} 在库中为 {old.kind}，只有使用 --replace 时才能修改类型",
                )
            try:
                geometry, geom = normalize_geometry(r.geometry)
            except GeometryError as exc:
                ctx.add(src, "geometry", str(exc), exc.message_zh)
                normalized.append(r)
                continue
            shapes[r.code] = geom
            normalized.append(replace(r, geometry=geometry))
    merged = _merge(current.areas, normalized, R.area_key, replace_all)

    for r in given or []:
        src = r.source
        if r.kind not in PARENT_KIND:
            continue
        want = PARENT_KIND[r.kind]
        if want is None:
            if r.parent_code:
                ctx.add(
                    src,
                    "properties.parent_code",
                    "the district has no parent; leave it empty",
                    "区级区域没有上级，请留空",
                )
            continue
        if r.parent_code == "":
            ctx.add(
                src,
                "properties.parent_code",
                f"a {r.kind} needs its parent {want}",
                f"须填写上级区域（{want}）",
            )
            continue
        parent = merged.get(r.parent_code)
        if parent is None:
            _missing(ctx, src, "properties.parent_code", "parent area", "上级区域", r.parent_code)
        elif parent.kind != want:
            ctx.add(
                src,
                "properties.parent_code",
                f"the parent of a {r.kind} must be a {want}; {r.parent_code} is a {parent.kind}",
                f"{r.kind} 的上级须为 {want}；{r.parent_code} 是 {parent.kind}",
            )

    districts = [a for a in merged.values() if a.kind == "district"]
    if len(districts) > 1:
        found = ", ".join(sorted(d.code for d in districts))
        for a in districts:
            if a.source is not None:
                ctx.add(
                    a.source,
                    "properties.code",
                    f"only one district is allowed; found {found}",
                    f"只能有一个区级区域；现有 {found}",
                )

    _containment(ctx, merged, shapes)
    return normalized, merged


def _containment(ctx: _Ctx, merged: dict[str, AreaRow], shapes: dict[str, BaseGeometry]) -> None:
    """Each child must lie within its parent; checked where either side is being imported
    (rows already in the database were checked when they arrived)."""

    def geom(code: str) -> BaseGeometry | None:
        if code not in shapes:
            row = merged[code]
            if row.source is not None:  # an imported row whose geometry was refused
                return None
            shapes[code] = shape(row.geometry)
        return shapes[code]

    for child in merged.values():
        parent = merged.get(child.parent_code) if child.parent_code else None
        if parent is None or PARENT_KIND.get(child.kind) != parent.kind:
            continue
        if child.source is None and parent.source is None:
            continue
        c, p = geom(child.code), geom(parent.code)
        if c is None or p is None or lies_within(c, p):
            continue
        share = 100.0 * c.difference(p).area / c.area
        if child.source is not None:
            ctx.add(
                child.source,
                "geometry",
                f"{child.kind} {child.code} does not lie within its parent {parent.code} "
                f"({share:.4g}% of it lies outside)",
                f"{child.code} 未完全位于上级区域 {parent.code} 内（{share:.4g}% 在外）",
            )
        else:
            ctx.add(
                parent.source,
                "geometry",
                f"{child.kind} {child.code} (already in the database) would no longer lie "
                f"within {parent.code} ({share:.4g}% outside)",
                f"库中已有的 {child.code} 将不再位于 {parent.code} 内（{share:.4g}% 在外）",
            )


def _departments(
    ctx: _Ctx, data: RegistryData, current: RegistryData, replace_all: bool
) -> dict[str, DepartmentRow]:
    given = data.departments or []
    _duplicates(ctx, given, R.department_key, "code", "department code", "部门编码")
    for r in given:
        src = r.source
        _code(ctx, src, "code", r.code)
        _text(ctx, src, "name_zh", r.name_zh, 100, required=True)
        _text(ctx, src, "name_en", r.name_en, 100, required=False)
        _one_of(ctx, src, "kind", r.kind, DEPARTMENT_KINDS)
        if len(r.phone) > 32 or not PHONE.fullmatch(r.phone):
            ctx.add(src, "phone", f"{r.phone!r} is not a phone number", f"“{r.phone}”不是电话号码")
    return _merge(current.departments, data.departments, R.department_key, replace_all)


def _people(
    ctx: _Ctx,
    data: RegistryData,
    current: RegistryData,
    replace_all: bool,
    departments: dict[str, DepartmentRow],
) -> dict[str, PersonRow]:
    given = data.people or []
    _duplicates(ctx, given, R.person_key, "code", "person code", "人员编码")
    for r in given:
        src = r.source
        _code(ctx, src, "code", r.code)
        _text(ctx, src, "name", r.name, 64, required=True)
        if r.mobile and not MOBILE.fullmatch(r.mobile):
            ctx.add(
                src,
                "mobile",
                f"{r.mobile!r} is not an 11-digit mainland mobile number (1[3-9] + 9 digits)",
                f"“{r.mobile}”不是 11 位手机号码",
            )
        if r.email and (len(r.email) > 120 or not EMAIL.fullmatch(r.email)):
            ctx.add(
                src, "email", f"{r.email!r} is not an e-mail address", f"“{r.email}”不是电子邮箱"
            )
        _text(ctx, src, "title", r.title, 64, required=False)
        if r.department_code and r.department_code not in departments:
            _missing(ctx, src, "department_code", "department", "部门", r.department_code)
    return _merge(current.people, data.people, R.person_key, replace_all)


def _party_groups(
    ctx: _Ctx,
    data: RegistryData,
    current: RegistryData,
    replace_all: bool,
    areas: dict[str, AreaRow],
    people: dict[str, PersonRow],
) -> dict[int, PartyGroupRow]:
    given = data.party_groups or []
    _duplicates(ctx, given, R.group_key, "number", "party group number", "党小组编号")
    for r in given:
        src = r.source
        if r.number < 1:
            ctx.add(src, "number", "must be 1 or more", "须为正整数")
        _text(ctx, src, "name", r.name, 100, required=True)
        grid = areas.get(r.grid_code)
        if r.grid_code == "":
            ctx.add(src, "grid_code", "required", "必填")
        elif grid is None:
            _missing(ctx, src, "grid_code", "grid", "网格", r.grid_code)
        elif grid.kind != "grid":
            ctx.add(
                src,
                "grid_code",
                f"{r.grid_code} is a {grid.kind}, not a grid",
                f"{r.grid_code} 不是网格",
            )
        if r.leader_code and r.leader_code not in people:
            _missing(ctx, src, "leader_code", "person", "人员", r.leader_code)
    merged = _merge(current.party_groups, data.party_groups, R.group_key, replace_all)
    by_grid: dict[str, list[PartyGroupRow]] = {}
    for g in merged.values():
        by_grid.setdefault(g.grid_code, []).append(g)
    for grid_code, groups in by_grid.items():
        if len(groups) > 1:
            numbers = ", ".join(str(g.number) for g in sorted(groups, key=R.group_key))
            for g in groups:
                if g.source is not None:
                    ctx.add(
                        g.source,
                        "grid_code",
                        f"grid {grid_code} would have several party groups ({numbers})",
                        f"网格 {grid_code} 将有多个党小组（{numbers}）",
                    )
    return merged


def _members(
    ctx: _Ctx,
    data: RegistryData,
    groups: dict[int, PartyGroupRow],
    people: dict[str, PersonRow],
) -> None:
    given = data.members or []
    _duplicates(ctx, given, R.member_key, "person_code", "member", "党小组成员")
    for r in given:
        src = r.source
        if r.group_number not in groups:
            _missing(ctx, src, "group_number", "party group", "党小组", r.group_number)
        if r.person_code == "":
            ctx.add(src, "person_code", "required", "必填")
        elif r.person_code not in people:
            _missing(ctx, src, "person_code", "person", "人员", r.person_code)
        _one_of(ctx, src, "tag", r.tag, MEMBER_TAGS)


def _zone_roles(
    ctx: _Ctx,
    data: RegistryData,
    current: RegistryData,
    replace_all: bool,
    areas: dict[str, AreaRow],
    people: dict[str, PersonRow],
) -> None:
    given = data.zone_roles or []
    _duplicates(ctx, given, R.zone_role_key, "person_code", "zone role", "片区职责")
    for r in given:
        src = r.source
        zone = areas.get(r.zone_code)
        if r.zone_code == "":
            ctx.add(src, "zone_code", "required", "必填")
        elif zone is None:
            _missing(ctx, src, "zone_code", "zone", "片区", r.zone_code)
        elif zone.kind != "zone":
            ctx.add(
                src,
                "zone_code",
                f"{r.zone_code} is a {zone.kind}, not a zone",
                f"{r.zone_code} 不是片区",
            )
        if r.person_code == "":
            ctx.add(src, "person_code", "required", "必填")
        elif r.person_code not in people:
            _missing(ctx, src, "person_code", "person", "人员", r.person_code)
        _one_of(ctx, src, "role", r.role, ZONE_ROLES)
        if r.position < 0:
            ctx.add(src, "position", "must be 0 or more", "须为非负整数")
    merged = _merge(current.zone_roles, data.zone_roles, R.zone_role_key, replace_all)
    # One chain leader per zone: escalation and the service card name exactly one.
    leaders: dict[str, list[ZoneRoleRow]] = {}
    for zr in merged.values():
        if zr.role == "chain_leader":
            leaders.setdefault(zr.zone_code, []).append(zr)
    for zone_code, rows in leaders.items():
        if len(rows) > 1:
            names = ", ".join(sorted(x.person_code for x in rows))
            for zr in rows:
                if zr.source is not None:
                    ctx.add(
                        zr.source,
                        "role",
                        f"zone {zone_code} would have several chain leaders ({names})",
                        f"片区 {zone_code} 将有多名链长（{names}）",
                    )


def valid_category(code: str) -> bool:
    """ "*" or a dotted code under one of the six service categories."""
    if code == "*":
        return True
    return (
        bool(CATEGORY.fullmatch(code))
        and len(code) <= 64
        and (code.split(".")[0] in SERVICE_CATEGORIES)
    )


def _rules(
    ctx: _Ctx,
    data: RegistryData,
    areas: dict[str, AreaRow],
    departments: dict[str, DepartmentRow],
) -> None:
    given = data.rules or []
    _duplicates(ctx, given, R.rule_key, "area_code", "rule for category/area", "职责规则")
    for r in given:
        src = r.source
        if not valid_category(r.category_code):
            ctx.add(
                src,
                "category_code",
                f"unknown category {r.category_code!r}; use * or a code under "
                f"{', '.join(SERVICE_CATEGORIES)}",
                f"未知类别“{r.category_code}”；应为 * 或以下类别及其子类："
                f"{'、'.join(SERVICE_CATEGORIES)}",
            )
        if r.area_code:
            area = areas.get(r.area_code)
            if area is None:
                _missing(ctx, src, "area_code", "area", "区域", r.area_code)
            elif area.kind not in RULE_AREA_KINDS:
                ctx.add(
                    src,
                    "area_code",
                    f"{r.area_code} is the district: leave area_code empty for the whole district",
                    f"{r.area_code} 为全区：全区规则请将 area_code 留空",
                )
        if r.department_code == "":
            ctx.add(src, "department_code", "required", "必填")
        elif r.department_code not in departments:
            _missing(ctx, src, "department_code", "department", "部门", r.department_code)


def validate(
    data: RegistryData, *, current: RegistryData, replace_all: bool
) -> tuple[RegistryData, list[FieldError]]:
    """Check `data` against the registry it will produce. Returns the rows in canonical
    form (geometry normalised) and every problem found."""
    ctx = _Ctx(errors=[])
    areas_norm, areas = _areas(ctx, data, current, replace_all)
    departments = _departments(ctx, data, current, replace_all)
    people = _people(ctx, data, current, replace_all, departments)
    groups = _party_groups(ctx, data, current, replace_all, areas, people)
    _members(ctx, data, groups, people)
    _zone_roles(ctx, data, current, replace_all, areas, people)
    _rules(ctx, data, areas, departments)
    return replace(data, areas=areas_norm), ctx.errors
