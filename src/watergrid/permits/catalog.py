"""The two statutory services: what each asks for, who handles it, how long it may take.

The limits are the bureau's commitment (承诺时限) in working days; the statutory ceiling for
an administrative licence is 20 working days from acceptance (《行政许可法》第四十二条).
An application copies its service's limit when it is submitted, so changing a limit here
never moves a running clock. The document lists are written for this project from what the
two procedures commonly require; a bureau adjusts them to its published service guide
(办事指南)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class DocumentSpec:
    code: str
    name_zh: str
    name_en: str
    required: bool
    hint_zh: str = ""


@dataclass(frozen=True)
class ServiceSpec:
    code: str
    name_zh: str
    name_en: str
    # Application numbers: PSBZ-2025-00012.
    number_prefix: str
    # Who handles it (a department code of the registry).
    department_code: str
    limit_workdays: int
    legal_limit_workdays: int
    legal_basis_zh: str
    licence_zh: str
    intro_zh: str
    documents: tuple[DocumentSpec, ...]

    def document(self, code: str) -> DocumentSpec | None:
        return next((d for d in self.documents if d.code == code), None)


class DrainageDetails(BaseModel):
    """Project data of a drainage connection application."""

    model_config = ConfigDict(extra="forbid")

    discharge_type: str = Field(
        pattern=r"^(sewage|rain|both)$",
        description="sewage 生活污水 / rain 雨水 / both 雨污分流两者",
    )
    sewage_m3_per_day: float = Field(default=0, ge=0, le=1_000_000, description="预计日排水量 m³")
    connection_points: int = Field(default=1, ge=1, le=50, description="接驳点数量")
    build_kind: str = Field(
        default="new", pattern=r"^(new|alter)$", description="new 新建 / alter 改建"
    )


class SwcDetails(BaseModel):
    """Project data of a soil-and-water conservation plan review."""

    model_config = ConfigDict(extra="forbid")

    area_ha: float = Field(gt=0, le=100_000, description="征占地面积（公顷）")
    earthwork_m3: float = Field(ge=0, le=1e9, description="挖填土石方总量（立方米）")
    project_kind: str = Field(
        min_length=1, max_length=40, description="项目类型，如房屋建筑、市政道路"
    )


DISCHARGE_LABELS = {"sewage": "生活污水", "rain": "雨水", "both": "生活污水及雨水（分流）"}
BUILD_LABELS = {"new": "新建接驳", "alter": "改建接驳"}

# Which plan a project needs (水利部关于水土保持方案编报的规模划分): at least 5 ha of land or
# 50,000 m³ of earthwork needs a full report (报告书); at least 0.5 ha or 1,000 m³ a report
# form (报告表); below both no plan needs approving.
SWC_REPORT_HA, SWC_REPORT_M3 = 5.0, 50_000.0
SWC_FORM_HA, SWC_FORM_M3 = 0.5, 1_000.0


def swc_plan_form(details: SwcDetails) -> str | None:
    """'report' (报告书), 'form' (报告表) or None (no plan to approve)."""
    if details.area_ha >= SWC_REPORT_HA or details.earthwork_m3 >= SWC_REPORT_M3:
        return "report"
    if details.area_ha >= SWC_FORM_HA or details.earthwork_m3 >= SWC_FORM_M3:
        return "form"
    return None


PLAN_FORM_LABELS = {"report": "水土保持方案报告书", "form": "水土保持方案报告表"}


DRAINAGE = ServiceSpec(
    code="drainage_connection",
    name_zh="排水报装（排水接驳核准）",
    name_en="Drainage connection application",
    number_prefix="PSBZ",
    department_code="DRAINAGE",
    limit_workdays=10,
    legal_limit_workdays=20,
    legal_basis_zh="《城镇排水与污水处理条例》第二十一条",
    licence_zh="城镇污水排入排水管网许可",
    intro_zh="建设项目的雨水、污水管道接入市政排水管网前，由建设单位（排水户）申请，"
    "经审查符合雨污分流和接驳要求的予以核准。",
    documents=(
        DocumentSpec(
            "application_form", "排水报装申请表", "Application form", True, "加盖单位公章"
        ),
        DocumentSpec("business_licence", "营业执照或法人证书", "Business licence", True),
        DocumentSpec(
            "planning_permit", "建设工程规划许可证或用地批复文件", "Planning permit", True
        ),
        DocumentSpec(
            "drainage_drawings",
            "室外排水设计图（雨污分流总平面、接驳点位）",
            "Drainage drawings",
            True,
            "标明雨水、污水接驳井位置及管径",
        ),
        DocumentSpec("site_photos", "拟接驳点现状照片", "Photos of the connection points", False),
        DocumentSpec(
            "authorisation",
            "授权委托书及经办人身份证明",
            "Letter of authorisation",
            False,
            "委托他人办理时提供",
        ),
    ),
)

SOIL_WATER = ServiceSpec(
    code="swc_plan",
    name_zh="水土保持方案审查（审批）",
    name_en="Soil and water conservation plan review",
    number_prefix="STBC",
    department_code="SOILWATER",
    limit_workdays=15,
    legal_limit_workdays=20,
    legal_basis_zh="《中华人民共和国水土保持法》第二十五条",
    licence_zh="生产建设项目水土保持方案审批",
    intro_zh="在容易发生水土流失的区域开办生产建设项目，生产建设单位应当编制水土保持方案，"
    "报水行政主管部门审批；征占地0.5公顷以上或挖填土石方1000立方米以上的项目需报批。",
    documents=(
        DocumentSpec(
            "application_letter",
            "水土保持方案审批申请函",
            "Application letter",
            True,
            "加盖单位公章",
        ),
        DocumentSpec(
            "plan_report",
            "水土保持方案报告书（报告表）",
            "The plan",
            True,
            "按规模编制报告书或报告表",
        ),
        DocumentSpec(
            "project_approval", "项目立项（审批、核准、备案）文件", "Project approval", True
        ),
        DocumentSpec("business_licence", "营业执照或法人证书", "Business licence", True),
        DocumentSpec(
            "expert_review", "技术评审意见", "Expert review opinion", False, "报告书项目提供"
        ),
        DocumentSpec(
            "authorisation",
            "授权委托书及经办人身份证明",
            "Letter of authorisation",
            False,
            "委托他人办理时提供",
        ),
    ),
)

SERVICES: dict[str, ServiceSpec] = {s.code: s for s in (DRAINAGE, SOIL_WATER)}
DETAILS_MODELS: dict[str, type[BaseModel]] = {
    DRAINAGE.code: DrainageDetails,
    SOIL_WATER.code: SwcDetails,
}
