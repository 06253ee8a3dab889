"""Who hears about rectifications. Everything goes through the notification outbox in the
caller's transaction (notify.enqueue), keyed by the rectification and what caused the
message, so a retried handler or request never queues the same message twice. Nothing here
sends."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.inspections.models import Campaign, Inspector, Rectification, Target
from watergrid.inspections.schemas import METHOD_LABELS
from watergrid.notify import service as notify
from watergrid.settings import get_settings
from watergrid.workorders import people

SUBJECT_TYPE = "insp_rectification"
MOBILE_PREFIXES = tuple("13456789")


def local_time(at: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if at is None:
        return "—"
    return at.astimezone(ZoneInfo(get_settings().timezone)).strftime(fmt)


def local_date_zh(at: datetime | None) -> str:
    """2024年7月5日: how official texts write a date."""
    if at is None:
        return "—"
    d = at.astimezone(ZoneInfo(get_settings().timezone))
    return f"{d.year}年{d.month}月{d.day}日"


def inspector_person_ids(db: Session, *, campaign_id: int, grid_id: int) -> list[int]:
    return list(
        db.scalars(
            select(Inspector.person_id)
            .where(Inspector.campaign_id == campaign_id, Inspector.grid_id == grid_id)
            .order_by(Inspector.person_id)
        )
    )


def office_person_ids(db: Session, *, campaign: Campaign) -> list[int]:
    return people.department_person_ids(db, department_ids={campaign.lead_department_id})


def _is_mobile(phone: str) -> bool:
    return len(phone) == 11 and phone.startswith("1") and phone[1] in MOBILE_PREFIXES


def _send(
    db: Session,
    *,
    person_ids: Iterable[int] = (),
    addresses: Iterable[tuple[str, str]] = (),
    topic: str,
    subject: str,
    body: str,
    link: str | None,
    subject_id: int,
    dedupe: str,
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
        link=link if ids else None,
        subject_type=SUBJECT_TYPE,
        subject_id=subject_id,
        dedupe_key=f"insp:{dedupe}:{topic}",
        now=now,
    )


def target_link(target: Target) -> str:
    return f"/inspections/targets/{target.id}"


def rectifications_started(
    db: Session,
    *,
    campaign: Campaign,
    target: Target,
    rounds: Sequence[Rectification],
    item_texts: Sequence[str],
    cause: str,
    now: datetime,
) -> None:
    """One text to the responsible party's mobile per batch (not one per fault), and an
    in-app note to the office. Letters reach the party on paper; the text points to it."""
    if not rounds:
        return
    first = rounds[0]
    method_zh = METHOD_LABELS[first.method][0]
    listing = "；".join(f"{i + 1}.{t}" for i, t in enumerate(item_texts[:5]))
    if len(item_texts) > 5:
        listing += f"等{len(item_texts)}项"
    due = local_date_zh(max(r.due_at for r in rounds))
    phone = first.responsible_phone
    if phone and _is_mobile(phone):
        _send(
            db,
            addresses=[("sms", phone)],
            topic="inspections.assigned_party",
            subject=f"光明区水务局：{target.name}供排水设施整改通知",
            body=f"{first.responsible_party}：{campaign.name}中发现{target.name}存在以下问题："
            f"{listing}。整改方式：{method_zh}，请于{due}前完成整改。",
            link=None,
            subject_id=first.id,
            dedupe=f"{first.id}:{cause}",
            now=now,
        )
    _send(
        db,
        person_ids=office_person_ids(db, campaign=campaign)
        + inspector_person_ids(db, campaign_id=campaign.id, grid_id=target.grid_id),
        topic="inspections.assigned",
        subject=f"【{method_zh}】{target.name} {len(rounds)}项问题",
        body=f"{target.name}：{listing}\n责任单位：{first.responsible_party}，期限：{due}。\n"
        f"{len(rounds)} finding(s) at {target.name} put under rectification ({first.method}).",
        link=target_link(target),
        subject_id=first.id,
        dedupe=f"{first.id}:{cause}:staff",
        now=now,
    )


def letter_issued(
    db: Session,
    *,
    campaign: Campaign,
    target: Target,
    letter_id: int,
    number: str,
    now: datetime,
) -> None:
    _send(
        db,
        person_ids=office_person_ids(db, campaign=campaign),
        topic="inspections.letter",
        subject=f"【整改提醒函】{number} 待打印送达",
        body=f"已生成致{target.name}责任单位的整改提醒函 {number}，请打印盖章后送达。\n"
        f"Reminder letter {number} for {target.name} is ready to print and deliver.",
        link=f"/inspections/letters/{letter_id}",
        subject_id=letter_id,
        dedupe=f"letter{letter_id}",
        now=now,
    )


def reminder(
    db: Session,
    *,
    campaign: Campaign,
    target: Target,
    rect: Rectification,
    item_text: str,
    cause: str,
    now: datetime,
) -> None:
    due = local_date_zh(rect.due_at)
    if rect.responsible_phone and _is_mobile(rect.responsible_phone):
        _send(
            db,
            addresses=[("sms", rect.responsible_phone)],
            topic="inspections.reminder_party",
            subject=f"光明区水务局：{target.name}整改期限提醒",
            body=f"{rect.responsible_party}：{target.name}“{item_text}”问题的整改期限为{due}，"
            "请抓紧整改并告知我局复查。",
            link=None,
            subject_id=rect.id,
            dedupe=f"{rect.id}:{cause}",
            now=now,
        )
    _send(
        db,
        person_ids=inspector_person_ids(db, campaign_id=campaign.id, grid_id=target.grid_id)
        or office_person_ids(db, campaign=campaign),
        topic="inspections.reminder",
        subject=f"【整改临期】{target.name} {item_text[:30]}",
        body=f"整改期限 {local_time(rect.due_at)}，请跟进督促。\n"
        f"{target.name}: rectification due {local_time(rect.due_at)}.",
        link=target_link(target),
        subject_id=rect.id,
        dedupe=f"{rect.id}:{cause}:staff",
        now=now,
    )


def overdue(
    db: Session,
    *,
    campaign: Campaign,
    target: Target,
    rect: Rectification,
    item_text: str,
    cause: str,
    now: datetime,
) -> None:
    _send(
        db,
        person_ids=office_person_ids(db, campaign=campaign)
        + inspector_person_ids(db, campaign_id=campaign.id, grid_id=target.grid_id),
        topic="inspections.overdue",
        subject=f"【整改超期】{target.name} {item_text[:30]}",
        body=f"整改期限 {local_time(rect.due_at)} 已过，责任单位：{rect.responsible_party}。\n"
        f"{target.name}: rectification deadline {local_time(rect.due_at)} missed.",
        link=target_link(target),
        subject_id=rect.id,
        dedupe=f"{rect.id}:{cause}",
        now=now,
    )


def area_leader_person_ids(db: Session, *, target: Target) -> list[int]:
    """The chain leader of the target's key zone, else its grid's party group leader."""
    leader = people.chain_leader_person_id(db, zone_id=target.zone_id)
    if leader is None:
        _, leader = people.party_group_leader(db, grid_id=target.grid_id)
    return [leader] if leader is not None else []


def escalated(
    db: Session,
    *,
    campaign: Campaign,
    target: Target,
    rect: Rectification,
    item_text: str,
    cause: str,
    now: datetime,
) -> None:
    leaders = people.role_person_ids(db, role="bureau_leader")
    _send(
        db,
        person_ids=leaders
        + area_leader_person_ids(db, target=target)
        + office_person_ids(db, campaign=campaign),
        topic="inspections.escalated",
        subject=f"【督办】{target.name} 整改超期未完成",
        body=f"{campaign.name}：{target.name}“{item_text}”整改期限 {local_time(rect.due_at)} "
        f"已过仍未整改，责任单位：{rect.responsible_party}，请督办。\n"
        f"{target.name}: rectification overdue since {local_time(rect.due_at)}; escalated.",
        link=target_link(target),
        subject_id=rect.id,
        dedupe=f"{rect.id}:{cause}",
        now=now,
    )
