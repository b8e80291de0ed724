"""China's catalog lists: the opening list (开放清单), the sharing list (共享清单) and the opening
plan (开放计划) with its overdue entries, each downloadable as CSV and linked to the public data
service's JSON and CSV (sandbox/gov_catalog.py builds the rows; hub/data_service.py serves them)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from leaderboard import queries
from leaderboard.views import common
from leaderboard.views.common import t
from sandbox import gov_catalog


# (column key in the rows, its label); the language's own column is shown.
def _opening() -> list[tuple[str, str]]:
    return [
        ("resource_code", t("col_resource_code")),
        ("id", t("col_dataset")),
        ("title", t("col_title")),
        ("provider", t("col_provider")),
        ("provider_code", t("col_provider_code")),
        ("theme", t("facet_theme")),
        ("theme_code", t("col_theme_code")),
        ("opening_type", t("col_opening_type")),
        ("usage_mode", t("col_usage_mode")),
        ("update_cycle", t("col_update_cycle")),
    ]


def _sharing() -> list[tuple[str, str]]:
    opening = _opening()
    return [*opening[:7], ("sharing_type", t("col_sharing_type")), *opening[8:]]


def _plan() -> list[tuple[str, str]]:
    return [
        ("id", t("col_dataset")),
        ("title", t("col_title")),
        ("publisher", t("facet_publisher")),
        ("theme", t("facet_theme")),
        ("opening_type", t("col_opening_type")),
        ("planned_date", t("col_planned_date")),
        ("status", t("col_status")),
        ("days_overdue", t("col_days_overdue")),
    ]


def _frame(rows: list[dict], columns: list[tuple[str, str]], lang: str) -> pd.DataFrame:
    def value(r: dict, key: str):
        return r.get(f"{key}_{lang}", r.get(key, ""))

    return pd.DataFrame({label: [value(r, key) for r in rows] for key, label in columns})


def _section(name: str, title: str, rows: list[dict], columns: list[tuple[str, str]], lang: str) -> None:
    st.subheader(title)
    if not rows:
        st.caption(t("list_empty"))
    else:
        st.dataframe(_frame(rows, columns, lang), hide_index=True)
    base = common.data_service_url()
    st.markdown(f"[JSON]({base}api/lists/{name}.json) · [CSV]({base}api/lists/{name}.csv)")
    st.download_button(
        t("list_download_csv"),
        gov_catalog.to_csv(rows),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"list_csv_{name}",
    )


def main() -> None:
    src = common.source()
    lang = common.lang()
    st.title(t("lists_title"))
    st.caption(t("lists_intro"))
    doc = queries.catalog(src.data_root)
    _section("opening", t("list_opening"), gov_catalog.opening_list(doc), _opening(), lang)
    _section("sharing", t("list_sharing"), gov_catalog.sharing_list(doc), _sharing(), lang)
    plan = gov_catalog.opening_plan(gov_catalog.published_plan(src.data_root), doc)
    overdue = [p for p in plan if p["status"] == "overdue"]
    _section("plan", t("list_plan"), plan, _plan(), lang)
    if overdue:
        st.warning(t("plan_overdue", n=len(overdue), ids=", ".join(p["id"] for p in overdue)))


main()
