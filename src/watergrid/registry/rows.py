"""The registry as plain rows keyed by codes: what the import files hold, what the demo
builds and what an export writes. Database ids never appear here, so two databases with
the same registry give equal rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AREAS = "areas.geojson"
DEPARTMENTS = "departments.csv"
PEOPLE = "people.csv"
PARTY_GROUPS = "party_groups.csv"
MEMBERS = "party_group_members.csv"
ZONE_ROLES = "zone_roles.csv"
RULES = "rules.csv"

# Import order: every file refers only to files before it.
FILES = (AREAS, DEPARTMENTS, PEOPLE, PARTY_GROUPS, MEMBERS, ZONE_ROLES, RULES)

CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    DEPARTMENTS: ("code", "name_zh", "name_en", "kind", "phone"),
    PEOPLE: ("code", "name", "mobile", "email", "title", "department_code", "active"),
    PARTY_GROUPS: ("number", "name", "grid_code", "leader_code"),
    MEMBERS: ("group_number", "person_code", "tag"),
    ZONE_ROLES: ("zone_code", "person_code", "role", "position"),
    RULES: ("category_code", "area_code", "department_code"),
}

# Parents before children, so an area's parent exists when the area is written.
KIND_ORDER = {"district": 0, "subdistrict": 1, "grid": 2, "zone": 3}


@dataclass(frozen=True)
class Source:
    """Where a row came from, for error messages. line is None for rows built in code."""

    file: str
    line: int | None = None


@dataclass
class AreaRow:
    kind: str
    code: str
    name_zh: str
    name_en: str
    parent_code: str
    synthetic: bool
    # A GeoJSON geometry object in WGS84.
    geometry: dict[str, Any]
    source: Source | None = field(default=None, compare=False, repr=False)


@dataclass
class DepartmentRow:
    code: str
    name_zh: str
    name_en: str
    kind: str
    phone: str
    source: Source | None = field(default=None, compare=False, repr=False)


@dataclass
class PersonRow:
    code: str
    name: str
    mobile: str
    email: str
    title: str
    department_code: str
    active: bool
    source: Source | None = field(default=None, compare=False, repr=False)


@dataclass
class PartyGroupRow:
    number: int
    name: str
    grid_code: str
    leader_code: str
    source: Source | None = field(default=None, compare=False, repr=False)


@dataclass
class MemberRow:
    group_number: int
    person_code: str
    tag: str
    source: Source | None = field(default=None, compare=False, repr=False)


@dataclass
class ZoneRoleRow:
    zone_code: str
    person_code: str
    role: str
    position: int
    source: Source | None = field(default=None, compare=False, repr=False)


@dataclass
class RuleRow:
    category_code: str
    # "" = the whole district.
    area_code: str
    department_code: str
    source: Source | None = field(default=None, compare=False, repr=False)


@dataclass
class RegistryData:
    """One registry. A None section means "not given": an import leaves that part of the
    database alone; an empty list means "given, and empty"."""

    areas: list[AreaRow] | None = None
    departments: list[DepartmentRow] | None = None
    people: list[PersonRow] | None = None
    party_groups: list[PartyGroupRow] | None = None
    members: list[MemberRow] | None = None
    zone_roles: list[ZoneRoleRow] | None = None
    rules: list[RuleRow] | None = None

    def sorted(self) -> RegistryData:
        """The canonical order used by exports and comparisons."""
        return RegistryData(
            areas=_opt_sorted(self.areas, lambda r: (KIND_ORDER.get(r.kind, 9), r.code)),
            departments=_opt_sorted(self.departments, lambda r: r.code),
            people=_opt_sorted(self.people, lambda r: r.code),
            party_groups=_opt_sorted(self.party_groups, lambda r: r.number),
            members=_opt_sorted(self.members, lambda r: (r.group_number, r.person_code)),
            zone_roles=_opt_sorted(
                self.zone_roles, lambda r: (r.zone_code, r.role, r.position, r.person_code)
            ),
            rules=_opt_sorted(self.rules, lambda r: (r.category_code, r.area_code)),
        )


def _opt_sorted(rows: list[Any] | None, key: Any) -> list[Any] | None:
    return None if rows is None else sorted(rows, key=key)


def area_key(r: AreaRow) -> str:
    return r.code


def department_key(r: DepartmentRow) -> str:
    return r.code


def person_key(r: PersonRow) -> str:
    return r.code


def group_key(r: PartyGroupRow) -> int:
    return r.number


def member_key(r: MemberRow) -> tuple[int, str]:
    return (r.group_number, r.person_code)


def zone_role_key(r: ZoneRoleRow) -> tuple[str, str, str]:
    return (r.zone_code, r.person_code, r.role)


def rule_key(r: RuleRow) -> tuple[str, str]:
    return (r.category_code, r.area_code)
