"""Registry import and export: the whole registry as files keyed by codes.

Import is an upsert by code. It validates everything first against the registry the import
would produce and writes nothing if anything is wrong. By default rows missing from the
files stay; with replace=True every file must be present and the database is made equal to
them (rows missing from the files are deleted). Only a change bumps the registry version."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from watergrid.errors import AppError, FieldError, invalid
from watergrid.geo import service as geo_service
from watergrid.geo.models import Area
from watergrid.org.models import (
    Department,
    PartyGroup,
    PartyGroupMember,
    Person,
    ResponsibilityRule,
    ZoneRole,
)
from watergrid.registry import files
from watergrid.registry import rows as R
from watergrid.registry.rows import (
    AreaRow,
    DepartmentRow,
    MemberRow,
    PartyGroupRow,
    PersonRow,
    RegistryData,
    RuleRow,
    ZoneRoleRow,
)
from watergrid.registry.validate import validate

M = TypeVar("M")


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


@dataclass
class ImportReport:
    replace: bool
    # One entry per file given, in import order.
    files: dict[str, Counts] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(c.changed for c in self.files.values())

    def lines(self) -> list[str]:
        out = []
        for name, c in self.files.items():
            text = f"{name}: {c.created} created, {c.updated} updated, {c.unchanged} unchanged"
            if self.replace:
                text += f", {c.deleted} deleted"
            out.append(text)
        return out


def registry_errors(errors: list[FieldError]) -> AppError:
    err = invalid(errors, message=f"The registry has {len(errors)} error(s); nothing was imported")
    err.message_zh = f"登记数据有 {len(errors)} 处错误，未导入任何内容"
    return err


# --------------------------------------------------------------------------- reading the database


def dump(db: Session) -> RegistryData:
    """The registry held in the database, as rows keyed by codes, in canonical order."""
    areas = list(db.scalars(select(Area)))
    area_code = {a.id: a.code for a in areas}
    depts = list(db.scalars(select(Department)))
    dept_code = {d.id: d.code for d in depts}
    people = list(db.scalars(select(Person)))
    person_code = {p.id: p.code for p in people}
    groups = list(db.scalars(select(PartyGroup)))
    group_number = {g.id: g.number for g in groups}
    return RegistryData(
        areas=[
            AreaRow(
                kind=a.kind,
                code=a.code,
                name_zh=a.name_zh,
                name_en=a.name_en,
                parent_code=area_code[a.parent_id] if a.parent_id is not None else "",
                synthetic=a.synthetic,
                geometry=a.geometry,
            )
            for a in areas
        ],
        departments=[
            DepartmentRow(
                code=d.code, name_zh=d.name_zh, name_en=d.name_en, kind=d.kind, phone=d.phone
            )
            for d in depts
        ],
        people=[
            PersonRow(
                code=p.code,
                name=p.name,
                mobile=p.mobile,
                email=p.email,
                title=p.title,
                department_code=dept_code[p.department_id] if p.department_id is not None else "",
                active=p.active,
            )
            for p in people
        ],
        party_groups=[
            PartyGroupRow(
                number=g.number,
                name=g.name,
                grid_code=area_code[g.grid_id],
                leader_code=person_code[g.leader_id] if g.leader_id is not None else "",
            )
            for g in groups
        ],
        members=[
            MemberRow(
                group_number=group_number[m.group_id],
                person_code=person_code[m.person_id],
                tag=m.tag,
            )
            for m in db.scalars(select(PartyGroupMember))
        ],
        zone_roles=[
            ZoneRoleRow(
                zone_code=area_code[z.zone_id],
                person_code=person_code[z.person_id],
                role=z.role,
                position=z.position,
            )
            for z in db.scalars(select(ZoneRole))
        ],
        rules=[
            RuleRow(
                category_code=r.category_code,
                area_code=area_code[r.area_id] if r.area_id is not None else "",
                department_code=dept_code[r.department_id],
            )
            for r in db.scalars(select(ResponsibilityRule))
        ],
    ).sorted()


# --------------------------------------------------------------------------- writing the database


def _assign(obj: Any, values: dict[str, Any]) -> bool:
    """Set only what differs, so an unchanged row is not even marked dirty."""
    changed = False
    for name, value in values.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed = True
    return changed


def _upsert(
    db: Session,
    counts: Counts,
    existing: dict[Any, M],
    key: Hashable,
    values: dict[str, Any],
    make: Callable[[], M],
) -> M:
    obj = existing.get(key)
    if obj is None:
        obj = make()
        _assign(obj, values)
        db.add(obj)
        existing[key] = obj
        counts.created += 1
    elif _assign(obj, values):
        counts.updated += 1
    else:
        counts.unchanged += 1
    return obj


# The column naming a row that could not be deleted.
_KEY_FIELD: dict[type[Any], str] = {
    Area: "properties.code",
    Department: "code",
    Person: "code",
    PartyGroup: "number",
}


class _Writer:
    def __init__(self, db: Session, data: RegistryData, report: ImportReport) -> None:
        self.db, self.data, self.report = db, data, report
        self.refused: list[FieldError] = []
        self.areas = {a.code: a for a in db.scalars(select(Area))}
        self.depts = {d.code: d for d in db.scalars(select(Department))}
        self.people = {p.code: p for p in db.scalars(select(Person))}
        self.groups = {g.number: g for g in db.scalars(select(PartyGroup))}

    def counts(self, file: str) -> Counts:
        return self.report.files[file]

    # Link rows and party groups first: they hold references that would block deleting
    # the people and areas they point to.
    def delete_links(self) -> None:
        d = self.data
        if d.rules is not None:
            keep = {R.rule_key(r) for r in d.rules}
            area_code = {a.id: a.code for a in self.areas.values()}
            for rule in list(self.db.scalars(select(ResponsibilityRule))):
                k = (rule.category_code, area_code.get(rule.area_id, "") if rule.area_id else "")
                if k not in keep:
                    label = f"{k[0]}/{k[1] or 'district'}"
                    self._delete(R.RULES, ResponsibilityRule, rule.id, label)
        if d.zone_roles is not None:
            keep_zr = {R.zone_role_key(r) for r in d.zone_roles}
            area_code = {a.id: a.code for a in self.areas.values()}
            person_code = {p.id: p.code for p in self.people.values()}
            for zr in list(self.db.scalars(select(ZoneRole))):
                k3 = (area_code[zr.zone_id], person_code[zr.person_id], zr.role)
                if k3 not in keep_zr:
                    self._delete(R.ZONE_ROLES, ZoneRole, zr.id, "/".join(k3))
        if d.members is not None:
            keep_m = {R.member_key(r) for r in d.members}
            number = {g.id: g.number for g in self.groups.values()}
            person_code = {p.id: p.code for p in self.people.values()}
            for m in list(self.db.scalars(select(PartyGroupMember))):
                k2 = (number[m.group_id], person_code[m.person_id])
                if k2 not in keep_m:
                    self._delete(R.MEMBERS, PartyGroupMember, m.id, f"{k2[0]}/{k2[1]}")
        if d.party_groups is not None:
            keep_g = {g.number for g in d.party_groups}
            for n, g in list(self.groups.items()):
                if n not in keep_g and self._delete(R.PARTY_GROUPS, PartyGroup, g.id, str(n)):
                    del self.groups[n]

    def delete_entities(self) -> None:
        d = self.data
        if d.people is not None:
            keep = {p.code for p in d.people}
            for code, p in sorted(self.people.items()):
                if code not in keep:
                    self._delete(R.PEOPLE, Person, p.id, code)
        if d.areas is not None:
            keep = {a.code for a in d.areas}
            # Children before parents.
            doomed = sorted(
                (a for a in self.areas.values() if a.code not in keep),
                key=lambda a: (-R.KIND_ORDER.get(a.kind, 9), a.code),
            )
            for a in doomed:
                self._delete(R.AREAS, Area, a.id, a.code)
        if d.departments is not None:
            keep = {x.code for x in d.departments}
            for code, dept in sorted(self.depts.items()):
                if code not in keep:
                    self._delete(R.DEPARTMENTS, Department, dept.id, code)

    def _delete(self, file: str, model: type[Any], row_id: int, label: str) -> bool:
        # A savepoint per row, so that one refused deletion is reported and the rest go on
        # being checked; the whole import is rolled back afterwards if any was refused.
        try:
            with self.db.begin_nested():
                self.db.execute(delete(model).where(model.id == row_id))
        except IntegrityError:
            self.refused.append(
                FieldError(
                    field=_KEY_FIELD.get(model, ""),
                    message=f"{label} is missing from the file but other records still refer to "
                    "it (user accounts, work orders...); keep it in the file"
                    + (" with active=false" if model is Person else ""),
                    message_zh=f"{label} 不在文件中，但仍被其他记录（用户账号、工单等）引用；"
                    "请在文件中保留" + ("（可设 active=false）" if model is Person else ""),
                    file=file,
                )
            )
            return False
        self.counts(file).deleted += 1
        return True

    def upsert(self) -> None:
        d, db = self.data, self.db
        if d.departments is not None:
            c = self.counts(R.DEPARTMENTS)
            for dept in d.departments:
                _upsert(
                    db,
                    c,
                    self.depts,
                    dept.code,
                    {
                        "code": dept.code,
                        "name_zh": dept.name_zh,
                        "name_en": dept.name_en,
                        "kind": dept.kind,
                        "phone": dept.phone,
                    },
                    Department,
                )
        if d.areas is not None:
            c = self.counts(R.AREAS)
            level = None
            for r in sorted(d.areas, key=lambda a: (R.KIND_ORDER[a.kind], a.code)):
                if level != r.kind:
                    db.flush()  # parents written so far get their ids
                    level = r.kind
                parent = self.areas[r.parent_code] if r.parent_code else None
                _upsert(
                    db,
                    c,
                    self.areas,
                    r.code,
                    {
                        "kind": r.kind,
                        "code": r.code,
                        "name_zh": r.name_zh,
                        "name_en": r.name_en,
                        "parent_id": parent.id if parent else None,
                        "synthetic": r.synthetic,
                        "geometry": r.geometry,
                    },
                    Area,
                )
        db.flush()
        if d.people is not None:
            c = self.counts(R.PEOPLE)
            for p in d.people:
                home = self.depts[p.department_code] if p.department_code else None
                _upsert(
                    db,
                    c,
                    self.people,
                    p.code,
                    {
                        "code": p.code,
                        "name": p.name,
                        "mobile": p.mobile,
                        "email": p.email,
                        "title": p.title,
                        "department_id": home.id if home else None,
                        "active": p.active,
                    },
                    Person,
                )
        db.flush()
        if d.party_groups is not None:
            self._upsert_groups(d.party_groups)
        db.flush()
        if d.members is not None:
            c = self.counts(R.MEMBERS)
            existing_m = {
                (m.group_id, m.person_id): m for m in db.scalars(select(PartyGroupMember))
            }
            for m in d.members:
                gid, pid = self.groups[m.group_number].id, self.people[m.person_code].id
                _upsert(
                    db,
                    c,
                    existing_m,
                    (gid, pid),
                    {
                        "group_id": gid,
                        "person_id": pid,
                        "tag": m.tag,
                    },
                    PartyGroupMember,
                )
        if d.zone_roles is not None:
            c = self.counts(R.ZONE_ROLES)
            existing_zr = {
                (z.zone_id, z.person_id, z.role): z for z in db.scalars(select(ZoneRole))
            }
            for z in d.zone_roles:
                zid, pid = self.areas[z.zone_code].id, self.people[z.person_code].id
                _upsert(
                    db,
                    c,
                    existing_zr,
                    (zid, pid, z.role),
                    {
                        "zone_id": zid,
                        "person_id": pid,
                        "role": z.role,
                        "position": z.position,
                    },
                    ZoneRole,
                )
        if d.rules is not None:
            c = self.counts(R.RULES)
            existing_r = {
                (x.category_code, x.area_id): x for x in db.scalars(select(ResponsibilityRule))
            }
            for x in d.rules:
                aid = self.areas[x.area_code].id if x.area_code else None
                _upsert(
                    db,
                    c,
                    existing_r,
                    (x.category_code, aid),
                    {
                        "category_code": x.category_code,
                        "area_id": aid,
                        "department_id": self.depts[x.department_code].id,
                    },
                    ResponsibilityRule,
                )
        db.flush()

    def _upsert_groups(self, given: list[PartyGroupRow]) -> None:
        """Upsert by number. A grid holds one group, so when groups move between grids
        the moves are ordered so that a grid is vacated before another group takes it."""
        db, c = self.db, self.counts(R.PARTY_GROUPS)
        wanted: dict[int, dict[str, Any]] = {
            g.number: {
                "number": g.number,
                "name": g.name,
                "grid_id": self.areas[g.grid_code].id,
                "leader_id": self.people[g.leader_code].id if g.leader_code else None,
            }
            for g in given
        }
        pending = dict(sorted(wanted.items()))
        while pending:
            held = {g.grid_id: n for n, g in self.groups.items()}
            ready = [n for n, v in pending.items() if held.get(v["grid_id"]) in (None, n)]
            if not ready:
                cycle = ", ".join(str(n) for n in pending)
                raise registry_errors(
                    [
                        FieldError(
                            field="grid_code",
                            message=f"party groups {cycle} exchange grids; do it in two imports",
                            message_zh=f"党小组 {cycle} 互换网格，请分两次导入",
                            file=R.PARTY_GROUPS,
                        )
                    ]
                )
            for n in ready:
                _upsert(db, c, self.groups, n, pending.pop(n), PartyGroup)
            db.flush()


def import_data(db: Session, *, data: RegistryData, replace: bool = False) -> ImportReport:
    """Validate `data` and apply it in the caller's transaction. Raises AppError (422) with
    every problem, each naming file, line and field, having written nothing."""
    given = {name: getattr(data, files.section_name(name)) is not None for name in R.FILES}
    if replace:
        missing = [name for name in R.FILES if not given[name]]
        if missing:
            raise registry_errors(
                [
                    FieldError(
                        field="",
                        message="--replace makes the database equal to the files: "
                        "every file is required",
                        message_zh="--replace 将以文件内容替换数据库：所有文件都必须提供",
                        file=name,
                    )
                    for name in missing
                ]
            )
    current = dump(db)
    data, errors = validate(data, current=current, replace_all=replace)
    if errors:
        raise registry_errors(errors)

    report = ImportReport(replace=replace, files={n: Counts() for n in R.FILES if given[n]})
    # A savepoint, so that a refusal found while writing leaves the caller's transaction
    # exactly as it was, whatever the caller then does with it.
    savepoint = db.begin_nested()
    try:
        writer = _Writer(db, data, report)
        if replace:
            writer.delete_links()
        writer.upsert()
        if replace:
            writer.delete_entities()
        if writer.refused:
            raise registry_errors(writer.refused)
    except BaseException:
        savepoint.rollback()
        raise
    savepoint.commit()
    if report.changed:
        geo_service.bump_version(db)
        db.flush()
    return report


def import_dir(
    db: Session, *, path: Path, replace: bool = False, datum: str | None = None
) -> ImportReport:
    """Import the registry files found in `path` (see docs/registry.md)."""
    data, errors, _found = files.read_dir(path, datum=datum)
    if errors:
        raise registry_errors(errors)
    return import_data(db, data=data, replace=replace)


def export_dir(db: Session, *, path: Path, bom: bool = False) -> list[Path]:
    """Write every registry file to `path`; the output depends only on the registry."""
    return files.write_dir(dump(db), path, bom=bom)
