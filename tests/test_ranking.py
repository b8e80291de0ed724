"""Standings, final selection, the sealed private ranking, the reveal and rescoring."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from contest_fixtures import NOW
from sqlalchemy import select

from leaderboard import audit, ranking, submissions, teams
from leaderboard.models import Score

CH = "outpatient_forecast"


@pytest.fixture
def race(store, demo, demo_contest, predictions, submit):
    """Three teams on the RMSE challenge: gamma is best, alpha has two files, beta ties alpha's best."""
    for name, user in (("alpha", "ann"), ("beta", "bob"), ("gamma", "gus")):
        with store.session() as s:
            teams.create(s, demo_contest, name, actor="org", members=(user,), now=NOW)
    ids = {}
    plan = [
        ("ann", "a_rough", 0.5, 1, 0),
        ("ann", "a_good", 0.2, 2, 1),
        ("bob", "b_same", 0.2, 2, 2),  # the very same file as a_good, submitted later
        ("gus", "g_best", 0.05, 3, 3),
    ]
    for user, key, noise, seed, minutes in plan:
        path = predictions(CH, noise=noise, seed=seed)
        sub = submit(store, user, CH, path, now=NOW + dt.timedelta(minutes=minutes))
        ids[key] = submissions.score(store, demo_contest, demo, sub.id).id
    return ids


def test_public_standings_rank_best_scores_and_mark_ties(store, demo_contest, race):
    ch = demo_contest.challenge(CH)
    with store.session() as s:
        rows = ranking.public_standings(s, ch, now=NOW + dt.timedelta(hours=1))
    assert [r["team"] for r in rows] == ["gamma", "alpha", "beta"]  # RMSE: lower is better; tie → earlier
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert [r["tie_rank"] for r in rows] == [1, 2, 2] and [r["tied"] for r in rows] == [False, True, True]
    assert rows[1]["entries"] == 2 and rows[1]["submission_id"] == race["a_good"]
    assert rows[0]["movement_24h"] is None  # new on the board today
    assert all("private" not in k for r in rows for k in r)


def test_the_private_ranking_is_sealed_until_revealed_after_the_deadline(store, demo_contest, race):
    ch = demo_contest.challenge(CH)
    with store.session() as s:
        with pytest.raises(ranking.Sealed):
            ranking.private_standings(s, ch)
        with pytest.raises(Exception, match="still open") as early:
            ranking.reveal(s, demo_contest, CH, by="org", now=NOW)
        assert early.value.code == "reveal-too-early"
    with store.session() as s:
        ranking.reveal(s, demo_contest, CH, by="org", now=ch.closes + dt.timedelta(hours=1))
    with store.session() as s:
        rows = ranking.private_standings(s, ch)
        assert rows[0]["team"] == "gamma"
        assert all(r["public_rank"] is not None and r["shift"] == r["public_rank"] - r["rank"] for r in rows)
        assert s.execute(select(audit.AuditEntry).where(audit.AuditEntry.action == "challenge.reveal")).scalar_one()
        with pytest.raises(Exception, match="already revealed"):
            ranking.reveal(s, demo_contest, CH, by="org", now=ch.closes + dt.timedelta(hours=2))


def test_final_selection_decides_which_submission_counts_privately(store, demo_contest, race):
    ch = demo_contest.challenge(CH)
    organizer_view = dataclasses.replace(ch, final_selections=1)
    with store.session() as s:
        default = {r["team"]: r for r in ranking.private_standings(s, organizer_view, organizer=True)}
    assert default["alpha"]["submission_id"] == race["a_good"]  # best public by default
    with store.session() as s:
        submissions.select_final(s, demo_contest, "ann", CH, [race["a_rough"]], now=NOW)
        chosen = {r["team"]: r for r in ranking.private_standings(s, organizer_view, organizer=True)}
    assert chosen["alpha"]["submission_id"] == race["a_rough"] and chosen["alpha"]["selected_by_team"]
    with store.session() as s:
        with pytest.raises(Exception, match="at most") as many:
            submissions.select_final(s, demo_contest, "ann", CH, [1, 2, 3], now=NOW)
        assert many.value.code == "too-many-selections"
        with pytest.raises(Exception, match="not scored submissions of your team"):
            submissions.select_final(s, demo_contest, "ann", CH, [race["g_best"]], now=NOW)
        with pytest.raises(Exception, match="closed") as late:
            submissions.select_final(s, demo_contest, "ann", CH, [race["a_good"]], now=ch.closes)
        assert late.value.code == "selection-closed"


def test_a_rescore_keeps_the_old_scores_shows_rank_changes_and_publishes_on_confirmation(
    store, demo, demo_contest, race
):
    ch = demo_contest.challenge(CH)
    # A "metric fix" that reverses the order: the challenge now scores with negated RMSE.
    import leaderboard.scoring as scoring

    real = scoring.score_file

    def fixed(challenge, path, paths, **kw):
        r = real(challenge, path, paths, **kw)
        return dataclasses.replace(r, public_score=-r.public_score, private_score=-r.private_score, metric_version=2)

    result = ranking.rescore(store, demo_contest, demo, CH, by="org", reason="metric sign bug", score=fixed)
    assert result.scored == 4 and not result.invalid
    change = {c["team"]: c for c in result.changes}
    assert change["gamma"]["public_rank_before"] == 1 and change["gamma"]["public_rank_after"] == 3
    with store.session() as s:  # nothing published yet
        assert ranking.public_standings(s, ch, now=NOW + dt.timedelta(hours=1))[0]["team"] == "gamma"
        ranking.decide_rescore(s, result.id, by="org", publish=True)
    with store.session() as s:
        assert ranking.public_standings(s, ch, now=NOW + dt.timedelta(hours=1))[0]["team"] != "gamma"
        all_scores = s.execute(select(Score)).scalars().all()
        assert len(all_scores) == 8 and sum(sc.active for sc in all_scores) == 4  # old rows kept, inactive
        assert {sc.metric_version for sc in all_scores if sc.active} == {2}
        assert audit.verify(s).ok
