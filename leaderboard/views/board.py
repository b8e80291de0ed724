"""Leaderboard page: one challenge's ranking, searchable, 50 teams a page.

Before the reveal: the public ranking only (best public score per team, ties shown, 24-hour
movement). After it: the final (private) ranking with each team's public → private shift,
and the reveal's confidence intervals and statistically tied groups when it has them; the
public ranking stays one click away.
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd
import streamlit as st

from leaderboard import queries
from leaderboard.views import common
from leaderboard.views.common import t

PAGE_SIZE = 50


def _public_table(df: pd.DataFrame, ch, contest) -> pd.DataFrame:
    d = common.decimals(ch)
    return pd.DataFrame(
        {
            t("col_rank"): df["rank"].astype("int64"),
            t("col_tie"): [f"={r}" if tied else "" for r, tied in zip(df["tie_rank"], df["tied"], strict=True)],
            t("col_team"): df["display_name"].astype(str),
            t("col_score"): df["score"].astype(float).round(d),
            t("col_entries"): df["entries"].astype("int64"),
            t("col_last"): [common.local(v, contest) for v in df["last_submission"]],
            t("col_movement"): [common.movement_text(v) for v in df["movement_24h"]],
        }
    )


def _final_table(df: pd.DataFrame, ch) -> pd.DataFrame:
    d = common.decimals(ch)
    out = {
        t("col_rank"): df["rank"].astype("int64"),
        t("col_tie"): [f"={r}" if tied else "" for r, tied in zip(df["tie_rank"], df["tied"], strict=True)],
        t("col_team"): df["display_name"].astype(str),
        t("col_final_score"): df["score"].astype(float).round(d),
        t("col_public_rank"): df["public_rank"].astype("Int64"),
        t("col_shift"): [common.movement_text(v) if v == v and v is not None else "" for v in df["shift"]],
    }
    if df["low"].notna().any():
        out[t("col_interval")] = [
            f"[{common.score_text(lo, ch)}, {common.score_text(hi, ch)}]" if lo == lo and lo is not None else ""
            for lo, hi in zip(df["low"], df["high"], strict=True)
        ]
    if df["group"].notna().any():
        out[t("col_group")] = df["group"].astype("Int64")
    return pd.DataFrame(out)


def _interval_chart(df: pd.DataFrame, ch) -> alt.Chart:
    data = pd.DataFrame(
        {
            "team": df["display_name"].astype(str),
            "rank": df["rank"].astype(int),
            "score": df["score"].astype(float),
            "low": df["low"].astype(float),
            "high": df["high"].astype(float),
            "group": df["group"].astype("Int64").astype(str) if df["group"].notna().any() else "",
        }
    )
    y = alt.Y("team:N", sort=alt.SortField("rank"), title=None)
    color = alt.Color("group:N", title=t("col_group"))
    bars = (
        alt.Chart(data)
        .mark_rule(strokeWidth=2)
        .encode(
            x=alt.X("low:Q", title=t("col_final_score"), scale=alt.Scale(zero=False)), x2="high:Q", y=y, color=color
        )
    )
    points = alt.Chart(data).mark_point(filled=True).encode(x="score:Q", y=y, color=color, tooltip=["team", "score"])
    return (bars + points).properties(height=max(120, 22 * len(data)))


def _round_picker(src, contest, asked: str | None, lang: str) -> list[str]:
    """Each round has its own boards: pick the round, see who it admits, then its challenges."""
    rounds = [r.id for r in contest.rounds]
    start = contest.round_of(asked) if asked else None
    rid = st.selectbox(
        t("round"),
        rounds,
        index=rounds.index(start.id) if start else 0,
        format_func=lambda i: contest.round(i).title[lang],
        key="board_round",
    )
    rnd, previous = contest.round(rid), contest.previous_round(rid)
    if previous is None:
        st.caption(t("round_open_to_all", round=common.md(rnd.title[lang])))
        return list(rnd.challenges)
    try:
        admitted = queries.round_admitted(src, rid)
    except queries.StoreUnavailable as exc:
        common.store_unavailable(exc)
        admitted = []
    names = dict(round=common.md(rnd.title[lang]), previous=common.md(previous.title[lang]))
    if admitted:
        teams = "、".join(common.md(a["display_name"]) for a in admitted)
        st.caption(t("round_admitted", n=len(admitted), teams=teams, **names))
    else:
        st.caption(t("round_not_decided", **names))
    return list(rnd.challenges)


def main() -> None:
    src = common.source()
    contest = queries.contest(src)
    ids = [c.id for c in contest.challenges]
    asked = st.query_params.get("challenge")
    lang, tr = common.lang(), common.translator()
    if contest.rounds:
        ids = _round_picker(src, contest, asked, lang)
    ch_id = st.selectbox(
        t("challenge"),
        ids,
        index=ids.index(asked) if asked in ids else 0,
        format_func=lambda i: contest.challenge(i).title[lang],
        key="board_challenge",
    )
    ch = contest.challenge(ch_id)
    st.title(t("board_title", challenge=common.challenge_title(ch)))
    st.caption(
        t(
            "board_caption",
            metric=common.metric_text(ch),
            closes=common.local(ch.closes, contest),
            reveal=common.local(ch.reveal, contest),
            tz=str(contest.timezone),
        )
    )
    try:
        state = queries.reveal_state(src, ch.id)
        view = "public"
        if state is not None:
            st.success(t("revealed_at", at=common.local(state["revealed_at"], contest)))
            view = (
                st.segmented_control(
                    t("view"),
                    ["final", "public"],
                    default="final",
                    format_func=lambda v: tr(f"view_{v}"),
                    key="board_view",
                )
                or "final"
            )
        else:
            st.info(t("sealed_notice"))
        board = queries.final_board(src, ch.id) if view == "final" else None
        if board is None:
            view, board = "public", queries.public_board(src, ch.id, common.pinned_now())
    except queries.StoreUnavailable as exc:
        common.store_unavailable(exc)
        return

    if board.empty:
        st.info(t("board_empty"))
        return
    query = st.text_input(t("search_team"), key="board_search", placeholder=t("search_placeholder")).strip()
    shown = board
    if query:
        needle = query.casefold()
        hit = board["display_name"].astype(str).str.casefold().str.contains(needle, regex=False) | board["team"].astype(
            str
        ).str.casefold().str.contains(needle, regex=False)
        shown = board[hit]
    if shown.empty:
        st.warning(t("search_nothing", query=query))
        return
    pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
    common.clamp_page("board_page", pages)
    page = st.pagination(pages, key="board_page") if pages > 1 else 1
    part = shown.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    st.caption(
        t("showing", first=(page - 1) * PAGE_SIZE + 1, last=(page - 1) * PAGE_SIZE + len(part), total=len(shown))
    )
    table = _final_table(part, ch) if view == "final" else _public_table(part, ch, contest)
    score_col = t("col_final_score") if view == "final" else t("col_score")
    st.dataframe(
        table,
        hide_index=True,
        column_config={score_col: st.column_config.NumberColumn(format=f"%.{common.decimals(ch)}f")},
    )
    if view == "final" and part["low"].notna().any():
        st.subheader(t("intervals_title"))
        st.caption(t("intervals_caption"))
        st.altair_chart(_interval_chart(part, ch), width="stretch")
    if view == "public" and st.toggle(t("race_toggle"), key="board_race"):
        top = tuple(board["team"].head(10))
        history = queries.race(src, ch.id, top, common.pinned_now())
        if not history.empty:
            history["team"] = history["team"].map(dict(zip(board["team"], board["display_name"], strict=True)))
            chart = (
                alt.Chart(history)
                .mark_line(interpolate="step-after")
                .encode(
                    x=alt.X("at:T", title=t("col_time")),
                    y=alt.Y("best:Q", title=t("col_best"), scale=alt.Scale(zero=False)),
                    color=alt.Color("team:N", title=t("col_team")),
                    tooltip=["team", "best", "at"],
                )
            )
            st.altair_chart(chart, width="stretch")


main()
