"""Team page: who is in the team, how its public score moved on each challenge (every
submission, and the best so far), and after a deadline the submissions that count for the
final ranking."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from leaderboard import queries
from leaderboard.views import common, hub_auth
from leaderboard.views.common import t
from sandbox import statuses


def _history_chart(rows: pd.DataFrame, ch, contest) -> alt.LayerChart:
    data = pd.DataFrame(
        {
            "at": [v.astimezone(contest.timezone).replace(tzinfo=None) for v in rows["created_at"]],
            "score": rows["public_score"].astype(float),
        }
    )
    data["best"] = data["score"].cummax() if ch.higher_is_better else data["score"].cummin()
    x = alt.X("at:T", title=t("col_time"), scale=alt.Scale(type="utc"))
    y_title = f"{t('col_score')} ({ch.metric})"
    points = (
        alt.Chart(data)
        .mark_circle(size=45, opacity=0.55)
        .encode(
            x=x,
            y=alt.Y("score:Q", title=y_title, scale=alt.Scale(zero=False)),
            tooltip=[alt.Tooltip("at:T", format="%Y-%m-%d %H:%M"), "score"],
        )
    )
    best = alt.Chart(data).mark_line(interpolate="step-after", color="#d62728").encode(x=x, y="best:Q")
    return (points + best).properties(height=260)


def _final(rows: pd.DataFrame, ch) -> tuple[pd.DataFrame, bool]:
    """The submissions that count for the private ranking: the team's choice, else its best N."""
    scored = rows[rows["status"] == statuses.SCORED]
    chosen = scored[scored["selected"].astype(bool)]
    if len(chosen):
        return chosen, True
    order = scored.sort_values(
        ["public_score", "created_at", "id"], ascending=[not ch.higher_is_better, True, True], kind="mergesort"
    )
    return order.head(ch.final_selections), False


def _provenance(src, team: str) -> None:
    """The notebook, environment and tables behind each submission: the team's own, or an organizer's view."""
    prov = queries.team_provenance(src, team)
    if prov.empty:
        return
    st.subheader(t("provenance"))
    st.caption(t("provenance_hint"))
    st.dataframe(
        pd.DataFrame(
            {
                t("col_submission"): prov["submission_id"].astype("int64"),
                t("col_notebook"): prov["notebook"].fillna("").astype(str),
                t("col_notebook_sha"): prov["notebook_sha256"].fillna("").astype(str),
                t("col_packages_sha"): prov["packages_sha256"].astype(str),
                t("col_packages"): prov["packages"].astype("int64"),
                t("col_tables_read"): [
                    ", ".join(f"{r['dataset']}.{r['table']} v{r['version']}" for r in reads) for reads in prov["reads"]
                ],
            }
        ),
        hide_index=True,
    )


def main() -> None:
    src = common.source()
    contest = queries.contest(src)
    try:
        index = queries.teams(src)
    except queries.StoreUnavailable as exc:
        common.store_unavailable(exc)
        return
    if index.empty:
        st.info(t("no_teams"))
        return
    names = index["team"].tolist()
    label = dict(zip(index["team"], index["display_name"], strict=True))
    asked = st.query_params.get("team")
    team = st.selectbox(
        t("choose_team"),
        names,
        index=names.index(asked) if asked in label else 0,
        format_func=lambda n: f"{label[n]} ({n})" if label[n] != n else n,
        key="team_pick",
    )
    detail = queries.team_detail(src, team, common.pinned_now())
    if detail is None:
        st.warning(t("team_gone"))
        return
    st.header(common.md(detail["display_name"]))
    st.caption(t("team_slug", name=common.md(detail["team"])))

    st.subheader(t("members"))
    members = detail["members"]
    st.dataframe(
        pd.DataFrame(
            {
                t("col_user"): members["user"].astype(str),
                t("col_joined"): [common.local(v, contest) for v in members["joined_at"]],
            }
        ),
        hide_index=True,
    )

    subs = detail["submissions"]
    if subs.empty:
        st.info(t("team_no_submissions"))
        return
    viewer = hub_auth.identity()
    if hub_auth.is_organizer(viewer) or (viewer and viewer.get("name") in set(members["user"])):
        _provenance(src, team)
    now = common.now()
    for ch in contest.challenges:
        rows = subs[subs["challenge"] == ch.id]
        if rows.empty:
            continue
        st.subheader(common.challenge_title(ch))
        scored = rows[rows["status"] == statuses.SCORED]
        a, b, c = st.columns(3)
        a.metric(t("col_submissions"), len(rows))
        b.metric(t("refused"), int((rows["status"].isin(statuses.REFUSED)).sum()))
        if len(scored):
            best = scored["public_score"].max() if ch.higher_is_better else scored["public_score"].min()
            c.metric(t("best_public"), common.score_text(best, ch))
            st.altair_chart(_history_chart(scored, ch, contest), width="stretch")
        if now >= ch.closes and len(scored):
            final, chosen = _final(rows, ch)
            st.markdown(
                t("final_selected") if chosen else t("final_default", n=ch.final_selections),
            )
            st.dataframe(
                pd.DataFrame(
                    {
                        t("col_submission"): final["id"].astype("int64"),
                        t("col_time"): [common.local(v, contest) for v in final["created_at"]],
                        t("col_score"): final["public_score"].astype(float).round(common.decimals(ch)),
                    }
                ),
                hide_index=True,
            )


main()
