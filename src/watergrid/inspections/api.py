"""Inspection REST routes under /api/v1/inspections: thin — parse, call the service, commit.

Writes commit before they answer, so a phone that hears 2xx knows its visit is stored; a
retry of an inspection with the same client_key returns the stored one (200, replayed)."""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypeAlias

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile
from pydantic import ValidationError

from watergrid.auth.deps import allow
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.deps import SessionDep
from watergrid.errors import AppError
from watergrid.inspections import figures as figures_mod
from watergrid.inspections import jobs as _jobs  # noqa: F401  (registers the timer handlers)
from watergrid.inspections import service
from watergrid.inspections.schemas import (
    CampaignCreate,
    CampaignRead,
    EventRead,
    Figures,
    FindingNote,
    FindingRead,
    ImportReport,
    InspectionRead,
    InspectionSubmit,
    InspectorAssign,
    InspectorRead,
    LetterRead,
    RectifyAssign,
    TargetIn,
    TargetRead,
    TemplateCreate,
    TemplateRead,
)
from watergrid.workorders.photos import PhotoUpload

router = APIRouter(prefix="/api/v1/inspections", tags=["inspections"])
Reader: TypeAlias = Annotated[Principal, Depends(allow("insp.read"))]
Inspector: TypeAlias = Annotated[Principal, Depends(allow("insp.inspect"))]
Manager: TypeAlias = Annotated[Principal, Depends(allow("insp.manage"))]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PHOTO_READ_LIMIT = service.PHOTO_MAX_BYTES + 1


def read_photos(files: list[UploadFile]) -> list[PhotoUpload]:
    # One byte past the limit is enough to refuse an oversize photo without holding it all.
    return [
        PhotoUpload(
            filename=f.filename or "",
            data=f.file.read(PHOTO_READ_LIMIT),
            content_type=f.content_type or "",
        )
        for f in files
    ]


def parse_submission(payload: str) -> InspectionSubmit:
    try:
        return InspectionSubmit.model_validate(json.loads(payload))
    except json.JSONDecodeError as exc:
        raise AppError(
            422, "bad_payload", f"payload is not JSON: {exc.msg}", "提交内容格式错误"
        ) from None
    except ValidationError as exc:
        raise service.validation_error(exc) from None


# -- templates and campaigns --------------------------------------------------------------


@router.get("/templates", response_model=list[TemplateRead])
def templates(db: SessionDep, _: Reader) -> list[TemplateRead]:
    return service.list_templates(db)


@router.post("/templates", response_model=TemplateRead, status_code=201)
def create_template(db: SessionDep, principal: Manager, body: TemplateCreate) -> TemplateRead:
    out = service.create_template(db, data=body, actor=principal, now=utcnow())
    db.commit()
    return out


@router.get("/campaigns", response_model=list[CampaignRead])
def campaigns(db: SessionDep, principal: Reader) -> list[CampaignRead]:
    return service.list_campaigns(db, actor=principal)


@router.post("/campaigns", response_model=CampaignRead, status_code=201)
def create_campaign(db: SessionDep, principal: Manager, body: CampaignCreate) -> CampaignRead:
    c = service.create_campaign(db, data=body, actor=principal, now=utcnow())
    out = service.campaign_read(db, campaign=c, actor=principal)
    db.commit()
    return out


@router.get("/campaigns/{campaign_id}", response_model=CampaignRead)
def campaign(db: SessionDep, principal: Reader, campaign_id: int) -> CampaignRead:
    c = service.get_campaign(db, campaign_id=campaign_id)
    return service.campaign_read(db, campaign=c, actor=principal)


@router.post("/campaigns/{campaign_id}/close", response_model=CampaignRead)
def close_campaign(db: SessionDep, principal: Manager, campaign_id: int) -> CampaignRead:
    c = service.close_campaign(db, campaign_id=campaign_id, actor=principal, now=utcnow())
    out = service.campaign_read(db, campaign=c, actor=principal)
    db.commit()
    return out


# -- targets and inspectors ---------------------------------------------------------------


@router.get("/campaigns/{campaign_id}/targets", response_model=list[TargetRead])
def targets(
    db: SessionDep,
    principal: Reader,
    campaign_id: int,
    grid: str | None = None,
    status: Literal["pending", "inspected", "open"] | None = None,
) -> list[TargetRead]:
    return service.list_targets(
        db, campaign_id=campaign_id, actor=principal, grid_code=grid, status=status
    )


@router.post("/campaigns/{campaign_id}/targets", response_model=TargetRead, status_code=201)
def add_target(
    db: SessionDep,
    principal: Manager,
    campaign_id: int,
    body: TargetIn,
    response: Response,
) -> TargetRead:
    t, created = service.add_target(
        db, campaign_id=campaign_id, data=body, actor=principal, source="map", now=utcnow()
    )
    out = service.target_read(db, target=t)
    db.commit()
    if not created:
        response.status_code = 200
    return out


@router.post("/campaigns/{campaign_id}/targets/import", response_model=ImportReport)
def import_targets(
    db: SessionDep,
    principal: Manager,
    campaign_id: int,
    file: UploadFile = File(...),
) -> ImportReport:
    data = file.file.read(service.CSV_MAX_BYTES + 1)
    out = service.import_targets_csv(
        db, campaign_id=campaign_id, data=data, actor=principal, now=utcnow()
    )
    db.commit()
    return out


@router.get("/campaigns/{campaign_id}/inspectors", response_model=list[InspectorRead])
def inspectors(db: SessionDep, _: Reader, campaign_id: int) -> list[InspectorRead]:
    return service.list_inspectors(db, campaign_id=campaign_id)


@router.post("/campaigns/{campaign_id}/inspectors", response_model=InspectorRead, status_code=201)
def assign_inspector(
    db: SessionDep,
    principal: Manager,
    campaign_id: int,
    body: InspectorAssign,
) -> InspectorRead:
    out = service.assign_inspector(
        db,
        campaign_id=campaign_id,
        grid_code=body.grid_code,
        person_code=body.person_code,
        actor=principal,
    )
    db.commit()
    return out


@router.delete("/campaigns/{campaign_id}/inspectors/{grid_code}/{person_code}", status_code=204)
def remove_inspector(
    db: SessionDep,
    principal: Manager,
    campaign_id: int,
    grid_code: str,
    person_code: str,
) -> Response:
    service.remove_inspector(
        db, campaign_id=campaign_id, grid_code=grid_code, person_code=person_code, actor=principal
    )
    db.commit()
    return Response(status_code=204)


@router.get("/campaigns/{campaign_id}/findings", response_model=list[FindingRead])
def findings(
    db: SessionDep,
    principal: Reader,
    campaign_id: int,
    state: str | None = None,
) -> list[FindingRead]:
    return service.list_findings(
        db, campaign_id=campaign_id, actor=principal, now=utcnow(), state=state
    )


@router.get("/campaigns/{campaign_id}/letters", response_model=list[LetterRead])
def letters(db: SessionDep, principal: Reader, campaign_id: int) -> list[LetterRead]:
    return service.list_letters(db, campaign_id=campaign_id, actor=principal)


@router.get("/campaigns/{campaign_id}/figures", response_model=Figures)
def figures(db: SessionDep, principal: Reader, campaign_id: int) -> Figures:
    return figures_mod.campaign_figures(
        db, campaign_id=campaign_id, actor=principal, as_of=utcnow()
    )


@router.get("/campaigns/{campaign_id}/figures.xlsx", response_class=Response)
def figures_xlsx(db: SessionDep, principal: Reader, campaign_id: int) -> Response:
    figs = figures_mod.campaign_figures(
        db, campaign_id=campaign_id, actor=principal, as_of=utcnow()
    )
    data = figures_mod.workbook(db, figures=figs, actor=principal)
    name = f"inspection-figures-{campaign_id}.xlsx"
    return Response(
        data, media_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get("/targets/{target_id}", response_model=TargetRead)
def target(db: SessionDep, principal: Reader, target_id: int) -> TargetRead:
    t, _ = service.get_target(db, target_id=target_id, actor=principal)
    return service.target_read(db, target=t)


@router.get("/targets/{target_id}/inspections", response_model=list[InspectionRead])
def target_inspections(db: SessionDep, principal: Reader, target_id: int) -> list[InspectionRead]:
    service.get_target(db, target_id=target_id, actor=principal)
    return service.target_inspections(db, target_id=target_id)


@router.get("/targets/{target_id}/events", response_model=list[EventRead])
def target_events(db: SessionDep, principal: Reader, target_id: int) -> list[EventRead]:
    service.get_target(db, target_id=target_id, actor=principal)
    return service.target_events(db, target_id=target_id)


# -- inspections and findings -------------------------------------------------------------


@router.post(
    "/targets/{target_id}/inspections",
    response_model=InspectionRead,
    status_code=201,
    responses={200: {"description": "A retry with the same client_key: the stored inspection"}},
)
def submit_inspection(
    db: SessionDep,
    principal: Inspector,
    target_id: int,
    response: Response,
    payload: Annotated[str, Form(description="InspectionSubmit as JSON")],
    photos: Annotated[list[UploadFile], File()] = [],  # noqa: B006
) -> InspectionRead:
    data = parse_submission(payload)
    out = service.submit_inspection(
        db,
        target_id=target_id,
        data=data,
        photos=read_photos(photos),
        actor=principal,
        now=utcnow(),
    )
    db.commit()
    if out.replayed:
        response.status_code = 200
    return out


@router.post("/targets/{target_id}/rectifications", response_model=list[FindingRead])
def assign(
    db: SessionDep, principal: Inspector, target_id: int, body: RectifyAssign
) -> list[FindingRead]:
    out = service.assign(db, target_id=target_id, data=body, actor=principal, now=utcnow())
    db.commit()
    return out


@router.get("/findings/{finding_id}", response_model=FindingRead)
def finding(db: SessionDep, principal: Reader, finding_id: int) -> FindingRead:
    return service.get_finding(db, finding_id=finding_id, actor=principal, now=utcnow())


@router.post("/findings/{finding_id}/report-done", response_model=FindingRead)
def report_done(
    db: SessionDep,
    principal: Inspector,
    finding_id: int,
    note: Annotated[str, Form(max_length=2000)],
    photos: Annotated[list[UploadFile], File()] = [],  # noqa: B006
) -> FindingRead:
    out = service.report_rectified(
        db,
        finding_id=finding_id,
        note=note,
        photos=read_photos(photos),
        actor=principal,
        now=utcnow(),
    )
    db.commit()
    return out


@router.post("/findings/{finding_id}/void", response_model=FindingRead)
def void(db: SessionDep, principal: Manager, finding_id: int, body: FindingNote) -> FindingRead:
    out = service.void_finding(
        db, finding_id=finding_id, note=body.note, actor=principal, now=utcnow()
    )
    db.commit()
    return out


@router.get("/letters/{letter_id}", response_model=LetterRead)
def letter(db: SessionDep, principal: Reader, letter_id: int) -> LetterRead:
    return service.get_letter(db, letter_id=letter_id, actor=principal)


@router.get("/photos/{key}", response_class=Response)
def photo(
    db: SessionDep,
    principal: Reader,
    key: str,
    variant: Literal["public", "original"] = "public",
) -> Response:
    content = service.photo_content(db, key=key, variant=variant, actor=principal)
    return Response(
        content.data,
        media_type=content.content_type,
        headers={
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "inline",
        },
    )
