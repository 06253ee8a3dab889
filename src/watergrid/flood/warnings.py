"""Rainstorm warning signals (暴雨预警信号): yellow, orange and red, issued per subdistrict
as Shenzhen does; issued, upgraded, downgraded and lifted by the duty officer; each change
an append-only event carrying the CAP 1.2 document published for it. Issuing or upgrading
starts the call rounds of every plan covering the subdistrict; lifting ends them.

Suggestions: the response sweep compares the observed rolling rainfall of each subdistrict
with the active criteria (seeded from the demo data's criteria table) and asks the duty
officer to issue or upgrade. It never issues by itself: a signal is a public act.

Functions take a Session and never commit."""

from __future__ import annotations

import csv
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from watergrid.auth.models import User, UserRole
from watergrid.errors import AppError, FieldError, invalid, not_found
from watergrid.flood import calls as call_service
from watergrid.flood import cap, kinds, rain
from watergrid.flood import plans as plan_service
from watergrid.flood.response_schemas import (
    LEVEL_EN,
    LEVEL_RANK,
    LEVEL_ZH,
    CriterionRead,
    CriterionUpdate,
    SignalLevel,
    SuggestionRead,
    WarningEventRead,
    WarningIssue,
    WarningRead,
)
from watergrid.flood.response_settings import get_response_settings
from watergrid.flood.warning_models import (
    SIGNAL_LEVELS,
    CallRound,
    RainstormWarning,
    WarningCriterion,
    WarningEvent,
    WarningSuggestion,
)
from watergrid.geo import service as geo_service
from watergrid.geo.models import Area
from watergrid.notify import service as notify
from watergrid.settings import get_settings

log = logging.getLogger("watergrid.flood.warnings")

CRITERIA_CSV = (
    Path(__file__).resolve().parents[1]
    / "demo"
    / "data"
    / "guangming"
    / "rainstorm_warning_criteria.csv"
)
TOPIC_SUGGESTION = "flood.warning_suggestion"
ZH_LEVEL = {"蓝色": "blue", "黄色": "yellow", "橙色": "orange", "红色": "red"}

# What each signal means for CAP receivers. Shenzhen's yellow is issued ahead of the rain
# (expected); orange and red call for action now.
CAP_LEVEL = {
    "yellow": {"severity": "Moderate", "urgency": "Expected", "response": ["Prepare", "Monitor"]},
    "orange": {"severity": "Severe", "urgency": "Immediate", "response": ["Prepare", "Avoid"]},
    "red": {"severity": "Extreme", "urgency": "Immediate", "response": ["Shelter", "Avoid"]},
}
# What the signal says, following Shenzhen's three-level rule (see the criteria table).
DESCRIPTION = {
    "yellow": (
        "{area}6小时内可能或者已经受暴雨影响。",
        "{area} may be, or already is, affected by a rainstorm within 6 hours.",
    ),
    "orange": (
        "{area}3小时内可能或者已经受暴雨影响，降雨量可达50毫米以上。",
        "{area} may be, or already is, affected by a rainstorm within 3 hours, "
        "with 50 mm of rain or more.",
    ),
    "red": (
        "{area}3小时内可能或者已经受暴雨影响，降雨量可达100毫米以上。",
        "{area} may be, or already is, affected by a rainstorm within 3 hours, "
        "with 100 mm of rain or more.",
    ),
}
INSTRUCTION = {
    "yellow": (
        "留意天气变化；避开低洼路段、地下通道和河道边；检查门口挡水板和排水口。",
        "Watch the weather; keep away from low roads, underpasses and river banks; check "
        "the flood board and drain at your door.",
    ),
    "orange": (
        "停止户外集体活动；地下空间和低洼处人员做好撤离准备；不在河边、边坡停留；驾车绕开积水路段。",
        "Stop outdoor group activities; people in basements and low places get ready to "
        "leave; stay off river banks and slopes; drive around flooded roads.",
    ),
    "red": (
        "留在安全的室内或立即转移到避险点；不涉水，不进入地下车库和下穿通道；听从社区和防汛人员指挥。",
        "Stay indoors somewhere safe or move to a shelter now; do not wade, do not enter "
        "underground car parks or underpasses; follow community and flood staff.",
    ),
}
LIFTED = ("{area}暴雨{level}预警信号解除。", "The {level} rainstorm signal for {area} is lifted.")
LIFTED_INSTRUCTION = (
    "道路可能仍有积水，边坡仍可能滑塌，请勿进入积水区域。",
    "Roads may still be flooded and slopes unstable; keep out of standing water.",
)


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    name: str


# -- criteria -------------------------------------------------------------------------------


def _scheme_key(text: str) -> str:
    return text.split(" (")[0].strip()


def _first_number(text: str) -> float | None:
    head = text.strip().split("-")[0].rstrip("+").strip()
    try:
        return float(head)
    except ValueError:
        return None


def seed_criteria(db: Session, *, now: dt.datetime, path: Path = CRITERIA_CSV) -> int:
    """Load the criteria table (idempotent: rows already there are left as administrators
    tuned them). Shenzhen's own three-level rule is what suggestions use; the national and
    provincial rows, and the observed bulletin wording, are kept inactive for reference.

    Shenzhen's yellow rule gives no millimetre figure ("6小时内可能或者已经受暴雨影响"); the
    national yellow figure (50 mm in 6 h), which a CMA bulletin for Guangming shows as the
    standard of a Shenzhen warning, fills the gap — the note on the row says so."""
    existing = {(c.scheme, c.level) for c in db.scalars(select(WarningCriterion))}
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    national = {
        ZH_LEVEL[r["level"]]: _first_number(r["threshold_mm"])
        for r in rows
        if _scheme_key(r["scheme"]) == "CMA national"
    }
    last_scheme = ""
    added = 0
    for r in rows:
        full = r["scheme"].strip()
        if "(same)" in full:
            full = last_scheme
        last_scheme = full
        scheme = _scheme_key(full)
        level = ZH_LEVEL.get(r["level"].strip())
        if level is None or (scheme, level) in existing:
            continue
        window = int(_first_number(r["window_h"]) or 0)
        threshold = _first_number(r["threshold_mm"])
        notes = [f"Scheme: {full}.", f"Source status: {r['status']}."]
        active = scheme == "Shenzhen" and level in SIGNAL_LEVELS
        if active and threshold is None:
            threshold = national.get(level)
            notes.append(
                f"No mm figure in the Shenzhen rule; {threshold:g} mm in {window} h taken from the "
                "national criterion, which a CMA bulletin for Guangming shows as the standard."
            )
        if window not in kinds.RAIN_WINDOWS_H:
            active = False
            notes.append(f"Window {r['window_h']} h is not one of the kept rolling windows.")
        if threshold is None:
            active = False
        if scheme.startswith("Shenzhen operational"):
            notes.append("Observed bulletin wording, not a rule: kept for reference.")
        db.add(
            WarningCriterion(
                scheme=scheme,
                level=level,
                window_h=window,
                threshold_mm=threshold,
                # The wettest fresh gauge, not the area mean: a storm cell over one
                # community is reason enough to put the question to the duty officer.
                basis="max",
                active=active,
                criterion_text=r["criterion_text"],
                note=" ".join(notes),
                source=r["source"],
                updated_at=now,
                updated_by="seed",
            )
        )
        existing.add((scheme, level))
        added += 1
    db.flush()
    return added


def criteria(db: Session) -> list[WarningCriterion]:
    return list(
        db.scalars(select(WarningCriterion).order_by(WarningCriterion.scheme, WarningCriterion.id))
    )


def criterion_read(c: WarningCriterion) -> CriterionRead:
    return CriterionRead.model_validate(c, from_attributes=True)


def update_criterion(
    db: Session, *, criterion_id: int, data: CriterionUpdate, actor: Actor, now: dt.datetime
) -> WarningCriterion:
    c = db.get(WarningCriterion, criterion_id)
    if c is None:
        raise not_found("criterion", "预警判据", criterion_id)
    changes = data.model_dump(exclude_unset=True)
    window = changes.get("window_h", c.window_h)
    if window not in kinds.RAIN_WINDOWS_H:
        raise invalid(
            [FieldError("window_h", f"one of {kinds.RAIN_WINDOWS_H}", "时段须为1/3/6/12/24小时")]
        )
    if changes.get("active") and (changes.get("threshold_mm", c.threshold_mm) is None):
        raise invalid(
            [
                FieldError(
                    "threshold_mm", "an active criterion needs a figure", "启用的判据须有雨量阈值"
                )
            ]
        )
    for k, v in changes.items():
        setattr(c, k, v)
    c.updated_at, c.updated_by = now, actor.name
    db.flush()
    return c


# -- reading -------------------------------------------------------------------------------


def _subdistrict(db: Session, code: str) -> Area:
    area = geo_service.get(db, code=code)
    if area is None or area.kind != "subdistrict":
        raise invalid(
            [FieldError("subdistrict_code", f"no subdistrict {code}", f"未找到街道：{code}")]
        )
    return area


def get_or_404(db: Session, *, warning_id: int) -> RainstormWarning:
    w = db.get(RainstormWarning, warning_id)
    if w is None:
        raise not_found("warning", "预警", warning_id)
    return w


def get_by_number(db: Session, *, number: str) -> RainstormWarning:
    w = db.scalar(select(RainstormWarning).where(RainstormWarning.number == number))
    if w is None:
        raise not_found("warning", "预警", number)
    return w


def active_for(db: Session, *, subdistrict_id: int, exercise: bool) -> RainstormWarning | None:
    return db.scalar(
        select(RainstormWarning).where(
            RainstormWarning.subdistrict_id == subdistrict_id,
            RainstormWarning.state == "active",
            RainstormWarning.exercise.is_(exercise),
        )
    )


def list_warnings(
    db: Session, *, active_only: bool = False, exercise: bool | None = None, limit: int = 200
) -> list[RainstormWarning]:
    q = select(RainstormWarning).order_by(
        RainstormWarning.issued_at.desc(), RainstormWarning.id.desc()
    )
    if active_only:
        q = q.where(RainstormWarning.state == "active")
    if exercise is not None:
        q = q.where(RainstormWarning.exercise.is_(exercise))
    return list(db.scalars(q.limit(limit)))


def events(db: Session, *, warning_id: int) -> list[WarningEvent]:
    return list(
        db.scalars(
            select(WarningEvent)
            .where(WarningEvent.warning_id == warning_id)
            .order_by(WarningEvent.seq)
        )
    )


def _district_name(db: Session) -> str:
    district = geo_service.get_all(db, kind="district")
    return district[0].name_zh if district else ""


def cap_path(identifier: str) -> str:
    return f"/api/v1/flood/cap/{identifier}.xml"


def to_read(db: Session, w: RainstormWarning, *, with_history: bool = False) -> WarningRead:
    area = db.get(Area, w.subdistrict_id)
    assert area is not None
    history = events(db, warning_id=w.id)
    rounds = db.scalar(
        select(func.count()).where(
            CallRound.trigger_kind == "warning", CallRound.trigger_id == w.id
        )
    )
    return WarningRead(
        id=w.id,
        number=w.number,
        subdistrict_code=area.code,
        subdistrict_name_zh=area.name_zh,
        level=cast(SignalLevel, w.level),
        level_zh=LEVEL_ZH[w.level],
        state=w.state,
        exercise=w.exercise,
        issued_at=w.issued_at,
        updated_at=w.updated_at,
        lifted_at=w.lifted_at,
        expires_at=w.expires_at,
        # The officer's own text, else the standard one the CAP message carries.
        description_zh=w.description_zh
        or DESCRIPTION[w.level][0].format(area=f"{_district_name(db)}{area.name_zh}"),
        cap_url=cap_path(history[-1].cap_identifier) if history else "",
        rounds_started=int(rounds or 0),
        history=[WarningEventRead.model_validate(e, from_attributes=True) for e in history]
        if with_history
        else [],
    )


# -- CAP ----------------------------------------------------------------------------------------


def _infos(
    db: Session, w: RainstormWarning, area: Area, *, lifted_level: str | None
) -> list[cap.Info]:
    s = get_response_settings()
    base = get_settings().public_base_url.rstrip("/")
    polygons = cap.polygons(area.geometry, max_vertices=s.cap_max_vertices)
    level = lifted_level or w.level
    district = geo_service.get_all(db, kind="district")
    prefix_zh = district[0].name_zh if district else ""
    prefix_en = district[0].name_en if district and district[0].name_en else ""
    area_zh = f"{prefix_zh}{area.name_zh}"
    area_en = f"{area.name_en or area.name_zh}, {prefix_en}".strip(", ")
    drill_zh = "【演练】" if w.exercise else ""
    drill_en = "[Exercise] " if w.exercise else ""
    out = []
    for lang, name_area, event, drill in (
        ("zh-CN", area_zh, "暴雨预警", drill_zh),
        ("en-US", area_en, "Rainstorm warning", drill_en),
    ):
        zh = lang == "zh-CN"
        lvl_name = LEVEL_ZH[level] if zh else LEVEL_EN[level].lower()
        if lifted_level:
            headline = (
                f"{drill}{area.name_zh}暴雨{LEVEL_ZH[level]}预警信号解除"
                if zh
                else f"{drill}{LEVEL_EN[level]} rainstorm signal lifted: "
                f"{area.name_en or area.name_zh}"
            )
            description = (LIFTED[0] if zh else LIFTED[1]).format(area=name_area, level=lvl_name)
            instruction = LIFTED_INSTRUCTION[0 if zh else 1]
            urgency, severity, certainty, response = "Past", "Minor", "Observed", ["AllClear"]
        else:
            meta = CAP_LEVEL[level]
            headline = (
                f"{drill}{area.name_zh}暴雨{LEVEL_ZH[level]}预警信号"
                if zh
                else f"{drill}{LEVEL_EN[level]} rainstorm signal: {area.name_en or area.name_zh}"
            )
            custom = w.description_zh if zh and w.description_zh else ""
            description = custom or DESCRIPTION[level][0 if zh else 1].format(area=name_area)
            instruction = INSTRUCTION[level][0 if zh else 1]
            urgency, severity = str(meta["urgency"]), str(meta["severity"])
            certainty = "Observed" if w.suggestion_id else "Likely"
            response = [str(r) for r in meta["response"]]
        out.append(
            cap.Info(
                language=lang,
                event=event,
                urgency=str(urgency),
                severity=str(severity),
                certainty=certainty,
                headline=headline,
                description=description,
                instruction=instruction,
                sender_name=s.cap_sender_name
                if zh
                else "Guangming District Water Affairs Bureau, Flood Office",
                area_desc=name_area,
                polygons=polygons,
                response_types=response,
                event_codes=[("SZ_SIGNAL", f"RAINSTORM_{level.upper()}")],
                effective=w.updated_at,
                expires=w.expires_at if not lifted_level else None,
                web=f"{base}/f/warnings",
                parameters=[("signal_level", level), ("warning_number", w.number)],
                geocodes=[("NBS_TOWN_CODE", area.code)],
            )
        )
    return out


def _record(
    db: Session,
    w: RainstormWarning,
    *,
    action: str,
    from_state: str | None,
    from_level: str | None,
    actor: Actor,
    reason: str,
    now: dt.datetime,
    msg_type: str,
) -> WarningEvent:
    """The history row of a change and the CAP message that announces it."""
    s = get_response_settings()
    earlier = events(db, warning_id=w.id)
    seq = len(earlier) + 1
    identifier = f"watergrid-{w.number}-{seq}"
    area = db.get(Area, w.subdistrict_id)
    assert area is not None
    alert = cap.Alert(
        identifier=identifier,
        sender=s.cap_sender,
        sent=now,
        status="Exercise" if w.exercise else "Actual",
        msg_type=msg_type,
        references=[(s.cap_sender, e.cap_identifier, e.cap_sent) for e in earlier],
        infos=_infos(db, w, area, lifted_level=from_level if msg_type == "Cancel" else None),
        note="演练信息，非真实预警 / Exercise, not a real warning" if w.exercise else None,
        incidents=w.number,
        source="watergrid",
    )
    row = WarningEvent(
        warning_id=w.id,
        seq=seq,
        at=now,
        action=action,
        from_state=from_state,
        to_state=w.state,
        from_level=from_level,
        to_level=w.level,
        actor_user_id=actor.user_id,
        actor_name=actor.name,
        reason=reason,
        exercise=w.exercise,
        cap_identifier=identifier,
        cap_msg_type=msg_type,
        cap_sent=cap.cap_time(now),
        cap_xml=cap.build(alert).decode("utf-8"),
    )
    db.add(row)
    db.flush()
    return row


def cap_document(db: Session, *, identifier: str) -> WarningEvent:
    row = db.scalar(select(WarningEvent).where(WarningEvent.cap_identifier == identifier))
    if row is None:
        raise not_found("CAP message", "CAP 消息", identifier)
    return row


def cap_feed(
    db: Session, *, include_exercise: bool, self_url: str, now: dt.datetime, limit: int = 100
) -> bytes:
    q = select(WarningEvent).order_by(WarningEvent.at.desc(), WarningEvent.id.desc()).limit(limit)
    if not include_exercise:
        q = q.where(WarningEvent.exercise.is_(False))
    base = get_settings().public_base_url.rstrip("/")
    entries = []
    for e in db.scalars(q):
        w = db.get(RainstormWarning, e.warning_id)
        area = db.get(Area, w.subdistrict_id) if w else None
        name = area.name_zh if area else ""
        verb = {
            "issued": "发布",
            "upgraded": "升级为",
            "downgraded": "降级为",
            "lifted": "解除",
        }.get(e.action, "更新")
        level = e.from_level if e.action == "lifted" and e.from_level else e.to_level
        drill = "【演练】" if e.exercise else ""
        title = f"{drill}{name}暴雨{LEVEL_ZH[level]}预警信号{verb if e.action == 'lifted' else ''}"
        if e.action in ("upgraded", "downgraded"):
            title = f"{'【演练】' if e.exercise else ''}{name}暴雨预警{verb}{LEVEL_ZH[e.to_level]}"
        entries.append(
            cap.FeedEntry(
                identifier=e.cap_identifier,
                title=title,
                summary=e.reason or title,
                sent=e.at,
                url=f"{base}{cap_path(e.cap_identifier)}",
                status="Exercise" if e.exercise else "Actual",
                msg_type=e.cap_msg_type,
            )
        )
    return cap.atom_feed(
        feed_id=f"urn:watergrid:{get_response_settings().cap_sender}:rainstorm",
        title="光明区暴雨预警信号 / Guangming rainstorm warning signals",
        self_url=self_url,
        author=get_response_settings().cap_sender_name,
        entries=entries,
        now=now,
    )


# -- changing warnings -----------------------------------------------------------------------------


def _lock(db: Session, warning_id: int) -> RainstormWarning:
    q = (
        select(RainstormWarning)
        .where(RainstormWarning.id == warning_id)
        .execution_options(populate_existing=True)
    )
    if db.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    w = db.scalar(q)
    if w is None:
        raise not_found("warning", "预警", warning_id)
    return w


def trigger_label(db: Session, w: RainstormWarning) -> str:
    area = db.get(Area, w.subdistrict_id)
    name = area.name_zh if area else ""
    return f"{name}暴雨{LEVEL_ZH[w.level]}预警"


def _start_rounds(db: Session, w: RainstormWarning, *, actor: Actor, now: dt.datetime) -> int:
    trigger = call_service.Trigger("warning", w.id, trigger_label(db, w), w.exercise)
    plans = plan_service.for_subdistrict(db, subdistrict_id=w.subdistrict_id)
    started = call_service.start_rounds(
        db, plans=plans, level=w.level, trigger=trigger, started_by_user_id=actor.user_id, now=now
    )
    return len(started)


def _overtake_suggestions(db: Session, w: RainstormWarning, now: dt.datetime) -> None:
    if w.exercise:
        return
    for s in db.scalars(
        select(WarningSuggestion).where(
            WarningSuggestion.subdistrict_id == w.subdistrict_id, WarningSuggestion.state == "open"
        )
    ):
        if LEVEL_RANK[s.level] <= LEVEL_RANK[w.level]:
            s.state, s.decided_at, s.warning_id = "overtaken", now, w.id
            s.decided_reason = f"已发布{LEVEL_ZH[w.level]}预警 {w.number}"


def issue(db: Session, *, data: WarningIssue, actor: Actor, now: dt.datetime) -> RainstormWarning:
    area = _subdistrict(db, data.subdistrict_code)
    current = active_for(db, subdistrict_id=area.id, exercise=data.exercise)
    if current is not None:
        raise AppError(
            409,
            "warning_active",
            f"{area.code} already has an active {current.level} warning {current.number}",
            f"{area.name_zh}已有生效的{LEVEL_ZH[current.level]}预警（{current.number}），请升级、降级或解除",
        )
    if data.expires_at is not None and data.expires_at <= now:
        raise invalid([FieldError("expires_at", "must lie ahead", "失效时间须晚于当前时间")])
    w = RainstormWarning(
        number=f"pending-{now.timestamp()}-{area.id}",
        subdistrict_id=area.id,
        level=data.level,
        state="active",
        exercise=data.exercise,
        issued_at=now,
        issued_by_user_id=actor.user_id,
        updated_at=now,
        expires_at=data.expires_at,
        description_zh=data.description_zh.strip(),
        suggestion_id=data.suggestion_id,
    )
    db.add(w)
    db.flush()
    local = now.astimezone(dt.timezone(dt.timedelta(hours=8)))
    w.number = f"GM{local:%Y}-{'D' if data.exercise else 'W'}{w.id:05d}"
    db.flush()
    if data.suggestion_id is not None:
        sug = db.get(WarningSuggestion, data.suggestion_id)
        if sug is None or sug.subdistrict_id != area.id:
            raise invalid(
                [FieldError("suggestion_id", "no such suggestion here", "建议与街道不符")]
            )
        if sug.state == "open":
            sug.state, sug.decided_at, sug.decided_by_user_id = "accepted", now, actor.user_id
            sug.warning_id = w.id
    _record(
        db,
        w,
        action="issued",
        from_state=None,
        from_level=None,
        actor=actor,
        reason=data.reason or "发布预警",
        now=now,
        msg_type="Alert",
    )
    _overtake_suggestions(db, w, now)
    _start_rounds(db, w, actor=actor, now=now)
    return w


def change_level(
    db: Session, *, warning_id: int, level: str, actor: Actor, reason: str, now: dt.datetime
) -> RainstormWarning:
    w = _lock(db, warning_id)
    if w.state != "active":
        raise AppError(409, "warning_lifted", f"{w.number} is lifted", f"预警 {w.number} 已解除")
    if level == w.level:
        raise AppError(409, "same_level", "Level unchanged", f"预警已是{LEVEL_ZH[level]}")
    previous = w.level
    up = LEVEL_RANK[level] > LEVEL_RANK[previous]
    w.level, w.updated_at = level, now
    # An officer's own text was written for the old level: the new one gets the standard
    # text of its level until someone writes another.
    w.description_zh = ""
    db.flush()
    _record(
        db,
        w,
        action="upgraded" if up else "downgraded",
        from_state="active",
        from_level=previous,
        actor=actor,
        reason=reason or ("升级预警" if up else "降级预警"),
        now=now,
        msg_type="Update",
    )
    _overtake_suggestions(db, w, now)
    if up:
        # Rounds at the lower level are superseded by start_round; people answer again.
        _start_rounds(db, w, actor=actor, now=now)
    return w


def lift(
    db: Session, *, warning_id: int, actor: Actor, reason: str, now: dt.datetime
) -> RainstormWarning:
    w = _lock(db, warning_id)
    if w.state != "active":
        raise AppError(
            409, "warning_lifted", f"{w.number} is already lifted", f"预警 {w.number} 已解除"
        )
    w.state, w.lifted_at, w.updated_at = "lifted", now, now
    db.flush()
    _record(
        db,
        w,
        action="lifted",
        from_state="active",
        from_level=w.level,
        actor=actor,
        reason=reason or "解除预警",
        now=now,
        msg_type="Cancel",
    )
    plan_ids = call_service.close_for_trigger(
        db,
        trigger_kind="warning",
        trigger_id=w.id,
        reason=f"预警解除（{w.number}）",
        now=now,
        actor_user_id=actor.user_id,
    )
    _restart_under_other_warnings(db, w, plan_ids, actor=actor, now=now)
    return w


def _restart_under_other_warnings(
    db: Session, lifted: RainstormWarning, plan_ids: list[int], *, actor: Actor, now: dt.datetime
) -> None:
    """A plan covering several subdistricts (a river) may have been called for the warning
    just lifted while another warning over it is still on: it goes back to being called
    under that one."""
    if not plan_ids:
        return
    others = [
        w
        for w in list_warnings(db, active_only=True, exercise=lifted.exercise)
        if w.id != lifted.id
    ]
    for w in sorted(others, key=lambda x: -LEVEL_RANK[x.level]):
        covered = [
            p
            for p in plan_service.for_subdistrict(db, subdistrict_id=w.subdistrict_id)
            if p.id in plan_ids
        ]
        if covered:
            trigger = call_service.Trigger("warning", w.id, trigger_label(db, w), w.exercise)
            call_service.start_rounds(
                db,
                plans=covered,
                level=w.level,
                trigger=trigger,
                started_by_user_id=actor.user_id,
                now=now,
            )


# -- suggestions -----------------------------------------------------------------------------------


def duty_person_ids(db: Session) -> list[int]:
    """People behind the duty officers' accounts: who hears about suggestions."""
    return list(
        db.scalars(
            select(User.person_id)
            .join(UserRole, UserRole.user_id == User.id)
            .where(
                UserRole.role == "duty_officer", User.active.is_(True), User.person_id.is_not(None)
            )
            .distinct()
        )
    )


def check_rain(db: Session, *, now: dt.datetime) -> list[WarningSuggestion]:
    """Compare each subdistrict's rolling rain with the active criteria; open (or refresh)
    a suggestion for the highest level crossed when no signal that high is on. Returns the
    suggestions opened or refreshed."""
    active = [
        c
        for c in criteria(db)
        if c.active and c.threshold_mm is not None and c.level in SIGNAL_LEVELS
    ]
    if not active:
        return []
    by_code = {a.code: a for a in geo_service.get_all(db, kind="subdistrict")}
    touched: list[WarningSuggestion] = []
    for acc in rain.subdistrict_accumulations(db, now=now):
        area = by_code.get(acc.subdistrict_code)
        if area is None:
            continue
        crossed: list[tuple[WarningCriterion, float]] = []
        for c in active:
            values = acc.max_mm if c.basis == "max" else acc.mean_mm
            v = values.get(f"{c.window_h}h")
            if v is not None and c.threshold_mm is not None and v >= c.threshold_mm:
                crossed.append((c, float(v)))
        if not crossed:
            continue
        crit, observed = max(crossed, key=lambda cv: LEVEL_RANK[cv[0].level])
        current = active_for(db, subdistrict_id=area.id, exercise=False)
        if current is not None and LEVEL_RANK[current.level] >= LEVEL_RANK[crit.level]:
            continue
        higher = db.scalar(
            select(func.count()).where(
                WarningSuggestion.subdistrict_id == area.id,
                WarningSuggestion.state == "open",
                WarningSuggestion.level.in_(
                    [lvl for lvl in SIGNAL_LEVELS if LEVEL_RANK[lvl] > LEVEL_RANK[crit.level]]
                ),
            )
        )
        if higher:
            # The question already put is the bigger one; rain easing off does not add a
            # smaller one beside it.
            continue
        sug = db.scalar(
            select(WarningSuggestion).where(
                WarningSuggestion.subdistrict_id == area.id,
                WarningSuggestion.level == crit.level,
                WarningSuggestion.state == "open",
            )
        )
        if sug is None and _recently_dismissed(db, area.id, crit, now):
            continue
        if sug is None:
            sug = WarningSuggestion(
                subdistrict_id=area.id,
                level=crit.level,
                criterion_id=crit.id,
                window_h=crit.window_h,
                threshold_mm=float(crit.threshold_mm or 0),
                basis=crit.basis,
                observed_mm=observed,
                raised_at=now,
                last_checked_at=now,
                state="open",
            )
            db.add(sug)
            db.flush()
            people = duty_person_ids(db)
            if people:
                notify.enqueue(
                    db,
                    person_ids=people,
                    topic=TOPIC_SUGGESTION,
                    subject=f"建议发布{area.name_zh}暴雨{LEVEL_ZH[crit.level]}预警",
                    body=(
                        f"{area.name_zh}{crit.window_h}小时雨量"
                        f"{'最大站' if crit.basis == 'max' else '面平均'}{observed:.1f}毫米，"
                        f"已达{LEVEL_ZH[crit.level]}预警判据（{crit.threshold_mm:g}毫米）。请研判是否发布。"
                    ),
                    link="/flood/warnings",
                    subject_type="flood_warning_suggestion",
                    subject_id=sug.id,
                    dedupe_key=f"flood-suggestion-{sug.id}",
                    now=now,
                )
        else:
            sug.observed_mm = max(sug.observed_mm, observed)
            sug.last_checked_at = now
        # A lower open suggestion for the same place is overtaken by this one.
        db.execute(
            update(WarningSuggestion)
            .where(
                WarningSuggestion.subdistrict_id == area.id,
                WarningSuggestion.state == "open",
                WarningSuggestion.id != sug.id,
                WarningSuggestion.level.in_(
                    [lvl for lvl in SIGNAL_LEVELS if LEVEL_RANK[lvl] < LEVEL_RANK[crit.level]]
                ),
            )
            .values(
                state="overtaken",
                decided_at=now,
                decided_reason=f"雨量已达{LEVEL_ZH[crit.level]}判据",
            )
            .execution_options(synchronize_session=False)
        )
        touched.append(sug)
    db.flush()
    return touched


def _recently_dismissed(
    db: Session, subdistrict_id: int, crit: WarningCriterion, now: dt.datetime
) -> bool:
    # A "no" from the duty officer holds for the criterion's window: the same rain would
    # otherwise ask the same question again at the next sweep.
    since = now - dt.timedelta(hours=crit.window_h)
    return bool(
        db.scalar(
            select(func.count()).where(
                WarningSuggestion.subdistrict_id == subdistrict_id,
                WarningSuggestion.level == crit.level,
                WarningSuggestion.state == "dismissed",
                WarningSuggestion.decided_at >= since,
            )
        )
    )


def suggestions(
    db: Session, *, open_only: bool = True, limit: int = 100
) -> list[WarningSuggestion]:
    q = select(WarningSuggestion).order_by(WarningSuggestion.raised_at.desc()).limit(limit)
    if open_only:
        q = q.where(WarningSuggestion.state == "open")
    return list(db.scalars(q))


def suggestion_read(db: Session, s: WarningSuggestion) -> SuggestionRead:
    area = db.get(Area, s.subdistrict_id)
    assert area is not None
    return SuggestionRead(
        id=s.id,
        subdistrict_code=area.code,
        subdistrict_name_zh=area.name_zh,
        level=s.level,
        level_zh=LEVEL_ZH[s.level],
        window_h=s.window_h,
        threshold_mm=s.threshold_mm,
        basis=s.basis,
        observed_mm=s.observed_mm,
        raised_at=s.raised_at,
        last_checked_at=s.last_checked_at,
        state=s.state,
    )


def _open_suggestion(db: Session, suggestion_id: int) -> WarningSuggestion:
    s = db.get(WarningSuggestion, suggestion_id)
    if s is None:
        raise not_found("suggestion", "预警建议", suggestion_id)
    if s.state != "open":
        raise AppError(409, "suggestion_closed", "Suggestion already decided", "该建议已处理")
    return s


def accept_suggestion(
    db: Session, *, suggestion_id: int, actor: Actor, reason: str, now: dt.datetime
) -> RainstormWarning:
    """Issue the suggested signal, or upgrade the one in force to it."""
    s = _open_suggestion(db, suggestion_id)
    area = db.get(Area, s.subdistrict_id)
    assert area is not None
    why = reason or f"采纳雨量建议：{s.window_h}小时{s.observed_mm:.1f}毫米"
    current = active_for(db, subdistrict_id=area.id, exercise=False)
    if current is None:
        return issue(
            db,
            data=WarningIssue.model_validate(
                {
                    "subdistrict_code": area.code,
                    "level": s.level,
                    "reason": why,
                    "suggestion_id": s.id,
                }
            ),
            actor=actor,
            now=now,
        )
    s.state, s.decided_at, s.decided_by_user_id, s.warning_id = (
        "accepted",
        now,
        actor.user_id,
        current.id,
    )
    return change_level(db, warning_id=current.id, level=s.level, actor=actor, reason=why, now=now)


def dismiss_suggestion(
    db: Session, *, suggestion_id: int, actor: Actor, reason: str, now: dt.datetime
) -> WarningSuggestion:
    if not reason.strip():
        raise invalid([FieldError("reason", "say why", "请填写不采纳的理由")])
    s = _open_suggestion(db, suggestion_id)
    s.state, s.decided_at, s.decided_by_user_id, s.decided_reason = (
        "dismissed",
        now,
        actor.user_id,
        reason,
    )
    db.flush()
    return s
