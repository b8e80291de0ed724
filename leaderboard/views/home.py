"""Contest home: title, timeline with the current phase, the next deadline, the challenges,
and how many submissions arrive each day."""

from __future__ import annotations

import datetime as dt

import altair as alt
import pandas as pd
import streamlit as st

from leaderboard import queries
from leaderboard.views import common
from leaderboard.views.common import t


def _naive_local(moment: dt.datetime, tz) -> dt.datetime:
    """Contest-local wall time without a zone; charts show it as is (scale type ``utc``),
    whatever the viewer's browser time zone."""
    return moment.astimezone(tz).replace(tzinfo=None)


def _deadlines(contest) -> list[tuple[dt.datetime, str]]:
    out = [(p.end, t("deadline_phase_end", phase=p.title[common.lang()])) for p in contest.phases]
    for ch in contest.challenges:
        title = common.challenge_title(ch)
        out += [
            (ch.opens, t("deadline_opens", challenge=title)),
            (ch.closes, t("deadline_closes", challenge=title)),
            (ch.reveal, t("deadline_reveal", challenge=title)),
        ]
    if contest.team_freeze:
        out.append((contest.team_freeze, t("deadline_team_freeze")))
    return sorted(out, key=lambda d: d[0])


def _timeline(contest, now: dt.datetime) -> alt.LayerChart:
    tz = contest.timezone
    rows = [
        {"what": p.title[common.lang()], "kind": t("kind_phase"), "start": p.start, "end": p.end}
        for p in contest.phases
    ]
    rows += [
        {"what": common.challenge_title(c), "kind": t("kind_challenge"), "start": c.opens, "end": c.closes}
        for c in contest.challenges
    ]
    data = pd.DataFrame(rows)
    data["start"] = [_naive_local(v, tz) for v in data["start"]]
    data["end"] = [_naive_local(v, tz) for v in data["end"]]
    x = alt.X("start:T", title=None, scale=alt.Scale(type="utc"), axis=alt.Axis(format="%Y-%m-%d"))
    bars = (
        alt.Chart(data)
        .mark_bar(cornerRadius=3)
        .encode(
            x=x,
            x2="end:T",
            y=alt.Y("what:N", title=None, sort=None),
            color=alt.Color("kind:N", title=None),
            tooltip=["what", "kind"],
        )
    )
    today = pd.DataFrame({"now": [_naive_local(now, tz)]})
    rule = alt.Chart(today).mark_rule(color="red", strokeWidth=2).encode(x=alt.X("now:T", scale=alt.Scale(type="utc")))
    return (bars + rule).properties(height=40 * len(data) + 40)


@st.fragment(run_every=60)
def _countdown(contest) -> None:
    """The time left until the next deadline, redrawn every minute on its own."""
    now = common.now()
    upcoming = [(when, what) for when, what in _deadlines(contest) if when > now]
    if not upcoming:
        st.metric(t("next_deadline"), t("no_deadline"))
        return
    when, what = upcoming[0]
    st.metric(t("next_deadline"), common.duration_text(when - now))
    st.caption(t("deadline_at", what=common.md(what), at=common.local(when, contest), tz=str(contest.timezone)))


def main() -> None:
    src = common.source()
    contest = queries.contest(src)
    now = common.now()
    lang = common.lang()
    st.title(contest.title[lang])

    current = next((p for p in contest.phases if p.start <= now <= p.end), None)
    if current is not None:
        st.markdown(t("current_phase", phase=common.md(current.title[lang]), end=common.local(current.end, contest)))
    elif contest.phases and now < contest.phases[0].start:
        st.markdown(t("before_start", start=common.local(contest.phases[0].start, contest)))
    else:
        st.markdown(t("contest_over"))

    col_a, col_b = st.columns(2)
    with col_a:
        _countdown(contest)
    try:
        counts = queries.challenge_counts(src)
        per_day = queries.submissions_per_day(src)
        revealed = queries.reveals(src)
    except queries.StoreUnavailable as exc:
        counts, per_day, revealed = {}, pd.DataFrame(columns=["day", "challenge", "submissions"]), {}
        common.store_unavailable(exc)
    col_b.metric(t("total_submissions"), f"{int(per_day['submissions'].sum()):,}")

    st.subheader(t("timeline"))
    st.altair_chart(_timeline(contest, now), width="stretch")
    phases = pd.DataFrame(
        {
            t("col_phase"): [p.title[lang] for p in contest.phases],
            t("col_start"): [common.local(p.start, contest) for p in contest.phases],
            t("col_end"): [common.local(p.end, contest) for p in contest.phases],
            t("col_status"): [
                t("status_current") if p.start <= now <= p.end else t("status_past" if p.end < now else "status_future")
                for p in contest.phases
            ],
        }
    )
    st.dataframe(phases, hide_index=True)

    st.subheader(t("challenges"))

    def status(ch) -> str:
        if ch.id in revealed:
            return t("status_revealed")
        if now < ch.opens:
            return t("status_not_open")
        return t("status_open") if now < ch.closes else t("status_closed")

    challenges = pd.DataFrame(
        {
            t("col_challenge"): [common.challenge_title(c) for c in contest.challenges],
            t("col_metric"): [common.metric_text(c) for c in contest.challenges],
            t("col_teams"): [counts.get(c.id, {}).get("teams", 0) for c in contest.challenges],
            t("col_submissions"): [counts.get(c.id, {}).get("submissions", 0) for c in contest.challenges],
            t("col_closes"): [common.local(c.closes, contest) for c in contest.challenges],
            t("col_reveal"): [common.local(c.reveal, contest) for c in contest.challenges],
            t("col_status"): [status(c) for c in contest.challenges],
        }
    )
    st.dataframe(challenges, hide_index=True)
    key = queries.results_public_key(src)
    if key:
        st.caption(t("results_key", public_key=key))

    st.subheader(t("per_day"))
    if per_day.empty:
        st.info(t("no_submissions_yet"))
        return
    data = per_day.copy()
    data["day"] = pd.to_datetime(data["day"])
    data["challenge"] = [common.challenge_title(contest.challenge(c)) for c in data["challenge"]]
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("day:T", title=t("col_day"), scale=alt.Scale(type="utc"), axis=alt.Axis(format="%m-%d")),
            y=alt.Y("sum(submissions):Q", title=t("col_submissions")),
            color=alt.Color("challenge:N", title=t("col_challenge")),
            tooltip=["day:T", "challenge", "submissions"],
        )
    )
    st.altair_chart(chart, width="stretch")


main()
