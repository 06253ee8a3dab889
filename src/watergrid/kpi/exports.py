"""Excel and CSV exports of the KPI tables and of the orders behind a figure.

Excel is written by openpyxl in write-only mode: rows go straight to temporary XML parts
and the workbook is zipped on save, so 100,000 orders take a few megabytes, not a copy of
every row in memory; the file is then streamed to the client in chunks and removed. Orders
are read from the database with a server-side cursor (stream_results), a batch at a time.
CSV is produced row by row as the response is sent, with a BOM so Excel reads the Chinese."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from watergrid.kpi import service
from watergrid.kpi.definitions import METRICS, SOURCE_LABELS
from watergrid.settings import get_settings

# The KPI table: (header zh, header en, how to get it from a Figures, number format).
KPI_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("受理量", "Orders received", "volume", "0"),
    ("有效工单", "Valid orders", "#valid", "0"),
    ("自查发现", "Self-discovered", "#patrol", "0"),
    ("问题自查率", "Self-discovery rate", "self_discovery_rate", "0.00%"),
    ("应响应数", "Responses due", "#response_due", "0"),
    ("按时响应", "Responded on time", "#response_met", "0"),
    ("响应及时率", "Response timeliness", "response_rate", "0.00%"),
    ("超时响应数", "Responses late", "response_missed", "0"),
    ("应处置数", "Handling due", "#handling_due", "0"),
    ("按期处置", "Handled on time", "#handling_met", "0"),
    ("处置及时率", "Handling timeliness", "handling_rate", "0.00%"),
    ("超期处置数", "Handling late", "handling_missed", "0"),
    ("办结率", "Closure rate", "closure_rate", "0.00%"),
    ("评价数", "Ratings", "#rated", "0"),
    ("满意率", "Satisfaction rate", "satisfaction_rate", "0.00%"),
    ("平均评分", "Mean rating", "rating_mean", "0.00"),
    ("平均响应用时(小时)", "Mean time to respond (h)", "response_mean_h", "0.00"),
    ("响应用时P90(小时)", "P90 time to respond (h)", "response_p90_h", "0.00"),
    ("平均处置用时(小时)", "Mean time to handle (h)", "handling_mean_h", "0.00"),
    ("处置用时P90(小时)", "P90 time to handle (h)", "handling_p90_h", "0.00"),
    ("返工数", "Reopened", "#reworks", "0"),
    ("延期数", "Extended", "#extensions", "0"),
)
ORDER_HEADERS = (
    "工单编号",
    "状态",
    "诉求子类",
    "来源",
    "网格",
    "部门",
    "提交时间",
    "时限",
    "结果",
    "用时(小时)",
    "评分",
)
OUTCOME_ZH = {
    "met": "按时",
    "missed": "超时",
    "pending": "未到期",
    "paused": "挂起",
    "none": "不计",
}


def kpi_value(f: service.Figures, spec: str) -> float | int | None:
    if spec.startswith("#"):
        return int(f.as_dict()["counts"][spec[1:]])
    return f.value(spec)


def kpi_rows(
    db: Session, *, dim: str, start: date, end: date, now: datetime, principal: Any
) -> list[tuple[str, str, service.Figures]]:
    """(code, name, figures) per key of `dim` the principal may see, in code order; dim
    'all' gives the one district row."""
    if dim == "all":
        service.check_scope(principal, "all", "")
        return [("", "全区", service.figures(db, dim="all", key="", start=start, end=end, now=now))]
    rows = service.ranking(
        db, dim=dim, metric="volume", start=start, end=end, now=now, principal=principal
    )
    return sorted(((r.code, r.name_zh, r.figures) for r in rows), key=lambda r: r[0])


def _local(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.astimezone(ZoneInfo(get_settings().timezone)).replace(tzinfo=None)


def _cell(ws: Any, value: Any, fmt: str | None = None, bold: bool = False) -> WriteOnlyCell:
    c = WriteOnlyCell(ws, value=value)
    if fmt:
        c.number_format = fmt
    if bold:
        c.font = Font(bold=True)
    return c


def write_kpi_sheet(
    wb: Workbook,
    *,
    title: str,
    dim: str,
    rows: Sequence[tuple[str, str, service.Figures]],
    period: service.Period,
) -> None:
    ws = wb.create_sheet(title=title[:31])
    ws.append(
        [_cell(ws, f"统计区间 {period.start.isoformat()} 至 {period.end.isoformat()}", bold=True)]
    )
    header = ["编码", "名称"] + [h for h, _, _, _ in KPI_COLUMNS]
    ws.append([_cell(ws, h, bold=True) for h in header])
    for code, name, f in rows:
        cells = [_cell(ws, code), _cell(ws, name)]
        for _, _, spec, fmt in KPI_COLUMNS:
            cells.append(_cell(ws, kpi_value(f, spec), fmt))
        ws.append(cells)


def _order_rows(
    db: Session, *, metric: str, where: ColumnElement[bool], now: datetime, limit: int | None
) -> Iterator[list[Any]]:
    nm = service.names(db)
    for r in service.drill_iter(db, metric=metric, where=where, now=now, limit=limit, stream=True):
        yield [
            r.number,
            r.state,
            nm.of("subcategory", r.category_code)[0],
            SOURCE_LABELS.get(r.source, (r.source,))[0],
            nm.of("grid", str(r.grid_id))[0] if r.grid_id else "",
            nm.of("department", str(r.department_id))[0] if r.department_id else "",
            _local(r.created_at),
            _local(r.due_at),
            OUTCOME_ZH.get(r.outcome, r.outcome),
            r.hours,
            r.rating,
        ]


def write_orders_sheet(wb: Workbook, rows: Iterable[list[Any]], title: str = "工单明细") -> int:
    ws = wb.create_sheet(title=title[:31])
    ws.append([_cell(ws, h, bold=True) for h in ORDER_HEADERS])
    n = 0
    for row in rows:
        row[6] = _cell(ws, row[6], "yyyy-mm-dd hh:mm") if row[6] else None
        row[7] = _cell(ws, row[7], "yyyy-mm-dd hh:mm") if row[7] else None
        ws.append(row)
        n += 1
    return n


def new_workbook() -> Workbook:
    return Workbook(write_only=True)


def save_to_temp(wb: Workbook) -> str:
    """Save to a temporary file and return its path (the caller removes it)."""
    fd, path = tempfile.mkstemp(prefix="wg-kpi-", suffix=".xlsx")
    os.close(fd)
    wb.save(path)
    return path


def iter_file(path: str, chunk: int = 256 * 1024) -> Iterator[bytes]:
    """The file in chunks, removed once read (or when the client goes away)."""
    try:
        with open(path, "rb") as fh:
            while True:
                data = fh.read(chunk)
                if not data:
                    break
                yield data
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)


def kpi_xlsx(
    db: Session, *, dims: Sequence[str], period: service.Period, now: datetime, principal: Any
) -> str:
    """A workbook with one KPI sheet per dimension; returns the temporary file's path."""
    from watergrid.kpi.definitions import DIM_LABELS

    wb = new_workbook()
    for dim in dims:
        rows = kpi_rows(
            db, dim=dim, start=period.start, end=period.end, now=now, principal=principal
        )
        write_kpi_sheet(wb, title=DIM_LABELS[dim][0], dim=dim, rows=rows, period=period)
    return save_to_temp(wb)


def orders_xlsx(
    db: Session, *, metric: str, where: ColumnElement[bool], now: datetime, limit: int | None = None
) -> str:
    wb = new_workbook()
    write_orders_sheet(wb, _order_rows(db, metric=metric, where=where, now=now, limit=limit))
    return save_to_temp(wb)


def _csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    buf = io.StringIO()
    w = csv.writer(buf)
    yield "\ufeff".encode()
    w.writerow(header)
    for i, row in enumerate(rows):
        w.writerow(
            [
                ""
                if v is None
                else (v.strftime("%Y-%m-%d %H:%M") if isinstance(v, datetime) else v)
                for v in row
            ]
        )
        if i % 500 == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def kpi_csv(rows: Sequence[tuple[str, str, service.Figures]]) -> Iterator[bytes]:
    header = ["编码", "名称"] + [h for h, _, _, _ in KPI_COLUMNS]
    body = (
        [code, name] + [_csv_num(kpi_value(f, spec), fmt) for _, _, spec, fmt in KPI_COLUMNS]
        for code, name, f in rows
    )
    return _csv_lines(header, body)


def _csv_num(v: float | int | None, fmt: str) -> Any:
    if v is None:
        return ""
    if fmt == "0.00%":
        return f"{v * 100:.2f}%"
    return v


def orders_csv(
    db: Session, *, metric: str, where: ColumnElement[bool], now: datetime, limit: int | None = None
) -> Iterator[bytes]:
    return _csv_lines(
        ORDER_HEADERS, _order_rows(db, metric=metric, where=where, now=now, limit=limit)
    )


assert all(spec.lstrip("#") in METRICS or spec.startswith("#") for _, _, spec, _ in KPI_COLUMNS)
