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

# (column key in the rows, label key); the language's own column is shown.
OPENING = [
    ("resource_code", "col_resource_code"),
    ("id", "col_dataset"),
    ("title", "col_title"),
    ("provider", "col_provider"),
    ("provider_code", "col_provider_code"),
    ("theme", "facet_theme"),
    ("theme_code", "col_theme_code"),
    ("opening_type", "col_opening_type"),
    ("usage_mode", "col_usage_mode"),
    ("update_cycle", "col_update_cycle"),
]
SHARING = [*OPENING[:7], ("sharing_type", "col_sharing_type"), *OPENING[8:]]
PLAN = [
    ("id", "col_dataset"),
    ("title", "col_title"),
    ("publisher", "facet_publisher"),
    ("theme", "facet_theme"),
    ("opening_type", "col_opening_type"),
    ("planned_date", "col_planned_date"),
    ("status", "col_status"),
    ("days_overdue", "col_days_overdue"),
]


def _frame(rows: list[dict], columns: list[tuple[str, str]], lang: str) -> pd.DataFrame:
    def value(r: dict, key: str):
        return r.get(f"{key}_{lang}", r.get(key, ""))

    return pd.DataFrame({t(label): [value(r, key) for r in rows] for key, label in columns})


def _section(name: str, title_key: str, rows: list[dict], columns: list[tuple[str, str]], lang: str) -> None:
    st.subheader(t(title_key))
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
    _section("opening", "list_opening", gov_catalog.opening_list(doc), OPENING, lang)
    _section("sharing", "list_sharing", gov_catalog.sharing_list(doc), SHARING, lang)
    plan = gov_catalog.opening_plan(gov_catalog.published_plan(src.data_root), doc)
    overdue = [p for p in plan if p["status"] == "overdue"]
    _section("plan", "list_plan", plan, PLAN, lang)
    if overdue:
        st.warning(t("plan_overdue", n=len(overdue), ids=", ".join(p["id"] for p in overdue)))


main()
