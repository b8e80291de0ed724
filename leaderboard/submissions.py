"""A submission's life: accepted against the quota, kept, validated, scored, or refunded.

::

    upload ──► accept() ─ one transaction: charge one unit of today's quota (a guarded
                │          UPDATE, exact under concurrency), check the team's upload rate and
                │          stored bytes, insert the row, audit it, and move the file into the
                │          store under its SHA-256 before the commit (a scorer never sees a
                │          row without its file; a refusal records and keeps nothing)
                ▼
            received ── the queue: scorer workers (hub/scorer.py) take the oldest with claim()
                ▼
            validating ─ claimed_by a worker ("host:pid") until lease_until (renew() extends it)
                ▼
            finish() ─ scored | invalid | error; an invalid file gives its quota unit back
                       while the team has free invalid files left that day, an error always

A worker whose scoring child died (memory, time, a crash) calls :func:`crashed`; a worker
that died itself leaves its claim to :func:`reap` (its lease ran out, or its process is gone).
Either way the submission goes back to ``received``, once: the second claim that ends this
way makes it ``error``/``scoring-failed`` (refunded), and it is never tried again. A crash
between accepting and keeping the file is not possible (the file is kept inside the
transaction); a file damaged at rest is found by its checksum before scoring.

The private score goes into the sealed column and nowhere else: not into the audit log, not
into anything :func:`public_view` returns.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from leaderboard import audit, rounds, teams
from leaderboard.contest import Challenge, Contest
from leaderboard.models import Quota, QuotaGrant, Score, Submission, Team
from leaderboard.scoring import ScoreResult, score_file
from leaderboard.store import Store, Upload
from sandbox import clock, statuses
from sandbox.errors import ContesthubError, NotFound
from sandbox.settings import Paths

log = logging.getLogger("contesthub.submissions")

PENDING = statuses.PENDING
# A submission is claimed by scorers at most this many times: a second claim that ends with
# its scorer down (killed, out of memory or time) makes it error/scoring-failed.
MAX_ATTEMPTS = 2


class SubmissionRefused(ContesthubError):
    """The upload was not accepted (closed challenge, no team, no quota); nothing was recorded."""

    code = "submission-refused"


class ChallengeNotOpen(SubmissionRefused):
    code, http_status = "challenge-not-open", 403


class NotAdvanced(SubmissionRefused):
    code, http_status = "not-advanced", 403


class ChallengeClosed(SubmissionRefused):
    code, http_status = "challenge-closed", 403


class QuotaExceeded(SubmissionRefused):
    code, http_status = "quota-exceeded", 429


class TeamStorageFull(SubmissionRefused):
    code, http_status = "team-storage-full", 413


class StorageRefused(SubmissionRefused):
    """The file could not be kept (the disk); not the team's doing, and not charged."""

    code, http_status = "storage-failed", 507


def _check_open(ch: Challenge, now: dt.datetime) -> None:
    if now < ch.opens:
        raise ChallengeNotOpen(
            f"{ch.id} opens at {ch.opens:%Y-%m-%d %H:%M %z}; submit after that",
            f"赛题 {ch.id} 将于 {ch.opens:%Y-%m-%d %H:%M} 开放，请届时再提交",
        )
    if now >= ch.closes:
        raise ChallengeClosed(
            f"{ch.id} closed at {ch.closes:%Y-%m-%d %H:%M %z}; no more submissions are accepted",
            f"赛题 {ch.id} 已于 {ch.closes:%Y-%m-%d %H:%M} 截止，不再接受提交",
        )


def _check_round(session: Session, contest: Contest, team: Team, ch: Challenge) -> None:
    """Refuse a team the challenge's round did not admit (before anything is charged)."""
    rnd = rounds.gate(session, contest, team.id, ch.id)
    if rnd is not None:
        prev = contest.previous_round(rnd.id)
        raise NotAdvanced(
            f"your team did not advance to {rnd.title['en']} ({rnd.id}) from {prev.title['en']}, "
            f"so it cannot submit to {ch.id}; the teams that advanced are listed on the leaderboard",
            f"你的队伍未从{prev.title['zh']}晋级{rnd.title['zh']}，不能向赛题 {ch.id} 提交；晋级名单见排行榜",
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
    return QuotaExceeded(
        f"your team has used all of today's submissions for {ch.id} ({ch.daily_quota} a day); "
        "the quota resets at midnight (contest time)",
        f"你的队伍今天在 {ch.id} 的提交次数已用完（每天 {ch.daily_quota} 次）；次数在比赛时区零点重置",
    )


def precheck(
    session: Session,
    contest: Contest,
    team: Team,
    challenge_id: str,
    now: dt.datetime | None = None,
    size: int | None = None,
) -> None:
    """Refuse early, in a read session, what :func:`accept` would refuse: a closed challenge,
    a team whose quota for today was used up, that uploads too fast, or whose stored files
    leave no room for ``size`` more bytes, when this snapshot was taken.

    Only ever refuses: :func:`accept` decides what is accepted (its guarded UPDATE). Refusing
    on a snapshot is what accept() would have answered a moment earlier, so quotas stay exact,
    and a team that keeps uploading after its quota ran out costs no write transaction (the
    service asks before it stores a byte of the upload)."""
    now = now or clock.now()
    ch = contest.challenge(challenge_id)
    _check_open(ch, now)
    _check_round(session, contest, team, ch)
    row = session.get(Quota, (team.id, ch.id, contest.day(now)))
    if row is not None and row.used >= ch.daily_quota + row.granted:
        raise _quota_exceeded(ch)
    _check_rate(session, contest, team.id, now)
    if size is not None:
        _check_storage(session, contest, team.id, size)


class RateLimited(SubmissionRefused):
    """The team uploaded ``uploads_per_minute`` files in the last minute; ``retry_after`` seconds."""

    code, http_status = "rate-limited", 429

    def __init__(self, limit: int, retry_after: int):
        super().__init__(
            f"your team has uploaded {limit} files in the last minute, the most allowed (invalid files count "
            f"too); try again in {retry_after} s",
            f"你的队伍在一分钟内已上传 {limit} 个文件，达到上限（无效文件也计算在内）；请 {retry_after} 秒后再试",
            code="rate-limited",
        )
        self.retry_after = retry_after


RATE_WINDOW = dt.timedelta(minutes=1)


def _check_rate(session: Session, contest: Contest, team_id: int, now: dt.datetime) -> None:
    """Refuse a team's upload when it already stored ``uploads_per_minute`` in the last minute."""
    limit = contest.limits.uploads_per_minute
    recent = (
        session.execute(
            select(Submission.created_at)
            .where(Submission.team_id == team_id, Submission.created_at > now - RATE_WINDOW)
            .order_by(Submission.created_at.desc())
            .limit(limit)
        )
        .scalars()
        .all()
    )
    if len(recent) >= limit:
        # Free again when the oldest of the last ``limit`` uploads is a minute old.
        wait = (recent[-1] + RATE_WINDOW - now).total_seconds()
        raise RateLimited(limit, max(1, int(wait + 0.999)))


def stored_bytes(session: Session, team_id: int) -> int:
    """Bytes of the team's submission files the store keeps (dropped invalid files excluded)."""
    return session.execute(
        select(func.coalesce(func.sum(Submission.size), 0)).where(
            Submission.team_id == team_id, Submission.file_dropped_at.is_(None)
        )
    ).scalar_one()


def _check_storage(session: Session, contest: Contest, team_id: int, size: int) -> None:
    cap = contest.limits.team_storage
    used = stored_bytes(session, team_id)
    if used + size > cap:
        days = contest.limits.invalid_retention_days
        raise TeamStorageFull(
            f"your team's stored submission files take {used / 2**20:,.1f} MiB of the {cap >> 20:,} MiB allowed, "
            f"too little room for this {size / 2**20:,.1f} MiB file; the bytes of invalid files are deleted "
            f"{days} days after they were checked, or ask the organizers",
            f"你的队伍已保存的提交文件占用 {used / 2**20:,.1f} MiB（上限 {cap >> 20:,} MiB），放不下这个 "
            f"{size / 2**20:,.1f} MiB 的文件；无效文件的内容会在检查 {days} 天后删除，也可以联系组织方",
        )


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


@dataclass
class Incoming:
    """An upload to accept: who sent it, for which challenge, and the file in the upload area."""

    user: str
    challenge_id: str
    upload: Upload
    file_name: str
    provenance: dict | None = None
    now: dt.datetime | None = None
    staged: bool = False  # its bytes are on disk already (FileStore.stage), read-only


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
    """Charge the quota, record the submission and keep its file, all or nothing.

    Raises SubmissionRefused (the quota, the team's upload rate or storage, a closed
    challenge, or a file the disk could not take); then nothing is recorded or charged and
    the upload is deleted."""
    (outcome,) = accept_many(store, contest, [Incoming(user, challenge_id, upload, file_name, provenance, now)])
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def accept_many(store: Store, contest: Contest, incoming: list[Incoming]) -> list[Submission | ContesthubError]:
    """:func:`accept` for several uploads in one transaction: one commit, one flush to disk.

    Each upload is checked and recorded on its own (a savepoint: a refusal undoes its own work
    only, and the others' rows count in its checks, as if accepted one after the other); each
    gets its Submission or its refusal, in order. A refused upload is deleted. When the
    transaction itself fails (the store unavailable), that error is raised for all of them
    and their uploads are deleted."""
    out: list[Submission | ContesthubError | None] = [None] * len(incoming)
    staged: list[int] = []
    for i, inc in enumerate(incoming):
        inc.now = inc.now or clock.now()
        try:
            _check_open(contest.challenge(inc.challenge_id), inc.now)
            try:  # the bytes on disk before the transaction: the store's write lock is not held for it
                if not inc.staged:
                    store.files.stage(inc.upload)
            except OSError as exc:
                log.error("submission of %s for %s: writing its file failed: %s", inc.user, inc.challenge_id, exc)
                raise _storage_failed() from None
            staged.append(i)
        except ContesthubError as exc:
            out[i] = exc
            inc.upload.path.unlink(missing_ok=True)
    try:
        with store.session() as s:
            folders = set()
            for i in staged:
                try:
                    with s.begin_nested():
                        out[i] = _record(s, contest, incoming[i])
                        # Before the commit: once a scorer can see the row, its file is in the store.
                        folders.add(store.files.place(incoming[i].upload, sync=False).parent)
                except SubmissionRefused as exc:
                    out[i] = exc
                except OSError as exc:  # e.g. the disk is full: refused, nothing recorded or charged
                    log.error("submission of %s: keeping its file failed: %s", incoming[i].user, exc)
                    out[i] = _storage_failed()
            # The renames on disk before the rows are: a committed row always has its file. Should
            # the commit fail after this, the files stay without rows (harmless: nothing names them).
            store.files.sync_folders(folders)
    except BaseException:
        for inc in incoming:
            inc.upload.path.unlink(missing_ok=True)
        raise
    for inc, outcome in zip(incoming, out, strict=True):
        if isinstance(outcome, ContesthubError):
            inc.upload.path.unlink(missing_ok=True)
    return out


def _record(s: Session, contest: Contest, inc: Incoming) -> Submission:
    """Charge, check and insert one upload, with its audit entry (in the caller's transaction)."""
    ch, now, upload = contest.challenge(inc.challenge_id), inc.now, inc.upload
    team = _team_of(s, inc.user)
    # PostgreSQL: one acceptance at a time per team, so that the rate and storage checks count
    # what the others committed (SQLite has one writer at a time anyway).
    s.execute(select(Team.id).where(Team.id == team.id).with_for_update())
    _check_round(s, contest, team, ch)
    day = contest.day(now)
    _charge(s, team.id, ch, day)
    _check_rate(s, contest, team.id, now)
    _check_storage(s, contest, team.id, upload.size)
    sub = Submission(
        team_id=team.id,
        user=inc.user,
        challenge=ch.id,
        created_at=now,
        quota_day=day,
        file_name=inc.file_name[:255],
        size=upload.size,
        sha256=upload.sha256,
        status=statuses.RECEIVED,
        charged=True,
        provenance=_clean_provenance(inc.provenance),
    )
    s.add(sub)
    s.flush()
    audit.record(
        s,
        inc.user,
        "submission.receive",
        f"{ch.id}#{sub.id}",
        {"team": team.name, "sha256": upload.sha256, "size": upload.size, "file_name": sub.file_name},
    )
    return sub


def _storage_failed() -> SubmissionRefused:
    return StorageRefused(
        "the platform could not store your file (its disk may be full); it did not count against your quota, "
        "try again later",
        "平台暂时无法保存你的文件（磁盘可能已满）；本次不计入提交次数，请稍后再试",
    )


def _clean_provenance(provenance: dict | None) -> dict:
    """Keep the few provenance fields we show, as short strings (they come from the client)."""
    keys = ("notebook", "kernel", "sandbox_version", "client")
    return {k: str(provenance[k])[:500] for k in keys if provenance and provenance.get(k) is not None}


def has_queue(store: Store) -> bool:
    """Whether a submission waits for a scorer (a read: idle workers ask this, not :func:`claim`)."""
    with store.read_session() as s:
        return (
            s.execute(select(Submission.id).where(Submission.status == statuses.RECEIVED).limit(1)).first() is not None
        )


def claim(
    store: Store,
    worker: str,
    lease: float,
    *,
    submission_id: int | None = None,
    now: dt.datetime | None = None,
) -> Submission | None:
    """Move the oldest ``received`` submission (or ``submission_id``) to ``validating`` for
    ``worker`` until ``lease`` seconds from now; None when there is none to take.

    One conditional UPDATE: two workers never claim the same submission. On PostgreSQL the
    oldest row is picked with ``FOR UPDATE SKIP LOCKED``, so workers claiming at the same
    moment take different rows instead of waiting for each other."""
    now = now or clock.now()
    with store.session() as s:
        return _claim(s, worker, lease, now, submission_id)


def _claim(s: Session, worker: str, lease: float, now: dt.datetime, submission_id: int | None = None):
    if submission_id is None:
        target = (
            select(Submission.id)
            .where(Submission.status == statuses.RECEIVED)
            .order_by(Submission.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    else:
        target = submission_id
    sid = s.execute(
        update(Submission)
        .where(Submission.id == target, Submission.status == statuses.RECEIVED)
        .values(
            status=statuses.VALIDATING,
            attempts=Submission.attempts + 1,
            claimed_by=worker,
            lease_until=now + dt.timedelta(seconds=lease),
        )
        .returning(Submission.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return None if sid is None else s.get(Submission, sid)


def renew(store: Store, submission_id: int, worker: str, lease: float, now: dt.datetime | None = None) -> bool:
    """Extend ``worker``'s claim by ``lease`` seconds; False when the claim is no longer its own."""
    now = now or clock.now()
    with store.session() as s:
        return (
            s.execute(
                update(Submission)
                .where(
                    Submission.id == submission_id,
                    Submission.status == statuses.VALIDATING,
                    Submission.claimed_by == worker,
                )
                .values(lease_until=now + dt.timedelta(seconds=lease))
                .execution_options(synchronize_session=False)
            ).rowcount
            == 1
        )


def _claimed(session: Session, submission_id: int, worker: str | None) -> Submission | None:
    """The submission, locked, if ``worker`` (any worker: None) still holds its claim."""
    sub = session.get(Submission, submission_id, with_for_update=True, populate_existing=True)
    if sub is None or sub.status != statuses.VALIDATING or (worker is not None and sub.claimed_by != worker):
        return None
    return sub


def finish(
    store: Store,
    contest: Contest,
    submission_id: int,
    worker: str | None,
    *,
    result: ScoreResult | None = None,
    errors: list[dict] | None = None,
    now: dt.datetime | None = None,
) -> Submission | None:
    """Record what scoring found: ``result`` (valid: scored; else invalid) or ``errors`` (error).

    Only while ``worker`` holds the claim (None: whoever does): a worker that lost its claim
    (its lease ran out and another took it) records nothing and gets None. An invalid file
    gives its quota unit back while the team has free invalid files left that day
    (``free_invalid_per_day``); an error always does."""
    now = now or clock.now()
    with store.session() as s:
        return _finish(s, contest, submission_id, worker, result, errors, now)


def finish_and_claim(
    store: Store,
    contest: Contest,
    submission_id: int,
    worker: str,
    lease: float,
    *,
    result: ScoreResult | None = None,
    errors: list[dict] | None = None,
) -> tuple[Submission | None, Submission | None]:
    """:func:`finish` and :func:`claim` the next in one transaction (a busy worker's one write a
    submission): what was recorded (None: the claim was lost), and the next claimed, if any."""
    now = clock.now()
    with store.session() as s:
        return _finish(s, contest, submission_id, worker, result, errors, now), _claim(s, worker, lease, now)


def _finish(s: Session, contest: Contest, submission_id: int, worker: str | None, result, errors, now):
    sub = _claimed(s, submission_id, worker)
    if sub is None:
        return None
    sub.finished_at, sub.lease_until = now, None
    if result is not None and result.valid:
        s.add(Score.of(sub.id, result, active=True))
        sub.status, sub.errors = statuses.SCORED, []
        payload = {"public_score": result.public_score, "metric": f"{result.metric}@{result.metric_version}"}
    elif result is not None:
        sub.status, sub.errors = statuses.INVALID, result.errors
        free = free_invalid_left(s, contest, sub.team_id, sub.challenge, sub.quota_day, lock=True) > 0
        if free:
            _refund(s, sub)
        payload = {"codes": sorted({e["code"] for e in sub.errors}), "refunded": free}
    else:
        sub.status, sub.errors = statuses.ERROR, errors or []
        _refund(s, sub)
        payload = {"codes": sorted({e["code"] for e in sub.errors}), "refunded": True}
    audit.record(s, "scorer", f"submission.{sub.status}", f"{sub.challenge}#{sub.id}", payload)
    return sub


def free_invalid_left(
    session: Session, contest: Contest, team_id: int, challenge: str, day: dt.date, *, lock: bool = False
) -> int:
    """Invalid files the team may still have refunded on ``challenge`` on contest day ``day``.

    ``lock`` (a write session): take the day's quota row first, so that two invalid files
    finishing at once on PostgreSQL cannot both take the last free one."""
    if lock:
        session.execute(
            select(Quota.used)
            .where(Quota.team_id == team_id, Quota.challenge == challenge, Quota.day == day)
            .with_for_update()
        )
    refunded = session.execute(
        select(func.count()).where(
            Submission.team_id == team_id,
            Submission.challenge == challenge,
            Submission.quota_day == day,
            Submission.status == statuses.INVALID,
            Submission.charged.is_(False),
        )
    ).scalar_one()
    return max(0, contest.limits.free_invalid_per_day - refunded)


def _scorer_down(session: Session, sub: Submission, why: str, actor: str) -> None:
    """A claim that ended with its scorer down: back to the queue, or, the second time, error."""
    if sub.attempts >= MAX_ATTEMPTS:
        sub.status, sub.finished_at, sub.lease_until = statuses.ERROR, clock.now(), None
        sub.errors = [
            _error(
                "scoring-failed",
                f"scoring this file stopped the scorer {sub.attempts} times ({why}); it needs more memory or time "
                "than a submission may use, so it is not tried again: check the file (its size, very long values)",
                f"评分该文件时评分程序已 {sub.attempts} 次中止（{why}）；它需要的内存或时间超过提交允许的上限，"
                "因此不再重试：请检查文件（大小、过长的值）",
            )
        ]
        _refund(session, sub)
        audit.record(
            session,
            actor,
            "submission.error",
            f"{sub.challenge}#{sub.id}",
            {"codes": ["scoring-failed"], "refunded": True, "why": why},
        )
        return
    sub.status, sub.claimed_by, sub.lease_until = statuses.RECEIVED, None, None
    audit.record(session, actor, "submission.requeue", f"{sub.challenge}#{sub.id}", {"why": why})


def crashed(store: Store, submission_id: int, worker: str, why: str) -> Submission | None:
    """The scoring child of ``worker`` died (``why``: killed, out of memory, over its time):
    the submission goes back to the queue, or ends in error when this was its last attempt."""
    with store.session() as s:
        sub = _claimed(s, submission_id, worker)
        if sub is not None:
            _scorer_down(s, sub, why, "scorer")
        return sub


def reap(store: Store, gone: Callable[[str], bool], now: dt.datetime | None = None) -> list[int]:
    """Take back the claims of scorers that are gone: their lease ran out, or ``gone(claimed_by)``
    says their process no longer runs. Each goes back to the queue, or ends in error when it
    was its last attempt (see :func:`crashed`). Returns the submissions taken back.

    Costs a read when nothing is stale (workers call it now and then)."""
    now = now or clock.now()
    with store.read_session() as s:
        stale = [
            sid
            for sid, who, until in s.execute(
                select(Submission.id, Submission.claimed_by, Submission.lease_until).where(
                    Submission.status == statuses.VALIDATING
                )
            )
            if until is None or until < now or gone(who or "")
        ]
    taken = []
    for sid in stale:
        with store.session() as s:
            sub = _claimed(s, sid, None)
            if sub is None:
                continue
            if sub.lease_until is not None and sub.lease_until >= now and not gone(sub.claimed_by or ""):
                continue  # renewed in between
            _scorer_down(s, sub, f"its scorer {sub.claimed_by} stopped", "scorer")
            taken.append(sid)
    return taken


def score(store: Store, contest: Contest, paths: Paths, submission_id: int) -> Submission:
    """Validate and score one received submission in this process (tests, organizers' tools;
    the service's scorers use :func:`claim`, a child process and :func:`finish`)."""
    worker = f"inline:{submission_id}"
    sub = claim(store, worker, lease=3600, submission_id=submission_id)
    if sub is None:  # not received (scored already, or claimed by a scorer)
        with store.read_session() as s:
            found = s.get(Submission, submission_id)
            if found is None:
                raise NotFound(f"no submission {submission_id}", f"没有编号为 {submission_id} 的提交")
            return found
    result, errors = None, None
    if not store.files.verify(sub.sha256):
        errors = [file_lost_error()]
    else:
        try:
            result = score_file(contest.challenge(sub.challenge), store.files.path(sub.sha256), paths)
        except ContesthubError as exc:  # e.g. the solution is missing: an organizer must act
            log.error("submission %s could not be scored: %s", sub.id, exc.en)
            errors = [scoring_failed_error(exc.en, exc.zh)]
    return finish(store, contest, submission_id, worker, result=result, errors=errors)


def file_lost_error() -> dict:
    return _error("file-lost", "the stored file is missing or damaged", "提交的文件丢失或损坏")


def scoring_failed_error(en: str, zh: str) -> dict:
    """The error of a submission that could not be scored for a reason an organizer must fix."""
    return _error("scoring-failed", en, zh)


def mark_file_lost(store: Store, submission_id: int, *, actor: str = "scorer") -> Submission:
    """Its stored file no longer matches its SHA-256 (found by a rescore or a check): the
    submission becomes ``error`` (off the leaderboard) and gives its quota unit back."""
    with store.session() as s:
        sub = s.get(Submission, submission_id)
        sub.status, sub.finished_at = statuses.ERROR, clock.now()
        sub.errors = [file_lost_error()]
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
    changes nothing). A damaged or missing file is named with the submissions that use it; the
    bytes of invalid files dropped after their retention period are not expected."""
    with store.read_session() as s:
        rows = s.execute(
            select(Submission.sha256, Submission.id).where(Submission.file_dropped_at.is_(None)).order_by(Submission.id)
        ).all()
    users: dict[str, list[int]] = {}
    for sha, sid in rows:
        users.setdefault(sha, []).append(sid)
    problems = []
    for sha, ids in users.items():
        if not store.files.verify(sha):
            problem = "damaged" if store.files.path(sha).exists() else "missing"
            problems.append({"sha256": sha, "problem": problem, "submissions": ids})
    return FileCheck(checked=len(users), problems=problems)


def drop_invalid_files(store: Store, contest: Contest, now: dt.datetime | None = None) -> int:
    """Delete the bytes of invalid files checked more than ``invalid_retention_days`` ago; their
    rows keep the SHA-256, size, errors and ``file_dropped_at``. A file that another submission
    still keeps (the same bytes, scored say) stays. Returns how many submissions lost their file.

    Safe to run in several places at once (each row is dropped once; deleting twice is nothing)."""
    now = now or clock.now()
    before = now - dt.timedelta(days=contest.limits.invalid_retention_days)
    with store.session() as s:
        rows = s.scalars(
            select(Submission)
            .where(
                Submission.status == statuses.INVALID,
                Submission.finished_at < before,
                Submission.file_dropped_at.is_(None),
            )
            .with_for_update(skip_locked=True)
        ).all()
        for sub in rows:
            sub.file_dropped_at = now
            audit.record(s, "scorer", "submission.file-dropped", f"{sub.challenge}#{sub.id}", {"sha256": sub.sha256})
        digests = {sub.sha256 for sub in rows}
    if not digests:
        return 0
    with store.read_session() as s:
        kept = set(
            s.scalars(
                select(Submission.sha256).where(Submission.sha256.in_(digests), Submission.file_dropped_at.is_(None))
            )
        )
    for sha in digests - kept:
        # (An upload of these very bytes accepted in between would lose its file and end as
        # file-lost, refunded: the same bytes as an invalid file of a week ago, at that instant.)
        path = store.files.path(sha)
        with contextlib.suppress(FileNotFoundError):
            path.chmod(0o600)
            path.unlink()
    return len(rows)


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
    _check_round(session, contest, team, ch)
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
                Submission.status == statuses.SCORED,
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
