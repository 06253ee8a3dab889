"""The demo bureau: departments, people, zone leadership, party groups and responsibility
rules, built as registry rows so that they go through the same checks as an import.

What is real: the district, its six subdistricts (names and official codes), the community
names where known, the seven key zones' names, the kinds of unit taking part (bureau
sections, the district water company, subdistrict urban-construction offices, community
party members) and the numbering of the 37 party groups after their grids (the seed names
group 1 at 楼村社区 and group 13 at 薯田埔社区). What is made up: every person, name, mobile
number, phone number, e-mail and group membership, and the department codes."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from shapely.geometry import mapping

from watergrid.geo.demo_geometry import DemoAreas, build_demo_areas
from watergrid.org.service import DISPATCH_DESK_CODE
from watergrid.registry import rows as R
from watergrid.registry.rows import (
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

SEED = 2024

# Common surnames and given-name characters; combinations are drawn by a seeded generator,
# so every demo person is fictitious and the same on every run.
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾田董潘袁蔡蒋余叶杜"
_GIVEN = "伟芳敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚华建国文辉玲斌宇浩凯鹏俊婷晨欣琳海波红志鑫嘉慧"

BUREAU = "BUREAU"
WATER_COMPANY = "WATERCO"
ENFORCEMENT = "ENFORCE"

# (code, name_zh, name_en, kind)
_DEPARTMENTS: tuple[tuple[str, str, str, str], ...] = (
    (BUREAU, "光明区水务局", "Guangming District Water Affairs Bureau", "bureau"),
    ("OFFICE", "局办公室", "Bureau Office", "section"),
    ("DRAINAGE", "排水管理科", "Drainage Management Section", "section"),
    ("SUPPLY", "供水管理科", "Water Supply Management Section", "section"),
    ("SOILWATER", "水土保持科", "Soil and Water Conservation Section", "section"),
    ("SPONGE", "海绵城市建设办公室", "Sponge City Construction Office", "section"),
    ("FLOOD", "防汛办（三防办）", "Flood Control Office", "section"),
    ("PIPENET", "管网管理科", "Pipe Network Management Section", "section"),
    (WATER_COMPANY, "光明区环境水务公司", "Guangming Environment and Water Company", "company"),
    (ENFORCEMENT, "水务执法队", "Water Affairs Enforcement Team", "team"),
    (DISPATCH_DESK_CODE, "局总值班室（派单台）", "Bureau Duty and Dispatch Desk", "dispatch"),
)
# The sections in the order they serve as zone liaisons (section k -> zone Zk).
_SECTIONS = ("OFFICE", "DRAINAGE", "SUPPLY", "SOILWATER", "SPONGE", "FLOOD", "PIPENET")
_SECTION_TITLES = {
    "OFFICE": ("主任", "副主任", "科员"),
    "DRAINAGE": ("科长", "副科长", "科员"),
    "SUPPLY": ("科长", "副科长", "科员"),
    "SOILWATER": ("科长", "副科长", "科员"),
    "SPONGE": ("主任", "副主任", "科员"),
    "FLOOD": ("主任", "副主任", "防汛值班员"),
    "PIPENET": ("科长", "副科长", "科员"),
}
_LEADER_TITLES = (
    "党组书记、局长",
    "党组成员、副局长",
    "党组成员、副局长",
    "党组成员、副局长",
    "副局长",
    "总工程师",
    "二级调研员",
)
# The director leads 明湖智谷 (Z03), the first pilot zone the seed names; the others
# follow in zone order.
_CHAIN_ORDER = ("Z03", "Z01", "Z02", "Z04", "Z05", "Z06", "Z07")
# Zones with a second liaison (the deputy of the next section).
_SECOND_LIAISON = ("Z01", "Z03", "Z05")
_COMPANY_TITLES = (
    "排水运营部经理",
    "供水运营部经理",
    "管网维护班班长",
    "管网维护班班长",
    "排水巡查员",
    "排水巡查员",
    "供水抢修员",
    "供水抢修员",
    "管网技术员",
    "管网技术员",
    "泵站运维员",
    "水质检测员",
)
_COMMUNITY_TITLES = ("社区水务网格员", "社区党委委员", "党员志愿者", "楼栋长（党员）")

# (category, area code or "" for the district, department): one section per category for
# the whole district, and narrower rules that win where they apply.
_RULES: tuple[tuple[str, str, str], ...] = (
    ("drainage", "", "DRAINAGE"),
    ("water_supply", "", "SUPPLY"),
    ("soil_water", "", "SOILWATER"),
    ("sponge_city", "", "SPONGE"),
    ("disaster", "", "FLOOD"),
    ("pipe_network", "", "PIPENET"),
    # Backflow into homes is fixed on the network, by the water company's crews.
    ("drainage.backflow", "", WATER_COMPANY),
    # Where the company runs supply directly, its customer service answers.
    ("water_supply", "440311002", WATER_COMPANY),
    ("water_supply", "440311006", WATER_COMPANY),
    # Pipe queries in the pilot zone go to the company holding the as-built records.
    ("pipe_network", "Z03", WATER_COMPANY),
    # 楼村 old-village rain/sewage separation is run by 新湖街道城建办 (see the seed).
    ("drainage", "W01", "CJB003"),
)


def subdistrict_office_code(subdistrict_code: str) -> str:
    return "CJB" + subdistrict_code[-3:]


def party_group_name(number: int) -> str:
    return f"红色链长第{number}联合党小组"


def grid_number(grid_code: str) -> int:
    """W01 -> 1: a grid's party group carries the grid's number."""
    return int(grid_code.lstrip("W"))


@dataclass
class DemoPeople:
    """Whom the demo users are linked to."""

    director: str = ""
    duty_officer: str = ""
    chain_leaders: dict[str, str] = field(default_factory=dict)  # zone -> person
    liaisons: dict[str, list[str]] = field(default_factory=dict)  # zone -> people
    grid_members: dict[str, str] = field(default_factory=dict)  # grid -> person
    drainage_handler: str = ""
    company_handler: str = ""


@dataclass
class DemoRegistry:
    data: RegistryData
    people: DemoPeople


class _Names:
    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, set[str]()

    def draw(self) -> str:
        while True:
            given = "".join(self.rng.choice(_GIVEN) for _ in range(self.rng.choice((1, 2, 2))))
            name = self.rng.choice(_SURNAMES) + given
            if name not in self.used:
                self.used.add(name)
                return name


def _src(file: str) -> Source:
    return Source(file)


def _area_rows(areas: DemoAreas) -> list[AreaRow]:
    district = areas.district.code
    out = [
        AreaRow(
            "district",
            district,
            areas.district.name_zh,
            areas.district.name_en,
            "",
            areas.district.synthetic,
            dict(mapping(areas.district.geometry)),
            _src(R.AREAS),
        )
    ]
    out += [
        AreaRow(
            "subdistrict",
            s.code,
            s.name_zh,
            s.name_en,
            district,
            s.synthetic,
            dict(mapping(s.geometry)),
            _src(R.AREAS),
        )
        for s in areas.subdistricts
    ]
    out += [
        AreaRow(
            "grid",
            g.code,
            g.name_zh,
            g.name_en,
            g.subdistrict_code,
            g.synthetic,
            dict(mapping(g.geometry)),
            _src(R.AREAS),
        )
        for g in areas.grids
    ]
    # Zones straddle grids and subdistricts, so they hang directly under the district.
    out += [
        AreaRow(
            "zone",
            z.code,
            z.name_zh,
            z.name_en,
            district,
            z.synthetic,
            dict(mapping(z.geometry)),
            _src(R.AREAS),
        )
        for z in areas.zones
    ]
    return out


def build_demo_registry(seed: int = SEED) -> DemoRegistry:
    areas = build_demo_areas(seed)
    rng = random.Random(seed)
    names = _Names(rng)
    who = DemoPeople()

    departments = [
        DepartmentRow(code, zh, en, kind, f"0755-0000{i + 1:04d}", _src(R.DEPARTMENTS))
        for i, (code, zh, en, kind) in enumerate(_DEPARTMENTS)
    ]
    for s in areas.subdistricts:
        departments.append(
            DepartmentRow(
                subdistrict_office_code(s.code),
                f"{s.name_zh}城建办",
                s.name_en.replace("Subdistrict", "Subdistrict Urban Construction Office"),
                "subdistrict_office",
                f"0755-0000{len(departments) + 1:04d}",
                _src(R.DEPARTMENTS),
            )
        )

    people: list[PersonRow] = []

    def person(title: str, department: str, *, email: bool = True) -> str:
        n = len(people) + 1
        code = f"P{n:04d}"
        people.append(
            PersonRow(
                code=code,
                name=names.draw(),
                # 1380000xxxx: one synthetic block, the number echoing the person code.
                mobile=f"1380000{n:04d}",
                email=f"{code.lower()}@demo.watergrid.invalid" if email else "",
                title=title,
                department_code=department,
                active=True,
                source=_src(R.PEOPLE),
            )
        )
        return code

    leaders = [person(t, BUREAU) for t in _LEADER_TITLES]
    who.director = leaders[0]
    sections = {s: [person(t, s) for t in _SECTION_TITLES[s]] for s in _SECTIONS}
    who.duty_officer = sections["FLOOD"][2]
    who.drainage_handler = sections["DRAINAGE"][2]
    for t in ("值班调度员", "值班调度员"):
        person(t, DISPATCH_DESK_CODE)
    company = [person(t, WATER_COMPANY) for t in _COMPANY_TITLES]
    who.company_handler = company[0]
    for t in ("队长", "执法队员", "执法队员"):
        person(t, ENFORCEMENT)
    offices = {
        s.code: [
            person(t, subdistrict_office_code(s.code)) for t in ("主任", "水务专干", "水务专干")
        ]
        for s in areas.subdistricts
    }

    zone_roles: list[ZoneRoleRow] = []
    for zone_code, leader in zip(_CHAIN_ORDER, leaders, strict=True):
        zone_roles.append(ZoneRoleRow(zone_code, leader, "chain_leader", 0, _src(R.ZONE_ROLES)))
        who.chain_leaders[zone_code] = leader
    for k, zone in enumerate(areas.zones):
        liaisons = [sections[_SECTIONS[k]][0]]
        if zone.code in _SECOND_LIAISON:
            liaisons.append(sections[_SECTIONS[(k + 1) % len(_SECTIONS)]][1])
        who.liaisons[zone.code] = liaisons
        zone_roles += [
            ZoneRoleRow(zone.code, p, "liaison", i, _src(R.ZONE_ROLES))
            for i, p in enumerate(liaisons)
        ]

    # Three-level linkage in each grid's group: bureau cadres (a section cadre leading, the
    # subdistrict office's water officer), the water company, and community party members.
    cadres = [p for s in _SECTIONS for p in sections[s]]
    groups: list[PartyGroupRow] = []
    members: list[MemberRow] = []
    for g in areas.grids:
        number = grid_number(g.code)
        leader = cadres[(number - 1) % len(cadres)]
        office_staff = offices[g.subdistrict_code][1 + number % 2]
        team = rng.sample(company[2:], rng.choice((1, 2)))
        community = [
            person(_COMMUNITY_TITLES[i], "", email=False) for i in range(rng.choice((2, 3, 4)))
        ]
        who.grid_members[g.code] = community[0]
        groups.append(
            PartyGroupRow(number, party_group_name(number), g.code, leader, _src(R.PARTY_GROUPS))
        )
        tagged = (
            [(leader, "bureau_cadre"), (office_staff, "bureau_cadre")]
            + [(p, "professional_team") for p in team]
            + [(p, "community_party_member") for p in community]
        )
        members += [MemberRow(number, p, tag, _src(R.MEMBERS)) for p, tag in tagged]

    rules = [RuleRow(c, a, d, _src(R.RULES)) for c, a, d in _RULES]
    data = RegistryData(
        areas=_area_rows(areas),
        departments=departments,
        people=people,
        party_groups=groups,
        members=members,
        zone_roles=zone_roles,
        rules=rules,
    )
    return DemoRegistry(data=data, people=who)
