"""Reading and writing the registry files: one GeoJSON file for the areas and one CSV per
table. Reading only checks form (encoding, header, column count, numbers, booleans,
JSON structure); what the values mean is checked in validate.py, for files and demo alike.

Writing is deterministic (fixed row order, fixed key order, "\\n" line ends, floats as
Python's shortest round-trip repr) so that export -> import -> export is byte-identical."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from shapely.geometry import mapping, shape

from watergrid.errors import FieldError
from watergrid.geo.datum import gcj02_to_wgs84, transform_geometry
from watergrid.registry.rows import (
    AREAS,
    CSV_COLUMNS,
    DEPARTMENTS,
    FILES,
    MEMBERS,
    PARTY_GROUPS,
    PEOPLE,
    RULES,
    ZONE_ROLES,
    AreaRow,
    DepartmentRow,
    MemberRow,
    PartyGroupRow,
    PersonRow,
    RegistryData,
    RuleRow,
    Source,
    ZoneRoleRow,
)

DATUMS = ("wgs84", "gcj02")
AREA_PROPERTIES = ("kind", "code", "name_zh", "name_en", "parent_code", "synthetic")

_TRUE = {"true", "1", "yes", "y", "t", "是"}
_FALSE = {"false", "0", "no", "n", "f", "否"}
# ASCII digits only: int() would also take "１" (full-width) or "1_000".
_INT = re.compile(r"[+-]?[0-9]+")


def err(file: str, line: int | None, fld: str, message: str, message_zh: str) -> FieldError:
    return FieldError(field=fld, message=message, message_zh=message_zh, line=line, file=file)


class _Errors(list[FieldError]):
    def add(self, file: str, line: int | None, fld: str, message: str, message_zh: str) -> None:
        self.append(err(file, line, fld, message, message_zh))


def parse_bool(value: str) -> bool | None:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


# --------------------------------------------------------------------------- reading


def _decode(raw: bytes, file: str, errors: _Errors) -> str | None:
    try:
        # utf-8-sig drops the BOM that Excel and WPS put in front of "UTF-8 CSV".
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        errors.add(
            file,
            line,
            "",
            "not UTF-8 text (save the file as UTF-8)",
            "文件不是 UTF-8 编码（请另存为 UTF-8）",
        )
        return None


def _csv_records(text: str, file: str, errors: _Errors) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line of the record, {column: stripped value}) for each non-blank record."""
    expected = CSV_COLUMNS[file]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    last_line = 0
    try:
        for record in reader:
            start = last_line + 1
            last_line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = [h.strip() for h in record]
                if not _header_ok(header, expected, file, start, errors):
                    return
                continue
            if len(record) != len(header):
                errors.add(
                    file,
                    start,
                    "",
                    f"expected {len(header)} values, found {len(record)}",
                    f"应有 {len(header)} 列，实有 {len(record)} 列",
                )
                continue
            yield start, {h: v.strip() for h, v in zip(header, record, strict=True)}
    except csv.Error as exc:
        errors.add(file, reader.line_num, "", f"malformed CSV: {exc}", f"CSV 格式错误：{exc}")
        return
    if header is None:
        errors.add(
            file,
            1,
            "",
            "empty file: the header line is required",
            "文件为空：须有表头行",
        )


def _header_ok(
    header: list[str], expected: tuple[str, ...], file: str, line: int, errors: _Errors
) -> bool:
    ok = True
    seen: set[str] = set()
    for h in header:
        if h in seen:
            errors.add(file, line, h, f"column {h!r} appears twice", f"列 {h} 重复")
            ok = False
        seen.add(h)
        if h not in expected:
            errors.add(
                file,
                line,
                h,
                f"unknown column {h!r}; expected {', '.join(expected)}",
                f"未知列 {h}；应为：{', '.join(expected)}",
            )
            ok = False
    for h in expected:
        if h not in seen:
            errors.add(file, line, h, f"missing column {h!r}", f"缺少列 {h}")
            ok = False
    return ok


class _Cells:
    """Typed access to one CSV record, collecting conversion errors."""

    def __init__(self, file: str, line: int, cells: dict[str, str], errors: _Errors) -> None:
        self.file, self.line, self.cells, self.errors = file, line, cells, errors
        self.ok = True

    def text(self, name: str) -> str:
        return self.cells[name]

    def integer(self, name: str) -> int:
        value = self.cells[name]
        if _INT.fullmatch(value):
            return int(value)
        self.ok = False
        self.errors.add(
            self.file,
            self.line,
            name,
            f"{value!r} is not a whole number",
            f"“{value}”不是整数",
        )
        return 0

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self.cells[name]
        if value == "":
            return default
        parsed = parse_bool(value)
        if parsed is None:
            self.ok = False
            self.errors.add(
                self.file,
                self.line,
                name,
                f"{value!r} is not true or false",
                f"“{value}”不是 true/false",
            )
            return default
        return parsed


def _department(c: _Cells) -> DepartmentRow:
    return DepartmentRow(
        code=c.text("code"),
        name_zh=c.text("name_zh"),
        name_en=c.text("name_en"),
        kind=c.text("kind"),
        phone=c.text("phone"),
    )


def _person(c: _Cells) -> PersonRow:
    return PersonRow(
        code=c.text("code"),
        name=c.text("name"),
        mobile=c.text("mobile"),
        email=c.text("email"),
        title=c.text("title"),
        department_code=c.text("department_code"),
        active=c.boolean("active", default=True),
    )


def _party_group(c: _Cells) -> PartyGroupRow:
    return PartyGroupRow(
        number=c.integer("number"),
        name=c.text("name"),
        grid_code=c.text("grid_code"),
        leader_code=c.text("leader_code"),
    )


def _member(c: _Cells) -> MemberRow:
    return MemberRow(
        group_number=c.integer("group_number"),
        person_code=c.text("person_code"),
        tag=c.text("tag"),
    )


def _zone_role(c: _Cells) -> ZoneRoleRow:
    return ZoneRoleRow(
        zone_code=c.text("zone_code"),
        person_code=c.text("person_code"),
        role=c.text("role"),
        position=c.integer("position") if c.text("position") else 0,
    )


def _rule(c: _Cells) -> RuleRow:
    return RuleRow(
        category_code=c.text("category_code"),
        area_code=c.text("area_code"),
        department_code=c.text("department_code"),
    )


_CSV_READERS: dict[str, Callable[[_Cells], Any]] = {
    DEPARTMENTS: _department,
    PEOPLE: _person,
    PARTY_GROUPS: _party_group,
    MEMBERS: _member,
    ZONE_ROLES: _zone_role,
    RULES: _rule,
}


def read_csv(text: str, file: str, errors: _Errors) -> list[Any]:
    rows = []
    for line, cells in _csv_records(text, file, errors):
        c = _Cells(file, line, cells, errors)
        row = _CSV_READERS[file](c)
        if c.ok:
            row.source = Source(file, line)
            rows.append(row)
    return rows


def _feature_lines(text: str) -> list[int]:
    """The line on which each element of the top-level "features" array starts.

    json.loads keeps no positions, so walk the top-level object with raw_decode; called
    only after json.loads has accepted the text, so the walk cannot meet bad syntax."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")

    def skip(i: int) -> int:
        m = ws.match(text, i)
        return m.end() if m else i

    i = skip(0)
    if text[i : i + 1] != "{":
        return []
    i = skip(i + 1)
    while i < len(text) and text[i] != "}":
        key, i = decoder.raw_decode(text, i)
        i = skip(skip(i) + 1)  # the colon
        if key == "features" and text[i : i + 1] == "[":
            lines: list[int] = []
            i = skip(i + 1)
            while text[i] != "]":
                lines.append(text.count("\n", 0, i) + 1)
                _, i = decoder.raw_decode(text, i)
                i = skip(i)
                if text[i] == ",":
                    i = skip(i + 1)
            return lines
        _, i = decoder.raw_decode(text, i)
        i = skip(i)
        if text[i : i + 1] == ",":
            i = skip(i + 1)
    return []


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _prop_text(props: dict[str, Any], name: str) -> str | None:
    value = props.get(name)
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    # GIS tools sometimes turn numeric codes into numbers; a whole number is unambiguous.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def read_areas(text: str, errors: _Errors, *, datum: str | None = None) -> list[AreaRow]:
    f = AREAS
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        errors.add(f, exc.lineno, "", f"invalid JSON: {exc.msg}", f"JSON 格式错误：{exc.msg}")
        return []
    except ValueError as exc:
        errors.add(f, None, "", f"invalid JSON: {exc}", f"JSON 格式错误：{exc}")
        return []
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        errors.add(
            f, 1, "type", "must be a GeoJSON FeatureCollection", "须为 GeoJSON FeatureCollection"
        )
        return []
    features = doc.get("features")
    if not isinstance(features, list):
        errors.add(f, 1, "features", "the features array is missing", "缺少 features 数组")
        return []

    declared = doc.get("datum")
    if declared is not None:
        if not isinstance(declared, str) or declared.lower() not in DATUMS:
            errors.add(
                f,
                1,
                "datum",
                f"datum must be one of {', '.join(DATUMS)}",
                f"datum 须为 {'、'.join(DATUMS)} 之一",
            )
            return []
        declared = declared.lower()
        if datum is not None and datum != declared:
            errors.add(
                f,
                1,
                "datum",
                f"the file says {declared} but --datum says {datum}",
                f"文件声明坐标系为 {declared}，与 --datum {datum} 不一致",
            )
            return []
    effective = declared or datum or "wgs84"

    lines = _feature_lines(text)
    rows: list[AreaRow] = []
    for index, feature in enumerate(features):
        line = lines[index] if index < len(lines) else None
        row = _area(feature, index, line, errors, convert=effective == "gcj02")
        if row is not None:
            rows.append(row)
    return rows


def _area(
    feature: Any, index: int, line: int | None, errors: _Errors, *, convert: bool
) -> AreaRow | None:
    f = AREAS
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        errors.add(
            f,
            line,
            "type",
            f"feature {index + 1} is not a GeoJSON Feature",
            f"第 {index + 1} 个要素不是 GeoJSON Feature",
        )
        return None
    props = feature.get("properties")
    if not isinstance(props, dict):
        errors.add(f, line, "properties", "properties must be an object", "properties 须为对象")
        return None
    values: dict[str, str] = {}
    ok = True
    for name in ("kind", "code", "name_zh", "name_en", "parent_code"):
        value = _prop_text(props, name)
        if value is None:
            errors.add(f, line, f"properties.{name}", "must be text", "须为文本")
            ok = False
        else:
            values[name] = value
    raw_synthetic = props.get("synthetic")
    synthetic: bool | None
    if raw_synthetic is None:
        synthetic = False
    elif isinstance(raw_synthetic, bool):
        synthetic = raw_synthetic
    elif isinstance(raw_synthetic, str):
        synthetic = parse_bool(raw_synthetic)
    else:
        synthetic = None
    if synthetic is None:
        errors.add(f, line, "properties.synthetic", "must be true or false", "须为 true 或 false")
        ok = False
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict):
        errors.add(f, line, "geometry", "a geometry object is required", "缺少几何对象")
        ok = False
    if not ok:
        return None
    assert isinstance(geometry, dict) and synthetic is not None
    if convert:
        geometry = _gcj02_to_wgs84(geometry)
    return AreaRow(
        kind=values["kind"],
        code=values["code"],
        name_zh=values["name_zh"],
        name_en=values["name_en"],
        parent_code=values["parent_code"],
        synthetic=synthetic,
        geometry=geometry,
        source=Source(f, line),
    )


def _gcj02_to_wgs84(geometry: dict[str, Any]) -> dict[str, Any]:
    try:
        geom = shape(geometry)
    except Exception:  # malformed: left as is for validate.py to report in its words
        return geometry
    return dict(mapping(transform_geometry(geom, gcj02_to_wgs84)))


def read_dir(
    path: Path, *, datum: str | None = None
) -> tuple[RegistryData, list[FieldError], list[str]]:
    """The files found in `path` (a missing file leaves its section None), the form errors,
    and the names of the files found."""
    errors = _Errors()
    data = RegistryData()
    found: list[str] = []
    if datum is not None and datum not in DATUMS:
        errors.add(
            "",
            None,
            "datum",
            f"--datum must be one of {', '.join(DATUMS)}",
            f"--datum 须为 {'、'.join(DATUMS)} 之一",
        )
        return data, errors, found
    if not path.is_dir():
        errors.add(str(path), None, "", "not a directory", "不是目录")
        return data, errors, found
    for name in FILES:
        file = path / name
        if not file.is_file():
            continue
        found.append(name)
        text = _decode(file.read_bytes(), name, errors)
        if text is None:
            continue
        if name == AREAS:
            data.areas = read_areas(text, errors, datum=datum)
        else:
            setattr(data, _SECTION[name], read_csv(text, name, errors))
    if not found:
        errors.add(
            str(path),
            None,
            "",
            f"none of the registry files found ({', '.join(FILES)})",
            f"目录中没有任何登记文件（{'、'.join(FILES)}）",
        )
    return data, errors, found


_SECTION = {
    AREAS: "areas",
    DEPARTMENTS: "departments",
    PEOPLE: "people",
    PARTY_GROUPS: "party_groups",
    MEMBERS: "members",
    ZONE_ROLES: "zone_roles",
    RULES: "rules",
}


def section_name(file: str) -> str:
    return _SECTION[file]


# --------------------------------------------------------------------------- writing


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _csv_text(file: str, rows: list[list[str]], *, bom: bool) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS[file])
    writer.writerows(rows)
    return ("\ufeff" if bom else "") + buf.getvalue()


def areas_text(rows: list[AreaRow]) -> str:
    # One feature per line: diffs stay readable and import errors can name a line.
    lines = []
    for r in rows:
        feature = {
            "type": "Feature",
            "properties": {
                "kind": r.kind,
                "code": r.code,
                "name_zh": r.name_zh,
                "name_en": r.name_en,
                "parent_code": r.parent_code or None,
                "synthetic": r.synthetic,
            },
            "geometry": r.geometry,
        }
        lines.append(json.dumps(feature, ensure_ascii=False, allow_nan=False))
    body = ",\n".join(lines)
    return (
        '{\n"type": "FeatureCollection",\n"features": [\n'
        + body
        + ("\n" if lines else "")
        + "]\n}\n"
    )


def write_dir(data: RegistryData, path: Path, *, bom: bool = False) -> list[Path]:
    """Write every section that is not None; returns the files written."""
    data = data.sorted()
    path.mkdir(parents=True, exist_ok=True)
    texts: dict[str, str] = {}
    if data.areas is not None:
        texts[AREAS] = areas_text(data.areas)
    if data.departments is not None:
        texts[DEPARTMENTS] = _csv_text(
            DEPARTMENTS,
            [[r.code, r.name_zh, r.name_en, r.kind, r.phone] for r in data.departments],
            bom=bom,
        )
    if data.people is not None:
        texts[PEOPLE] = _csv_text(
            PEOPLE,
            [
                [r.code, r.name, r.mobile, r.email, r.title, r.department_code, _bool(r.active)]
                for r in data.people
            ],
            bom=bom,
        )
    if data.party_groups is not None:
        texts[PARTY_GROUPS] = _csv_text(
            PARTY_GROUPS,
            [[str(r.number), r.name, r.grid_code, r.leader_code] for r in data.party_groups],
            bom=bom,
        )
    if data.members is not None:
        texts[MEMBERS] = _csv_text(
            MEMBERS, [[str(r.group_number), r.person_code, r.tag] for r in data.members], bom=bom
        )
    if data.zone_roles is not None:
        texts[ZONE_ROLES] = _csv_text(
            ZONE_ROLES,
            [[r.zone_code, r.person_code, r.role, str(r.position)] for r in data.zone_roles],
            bom=bom,
        )
    if data.rules is not None:
        texts[RULES] = _csv_text(
            RULES, [[r.category_code, r.area_code, r.department_code] for r in data.rules], bom=bom
        )
    written = []
    for name, text in texts.items():
        target = path / name
        # Write beside the target, then rename: a reader never sees half a file.
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        tmp.replace(target)
        written.append(target)
    return written
