"""Registry import/export against a database (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from watergrid.errors import AppError
from watergrid.geo import service as geo_service
from watergrid.org import service as org_service
from watergrid.org.models import Person
from watergrid.registry import rows as R
from watergrid.registry.service import dump, export_dir, import_dir

FEATURES_START = 4  # areas.geojson: "{", "type", "features": [ then one feature per line


def _export(db: Session, path: Path) -> Path:
    export_dir(db, path=path)
    return path


def _same_files(a: Path, b: Path) -> None:
    for name in R.FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def edit_csv(
    path: Path,
    file: str,
    match: Callable[[dict[str, str]], bool],
    change: Callable[[dict[str, str]], dict[str, str] | None],
) -> int:
    """Change (or with None, drop) the first row matching; returns its line number."""
    text = (path / file).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    header = list(rows[0].keys()) if rows else list(R.CSV_COLUMNS[file])
    for i, row in enumerate(rows):
        if match(row):
            new = change(dict(row))
            if new is None:
                del rows[i]
            else:
                rows[i] = new
            break
    else:
        raise AssertionError(f"no row matched in {file}")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    (path / file).write_text(buf.getvalue(), encoding="utf-8")
    return i + 2


def append_csv(path: Path, file: str, values: list[str]) -> int:
    text = (path / file).read_text(encoding="utf-8")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    (path / file).write_text(text + buf.getvalue(), encoding="utf-8")
    return len(text.splitlines()) + 1


def edit_feature(path: Path, code: str, change: Callable[[dict[str, Any]], None]) -> int:
    lines = (path / R.AREAS).read_text(encoding="utf-8").split("\n")
    for i in range(FEATURES_START - 1, len(lines)):
        body = lines[i].rstrip(",")
        if body.startswith("{") and f'"code": "{code}"' in body:
            feature = json.loads(body)
            change(feature)
            lines[i] = json.dumps(feature, ensure_ascii=False) + (
                "," if lines[i].endswith(",") else ""
            )
            (path / R.AREAS).write_text("\n".join(lines), encoding="utf-8")
            return i + 1
    raise AssertionError(f"no feature {code}")


def _state(db: Session) -> tuple[Any, int]:
    return dump(db), geo_service.registry_version(db)


# --------------------------------------------------------------------------- round trip


def test_export_import_export_is_byte_identical(
    reg_db: Session, empty_db: Session, tmp_path: Path
) -> None:
    first = _export(reg_db, tmp_path / "first")
    report = import_dir(empty_db, path=first)
    assert report.files[R.AREAS].created == 51
    assert not any(c.updated or c.unchanged or c.deleted for c in report.files.values())
    empty_db.commit()
    assert dump(empty_db) == dump(reg_db)
    _same_files(first, _export(empty_db, tmp_path / "second"))


def test_reimport_changes_nothing(reg_db: Session, tmp_path: Path) -> None:
    out = _export(reg_db, tmp_path / "x")
    before = _state(reg_db)
    for replace in (False, True):
        report = import_dir(reg_db, path=out, replace=replace)
        assert not report.changed
        assert all(c.created == c.updated == c.deleted == 0 for c in report.files.values())
        assert report.files[R.PEOPLE].unchanged == len(before[0].people)
    assert _state(reg_db) == before


def test_an_edit_is_one_update_and_one_version(reg_db: Session, tmp_path: Path) -> None:
    out = _export(reg_db, tmp_path / "x")
    version = geo_service.registry_version(reg_db)
    edit_csv(
        out, R.PEOPLE, lambda r: r["code"] == "P0001", lambda r: {**r, "mobile": "13912345678"}
    )
    people = len(dump(reg_db).people or [])
    report = import_dir(reg_db, path=out)
    c = report.files[R.PEOPLE]
    assert (c.created, c.updated, c.unchanged, c.deleted) == (0, 1, people - 1, 0)
    assert not any(x.changed for name, x in report.files.items() if name != R.PEOPLE)
    assert geo_service.registry_version(reg_db) == version + 1
    assert org_service.get_person(reg_db, code="P0001").mobile == "13912345678"  # type: ignore[union-attr]


def test_partial_import_touches_only_its_file(reg_db: Session, tmp_path: Path) -> None:
    out = tmp_path / "part"
    out.mkdir()
    (out / R.DEPARTMENTS).write_text(
        "code,name_zh,name_en,kind,phone\nLAB,水质检测中心,Water Quality Lab,team,0755-1234\n",
        encoding="utf-8",
    )
    report = import_dir(reg_db, path=out)
    assert list(report.files) == [R.DEPARTMENTS]
    assert report.files[R.DEPARTMENTS].created == 1
    assert org_service.get_department(reg_db, code="LAB") is not None
    assert org_service.get_department(reg_db, code="DRAINAGE") is not None  # kept


# --------------------------------------------------------------------------- validation

Mutation = Callable[[Path], tuple[str, int, str]]


def _set_props(**props: Any) -> Callable[[dict[str, Any]], None]:
    def change(f: dict[str, Any]) -> None:
        f["properties"].update(props)

    return change


def _set_geometry(geometry: Any) -> Callable[[dict[str, Any]], None]:
    def change(f: dict[str, Any]) -> None:
        f["geometry"] = geometry

    return change


def _shifted(dx: float) -> Callable[[dict[str, Any]], None]:
    def change(f: dict[str, Any]) -> None:
        g = f["geometry"]
        polys = [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
        for poly in polys:
            for ring in poly:
                for p in ring:
                    p[0] += dx

    return change


def _csv(file: str, key: str, value: str, column: str, new: str) -> Mutation:
    def mutate(path: Path) -> tuple[str, int, str]:
        line = edit_csv(path, file, lambda r: r[key] == value, lambda r: {**r, column: new})
        return file, line, column

    return mutate


def _area(code: str, fld: str, change: Callable[[dict[str, Any]], None]) -> Mutation:
    def mutate(path: Path) -> tuple[str, int, str]:
        return R.AREAS, edit_feature(path, code, change), fld

    return mutate


def _duplicate_person(path: Path) -> tuple[str, int, str]:
    line = append_csv(path, R.PEOPLE, ["P0001", "重复", "", "", "", "", "true"])
    return R.PEOPLE, line, "code"


def _missing_column(path: Path) -> tuple[str, int, str]:
    (path / R.RULES).write_text("category_code,department_code\n*,DISPATCH\n", encoding="utf-8")
    return R.RULES, 1, "area_code"


BOW_TIE = {
    "type": "Polygon",
    "coordinates": [
        [[113.9, 22.7], [113.91, 22.71], [113.91, 22.7], [113.9, 22.71], [113.9, 22.7]]
    ],
}

CASES: dict[str, Mutation] = {
    "unknown area kind": _area("W05", "properties.kind", _set_props(kind="village")),
    "dangling parent": _area("W05", "properties.parent_code", _set_props(parent_code="440399")),
    "parent of the wrong kind": _area(
        "W05", "properties.parent_code", _set_props(parent_code="W06")
    ),
    "invalid geometry": _area("W05", "geometry", _set_geometry(BOW_TIE)),
    "non-polygonal geometry": _area(
        "W05", "geometry", _set_geometry({"type": "Point", "coordinates": [113.9, 22.7]})
    ),
    "grid outside its subdistrict": _area("W01", "geometry", _set_props(parent_code="440311006")),
    "grid moved out of its subdistrict": _area("W05", "geometry", _shifted(0.05)),
    "unknown department kind": _csv(R.DEPARTMENTS, "code", "DRAINAGE", "kind", "ministry"),
    "duplicate code": _duplicate_person,
    "bad mobile": _csv(R.PEOPLE, "code", "P0002", "mobile", "12800000002"),
    "short mobile": _csv(R.PEOPLE, "code", "P0002", "mobile", "1380000000"),
    "bad email": _csv(R.PEOPLE, "code", "P0002", "email", "nobody"),
    "dangling department": _csv(R.PEOPLE, "code", "P0002", "department_code", "NOPE"),
    "dangling grid": _csv(R.PARTY_GROUPS, "number", "3", "grid_code", "W99"),
    "group on a zone": _csv(R.PARTY_GROUPS, "number", "3", "grid_code", "Z01"),
    "two groups on a grid": _csv(R.PARTY_GROUPS, "number", "3", "grid_code", "W04"),
    "dangling leader": _csv(R.PARTY_GROUPS, "number", "3", "leader_code", "P9999"),
    "unknown tag": _csv(R.MEMBERS, "group_number", "2", "tag", "volunteer"),
    "dangling group": _csv(R.MEMBERS, "group_number", "2", "group_number", "99"),
    "unknown role": _csv(R.ZONE_ROLES, "zone_code", "Z02", "role", "mayor"),
    "zone role on a grid": _csv(R.ZONE_ROLES, "zone_code", "Z02", "zone_code", "W02"),
    "second chain leader": _csv(R.ZONE_ROLES, "role", "liaison", "role", "chain_leader"),
    "unknown category": _csv(R.RULES, "department_code", "SPONGE", "category_code", "plumbing"),
    "rule on the district code": _csv(R.RULES, "department_code", "SPONGE", "area_code", "440311"),
    "dangling rule department": _csv(R.RULES, "department_code", "SPONGE", "department_code", "X"),
    "missing column": _missing_column,
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_error_names_file_line_and_field_and_changes_nothing(
    reg_db: Session, tmp_path: Path, case: str
) -> None:
    out = _export(reg_db, tmp_path / "x")
    # A valid change in another file must not be applied either.
    edit_csv(out, R.DEPARTMENTS, lambda r: r["code"] == "OFFICE", lambda r: {**r, "phone": "1"})
    file, line, fld = CASES[case](out)
    before = _state(reg_db)
    with pytest.raises(AppError) as exc:
        import_dir(reg_db, path=out)
    assert exc.value.status == 422
    got = [(e.file, e.line, e.field) for e in exc.value.fields]
    assert (file, line, fld) in got, exc.value.fields
    assert all(e.message and e.message_zh for e in exc.value.fields)
    assert _state(reg_db) == before


def test_all_errors_are_reported_at_once(reg_db: Session, tmp_path: Path) -> None:
    out = _export(reg_db, tmp_path / "x")
    expected = {
        m(out)
        for m in (
            CASES["bad mobile"],
            CASES["unknown tag"],
            CASES["invalid geometry"],
            CASES["unknown category"],
        )
    }
    with pytest.raises(AppError) as exc:
        import_dir(reg_db, path=out)
    assert expected <= {(e.file, e.line, e.field) for e in exc.value.fields}


def test_references_may_arrive_in_the_same_import(reg_db: Session, tmp_path: Path) -> None:
    out = _export(reg_db, tmp_path / "x")
    append_csv(out, R.DEPARTMENTS, ["LAB", "水质检测中心", "", "team", ""])
    append_csv(out, R.PEOPLE, ["P9001", "测试", "13800009001", "", "", "LAB", "true"])
    append_csv(out, R.MEMBERS, ["5", "P9001", "professional_team"])
    report = import_dir(reg_db, path=out)
    assert (
        report.files[R.DEPARTMENTS].created,
        report.files[R.PEOPLE].created,
        report.files[R.MEMBERS].created,
    ) == (1, 1, 1)


# --------------------------------------------------------------------------- keep / replace


def test_default_keeps_rows_missing_from_the_files(reg_db: Session, tmp_path: Path) -> None:
    out = _export(reg_db, tmp_path / "x")
    edit_csv(out, R.RULES, lambda r: r["area_code"] == "W01", lambda r: None)
    report = import_dir(reg_db, path=out)
    assert not report.changed
    assert any(r.area_code == "W01" for r in dump(reg_db).rules or [])


def test_replace_deletes_rows_missing_from_the_files(reg_db: Session, tmp_path: Path) -> None:
    out = _export(reg_db, tmp_path / "x")
    edit_csv(out, R.RULES, lambda r: r["area_code"] == "W01", lambda r: None)
    # A community member nobody's account points at: dropping them drops their membership.
    member = next(
        m
        for m in dump(reg_db).members or []
        if m.group_number == 2 and m.tag == "community_party_member"
    )
    edit_csv(out, R.MEMBERS, lambda r: r["person_code"] == member.person_code, lambda r: None)
    edit_csv(out, R.PEOPLE, lambda r: r["code"] == member.person_code, lambda r: None)
    version = geo_service.registry_version(reg_db)
    report = import_dir(reg_db, path=out, replace=True)
    assert report.files[R.RULES].deleted == 1
    assert report.files[R.MEMBERS].deleted == 1
    assert report.files[R.PEOPLE].deleted == 1
    assert geo_service.registry_version(reg_db) == version + 1
    assert org_service.get_person(reg_db, code=member.person_code) is None
    _same_files(out, _export(reg_db, tmp_path / "after"))


def test_replace_refuses_to_delete_what_others_still_use(reg_db: Session, tmp_path: Path) -> None:
    out = _export(reg_db, tmp_path / "x")
    # P0001 (the director) is the demo user "leader"; the account points at the person.
    edit_csv(out, R.ZONE_ROLES, lambda r: r["person_code"] == "P0001", lambda r: None)
    edit_csv(out, R.PEOPLE, lambda r: r["code"] == "P0001", lambda r: None)
    before = _state(reg_db)
    with pytest.raises(AppError) as exc:
        import_dir(reg_db, path=out, replace=True)
    assert [(e.file, e.field) for e in exc.value.fields] == [(R.PEOPLE, "code")]
    assert "P0001" in exc.value.fields[0].message
    reg_db.expire_all()
    assert _state(reg_db) == before


def test_replace_needs_every_file(reg_db: Session, tmp_path: Path) -> None:
    out = _export(reg_db, tmp_path / "x")
    (out / R.RULES).unlink()
    with pytest.raises(AppError) as exc:
        import_dir(reg_db, path=out, replace=True)
    assert [e.file for e in exc.value.fields] == [R.RULES]


def test_party_groups_can_trade_places_along_a_chain(reg_db: Session, tmp_path: Path) -> None:
    """Group 36 moves to W37's grid after group 37 has been removed: the grid must be
    free before the move is written."""
    out = _export(reg_db, tmp_path / "x")
    edit_csv(out, R.MEMBERS, lambda r: r["group_number"] == "37", lambda r: None)
    while True:
        try:
            edit_csv(out, R.MEMBERS, lambda r: r["group_number"] == "37", lambda r: None)
        except AssertionError:
            break
    edit_csv(out, R.PARTY_GROUPS, lambda r: r["number"] == "37", lambda r: None)
    edit_csv(
        out, R.PARTY_GROUPS, lambda r: r["number"] == "36", lambda r: {**r, "grid_code": "W37"}
    )
    report = import_dir(reg_db, path=out, replace=True)
    assert report.files[R.PARTY_GROUPS].deleted == 1
    assert report.files[R.PARTY_GROUPS].updated == 1
    grid = geo_service.get(reg_db, code="W37")
    assert org_service.party_group_for_grid(reg_db, grid_id=grid.id).number == 36  # type: ignore[union-attr]


def test_gcj02_file_lands_in_wgs84(reg_db: Session, empty_db: Session, tmp_path: Path) -> None:
    from watergrid.geo.datum import wgs84_to_gcj02

    out = _export(reg_db, tmp_path / "x")
    text = (out / R.AREAS).read_text(encoding="utf-8")
    doc = json.loads(text)

    def to_gcj(coords: Any) -> Any:
        if isinstance(coords[0], float):
            return list(wgs84_to_gcj02(coords[0], coords[1]))
        return [to_gcj(c) for c in coords]

    for f in doc["features"]:
        f["geometry"]["coordinates"] = to_gcj(f["geometry"]["coordinates"])
    doc["datum"] = "gcj02"
    (out / R.AREAS).write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    import_dir(empty_db, path=out)
    got = {a.code: a for a in dump(empty_db).areas or []}
    for want in dump(reg_db).areas or []:
        a = got[want.code]
        flat_a = json.dumps(a.geometry)
        assert a.geometry["type"] == want.geometry["type"], flat_a
        ring_got = (
            a.geometry["coordinates"][0]
            if a.geometry["type"] == "Polygon"
            else a.geometry["coordinates"][0][0]
        )
        ring_want = (
            want.geometry["coordinates"][0]
            if want.geometry["type"] == "Polygon"
            else want.geometry["coordinates"][0][0]
        )
        assert (
            max(
                abs(p - q)
                for pg, qg in zip(ring_got, ring_want, strict=True)
                for p, q in zip(pg, qg, strict=True)
            )
            < 1e-8
        )


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_db(empty_db: Session) -> Any:
    """Point the process-wide engine (what the CLI uses) at `empty_db`, then back."""
    from watergrid import db as dbmod

    previous = dbmod._configured_url
    dbmod.configure(empty_db.get_bind().url.render_as_string(hide_password=False))
    yield empty_db
    if previous is not None:
        dbmod.configure(previous)


def test_cli_import_export(cli_db: Session, reg_db: Session, tmp_path: Path) -> None:
    from watergrid.cli import app

    src = _export(reg_db, tmp_path / "src")
    runner = CliRunner()
    bad = tmp_path / "bad"
    _export(reg_db, bad)
    CASES["bad mobile"](bad)
    CASES["unknown tag"](bad)

    r = runner.invoke(app, ["registry", "import", str(bad)])
    assert r.exit_code == 2, r.output
    assert "people.csv:" in r.output and "[mobile]" in r.output
    assert "party_group_members.csv:" in r.output and "[tag]" in r.output
    cli_db.expire_all()
    assert cli_db.scalar(select(func.count()).select_from(Person)) == 0

    r = runner.invoke(app, ["registry", "import", str(src), "--dry-run"])
    assert r.exit_code == 0 and "dry run" in r.output, r.output
    cli_db.expire_all()
    assert cli_db.scalar(select(func.count()).select_from(Person)) == 0

    r = runner.invoke(app, ["registry", "import", str(src)])
    assert r.exit_code == 0, r.output
    assert "people.csv: " in r.output and "created" in r.output
    r = runner.invoke(app, ["registry", "import", str(src)])
    assert r.exit_code == 0 and "no changes" in r.output, r.output

    r = runner.invoke(app, ["registry", "export", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    _same_files(src, tmp_path / "out")
