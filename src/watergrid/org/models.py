"""The organisation that answers for the district's water."""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from watergrid.db import Base

DEPARTMENT_KINDS = ("bureau", "section", "team", "company", "subdistrict_office", "dispatch")
MEMBER_TAGS = ("bureau_cadre", "professional_team", "community_party_member")
ZONE_ROLES = ("chain_leader", "liaison")


class Department(Base):
    __tablename__ = "department"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100), default="")
    kind: Mapped[str] = mapped_column(String(24))
    phone: Mapped[str] = mapped_column(String(32), default="")


class Person(Base):
    __tablename__ = "person"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    mobile: Mapped[str] = mapped_column(String(20), default="")
    email: Mapped[str] = mapped_column(String(120), default="")
    title: Mapped[str] = mapped_column(String(64), default="")
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class PartyGroup(Base):
    """A "red chain leader" joint party group (红色链长联合党小组), one per community grid."""

    __tablename__ = "party_group"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    name: Mapped[str] = mapped_column(String(100))
    grid_id: Mapped[int] = mapped_column(ForeignKey("area.id"), unique=True)
    leader_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))


class PartyGroupMember(Base):
    __tablename__ = "party_group_member"
    __table_args__ = (UniqueConstraint("group_id", "person_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("party_group.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    # bureau_cadre / professional_team / community_party_member: the three-level linkage.
    tag: Mapped[str] = mapped_column(String(32))


class ZoneRole(Base):
    """Who leads a key zone: its chain leader (链长, a bureau leader) and liaisons (联络员)."""

    __tablename__ = "zone_role"
    __table_args__ = (UniqueConstraint("zone_id", "person_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("area.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer, default=0)


class ResponsibilityRule(Base):
    """Service category x area -> department. The most specific rule wins (see
    org/service.py: responsible_department); no rule at all -> the bureau dispatch desk."""

    __tablename__ = "responsibility_rule"
    __table_args__ = (UniqueConstraint("category_code", "area_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A service category ("drainage"), a sub-category ("drainage.backflow") or "*" for any.
    category_code: Mapped[str] = mapped_column(String(64))
    # None = the whole district.
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id", ondelete="CASCADE"))
    department_id: Mapped[int] = mapped_column(ForeignKey("department.id"))
