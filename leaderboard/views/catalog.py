"""Open-data catalog: search in Chinese or English, narrow by theme, open tier and publisher,
then read one dataset: its tables' schemas (units, indicator definitions), licence,
versions, quality report, sizes, the first rows, and the challenges built on it."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from leaderboard import queries
from leaderboard.views import common
from leaderboard.views.common import t
from sandbox.catalog import THEMES, TIERS
from sandbox.sizes import format_bytes

ALL = "__all__"


def _constraints(c: dict) -> str:
    parts = []
    for key, value in (c or {}).items():
        if key == "enum":
            value = " / ".join(map(str, value))
        parts.append(f"{key}={value}" if value is not True else key)
    return "; ".join(parts)


def _schema(table: dict, lang: str) -> pd.DataFrame:
    fields = table["schema"]["fields"]

    def text(v) -> str:
        return (v or {}).get(lang) or (v or {}).get("en") or "" if isinstance(v, dict) else str(v or "")

    return pd.DataFrame(
        {
            t("col_field"): [f["name"] for f in fields],
            t("col_type"): [f["type"] for f in fields],
            t("col_title"): [text(f.get("title")) for f in fields],
            t("col_unit"): [f.get("unit") or "" for f in fields],
            t("col_definition"): [text(f.get("definition")) or text(f.get("description")) for f in fields],
            t("col_constraints"): [_constraints(f.get("constraints")) for f in fields],
        }
    )


def _quality(table: dict, lang: str) -> None:
    q = table.get("quality") or {}
    holds = q.get("valid", True)
    summary = t(
        "quality_summary",
        read=f"{q.get('rows_read', table['rows']):,}",
        bad=f"{q.get('bad_rows', 0):,}",
        quarantined=f"{q.get('quarantined_rows', 0):,}",
    )
    (st.success if holds else st.warning)(summary)
    errors = q.get("errors") or []
    if errors:
        st.dataframe(
            pd.DataFrame(
                {
                    t("col_code"): [e.get("code", "") for e in errors],
                    t("col_field"): [e.get("field") or "" for e in errors],
                    t("col_count"): [int(e.get("count", 0)) for e in errors],
                    t("col_message"): [e.get(f"message_{lang}") or e.get("message_en", "") for e in errors],
                    t("col_examples"): [", ".join(str(x.get("row")) for x in e.get("examples") or []) for e in errors],
                }
            ),
            hide_index=True,
        )


def _privacy(table: dict, lang: str) -> None:
    """The privacy gate and re-identification risk of the table as published, pseudonyms and withheld rows."""
    p = table.get("privacy") or {}
    lines = []
    if p.get("quasi_identifiers") or p.get("risk"):
        person = p.get("counted_on", "rows").removeprefix("persons (").removesuffix(")")
        who = t("privacy_rows") if p.get("counted_on", "rows") == "rows" else t("privacy_persons", person=person)
        lines.append(
            t(
                "privacy_gate",
                quasi=", ".join(p.get("quasi_identifiers") or []) or "-",
                k=p["k"],
                who=who,
                suppressed=f"{p.get('suppressed_rows', 0):,}",
            )
        )
    risk = p.get("risk")
    if risk:
        lines.append(
            t(
                "privacy_risk",
                max=f"{risk['max']:.3f}",
                max_limit=f"{risk['thresholds']['max']:.3f}",
                average=f"{risk['average']:.3f}",
                average_limit=f"{risk['thresholds']['average']:.3f}",
                unique=f"{risk['unique_share']:.1%}",
            )
        )
    for f in table["schema"]["fields"]:
        priv = f.get("privacy") or {}
        if priv.get("rule") == "hash":
            reason = (priv.get("reason") or {}).get(lang, "")
            kept = priv.get("scope", "installation")
            if kept == "version":
                scope = t("scope_version")
            elif kept == "dataset":
                scope = t("scope_dataset", reason=reason)
            else:
                scope = t("scope_installation", reason=reason)
            lines.append(t("privacy_pseudonym", field=f["name"], scope=scope))
    if table.get("withheld"):
        lines.append(
            t("privacy_withheld", rows=f"{table['withheld']['rows']:,}", by=", ".join(table["withheld"]["by"]))
        )
    if lines:
        st.markdown("**" + t("privacy") + "**")
        for line in lines:
            st.caption(line)


def _links(e: dict, ds_id: str, table: str) -> None:
    """Where a program (or a person) gets this table: the data service's API and downloads."""
    st.markdown("**" + t("data_links") + "**")
    base = common.data_service_url()
    if e["open_tier"] != "unconditional":
        st.caption(t("data_links_closed"))
        return
    api = f"{base}api/datasets/{ds_id}"
    rows = f"{api}/tables/{table}/rows"
    download = f"{api}/tables/{table}/download"
    links = [
        (t("link_parquet"), f"{download}?format=parquet"),
        (t("link_csv"), f"{download}?format=csv"),
        (t("link_csv_gbk"), f"{download}?format=csv&encoding=gbk"),
        (t("link_rows"), rows),
        (t("link_dataset_api"), api),
    ]
    st.markdown(" · ".join(f"[{text}]({url})" for text, url in links))
    st.caption(t("data_links_cli", id=ds_id, table=table))


def _usage_chart(src, ds_id: str) -> None:
    """Downloads and API calls of the dataset per day (the data service's aggregates, hub/data_usage.py)."""
    from hub import data_usage

    st.subheader(t("usage_title"))
    rows = data_usage.rows(data_usage.load(data_usage.data_cache_dir(src.private_root)), ds_id)
    if not rows:
        st.caption(t("usage_none"))
        return
    kinds = {"api": t("usage_api"), "download": t("usage_download")}
    long = pd.DataFrame([{"day": r["day"], "kind": kinds[k], "count": r[k]} for r in rows for k in data_usage.KINDS])
    chart = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("day:N", title=t("usage_day")),
            y=alt.Y("count:Q", title=t("usage_count")),
            color=alt.Color("kind:N", title=""),
            xOffset="kind:N",
        )
    )
    st.altair_chart(chart, width="stretch")
    total = {kind: sum(r[kind] for r in rows) for kind in data_usage.KINDS}
    st.caption(t("usage_total", api=total["api"], download=total["download"], days=len(rows)))


def main() -> None:
    src = common.source()
    lang, tr = common.lang(), common.translator()
    st.title(t("catalog_title"))
    doc = queries.catalog(src.data_root)
    if not doc["datasets"]:
        st.info(t("catalog_empty"))
        return
    rows_all = queries.catalog_search(src.data_root, "", None, None)
    publishers = sorted({r[f"publisher_{lang}"] for r in rows_all})

    query = st.text_input(t("catalog_search"), key="catalog_query", placeholder=t("catalog_placeholder")).strip()
    a, b, c = st.columns(3)
    theme = a.selectbox(
        t("facet_theme"),
        [ALL, *THEMES],
        format_func=lambda v: tr("facet_all") if v == ALL else THEMES[v][lang],
        key="catalog_theme",
    )
    tier = b.selectbox(
        t("facet_tier"),
        [ALL, *TIERS],
        format_func=lambda v: tr("facet_all") if v == ALL else TIERS[v][lang],
        key="catalog_tier",
    )
    publisher = c.selectbox(
        t("facet_publisher"),
        [ALL, *publishers],
        format_func=lambda v: tr("facet_all") if v == ALL else v,
        key="catalog_publisher",
    )
    found = queries.catalog_search(src.data_root, query, None if theme == ALL else theme, None if tier == ALL else tier)
    if publisher != ALL:
        found = [r for r in found if r[f"publisher_{lang}"] == publisher]
    # Facet counts over the text search, so a reader sees where the matches are.
    counted = queries.catalog_search(src.data_root, query, None, None)
    st.caption(
        t("catalog_found", n=len(found))
        + " · "
        + " · ".join(f"{THEMES[k][lang]} {sum(r['theme'] == k for r in counted)}" for k in THEMES)
    )
    if not found:
        st.warning(t("catalog_nothing"))
        return
    listing = pd.DataFrame(
        {
            t("col_dataset"): [r["id"] for r in found],
            t("col_title"): [r[f"title_{lang}"] for r in found],
            t("facet_theme"): [THEMES[r["theme"]][lang] for r in found],
            t("facet_tier"): [TIERS[r["tier"]][lang] for r in found],
            t("facet_publisher"): [r[f"publisher_{lang}"] for r in found],
            t("col_rows"): [int(r["rows"]) for r in found],
            t("col_size"): [format_bytes(int(r["bytes"])) for r in found],
            t("col_version"): [int(r["version"]) for r in found],
            t("col_licence"): [r["licence"] for r in found],
        }
    )
    st.dataframe(listing, hide_index=True)

    ids = [r["id"] for r in found]
    chosen = st.selectbox(
        t("choose_dataset"),
        ids,
        format_func=lambda i: f"{doc['datasets'][i]['entry']['title'][lang]} ({i})",
        key="catalog_dataset",
    )
    item = doc["datasets"][chosen]
    e = item["entry"]
    st.header(e["title"][lang])
    st.markdown(common.md(e["description"][lang]))
    info = pd.DataFrame(
        {
            t("col_property"): [
                t("facet_theme"),
                t("facet_tier"),
                t("facet_publisher"),
                t("col_licence"),
                t("col_frequency"),
                t("col_temporal"),
                t("col_spatial"),
                t("col_keywords"),
                t("col_source"),
            ],
            t("col_value"): [
                THEMES[e["theme"]][lang],
                TIERS[e["open_tier"]][lang],
                e["publisher"][lang],
                f"{e['licence']['title']} ({e['licence']['id']}) {e['licence'].get('url', '')}".strip(),
                e.get("update_frequency", ""),
                f"{e['temporal']['start']} — {e['temporal']['end']}",
                e["spatial"][lang],
                ", ".join(e["keywords"][lang]),
                e["source"].get("citation") or "",
            ],
        }
    )
    st.dataframe(info, hide_index=True)

    st.subheader(t("versions"))
    st.dataframe(
        pd.DataFrame(
            {
                t("col_version"): [v["version"] for v in item["versions"]],
                t("col_built"): [v["built_at"] for v in item["versions"]],
                t("col_descriptor"): [v["descriptor_version"] for v in item["versions"]],
                t("col_rows"): [int(v["rows"]) for v in item["versions"]],
            }
        ),
        hide_index=True,
    )

    _usage_chart(src, chosen)

    contest = queries.contest(src)
    users = [ch for ch in contest.challenges if ch.dataset == chosen]
    st.subheader(t("used_by"))
    if users:
        st.dataframe(
            pd.DataFrame(
                {
                    t("col_challenge"): [common.challenge_title(ch) for ch in users],
                    t("col_table"): [f"{ch.dataset}.{ch.table}_test" for ch in users],
                    t("col_metric"): [common.metric_text(ch) for ch in users],
                }
            ),
            hide_index=True,
        )
    else:
        st.caption(t("used_by_none"))

    tables = list(e["tables"])
    st.subheader(t("tables"))
    st.dataframe(
        pd.DataFrame(
            {
                t("col_table"): tables,
                t("col_title"): [e["tables"][n]["title"][lang] for n in tables],
                t("col_rows"): [int(e["tables"][n]["rows"]) for n in tables],
                t("col_size"): [format_bytes(int(e["tables"][n]["bytes"])) for n in tables],
                t("col_files"): [len(e["tables"][n]["files"]) for n in tables],
            }
        ),
        hide_index=True,
    )
    name = st.selectbox(t("choose_table"), tables, key=f"catalog_table_{chosen}")
    table = e["tables"][name]
    if table.get("description"):
        st.caption(common.md(table["description"][lang]))
    _links(e, chosen, name)
    st.markdown("**" + t("schema") + "**")
    st.dataframe(_schema(table, lang), hide_index=True)
    st.markdown("**" + t("quality") + "**")
    _quality(table, lang)
    _privacy(table, lang)
    st.markdown("**" + t("preview", n=20) + "**")
    st.dataframe(queries.preview(src.data_root, chosen, int(e["version"]), name), hide_index=True)


main()
