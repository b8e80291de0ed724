"""Organizer page (JupyterHub admins only): the live submission stream, why files were
refused, quota grants, and where each challenge's reveal stands.

``leaderboard/app.py`` registers this page only for an organizer; the check below is a
second lock for the case where the page is reached some other way.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from leaderboard import queries
from leaderboard.views import common, hub_auth
from leaderboard.views.common import t
from sandbox import statuses


@st.fragment(run_every=10)
def _stream(src, contest) -> None:
    """Refreshed every 10 seconds on its own, without rerunning the page."""
    st.subheader(t("live_stream"))
    counts = queries.status_counts(src)
    cols = st.columns(4)
    for col, status in zip(cols, (statuses.SCORED, statuses.INVALID, statuses.ERROR, "pending"), strict=True):
        n = counts.get(status, 0) if status != "pending" else sum(counts.get(s, 0) for s in statuses.PENDING)
        col.metric(t(f"status_{status}"), f"{n:,}")
    recent = queries.recent_submissions(src, 100)
    table = pd.DataFrame(
        {
            t("col_submission"): recent["id"].astype("int64"),
            t("col_time"): [common.local(v, contest, with_seconds=True) for v in recent["created_at"]],
            t("col_team"): recent["team"].astype(str),
            t("col_user"): recent["user"].astype(str),
            t("col_challenge"): recent["challenge"].astype(str),
            t("col_file"): recent["file_name"].astype(str),
            t("col_size"): recent["size"].astype("int64"),
            t("col_status"): [t(f"status_{s}") if s in _STATUSES else s for s in recent["status"]],
            t("col_score"): recent["score"].astype(float),
            t("col_errors"): recent["errors"].astype(str),
        }
    )
    st.dataframe(table, hide_index=True)


_STATUSES = statuses.ALL


def main() -> None:
    user = hub_auth.identity()
    if not hub_auth.is_organizer(user):
        st.error(t("organizers_only"))
        st.stop()
    src = common.source()
    contest = queries.contest(src)
    st.title(t("page_organizer"))
    try:
        revealed = queries.reveals(src)
        now = common.now()
        st.subheader(t("reveal_status"))
        st.dataframe(
            pd.DataFrame(
                {
                    t("col_challenge"): [common.challenge_title(c) for c in contest.challenges],
                    t("col_closes"): [common.local(c.closes, contest) for c in contest.challenges],
                    t("col_reveal"): [common.local(c.reveal, contest) for c in contest.challenges],
                    t("col_status"): [
                        t(
                            "reveal_done",
                            at=common.local(revealed[c.id]["revealed_at"], contest),
                            by=revealed[c.id]["by"],
                        )
                        if c.id in revealed
                        else (t("reveal_ready") if now >= c.closes else t("reveal_sealed"))
                        for c in contest.challenges
                    ],
                    t("col_report"): [
                        (t("yes") if revealed[c.id]["report"] else t("no")) if c.id in revealed else ""
                        for c in contest.challenges
                    ],
                }
            ),
            hide_index=True,
        )
        _stream(src, contest)

        st.subheader(t("errors_by_code"))
        errors = queries.error_codes(src)
        if errors.empty:
            st.caption(t("no_errors"))
        else:
            data = errors.assign(challenge=[common.challenge_title(contest.challenge(c)) for c in errors["challenge"]])
            chart = (
                alt.Chart(data)
                .mark_bar()
                .encode(
                    y=alt.Y("code:N", sort="-x", title=t("col_code")),
                    x=alt.X("sum(submissions):Q", title=t("col_submissions")),
                    color=alt.Color("challenge:N", title=t("col_challenge")),
                    tooltip=["code", "challenge", "submissions"],
                )
            )
            st.altair_chart(chart, width="stretch")
            st.dataframe(
                data.rename(
                    columns={
                        "code": t("col_code"),
                        "challenge": t("col_challenge"),
                        "submissions": t("col_submissions"),
                    }
                ),
                hide_index=True,
            )

        st.subheader(t("grants"))
        grants = queries.quota_grants(src)
        if grants.empty:
            st.caption(t("no_grants"))
        else:
            st.dataframe(
                pd.DataFrame(
                    {
                        t("col_time"): [common.local(v, contest) for v in grants["at"]],
                        t("col_team"): grants["team"].astype(str),
                        t("col_challenge"): grants["challenge"].astype(str),
                        t("col_day"): grants["day"].astype(str),
                        t("col_extra"): grants["extra"].astype("int64"),
                        t("col_reason"): grants["reason"].astype(str),
                        t("col_by"): grants["by"].astype(str),
                    }
                ),
                hide_index=True,
            )
        _reruns(src, contest)
    except queries.StoreUnavailable as exc:
        common.store_unavailable(exc)


def _reruns(src, contest) -> None:
    """The finalists' notebooks run again (``contesthub verify-run``): the newest verdict of each."""
    st.subheader(t("reruns"))
    verdicts = queries.reruns(src)
    if verdicts.empty:
        st.caption(t("no_reruns"))
        return
    st.dataframe(
        pd.DataFrame(
            {
                t("col_challenge"): [common.challenge_title(contest.challenge(c)) for c in verdicts["challenge"]],
                t("col_team"): verdicts["team"].astype(str),
                t("col_submission"): verdicts["submission_id"].astype("int64"),
                t("col_verdict"): [_verdict(v) for v in verdicts["verdict"]],
                t("col_rerun_detail"): [_detail(d) for d in verdicts["detail"]],
                t("col_time"): [common.local(pd.Timestamp(v), contest) for v in verdicts["finished_at"]],
                t("col_by"): verdicts["by"].astype(str),
            }
        ),
        hide_index=True,
    )


def _verdict(verdict: str) -> str:
    return {
        "reproduced": t("verdict_reproduced"),
        "differs": t("verdict_differs"),
        "failed": t("verdict_failed"),
    }.get(verdict, verdict)


def _detail(detail: dict) -> str:
    if "why" in detail:
        return str(detail["why"])
    return t("rerun_rows", differing=detail.get("rows_differing", 0), rows=detail.get("rows", 0))


main()
