"""The public status page of data requests and error reports (数据需求与纠错).

Every report with its state (new, accepted, planned with a date, rejected with a reason,
fixed in version N), never who sent it (``leaderboard.reports.public_listing``). Reports are
sent from a sandbox (``sandbox.request_dataset``, ``sandbox.report_error`` or ``contesthub
reports request|error``) and triaged with ``contesthub reports triage``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from leaderboard import queries, reports
from leaderboard.views import common
from leaderboard.views.common import t


def _status(r: dict) -> str:
    return {
        "new": t("report_new"),
        "accepted": t("report_accepted"),
        "planned": t("report_planned", date=r["planned_for"] or ""),
        "rejected": t("report_rejected", reason=r["reason"] or ""),
        "fixed": t("report_fixed", version=r["fixed_in_version"] or ""),
    }.get(r["status"], r["status"])


def _where(r: dict) -> str:
    parts = (f"v{r['version']}" if r["version"] else None, r["table"], r["field"], r["row_key"])
    return " / ".join(str(x) for x in parts if x)


def _kind(kind: str) -> str:
    return {"request": t("report_kind_request"), "error": t("report_kind_error")}.get(kind, kind)


def main() -> None:
    st.title(t("page_reports"))
    st.caption(t("reports_how"))
    try:
        with queries.store(common.source()).read_session() as s:
            rows = reports.public_listing(s)
    except Exception as exc:
        common.store_unavailable(exc)
        return
    if not rows:
        st.info(t("reports_none"))
        return
    st.dataframe(
        pd.DataFrame(
            {
                t("col_report_id"): [r["id"] for r in rows],
                t("col_kind"): [_kind(r["kind"]) for r in rows],
                t("col_dataset"): [r["dataset"] for r in rows],
                t("col_where"): [_where(r) for r in rows],
                t("col_what"): [r["description"] for r in rows],
                t("col_state"): [_status(r) for r in rows],
            }
        ),
        hide_index=True,
    )


main()
