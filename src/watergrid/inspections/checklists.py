"""The checklist the demo campaign uses: water supply and drainage facilities of a
residential community (住宅小区供排水设施). Written for this project from the kinds of defect
the seed's campaign chased (rain/sewage misconnections, secondary water supply hygiene,
backflow into basement car parks); a bureau edits or replaces it as a template."""

from __future__ import annotations

from watergrid.inspections.schemas import ChecklistItem, TemplateCreate

RESIDENTIAL_SUPPLY_DRAINAGE = TemplateCreate(
    code="RES-SD-2019",
    name="新建住宅小区供排水设施检查表",
    description="适用于2019年以来新建住宅小区的供水、排水设施专项排查；逐项填写，"
    "“存在问题”须拍照并写明位置。",
    items=[
        ChecklistItem(
            code="S01",
            section="供水",
            text="二次供水水箱（池）加盖加锁，人孔、通气管、溢流管防护完好",
            fault_rule="水箱（池）无盖或未上锁，通气管、溢流管无防虫网",
            severity="major",
        ),
        ChecklistItem(
            code="S02",
            section="供水",
            text="二次供水设施按期清洗消毒，有水质检测报告",
            fault_rule="近6个月无清洗消毒记录或无水质检测报告",
            severity="major",
        ),
        ChecklistItem(
            code="S03",
            section="供水",
            text="生活水泵房整洁通风、排水良好，设备运行正常",
            fault_rule="泵房积水、漏水，设备异常或堆放杂物",
            severity="minor",
        ),
        ChecklistItem(
            code="S04",
            section="供水",
            text="供水管道、阀门无渗漏，管道标识清晰",
            fault_rule="可见渗漏，或管道、阀门无标识",
            severity="minor",
        ),
        ChecklistItem(
            code="S05",
            section="供水",
            text="水表井、表箱完好，户表计量正常",
            fault_rule="表井积水、表箱破损或户表停走",
            severity="minor",
        ),
        ChecklistItem(
            code="S06",
            section="供水",
            text="二次供水设施已移交专业供水企业统一管理或签订委托管理协议",
            fault_rule="未移交且无委托管理协议",
            severity="major",
        ),
        ChecklistItem(
            code="D01",
            section="排水",
            text="小区雨污分流到位，无雨污混接、错接",
            fault_rule="雨水管接入污水管，或污水管接入雨水管",
            severity="critical",
        ),
        ChecklistItem(
            code="D02",
            section="排水",
            text="阳台、厨房废水接入污水系统",
            fault_rule="阳台或厨房废水接入雨水立管",
            severity="major",
        ),
        ChecklistItem(
            code="D03",
            section="排水",
            text="化粪池、隔油池完好，定期清掏，无满溢",
            fault_rule="池体破损、满溢，或一年内无清掏记录",
            severity="minor",
        ),
        ChecklistItem(
            code="D04",
            section="排水",
            text="检查井、雨水口井盖完好，防坠网齐全，雨水口无堵塞",
            fault_rule="井盖破损或缺失、无防坠网，或雨水口堵塞",
            severity="major",
        ),
        ChecklistItem(
            code="D05",
            section="排水",
            text="污水接入市政管网规范，已办理排水接驳手续",
            fault_rule="未办理排水报装（接驳）手续，或私自接驳",
            severity="critical",
        ),
        ChecklistItem(
            code="D06",
            section="排水",
            text="地下车库出入口挡水设施、集水井及排水泵完好",
            fault_rule="无挡水板（闸），或集水井排水泵不能正常启动",
            severity="major",
        ),
        ChecklistItem(
            code="D07",
            section="排水",
            text="小区排水管道畅通，无淤堵、破损，近一年有疏通记录",
            fault_rule="管道淤堵、破损，或一年内无疏通记录",
            severity="minor",
        ),
    ],
)
