"""The work-order categories: the six service categories of the seed (涉水服务六类), each with
its sub-categories, default priority, deadlines per priority and Open311 attributes.

This is the starting set; administrators edit categories through the API afterwards, and
seed_categories() never overwrites an existing row, so their edits survive re-seeding.
The deadlines are the bureau's working assumptions (the seed article names none): clock
hours where water is coming in or running out, working days for ordinary work."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.workorders.models import Category
from watergrid.workorders.schemas import CategoryCreate


def _d(amount: float, unit: str) -> dict[str, Any]:
    return {"amount": amount, "unit": unit}


# Response / handling per priority. A category may tighten these (see SEED).
EMERGENCY = {"response": _d(1, "hours"), "handling": _d(24, "hours")}
URGENT = {"response": _d(2, "hours"), "handling": _d(2, "workdays")}
NORMAL = {"response": _d(1, "workdays"), "handling": _d(5, "workdays")}


def _deadlines(**overrides: dict[str, Any]) -> dict[str, Any]:
    base = {"emergency": EMERGENCY, "urgent": URGENT, "normal": NORMAL}
    base.update(overrides)
    return base


def _v(key: str, name: str, name_en: str) -> dict[str, str]:
    return {"key": key, "name": name, "name_en": name_en}


def _attr(
    code: str,
    datatype: str,
    description: str,
    description_en: str,
    *,
    required: bool = False,
    order: int = 1,
    values: list[dict[str, str]] | None = None,
    datatype_description: str = "",
) -> dict[str, Any]:
    return {
        "code": code,
        "datatype": datatype,
        "required": required,
        "description": description,
        "description_en": description_en,
        "order": order,
        "values": values or [],
        "datatype_description": datatype_description,
    }


YES_NO = [_v("yes", "是", "Yes"), _v("no", "否", "No")]
PREMISES = [
    _v("home", "住宅", "Home"),
    _v("shop", "商铺", "Shop"),
    _v("factory", "厂房", "Factory"),
    _v("basement", "地下室/车库", "Basement or car park"),
    _v("other", "其他", "Other"),
]
DEPTH = [
    _v("lt10", "10厘米以下（没过鞋面）", "Under 10 cm (over the shoes)"),
    _v("10to30", "10–30厘米（没过脚踝至小腿）", "10–30 cm (ankle to shin)"),
    _v("30to50", "30–50厘米（没过膝盖）", "30–50 cm (knee deep)"),
    _v("gt50", "50厘米以上（车辆难以通行）", "Over 50 cm (cars cannot pass)"),
]

SEED: list[dict[str, Any]] = [
    # -- 排水管理 drainage -------------------------------------------------------------
    {
        "code": "drainage.backflow",
        "name_zh": "排水倒灌",
        "name_en": "Drain backflow",
        "description_zh": "雨污水从排水管道倒灌进入房屋、商铺或地下空间。",
        "description_en": "Storm or foul water flowing back from the drains into buildings.",
        "default_priority": "urgent",
        "service_code": "101",
        "keywords": ["倒灌", "返水", "backflow"],
        "attributes": [
            _attr(
                "premises",
                "singlevaluelist",
                "倒灌进入的场所",
                "Where the water comes in",
                required=True,
                order=1,
                values=PREMISES,
            ),
            _attr(
                "depth_cm",
                "number",
                "室内积水深度（厘米，估计即可）",
                "Water depth indoors (cm, estimate)",
                order=2,
            ),
        ],
    },
    {
        "code": "drainage.blocked_drain",
        "name_zh": "排水管渠堵塞",
        "name_en": "Blocked drain",
        "description_zh": "雨水口、检查井或排水管渠堵塞，排水不畅。",
        "description_en": "A gully, manhole or drain pipe is blocked.",
        "default_priority": "normal",
        "service_code": "102",
        "keywords": ["堵塞", "下水道", "blocked"],
        "attributes": [
            _attr(
                "smell",
                "singlevaluelist",
                "是否有明显臭味",
                "Is there a strong smell",
                order=1,
                values=YES_NO,
            ),
        ],
    },
    {
        "code": "drainage.manhole_cover_missing",
        "name_zh": "井盖缺失或破损",
        "name_en": "Missing or broken manhole cover",
        "description_zh": "排水检查井井盖丢失、破损或移位，存在安全隐患。",
        "description_en": "A drainage manhole cover is missing, broken or displaced.",
        "default_priority": "emergency",
        "service_code": "103",
        "keywords": ["井盖", "manhole"],
        "attributes": [
            _attr(
                "road_type",
                "singlevaluelist",
                "井盖所在位置",
                "Where the manhole is",
                required=True,
                order=1,
                values=[
                    _v("carriageway", "机动车道", "Carriageway"),
                    _v("sidewalk", "人行道", "Pavement"),
                    _v("bike_lane", "非机动车道", "Cycle lane"),
                    _v("green", "绿化带或其他", "Green strip or elsewhere"),
                ],
            ),
            _attr(
                "marked",
                "singlevaluelist",
                "现场是否已设置警示",
                "Is the spot already marked",
                order=2,
                values=YES_NO,
            ),
        ],
    },
    {
        "code": "drainage.sewage_overflow",
        "name_zh": "污水冒溢",
        "name_en": "Sewage overflow",
        "description_zh": "污水从检查井或管道冒出、外溢。",
        "description_en": "Sewage spilling from a manhole or pipe.",
        "default_priority": "urgent",
        "service_code": "104",
        "keywords": ["冒溢", "污水", "overflow"],
        "attributes": [],
    },
    {
        "code": "drainage.illegal_discharge",
        "name_zh": "违法排水",
        "name_en": "Illegal discharge",
        "description_zh": "偷排、乱排污水或雨污混接。",
        "description_en": "Unlawful discharge of waste water, or foul water into storm drains.",
        "default_priority": "normal",
        "service_code": "105",
        "keywords": ["偷排", "乱排", "discharge"],
        "attributes": [
            _attr(
                "discharge_type",
                "multivaluelist",
                "排放物（可多选）",
                "What is discharged (any)",
                order=1,
                values=[
                    _v("sewage", "生活污水", "Domestic sewage"),
                    _v("industrial", "工业废水", "Industrial waste water"),
                    _v("oil", "油污", "Oil"),
                    _v("mud", "泥浆", "Mud"),
                    _v("unknown", "不清楚", "Not sure"),
                ],
            ),
            _attr(
                "ongoing",
                "singlevaluelist",
                "是否正在排放",
                "Is it happening now",
                order=2,
                values=YES_NO,
            ),
        ],
    },
    # -- 供水管理 water supply ---------------------------------------------------------
    {
        "code": "water_supply.no_water",
        "name_zh": "停水",
        "name_en": "No water",
        "description_zh": "无预告停水或停水超时。",
        "description_en": "Supply cut without notice, or a planned cut running over.",
        "default_priority": "urgent",
        "service_code": "201",
        "keywords": ["停水", "没水", "no water"],
        "attributes": [
            _attr(
                "since",
                "datetime",
                "开始停水的时间",
                "When the water stopped",
                required=True,
                order=1,
                datatype_description="ISO 8601，例如 2026-07-01T08:30+08:00",
            ),
            _attr(
                "households",
                "number",
                "受影响户数（估计）",
                "Households affected (estimate)",
                order=2,
            ),
        ],
    },
    {
        "code": "water_supply.low_pressure",
        "name_zh": "水压不足",
        "name_en": "Low water pressure",
        "description_zh": "水压偏低，高层或用水高峰时无法正常用水。",
        "description_en": "Pressure too low for normal use.",
        "default_priority": "normal",
        "service_code": "202",
        "keywords": ["水压", "水小", "pressure"],
        "attributes": [
            _attr("floor", "number", "所在楼层", "Floor", order=1),
        ],
    },
    {
        "code": "water_supply.burst_pipe",
        "name_zh": "爆管漏水",
        "name_en": "Burst pipe",
        "description_zh": "供水管道爆裂或明显漏水。",
        "description_en": "A water main has burst or is visibly leaking.",
        "default_priority": "emergency",
        "service_code": "203",
        "keywords": ["爆管", "漏水", "burst"],
        "attributes": [
            _attr(
                "flow",
                "singlevaluelist",
                "漏水情况",
                "How much water",
                required=True,
                order=1,
                values=[
                    _v("seeping", "渗漏", "Seeping"),
                    _v("flowing", "流淌", "Running"),
                    _v("gushing", "喷涌", "Gushing"),
                ],
            ),
        ],
        # A burst main empties the network: tighter than the general emergency limit.
        "deadlines": _deadlines(
            emergency={"response": _d(0.5, "hours"), "handling": _d(12, "hours")}
        ),
    },
    {
        "code": "water_supply.water_quality",
        "name_zh": "水质异常",
        "name_en": "Water quality",
        "description_zh": "自来水浑浊、有异色、异味或杂质。",
        "description_en": "Tap water is cloudy, coloured, smells or tastes wrong.",
        "default_priority": "urgent",
        "service_code": "204",
        "keywords": ["水质", "黄水", "quality"],
        "attributes": [
            _attr(
                "symptoms",
                "multivaluelist",
                "异常表现（可多选）",
                "What is wrong (any)",
                required=True,
                order=1,
                values=[
                    _v("colour", "有颜色", "Coloured"),
                    _v("cloudy", "浑浊", "Cloudy"),
                    _v("smell", "有异味", "Smells"),
                    _v("taste", "口感异常", "Tastes wrong"),
                    _v("particles", "有杂质", "Particles"),
                ],
            ),
        ],
    },
    # -- 水土保持 soil and water conservation -------------------------------------------
    {
        "code": "soil_water.site_mud_runoff",
        "name_zh": "工地泥水外排",
        "name_en": "Construction-site mud runoff",
        "description_zh": "建设工地泥浆、泥水外流至道路、管网或河道。",
        "description_en": "Mud or silty water leaving a construction site.",
        "default_priority": "normal",
        "service_code": "301",
        "keywords": ["泥水", "工地", "mud"],
        "attributes": [
            _attr(
                "site_name",
                "string",
                "工地或项目名称（如知道）",
                "Site or project name (if known)",
                order=1,
            ),
            _attr(
                "reaches",
                "singlevaluelist",
                "泥水流向",
                "Where the mud goes",
                order=2,
                values=[
                    _v("road", "道路", "Road"),
                    _v("drain", "雨水口/管网", "Drains"),
                    _v("river", "河道", "River"),
                ],
            ),
        ],
    },
    {
        "code": "soil_water.slope_erosion",
        "name_zh": "边坡水土流失",
        "name_en": "Slope erosion",
        "description_zh": "裸露边坡冲刷、垮塌或水土流失。",
        "description_en": "A bare slope is washing away or slipping.",
        "default_priority": "urgent",
        "service_code": "302",
        "keywords": ["边坡", "滑坡", "erosion"],
        "attributes": [],
    },
    # -- 海绵城市 sponge city ------------------------------------------------------------
    {
        "code": "sponge_city.facility_damage",
        "name_zh": "海绵设施损坏",
        "name_en": "Sponge facility damage",
        "description_zh": "雨水花园、透水铺装、绿色屋顶、植草沟等设施损坏或失效。",
        "description_en": "A rain garden, permeable paving, green roof or swale is damaged.",
        "default_priority": "normal",
        "service_code": "401",
        "keywords": ["海绵", "透水", "sponge"],
        "attributes": [
            _attr(
                "facility_type",
                "singlevaluelist",
                "设施类型",
                "Facility",
                required=True,
                order=1,
                values=[
                    _v("rain_garden", "雨水花园", "Rain garden"),
                    _v("permeable_paving", "透水铺装", "Permeable paving"),
                    _v("green_roof", "绿色屋顶", "Green roof"),
                    _v("swale", "植草沟", "Swale"),
                    _v("other", "其他", "Other"),
                ],
            ),
        ],
    },
    {
        "code": "sponge_city.consultation",
        "name_zh": "海绵城市咨询",
        "name_en": "Sponge city consultation",
        "description_zh": "海绵城市建设要求、设计审查等政策与技术咨询。",
        "description_en": "Questions on sponge-city requirements and design review.",
        "default_priority": "normal",
        "service_code": "402",
        "keywords": ["咨询", "consultation"],
        "attributes": [
            _attr("project", "string", "项目名称", "Project name", order=1),
        ],
    },
    # -- 防灾减灾 disaster prevention -----------------------------------------------------
    {
        "code": "disaster.waterlogging",
        "name_zh": "道路或小区积水",
        "name_en": "Waterlogging",
        "description_zh": "降雨后道路、小区、下穿通道等处积水。",
        "description_en": "Standing water on a road, estate or underpass after rain.",
        "default_priority": "emergency",
        "service_code": "501",
        "keywords": ["积水", "内涝", "waterlogging"],
        "attributes": [
            _attr(
                "depth",
                "singlevaluelist",
                "积水深度（估计）",
                "Estimated depth",
                required=True,
                order=1,
                values=DEPTH,
            ),
            _attr(
                "vehicles_trapped",
                "singlevaluelist",
                "是否有车辆或人员被困",
                "Are vehicles or people trapped",
                order=2,
                values=YES_NO,
            ),
        ],
    },
    {
        "code": "disaster.flood_barrier_request",
        "name_zh": "防洪挡板/沙袋申请",
        "name_en": "Flood barrier or sandbag request",
        "description_zh": "申请挡水板、沙袋等防汛物资。",
        "description_en": "A request for flood boards or sandbags.",
        "default_priority": "urgent",
        "service_code": "502",
        "keywords": ["挡板", "沙袋", "sandbag"],
        "attributes": [
            _attr(
                "quantity", "number", "需要数量（件/袋）", "Quantity needed", required=True, order=1
            ),
        ],
    },
    {
        "code": "disaster.hazard_report",
        "name_zh": "涉水安全隐患",
        "name_en": "Water hazard report",
        "description_zh": "河道、水库、边坡、低洼地等处的涉水安全隐患。",
        "description_en": "A water-related hazard at a river, reservoir, slope or low spot.",
        "default_priority": "urgent",
        "service_code": "503",
        "keywords": ["隐患", "hazard"],
        "attributes": [],
    },
    # -- 管网查询 pipe-network query ------------------------------------------------------
    {
        "code": "pipe_network.pre_construction_query",
        "name_zh": "施工前管线查询",
        "name_en": "Pre-construction pipe query",
        "description_zh": "开挖施工前查询范围内的供水、雨水、污水管线。",
        "description_en": "Which pipes lie near a site before digging.",
        "default_priority": "normal",
        "service_code": "601",
        "keywords": ["管线", "开挖", "pipes"],
        "attributes": [
            _attr(
                "radius_m", "number", "查询半径（米）", "Search radius (m)", required=True, order=1
            ),
            _attr(
                "dig_depth_m", "number", "计划开挖深度（米）", "Planned digging depth (m)", order=2
            ),
            _attr("start_date", "datetime", "计划开工时间", "Planned start", order=3),
            _attr(
                "company",
                "string",
                "建设/施工单位",
                "Developer or contractor",
                required=True,
                order=4,
            ),
        ],
        "deadlines": _deadlines(
            normal={"response": _d(1, "workdays"), "handling": _d(3, "workdays")}
        ),
    },
    {
        "code": "pipe_network.data_request",
        "name_zh": "管网资料申请",
        "name_en": "Pipe-network data request",
        "description_zh": "申请管网图纸或数据资料。",
        "description_en": "A request for pipe-network drawings or data.",
        "default_priority": "normal",
        "service_code": "602",
        "keywords": ["资料", "图纸", "data"],
        "attributes": [
            _attr("purpose", "text", "用途说明", "What the data is for", required=True, order=1),
        ],
        "deadlines": _deadlines(
            normal={"response": _d(1, "workdays"), "handling": _d(10, "workdays")}
        ),
    },
]


def seed_models() -> list[CategoryCreate]:
    out = []
    for position, raw in enumerate(SEED):
        item = {"deadlines": _deadlines(), "position": position * 10, **raw}
        out.append(CategoryCreate.model_validate(item))
    return out


def seed_categories(db: Session) -> int:
    """Insert the seed categories that are missing; returns how many were added. Existing
    rows (perhaps edited by an administrator) are left as they are. Does not commit."""
    from watergrid.workorders import service

    have = set(db.scalars(select(Category.code)))
    added = 0
    for item in seed_models():
        if item.code in have:
            continue
        service.create_category(db, data=item)
        added += 1
    return added
