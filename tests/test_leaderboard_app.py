"""The Streamlit leaderboard read through ``AppTest``: what a visitor sees, in zh and en,
before and after a reveal; private scores absent until then; names shown literally.

Most tests run on SQLite; the reveal test and the standings cross-check run on both
databases. The pages read the time from ``sandbox.clock``, which :func:`open_app` pins (the
app runs in the test's process), so the demo schedule and every page agree on one moment;
``hub_auth.IDENTITY_KEY`` (a session-state key no widget uses) gives a visitor a JupyterHub
identity.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pyarrow as pa
import pytest
from contest_fixtures import NOW
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from leaderboard import demo, i18n, queries, ranking, results, schedule
from leaderboard.models import (
    Member,
    Quota,
    QuotaGrant,
    Rerun,
    Reveal,
    Score,
    Submission,
    SubmissionProvenance,
    Team,
)
from leaderboard.views import hub_auth
from sandbox import clock
from sandbox.settings import PROJECT_ROOT, Paths

APP = PROJECT_ROOT / "leaderboard" / "app.py"
CH, AUC, F1 = "outpatient_forecast", "emergency_visit", "department_triage"
XSS = "<img src=x onerror=alert(1)>"
MD_TRAP = "**bold** [link](javascript:alert(1)) :red[red]"
ORGANIZER = {"name": "org", "admin": True, "groups": []}
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def T(key: str, lang: str = "zh", **kw) -> str:
    return i18n.t(key, lang, **kw)


# --- a small race whose every number is known ------------------------------------------------

# (team, display name, members, [(challenge, hours before NOW, public, private, status)])
RACE = [
    (
        "alpha",
        "数据先锋",
        ("ann", "amy"),
        [(CH, 72, 40.0, 66.6066, "scored"), (CH, 2, 30.0, 61.2345, "scored"), (AUC, 5, 0.81234, 0.70001, "scored")],
    ),
    ("beta", "Blue Heron", ("bob",), [(CH, 48, 30.0, 63.3333, "scored"), (AUC, 6, 0.79999, 0.71111, "scored")]),
    ("xss", XSS, ("eve",), [(CH, 1, 25.0, 64.4444, "scored"), (CH, 3, None, None, "invalid")]),
    ("gamma", MD_TRAP, ("gus",), [(CH, 120, 50.0, 65.5555, "scored"), (CH, 100, None, None, "invalid")]),
]
PRIVATE = [p for *_, subs in RACE for (_c, _h, _pub, p, st_) in subs if p is not None]


def make_race(store, contest) -> None:
    with store.session() as s:
        for name, display, users, subs in RACE:
            team = Team(name=name, display_name=display, created_at=NOW - dt.timedelta(days=10))
            s.add(team)
            s.flush()
            for u in users:
                s.add(Member(user=u, team_id=team.id, joined_at=NOW - dt.timedelta(days=9)))
            for ch_id, hours, public, private, status in subs:
                at = NOW - dt.timedelta(hours=hours)
                sub = Submission(
                    team_id=team.id,
                    user=users[0],
                    challenge=ch_id,
                    created_at=at,
                    quota_day=contest.day(at),
                    file_name=f"{XSS}.csv" if name == "xss" else "pred.csv",
                    size=1000,
                    sha256=f"{name}{hours}".ljust(64, "0"),
                    status=status,
                    charged=status == "scored",
                    errors=[] if status == "scored" else [{"code": "missing-column", "message": "缺少列"}],
                    finished_at=at,
                )
                s.add(sub)
                s.flush()
                if status == "scored":
                    s.add(
                        Score(
                            submission_id=sub.id,
                            public_score=public,
                            sealed_private_score=private,
                            rows=10,
                            metric=contest.challenge(ch_id).metric,
                            metric_version=1,
                            dataset_version=1,
                            created_at=at,
                        )
                    )
        s.add(QuotaGrant(team_id=1, challenge=CH, day=NOW.date(), extra=2, reason="评测故障补偿", by="org"))


def reveal(store, contest, report: dict | None = None) -> None:
    ch = contest.challenge(CH)
    with store.session() as s:
        ranking.reveal(s, contest, CH, by="org", now=ch.closes + dt.timedelta(hours=1))
    if report is not None:
        with store.session() as s:
            s.get(Reveal, CH).report = report
    queries.reset()


REPORT = {
    "intervals": {"alpha": [60.9, 61.6], "beta": [62.8, 63.9], "xss": [63.7, 65.1], "gamma": [64.9, 66.2]},
    "groups": {"alpha": 1, "beta": 2, "xss": 2, "gamma": 3},
}


# --- running the app ------------------------------------------------------------------------


@pytest.fixture
def app_env(monkeypatch, tmp_path: Path):
    """The app's environment: an empty data root, no hub, the default language; fresh caches."""
    data = tmp_path / "app-data"
    data.mkdir()
    monkeypatch.setenv("CONTESTHUB_DATA_ROOT", str(data))
    monkeypatch.setenv("CONTESTHUB_PRIVATE_ROOT", str(tmp_path / "app-private"))
    # As `contesthub up` does: the demo's schedule is anchored on a recorded day (NOW's), so a
    # page opened at another moment sees the same contest dates.
    schedule.write(tmp_path / "app-private", schedule.Anchor(NOW.date()))
    for var in ("CONTESTHUB_LANG", "CONTESTHUB_CONTEST", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_CLIENT_ID"):
        monkeypatch.delenv(var, raising=False)
    queries.reset()
    with clock.pinned(NOW):
        yield monkeypatch
    queries.reset()


@pytest.fixture
def race(app_env, store, demo_contest):
    make_race(store, demo_contest)
    app_env.setenv("CONTESTHUB_DB_URL", store.url)
    return store


def open_app(page: str | None = None, *, now=NOW, lang: str | None = None, user: dict | None = None) -> AppTest:
    clock.pin(now)  # for the rest of the test; app_env lets the clock run again afterwards
    at = AppTest.from_file(APP, default_timeout=60)
    if user is not None:
        at.session_state[hub_auth.IDENTITY_KEY] = user
    at.run()
    if lang:
        at.radio(key="lang_choice").set_value(lang).run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def table(at: AppTest, index: int = 0):
    return at.dataframe[index].value


def rendered(at: AppTest) -> tuple[list[str], list[float]]:
    """Every text and number the page sent to the browser: element fields, table cells, chart data."""
    strings: list[str] = []
    numbers: list[float] = []

    def arrow(data: bytes) -> None:
        try:
            frame = pa.ipc.open_stream(pa.py_buffer(data)).read_all().to_pandas()
        except (pa.ArrowInvalid, OSError):
            return
        strings.extend(map(str, frame.columns))
        for col in frame.columns:
            for v in frame[col].tolist():
                if isinstance(v, float | int) and not isinstance(v, bool):
                    numbers.append(float(v))
                strings.append(str(v))

    def proto(msg) -> None:
        for field, value in msg.ListFields():
            values = value if field.is_repeated else [value]
            for v in values:
                if hasattr(v, "ListFields"):
                    proto(v)
                elif isinstance(v, bytes):
                    arrow(v)
                elif isinstance(v, str):
                    strings.append(v)
                elif isinstance(v, float | int) and not isinstance(v, bool):
                    numbers.append(float(v))

    def walk(node) -> None:
        if getattr(node, "proto", None) is not None:
            proto(node.proto)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return strings, numbers


def leaks(at: AppTest, private: list[float]) -> list[str]:
    strings, numbers = rendered(at)
    found = [f"number {x}" for x in numbers for p in private if abs(x - p) <= 1e-9 * max(1.0, abs(p))]
    for p in private:
        for text in (f"{p:.4f}", f"{p:.5f}", repr(p)):
            found += [f"text {text!r} in {s[:80]!r}" for s in strings if text in s]
    return found


def markdown_is_safe(at: AppTest) -> None:
    """No Markdown element may render HTML, and no free text reaches Markdown unescaped."""
    for node in at.markdown:
        assert not node.proto.allow_html
        assert "<img" not in node.value and "](javascript" not in node.value


# --- contest home ----------------------------------------------------------------------------


@sqlite_only
def test_home_shows_title_phase_countdown_challenges_and_daily_submissions(race, demo_contest):
    # The contest's results key, published with the rules as `contesthub up` does (leaderboard/publish.py).
    key = results.public_key_hex(results.signing_key(Paths.from_env()))
    (Paths.from_env().data_root / "contest.json").write_text(json.dumps({"results_public_key": key}))
    at = open_app()
    assert at.title[0].value == demo_contest.title["zh"]
    assert "当前阶段：**开放提交**" in at.markdown[0].value
    # From 2026-12-01 10:00 the next deadline is the team freeze, 2027-01-24 23:59:59 (+08:00).
    assert at.metric[0].label == T("next_deadline") and at.metric[0].value == "54 天 13 小时 59 分"
    assert "组队冻结" in at.caption[0].value and "2027-01-24 23:59" in at.caption[0].value
    assert at.metric[1].value == "9"  # every submission, refused ones included
    challenges = table(at, 1)
    assert list(challenges[T("col_challenge")]) == [
        "门诊量预测",
        "急诊就诊识别",
        "分诊科室预测",
        "失业保险申领预测",
        "小学招生数预测",
        "景区客流预测",
        "出行方式推荐排序",
    ]
    assert list(challenges[T("col_teams")]) == [4, 2, 0, 0, 0, 0, 0]
    assert list(challenges[T("col_submissions")]) == [7, 2, 0, 0, 0, 0, 0]
    assert list(challenges[T("col_status")]) == ["开放提交"] * 7
    assert len(at.get("vega_lite_chart")) == 2  # the timeline and submissions per day
    assert T("results_key", public_key=key) in [c.value for c in at.caption]  # anyone can check the signed results

    at.radio(key="lang_choice").set_value("en").run()
    assert at.title[0].value == demo_contest.title["en"]
    assert at.metric[0].label == "Until the next deadline" and at.metric[0].value == "54 d 13 h 59 min"
    assert list(table(at, 1)["Challenge"]) == [
        "Outpatient visit forecast",
        "Emergency visit detection",
        "Department triage",
        "Unemployment insurance claims forecast",
        "Primary school intake forecast",
        "Scenic spot visitor forecast",
        "Travel mode ranking",
    ]


# --- leaderboard -----------------------------------------------------------------------------


@sqlite_only
def test_the_public_leaderboard_before_the_reveal_in_zh_and_en(race):
    at = open_app("board")
    assert at.title[0].value == "排行榜：门诊量预测"
    assert T("sealed_notice") == at.info[0].value
    board = table(at)
    assert list(board.columns) == [
        T(k) for k in ("col_rank", "col_tie", "col_team", "col_score", "col_entries", "col_last", "col_movement")
    ]
    # RMSE: lower is better. beta and alpha both have 30.0: beta submitted first, the tie is shown.
    assert list(board["名次"]) == [1, 2, 3, 4]
    assert list(board["队伍"]) == [XSS, "Blue Heron", "数据先锋", MD_TRAP]  # names exactly as chosen
    assert list(board["并列"]) == ["", "=2", "=2", ""]
    assert list(board["得分"]) == [25.0, 30.0, 30.0, 50.0]
    assert list(board["提交次数"]) == [1, 1, 2, 1]  # scored submissions only
    assert list(board["最后提交"]) == ["2026-12-01 09:00", "2026-11-29 10:00", "2026-12-01 08:00", "2026-11-26 10:00"]
    assert list(board["24 小时变化"]) == ["新上榜", "▼1", "▼1", "▼1"]
    assert at.caption[-1].value == "第 1–4 名，共 4 支队伍"
    markdown_is_safe(at)

    at.selectbox(key="board_challenge").set_value(AUC).run()
    board = table(at)
    assert list(board["队伍"]) == ["数据先锋", "Blue Heron"]  # ROC AUC: higher is better
    assert list(board["得分"]) == [0.81234, 0.79999]  # five digits for a probability metric

    at.radio(key="lang_choice").set_value("en").run()
    assert at.title[0].value == "Leaderboard: Emergency visit detection"
    board = table(at)
    assert list(board.columns) == ["Rank", "Tie", "Team", "Score", "Entries", "Last submission", "24 h movement"]
    assert list(board["24 h movement"]) == ["new", "new"]
    at.selectbox(key="board_challenge").set_value(F1).run()
    assert at.info[-1].value == "No scored submissions yet."


@sqlite_only
def test_private_scores_never_reach_any_page_before_the_reveal(race, demo_contest):
    """Every element of every page, in both languages, searched for every private score."""
    with race.session() as s:
        stored = [p for (p,) in s.execute(select(Score.sealed_private_score))]
    assert sorted(stored) == sorted(PRIVATE)
    for lang in ("zh", "en"):
        at = open_app(lang=lang, user=ORGANIZER)
        assert not leaks(at, stored)
        for page in ("board", "team", "catalog", "organizer"):
            at.switch_page(f"views/{page}.py").run()
            assert not at.exception
            assert not leaks(at, stored), page
        at.switch_page("views/board.py").run()
        for ch in (AUC, F1, CH):
            at.selectbox(key="board_challenge").set_value(ch).run()
            assert not leaks(at, stored), ch
        at.toggle(key="board_race").set_value(True).run()
        assert not leaks(at, stored)
        at.switch_page("views/team.py").run()
        for name, *_ in RACE:
            at.selectbox(key="team_pick").set_value(name).run()
            assert not leaks(at, stored), name
    # The search finds them as soon as they are public: it would have seen a leak.
    reveal(race, demo_contest)
    at = open_app("board", now=demo_contest.challenge(CH).reveal)
    assert leaks(at, stored)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_after_the_reveal_the_final_ranking_with_shift_intervals_and_groups(race, demo_contest, lang):
    reveal(race, demo_contest, REPORT)
    at = open_app("board", now=demo_contest.challenge(CH).reveal + dt.timedelta(hours=1), lang=lang)
    assert T("revealed_at", lang, at="2027-02-01 00:59") == at.success[0].value
    board = table(at)
    expected = ["col_rank", "col_tie", "col_team", "col_final_score", "col_public_rank", "col_shift"]
    assert list(board.columns) == [T(k, lang) for k in (*expected, "col_interval", "col_group")]
    # Final = best private score among each team's best two public submissions.
    assert list(board[T("col_team", lang)]) == ["数据先锋", "Blue Heron", XSS, MD_TRAP]
    assert list(board[T("col_final_score", lang)]) == [61.2345, 63.3333, 64.4444, 65.5555]
    assert list(board[T("col_public_rank", lang)]) == [3, 2, 1, 4]
    assert list(board[T("col_shift", lang)]) == ["▲2", "=", "▼2", "="]
    assert board[T("col_interval", lang)].iloc[0] == "[60.9000, 61.6000]"
    assert list(board[T("col_group", lang)]) == [1, 2, 2, 3]
    assert at.subheader[0].value == T("intervals_title", lang)
    assert len(at.get("vega_lite_chart")) == 1
    # The public ranking is still there, one click away.
    at.segmented_control(key="board_view").set_value("public").run()
    assert list(table(at)[T("col_score", lang)]) == [25.0, 30.0, 30.0, 50.0]
    # Other challenges stay sealed.
    at.selectbox(key="board_challenge").set_value(AUC).run()
    assert at.info[0].value == T("sealed_notice", lang)
    assert T("col_final_score", lang) not in table(at).columns


@sqlite_only
def test_home_team_and_organizer_pages_after_the_reveal(race, demo_contest):
    reveal(race, demo_contest, REPORT)
    # Revealed at the deadline plus an hour; the review phase runs until the planned reveal.
    after = demo_contest.challenge(CH).reveal - dt.timedelta(hours=1)
    at = open_app(now=after, user=ORGANIZER)
    statuses = list(table(at, 1)[T("col_status")])
    assert statuses == ["已公布最终排名"] + ["已截止，待公布"] * 6
    assert at.markdown[0].value == T("current_phase", phase="评审与公布", end="2027-02-03 10:00")

    at.switch_page("views/team.py").run()
    at.selectbox(key="team_pick").set_value("alpha").run()
    assert T("final_default", n=2) in [m.value for m in at.markdown]
    assert list(table(at, 1)[T("col_score")]) == [30.0, 40.0]  # public scores; the private one stays on the board

    at.switch_page("views/organizer.py").run()
    status = table(at, 0)
    assert (
        list(status[T("col_status")])
        == [
            T("reveal_done", at="2027-02-01 00:59", by="org"),
        ]
        + [T("reveal_ready")] * 6
    )
    assert list(status[T("col_report")]) == ["是"] + [""] * 6


@sqlite_only
def test_search_and_paging_through_a_thousand_teams(app_env, store, demo_contest):
    race = demo.seed(store, demo_contest, teams=1000, submissions=4000, now=NOW, challenges=[CH], grant=False)
    assert race.teams == 1000 and race.submissions == 4000
    with store.session() as s:  # the demo keeps the contest's rules: no team over its daily quota
        worst = s.execute(select(func.max(Quota.used))).scalar_one()
        assert worst <= demo_contest.challenge(CH).daily_quota
        ranked = s.execute(select(func.count(func.distinct(Submission.team_id))).where(Submission.status == "scored"))
        n_ranked = ranked.scalar_one()
    app_env.setenv("CONTESTHUB_DB_URL", store.url)
    at = open_app("board", lang="en")
    pager = at.pagination(key="board_page")
    assert pager.num_pages == -(-n_ranked // 50) and len(table(at)) == 50
    assert at.caption[-1].value == f"Showing 1–50 of {n_ranked} teams"
    pager.set_value(3).run()
    assert list(table(at)["Rank"])[:2] == [101, 102]
    assert at.caption[-1].value == f"Showing 101–150 of {n_ranked} teams"
    at.text_input(key="board_search").input("panda").run()
    found = table(at)
    assert len(found) and all("panda" in name.lower() for name in found["Team"])
    assert at.pagination(key="board_page").value == 1 if at.pagination else True
    at.text_input(key="board_search").input("no team is called this").run()
    assert at.warning[0].value == "No team name contains “no team is called this”."


# --- team page -------------------------------------------------------------------------------


@sqlite_only
def test_team_page_members_history_and_final_selections(race, demo_contest):
    at = open_app("team")
    at.selectbox(key="team_pick").set_value("alpha").run()
    assert at.header[0].value == "数据先锋"
    assert list(table(at)["用户"]) == ["ann", "amy"]
    assert [m.value for m in at.metric[:3]] == ["2", "0", "30.0000"]
    assert len(at.get("vega_lite_chart")) == 2  # one history per challenge entered
    assert T("final_default", n=2) not in [m.value for m in at.markdown]  # still open: no final selections

    at.selectbox(key="team_pick").set_value("xss").run()
    assert at.header[0].value == "&lt;img src=x onerror=alert\\(1\\)&gt;"  # escaped: shown literally
    assert [m.value for m in at.metric[:3]] == ["2", "1", "25.0000"]
    markdown_is_safe(at)
    at.selectbox(key="team_pick").set_value("gamma").run()
    markdown_is_safe(at)

    with race.session() as s:  # alpha chose its older file
        first = s.execute(select(Submission).where(Submission.user == "ann", Submission.challenge == CH)).scalars()
        min(first, key=lambda r: r.created_at).selected = True
    queries.reset()
    at = open_app("team", now=demo_contest.challenge(CH).closes + dt.timedelta(minutes=1), lang="en")
    at.selectbox(key="team_pick").set_value("alpha").run()
    assert "The final submissions the team chose:" in [m.value for m in at.markdown]
    assert list(table(at, 1)["Score"]) == [40.0]
    at.selectbox(key="team_pick").set_value("beta").run()
    assert "The team chose no final submissions; its best 2 by public score count:" in [m.value for m in at.markdown]


@sqlite_only
def test_team_page_shows_provenance_to_the_team_and_organizers_only(race):
    with race.session() as s:
        sub = s.execute(select(Submission).where(Submission.user == "ann").order_by(Submission.id)).scalars().first()
        s.add(
            SubmissionProvenance(
                submission_id=sub.id,
                notebook_name="baseline.ipynb",
                notebook_sha256="a" * 64,
                notebook_size=1234,
                packages_sha256="b" * 64,
                packages=["duckdb==2.0.1", "pandas==3.0.0"],
                python="3.11.9",
                reads=[{"dataset": "hospital_outpatient", "version": 1, "table": "daily_visits"}],
            )
        )
        sid = sub.id
    queries.reset()
    for user, sees in (
        (None, False),
        ({"name": "bob", "admin": False, "groups": ["beta"]}, False),  # another team
        ({"name": "amy", "admin": False, "groups": []}, True),  # a member of alpha
        (ORGANIZER, True),
    ):
        at = open_app("team", user=user)
        at.selectbox(key="team_pick").set_value("alpha").run()
        shown = T("provenance") in [h.value for h in at.subheader]
        assert shown == sees, user
        if sees:
            prov = table(at, 1)
            assert list(prov[T("col_submission")]) == [sid]
            assert list(prov[T("col_notebook")]) == ["baseline.ipynb"]
            assert list(prov[T("col_notebook_sha")]) == ["a" * 64] and list(prov[T("col_packages")]) == [2]
            assert list(prov[T("col_tables_read")]) == ["hospital_outpatient.daily_visits v1"]
        else:
            assert "a" * 64 not in str([d.value for d in at.dataframe])


# --- organizer page --------------------------------------------------------------------------


@sqlite_only
def test_the_organizer_page_lists_the_finalists_rerun_verdicts(race):
    at = open_app("organizer", user=ORGANIZER)
    assert T("no_reruns") in [c.value for c in at.caption]
    with race.session() as s:
        subs = s.execute(select(Submission).where(Submission.status == "scored").order_by(Submission.id)).scalars()
        first, second = list(subs)[:2]
        for sub, verdict, detail in (
            (first, "reproduced", {"rows": 10, "rows_differing": 0}),
            (first, "differs", {"rows": 10, "rows_differing": 3}),  # the newest verdict of a submission counts
            (second, "failed", {"why": "the notebook stopped with an error (exit code 1)"}),
        ):
            s.add(
                Rerun(
                    submission_id=sub.id,
                    challenge=sub.challenge,
                    team_id=sub.team_id,
                    verdict=verdict,
                    detail=detail,
                    log="",
                    seconds=1.0,
                    by="org",
                    started_at=NOW,
                    finished_at=NOW,
                )
            )
        ids = [first.id, second.id]
    queries.reset()
    at = open_app("organizer", user=ORGANIZER)
    verdicts = table(at, len(at.dataframe) - 1)
    assert list(verdicts[T("col_submission")]) == ids
    assert list(verdicts[T("col_verdict")]) == ["结果不同", "运行失败"]
    assert list(verdicts[T("col_rerun_detail")]) == [
        "10 行中 3 行不同",
        "the notebook stopped with an error (exit code 1)",
    ]
    assert list(verdicts[T("col_team")]) == ["alpha", "alpha"]


@sqlite_only
def test_the_organizer_page_exists_only_for_organizers(race):
    for user in (None, {"name": "bob", "admin": False, "groups": ["beta"]}):
        at = open_app(user=user)
        assert "organizer" not in str([p for p in at._registered_pages.values()])
        with pytest.raises(ValueError):
            at.switch_page("views/organizer.py")
    at = open_app(user={"name": "bob", "admin": False})
    assert at.sidebar.caption[0].value == "已登录：bob（访客）"

    at = open_app("organizer", user=ORGANIZER, lang="en")
    assert at.title[0].value == "Organizers"
    assert at.sidebar.caption[0].value == "Signed in as org (organizer)"
    status = table(at, 0)
    assert list(status["Status"]) == ["sealed (still open)"] * 7
    assert [m.value for m in at.metric] == ["7", "2", "0", "0"]  # scored, refused, error, waiting
    stream = table(at, 1)
    assert len(stream) == 9 and f"{XSS}.csv" in set(stream["File"]) and XSS in set(stream["Team"])
    assert set(stream["Error codes"]) == {"", "missing-column"}
    codes = table(at, 2)
    assert list(codes["Code"]) == ["missing-column"] and list(codes["Submissions"]) == [2]
    grants = table(at, 3)
    assert list(grants["Team"]) == ["数据先锋"] and list(grants["Extra"]) == [2]
    assert list(grants["Reason"]) == ["评测故障补偿"]
    markdown_is_safe(at)


# --- catalog ---------------------------------------------------------------------------------


@sqlite_only
def test_catalog_search_facets_schema_quality_preview_and_challenges(app_env, demo, race):
    app_env.setenv("CONTESTHUB_DATA_ROOT", str(demo.data_root))
    at = open_app("catalog")
    assert at.title[0].value == "开放数据目录"
    assert len(table(at)) == 8
    at.text_input(key="catalog_query").input("门诊").run()
    listing = table(at)
    assert listing["数据集"].iloc[0] == "hospital_outpatient"
    at.selectbox(key="catalog_dataset").set_value("hospital_outpatient").run()
    assert at.header[0].value == "医院门诊就诊数据（模拟）"
    used = table(at, 3)
    assert list(used["赛题"]) == ["门诊量预测", "急诊就诊识别", "分诊科室预测"]
    at.selectbox(key="catalog_table_hospital_outpatient").set_value("daily_visits").run()
    schema = table(at, 5)
    visits = schema[schema["字段"] == "outpatient_visits"].iloc[0]
    assert visits["单位"] == "人次 (visits)" and visits["指标定义"].startswith("当日在门诊挂号就诊的人次")
    # Where a program gets the table: the public data service's downloads and API.
    links = " ".join(m.value for m in at.markdown)
    for url in (
        "/services/data/api/datasets/hospital_outpatient/tables/daily_visits/download?format=csv)",
        "/services/data/api/datasets/hospital_outpatient/tables/daily_visits/download?format=csv&encoding=gbk)",
        "/services/data/api/datasets/hospital_outpatient/tables/daily_visits/rows)",
    ):
        assert url in links, links
    assert "[下载 Parquet](" in links
    cli = "命令行：contesthub data download hospital_outpatient daily_visits"
    assert any(c.value.startswith(cli) for c in at.caption)
    preview = table(at, 6)
    assert len(preview) == 20 and list(preview.columns) == [
        "date",
        "hospital_id",
        "outpatient_visits",
        "emergency_visits",
    ]
    # A person-level table says how it protects people: the gate on persons, the risk, the pseudonyms.
    at.selectbox(key="catalog_table_hospital_outpatient").set_value("visit_records").run()
    captions = [c.value for c in at.caption]
    assert any(
        c.startswith("每组准标识符（visit_date, gender, age, residence_area）取值至少对应 11 名不同的人（patient_id）")
        for c in captions
    )
    assert any(c.startswith("再识别风险：最大 0.091（上限 0.091），平均 0.0") for c in captions)
    assert "visit_id 为假名，每个版本不同。" in captions
    assert any(c.endswith("行未发布：与 daily_visits 的测试集同一时段。") for c in captions)

    at.radio(key="lang_choice").set_value("en").run()
    at.text_input(key="catalog_query").input("employment").run()
    assert set(table(at)["Dataset"]) == {"city_employment", "us_employment"}
    at.selectbox(key="catalog_theme").set_value("transport-tourism").run()
    assert at.warning[0].value == "No dataset matches."
    at.text_input(key="catalog_query").input("").run()
    assert set(table(at)["Dataset"]) == {"metro_ridership", "scenic_visitors", "travel_mode_choice"}
    at.selectbox(key="catalog_theme").set_value("__all__").run()
    at.selectbox(key="catalog_dataset").set_value("school_enrollment").run()
    assert "1,500 rows read, 2 rows with problems, 2 quarantined." in [w.value for w in at.warning]
    quality = next(d.value for d in at.dataframe if "Code" in d.value.columns)
    assert set(quality["Code"]) == {"constraint-error"}
    assert not any(c.value == "No challenge uses this dataset." for c in at.caption)  # primary_entrants does
    at.selectbox(key="catalog_dataset").set_value("rand_hie").run()
    assert any(c.value == "No challenge uses this dataset." for c in at.caption)


# --- the parts underneath --------------------------------------------------------------------


def _reference_board(s, ch, now: dt.datetime) -> list[tuple]:
    """The board's rule spelled out over every scored submission: each team's best public score
    (ties: the earlier, then the lower id), teams in that order, movement against 24 hours ago."""
    rows = s.execute(
        select(Submission.id, Submission.team_id, Submission.created_at, Score.public_score)
        .join(Score, (Score.submission_id == Submission.id) & Score.active.is_(True))
        .where(Submission.challenge == ch.id, Submission.status == "scored", Score.public_score.is_not(None))
    ).all()
    sign = -1 if ch.higher_is_better else 1

    def board(until):
        best = {}
        for sid, team, at, score in rows:
            key = (sign * score, at, sid)
            if at <= until and (team not in best or key < best[team]):
                best[team] = key
        return [team for team, _ in sorted(best.items(), key=lambda kv: kv[1])], best

    order, best = board(now)
    before, _ = board(now - dt.timedelta(hours=24))
    names = dict(s.execute(select(Team.id, Team.name)).all())
    out = []
    for i, team in enumerate(order, 1):
        score = sign * best[team][0]
        tie_rank = next(j for j, other in enumerate(order, 1) if sign * best[other][0] == score)
        tied = sum(sign * best[other][0] == score for other in order) > 1
        moved = before.index(team) + 1 - i if team in before else None
        out.append((i, tie_rank, tied, names[team], score, moved))
    return out


def test_the_board_follows_its_rule_with_ties_and_movement(store, demo_contest):
    """One ranking (leaderboard/ranking.py) for the app, the service and the reveal; here checked
    against the rule spelled out in Python, with exact ties between and within teams."""
    demo.seed(store, demo_contest, teams=60, submissions=1500, now=NOW, grant=False)
    with store.session() as s:  # a few exact ties within teams, to check the tie-breaks
        scores = s.execute(select(Score).order_by(Score.id).limit(12)).scalars().all()
        for a, b in zip(scores[::2], scores[1::2], strict=True):
            b.public_score = a.public_score
    for ch in demo_contest.challenges:  # and between teams: the 4th team's best made equal to the 3rd's
        with store.session() as s:
            best = {}
            for score, team in s.execute(
                select(Score, Submission.team_id)
                .join(Submission, Submission.id == Score.submission_id)
                .where(Submission.challenge == ch.id, Score.active.is_(True), Submission.status == "scored")
            ).all():
                better = best.get(team) is None or (score.public_score > best[team].public_score) == ch.higher_is_better
                best[team] = score if better else best[team]
            ordered = sorted(best.values(), key=lambda x: x.public_score, reverse=ch.higher_is_better)
            ordered[3].public_score = ordered[2].public_score
    seen_ties = seen_moves = False
    for ch in demo_contest.challenges:
        with store.session() as s:
            expected = _reference_board(s, ch, NOW)
            got = queries.public_board_rows(s, ch, NOW).to_dict("records")
        assert len(got) == len(expected) > 0
        seen_ties |= any(r[2] for r in expected)
        seen_moves |= any(r[5] for r in expected)
        moved = [None if pd.isna(g["movement_24h"]) else g["movement_24h"] for g in got]
        keys = ("rank", "tie_rank", "tied", "team", "score")
        shown = [(*(g[k] for k in keys), m) for g, m in zip(got, moved, strict=True)]
        assert shown == expected, ch.id
    assert (seen_ties, seen_moves) == (True, True)  # the cases that matter were there to check


def test_every_message_has_both_languages_and_every_used_key_exists():
    placeholders = re.compile(r"{(\w+)}")
    for key, (zh, en) in i18n.MESSAGES.items():
        assert zh.strip() and en.strip(), key
        assert set(placeholders.findall(zh)) == set(placeholders.findall(en)), key
    source = "\n".join(p.read_text("utf-8") for p in [APP, *sorted((APP.parent / "views").glob("*.py"))])
    used = set(re.findall(r"\btr?\(\s*\"(\w+)\"", source))
    used |= {f"view_{v}" for v in ("final", "public")}
    used |= {f"status_{s}" for s in ("scored", "invalid", "error", "pending", "received", "validating", "future")}
    assert used - set(i18n.MESSAGES) == set()
    assert set(i18n.MESSAGES) - used == set()


def test_a_missing_store_is_a_notice_not_a_traceback(app_env, tmp_path):
    app_env.setenv("CONTESTHUB_DB_URL", f"sqlite:///{tmp_path / 'nothing-here.sqlite'}")
    at = open_app("board")
    assert at.info[-1].value == T("store_unavailable")
    assert not (tmp_path / "nothing-here.sqlite").exists()  # read-only: never created


# --- JupyterHub OAuth: the sign-in routes against a stand-in for the hub's API -------------


class _FakeHub(BaseHTTPRequestHandler):
    """The two hub endpoints a service's OAuth uses: the token exchange and ``/user``."""

    calls: ClassVar[list] = []

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        self.calls.append(("token", form))
        if form.get("code") == ["good-code"] and form.get("code_verifier"):
            self._reply(200, {"access_token": "tok-org", "token_type": "Bearer"})
        else:
            self._reply(400, {"error": "invalid_grant"})

    def do_GET(self) -> None:
        self.calls.append(("user", self.headers.get("Authorization")))
        users = {"token tok-org": {"kind": "user", "name": "org", "admin": True, "groups": []}}
        model = users.get(self.headers.get("Authorization", ""))
        self._reply(200, model) if model else self._reply(403, {"status": 403, "message": "no such token"})


@pytest.fixture
def fake_hub(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api = f"http://127.0.0.1:{server.server_port}/hub/api"
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "service-secret")
    monkeypatch.setenv("JUPYTERHUB_API_URL", api)
    monkeypatch.setenv("JUPYTERHUB_CLIENT_ID", "service-leaderboard")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/services/leaderboard/")
    monkeypatch.setenv("JUPYTERHUB_OAUTH_CALLBACK_URL", "/services/leaderboard/oauth_callback")
    _FakeHub.calls = []
    hub_auth.oauth.cache_clear()
    yield api
    hub_auth.oauth.cache_clear()
    server.shutdown()
    server.server_close()


def test_hub_oauth_sign_in_sets_a_token_cookie_that_identifies_an_admin(fake_hub):
    import asyncio

    import httpx
    from starlette.applications import Starlette

    async def browse(*paths: str) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=Starlette(routes=hub_auth.routes()))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return [await client.get(p) for p in paths]

    (r,) = asyncio.run(browse("/services/leaderboard/oauth_login"))
    assert r.status_code == 302
    target = urlparse(r.headers["location"])
    query = parse_qs(target.query)
    assert target.path == "/hub/api/oauth2/authorize"
    assert query["client_id"] == ["service-leaderboard"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["/services/leaderboard/oauth_callback"]
    assert query["code_challenge_method"] == ["S256"] and query["state"][0]
    state = query["state"][0]
    assert "HttpOnly" in r.headers["set-cookie"] and "Path=/services/leaderboard/" in r.headers["set-cookie"]

    callback = "/services/leaderboard/oauth_callback?code=good-code&state="

    async def sign_in() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=Starlette(routes=hub_auth.routes()))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.cookies.set("service-leaderboard-oauth-state", state)
            # A state this browser was not given is refused before anything is asked of the hub.
            forged = await client.get(callback + "forged")
            assert forged.status_code == 400 and not _FakeHub.calls
            ok = await client.get(callback + state)
            again = await client.get(callback + state)  # the state is spent
            out = await client.get("/services/leaderboard/oauth_logout")
            return [ok, again, out]

    ok, again, out = asyncio.run(sign_in())
    assert ok.status_code == 302 and ok.headers["location"] == "/services/leaderboard/organizer"
    cookies = ok.headers.get_list("set-cookie")
    token_cookie = next(c for c in cookies if c.startswith("service-leaderboard="))
    assert "service-leaderboard=tok-org" in token_cookie and "HttpOnly" in token_cookie
    assert "samesite=strict" in token_cookie.lower() and "Path=/services/leaderboard/" in token_cookie
    assert _FakeHub.calls[0][0] == "token" and _FakeHub.calls[0][1]["client_secret"] == ["service-secret"]
    assert _FakeHub.calls[0][1]["code_verifier"]
    assert again.status_code == 400
    assert out.status_code == 302 and 'service-leaderboard=""' in out.headers["set-cookie"]

    # What every script run does with the cookie: ask the hub whose token it is.
    user = hub_auth.user_for_cookies({"service-leaderboard": "tok-org"})
    assert user["name"] == "org" and hub_auth.is_organizer(user)
    assert hub_auth.user_for_cookies({"service-leaderboard": "stolen"}) is None
    assert hub_auth.user_for_cookies({}) is None


@sqlite_only
def test_catalog_lists_page_opening_sharing_plan_zh_and_en(app_env, demo, race):
    """开放清单 / 共享清单 / 开放计划, Chinese by default, English on the switch; overdue plans flagged."""
    app_env.setenv("CONTESTHUB_DATA_ROOT", str(demo.data_root))
    at = open_app("lists")  # the clock pinned at NOW, 2026-12-01
    assert at.title[0].value == "开放清单、共享清单与开放计划"
    assert [s.value for s in at.subheader] == ["开放清单", "共享清单", "开放计划"]
    opening = table(at, 0)
    row = opening[opening["数据集"] == "hospital_outpatient"].iloc[0]
    assert row["信息资源代码"] == "B0601-00001/00001" and row["开放类型"] == "无条件开放"
    assert row["使用方式"] == "下载、接口、沙箱" and row["更新周期"] == "每日" and row["国家主题分类"] == "06.01"
    sharing = table(at, 1)
    assert set(sharing["共享类型"]) == {"无条件共享", "有条件共享"}
    plan = table(at, 2).set_index("数据集")
    assert plan.loc["bus_punctuality", "状态"] == "已逾期" and plan.loc["bus_punctuality", "逾期天数"] == 31
    assert plan.loc["pension_coverage", "状态"] == "计划中" and plan.loc["scenic_visitors", "状态"] == "已发布"
    assert at.warning[0].value == "1 项计划已逾期未开放：bus_punctuality"
    links = " ".join(m.value for m in at.markdown)
    assert "/services/data/api/lists/plan.csv)" in links and "/services/data/api/lists/opening.json)" in links
    at.radio(key="lang_choice").set_value("en").run()
    assert [s.value for s in at.subheader] == ["Opening list", "Sharing list", "Opening plan"]
    assert table(at, 2).set_index("Dataset").loc["bus_punctuality", "Status"] == "overdue"


@sqlite_only
def test_catalog_draws_downloads_and_api_calls_per_day(app_env, demo, race, tmp_path):
    import json

    from hub import data_usage

    app_env.setenv("CONTESTHUB_DATA_ROOT", str(demo.data_root))
    folder = data_usage.data_cache_dir(tmp_path / "app-private")
    folder.mkdir(parents=True)
    days = {
        "2026-11-29": {"hospital_outpatient": {"api": 40, "download": 3}, "metro_ridership": {"api": 9, "download": 9}},
        "2026-11-30": {"hospital_outpatient": {"api": 12, "download": 5}},
    }
    (folder / "usage.json").write_text(json.dumps({"days": days}), "utf-8")
    at = open_app("catalog")
    at.selectbox(key="catalog_dataset").set_value("hospital_outpatient").run()
    assert "下载与接口调用（每日）" in [s.value for s in at.subheader]
    assert "共 2 天：接口调用 52 次，下载 8 次（只记总数，不记来源）。" in [c.value for c in at.caption]
    _strings, numbers = rendered(at)
    assert {40, 3, 12, 5} <= set(numbers) and 9 not in numbers  # this dataset's bars only
    at.selectbox(key="catalog_dataset").set_value("school_enrollment").run()
    assert "尚无下载或接口调用记录。" in [c.value for c in at.caption]
