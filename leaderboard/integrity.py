"""After the reveal: how sure is the ranking, and did teams share predictions?

**Confidence intervals and tied groups.** The private score of each of the top teams is
recomputed on B bootstrap resamples of the private test rows (the same resamples for every
team: a paired bootstrap). A team's interval is the 2.5th–97.5th percentile of its
resampled scores. Groups are formed down the ranking: a team joins the group of the
team leading it when it scores at least as well as that leader in at least 5% of the
resamples (the leader's advantage is not significant at the 5% level), otherwise it starts
a new group. Resamples on which the metric is undefined (e.g. one class only) are skipped.
Computed once at the reveal and stored with it (``reveals.report``), so pages only read it.

**Near-identical predictions** (organizers only). Teams' submissions are compared two ways:
the very same file (same SHA-256) submitted by different teams, over all submissions; and,
among each team's best submission by public score, predictions that agree almost
everywhere (labels: the share of equal labels; numbers: the Pearson correlation), at or
above a threshold. Such pairs are a reason to look, not proof of anything.
"""

from __future__ import annotations

import contextlib
import itertools

import numpy as np
from sqlalchemy import func, select

from leaderboard import ranking
from leaderboard.contest import Challenge, Contest
from leaderboard.metrics import MetricUndefined
from leaderboard.models import Reveal, Submission, Team
from leaderboard.scoring import aligned
from leaderboard.store import Store
from sandbox.settings import Paths

SIGNIFICANCE = 0.05


def _files(store: Store, ids: list[int]) -> dict[int, str]:
    """Submission id → the SHA-256 its file is stored under."""
    with store.read_session() as s:
        return dict(s.execute(select(Submission.id, Submission.sha256).where(Submission.id.in_(ids))).all())


def _private_predictions(store: Store, ch: Challenge, paths: Paths, rows: list[dict]) -> tuple[np.ndarray, dict]:
    shas = _files(store, [r["submission_id"] for r in rows])
    y, preds = None, {}
    for r in rows:
        got = aligned(ch, store.files.path(shas[r["submission_id"]]), paths)
        private = ~got["public"].astype(bool)
        y = got["y"][private] if y is None else y
        preds[r["team"]] = got["p"][private]
    return y, preds


def intervals(
    store: Store, ch: Challenge, paths: Paths, *, replicates: int = 200, top: int = 20, seed: int = 20270203
) -> dict:
    """Bootstrap intervals and tied groups for the ``top`` teams of the private ranking.

    Not for a ranking challenge (empty): its rows are not independent draws, a resample would
    have to draw whole groups, which this does not do yet."""
    if ch.group is not None:
        return {}
    with store.read_session() as s:
        rows = ranking.private_standings(s, ch, organizer=True)[:top]
    if not rows:
        return {}
    y, preds = _private_predictions(store, ch, paths, rows)
    rng = np.random.default_rng(seed)
    boot = {r["team"]: np.full(replicates, np.nan) for r in rows}
    for b in range(replicates):  # one resample at a time: memory stays at one index array
        idx = rng.integers(0, len(y), len(y))
        for team, p in preds.items():
            with contextlib.suppress(MetricUndefined):
                boot[team][b] = ch.scorer(y[idx], p[idx], **ch.metric_params)
    sign = 1.0 if ch.higher_is_better else -1.0
    groups, leader, group = {}, None, 0
    for r in rows:
        team = r["team"]
        if leader is not None:
            both = ~np.isnan(boot[team]) & ~np.isnan(boot[leader])
            as_good = np.mean(sign * (boot[team][both] - boot[leader][both]) >= 0) if both.any() else 1.0
            if as_good < SIGNIFICANCE:
                group, leader = group + 1, team
        else:
            leader = team
        groups[team] = group + 1
    return {
        "method": "paired bootstrap over the private test rows",
        "replicates": replicates,
        "significance": SIGNIFICANCE,
        "intervals": {t: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))] for t, v in boot.items()},
        "groups": groups,
    }


def attach_report(store: Store, contest: Contest, paths: Paths, challenge_id: str, **kw) -> dict:
    """Compute the intervals of a revealed challenge and keep them with its reveal record."""
    ch = contest.challenge(challenge_id)
    report = intervals(store, ch, paths, **kw)
    with store.session() as s:
        rec = s.get(Reveal, ch.id)
        if rec is None:
            raise ranking.Sealed(f"{ch.id} is not revealed yet", f"赛题 {ch.id} 尚未公布")
        rec.report = report
    return report


def near_duplicates(
    store: Store, contest: Contest, paths: Paths, challenge_id: str, *, top: int = 100, threshold: float = 0.99
) -> list[dict]:
    """Pairs of teams with the same file or near-identical predictions, most similar first."""
    ch = contest.challenge(challenge_id)
    out = []
    with store.session() as s:
        shared = s.execute(
            select(Submission.sha256)
            .where(Submission.challenge == ch.id)
            .group_by(Submission.sha256)
            .having(func.count(func.distinct(Submission.team_id)) > 1)
        ).scalars()
        for sha in shared:
            who = s.execute(
                select(Team.name, func.min(Submission.id))
                .join(Team, Team.id == Submission.team_id)
                .where(Submission.sha256 == sha, Submission.challenge == ch.id)
                .group_by(Team.name)
            ).all()
            for (a, ida), (b, idb) in itertools.combinations(sorted(who), 2):
                out.append({"teams": [a, b], "submissions": [ida, idb], "kind": "identical-file", "similarity": 1.0})
        best = ranking.public_standings(s, ch, now=ch.closes)[:top]
    shas = _files(store, [r["submission_id"] for r in best])
    preds = {
        r["team"]: (r["submission_id"], aligned(ch, store.files.path(shas[r["submission_id"]]), paths)["p"])
        for r in best
    }
    labels = ch.scorer.input == "label"
    seen = {tuple(d["teams"]) for d in out}
    for (a, (ida, pa)), (b, (idb, pb)) in itertools.combinations(sorted(preds.items()), 2):
        if (a, b) in seen:
            continue
        if labels:
            similarity = float(np.mean(pa == pb))
        elif np.std(pa) == 0 or np.std(pb) == 0:
            similarity = 1.0 if np.allclose(pa, pb) else 0.0
        else:
            similarity = float(np.corrcoef(pa, pb)[0, 1])
        if similarity >= threshold:
            kind = "same-labels" if labels else "correlated"
            out.append({"teams": [a, b], "submissions": [ida, idb], "kind": kind, "similarity": similarity})
    return sorted(out, key=lambda d: -d["similarity"])
