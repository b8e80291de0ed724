"""A submission's life: accepted against the quota, kept, validated, scored, or refunded.

::

    upload ──► accept() ─ one transaction: charge one unit of today's quota (a guarded
                │          UPDATE, exact under concurrency), insert the row, audit it
                │          (no quota left: nothing is recorded, the upload is deleted)
                ▼
            file kept under its SHA-256 (atomic rename; the same bytes are kept once)
                ▼
            score() ─ received → validating → scored | invalid | error
                       invalid and error give the quota unit back (``charged`` = False)

A crash anywhere leaves a row in ``received`` or ``validating``; :func:`recover` scores it
again at start-up, or marks it ``error`` and refunds it when its file never arrived. The
private score goes into the sealed column and nowhere else: not into the audit log, not
into anything :func:`public_view` returns.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from leaderboard import audit, teams
from leaderboard.contest import Challenge, Contest
from leaderboard.models import Quota, QuotaGrant, Score, Submission, Team
from leaderboard.scoring import score_file
from leaderboard.store import Store, Upload
from sandbox import clock
from sandbox.errors import ContesthubError, NotFound
from sandbox.settings import Paths

log = logging.getLogger("contesthub.submissions")

PENDING = ("received", "validating")


class SubmissionRefused(ContesthubError):
    """The upload was not accepted (closed challenge, no team, no quota); nothing was recorded."""

    code = "submission-refused"


def _check_open(ch: Challenge, now: dt.datetime) -> None:
    if now < ch.opens:
        raise SubmissionRefused(
            f"{ch.id} opens at {ch.opens:%Y-%m-%d %H:%M %z}; submit after that",
            f"赛题 {ch.id} 将于 {ch.opens:%Y-%m-%d %H:%M} 开放，请届时再提交",
            code="challenge-not-open",
        )
    if now >= ch.closes:
        raise SubmissionRefused(
            f"{ch.id} closed at {ch.closes:%Y-%m-%d %H:%M %z}; no more submissions are accepted",
            f"赛题 {ch.id} 已于 {ch.closes:%Y-%m-%d %H:%M} 截止，不再接受提交",
            code="challenge-closed",
        )


def _team_of(session: Session, user: str) -> Team:
    team = teams.team_of(session, user)
    if team is None:
        raise SubmissionRefused(
            f"{user} is not in a team yet; join or create a team first",
            f"{user} 尚未加入队伍；请先创建或加入一个队伍",
            code="no-team",
        )
    return team


def _insert_ignore(session: Session):
    return (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(Quota)


def _charge(session: Session, team_id: int, ch: Challenge, day: dt.date) -> None:
    """Take one unit of the day's quota, or refuse. One guarded UPDATE: atomic on both databases."""
    session.execute(
        _insert_ignore(session)
        .values(team_id=team_id, challenge=ch.id, day=day, used=0, granted=0)
        .on_conflict_do_nothing()
    )
    taken = session.execute(
        update(Quota)
        .where(
            Quota.team_id == team_id,
            Quota.challenge == ch.id,
            Quota.day == day,
            Quota.used < ch.daily_quota + Quota.granted,
        )
        .values(used=Quota.used + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken != 1:
        raise _quota_exceeded(ch)


def _quota_exceeded(ch: Challenge) -> SubmissionRefused:
    return SubmissionRefused(
        f"your team has used all of today's submissions for {ch.id} ({ch.daily_quota} a day); "
        "the quota resets at midnight (contest time)",
        f"你的队伍今天在 {ch.id} 的提交次数已用完（每天 {ch.daily_quota} 次）；次数在比赛时区零点重置",
        code="quota-exceeded",
    )


def precheck(session: Session, contest: Contest, team: Team, challenge_id: str, now: dt.datetime | None = None) -> None:
    """Refuse early, in a read session, what :func:`accept` would refuse: a closed challenge,
    or a team whose quota for today was used up when this snapshot was taken.

    Only ever refuses: :func:`accept` decides what is accepted (its guarded UPDATE). Refusing
    on a snapshot is what accept() would have answered a moment earlier, so quotas stay exact,
    and a team that keeps uploading after its quota ran out costs no write transaction."""
    now = now or clock.now()
    ch = contest.challenge(challenge_id)
    _check_open(ch, now)
    row = session.get(Quota, (team.id, ch.id, contest.day(now)))
    if row is not None and row.used >= ch.daily_quota + row.granted:
        raise _quota_exceeded(ch)


def _refund(session: Session, sub: Submission) -> None:
    if not sub.charged:
        return
    session.execute(
        update(Quota)
        .where(Quota.team_id == sub.team_id, Quota.challenge == sub.challenge, Quota.day == sub.quota_day)
        .values(used=Quota.used - 1)
        .execution_options(synchronize_session=False)
    )
    sub.charged = False


def accept(
    store: Store,
    contest: Contest,
    *,
    user: str,
    challenge_id: str,
    upload: Upload,
    file_name: str,
    provenance: dict | None = None,
    now: dt.datetime | None = None,
) -> Submission:
    """Charge the quota and record the submission, then keep its file. Raises SubmissionRefused."""
    now = now or clock.now()
    try:
        ch = contest.challenge(challenge_id)
        _check_open(ch, now)
        with store.session() as s:
            team = _team_of(s, user)
            day = contest.day(now)
            _charge(s, team.id, ch, day)
            sub = Submission(
                team_id=team.id,
                user=user,
                challenge=ch.id,
                created_at=now,
                quota_day=day,
                file_name=file_name[:255],
                size=upload.size,
                sha256=upload.sha256,
                status="received",
                charged=True,
                provenance=_clean_provenance(provenance),
            )
            s.add(sub)
            s.flush()
            audit.record(
                s,
                user,
                "submission.receive",
                f"{ch.id}#{sub.id}",
                {"team": team.name, "sha256": upload.sha256, "size": upload.size, "file_name": sub.file_name},
            )
    except BaseException:
        upload.path.unlink(missing_ok=True)
        raise
    try:
        store.files.keep(upload)
    except OSError as exc:  # e.g. the disk is full: the submission is refunded, not lost in silence
        log.error("submission %s: keeping its file failed: %s", sub.id, exc)
        upload.path.unlink(missing_ok=True)
        with store.session() as s:
            row = s.get(Submission, sub.id)
            row.status, row.finished_at = "error", clock.now()
            row.errors = [_error("storage-failed", "the file could not be stored", "文件无法保存")]
            _refund(s, row)
            audit.record(s, "service", "submission.error", f"{row.challenge}#{row.id}", {"codes": ["storage-failed"]})
        raise SubmissionRefused(
            "the platform could not store your file (its disk may be full); it did not count against your quota, "
            "try again later",
            "平台暂时无法保存你的文件（磁盘可能已满）；本次不计入提交次数，请稍后再试",
            code="storage-failed",
        ) from None
    return sub


def _clean_provenance(provenance: dict | None) -> dict:
    """Keep the few provenance fields we show, as short strings (they come from the client)."""
    keys = ("notebook", "kernel", "sandbox_version", "client")
    return {k: str(provenance[k])[:500] for k in keys if provenance and provenance.get(k) is not None}


def score(store: Store, contest: Contest, paths: Paths, submission_id: int) -> Submission:
    """Validate and score one received submission; safe to call again after a crash."""
    with store.session() as s:
        # Claim it: only one scorer moves a submission from received to validating.
        claimed = s.execute(
            update(Submission)
            .where(Submission.id == submission_id, Submission.status == "received")
            .values(status="validating", attempts=Submission.attempts + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        sub = s.get(Submission, submission_id)
        if sub is None:
            raise NotFound(f"no submission {submission_id}", f"没有编号为 {submission_id} 的提交")
        if not claimed:
            return sub
    ch = contest.challenge(sub.challenge)
    errors, result = [], None
    if not store.files.verify(sub.sha256):
        errors = [_error("file-lost", "the stored file is missing or damaged", "提交的文件丢失或损坏")]
    else:
        try:
            result = score_file(ch, store.files.path(sub.sha256), paths)
        except ContesthubError as exc:  # e.g. the solution is missing: an organizer must act
            log.error("submission %s could not be scored: %s", sub.id, exc.en)
            errors = [_error("scoring-failed", exc.en, exc.zh)]
        except Exception:
            log.exception("submission %s: the scorer crashed", sub.id)
            errors = [_error("scoring-failed", "the scorer failed", "评分程序出错")]
    with store.session() as s:
        sub = s.get(Submission, submission_id)
        sub.finished_at = clock.now()
        if result is not None and result.valid:
            s.add(Score.of(sub.id, result, active=True))
            sub.status, sub.errors = "scored", []
            payload = {"public_score": result.public_score, "metric": f"{result.metric}@{result.metric_version}"}
        else:
            sub.status = "invalid" if result is not None else "error"
            sub.errors = result.errors if result is not None else errors
            _refund(s, sub)
            payload = {"codes": sorted({e["code"] for e in sub.errors}), "refunded": True}
        audit.record(s, "scorer", f"submission.{sub.status}", f"{sub.challenge}#{sub.id}", payload)
    return sub


def mark_file_lost(store: Store, submission_id: int, *, actor: str = "scorer") -> Submission:
    """Its stored file no longer matches its SHA-256 (found by a rescore or a check): the
    submission becomes ``error`` (off the leaderboard) and gives its quota unit back."""
    with store.session() as s:
        sub = s.get(Submission, submission_id)
        sub.status, sub.finished_at = "error", clock.now()
        sub.errors = [_error("file-lost", "the stored file is missing or damaged", "提交的文件丢失或损坏")]
        _refund(s, sub)
        payload = {"codes": ["file-lost"], "refunded": True}
        audit.record(s, actor, "submission.error", f"{sub.challenge}#{sub.id}", payload)
    return sub


def _error(code: str, en: str, zh: str) -> dict:
    return {
        "code": code,
        "message": f"{zh}；本次提交不计入次数，组织方已收到通知",
        "message_en": f"{en}; this submission did not count against your quota and the organizers were notified",
        "message_zh": f"{zh}；本次提交不计入次数，组织方已收到通知",
        "column": None,
        "rows": [],
        "count": 0,
        "row": None,
    }


def release(store: Store, submission_id: int) -> None:
    """Give back a claim a scorer could not finish (its database connection broke): the
    submission is ``received`` again and the next :func:`score` claims it anew."""
    with store.session() as s:
        s.execute(
            update(Submission)
            .where(Submission.id == submission_id, Submission.status == "validating")
            .values(status="received")
            .execution_options(synchronize_session=False)
        )


@dataclass
class FileCheck:
    """The stored files checked against the digests they were stored under."""

    checked: int
    problems: list[dict]  # {"sha256", "problem": "missing" | "damaged", "submissions": [ids]}

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checked": self.checked, "problems": self.problems}


def verify_files(store: Store) -> FileCheck:
    """Read every stored submission file and compare it with its SHA-256 (organizers' check;
    changes nothing). A damaged or missing file is named with the submissions that use it."""
    with store.read_session() as s:
        rows = s.execute(select(Submission.sha256, Submission.id).order_by(Submission.id)).all()
    users: dict[str, list[int]] = {}
    for sha, sid in rows:
        users.setdefault(sha, []).append(sid)
    problems = []
    for sha, ids in users.items():
        if not store.files.verify(sha):
            problem = "damaged" if store.files.path(sha).exists() else "missing"
            problems.append({"sha256": sha, "problem": problem, "submissions": ids})
    return FileCheck(checked=len(users), problems=problems)


def recover(store: Store, contest: Contest, paths: Paths, started: dt.datetime | None = None) -> list[int]:
    """Finish what a crash interrupted: score again what was pending before ``started`` (the
    service's start; default now), refund what has no file, delete uploads never accepted."""
    started = started or clock.now()
    store.files.sweep_incoming(before=started.timestamp())
    with store.session() as s:
        stale = s.execute(
            select(Submission)
            .where(Submission.status.in_(PENDING), Submission.created_at < started)
            .order_by(Submission.id)
        ).scalars()
        ids = []
        for sub in stale:
            sub.status = "received"  # its scorer died with the old process
            ids.append(sub.id)
    for sid in ids:
        score(store, contest, paths, sid)
    return ids


def grant(
    session: Session,
    contest: Contest,
    team_name: str,
    challenge_id: str,
    extra: int,
    *,
    reason: str,
    by: str,
    day: dt.date | None = None,
) -> QuotaGrant:
    """Give a team extra submissions on one day (today by default), with a recorded reason."""
    if extra < 1 or not reason.strip():
        raise ContesthubError(
            "a grant needs a positive number of submissions and a reason",
            "追加提交次数需要一个正整数和理由",
            code="grant-invalid",
        )
    ch = contest.challenge(challenge_id)
    team = teams.get(session, team_name)
    day = day or contest.day(clock.now())
    session.execute(
        _insert_ignore(session)
        .values(team_id=team.id, challenge=ch.id, day=day, used=0, granted=0)
        .on_conflict_do_nothing()
    )
    session.execute(
        update(Quota)
        .where(Quota.team_id == team.id, Quota.challenge == ch.id, Quota.day == day)
        .values(granted=Quota.granted + extra)
        .execution_options(synchronize_session=False)
    )
    g = QuotaGrant(team_id=team.id, challenge=ch.id, day=day, extra=extra, reason=reason.strip(), by=by)
    session.add(g)
    session.flush()
    audit.record(
        session, by, "quota.grant", team.name, {"challenge": ch.id, "day": day, "extra": extra, "reason": g.reason}
    )
    return g


def quota(session: Session, contest: Contest, team: Team, challenge_id: str, now: dt.datetime | None = None) -> dict:
    ch = contest.challenge(challenge_id)
    now = now or clock.now()
    day = contest.day(now)
    row = session.get(Quota, (team.id, ch.id, day))
    used, granted = (row.used, row.granted) if row else (0, 0)
    allowed = ch.daily_quota + granted
    tomorrow = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), contest.timezone)
    return {
        "challenge": ch.id,
        "day": day.isoformat(),
        "used": used,
        "allowed": allowed,
        "remaining": max(0, allowed - used),
        "resets_at": tomorrow.isoformat(),
    }


def select_final(
    session: Session,
    contest: Contest,
    user: str,
    challenge_id: str,
    submission_ids: Iterable[int],
    now: dt.datetime | None = None,
) -> list[int]:
    """Choose the team's final submissions for the private ranking (replaces the earlier choice)."""
    ch = contest.challenge(challenge_id)
    now = now or clock.now()
    if now >= ch.closes:
        raise ContesthubError(
            f"{ch.id} has closed; final selections can no longer change",
            f"赛题 {ch.id} 已截止，不能再更改最终选择",
            code="selection-closed",
        )
    team = _team_of(session, user)
    ids = sorted(set(submission_ids))
    if len(ids) > ch.final_selections:
        raise ContesthubError(
            f"choose at most {ch.final_selections} submissions for {ch.id}",
            f"赛题 {ch.id} 最多选择 {ch.final_selections} 个提交",
            code="too-many-selections",
        )
    found = (
        session.execute(
            select(Submission).where(
                Submission.id.in_(ids),
                Submission.team_id == team.id,
                Submission.challenge == ch.id,
                Submission.status == "scored",
            )
        )
        .scalars()
        .all()
    )
    missing = sorted(set(ids) - {s.id for s in found})
    if missing:
        raise NotFound(
            f"submission(s) {missing} are not scored submissions of your team for {ch.id}",
            f"提交 {missing} 不是你的队伍在赛题 {ch.id} 中已评分的提交",
        )
    session.execute(
        update(Submission)
        .where(Submission.team_id == team.id, Submission.challenge == ch.id)
        .values(selected=Submission.id.in_(ids) if ids else False)
        .execution_options(synchronize_session=False)
    )
    audit.record(session, user, "submission.select", f"{ch.id}/{team.name}", {"submissions": ids})
    return ids


def public_view(sub: Submission, score_row: Score | None, *, team: str | None = None) -> dict:
    """What the submitting team may see: never the private score, nor anything derived from it.

    ``team``: the team's name, for a submission no longer attached to a session."""
    return {
        "id": sub.id,
        "challenge": sub.challenge,
        "team": team if team is not None else sub.team.name if sub.team else None,
        "user": sub.user,
        "file_name": sub.file_name,
        "size": sub.size,
        "sha256": sub.sha256,
        "created_at": sub.created_at.isoformat(),
        "status": sub.status,
        "errors": sub.errors,
        "public_score": score_row.public_score if score_row else None,
        "metric": f"{score_row.metric}@{score_row.metric_version}" if score_row else None,
        "dataset_version": score_row.dataset_version if score_row else None,
        "rows": score_row.rows if score_row else None,
        "selected": sub.selected,
        "charged": sub.charged,
        "provenance": sub.provenance,
    }


def for_team(session: Session, team: Team, challenge_id: str | None = None) -> list[dict]:
    """The team's submissions, newest first, with their active public score."""
    q = (
        select(Submission, Score)
        .outerjoin(Score, and_(Score.submission_id == Submission.id, Score.active.is_(True)))
        .where(Submission.team_id == team.id)
        .order_by(Submission.id.desc())
    )
    if challenge_id:
        q = q.where(Submission.challenge == challenge_id)
    return [public_view(sub, sc) for sub, sc in session.execute(q)]


def one_for_team(session: Session, team: Team, submission_id: int) -> dict:
    row = session.execute(
        select(Submission, Score)
        .outerjoin(Score, and_(Score.submission_id == Submission.id, Score.active.is_(True)))
        .where(Submission.id == submission_id, Submission.team_id == team.id)
    ).first()
    if row is None:  # another team's submission looks exactly like a missing one
        raise NotFound(f"no submission {submission_id} of your team", f"你的队伍没有编号为 {submission_id} 的提交")
    return public_view(*row)


def counts(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Submission.status, func.count()).group_by(Submission.status)).all())
