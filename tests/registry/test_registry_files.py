"""Reading and writing the registry files, without a database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shapely.geometry import shape

from watergrid.geo.datum import wgs84_to_gcj02
from watergrid.registry import files
from watergrid.registry.rows import (
    AREAS,
    CSV_COLUMNS,
    DEPARTMENTS,
    MEMBERS,
    PEOPLE,
    AreaRow,
    PersonRow,
    RegistryData,
)
from watergrid.registry.validate import GeometryError, normalize_geometry, valid_category

SQUARE = {
    "type": "Polygon",
    "coordinates": [
        [[113.9, 22.7], [113.91, 22.7], [113.91, 22.71], [113.9, 22.71], [113.9, 22.7]]
    ],
}


def _read(tmp_path: Path, name: str, text: str, **kw: object) -> tuple[RegistryData, list]:
    (tmp_path / name).write_text(text, encoding="utf-8")
    data, errors, found = files.read_dir(tmp_path, **kw)  # type: ignore[arg-type]
    assert found == [name]
    return data, errors


def test_csv_with_bom_crlf_and_blank_lines(tmp_path: Path) -> None:
    text = (
        "\ufeffcode,name,mobile,email,title,department_code,active\r\n"
        "P1, 张三 ,13800000001,,科员,,\r\n\r\n"
        'P2,"李四",,a@b.cn,"科长, 兼",DRAINAGE,FALSE\r\n'
    )
    data, errors = _read(tmp_path, PEOPLE, text)
    assert errors == []
    assert data.people == [
        PersonRow("P1", "张三", "13800000001", "", "科员", "", True),
        PersonRow("P2", "李四", "", "a@b.cn", "科长, 兼", "DRAINAGE", False),
    ]
    assert [p.source.line for p in data.people] == [2, 4]  # type: ignore[union-attr]
    # Sections not given stay None: an import leaves them alone.
    assert data.areas is None and data.departments is None


def test_csv_header_problems_name_the_column(tmp_path: Path) -> None:
    _, errors = _read(tmp_path, DEPARTMENTS, "code,name_zh,kind,phone,fax\nA,甲,section,,\n")
    got = {(e.file, e.line, e.field) for e in errors}
    assert got == {(DEPARTMENTS, 1, "fax"), (DEPARTMENTS, 1, "name_en")}


def test_csv_empty_file_needs_a_header(tmp_path: Path) -> None:
    _, errors = _read(tmp_path, MEMBERS, "")
    assert [(e.file, e.line) for e in errors] == [(MEMBERS, 1)]


def test_csv_values_and_line_numbers_after_a_multiline_field(tmp_path: Path) -> None:
    text = (
        "group_number,person_code,tag\n"
        '1,"P\n1",bureau_cadre\n'  # a quoted field spanning lines 2-3
        "x,P2,bureau_cadre\n"  # line 4: not a number
        "2,P3\n"  # line 5: too few values
    )
    _, errors = _read(tmp_path, MEMBERS, text)
    assert [(e.line, e.field) for e in errors] == [(4, "group_number"), (5, "")]


def test_csv_not_utf8_names_the_line(tmp_path: Path) -> None:
    (tmp_path / PEOPLE).write_bytes(
        b"code,name,mobile,email,title,department_code,active\nP1,"
        + "张三".encode("gbk")
        + b",,,,,\n"
    )
    _, errors, _ = files.read_dir(tmp_path)
    assert [(e.file, e.line) for e in errors] == [(PEOPLE, 2)]


def test_bad_boolean(tmp_path: Path) -> None:
    _, errors = _read(
        tmp_path, PEOPLE, "code,name,mobile,email,title,department_code,active\nP1,甲,,,,,maybe\n"
    )
    assert [(e.line, e.field) for e in errors] == [(2, "active")]


def _collection(features: list[dict], **top: object) -> str:
    return json.dumps({"type": "FeatureCollection", **top, "features": features}, indent=2)


def _feature(code: str, geometry: object = SQUARE, **props: object) -> dict:
    p = {"kind": "grid", "code": code, "name_zh": code, "name_en": "", "parent_code": "S"}
    p.update(props)
    return {"type": "Feature", "properties": p, "geometry": geometry}


def test_geojson_features_carry_their_first_line(tmp_path: Path) -> None:
    text = _collection([_feature("A"), _feature("B", synthetic="yes")])
    data, errors = _read(tmp_path, AREAS, text)
    assert errors == []
    lines = text.splitlines()
    for row in data.areas or []:
        assert lines[row.source.line - 1].strip() == "{"  # type: ignore[union-attr]
        assert f'"code": "{row.code}"' in "\n".join(lines[row.source.line - 1 :][:6])  # type: ignore[union-attr]
    assert [a.synthetic for a in data.areas or []] == [False, True]


def test_geojson_syntax_error_names_its_line(tmp_path: Path) -> None:
    _, errors = _read(tmp_path, AREAS, '{\n"type": "FeatureCollection",\n"features": [\n{,}\n]}')
    assert [(e.file, e.line) for e in errors] == [(AREAS, 4)]


def test_geojson_structure_errors(tmp_path: Path) -> None:
    text = _collection([{"type": "Feature", "properties": {"code": 1.5}, "geometry": None}])
    _, errors = _read(tmp_path, AREAS, text)
    assert {e.field for e in errors} == {"properties.code", "geometry"}
    assert all(e.line == 4 for e in errors)


def test_gcj02_declared_in_file_or_option(tmp_path: Path) -> None:
    lon, lat = wgs84_to_gcj02(
        [113.9, 113.91, 113.91, 113.9, 113.9], [22.7, 22.7, 22.71, 22.71, 22.7]
    )
    gcj = {"type": "Polygon", "coordinates": [[[x, y] for x, y in zip(lon, lat, strict=True)]]}
    for top, opt in (({"datum": "GCJ02"}, None), ({}, "gcj02")):
        data, errors = _read(tmp_path, AREAS, _collection([_feature("A", gcj)], **top), datum=opt)
        assert errors == []
        got = data.areas[0].geometry["coordinates"][0]  # type: ignore[index]
        for (x, y), (ex, ey) in zip(got, SQUARE["coordinates"][0], strict=True):
            assert abs(x - ex) < 1e-8 and abs(y - ey) < 1e-8


def test_datum_conflict_is_an_error(tmp_path: Path) -> None:
    _, errors = _read(tmp_path, AREAS, _collection([_feature("A")], datum="wgs84"), datum="gcj02")
    assert [(e.line, e.field) for e in errors] == [(1, "datum")]


def test_missing_directory_and_no_files(tmp_path: Path) -> None:
    assert files.read_dir(tmp_path / "nope")[1]
    assert files.read_dir(tmp_path)[1]


@pytest.mark.parametrize(
    "geometry",
    [
        {"type": "Point", "coordinates": [113.9, 22.7]},
        {"type": "LineString", "coordinates": [[113.9, 22.7], [114, 22.8]]},
        # A bow tie: the ring crosses itself.
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
        # Not closed.
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [400, 0], [400, 1], [0, 0]]]},
        {"type": "MultiPolygon", "coordinates": []},
        {"type": "Polygon", "coordinates": [[["a", 0], [1, 0], [1, 1], ["a", 0]]]},
        None,
    ],
)
def test_geometry_refused(geometry: object) -> None:
    with pytest.raises(GeometryError) as exc:
        normalize_geometry(geometry)
    assert exc.value.message_zh


def test_geometry_normalised_to_2d_float_lists() -> None:
    g = {
        "type": "Polygon",
        "coordinates": ((((0, 0, 5), (1, 0, 5), (1, 1, 5), (0, 0, 5)),)),
        "bbox": [0, 0, 1, 1],
    }
    norm, geom = normalize_geometry(g)
    assert norm == {
        "type": "Polygon",
        "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]],
    }
    assert all(type(v) is float for ring in norm["coordinates"] for p in ring for v in p)
    assert geom.equals(shape(norm))


def test_categories() -> None:
    assert valid_category("*")
    assert valid_category("drainage")
    assert valid_category("drainage.backflow")
    assert not valid_category("plumbing")
    assert not valid_category("drainage.")
    assert not valid_category("Drainage")


def test_write_is_deterministic_and_reads_back(tmp_path: Path) -> None:
    data = RegistryData(
        areas=[
            AreaRow("grid", "B", "乙", "", "S", True, SQUARE),
            AreaRow("subdistrict", "S", "街道", "Sub", "D", False, SQUARE),
        ],
        people=[
            PersonRow("P2", "乙", "", "", 'say "hi", ok', "", False),
            PersonRow("P1", "甲", "13800000001", "", "", "", True),
        ],
    )
    files.write_dir(data, tmp_path / "a")
    files.write_dir(data, tmp_path / "b", bom=True)
    a_people = (tmp_path / "a" / PEOPLE).read_text(encoding="utf-8")
    assert a_people.splitlines()[0] == ",".join(CSV_COLUMNS[PEOPLE])
    assert a_people.splitlines()[1].startswith("P1,")  # sorted by code
    assert (tmp_path / "b" / PEOPLE).read_bytes().startswith(b"\xef\xbb\xbf")
    back, errors, found = files.read_dir(tmp_path / "b")
    assert errors == [] and sorted(found) == sorted([AREAS, PEOPLE])
    assert back.sorted() == data.sorted()
    files.write_dir(back, tmp_path / "c")
    for name in found:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()
    # Parents first in the GeoJSON, one feature per line after a three-line preamble.
    lines = (tmp_path / "a" / AREAS).read_text(encoding="utf-8").splitlines()
    assert '"code": "S"' in lines[3] and '"code": "B"' in lines[4]
