"""After the reveal: bootstrap intervals, statistically tied groups, and near-identical predictions."""

from __future__ import annotations

import datetime as dt

import pytest
from contest_fixtures import NOW

from leaderboard import integrity, ranking, submissions, teams

CH = "outpatient_forecast"


@pytest.fixture
def finished(store, demo, demo_contest, predictions, submit):
    """Four teams: two strong and nearly equal, one weak, one that copied the weak team's file."""
    plan = {"strong": (0.10, 1), "twin": (0.101, 2), "weak": (0.6, 3), "copycat": (0.6, 3)}
    for i, (team, (noise, seed)) in enumerate(plan.items()):
        with store.session() as s:
            teams.create(s, demo_contest, team, actor="org", members=(f"u{i}",), now=NOW)
        sub = submit(store, f"u{i}", CH, predictions(CH, noise=noise, seed=seed, name=f"{team}.csv"), now=NOW)
        submissions.score(store, demo_contest, demo, sub.id)
    with store.session() as s:
        ranking.reveal(s, demo_contest, CH, by="org", now=demo_contest.challenge(CH).closes + dt.timedelta(hours=1))
    return plan


def test_the_reveal_report_gives_intervals_and_tied_groups(store, demo, demo_contest, finished):
    report = integrity.attach_report(store, demo_contest, demo, CH, replicates=100)
    with store.session() as s:
        rows = {r["team"]: r for r in ranking.private_standings(s, demo_contest.challenge(CH))}
        assert ranking.revealed(s, CH).report == report  # kept with the reveal, for the pages
    for team, (low, high) in report["intervals"].items():
        assert low <= rows[team]["score"] <= high, (team, low, high, rows[team]["score"])
    groups = report["groups"]
    assert groups["strong"] == groups["twin"] == 1  # 0.100 vs 0.101 noise: not distinguishable
    assert groups["weak"] == groups["copycat"] == 2  # the same file: the same scores, far behind
    assert report["replicates"] == 100 and report["method"].startswith("paired bootstrap")


def test_near_identical_predictions_are_reported_to_organizers(store, demo, demo_contest, finished):
    pairs = integrity.near_duplicates(store, demo_contest, demo, CH, threshold=0.99)
    kinds = {tuple(p["teams"]): p["kind"] for p in pairs}
    assert kinds[("copycat", "weak")] == "identical-file"
    assert kinds.get(("strong", "twin")) == "correlated"  # same truth + tiny noise: r > 0.99
    assert ("strong", "weak") not in kinds
