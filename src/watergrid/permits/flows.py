"""Who hears about applications: the applicant (SMS only with consent, e-mail when given),
the handling department (in-app) and, when a limit is missed, the bureau leaders. Everything
goes through the outbox in the caller's transaction, keyed by the application and the cause,
so a retry never queues the same message twice. Nothing here sends."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from watergrid.inspections.flows import local_date_zh, local_time
from watergrid.notify import service as notify
from watergrid.permits.catalog import SERVICES
from watergrid.permits.models import Application
from watergrid.workorders import people

SUBJECT_TYPE = "permit_application"


def staff_link(app: Application) -> str:
    return f"/permits/applications/{app.id}"


def _name(app: Application) -> str:
    return SERVICES[app.service_code].name_zh


def _send(
    db: Session,
    *,
    app: Application,
    person_ids: Iterable[int] = (),
    addresses: Iterable[tuple[str, str]] = (),
    topic: str,
    subject: str,
    body: str,
    cause: str,
    now: datetime,
) -> None:
    ids = list(dict.fromkeys(person_ids))
    addrs = list(dict.fromkeys(addresses))
    if not ids and not addrs:
        return
    notify.enqueue(
        db,
        person_ids=ids,
        addresses=addrs,
        topic=topic,
        subject=subject,
        body=body,
        link=staff_link(app) if ids else None,
        subject_type=SUBJECT_TYPE,
        subject_id=app.id,
        dedupe_key=f"permit:{app.id}:{cause}:{topic}",
        now=now,
    )


def applicant_addresses(app: Application) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if app.sms_consent and app.contact_phone and app.contact_phone.startswith("1"):
        out.append(("sms", app.contact_phone))
    if app.contact_email:
        out.append(("email", app.contact_email))
    return out


def department_person_ids(db: Session, app: Application) -> list[int]:
    return people.department_person_ids(db, department_ids={app.department_id})


def to_applicant(db: Session, *, app: Application, text: str, cause: str, now: datetime) -> None:
    _send(
        db,
        app=app,
        addresses=applicant_addresses(app),
        topic="permits.applicant",
        subject=f"光明区水务局：您的{_name(app)}申请{app.number}{text}",
        body=f"您的{_name(app)}申请（编号{app.number}，项目：{app.project_name}）{text}。"
        "可凭申请编号在线查询办理进度。",
        cause=cause,
        now=now,
    )


def submitted(db: Session, *, app: Application, cause: str, now: datetime) -> None:
    _send(
        db,
        app=app,
        person_ids=department_person_ids(db, app),
        topic="permits.submitted",
        subject=f"【新申请】{_name(app)} {app.number}",
        body=f"{app.applicant_name}：{app.project_name}\n办理时限 {app.limit_workdays:g} 个工作日，"
        f"至 {local_time(app.due_at)}。\nNew application {app.number}.",
        cause=cause,
        now=now,
    )
    to_applicant(db, app=app, text="已提交，请留意补正或受理通知", cause=cause, now=now)


def supplemented(db: Session, *, app: Application, cause: str, now: datetime) -> None:
    _send(
        db,
        app=app,
        person_ids=department_person_ids(db, app),
        topic="permits.supplemented",
        subject=f"【补正材料已到】{app.number} {app.project_name}",
        body=f"申请人已提交补正材料，计时恢复，办理时限至 {local_time(app.due_at)}。\n"
        f"Corrections for {app.number} arrived; the clock runs again.",
        cause=cause,
        now=now,
    )


def reminder(db: Session, *, app: Application, pct: int, cause: str, now: datetime) -> None:
    _send(
        db,
        app=app,
        person_ids=department_person_ids(db, app),
        topic="permits.reminder",
        subject=f"【办理时限已过{pct}%】{app.number} {app.project_name}",
        body=f"办理时限 {local_time(app.due_at)}，请抓紧办理。\n{app.number}: {pct}% of the "
        "time limit used.",
        cause=cause,
        now=now,
    )


def overdue(db: Session, *, app: Application, cause: str, now: datetime) -> None:
    _send(
        db,
        app=app,
        person_ids=department_person_ids(db, app),
        topic="permits.overdue",
        subject=f"【超过办理时限】{app.number} {app.project_name}",
        body=f"办理时限 {local_time(app.due_at)} 已过，尚未作出决定。\n"
        f"{app.number}: the statutory limit has passed without a decision.",
        cause=cause,
        now=now,
    )


def escalated(db: Session, *, app: Application, cause: str, now: datetime) -> None:
    _send(
        db,
        app=app,
        person_ids=people.role_person_ids(db, role="bureau_leader")
        + department_person_ids(db, app),
        topic="permits.escalated",
        subject=f"【督办】{_name(app)} {app.number} 超时未办结",
        body=f"{app.applicant_name}“{app.project_name}”的{_name(app)}申请办理时限 "
        f"{local_date_zh(app.due_at)} 已过仍未作出决定，请督办。\n{app.number} is overdue and "
        "has been escalated.",
        cause=cause,
        now=now,
    )
