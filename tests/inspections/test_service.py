"""Inspection rules one at a time: bad input is refused with a clear error and changes nothing;
retries are idempotent; scope is enforced record by record; photos lose their EXIF; history
is append-only."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from tests.inspections.fixtures import T0, count, grid_point, jpeg, principal

from watergrid.errors import AppError
from watergrid.inspections import figures, service
from watergrid.inspections.checklists import RESIDENTIAL_SUPPLY_DRAINAGE
from watergrid.inspections.models import (
    Campaign,
    Finding,
    HistoryIsAppendOnly,
    Inspection,
    InspEvent,
    Letter,
    Photo,
    PhotoBlob,
    Rectification,
    Target,
)
from watergrid.inspections.schemas import (
    AnswerIn,
    CampaignCreate,
    InspectionSubmit,
    RectifyAssign,
    TargetIn,
)
from watergrid.timers.models import DueItem
from watergrid.workorders.photos import PhotoUpload

CODES = [i.code for i in RESIDENTIAL_SUPPLY_DRAINAGE.items]


@pytest.fixture
def camp(db: Session) -> Campaign:
    drainage = principal(db, "drainage")
    service.create_template(db, data=RESIDENTIAL_SUPPLY_DRAINAGE, actor=None, now=T0)
    c = service.create_campaign(
        db,
        actor=drainage,
        now=T0,
        data=CampaignCreate(
            code="SVC-1",
            name="测试",
            period_start=T0.date(),
            period_end=(T0 + timedelta(days=60)).date(),
            lead_department_code="DRAINAGE",
            template_code=RESIDENTIAL_SUPPLY_DRAINAGE.code,
        ),
    )
    for code, grid in (("A", "W01"), ("B", "W13")):
        lon, lat = grid_point(db, grid)
        service.add_target(
            db,
            campaign_id=c.id,
            actor=drainage,
            source="map",
            now=T0,
            data=TargetIn(
                code=code,
                name=f"{code}小区",
                lon=lon,
                lat=lat,
                property_company="甲物业",
                contact_phone="13900001111",
            ),
        )
    return c


def target(db: Session, code: str) -> Target:
    t = db.scalar(select(Target).where(Target.code == code))
    assert t is not None
    return t


def all_ok(**faults: str) -> dict[str, AnswerIn]:
    return {
        c: AnswerIn(answer="fault", note=faults[c], method="on_site")
        if c in faults
        else AnswerIn(answer="ok")
        for c in CODES
    }


def snapshot(db: Session) -> tuple[int, ...]:
    return tuple(
        count(db, m)
        for m in (Inspection, Finding, Rectification, InspEvent, Photo, DueItem, Letter)
    )


def test_an_incomplete_checklist_is_refused_and_nothing_is_written(
    db: Session, camp: Campaign
) -> None:
    grid01 = principal(db, "grid01")
    before = snapshot(db)
    answers = all_ok()
    del answers["D07"]
    answers["S01"] = AnswerIn(answer="fault", note="  ")
    with pytest.raises(AppError) as exc:
        service.submit_inspection(
            db,
            target_id=target(db, "A").id,
            actor=grid01,
            now=T0,
            data=InspectionSubmit(client_key="k-incomplete-1", answers=answers),
        )
    assert exc.value.status == 422
    fields = {f.field for f in exc.value.fields}
    assert fields == {"answers.D07", "answers.S01.note"}
    assert any("D07" in f.message_zh for f in exc.value.fields)
    assert snapshot(db) == before
    assert target(db, "A").inspected_at is None


def test_a_retried_submit_returns_the_first_visit(db: Session, camp: Campaign) -> None:
    grid01 = principal(db, "grid01")
    data = InspectionSubmit(
        client_key="k-retry-0001", answers=all_ok(D01="雨污混接"), lon=113.9, lat=22.8
    )
    first = service.submit_inspection(
        db, target_id=target(db, "A").id, actor=grid01, now=T0, data=data
    )
    after = snapshot(db)
    again = service.submit_inspection(
        db, target_id=target(db, "A").id, actor=grid01, now=T0 + timedelta(minutes=3), data=data
    )
    assert again.replayed and again.id == first.id and again.findings == first.findings
    assert snapshot(db) == after
    other = data.model_copy(update={"notes": "改过的内容"})
    with pytest.raises(AppError) as exc:
        service.submit_inspection(
            db, target_id=target(db, "A").id, actor=grid01, now=T0, data=other
        )
    assert exc.value.code == "client_key_reused" and exc.value.status == 409
    # A second initial inspection of the same target is a re-inspection's job.
    with pytest.raises(AppError) as exc:
        service.submit_inspection(
            db,
            target_id=target(db, "A").id,
            actor=grid01,
            now=T0,
            data=data.model_copy(update={"client_key": "k-retry-0002"}),
        )
    assert exc.value.code == "already_inspected"
    assert first.warnings and "米" in first.warnings[0]  # far from the recorded point


def test_scope_is_checked_record_by_record(db: Session, camp: Campaign) -> None:
    grid01, grid13 = principal(db, "grid01"), principal(db, "grid13")
    watercorp, drainage = principal(db, "watercorp"), principal(db, "drainage")
    b = target(db, "B")  # in W13
    data = InspectionSubmit(client_key="k-scope-0001", answers=all_ok(S01="未加锁"))
    for outsider in (grid01, watercorp):
        with pytest.raises(AppError) as exc:
            service.submit_inspection(db, target_id=b.id, actor=outsider, now=T0, data=data)
        assert exc.value.status == 403
    with pytest.raises(AppError) as exc:
        service.get_target(db, target_id=b.id, actor=grid01)
    assert exc.value.status == 403
    assert [t.code for t in service.list_targets(db, campaign_id=camp.id, actor=grid01)] == ["A"]
    assert {t.code for t in service.list_targets(db, campaign_id=camp.id, actor=watercorp)} == {
        "A",
        "B",
    }
    out = service.submit_inspection(db, target_id=b.id, actor=grid13, now=T0, data=data)
    fid = out.findings[0]
    # The grid member may assign on site, not issue letters or withdraw findings.
    f = db.get(Finding, fid)
    assert f.state == "rectifying"
    with pytest.raises(AppError) as exc:
        service.void_finding(db, finding_id=fid, note="误报", actor=grid13, now=T0)
    assert exc.value.status == 403
    with pytest.raises(AppError) as exc:
        service.void_finding(db, finding_id=fid, note=" ", actor=drainage, now=T0)
    assert exc.value.code == "note_required"
    service.void_finding(db, finding_id=fid, note="现场复核为误报", actor=drainage, now=T0)
    assert db.get(Finding, fid).state == "void"
    figs = figures.campaign_figures(db, campaign_id=camp.id, actor=None, as_of=T0)
    assert (figs.total.findings, figs.total.faulty_targets) == (0, 0)
    # Letters are the office's.
    out = service.submit_inspection(
        db,
        target_id=target(db, "A").id,
        actor=grid01,
        now=T0,
        data=InspectionSubmit(
            client_key="k-scope-0002",
            answers={**all_ok(), "D05": AnswerIn(answer="fault", note="私接", method="letter")},
        ),
    )
    with pytest.raises(AppError) as exc:
        service.assign(
            db,
            target_id=target(db, "A").id,
            actor=grid01,
            now=T0,
            data=RectifyAssign(finding_ids=out.findings, method="letter"),
        )
    assert exc.value.status == 403
    rows = service.assign(
        db,
        target_id=target(db, "A").id,
        actor=drainage,
        now=T0 + timedelta(hours=1),
        data=RectifyAssign(finding_ids=out.findings, method="letter"),
    )
    assert rows[0].rectification.letter_number and rows[0].rectification.method == "letter"
    # Assigning an already assigned finding is a conflict, not a second round.
    with pytest.raises(AppError) as exc:
        service.assign(
            db,
            target_id=target(db, "A").id,
            actor=drainage,
            now=T0,
            data=RectifyAssign(finding_ids=out.findings, method="on_site"),
        )
    assert exc.value.status == 409


def test_letters_are_numbered_in_sequence(db: Session, camp: Campaign) -> None:
    drainage = principal(db, "drainage")
    numbers = []
    for code in ("A", "B"):
        out = service.submit_inspection(
            db,
            target_id=target(db, code).id,
            actor=drainage,
            now=T0,
            data=InspectionSubmit(
                client_key=f"k-letter-{code}-01",
                answers={
                    **all_ok(),
                    "D04": AnswerIn(answer="fault", note="井盖破损", method="letter"),
                },
            ),
        )
        service.assign(
            db,
            target_id=target(db, code).id,
            actor=drainage,
            now=T0,
            data=RectifyAssign(finding_ids=out.findings, method="letter"),
        )
        numbers.append(
            db.scalar(select(Letter.number).where(Letter.target_id == target(db, code).id))
        )
    assert numbers == ["光水排查函〔2026〕1号", "光水排查函〔2026〕2号"]


def test_csv_with_bad_rows_imports_nothing_and_names_the_lines(db: Session, camp: Campaign) -> None:
    drainage = principal(db, "drainage")
    lon, lat = grid_point(db, "W05")
    csv = (
        "编号,小区名称,经度,纬度,联系电话\n"
        f"C1,好小区,{lon},{lat},13900002222\n"
        "C2,外面的小区,114.5,22.1,\n"  # outside the district
        f"C3,坏电话,{lon},{lat},12345\n"  # not a phone number
        f"C1,重复,{lon},{lat},\n"  # repeated code
        "C4,没有坐标,,,\n"  # no coordinates
    ).encode()
    before = count(db, Target)
    with pytest.raises(AppError) as exc:
        service.import_targets_csv(db, campaign_id=camp.id, data=csv, actor=drainage, now=T0)
    lines = sorted({f.line for f in exc.value.fields})
    assert lines == [5, 6]  # first pass: shape errors (repeated code, missing coordinates)
    assert count(db, Target) == before
    csv = (
        "编号,小区名称,经度,纬度,联系电话\n"
        f"C1,好小区,{lon},{lat},13900002222\n"
        "C2,外面的小区,114.5,22.1,\n"
        f"C3,坏电话,{lon},{lat},12345\n"
    ).encode()
    with pytest.raises(AppError) as exc:
        service.import_targets_csv(db, campaign_id=camp.id, data=csv, actor=drainage, now=T0)
    assert sorted(f.line for f in exc.value.fields) == [3, 4]
    assert any("不在本区范围内" in f.message_zh for f in exc.value.fields)
    assert count(db, Target) == before
    # Excel's Chinese CSV (GB18030) is read as well, and a second import updates by code.
    good = f"编号,小区名称,经度,纬度,物业公司\nC1,好小区,{lon},{lat},乙物业\n".encode("gb18030")
    report = service.import_targets_csv(db, campaign_id=camp.id, data=good, actor=drainage, now=T0)
    assert (report.created, report.updated) == (1, 0)
    good = f"code,name,lon,lat,property_company\nC1,好小区,{lon},{lat},丙物业\n".encode()
    report = service.import_targets_csv(db, campaign_id=camp.id, data=good, actor=drainage, now=T0)
    assert (report.created, report.updated) == (0, 1)
    assert target(db, "C1").property_company == "丙物业"
    with pytest.raises(AppError) as exc:
        service.import_targets_csv(
            db, campaign_id=camp.id, data=b"a,b\n1,2\n", actor=drainage, now=T0
        )
    assert exc.value.code == "missing_columns"


def test_photos_are_checked_and_lose_their_exif(db: Session, camp: Campaign) -> None:
    grid01 = principal(db, "grid01")
    a = target(db, "A")
    data = InspectionSubmit(
        client_key="k-photo-0001", answers=all_ok(D01="混接"), photo_tags=["D01", ""]
    )
    with pytest.raises(AppError) as exc:
        service.submit_inspection(
            db,
            target_id=a.id,
            actor=grid01,
            now=T0,
            data=data,
            photos=[
                PhotoUpload("a.jpg", jpeg(exif=True)),
                PhotoUpload("notes.txt", b"not an image"),
            ],
        )
    assert exc.value.code == "photo_not_image"
    assert count(db, Inspection) == 0
    out = service.submit_inspection(
        db,
        target_id=a.id,
        actor=grid01,
        now=T0,
        data=data,
        photos=[PhotoUpload("a.jpg", jpeg(exif=True)), PhotoUpload("b.jpg", jpeg())],
    )
    photos = list(db.scalars(select(Photo).order_by(Photo.id)))
    assert [(p.item_code, p.finding_id is not None) for p in photos] == [
        ("", False),
        ("D01", True),
    ] or [(p.item_code, p.finding_id is not None) for p in photos] == [("D01", True), ("", False)]
    tagged = next(p for p in photos if p.item_code == "D01")
    blob = db.get(PhotoBlob, tagged.id)
    public = Image.open(io.BytesIO(blob.public))
    assert not public.getexif() and (public.width, public.height) == (48, 64)  # rotated upright
    assert Image.open(io.BytesIO(blob.original)).getexif()
    content = service.photo_content(db, key=tagged.key, variant="public", actor=grid01)
    assert content.data == blob.public
    with pytest.raises(AppError) as exc:
        service.photo_content(db, key=tagged.key, variant="original", actor=grid01)
    assert exc.value.status == 403
    assert (
        service.photo_content(
            db, key=tagged.key, variant="original", actor=principal(db, "drainage")
        ).data
        == blob.original
    )
    with pytest.raises(AppError):
        service.photo_content(db, key=tagged.key, variant="public", actor=principal(db, "grid13"))
    assert out.fault_count == 1


def test_history_is_append_only(db: Session, camp: Campaign) -> None:
    out = service.submit_inspection(
        db,
        target_id=target(db, "A").id,
        actor=principal(db, "grid01"),
        now=T0,
        data=InspectionSubmit(client_key="k-hist-0001", answers=all_ok(S02="无记录")),
    )
    ev = db.scalar(select(InspEvent).where(InspEvent.finding_id == out.findings[0]))
    assert ev is not None
    ev.note = "rewritten"
    with pytest.raises(HistoryIsAppendOnly):
        db.flush()
    db.rollback()
    with pytest.raises(HistoryIsAppendOnly):
        db.execute(update(InspEvent).values(note="x"))


def test_campaign_creation_checks_its_inputs(db: Session) -> None:
    drainage, watercorp = principal(db, "drainage"), principal(db, "watercorp")
    service.create_template(db, data=RESIDENTIAL_SUPPLY_DRAINAGE, actor=None, now=T0)
    base = dict(
        code="X-1",
        name="x",
        period_start=T0.date(),
        period_end=T0.date(),
        lead_department_code="DRAINAGE",
        template_code=RESIDENTIAL_SUPPLY_DRAINAGE.code,
    )
    with pytest.raises(AppError) as exc:
        service.create_campaign(db, actor=watercorp, now=T0, data=CampaignCreate(**base))  # type: ignore[arg-type]
    assert exc.value.code == "not_your_department"
    with pytest.raises(AppError) as exc:
        service.create_campaign(
            db, actor=drainage, now=T0, data=CampaignCreate(**{**base, "template_code": "NOPE"})
        )  # type: ignore[arg-type]
    assert exc.value.code == "unknown_template"
    service.create_campaign(db, actor=drainage, now=T0, data=CampaignCreate(**base))  # type: ignore[arg-type]
    with pytest.raises(AppError) as exc:
        service.create_campaign(db, actor=drainage, now=T0, data=CampaignCreate(**base))  # type: ignore[arg-type]
    assert exc.value.status == 409
    with pytest.raises(ValueError):
        CampaignCreate(**{**base, "period_end": (T0 - timedelta(days=1)).date()})  # type: ignore[arg-type]
    assert datetime.now(UTC) > T0
