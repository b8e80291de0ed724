"""What organizers do to a contest, once: the CLI (leaderboard/cli.py), the submission
service's organizer API (hub/submit_service/) and the organizer page call these and only
format what they return.

* :func:`submission_listing`: the newest submissions, any team, public scores only;
* :func:`reveal`: the private ranking made public, with its integrity report (bootstrap
  intervals and statistically tied groups) computed now or in the background;
* :func:`rescore_summary` and :func:`decide_rescore`: what a rescore changed, and publishing
  or discarding it.
"""

from __future__ import annotations

from concurrent.futures import Executor

from sqlalchemy import select
from sqlalchemy.orm import Session

from leaderboard import integrity, ranking, results, submissions
from leaderboard.contest import Contest
from leaderboard.models import Submission
from leaderboard.store import Store
from sandbox.settings import Paths


def submission_listing(
    session: Session, *, challenge: str | None = None, status: str | None = None, limit: int = 50
) -> list[dict]:
    """The newest ``limit`` submissions (of one challenge, in one status), as their team sees them
    (:func:`leaderboard.submissions.public_view`: never a private score), with the team's display name."""
    q = select(Submission).order_by(Submission.id.desc()).limit(limit)
    if challenge:
        q = q.where(Submission.challenge == challenge)
    if status:
        q = q.where(Submission.status == status)
    return [
        submissions.public_view(sub, next((x for x in sub.scores if x.active), None))
        | {"team_display_name": sub.team.display_name if sub.team else None}
        for sub in session.scalars(q)
    ]


def reveal(
    store: Store, contest: Contest, paths: Paths, challenge_id: str, *, by: str, report_in: Executor | None = None
) -> dict:
    """Reveal a challenge (after its deadline; recorded), then attach its integrity report and
    publish its signed results bundle (leaderboard/results.py): at once (returned under
    ``report`` and ``bundle``), or submitted to ``report_in`` (a service's job thread; the pages
    read them once they are there)."""
    with store.session() as s:
        rec = ranking.reveal(s, contest, challenge_id, by=by)
    done = {"challenge": rec.challenge, "revealed_at": rec.revealed_at, "by": rec.by}
    if report_in is not None:
        report_in.submit(integrity.attach_report, store, contest, paths, challenge_id)
        report_in.submit(results.publish_bundle, store, contest, paths, challenge_id, by=by)
        return done
    report = integrity.attach_report(store, contest, paths, challenge_id)
    return done | {"report": report, "bundle": results.publish_bundle(store, contest, paths, challenge_id, by=by)}


def rescore_summary(result: ranking.RescoreResult) -> dict:
    """What a rescore did: its id, how many files scored, which were invalid, whose ranks move."""
    return {"rescore": result.id, "scored": result.scored, "invalid": result.invalid, "changes": result.changes}


def decide_rescore(store: Store, rescore_id: int, *, by: str, publish: bool) -> dict:
    """Publish a pending rescore (its scores become the active ones) or discard it; recorded."""
    with store.session() as s:
        run = ranking.decide_rescore(s, rescore_id, by=by, publish=publish)
        return {"rescore": run.id, "status": run.status}
