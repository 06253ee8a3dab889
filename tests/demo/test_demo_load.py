"""The Guangming demo: what it holds, that loading it twice changes nothing, and that its
export imports into an empty database unchanged."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from watergrid.auth import service as auth_service
from watergrid.auth.models import User, UserRole, UserScope
from watergrid.demo.load import DEMO_PASSWORD, DEMO_USERS, load_demo
from watergrid.geo import service as geo_service
from watergrid.org import service as org_service
from watergrid.org.categories import SERVICE_CATEGORIES
from watergrid.registry import rows as R
from watergrid.registry.service import dump, export_dir, import_dir


def _users(db: Session) -> list[tuple[Any, ...]]:
    people = {p.id: p.code for p in org_service.get_people(db)}
    out = []
    for u in db.scalars(select(User).order_by(User.username)):
        roles = sorted(db.scalars(select(UserRole.role).where(UserRole.user_id == u.id)))
        scopes = sorted(
            (k, r or 0)
            for k, r in db.execute(
                select(UserScope.kind, UserScope.ref_id).where(UserScope.user_id == u.id)
            )
        )
        out.append(
            (
                u.username,
                u.display_name,
                people.get(u.person_id or 0),
                u.password_hash,
                roles,
                scopes,
            )
        )
    return out


def test_areas(reg_db: Session) -> None:
    kinds = Counter(a.kind for a in geo_service.get_all(reg_db))
    assert kinds == {"district": 1, "subdistrict": 6, "grid": 37, "zone": 7}
    subs = geo_service.get_all(reg_db, kind="subdistrict")
    assert [s.code for s in subs] == [f"44031100{i}" for i in range(1, 7)]
    assert [g.code for g in geo_service.get_all(reg_db, kind="grid")] == [
        f"W{i:02d}" for i in range(1, 38)
    ]
    assert [z.code for z in geo_service.get_all(reg_db, kind="zone")] == [
        f"Z0{i}" for i in range(1, 8)
    ]
    district = geo_service.get(reg_db, code="440311")
    assert district is not None and not district.synthetic
    assert all(a.synthetic for a in geo_service.get_all(reg_db) if a.kind != "district")


@pytest.mark.parametrize(
    ("grid", "number", "community", "subdistrict"),
    [("W01", 1, "楼村社区", "新湖街道"), ("W13", 13, "薯田埔社区", "马田街道")],
)
def test_the_seed_groups(
    reg_db: Session, grid: str, number: int, community: str, subdistrict: str
) -> None:
    area = geo_service.get(reg_db, code=grid)
    assert area is not None and area.name_zh == community
    parent = reg_db.get(type(area), area.parent_id)
    assert parent is not None and parent.name_zh == subdistrict
    group = org_service.party_group_for_grid(reg_db, grid_id=area.id)
    assert group is not None
    assert (group.number, group.name) == (number, f"红色链长第{number}联合党小组")


def test_37_party_groups_one_per_grid_with_three_level_linkage(reg_db: Session) -> None:
    for grid in geo_service.get_all(reg_db, kind="grid"):
        group = org_service.party_group_for_grid(reg_db, grid_id=grid.id)
        assert group is not None, grid.code
        assert group.number == int(grid.code[1:])
        assert group.leader_id is not None
        members = org_service.party_group_members(reg_db, group_id=group.id)
        assert 5 <= len(members) <= 8, grid.code
        assert {m.tag for m, _ in members} == {
            "bureau_cadre",
            "professional_team",
            "community_party_member",
        }
        assert group.leader_id in {p.id for _, p in members}
    assert len(dump(reg_db).party_groups or []) == 37


def test_zone_leadership(reg_db: Session) -> None:
    bureau = org_service.get_department(reg_db, code="BUREAU")
    assert bureau is not None
    leaders = set()
    for zone in geo_service.get_all(reg_db, kind="zone"):
        chain = org_service.zone_people(reg_db, zone_id=zone.id, role="chain_leader")
        liaisons = org_service.zone_people(reg_db, zone_id=zone.id, role="liaison")
        assert len(chain) == 1 and chain[0].department_id == bureau.id
        assert 1 <= len(liaisons) <= 2
        assert all(p.title.endswith(("科长", "主任")) for p in liaisons)
        leaders.add(chain[0].code)
    assert len(leaders) == 7


def test_departments_and_people(reg_db: Session) -> None:
    codes = {d.code: d for d in org_service.get_departments(reg_db)}
    assert org_service.DISPATCH_DESK_CODE in codes
    names = {d.name_zh for d in codes.values()}
    for name in (
        "局办公室",
        "排水管理科",
        "供水管理科",
        "水土保持科",
        "海绵城市建设办公室",
        "防汛办（三防办）",
        "管网管理科",
        "光明区环境水务公司",
        "水务执法队",
    ):
        assert name in names
    offices = [d for d in codes.values() if d.kind == "subdistrict_office"]
    assert len(offices) == 6 and all(d.name_zh.endswith("街道城建办") for d in offices)
    people = org_service.get_people(reg_db)
    mobiles = [p.mobile for p in people]
    assert all(re.fullmatch(r"1380000\d{4}", m) for m in mobiles)
    assert len(set(mobiles)) == len(mobiles)
    assert len({p.name for p in people}) == len(people)


def test_most_specific_rule_wins(reg_db: Session) -> None:
    book = org_service.rule_book(reg_db)
    dept = {d.id: d.code for d in org_service.get_departments(reg_db)}
    area = {a.code: a.id for a in geo_service.get_all(reg_db)}

    def who(category: str, grid: str, subdistrict: str, zones: tuple[str, ...] = ()) -> str:
        found = org_service.responsible_department(
            book,
            category_code=category,
            grid_id=area[grid],
            zone_ids=[area[z] for z in zones],
            subdistrict_id=area[subdistrict],
        )
        assert found is not None
        return dept[found]

    district_wide = {
        r.category_code: r.department_code for r in dump(reg_db).rules or [] if r.area_code == ""
    }
    assert set(SERVICE_CATEGORIES) <= set(district_wide)
    assert who("drainage.blockage", "W17", "440311001") == "DRAINAGE"
    assert who("drainage.backflow", "W01", "440311003") == "WATERCO"
    assert who("drainage", "W01", "440311003") == "CJB003"
    assert who("water_supply", "W17", "440311001") == "SUPPLY"
    assert who("water_supply", "W25", "440311002") == "WATERCO"
    assert who("pipe_network", "W17", "440311001", ("Z03",)) == "WATERCO"
    assert who("pipe_network", "W17", "440311001") == "PIPENET"


def test_demo_users(reg_db: Session) -> None:
    users = {u[0]: u for u in _users(reg_db)}
    assert set(users) == {u.username for u in DEMO_USERS}
    dump_ = dump(reg_db)
    chain = {(z.zone_code, z.role, z.position): z.person_code for z in dump_.zone_roles or []}
    groups = {g.grid_code: g.number for g in dump_.party_groups or []}
    members = {(m.group_number, m.person_code) for m in dump_.members or []}
    assert users["chain1"][2] == chain[("Z01", "chain_leader", 0)]
    assert users["liaison1"][2] == chain[("Z01", "liaison", 0)]
    assert (groups["W01"], users["grid01"][2]) in members
    assert (groups["W13"], users["grid13"][2]) in members
    assert users["admin"][2] is None
    for u in DEMO_USERS:
        _, _, person, _, roles, scopes = users[u.username]
        assert roles == [u.role]
        assert len(scopes) == 1 and scopes[0][0] == u.scope_kind
        if u.username != "admin":
            assert person is not None
    for name in ("admin", "grid01"):
        assert auth_service.authenticate(reg_db, username=name, password=DEMO_PASSWORD)


def test_loading_twice_changes_nothing(reg_db: Session) -> None:
    before = (dump(reg_db), _users(reg_db), geo_service.registry_version(reg_db))
    load_demo(reg_db)
    reg_db.flush()
    reg_db.expire_all()
    after = (dump(reg_db), _users(reg_db), geo_service.registry_version(reg_db))
    assert after == before


def test_demo_export_imports_into_an_empty_database(
    reg_db: Session, empty_db: Session, tmp_path: Path
) -> None:
    export_dir(reg_db, path=tmp_path / "a")
    import_dir(empty_db, path=tmp_path / "a")
    empty_db.commit()
    assert dump(empty_db) == dump(reg_db)
    export_dir(empty_db, path=tmp_path / "b")
    for name in R.FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_demo_command(empty_db: Session) -> None:
    from watergrid import db as dbmod
    from watergrid.cli import app
    from watergrid.migrate import MIGRATIONS

    url = empty_db.get_bind().url.render_as_string(hide_password=False)
    previous = dbmod._configured_url
    args = ["demo", "--database-url", url]
    if not any((MIGRATIONS / "versions").glob("*.py")):
        args.append("--no-migrate")  # the schema is already there (create_all)
    try:
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        assert "areas.geojson: 51 created" in r.output
        empty_db.expire_all()
        users_after_first = len(_users(empty_db))
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        assert "areas.geojson: 0 created, 0 updated, 51 unchanged" in r.output
        assert "none (already there)" in r.output
    finally:
        if previous is not None:
            dbmod.configure(previous)
    empty_db.expire_all()
    users = _users(empty_db)
    # The domain demos may add accounts of their own (e.g. the soil-and-water reviewer);
    # a second run adds none.
    assert len(users) == users_after_first >= len(DEMO_USERS)
