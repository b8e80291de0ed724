"""The contest store on SQLite and PostgreSQL: submissions kept, quotas exact, crashes recovered."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from contest_fixtures import NOW
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from leaderboard import audit, submissions, teams
from leaderboard import store as store_mod
from leaderboard.models import AuditEntry, Quota, Submission
from leaderboard.submissions import SubmissionRefused

CH = "outpatient_forecast"


def _team(store, contest, name="alpha", members=("ann",)):
    with store.session() as s:
        teams.create(s, contest, name, actor="organizer", members=members, now=NOW)


TODAY = NOW.date()


def _used(store, team="alpha", challenge=CH, day=TODAY):
    with store.session() as s:
        t = teams.get(s, team)
        row = s.get(Quota, (t.id, challenge, day))
        return row.used if row else 0


def test_migrations_build_the_schema_and_are_safe_to_repeat(store):
    store_mod.upgrade(store.url)  # a second time: nothing to do, nothing breaks
    with store.session() as s:
        assert s.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0009"
        assert s.execute(select(func.count()).select_from(Submission)).scalar_one() == 0


def test_a_submission_is_kept_scored_and_shown_to_its_team_without_the_private_score(
    store, demo, demo_contest, predictions, submit
):
    _team(store, demo_contest)
    path = predictions(CH)
    sub = submit(store, "ann", CH, path, provenance={"notebook": "baseline.ipynb", "ignored": "x"})
    assert sub.status == "received" and _used(store) == 1
    stored = store.files.path(sub.sha256)
    assert stored.read_bytes() == path.read_bytes() and store.files.verify(sub.sha256)
    assert not list(store.files.incoming.iterdir())  # nothing half-written left behind

    done = submissions.score(store, demo_contest, demo, sub.id)
    assert done.status == "scored" and _used(store) == 1
    with store.session() as s:
        view = submissions.one_for_team(s, teams.get(s, "alpha"), sub.id)
    assert view["public_score"] == pytest.approx(0.0, abs=1e-7)  # a perfect forecast (the fixture adds 1e-9 noise)
    assert view["metric"] == "rmse@1" and view["dataset_version"] >= 1 and view["rows"] == 60 * 92
    assert view["provenance"] == {"notebook": "baseline.ipynb"}
    assert "private" not in json.dumps(view)


def test_an_invalid_file_is_recorded_costs_no_quota_and_says_what_to_fix(
    store, demo, demo_contest, predictions, submit
):
    _team(store, demo_contest)
    path = predictions(CH, edit=lambda df: df.drop(columns=["outpatient_visits"]))
    sub = submit(store, "ann", CH, path)
    done = submissions.score(store, demo_contest, demo, sub.id)
    assert done.status == "invalid" and not done.charged
    assert _used(store) == 0
    codes = {e["code"] for e in done.errors}
    assert "missing-column" in codes
    err = next(e for e in done.errors if e["code"] == "missing-column")
    assert "outpatient_visits" in err["message_en"] and err["message_zh"]
    assert store.files.path(sub.sha256).exists()  # the original is kept for the record


def test_an_accepted_submission_waits_in_the_queue_with_its_file_kept(store, demo_contest, predictions, submit):
    """accept() keeps the file before its transaction commits: a scorer never sees a row without it."""
    _team(store, demo_contest)
    sub = submit(store, "ann", CH, predictions(CH, noise=0.1))
    assert submissions.has_queue(store)
    claimed = submissions.claim(store, "test:1", lease=30)
    assert claimed.id == sub.id and claimed.status == "validating" and claimed.attempts == 1
    assert store.files.verify(claimed.sha256)
    assert submissions.claim(store, "test:2", lease=30) is None and not submissions.has_queue(store)


def test_a_submission_whose_stored_file_is_gone_is_errored_and_refunded(store, demo, demo_contest, predictions, submit):
    _team(store, demo_contest)
    sub = submit(store, "ann", CH, predictions(CH))
    path = store.files.path(sub.sha256)
    path.chmod(0o600)
    path.unlink()  # lost at rest
    row = submissions.score(store, demo_contest, demo, sub.id)
    assert row.status == "error" and not row.charged
    assert row.errors[0]["code"] == "file-lost" and "quota" in row.errors[0]["message_en"]
    assert _used(store) == 0


def test_the_service_start_sweeps_uploads_a_crash_left_half_written(store):
    """Uploads last written before the start are leftovers; newer ones are requests in flight.
    The files' times are set explicitly, not left to the kernel's clock."""
    store.files.incoming.mkdir(parents=True, exist_ok=True)
    started = NOW + dt.timedelta(hours=1)
    leftover, fresh = store.files.incoming / "upload-leftover", store.files.incoming / "upload-after-restart"
    for file, at in ((leftover, started - dt.timedelta(minutes=5)), (fresh, started + dt.timedelta(seconds=1))):
        file.write_bytes(b"half a file")
        os.utime(file, (at.timestamp(), at.timestamp()))
    assert store.files.sweep_incoming(before=started.timestamp()) == 1
    assert sorted(store.files.incoming.iterdir()) == [fresh]  # the leftover is gone, the new upload kept


def test_a_corrupted_stored_file_is_detected_by_its_checksum(store, demo, demo_contest, predictions, submit):
    _team(store, demo_contest)
    sub = submit(store, "ann", CH, predictions(CH))
    path = store.files.path(sub.sha256)
    path.chmod(0o600)
    path.write_bytes(path.read_bytes().replace(b"2024", b"2023", 1))
    assert not store.files.verify(sub.sha256)
    assert submissions.score(store, demo_contest, demo, sub.id).status == "error"
    assert _used(store) == 0


def test_fifty_simultaneous_submissions_for_the_last_slot_accept_exactly_one(store, demo_contest, predictions, submit):
    _team(store, demo_contest)
    path = predictions(CH)
    quota = demo_contest.challenge(CH).daily_quota
    for _ in range(quota - 1):
        submit(store, "ann", CH, path)
    barrier, results = threading.Barrier(50), []

    def one(i: int) -> None:
        with open(path, "rb") as f:
            upload = store.files.receive(f, demo_contest.upload_limit)
        barrier.wait()
        try:
            submissions.accept(
                store, demo_contest, user="ann", challenge_id=CH, upload=upload, file_name=f"{i}.csv", now=NOW
            )
            results.append("accepted")
        except SubmissionRefused as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("accepted") == 1 and results.count("quota-exceeded") == 49
    assert _used(store) == quota
    with store.session() as s:
        assert s.execute(select(func.count()).select_from(Submission)).scalar_one() == quota
    assert not list(store.files.incoming.iterdir())  # refused uploads are deleted, not kept


def test_a_read_session_does_not_wait_for_an_open_write_transaction(store, demo_contest):
    """The leaderboard and the polls read while a writer holds SQLite's write lock (BEGIN
    IMMEDIATE): they see the last committed state at once, never what is not committed yet."""
    _team(store, demo_contest, "alpha", ("ann",))
    writing, done = threading.Event(), threading.Event()

    def writer() -> None:
        with store.session() as s:
            teams.create(s, demo_contest, "beta", actor="org", members=("bob",), now=NOW)
            s.flush()  # on SQLite the write lock is held since BEGIN IMMEDIATE; now rows are written too
            writing.set()
            done.wait(30)

    def read() -> list[str]:
        with store.read_session() as s:
            return [t["name"] for t in teams.listing(s)]

    with ThreadPoolExecutor(2) as pool:
        w = pool.submit(writer)
        assert writing.wait(30)
        try:
            started = time.monotonic()
            names = pool.submit(read).result(timeout=10)
            assert time.monotonic() - started < 5
            assert names == ["alpha"]  # beta is not committed yet
        finally:
            done.set()
        w.result(timeout=30)
    with store.read_session() as s:
        assert sorted(t["name"] for t in teams.listing(s)) == ["alpha", "beta"]


def test_a_read_session_cannot_write(store, demo_contest):
    with pytest.raises(DBAPIError), store.read_session() as s:
        teams.create(s, demo_contest, "alpha", actor="org", members=("ann",), now=NOW)
        s.flush()
    with store.read_session() as s:
        assert teams.listing(s) == []


def test_writers_of_one_process_take_turns_on_sqlite(store, demo_contest):
    """One writer at a time in the process: the second waits on the store's lock (not in
    SQLite's busy handler, which the session would reach only at its first statement) and
    enters its transaction once the first has committed."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL runs writers concurrently (the quota update is a guarded UPDATE)")
    events: list[tuple[str, float]] = []
    first_in = threading.Event()

    def write(name: str, hold: float) -> None:
        with store.session() as s:
            events.append((f"{name} in", time.monotonic()))
            first_in.set()
            teams.create(s, demo_contest, name, actor="org", now=NOW)
            time.sleep(hold)
            events.append((f"{name} commits", time.monotonic()))

    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(write, "alpha", 0.5)
        assert first_in.wait(30)
        b = pool.submit(write, "beta", 0)
        a.result(timeout=30), b.result(timeout=30)
    assert [e for e, _ in events] == ["alpha in", "alpha commits", "beta in", "beta commits"]
    with store.read_session() as s:
        assert sorted(t["name"] for t in teams.listing(s)) == ["alpha", "beta"]


def test_quotas_reset_at_midnight_in_the_contest_time_zone(store, demo_contest, predictions, submit):
    _team(store, demo_contest)
    path = predictions(CH)
    quota = demo_contest.challenge(CH).daily_quota
    late = dt.datetime(2026, 12, 1, 23, 59, tzinfo=demo_contest.timezone)
    for _ in range(quota):
        submit(store, "ann", CH, path, now=late)
    with pytest.raises(SubmissionRefused) as refused:
        submit(store, "ann", CH, path, now=late)
    assert refused.value.code == "quota-exceeded" and "零点" in refused.value.zh
    # 00:01 in Shanghai is still 1 December in UTC: the contest's day decides.
    submit(store, "ann", CH, path, now=late + dt.timedelta(minutes=2))
    assert _used(store, day=dt.date(2026, 12, 2)) == 1


def test_an_organizer_grant_adds_submissions_with_a_recorded_reason(store, demo_contest, predictions, submit):
    _team(store, demo_contest)
    path = predictions(CH)
    for _ in range(demo_contest.challenge(CH).daily_quota):
        submit(store, "ann", CH, path)
    with store.session() as s:
        submissions.grant(s, demo_contest, "alpha", CH, 1, reason="platform outage at 09:00", by="org", day=NOW.date())
    submit(store, "ann", CH, path)
    with pytest.raises(SubmissionRefused):
        submit(store, "ann", CH, path)
    with store.session() as s:
        q = submissions.quota(s, demo_contest, teams.get(s, "alpha"), CH, now=NOW)
        assert q["allowed"] == demo_contest.challenge(CH).daily_quota + 1 and q["remaining"] == 0
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "quota.grant")).scalar_one()
        assert "platform outage" in entry.payload and entry.actor == "org"
        with pytest.raises(Exception, match="reason"):
            submissions.grant(s, demo_contest, "alpha", CH, 1, reason=" ", by="org")


def test_the_precheck_refuses_a_used_up_quota_without_writing(store, demo_contest, predictions, submit):
    """The service refuses in a read session what accept() would refuse (a used-up quota, a
    closed challenge); it never refuses what accept() would take."""
    _team(store, demo_contest)
    path = predictions(CH)
    ch = demo_contest.challenge(CH)
    for _ in range(ch.daily_quota):
        with store.read_session() as s:
            submissions.precheck(s, demo_contest, teams.get(s, "alpha"), CH, now=NOW)
        submit(store, "ann", CH, path)
    with store.read_session() as s, pytest.raises(SubmissionRefused) as full:
        submissions.precheck(s, demo_contest, teams.get(s, "alpha"), CH, now=NOW)
    with pytest.raises(SubmissionRefused) as charged:
        submit(store, "ann", CH, path)
    assert full.value.code == charged.value.code == "quota-exceeded" and full.value.en == charged.value.en
    with store.session() as s:
        submissions.grant(s, demo_contest, "alpha", CH, 1, reason="outage", by="org", day=NOW.date())
    with store.read_session() as s:
        submissions.precheck(s, demo_contest, teams.get(s, "alpha"), CH, now=NOW)
        with pytest.raises(SubmissionRefused) as closed:
            submissions.precheck(s, demo_contest, teams.get(s, "alpha"), CH, now=ch.closes)
    assert closed.value.code == "challenge-closed"
    submit(store, "ann", CH, path)
    assert _used(store) == ch.daily_quota + 1


def test_refused_uploads_record_nothing(store, demo_contest, predictions, submit):
    _team(store, demo_contest)
    path = predictions(CH)
    with pytest.raises(SubmissionRefused) as closed:
        submit(store, "ann", CH, path, now=demo_contest.challenge(CH).closes)
    assert closed.value.code == "challenge-closed"
    with pytest.raises(SubmissionRefused) as lone:
        submit(store, "bob", CH, path)
    assert lone.value.code == "no-team" and "bob" in lone.value.en
    with store.session() as s:
        assert s.execute(select(func.count()).select_from(Submission)).scalar_one() == 0
    assert not list(store.files.incoming.iterdir())


def test_an_upload_over_the_limit_is_refused_while_streaming(store, tmp_path):
    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * (3 << 20))
    with open(big, "rb") as f, pytest.raises(store_mod.UploadTooLarge) as exc:
        store.files.receive(f, 1 << 20)
    assert exc.value.code == "file-too-large" and "1 MiB" in exc.value.en
    assert not list(store.files.incoming.iterdir())


# --- teams ----------------------------------------------------------------------------------


def test_team_rules_size_membership_and_freeze(store, demo_contest):
    limit = demo_contest.max_team_size
    with store.session() as s:
        teams.create(s, demo_contest, "alpha", actor="org", members=tuple(f"u{i}" for i in range(limit)), now=NOW)
        teams.create(s, demo_contest, "<img src=x onerror=alert(1)>", actor="org", now=NOW)
    with store.session() as s, pytest.raises(teams.TeamError) as full:
        teams.add_member(s, demo_contest, "alpha", "extra", actor="org", now=NOW)
    assert full.value.code == "team-full"
    with store.session() as s, pytest.raises(teams.TeamError) as taken:
        teams.add_member(s, demo_contest, "<img src=x onerror=alert(1)>", "u0", actor="org", now=NOW)
    assert taken.value.code == "already-in-team" and "alpha" in taken.value.en
    frozen = demo_contest.team_freeze + dt.timedelta(seconds=1)
    with store.session() as s, pytest.raises(teams.TeamError) as late:
        teams.remove_member(s, demo_contest, "alpha", "u0", actor="org", now=frozen)
    assert late.value.code == "teams-frozen"
    with store.session() as s:
        listing = {t["name"]: t for t in teams.listing(s)}
    assert listing["alpha"]["members"] == [f"u{i}" for i in range(limit)]
    assert "<img src=x onerror=alert(1)>" in listing


def test_a_merge_follows_the_quota_rule_and_moves_submissions(store, demo_contest, predictions, submit):
    ch = demo_contest.challenge(CH)
    _team(store, demo_contest, "alpha", ("ann",))
    _team(store, demo_contest, "beta", ("bob",))
    path = predictions(CH)
    first_day = ch.opens + dt.timedelta(hours=1)
    for _ in range(ch.daily_quota):
        submit(store, "ann", CH, path, now=first_day)
        submit(store, "bob", CH, path, now=first_day)
    # Together they used 2 × quota on day one: a one-day-old merged team could not have.
    with store.session() as s, pytest.raises(teams.TeamError) as refused:
        teams.merge(s, demo_contest, "alpha", "beta", actor="org", now=first_day + dt.timedelta(hours=1))
    assert refused.value.code == "merge-over-quota" and f"{ch.daily_quota} a day × 1 days" in refused.value.en
    # Two days later the same history fits (quota × 3 days ≥ 2 × quota).
    later = first_day + dt.timedelta(days=2)
    with store.session() as s:
        merged = teams.merge(s, demo_contest, "alpha", "beta", actor="org", now=later)
        assert sorted(m.user for m in merged.members) == ["ann", "bob"]
        assert s.execute(select(func.count()).where(Submission.team_id == merged.id)).scalar_one() == 2 * ch.daily_quota
        with pytest.raises(Exception, match="beta"):
            teams.get(s, "beta")
    assert _used(store, "alpha", day=first_day.astimezone(demo_contest.timezone).date()) == 2 * ch.daily_quota


# --- the audit log --------------------------------------------------------------------------


def _audit_tamper(store, sql: str) -> list[str]:
    with store.session() as s:
        s.execute(text(sql))
    with store.session() as s:
        return audit.verify(s).problems


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            'UPDATE audit_log SET payload = \'{"user":"mallory"}\' WHERE seq = 2',
            "entry 2 (team.add_member alpha) was changed",
        ),
        ("DELETE FROM audit_log WHERE seq = 2", "entry 2 is missing"),
        ("UPDATE audit_log SET seq = seq + 100 WHERE seq = 2", "does not follow"),
        ("DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)", "entries were removed"),
    ],
    ids=["edited", "deleted", "reordered", "tail-cut"],
)
def test_audit_verify_detects_tampering(store, demo_contest, sql, expected):
    _team(store, demo_contest, "alpha", ("ann", "bob"))
    with store.session() as s:
        result = audit.verify(s)
    assert result.ok and result.entries == 3
    problems = _audit_tamper(store, sql)
    assert any(expected in p for p in problems), problems


def test_uploads_accepted_together_are_each_accepted_or_refused_on_their_own(store, demo_contest, predictions):
    """accept_many (the service's group commit): one transaction, but every upload is checked as
    if accepted after the ones before it; a refusal undoes its own work only and deletes its upload."""
    _team(store, demo_contest, "alpha", ("ann",))
    ch = demo_contest.challenge(CH)
    files = [predictions(CH, noise=0.1, seed=i) for i in range(ch.daily_quota + 1)]
    incoming = []
    for i, f in enumerate([*files[:2], files[0], *files[2:]]):
        with open(f, "rb") as fh:
            upload = store.files.receive(fh, demo_contest.upload_limit)
        user = "nobody" if i == 2 else "ann"  # in no team
        incoming.append(submissions.Incoming(user, CH, upload, f.name, now=NOW + dt.timedelta(seconds=i)))
    outcomes = submissions.accept_many(store, demo_contest, incoming)
    codes = [o.code if isinstance(o, SubmissionRefused) else o.status for o in outcomes]
    assert codes == ["received"] * 2 + ["no-team"] + ["received"] * 3 + ["quota-exceeded"]
    assert _used(store) == ch.daily_quota
    with store.read_session() as s:
        rows = s.scalars(select(Submission).order_by(Submission.id)).all()
        entries = s.scalars(select(AuditEntry.subject).where(AuditEntry.action == "submission.receive")).all()
        assert audit.verify(s).ok
    assert [r.id for r in rows] == [o.id for o in outcomes if isinstance(o, Submission)]
    assert entries == [f"{CH}#{r.id}" for r in rows]  # none for the refused ones
    assert all(store.files.verify(r.sha256) for r in rows)
    assert not list(store.files.incoming.iterdir())  # the refused uploads are gone
