"""Areas: the district, its subdistricts (街道), community water grids (社区水务网格) and key
zones (重点片区). Geometry is GeoJSON in WGS84, kept as JSON so SQLite and PostgreSQL share
one code path; spatial lookups run in memory (geo/locator.py), not in the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from watergrid.db import Base, JSONType, UTCDateTime, utcnow

AREA_KINDS = ("district", "subdistrict", "grid", "zone")


class Area(Base):
    __tablename__ = "area"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100), default="")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"), index=True)
    # WGS84 GeoJSON geometry object.
    geometry: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # True when the outline is made up for the demo rather than surveyed.
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RegistryState(Base):
    """One row whose version goes up with every change to areas, people, groups or rules, so
    each process can keep an in-memory snapshot (locator, links) and know when it is stale."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
