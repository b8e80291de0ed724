"""Rounds that gate: a two-round contest with two regions, played on the demo data.

Six teams, three in each region (east, west), play the preliminary round's two challenges with
files of known quality; the preliminary round advances the two best sums of final ranks in each
region. The test checks who advanced (exactly the rule's teams, recorded in the audit log), that
a team left out is refused in the final round with ``not-advanced`` and spends nothing, and that
each round has its own board.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from contest_fixtures import prediction_frame
from sqlalchemy import func, select
from test_leaderboard_app import app_env, open_app, table  # noqa: F401 (a fixture)

from hub.submit_service import http_status
from leaderboard import contest, ranking, rounds, submissions, teams
from leaderboard.contest import ContestConfigError
from leaderboard.models import AuditEntry, Quota, Submission
from sandbox import clock

CST = dt.timezone(dt.timedelta(hours=8))
R1_OPEN = dt.datetime(2026, 12, 1, 10, 0, tzinfo=CST)
R1_REVIEW = dt.datetime(2026, 12, 11, 10, 0, tzinfo=CST)
R2_OPEN = dt.datetime(2026, 12, 16, 10, 0, tzinfo=CST)

CHALLENGE = """
[[challenges]]
id = "{id}"
title = {{ zh = "{id}", en = "{id}" }}
description = {{ zh = "轮次测试", en = "round test" }}
dataset = "hospital_outpatient"
{body}
public_fraction = 0.3
daily_quota = 3
max_team_size = 5
final_selections = 2
"""
FORECAST = """table = "daily_visits"
id_columns = ["date", "hospital_id"]
target = "outpatient_visits"
metric = "rmse"
"""
EMERGENCY = """table = "visit_records"
id_columns = ["visit_id"]
target = "department"
positive = "急诊科"
prediction = "p_emergency"
metric = "roc_auc"
"""
ROUNDS = """
[[rounds]]
id = "preliminary"
title = { zh = "初赛", en = "Preliminary round" }
challenges = ["r1_forecast", "r1_emergency"]
opens = 2026-11-01T00:00:00+08:00
closes = 2026-12-10T23:59:59+08:00
reveal = 2026-12-12T10:00:00+08:00
advance = { top = 2, by = "rank_sum", per_region = true }

[[rounds]]
id = "final"
title = { zh = "决赛", en = "Final" }
challenges = ["r2_forecast"]
opens = 2026-12-15T00:00:00+08:00
closes = 2027-01-10T23:59:59+08:00
reveal = 2027-01-12T10:00:00+08:00
"""
HEAD = """title = { zh = "两轮赛", en = "Two rounds" }
timezone = "Asia/Shanghai"
"""

# Noise per team: the forecast ranks e1 w1 e2 w2 e3 w3, emergency detection e3 e1 e2 w1 w2 w3.
# Rank sums: e1 3, e3 6, e2 6 (e3 has the better single rank), w1 6, w2 9, w3 12. By region the
# two best are e1, e3 (east) and w1, w2 (west); overall e2 would have beaten w2.
# (Below a noise of 0.5 yes and no probabilities do not overlap and every AUC is 1.)
TEAMS = {
    "e1": ("east", 0.10, 0.6),
    "w1": ("west", 0.15, 0.8),
    "e2": ("east", 0.20, 0.7),
    "w2": ("west", 0.25, 0.9),
    "e3": ("east", 0.30, 0.55),
    "w3": ("west", 0.35, 0.95),
}
ADVANCED = {"e1", "e3", "w1", "w2"}


def contest_file(tmp_path, rounds_text: str = ROUNDS):
    body = HEAD + rounds_text
    body += CHALLENGE.format(id="r1_forecast", body=FORECAST)
    body += CHALLENGE.format(id="r1_emergency", body=EMERGENCY)
    body += CHALLENGE.format(id="r2_forecast", body=FORECAST)
    path = tmp_path / "rounds.toml"
    path.write_text(body, "utf-8")
    return path


def upload(store, c, user, challenge_id, demo, tmp_path, noise, seed=0, now=R1_OPEN):
    file = tmp_path / f"{user}-{challenge_id}-{seed}.csv"
    prediction_frame(demo, c.challenge(challenge_id), noise, seed).to_csv(file, index=False)
    with open(file, "rb") as f:
        up = store.files.receive(f, c.upload_limit)
    return submissions.accept(store, c, user=user, challenge_id=challenge_id, upload=up, file_name=file.name, now=now)


@pytest.mark.usefixtures("app_env")
def test_round_one_advances_exactly_the_rule_and_the_others_are_refused_in_round_two(
    store, demo, tmp_path, run_cli, monkeypatch
):
    c = contest.load(contest_file(tmp_path))
    assert [r.id for r in c.rounds] == ["preliminary", "final"]
    # Every phase is the engine's: a round takes submissions, then is under review until revealed.
    assert [p.id for p in c.phases] == ["preliminary.open", "preliminary.review", "final.open", "final.review"]
    assert c.challenge("r2_forecast").opens == dt.datetime(2026, 12, 15, tzinfo=CST)  # from its round

    with store.session() as s:
        for name, (region, *_) in TEAMS.items():
            teams.create(s, c, name, actor="org", members=(f"{name}-ann",), region=region, now=R1_OPEN)
    for name, (_, forecast, emergency) in TEAMS.items():
        for ch, noise in (("r1_forecast", forecast), ("r1_emergency", emergency)):
            sub = upload(store, c, f"{name}-ann", ch, demo, tmp_path, noise)
            assert submissions.score(store, c, demo, sub.id).status == "scored"

    # Round two is closed while round one runs, and nobody is admitted yet.
    with pytest.raises(submissions.SubmissionRefused) as early:
        upload(store, c, "e1-ann", "r2_forecast", demo, tmp_path, 0.1)
    assert early.value.code == "challenge-not-open"

    with clock.pinned(R1_REVIEW), store.session() as s:
        with pytest.raises(rounds.RoundError) as sealed:
            rounds.advance(s, c, "preliminary", by="org")
        assert sealed.value.code == "round-not-revealed"
    with clock.pinned(R1_REVIEW):
        for ch in ("r1_forecast", "r1_emergency"):
            with store.session() as s:
                ranking.reveal(s, c, ch, by="org")
    with store.session() as s:
        assert [r["team"] for r in ranking.private_standings(s, c.challenge("r1_forecast"))] == [
            "e1", "w1", "e2", "w2", "e3", "w3"
        ]  # fmt: skip
        assert [r["team"] for r in ranking.private_standings(s, c.challenge("r1_emergency"))] == [
            "e3", "e1", "e2", "w1", "w2", "w3"
        ]  # fmt: skip

    # The organizer's command: after the reveal, once, recorded.
    monkeypatch.setenv("CONTESTHUB_DB_URL", store.url)
    with clock.pinned(R1_REVIEW):
        result = run_cli(
            "rounds", "--contest", str(c.path), "advance", "preliminary", "--json", "--by", "org", root=demo
        )
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        again = run_cli("rounds", "--contest", str(c.path), "advance", "preliminary", "--by", "org", root=demo)
    assert doc["to"] == "final"
    assert {t["team"] for t in doc["teams"]} == ADVANCED
    assert {t["team"]: t["region"] for t in doc["teams"]} == {"e1": "east", "e3": "east", "w1": "west", "w2": "west"}
    assert again.exit_code != 0 and "already advanced" in again.output
    listed = json.loads(run_cli("rounds", "--contest", str(c.path), "list", "--json", root=demo).output)
    assert [(r["id"], r["admitted"]) for r in listed] == [("preliminary", None), ("final", sorted(ADVANCED))]
    with store.session() as s:
        assert {a["team"] for a in rounds.advanced(s, "final")} == ADVANCED
        (entry,) = s.execute(select(AuditEntry).where(AuditEntry.action == "round.advance")).scalars()
        assert entry.subject == "preliminary" and json.loads(entry.payload)["teams"] == sorted(ADVANCED)

    # Round two: an advanced team plays; a team left out is refused and spends nothing.
    sub = upload(store, c, "e1-ann", "r2_forecast", demo, tmp_path, 0.1, now=R2_OPEN)
    assert submissions.score(store, c, demo, sub.id).status == "scored"
    for user in ("e2-ann", "w3-ann"):
        with pytest.raises(submissions.SubmissionRefused) as refused:
            upload(store, c, user, "r2_forecast", demo, tmp_path, 0.1, now=R2_OPEN)
        assert refused.value.code == "not-advanced" and http_status(refused.value) == 403
        assert "did not advance to Final" in refused.value.en and "未从初赛晋级决赛" in refused.value.zh
        with store.session() as s:
            team = teams.get(s, user[:2])
            with pytest.raises(submissions.SubmissionRefused) as early_refusal:
                submissions.precheck(s, c, team, "r2_forecast", now=R2_OPEN)
            assert early_refusal.value.code == "not-advanced"
            assert s.get(Quota, (team.id, "r2_forecast", R2_OPEN.date())) is None  # no quota spent
            assert (
                s.execute(
                    select(func.count()).where(Submission.team_id == team.id, Submission.challenge == "r2_forecast")
                ).scalar_one()
                == 0
            )
    assert not list(store.files.incoming.iterdir())  # the refused files were not kept

    # One board per round: round one's holds all six teams, round two's only who played there.
    with store.session() as s:
        r1 = ranking.public_standings(s, c.challenge("r1_forecast"), now=R2_OPEN)
        r2 = ranking.public_standings(s, c.challenge("r2_forecast"), now=R2_OPEN)
    assert {r["team"] for r in r1} == set(TEAMS) and [r["team"] for r in r2] == ["e1"]

    # The leaderboard: a round picker, who the final admits, and the final's own board.
    monkeypatch.setenv("CONTESTHUB_CONTEST", str(c.path))
    at = open_app("board", now=R2_OPEN)
    assert at.selectbox(key="board_round").options == ["初赛", "决赛"]
    assert "初赛对所有队伍开放" in at.caption[0].value
    assert list(table(at)["队伍"].sort_values()) == sorted(TEAMS)
    at.selectbox(key="board_round").set_value("final").run()
    assert at.caption[0].value == "决赛只接受从初赛晋级的 4 支队伍：e1、e3、w1、w2"
    assert at.selectbox(key="board_challenge").options == ["r2_forecast"]
    assert list(table(at)["队伍"]) == ["e1"]


@pytest.mark.parametrize(
    ("advance", "expected"),
    [
        ('{ top = 2, by = "rank_sum" }', {"e1", "e3", "w1", "e2"}),
        ('{ top = 1, by = "challenge", per_region = true }', {"e1", "w1", "e3"}),
        ('{ top = 1, by = "challenge" }', {"e1", "e3"}),
    ],
    ids=["rank-sum-overall", "per-challenge-per-region", "per-challenge"],
)
def test_each_advancement_rule_takes_exactly_its_teams(store, demo, tmp_path, advance, expected):
    text = ROUNDS.replace('{ top = 2, by = "rank_sum", per_region = true }', advance)
    if "rank_sum" in advance:
        text = text.replace("top = 2", "top = 4")
    c = contest.load(contest_file(tmp_path, text))
    with store.session() as s:
        for name, (region, *_) in TEAMS.items():
            teams.create(s, c, name, actor="org", members=(f"{name}-ann",), region=region, now=R1_OPEN)
    for name, (_, forecast, emergency) in TEAMS.items():
        for ch, noise in (("r1_forecast", forecast), ("r1_emergency", emergency)):
            submissions.score(store, c, demo, upload(store, c, f"{name}-ann", ch, demo, tmp_path, noise).id)
    with store.session() as s:
        assert {t["team"] for t in rounds.decide(s, c, "preliminary")} == expected


@pytest.mark.parametrize(
    ("edit", "key", "what"),
    [
        (('challenges = ["r2_forecast"]', 'challenges = ["r1_forecast"]'), "rounds[1].challenges", "already in round"),
        (('advance = { top = 2, by = "rank_sum", per_region = true }\n', ""), "rounds[0].advance", "does not say who"),
        (
            ("opens = 2026-12-15T00:00:00+08:00", "opens = 2026-12-01T00:00:00+08:00"),
            "rounds[1].challenges",
            "opens before",
        ),
        (('challenges = ["r2_forecast"]', 'challenges = ["r2_nowhere"]'), "rounds[1].challenges", "unknown challenge"),
    ],
    ids=["challenge-twice", "no-rule", "overlap", "unknown"],
)
def test_round_mistakes_name_file_and_key(tmp_path, edit, key, what):
    text = ROUNDS
    assert edit[0] in text
    with pytest.raises(ContestConfigError) as err:
        contest.load(contest_file(tmp_path, text.replace(edit[0], edit[1])))
    assert any(p.path == key and what in p.what for p in err.value.problems), err.value.problems


def test_a_demos_rounds_move_with_its_anchor_day(tmp_path):
    """A demo's dates move by whole days to the day it was first brought up; rounds' too."""
    text = HEAD + "demo = { day = 2026-12-01 }\n" + ROUNDS
    for cid, body in (("r1_forecast", FORECAST), ("r1_emergency", EMERGENCY), ("r2_forecast", FORECAST)):
        text += CHALLENGE.format(id=cid, body=body)
    path = tmp_path / "demo-rounds.toml"
    path.write_text(text, "utf-8")
    anchor = dt.date(2029, 3, 10)
    c = contest.load(path, anchor_day=anchor)
    days = (anchor - dt.date(2026, 12, 1)).days
    final = c.round("final")
    assert final.opens == dt.datetime(2026, 12, 15, tzinfo=CST) + dt.timedelta(days=days)
    assert final.reveal.astimezone(CST).time() == dt.time(10, 0)
    assert c.challenge("r2_forecast").closes == final.closes
    # Only the first round must be open on the demo's day; the final comes later, as written.
    assert c.round("preliminary").opens <= dt.datetime.combine(anchor, dt.time(12), CST) < final.opens
