"""KPI tables.

- `kpi_order_fact`: one row per work order: what the order contributes to the figures (the
  outcome of each deadline, the dimensions it is counted under, durations). Derived from the
  order and its history by kpi.facts; rewritten whenever the order changes.
- `kpi_daily`: the rollups. One row per (dimension, key, local day) holding counters summed
  over the facts whose cohort day it is. Dashboards read only these (and, for today, a small
  slice of the facts), never the orders.
- `kpi_state`: the event watermark of the catch-up job.
- field visits (下沉) and the annual KPI attack map (KPI攻坚图).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from watergrid.db import Base, UTCDateTime
from watergrid.kpi.definitions import N_BUCKETS

BigId = BigInteger().with_variant(Integer, "sqlite")


class OrderFact(Base):
    __tablename__ = "kpi_order_fact"
    __table_args__ = (
        Index("ix_kpi_order_fact_resp", "resp_due_day", "resp_outcome"),
        Index("ix_kpi_order_fact_hand", "hand_due_day", "hand_outcome"),
        Index("ix_kpi_order_fact_created", "created_day"),
        Index("ix_kpi_order_fact_rated", "rated_day"),
        # Drill-downs list the newest due first, a page at a time, walking these backwards.
        Index("ix_kpi_order_fact_resp_due_at", "resp_due_at"),
        Index("ix_kpi_order_fact_hand_due_at", "hand_due_at"),
        # Today's open deadlines, split at "now" into overdue and not yet due.
        Index("ix_kpi_order_fact_resp_open", "resp_outcome", "resp_due_at"),
        Index("ix_kpi_order_fact_hand_open", "hand_outcome", "hand_due_at"),
    )

    order_id: Mapped[int] = mapped_column(
        BigId,
        ForeignKey("work_order.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    state: Mapped[str] = mapped_column(String(16))
    created_day: Mapped[date] = mapped_column(Date)
    subdistrict_id: Mapped[int | None] = mapped_column(Integer)
    grid_id: Mapped[int | None] = mapped_column(Integer)
    zone_id: Mapped[int | None] = mapped_column(Integer)
    department_id: Mapped[int | None] = mapped_column(Integer)
    group_code: Mapped[str] = mapped_column(String(32))
    category_code: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    # Who did it: whoever registered the order (staff only), gave the first response, and
    # resolved it last. Person figures count what a person did.
    creator_person_id: Mapped[int | None] = mapped_column(Integer)
    responder_person_id: Mapped[int | None] = mapped_column(Integer)
    resolver_person_id: Mapped[int | None] = mapped_column(Integer)
    # Not rejected and not merged: a case that counts (立案).
    valid: Mapped[bool] = mapped_column(Boolean)
    self_discovered: Mapped[bool] = mapped_column(Boolean)

    resp_outcome: Mapped[str] = mapped_column(String(8))
    resp_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resp_due_day: Mapped[date | None] = mapped_column(Date)
    resp_seconds: Mapped[int | None] = mapped_column(BigInteger)
    resp_bucket: Mapped[int | None] = mapped_column(Integer)

    hand_outcome: Mapped[str] = mapped_column(String(8))
    hand_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hand_due_day: Mapped[date | None] = mapped_column(Date)
    hand_seconds: Mapped[int | None] = mapped_column(BigInteger)
    hand_bucket: Mapped[int | None] = mapped_column(Integer)
    resolved: Mapped[bool] = mapped_column(Boolean)

    reworks: Mapped[int] = mapped_column(Integer, default=0)
    extensions: Mapped[int] = mapped_column(Integer, default=0)
    rating: Mapped[int | None] = mapped_column(Integer)
    rated_day: Mapped[date | None] = mapped_column(Date)


# Counter columns of kpi_daily, in a fixed order (facts.contributions and the SQL rebuild
# both fill them; tests compare them all).
COUNTERS: tuple[str, ...] = (
    (
        "created",
        "valid",
        "patrol",
        "rejected",
        "merged",
        "r_met",
        "r_missed",
        "r_open",
        "r_secs",
        "r_timed",
        "h_met",
        "h_missed",
        "h_open",
        "h_secs",
        "h_timed",
        "h_resolved",
        "reworks",
        "extensions",
        "rated",
        "rating_sum",
        "rating_good",
    )
    + tuple(f"r_b{i:02d}" for i in range(N_BUCKETS))
    + tuple(f"h_b{i:02d}" for i in range(N_BUCKETS))
)

kpi_daily = Table(
    "kpi_daily",
    Base.metadata,
    Column("dim", String(16), nullable=False),
    Column("key", String(64), nullable=False),
    Column("day", Date, nullable=False),
    *(Column(c, BigInteger, nullable=False, default=0) for c in COUNTERS),
    PrimaryKeyConstraint("dim", "key", "day"),
    comment="Daily KPI rollups per dimension and key (see docs/kpi.md).",
)


class KpiState(Base):
    """The catch-up job's position in order_event (one row, id 1)."""

    __tablename__ = "kpi_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_watermark: Mapped[int] = mapped_column(BigInteger, default=0)
    rebuilt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    caught_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# -- field visits (下沉) ----------------------------------------------------------------------


class Visit(Base):
    """A leader's visit to a community grid (下沉): who went, what they found."""

    __tablename__ = "kpi_visit"
    __table_args__ = (Index("ix_kpi_visit_day", "visit_date"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    visit_date: Mapped[date] = mapped_column(Date)
    grid_id: Mapped[int] = mapped_column(ForeignKey("area.id"), index=True)
    # The key zone the visit was made for (a chain leader's zone), if any.
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"), index=True)
    # The leader who led it: visits are counted per leader.
    leader_person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    findings: Mapped[str] = mapped_column(Text, default="")
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VisitMember(Base):
    """Everyone else who went (bureau cadres, the professional team, community members)."""

    __tablename__ = "kpi_visit_member"
    __table_args__ = (UniqueConstraint("visit_id", "person_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("kpi_visit.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)


class VisitIssue(Base):
    """One issue coordinated on site (现场协调推进的涉水问题), linked to the work order made
    or moved there when there is one."""

    __tablename__ = "kpi_visit_issue"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    visit_id: Mapped[int] = mapped_column(
        ForeignKey("kpi_visit.id", ondelete="CASCADE"), index=True
    )
    summary: Mapped[str] = mapped_column(String(300))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("work_order.id"), index=True)
    # created (the order was registered on site) / moved (an existing order was pushed on)
    link: Mapped[str | None] = mapped_column(String(16))


# -- the annual KPI attack map (KPI攻坚图) ------------------------------------------------------


class Task(Base):
    """A key task of the year, claimed by a volunteer owner (揭榜挂帅)."""

    __tablename__ = "kpi_task"
    __table_args__ = (Index("ix_kpi_task_year_domain", "year", "domain"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    year: Mapped[int] = mapped_column(Integer)
    domain: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    target: Mapped[str] = mapped_column(Text, default="")
    owner_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TaskMember(Base):
    __tablename__ = "kpi_task_member"
    __table_args__ = (UniqueConstraint("task_id", "person_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("kpi_task.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)


class Milestone(Base):
    __tablename__ = "kpi_milestone"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("kpi_task.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(String(200))
    due_date: Mapped[date] = mapped_column(Date)
    # Share of the task this milestone stands for (progress = done weight / all weight).
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    done_date: Mapped[date | None] = mapped_column(Date)
    evidence: Mapped[str] = mapped_column(Text, default="")
    done_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
