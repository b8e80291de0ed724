"""The application track's public page: the awarded entries, after the organizers publish them.

Before the reveal it says judging is under way and shows nothing of the scores; after it, the
entries in order with their award, team (its chosen name, shown escaped), title, jury score
and a bar chart of the scores."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from leaderboard import queries
from leaderboard.views import common
from leaderboard.views.common import t


def main() -> None:
    src = common.source()
    contest = queries.contest(src)
    track, lang = contest.application_track, common.lang()
    st.title(t("finalists_title", track=track.title[lang]))
    try:
        rows = queries.finalists(src)
    except queries.StoreUnavailable as exc:
        common.store_unavailable(exc)
        return
    if rows is None:
        st.info(t("finalists_sealed", at=common.local(track.reveal, contest)))
        return
    titles = {a.id: a.title[lang] for a in track.awards}
    table = pd.DataFrame(
        {
            t("col_rank"): [r["rank"] for r in rows],
            t("col_award"): [titles.get(r["award"], r["award"]) for r in rows],
            t("col_team"): [str(r["display_name"]) for r in rows],
            t("col_entry"): [str(r["title"]) for r in rows],
            t("col_jury_score"): [round(float(r["score"]), 2) for r in rows],
        }
    )
    st.dataframe(table, hide_index=True)
    chart = (
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X(f"{t('col_jury_score')}:Q"),
            y=alt.Y(f"{t('col_team')}:N", sort="-x", title=None),
            color=alt.Color(f"{t('col_award')}:N"),
            tooltip=list(table.columns),
        )
        .properties(height=max(120, 28 * len(table)))
    )
    st.altair_chart(chart, width="stretch")


main()
