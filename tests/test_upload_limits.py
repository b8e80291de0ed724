"""What a team's uploads may cost the platform (``[limits]`` in the contest file), on SQLite and PostgreSQL.

The attack (issue 13.5): ten 49 MiB invalid uploads in seven seconds grew the store by 490 MiB
and left the team's quota untouched, and their bytes were kept for ever. Now:

* a team may store at most ``uploads_per_minute`` uploads in any minute, invalid ones
  included; the next is refused (``rate-limited``, with the seconds to wait) and costs nothing;
* ``free_invalid_per_day`` invalid files a day give their quota unit back; later ones keep it;
* a team's kept files may not exceed ``team_storage_mb``;
* the bytes of an invalid file are deleted ``invalid_retention_days`` after it was checked;
  its SHA-256, size and errors stay.

tests/test_hub_submit.py sends the refusal through the real service (429 with Retry-After).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from contest_fixtures import NOW
from sqlalchemy import select

from hub import scorer
from leaderboard import audit, backup, submissions, teams
from leaderboard.contest import Limits
from leaderboard.models import AuditEntry, Quota, Submission
from leaderboard.submissions import RateLimited, SubmissionRefused
from sandbox import clock
from sandbox.settings import PROJECT_ROOT

CH = "outpatient_forecast"
EMERGENCY = "emergency_visit"


@pytest.fixture
def team(store, demo_contest):
    """Team alpha (ann), with 100 extra submissions on the forecast challenge on NOW's day."""
    with store.session() as s:
        teams.create(s, demo_contest, "alpha", actor="org", members=("ann",), now=NOW)
        submissions.grant(s, demo_contest, "alpha", CH, 100, reason="tests", by="org", day=NOW.date())
    return "alpha"


def _limited(contest, **limits):
    return dataclasses.replace(contest, limits=dataclasses.replace(contest.limits, **limits))


def _upload(store, contest, path):
    with open(path, "rb") as f:
        return store.files.receive(f, contest.upload_limit)


def _accept(store, contest, path, now, challenge=CH):
    return submissions.accept(
        store,
        contest,
        user="ann",
        challenge_id=challenge,
        upload=_upload(store, contest, path),
        file_name=path.name,
        now=now,
    )


def _quota(store, contest, challenge=CH, day=None):
    day = day or NOW.date()
    with store.read_session() as s:
        t = teams.get(s, "alpha")
        row = s.get(Quota, (t.id, challenge, day))
        return row.used if row else 0


def _invalid(predictions, seed: int, challenge=CH):
    """A file with a wrong column (each with its own bytes)."""
    return predictions(challenge, seed=seed, edit=lambda df: df.rename(columns={df.columns[-1]: f"wrong{seed}"}))


def test_a_team_uploading_too_fast_is_refused_with_the_seconds_to_wait(store, demo_contest, predictions, team):
    assert demo_contest.limits.uploads_per_minute == 10  # config/contest.toml
    for i in range(10):  # ten invalid files in ten seconds: each one counts
        _accept(store, demo_contest, _invalid(predictions, i), NOW + dt.timedelta(seconds=i))
    late = _invalid(predictions, 10)
    with store.read_session() as s, pytest.raises(RateLimited) as early:
        submissions.precheck(s, demo_contest, teams.get(s, "alpha"), CH, now=NOW + dt.timedelta(seconds=10))
    with pytest.raises(RateLimited) as refused:
        _accept(store, demo_contest, late, NOW + dt.timedelta(seconds=10))
    for exc in (early.value, refused.value):
        assert exc.code == "rate-limited" and exc.retry_after == 50  # the first upload is a minute old then
        assert "50 s" in exc.en and "50 秒" in exc.zh and "invalid files count" in exc.en
    assert _quota(store, demo_contest) == 10  # nothing charged for the refusal
    with store.read_session() as s:
        assert s.query(Submission).count() == 10
    assert not list(store.files.incoming.iterdir())  # its bytes are gone
    _accept(store, demo_contest, late, NOW + dt.timedelta(seconds=60, microseconds=1))  # a minute on: room again


def test_invalid_files_beyond_the_free_number_a_day_count_against_the_quota(
    store, demo, demo_contest, predictions, team
):
    contest = _limited(demo_contest, free_invalid_per_day=3)
    worker = scorer.Worker(store, contest, demo, scorer.Limits())
    for i in range(5):
        _accept(store, contest, _invalid(predictions, i), NOW + dt.timedelta(minutes=i))
    assert worker.drain() == 5
    with store.read_session() as s:
        rows = s.scalars(select(Submission).order_by(Submission.id)).all()
        left = submissions.free_invalid_left(s, contest, rows[0].team_id, CH, NOW.date())
    assert [r.status for r in rows] == ["invalid"] * 5
    assert [r.charged for r in rows] == [False, False, False, True, True]
    assert _quota(store, contest) == 2 and left == 0
    with store.read_session() as s:
        refunds = [e.payload for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "submission.invalid"))]
    assert [p[p.index('"refunded"') :].rstrip("}") for p in refunds] == ['"refunded":true'] * 3 + [
        '"refunded":false'
    ] * 2
    # The next contest day, invalid files are free again.
    tomorrow = NOW + dt.timedelta(days=1)
    sub = _accept(store, contest, _invalid(predictions, 9), tomorrow)
    worker.drain()
    with store.read_session() as s:
        assert not s.get(Submission, sub.id).charged


def test_a_team_whose_kept_files_fill_its_storage_is_refused_until_invalid_bytes_are_dropped(
    store, demo, demo_contest, predictions, team
):
    contest = _limited(demo_contest, team_storage_mb=1)
    with store.session() as s:
        submissions.grant(s, contest, "alpha", EMERGENCY, 10, reason="tests", by="org", day=NOW.date())
    files = [_invalid(predictions, i, EMERGENCY) for i in range(4)]  # a few hundred kB each, a 1 MiB allowance
    fit = contest.limits.team_storage // max(f.stat().st_size for f in files)  # as many as fit, and one more
    assert 1 <= fit < len(files), [f.stat().st_size for f in files]
    for i, f in enumerate(files[:fit]):
        _accept(store, contest, f, NOW + dt.timedelta(seconds=i), EMERGENCY)
    one_more = files[fit]
    with store.read_session() as s, pytest.raises(SubmissionRefused) as early:
        submissions.precheck(s, contest, teams.get(s, "alpha"), EMERGENCY, now=NOW, size=one_more.stat().st_size)
    with pytest.raises(SubmissionRefused) as refused:
        _accept(store, contest, one_more, NOW + dt.timedelta(minutes=1), EMERGENCY)
    for exc in (early.value, refused.value):
        assert exc.code == "team-storage-full" and "1 MiB allowed" in exc.en and "上限 1 MiB" in exc.zh
    assert _quota(store, contest, EMERGENCY) == fit and not list(store.files.incoming.iterdir())
    scorer.Worker(store, contest, demo, scorer.Limits()).drain()  # invalid: their bytes go after the retention
    later = clock.now() + dt.timedelta(days=contest.limits.invalid_retention_days, minutes=1)
    assert submissions.drop_invalid_files(store, contest, later) == fit
    _accept(store, contest, one_more, NOW + dt.timedelta(minutes=2), EMERGENCY)  # room again


def test_the_bytes_of_invalid_files_are_dropped_after_the_retention_period_and_their_record_stays(
    store, demo, demo_contest, predictions, team, tmp_path
):
    contest = demo_contest
    with store.session() as s:
        submissions.grant(s, contest, "alpha", EMERGENCY, 10, reason="tests", by="org", day=NOW.date())
    forecast = predictions(CH, noise=0.1)
    scored = _accept(store, contest, forecast, NOW)
    shared = _accept(store, contest, forecast, NOW + dt.timedelta(seconds=1), EMERGENCY)  # same bytes: invalid here
    lone = _accept(store, contest, _invalid(predictions, 3), NOW + dt.timedelta(seconds=2))
    scorer.Worker(store, contest, demo, scorer.Limits()).drain()
    with store.read_session() as s:
        assert [s.get(Submission, x.id).status for x in (scored, shared, lone)] == ["scored", "invalid", "invalid"]
    days = contest.limits.invalid_retention_days
    assert submissions.drop_invalid_files(store, contest, clock.now() + dt.timedelta(days=days - 1)) == 0
    assert submissions.drop_invalid_files(store, contest, clock.now() + dt.timedelta(days=days, minutes=1)) == 2
    assert not store.files.path(lone.sha256).exists()
    assert store.files.verify(scored.sha256)  # the same bytes as the dropped `shared`: still kept for `scored`
    with store.read_session() as s:
        row = s.get(Submission, lone.id)
        assert row.file_dropped_at is not None and row.sha256 == lone.sha256 and row.size == lone.size
        assert row.errors and row.errors[0]["code"] == "missing-column"
        assert submissions.stored_bytes(s, row.team_id) == scored.size
        dropped = s.scalars(select(AuditEntry.subject).where(AuditEntry.action == "submission.file-dropped")).all()
        assert sorted(dropped) == sorted([f"{EMERGENCY}#{shared.id}", f"{CH}#{lone.id}"])
        assert audit.verify(s).ok
    assert submissions.verify_files(store).ok  # a dropped file is not missing
    manifest = backup.backup(store, demo, PROJECT_ROOT / "config" / "contest.toml", tmp_path / "bk")
    assert not manifest["missing_submission_files"]
    assert submissions.drop_invalid_files(store, contest, clock.now() + dt.timedelta(days=days + 1)) == 0  # once


def test_the_contest_file_states_the_limits():
    from leaderboard import contest as contest_config

    c = contest_config.load(PROJECT_ROOT / "config" / "contest.toml")
    assert c.limits == Limits(
        uploads_per_minute=10, free_invalid_per_day=10, team_storage_mb=1024, invalid_retention_days=7
    )
