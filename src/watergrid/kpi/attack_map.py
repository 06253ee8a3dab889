"""The annual KPI attack map (KPI攻坚图): the year's key tasks by water domain, each claimed
by a volunteer owner (揭榜挂帅) with a team, milestones with dates and evidence, progress, and
a status computed from the milestones.

Status as of a day D (docs/kpi.md, "KPI attack map"):
  done      every milestone is done;
  late      some milestone is not done and its date is before D;
  at_risk   not late, but a milestone was done after its date, or an open milestone falls
            due within RISK_WINDOW_DAYS of D;
  on_track  otherwise.
Progress is the weight of the milestones done over the weight of all of them.

Typed keyword-only functions taking a Session; they never commit."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.auth.principal import Principal
from watergrid.errors import AppError, FieldError, forbidden, not_found
from watergrid.kpi.definitions import DOMAINS, RISK_WINDOW_DAYS
from watergrid.kpi.models import Milestone, Task, TaskMember
from watergrid.kpi.schemas import (
    MilestoneDone,
    MilestoneIn,
    MilestoneRead,
    TaskCreate,
    TaskRead,
    TeamSet,
)
from watergrid.org.models import Person


@dataclass(frozen=True)
class StoneState:
    due_date: date
    done_date: date | None
    weight: float = 1.0


def milestone_status(m: StoneState, today: date) -> str:
    if m.done_date is not None:
        return "done_late" if m.done_date > m.due_date else "done"
    if m.due_date < today:
        return "late"
    if m.due_date <= today + timedelta(days=RISK_WINDOW_DAYS):
        return "due_soon"
    return "open"


def task_status(stones: list[StoneState], today: date) -> str:
    if stones and all(s.done_date is not None for s in stones):
        return "done"
    states = [milestone_status(s, today) for s in stones]
    if "late" in states:
        return "late"
    if "done_late" in states or "due_soon" in states:
        return "at_risk"
    return "on_track"


def progress(stones: list[StoneState]) -> float:
    total = sum(s.weight for s in stones)
    if not total:
        return 0.0
    return round(sum(s.weight for s in stones if s.done_date is not None) / total, 4)


def _bad(field: str, en: str, zh: str) -> AppError:
    return AppError(422, "invalid", en, zh, [FieldError(field=field, message=en, message_zh=zh)])


def _is_admin(p: Principal) -> bool:
    return bool(p.roles & {"admin", "bureau_leader"})


def _task(db: Session, task_id: int) -> Task:
    t = db.get(Task, task_id)
    if t is None:
        raise not_found("task", "攻坚任务", task_id)
    return t


def _may_edit(db: Session, p: Principal, t: Task) -> bool:
    """The owner, the team, bureau leaders and administrators keep a task up to date."""
    if _is_admin(p):
        return True
    if p.person_id is None:
        return False
    if t.owner_person_id == p.person_id:
        return True
    return (
        db.scalar(
            select(TaskMember.id).where(
                TaskMember.task_id == t.id, TaskMember.person_id == p.person_id
            )
        )
        is not None
    )


def editable_ids(db: Session, *, principal: Principal, task_ids: list[int]) -> set[int]:
    """The tasks among `task_ids` the principal may keep up to date (pages draw the forms)."""
    if _is_admin(principal):
        return set(task_ids)
    if principal.person_id is None or not task_ids:
        return set()
    owned = set(
        db.scalars(
            select(Task.id).where(
                Task.id.in_(task_ids), Task.owner_person_id == principal.person_id
            )
        )
    )
    member = set(
        db.scalars(
            select(TaskMember.task_id).where(
                TaskMember.task_id.in_(task_ids), TaskMember.person_id == principal.person_id
            )
        )
    )
    return owned | member


def create_task(db: Session, *, data: TaskCreate, now: datetime) -> TaskRead:
    if data.domain not in DOMAINS:
        raise _bad("domain", f"Domain must be one of {sorted(DOMAINS)}", "水务领域无效")
    t = Task(
        year=data.year,
        domain=data.domain,
        title=data.title.strip(),
        target=data.target.strip(),
        created_at=now,
    )
    db.add(t)
    db.flush()
    for i, m in enumerate(data.milestones):
        _check_year(m, t.year)
        db.add(
            Milestone(
                task_id=t.id,
                position=i,
                title=m.title.strip(),
                due_date=m.due_date,
                weight=m.weight,
            )
        )
    db.flush()
    return read(db, task_id=t.id, today=now.date())


def _check_year(m: MilestoneIn, year: int) -> None:
    if not (year - 1 <= m.due_date.year <= year + 1):
        raise _bad(
            "due_date", "A milestone must fall near the task's year", "节点日期应在任务年度内"
        )


def add_milestone(db: Session, *, task_id: int, data: MilestoneIn, today: date) -> TaskRead:
    t = _task(db, task_id)
    _check_year(data, t.year)
    n = len(list(db.scalars(select(Milestone.id).where(Milestone.task_id == t.id))))
    db.add(
        Milestone(
            task_id=t.id,
            position=n,
            title=data.title.strip(),
            due_date=data.due_date,
            weight=data.weight,
        )
    )
    db.flush()
    return read(db, task_id=t.id, today=today)


def claim(db: Session, *, task_id: int, principal: Principal, now: datetime) -> TaskRead:
    """揭榜挂帅: the signed-in leader takes an unclaimed task as its owner."""
    t = _task(db, task_id)
    if principal.person_id is None:
        raise AppError(
            409,
            "no_person",
            "Your account is not linked to a person",
            "您的账号未关联人员，无法揭榜",
        )
    if t.owner_person_id is not None:
        raise AppError(409, "claimed", "This task already has an owner", "该任务已有人揭榜")
    t.owner_person_id = principal.person_id
    t.claimed_at = now
    db.flush()
    return read(db, task_id=t.id, today=now.date())


def set_team(
    db: Session, *, task_id: int, principal: Principal, data: TeamSet, today: date
) -> TaskRead:
    t = _task(db, task_id)
    if not _may_edit(db, principal, t):
        raise forbidden()
    ids = []
    for code in dict.fromkeys(data.member_codes):
        pid = db.scalar(select(Person.id).where(Person.code == code))
        if pid is None:
            raise _bad("member_codes", f"Unknown person {code}", f"未知的人员：{code}")
        ids.append(pid)
    for m in db.scalars(select(TaskMember).where(TaskMember.task_id == t.id)):
        db.delete(m)
    db.flush()
    for pid in ids:
        if pid != t.owner_person_id:
            db.add(TaskMember(task_id=t.id, person_id=pid))
    db.flush()
    return read(db, task_id=t.id, today=today)


def complete_milestone(
    db: Session, *, milestone_id: int, principal: Principal, data: MilestoneDone, today: date
) -> TaskRead:
    """Mark a milestone done, with its evidence (what was delivered, where the papers are)."""
    m = db.get(Milestone, milestone_id)
    if m is None:
        raise not_found("milestone", "任务节点", milestone_id)
    t = _task(db, m.task_id)
    if not _may_edit(db, principal, t):
        raise forbidden()
    if data.done_date > today:
        raise _bad("done_date", "Cannot be done in the future", "完成日期不能晚于今天")
    if not data.evidence.strip():
        raise _bad("evidence", "Evidence is required", "请填写佐证材料")
    m.done_date, m.evidence, m.done_by_user_id = (
        data.done_date,
        data.evidence.strip(),
        principal.user_id,
    )
    db.flush()
    return read(db, task_id=t.id, today=today)


def _reads(db: Session, tasks: list[Task], today: date) -> list[TaskRead]:
    if not tasks:
        return []
    ids = [t.id for t in tasks]
    stones: dict[int, list[Milestone]] = defaultdict(list)
    for m in db.scalars(
        select(Milestone)
        .where(Milestone.task_id.in_(ids))
        .order_by(Milestone.due_date, Milestone.position)
    ):
        stones[m.task_id].append(m)
    team: dict[int, list[int]] = defaultdict(list)
    for tid, pid in db.execute(
        select(TaskMember.task_id, TaskMember.person_id)
        .where(TaskMember.task_id.in_(ids))
        .order_by(TaskMember.id)
    ):
        team[tid].append(pid)
    people = {p.id: p for p in db.scalars(select(Person))}
    out = []
    for t in tasks:
        ss = [StoneState(m.due_date, m.done_date, m.weight) for m in stones[t.id]]
        owner = people.get(t.owner_person_id) if t.owner_person_id else None
        zh, en = DOMAINS.get(t.domain, (t.domain, t.domain))
        out.append(
            TaskRead(
                id=t.id,
                year=t.year,
                domain=t.domain,
                domain_name_zh=zh,
                domain_name_en=en,
                title=t.title,
                target=t.target,
                owner_code=owner.code if owner else None,
                owner_name=owner.name if owner else None,
                team=[people[p].name for p in team[t.id] if p in people],
                progress=progress(ss),
                status=task_status(ss, today),
                milestones=[
                    MilestoneRead(
                        id=m.id,
                        title=m.title,
                        due_date=m.due_date,
                        weight=m.weight,
                        done_date=m.done_date,
                        evidence=m.evidence,
                        status=milestone_status(s, today),
                    )
                    for m, s in zip(stones[t.id], ss, strict=True)
                ],
            )
        )
    return out


def read(db: Session, *, task_id: int, today: date) -> TaskRead:
    return _reads(db, [_task(db, task_id)], today)[0]


def board(db: Session, *, year: int, today: date) -> list[tuple[str, str, str, list[TaskRead]]]:
    """(domain, name_zh, name_en, tasks) for every domain with tasks in `year`, in the order
    of DOMAINS."""
    tasks = list(db.scalars(select(Task).where(Task.year == year).order_by(Task.id)))
    reads = _reads(db, tasks, today)
    by: dict[str, list[TaskRead]] = defaultdict(list)
    for r in reads:
        by[r.domain].append(r)
    return [(d, zh, en, by[d]) for d, (zh, en) in DOMAINS.items() if by.get(d)]


def summary(tasks: list[TaskRead]) -> dict[str, int]:
    out = {s: 0 for s in ("done", "on_track", "at_risk", "late")}
    for t in tasks:
        out[t.status] += 1
    out["unclaimed"] = sum(1 for t in tasks if t.owner_code is None)
    return out
