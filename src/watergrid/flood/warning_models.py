"""Tables of the flood response: rainstorm warning signals and their CAP messages, the
criteria that suggest them, one-page plans with their versions and role holders, the
call-and-response (叫应) rounds and calls, pump-crew tasks and the residents' service cards.

Every state change of a warning, a call or a crew task is a row in an append-only history
table (`flood_warning_event`, `flood_call_event`, `flood_crew_task_event`); the guards at the
end refuse updates and deletes of those rows, including bulk statements. Plan versions are
never edited either: a change is a new version."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from watergrid.db import Base, JSONType, UTCDateTime, utcnow
from watergrid.flood.models import AlarmEvent

# Calls and their history grow with every warning season; SQLite needs INTEGER for rowid.
BigId = BigInteger().with_variant(Integer, "sqlite")

SIGNAL_LEVELS = ("yellow", "orange", "red")
PLAN_LEVELS = ("blue", "yellow", "orange", "red")
WARNING_STATES = ("active", "lifted")
PLAN_KINDS = ("reservoir", "river", "waterlogging_point", "subdistrict", "grid")
PLAN_ROLES = ("administrative", "technical", "patrol", "transfer", "escalation")
ROUND_STATES = ("running", "complete", "closed", "superseded")
CALL_STATES = ("queued", "calling", "answered", "unanswered", "stood_down")
TASK_STATES = ("waiting", "assigned", "en_route", "on_site", "pumping", "done", "cancelled")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


# -- rainstorm warning signals -----------------------------------------------------------


class WarningCriterion(Base):
    """When observed rain suggests a signal: rain over `window_h` hours at or above
    `threshold_mm` in a subdistrict, judged on the area mean or on its wettest fresh gauge
    (`basis`). Seeded from the criteria table in the demo data; administrators tune it.
    Only active rows raise suggestions; the others are kept as the reference they are."""

    __tablename__ = "flood_warning_criterion"
    __table_args__ = (
        UniqueConstraint("scheme", "level"),
        CheckConstraint(f"level IN ({_in(PLAN_LEVELS)})", name="level"),
        CheckConstraint("basis IN ('mean', 'max')", name="basis"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scheme: Mapped[str] = mapped_column(String(160))
    level: Mapped[str] = mapped_column(String(8))
    window_h: Mapped[int] = mapped_column(Integer)
    threshold_mm: Mapped[float | None] = mapped_column(Float)
    basis: Mapped[str] = mapped_column(String(8), default="max")
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    criterion_text: Mapped[str] = mapped_column(Text, default="")
    # How far to trust the row and why a figure was filled in or the row left inactive.
    note: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(64))


class RainstormWarning(Base):
    """One rainstorm warning signal for one subdistrict, from issue to lifting. Upgrades and
    downgrades change `level` on this row (and write an event and a CAP Update); lifting
    ends it (a CAP Cancel). A drill is a warning with `exercise` set: it runs the same path
    and its CAP messages carry status Exercise."""

    __tablename__ = "flood_warning"
    __table_args__ = (
        # At most one live signal per subdistrict, real or drill (a drill may run beside a
        # real warning without touching it).
        Index(
            "uq_flood_warning_active",
            "subdistrict_id",
            "exercise",
            unique=True,
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
        CheckConstraint(f"level IN ({_in(SIGNAL_LEVELS)})", name="level"),
        CheckConstraint(f"state IN ({_in(WARNING_STATES)})", name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    subdistrict_id: Mapped[int] = mapped_column(ForeignKey("area.id"), index=True)
    level: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(8), default="active")
    exercise: Mapped[bool] = mapped_column(Boolean, default=False)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    issued_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    lifted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The texts of the current message (each event keeps the CAP document it published).
    description_zh: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    suggestion_id: Mapped[int | None] = mapped_column(Integer)


class WarningEvent(Base):
    """Append-only: one change of a warning (issued, upgraded, downgraded, amended, lifted)
    and the CAP 1.2 document published for it, kept as sent so that what went out can be
    shown later exactly, whatever the code does by then."""

    __tablename__ = "flood_warning_event"
    __table_args__ = (
        UniqueConstraint("warning_id", "seq"),
        CheckConstraint("cap_msg_type IN ('Alert', 'Update', 'Cancel')", name="msg_type"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    warning_id: Mapped[int] = mapped_column(ForeignKey("flood_warning.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    action: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str | None] = mapped_column(String(8))
    to_state: Mapped[str] = mapped_column(String(8))
    from_level: Mapped[str | None] = mapped_column(String(8))
    to_level: Mapped[str] = mapped_column(String(8))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    # Snapshot: history reads the same after an account is renamed.
    actor_name: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    exercise: Mapped[bool] = mapped_column(Boolean, default=False)
    cap_identifier: Mapped[str] = mapped_column(String(120), unique=True)
    cap_msg_type: Mapped[str] = mapped_column(String(8))
    cap_sent: Mapped[str] = mapped_column(String(32))
    cap_xml: Mapped[str] = mapped_column(Text)


class WarningSuggestion(Base):
    """Observed rain crossed an active criterion in a subdistrict: the duty officer is asked
    to issue (or upgrade to) a signal. Open until accepted, dismissed, or overtaken by a
    signal at its level or above."""

    __tablename__ = "flood_warning_suggestion"
    __table_args__ = (
        Index(
            "uq_flood_warning_suggestion_open",
            "subdistrict_id",
            "level",
            unique=True,
            sqlite_where=text("state = 'open'"),
            postgresql_where=text("state = 'open'"),
        ),
        CheckConstraint("state IN ('open', 'accepted', 'dismissed', 'overtaken')", name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subdistrict_id: Mapped[int] = mapped_column(ForeignKey("area.id"), index=True)
    level: Mapped[str] = mapped_column(String(8))
    criterion_id: Mapped[int] = mapped_column(ForeignKey("flood_warning_criterion.id"))
    window_h: Mapped[int] = mapped_column(Integer)
    threshold_mm: Mapped[float] = mapped_column(Float)
    basis: Mapped[str] = mapped_column(String(8))
    observed_mm: Mapped[float] = mapped_column(Float)
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_checked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(12), default="open")
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    decided_reason: Mapped[str] = mapped_column(Text, default="")
    warning_id: Mapped[int | None] = mapped_column(ForeignKey("flood_warning.id"))


# -- one-page plans --------------------------------------------------------------------------


class Plan(Base):
    """A one-page plan (一页纸预案) for one reservoir, river, waterlogging point, subdistrict
    or community grid. The content lives in versions; `current_version` says which one is
    in force."""

    __tablename__ = "flood_plan"
    __table_args__ = (CheckConstraint(f"kind IN ({_in(PLAN_KINDS)})", name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(48), unique=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("flood_asset.id"), index=True)
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"), index=True)
    name_zh: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120), default="")
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PlanCoverage(Base):
    """The subdistricts whose rainstorm warnings start this plan's call rounds. An area plan
    covers its own subdistrict; an asset plan the subdistrict of its asset, and a river
    every subdistrict it runs through where an administrator says so."""

    __tablename__ = "flood_plan_coverage"
    __table_args__ = (UniqueConstraint("plan_id", "subdistrict_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("flood_plan.id", ondelete="CASCADE"))
    subdistrict_id: Mapped[int] = mapped_column(ForeignKey("area.id"), index=True)


class PlanVersion(Base):
    """One version of a plan, never edited. `body` holds each level's trigger, action
    checklist and call timing, the extra contacts, the transfer routes and the shelters (see
    plans.PlanBody); the people are rows of flood_plan_role."""

    __tablename__ = "flood_plan_version"
    __table_args__ = (UniqueConstraint("plan_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("flood_plan.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSONType)
    review_by: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_by_name: Mapped[str] = mapped_column(String(64), default="")
    change_note: Mapped[str] = mapped_column(Text, default="")


class PlanRole(Base):
    """Who holds a role in a plan version, in order: position 0 is the first to be called
    (A角), the next ones stand in (B角). Role `escalation` lists the people above the plan
    to whom an unanswered call finally goes. The shape is a role-to-people policy: rounds
    copy it when they start, so later edits never change a running round."""

    __tablename__ = "flood_plan_role"
    __table_args__ = (
        UniqueConstraint("version_id", "role", "position"),
        CheckConstraint(f"role IN ({_in(PLAN_ROLES)})", name="role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("flood_plan_version.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(SmallInteger, default=0)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    duty: Mapped[str] = mapped_column(String(80), default="")


# -- call-and-response (叫应) --------------------------------------------------------------


class CallRound(Base):
    """One activation of one plan at one level by a warning, an alarm or a drill. `chain`
    is the snapshot of the plan's people and timing taken at the start (Grafana OnCall's
    habit: the running escalation never changes under its feet)."""

    __tablename__ = "flood_call_round"
    __table_args__ = (
        Index("ix_flood_call_round_plan_state", "plan_id", "state"),
        Index("ix_flood_call_round_trigger", "trigger_kind", "trigger_id"),
        CheckConstraint(f"state IN ({_in(ROUND_STATES)})", name="state"),
        CheckConstraint("trigger_kind IN ('warning', 'alarm', 'drill')", name="trigger"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("flood_plan.id"))
    plan_version_id: Mapped[int] = mapped_column(ForeignKey("flood_plan_version.id"))
    trigger_kind: Mapped[str] = mapped_column(String(8))
    trigger_id: Mapped[int | None] = mapped_column(Integer)
    # What people read: the warning number, "告警 #12", "演练".
    trigger_label: Mapped[str] = mapped_column(String(120), default="")
    level: Mapped[str] = mapped_column(String(8))
    exercise: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(12), default="running")
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    started_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str] = mapped_column(String(200), default="")
    answer_within_min: Mapped[int] = mapped_column(Integer)
    repeat_every_min: Mapped[int] = mapped_column(Integer)
    chain: Mapped[dict[str, Any]] = mapped_column(JSONType)


class Call(Base):
    """One responsible person of a round who must answer. `path` is this call's escalation
    path, snapshotted: the person first, then whoever is called next when nobody answers.
    `next_due_at` is when the round's timer next has to look at the call (repeat or
    escalate); None once the call is settled."""

    __tablename__ = "flood_call"
    __table_args__ = (
        Index("ix_flood_call_round_state", "round_id", "state"),
        Index("ix_flood_call_person_state", "person_id", "state"),
        Index(
            "ix_flood_call_due",
            "next_due_at",
            sqlite_where=text("state = 'calling'"),
            postgresql_where=text("state = 'calling'"),
        ),
        CheckConstraint(f"state IN ({_in(CALL_STATES)})", name="state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    round_id: Mapped[int] = mapped_column(BigId, ForeignKey("flood_call_round.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    role: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(SmallInteger, default=0)
    name: Mapped[str] = mapped_column(String(64))
    path: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    exercise: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(12), default="queued")
    step: Mapped[int] = mapped_column(SmallInteger, default=0)
    attempt: Mapped[int] = mapped_column(SmallInteger, default=0)
    step_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    next_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    first_notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    answered_by_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    answered_step: Mapped[int | None] = mapped_column(SmallInteger)
    answered_via: Mapped[str | None] = mapped_column(String(8))
    # Answered by the person themselves after the level's minutes (or not by them at all).
    late: Mapped[bool] = mapped_column(Boolean, default=False)


class CallKey(Base):
    """What lets someone answer a call without signing in: the SHA-256 of the token in the
    link of the message, and the short code for an SMS reply. One per person notified, so
    a superior reached by escalation answers with a key of their own."""

    __tablename__ = "flood_call_key"
    __table_args__ = (Index("ix_flood_call_key_person_code", "person_id", "sms_code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    call_id: Mapped[int] = mapped_column(BigId, ForeignKey("flood_call.id"), index=True)
    step: Mapped[int] = mapped_column(SmallInteger)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    sms_code: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class CallEvent(Base):
    """Append-only log of the call-and-response: every notification, repeat, escalation,
    answer and stand-down of a call (call_id set), and the start and end of a round
    (call_id empty)."""

    __tablename__ = "flood_call_event"
    __table_args__ = (Index("ix_flood_call_event_round", "round_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    round_id: Mapped[int] = mapped_column(BigId, ForeignKey("flood_call_round.id"))
    call_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("flood_call.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str | None] = mapped_column(String(12))
    to_state: Mapped[str] = mapped_column(String(12))
    step: Mapped[int | None] = mapped_column(SmallInteger)
    attempt: Mapped[int | None] = mapped_column(SmallInteger)
    # Who was notified, or who answered.
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    via: Mapped[str | None] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(Text, default="")


# -- pump-crew dispatch ------------------------------------------------------------------------


class CrewTask(Base):
    """A pump truck or team sent to an active waterlogging point: one raised by a ponding
    alarm, or one the public reported as a waterlogging work order."""

    __tablename__ = "flood_crew_task"
    __table_args__ = (
        Index(
            "uq_flood_crew_task_open_point",
            "point_asset_id",
            unique=True,
            sqlite_where=text("state NOT IN ('done', 'cancelled') AND point_asset_id IS NOT NULL"),
            postgresql_where=text(
                "state NOT IN ('done', 'cancelled') AND point_asset_id IS NOT NULL"
            ),
        ),
        Index(
            "uq_flood_crew_task_open_order",
            "work_order_id",
            unique=True,
            sqlite_where=text("state NOT IN ('done', 'cancelled') AND work_order_id IS NOT NULL"),
            postgresql_where=text(
                "state NOT IN ('done', 'cancelled') AND work_order_id IS NOT NULL"
            ),
        ),
        Index("ix_flood_crew_task_crew_state", "crew_asset_id", "state"),
        CheckConstraint(f"state IN ({_in(TASK_STATES)})", name="state"),
        CheckConstraint("source IN ('alarm', 'work_order', 'manual')", name="source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(12))
    point_asset_id: Mapped[int | None] = mapped_column(ForeignKey("flood_asset.id"))
    alarm_id: Mapped[int | None] = mapped_column(ForeignKey("flood_alarm.id"))
    work_order_id: Mapped[int | None] = mapped_column(Integer)
    work_order_number: Mapped[str] = mapped_column(String(24), default="")
    label_zh: Mapped[str] = mapped_column(String(200))
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    subdistrict_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"))
    crew_asset_id: Mapped[int | None] = mapped_column(ForeignKey("flood_asset.id"))
    distance_m: Mapped[float | None] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(12), default="waiting")
    exercise: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class CrewTaskEvent(Base):
    """Append-only history of a crew task: who, when, from, to (state and crew), why."""

    __tablename__ = "flood_crew_task_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("flood_crew_task.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str | None] = mapped_column(String(12))
    to_state: Mapped[str] = mapped_column(String(12))
    from_crew_id: Mapped[int | None] = mapped_column(ForeignKey("flood_asset.id"))
    to_crew_id: Mapped[int | None] = mapped_column(ForeignKey("flood_asset.id"))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    actor_name: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(Text, default="")


# -- residents' flood service card ------------------------------------------------------------


class ServiceCardConfig(Base):
    """What a community's flood service card (防汛便民服务卡) says beyond what the registry
    knows: the hotline, the community contact, shelters chosen by hand (empty: the nearest
    ones) and a local note."""

    __tablename__ = "flood_service_card"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("area.id"), unique=True)
    hotline: Mapped[str] = mapped_column(String(32), default="")
    contact_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    shelter_codes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    note_zh: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), default="")


# -- append-only guards ------------------------------------------------------------------------

# The alarms' history (flood/models.py) is guarded here with the rest of flood season's.
HISTORY_TABLES: tuple[type[Base], ...] = (
    WarningEvent,
    CallEvent,
    CrewTaskEvent,
    PlanVersion,
    AlarmEvent,
)


class HistoryIsAppendOnly(RuntimeError):
    pass


def _refuse(*_: object) -> None:
    raise HistoryIsAppendOnly("flood history rows are never updated or deleted")


for _cls in HISTORY_TABLES:
    event.listen(_cls, "before_update", _refuse)
    event.listen(_cls, "before_delete", _refuse)


@event.listens_for(Session, "do_orm_execute")
def _refuse_bulk_history_edits(state: Any) -> None:
    # Bulk update()/delete() statements skip the mapper events; catch them here.
    mapper = state.bind_mapper
    if (
        (state.is_update or state.is_delete)
        and mapper is not None
        and (mapper.class_ in HISTORY_TABLES)
    ):
        raise HistoryIsAppendOnly(f"{mapper.class_.__tablename__} rows are never changed")
