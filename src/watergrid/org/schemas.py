"""Shapes of organisation answers: grid and zone cards, people, departments."""

from __future__ import annotations

from pydantic import BaseModel

from watergrid.geo.schemas import AreaRef, DepartmentRef


class Contact(BaseModel):
    code: str
    name: str
    title: str
    department: str | None
    # Whole number only for staff allowed to see contacts; otherwise masked.
    mobile: str


class MemberRead(Contact):
    tag: str


class PartyGroupCard(BaseModel):
    number: int
    name: str
    leader: Contact | None
    members: list[MemberRead]


class ZoneLeadership(BaseModel):
    zone: AreaRef
    chain_leader: Contact | None
    liaisons: list[Contact]


class GridCard(BaseModel):
    grid: AreaRef
    subdistrict: AreaRef
    synthetic_geometry: bool
    party_group: PartyGroupCard | None
    zones: list[ZoneLeadership]
    departments: dict[str, DepartmentRef | None]


class ZoneCard(BaseModel):
    zone: AreaRef
    synthetic_geometry: bool
    chain_leader: Contact | None
    liaisons: list[Contact]
    grids: list[AreaRef]
    report_url: str


class DepartmentRead(BaseModel):
    code: str
    name_zh: str
    name_en: str
    kind: str
    phone: str


class PersonRead(BaseModel):
    code: str
    name: str
    title: str
    department: str | None
    mobile_masked: str
    active: bool
