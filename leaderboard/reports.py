"""Data requests and error reports: anyone signed in asks for a dataset the catalog lacks, or
reports an error in a published one (dataset, version, table, row key, field, what is wrong).

An error report is checked against the catalog before it is kept (the dataset, version, table
and field must exist as published), so organizers get something they can find. Organizers
triage: accepted, planned (with a date), rejected (with a reason) or fixed (in version N of the
dataset). Every step goes into the audit log. The public status page lists every report
without who sent it (``leaderboard/views/reports.py``); a version that fixes reports lists them
(:func:`fixed_by`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from leaderboard import audit
from leaderboard.models import DataReport
from sandbox import catalog, clock
from sandbox.errors import ContesthubError, NotFound

KINDS = ("request", "error")
STATUSES = ("new", "accepted", "planned", "rejected", "fixed")
MAX_TEXT = 4000
MAX_NAME = 100
MAX_ROW_KEY = 200


class ReportError(ContesthubError):
    code = "report-invalid"


def _bounded(value: str | None, limit: int, name: str, *, required: bool = False) -> str | None:
    value = (value or "").strip() or None
    if value is None and required:
        raise ReportError(f"{name} is empty; write it", f"{name} 为空，请填写")
    if value is not None and len(value) > limit:
        raise ReportError(f"{name} has {len(value)} characters; at most {limit}", f"{name} 最多 {limit} 个字符")
    return value


def _check_published(data_root: Path, dataset: str, version: int | None, table: str | None, field: str | None) -> None:
    cat = catalog.load(data_root)
    listed = {**cat.get("conditional", {}), **cat["datasets"]}
    if dataset not in listed:
        raise NotFound(
            f"no published dataset {dataset!r}: report errors in published data; ask for a missing dataset "
            "with a data request instead",
            f"没有已发布的数据集 {dataset!r}：纠错只针对已发布的数据；缺少的数据集请提交数据需求",
        )
    versions = [v["version"] for v in listed[dataset]["versions"]]
    if version is not None and version not in versions:
        raise NotFound(
            f"dataset {dataset!r} has no version {version} (versions: {', '.join(map(str, versions))})",
            f"数据集 {dataset!r} 没有版本 {version}（现有：{', '.join(map(str, versions))}）",
        )
    if table is None:
        return
    entry = listed[dataset]["entry"]
    if version is not None and version != entry["version"] and dataset in cat["datasets"]:
        entry = catalog.entry(data_root, dataset, version)
    if table not in entry["tables"]:
        raise NotFound(
            f"dataset {dataset!r} has no table {table!r} (tables: {', '.join(entry['tables'])})",
            f"数据集 {dataset!r} 没有表 {table!r}（现有：{', '.join(entry['tables'])}）",
        )
    fields = [f["name"] for f in entry["tables"][table]["schema"]["fields"]]
    if field is not None and field not in fields:
        raise NotFound(
            f"table {dataset}.{table} has no field {field!r} (fields: {', '.join(fields)})",
            f"表 {dataset}.{table} 没有字段 {field!r}（现有：{', '.join(fields)}）",
        )


def submit(
    session: Session,
    data_root: Path,
    user: str,
    kind: str,
    *,
    dataset: str,
    description: str,
    version: int | None = None,
    table: str | None = None,
    row_key: str | None = None,
    field: str | None = None,
) -> DataReport:
    if kind not in KINDS:
        raise ReportError(f"kind must be one of {', '.join(KINDS)}", f"类型必须是 {'、'.join(KINDS)} 之一")
    dataset = _bounded(dataset, MAX_NAME, "dataset", required=True)
    description = _bounded(description, MAX_TEXT, "description", required=True)
    table, field = _bounded(table, MAX_NAME, "table"), _bounded(field, MAX_NAME, "field")
    row_key = _bounded(row_key, MAX_ROW_KEY, "row key")
    if kind == "error":
        _check_published(data_root, dataset, version, table, field)
    report = DataReport(
        kind=kind,
        user=user,
        created_at=clock.now(),
        dataset=dataset,
        version=version,
        table_name=table,
        row_key=row_key,
        field=field,
        description=description,
        status="new",
    )
    session.add(report)
    session.flush()
    audit.record(session, user, f"report.{kind}", f"report/{report.id}", {"dataset": dataset, "version": version})
    return report


def triage(
    session: Session,
    report_id: int,
    by: str,
    status: str,
    *,
    planned_for: dt.date | None = None,
    reason: str | None = None,
    fixed_in_version: int | None = None,
) -> DataReport:
    report = session.get(DataReport, report_id)
    if report is None:
        raise NotFound(f"no report {report_id}", f"没有编号为 {report_id} 的报告")
    if status not in STATUSES[1:]:
        raise ReportError(
            f"status must be one of {', '.join(STATUSES[1:])}", f"状态必须是 {'、'.join(STATUSES[1:])} 之一"
        )
    reason = _bounded(reason, MAX_TEXT, "reason", required=status == "rejected")
    if status == "planned" and planned_for is None:
        raise ReportError("a planned report needs the date it is planned for", "计划处理的报告需要计划日期")
    if status == "fixed" and not (isinstance(fixed_in_version, int) and fixed_in_version >= 1):
        raise ReportError(
            "a fixed report needs the version of the dataset that fixes it", "已修复的报告需要注明修复版本"
        )
    report.status, report.reason, report.decided_by, report.decided_at = status, reason, by, clock.now()
    report.planned_for = planned_for if status == "planned" else None
    report.fixed_in_version = fixed_in_version if status == "fixed" else None
    audit.record(
        session,
        by,
        "report.triage",
        f"report/{report.id}",
        {"status": status, "planned_for": planned_for, "reason": reason, "fixed_in_version": fixed_in_version},
    )
    return report


def public_listing(session: Session) -> list[dict]:
    """Every report for the public status page: what and where, its state; never who sent it."""
    rows = session.execute(select(DataReport).order_by(DataReport.id.desc())).scalars()
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "dataset": r.dataset,
            "version": r.version,
            "table": r.table_name,
            "row_key": r.row_key,
            "field": r.field,
            "description": r.description,
            "status": r.status,
            "planned_for": r.planned_for.isoformat() if r.planned_for else None,
            "reason": r.reason,
            "fixed_in_version": r.fixed_in_version,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]


def fixed_by(session: Session, dataset: str, version: int) -> list[int]:
    """The reports version ``version`` of ``dataset`` fixes (its version notes cite them)."""
    q = select(DataReport.id).where(
        DataReport.dataset == dataset, DataReport.status == "fixed", DataReport.fixed_in_version == version
    )
    return list(session.execute(q.order_by(DataReport.id)).scalars())
