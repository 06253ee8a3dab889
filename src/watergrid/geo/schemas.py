"""Shapes of area and location answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class AreaRef(BaseModel):
    id: int
    kind: str
    code: str
    name_zh: str
    name_en: str


class AreaRead(AreaRef):
    parent_code: str | None = None
    synthetic: bool
    geometry: dict[str, Any] | None = None


class PersonRef(BaseModel):
    code: str
    name: str
    mobile_masked: str


class DepartmentRef(BaseModel):
    code: str
    name_zh: str
    name_en: str


class PartyGroupRef(BaseModel):
    number: int
    name: str
    leader: PersonRef | None = None


class ZoneLocation(AreaRef):
    chain_leader: PersonRef | None = None
    liaisons: list[PersonRef] = []


class Location(BaseModel):
    lon: float
    lat: float
    district: AreaRef
    subdistrict: AreaRef
    grid: AreaRef
    zones: list[ZoneLocation]
    party_group: PartyGroupRef | None
    # service category code -> responsible department
    departments: dict[str, DepartmentRef | None]
