"""Standings, the reveal and rescoring: who is ahead, computed in the database.

Public standings rank each team's best public score; ties go to the earlier submission
and are marked as ties. The private standings exist only for a revealed challenge (or an
organizer): each team's final submissions are those it selected, else its best N by public
score, and its best private score among them ranks it. Both are window-function queries
over the store, so a page showing 1,000 teams does not load 100,000 submissions.

This is the only module that reads ``scores.sealed_private_score``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Integer, Select, and_, case, cast, func, or_, select
from sqlalchemy.orm import Session

from leaderboard import audit, submissions
from leaderboard.contest import Challenge, Contest
from leaderboard.models import Rescore, Reveal, Score, Submission, Team
from leaderboard.scoring import ScoreResult, score_file
from leaderboard.store import Store
from sandbox import clock, statuses
from sandbox.errors import ContesthubError, NotFound
from sandbox.settings import Paths


class Sealed(ContesthubError):
    code = "sealed"


def revealed(session: Session, challenge_id: str) -> Reveal | None:
    return session.get(Reveal, challenge_id)


def _scores(ch: Challenge, rescore_id: int | None, as_of: dt.datetime | None) -> Select:
    """One row per scored submission of the challenge: the active scores, or a rescore's."""
    on = Score.rescore_id == rescore_id if rescore_id is not None else Score.active.is_(True)
    q = (
        select(
            Submission.id.label("submission_id"),
            Submission.team_id,
            Submission.created_at,
            cast(Submission.selected, Integer).label("selected"),
            Score.public_score,
            Score.sealed_private_score,
        )
        .join(Score, and_(Score.submission_id == Submission.id, on))
        .where(Submission.challenge == ch.id, Submission.status == statuses.SCORED, Score.public_score.is_not(None))
    )
    if as_of is not None:
        q = q.where(Submission.created_at <= as_of)
    return q


def _order(column, ch: Challenge):
    return column.desc() if ch.higher_is_better else column.asc()


def _best_first(rows, score, ch: Challenge) -> tuple:
    """Better score first; equal scores: the earlier submission, then the lower id."""
    return (_order(rows.c[score], ch), rows.c.created_at, rows.c.submission_id)


def _best_of_each_team(session: Session, rows, score: str, ch: Challenge, *extra) -> list:
    """The best row of each team (ties to the earlier submission), best team first, with names."""
    numbered = select(
        rows,
        func.row_number().over(partition_by=rows.c.team_id, order_by=_best_first(rows, score, ch)).label("rn"),
        *[e.over(partition_by=rows.c.team_id).label(n) for n, e in extra],
    ).subquery()
    q = (
        select(numbered, Team.name, Team.display_name)
        .join(Team, Team.id == numbered.c.team_id)
        .where(numbered.c.rn == 1)
        .order_by(*_best_first(numbered, score, ch))
    )
    return session.execute(q).all()


def _public_candidates(
    session: Session, ch: Challenge, rescore_id: int | None, now: dt.datetime, before: dt.datetime
) -> list:
    """The rows that can be a team's best public submission now or at ``before``, with names.

    One ``GROUP BY`` over the board indexes (each team's best score now and at ``before``, its
    entries and last submission), then, team by team through the same indexes, the submissions
    holding one of those scores: a handful per team. Window functions would rank in the
    database, but on SQLite each of the two window queries (now and 24 hours ago) sorts every
    submission, about a second at 100,000; this reads only index entries, on PostgreSQL as well.
    The tie-break among a team's equal scores (earlier, then lower id) and the order of teams
    are then taken in Python over these few rows (:func:`_best_by_team`).
    """
    on = Score.rescore_id == rescore_id if rescore_id is not None else Score.active.is_(True)

    def scored(*columns) -> Select:
        # Only these four columns: the board indexes cover them (no table row is read).
        return (
            select(*columns)
            .select_from(Submission)
            .join(Score, and_(Score.submission_id == Submission.id, on))
            .where(
                Submission.challenge == ch.id,
                Submission.status == statuses.SCORED,
                Score.public_score.is_not(None),
                Submission.created_at <= now,
            )
        )

    best = func.max if ch.higher_is_better else func.min
    earlier = Submission.created_at <= before
    per_team = (
        scored(
            Submission.team_id,
            best(Score.public_score).label("best"),
            best(case((earlier, Score.public_score))).label("best_before"),
            func.count().label("entries"),
            func.max(Submission.created_at).label("last"),
        )
        .group_by(Submission.team_id)
        .cte("per_team")
    )
    q = (
        scored(
            Submission.id.label("submission_id"),
            Submission.team_id,
            Submission.created_at,
            Score.public_score,
            per_team.c.best,
            per_team.c.best_before,
            per_team.c.entries,
            per_team.c.last,
            Team.name,
            Team.display_name,
        )
        .join(per_team, per_team.c.team_id == Submission.team_id)
        .join(Team, Team.id == Submission.team_id)
        .where(or_(Score.public_score == per_team.c.best, and_(earlier, Score.public_score == per_team.c.best_before)))
    )
    return session.execute(q).all()


def _best_by_team(rows, ch: Challenge, score_of: Callable) -> list:
    """Each team's best row (better score, then the earlier submission, then the lower id), best
    team first; ``score_of(row)`` is the row's score when it counts, else None."""
    sign = -1 if ch.higher_is_better else 1
    best: dict[int, tuple] = {}
    for r in rows:
        score = score_of(r)
        if score is None:
            continue
        key = (sign * score, r.created_at, r.submission_id)
        if r.team_id not in best or key < best[r.team_id][0]:
            best[r.team_id] = (key, r)
    return [r for _, r in sorted(best.values(), key=lambda kr: kr[0])]


def _with_ranks(rows: list[dict], key: str) -> list[dict]:
    """Positions 1..n after the tie-break, plus the shared rank and a mark for equal scores."""
    prev, shared = object(), 0
    for i, r in enumerate(rows, 1):
        if r[key] != prev:
            shared, prev = i, r[key]
        r["rank"], r["tie_rank"] = i, shared
    for i, r in enumerate(rows):
        r["tied"] = (i > 0 and rows[i - 1][key] == r[key]) or (i + 1 < len(rows) and rows[i + 1][key] == r[key])
    return rows


def public_standings(
    session: Session, ch: Challenge, *, rescore_id: int | None = None, now: dt.datetime | None = None
) -> list[dict]:
    """Rank, team, best public score, entries, last submission and movement over 24 hours."""
    now = now or clock.now()
    then = now - dt.timedelta(hours=24)
    candidates = _public_candidates(session, ch, rescore_id, now, then)
    rows = [
        {
            "team": r.name,
            "display_name": r.display_name,
            "score": r.public_score,
            "submission_id": r.submission_id,
            "submitted_at": r.created_at,
            "entries": r.entries,
            "last_submission": r.last,
        }
        for r in _best_by_team(candidates, ch, lambda r: r.public_score if r.public_score == r.best else None)
    ]
    _with_ranks(rows, "score")
    earlier = _best_by_team(
        candidates,
        ch,
        lambda r: r.public_score if r.created_at <= then and r.public_score == r.best_before else None,
    )
    before = {r.name: i for i, r in enumerate(earlier, 1)}
    for r in rows:
        # Positive: climbed; None: new on the board in the last 24 hours.
        r["movement_24h"] = before[r["team"]] - r["rank"] if r["team"] in before else None
    return rows


def _finals(ch: Challenge, rescore_id: int | None):
    """Each team's final submissions (those it selected, else its best N by public score), as a subquery."""
    s = _scores(ch, rescore_id, None).subquery()
    by_public = select(
        s,
        func.row_number().over(partition_by=s.c.team_id, order_by=_best_first(s, "public_score", ch)).label("prn"),
        func.max(s.c.selected).over(partition_by=s.c.team_id).label("chose"),
    ).subquery()
    return (
        select(by_public)
        .where(
            case(
                (by_public.c.chose == 1, by_public.c.selected == 1),
                else_=by_public.c.prn <= ch.final_selections,
            ),
            by_public.c.sealed_private_score.is_not(None),
        )
        .subquery()
    )


def final_submissions(session: Session, ch: Challenge, *, organizer: bool = False) -> list[dict]:
    """Every final submission of a revealed challenge with its team, file digest and both scores
    (what a results bundle lists, :mod:`leaderboard.results`; the finalists' re-runs,
    :mod:`leaderboard.rerun`). Raises Sealed before the reveal, except for organizers."""
    if not organizer and revealed(session, ch.id) is None:
        raise Sealed(
            f"the final submissions of {ch.id} are sealed until the organizers reveal it",
            f"赛题 {ch.id} 的最终提交在组织方公布前保密",
        )
    f = _finals(ch, None)
    q = (
        select(f.c.submission_id, f.c.public_score, f.c.sealed_private_score, Team.name, Submission.sha256)
        .join(Team, Team.id == f.c.team_id)
        .join(Submission, Submission.id == f.c.submission_id)
        .order_by(f.c.submission_id)
    )
    return [
        {
            "submission_id": r.submission_id,
            "team": r.name,
            "sha256": r.sha256,
            "public_score": r.public_score,
            "private_score": r.sealed_private_score,
        }
        for r in session.execute(q).all()
    ]


def private_standings(
    session: Session, ch: Challenge, *, organizer: bool = False, rescore_id: int | None = None
) -> list[dict]:
    """The final ranking. Sealed until the challenge is revealed, except for organizers."""
    if not organizer and revealed(session, ch.id) is None:
        raise Sealed(
            f"the private ranking of {ch.id} is sealed until the organizers reveal it",
            f"赛题 {ch.id} 的最终排名在组织方公布前保密",
        )
    final = _finals(ch, rescore_id)
    rows = [
        {
            "team": r.name,
            "display_name": r.display_name,
            "score": r.sealed_private_score,
            "public_score": r.public_score,
            "submission_id": r.submission_id,
            "submitted_at": r.created_at,
            "selected_by_team": bool(r.chose),
        }
        for r in _best_of_each_team(session, final, "sealed_private_score", ch)
    ]
    _with_ranks(rows, "score")
    public_rank = {r["team"]: r["rank"] for r in public_standings(session, ch, rescore_id=rescore_id, now=ch.closes)}
    for r in rows:
        r["public_rank"] = public_rank.get(r["team"])
        r["shift"] = r["public_rank"] - r["rank"] if r["public_rank"] else None
    return rows


def reveal(session: Session, contest: Contest, challenge_id: str, *, by: str, now: dt.datetime | None = None) -> Reveal:
    """Make the private ranking public: one recorded organizer action, after the deadline."""
    ch = contest.challenge(challenge_id)
    now = now or clock.now()
    if now < ch.closes:
        raise ContesthubError(
            f"{ch.id} is still open until {ch.closes:%Y-%m-%d %H:%M %z}; reveal it after it closes",
            f"赛题 {ch.id} 在 {ch.closes:%Y-%m-%d %H:%M} 前仍开放，截止后才能公布",
            code="reveal-too-early",
        )
    if revealed(session, ch.id):
        raise ContesthubError(f"{ch.id} is already revealed", f"赛题 {ch.id} 已公布", code="already-revealed")
    rec = Reveal(challenge=ch.id, revealed_at=now, by=by, report={})
    session.add(rec)
    session.flush()
    top = private_standings(session, ch, organizer=True)[:3]
    audit.record(session, by, "challenge.reveal", ch.id, {"top3": [r["team"] for r in top]})
    return rec


@dataclass
class RescoreResult:
    id: int
    scored: int
    invalid: list[int]
    changes: list[dict]


def rescore(
    store: Store,
    contest: Contest,
    paths: Paths,
    challenge_id: str,
    *,
    by: str,
    reason: str,
    score: Callable[[Challenge, Path, Paths], ScoreResult] = score_file,
) -> RescoreResult:
    """Score every scored submission again with today's metric and data; publish nothing yet.

    ``score``: how one file is scored (the submission service passes the scorers' limited child
    process, hub/scorer.py; the CLI scores in its own process)."""
    ch = contest.challenge(challenge_id)
    with store.session() as s:
        run = Rescore(challenge=ch.id, metric=ch.scorer.name, metric_version=ch.scorer.version, reason=reason, by=by)
        s.add(run)
        s.flush()
        subs = s.execute(
            select(Submission.id, Submission.sha256)
            .where(Submission.challenge == ch.id, Submission.status == statuses.SCORED)
            .order_by(Submission.id)
        ).all()
        audit.record(s, by, "rescore.start", ch.id, {"rescore": run.id, "reason": reason, "submissions": len(subs)})
        run_id = run.id
    invalid = []
    for sid, sha in subs:
        if not store.files.verify(sha):  # damaged at rest: never score what is no longer the submitted file
            submissions.mark_file_lost(store, sid, actor=by)
            invalid.append(sid)
            continue
        result = score(ch, store.files.path(sha), paths)
        with store.session() as s:
            if not result.valid:
                invalid.append(sid)
                continue
            s.add(Score.of(sid, result, active=False, rescore_id=run_id))
    with store.read_session() as s:
        changes = rescore_changes(s, ch, run_id)
    return RescoreResult(run_id, len(subs) - len(invalid), invalid, changes)


def rescore_changes(session: Session, ch: Challenge, rescore_id: int) -> list[dict]:
    """Per team: public (and, for organizers, private) rank and score before and after a rescore."""
    # Every submission is made before the challenge closes: rank them all.
    old = {r["team"]: r for r in public_standings(session, ch, now=ch.closes)}
    new = {r["team"]: r for r in public_standings(session, ch, rescore_id=rescore_id, now=ch.closes)}
    old_p = {r["team"]: r for r in private_standings(session, ch, organizer=True)}
    new_p = {r["team"]: r for r in private_standings(session, ch, organizer=True, rescore_id=rescore_id)}
    out = []
    for team in sorted(set(old) | set(new), key=lambda t: (new.get(t, {}).get("rank", 10**9), t)):
        o, n, op, np_ = old.get(team, {}), new.get(team, {}), old_p.get(team, {}), new_p.get(team, {})
        out.append(
            {
                "team": team,
                "public_rank_before": o.get("rank"),
                "public_rank_after": n.get("rank"),
                "public_score_before": o.get("score"),
                "public_score_after": n.get("score"),
                "private_rank_before": op.get("rank"),
                "private_rank_after": np_.get("rank"),
            }
        )
    return out


def decide_rescore(session: Session, rescore_id: int, *, by: str, publish: bool) -> Rescore:
    """Publish a rescore (its scores become the active ones) or discard it; recorded either way."""
    run = session.get(Rescore, rescore_id)
    if run is None or run.status != "pending":
        raise NotFound(f"no pending rescore {rescore_id}", f"没有待确认的重新评分 {rescore_id}")
    if publish:
        rescored = select(Score.submission_id).where(Score.rescore_id == run.id).scalar_subquery()
        for sc in session.execute(select(Score).where(Score.submission_id.in_(rescored))).scalars():
            sc.active = sc.rescore_id == run.id
    run.status, run.decided_at = ("published" if publish else "discarded"), clock.now()
    session.flush()
    audit.record(session, by, f"rescore.{run.status}", run.challenge, {"rescore": run.id})
    return run


def challenge_summary(session: Session, ch: Challenge) -> dict:
    """Teams and submissions of a challenge, for the contest's home page."""
    teams_n, subs_n = session.execute(
        select(func.count(func.distinct(Submission.team_id)), func.count()).where(Submission.challenge == ch.id)
    ).one()
    return {"challenge": ch.id, "teams": teams_n, "submissions": subs_n}
