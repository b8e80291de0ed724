"""Faults (issue 7, suite 3): what a contestant and the store see when things break underneath.

One real JupyterHub for the module (configurable-http-proxy, the submission service, the
scorer pool, the leaderboard), its contest store on a throwaway PostgreSQL database (SQLite
when no server listens on 127.0.0.1:5432; the PostgreSQL case is then skipped) and its
submission files on a tmpfs (when the tests run as root; the store-level disk-full case runs
either way). The pool has one scorer worker, so a burst of submissions queues up behind it.
Teams are made through the organizer API; the contest's per-team upload limits are lifted
(tests/hub_fixtures.py), since the loops below upload faster than a person.

======================================  ============================================================
fault                                   what must hold afterwards
======================================  ============================================================
SIGKILL the submission service and the  JupyterHub notices on its next poll of its managed services
whole scorer pool while a slow client's (every 30 s) and starts both again; the service's start
upload is half sent and a burst of      sweeps the partial upload; nothing is recorded for the cut
submissions is queued for scoring (one  upload and no quota spent; the new pool takes back the claim
kill, both cases)                       of the dead scorer and scores the burst, each once
SIGKILL one scorer worker mid-score     the pool starts another at once, which takes the dead one's
                                        claim back: the submission is scored once, nothing lost
PostgreSQL restarted under a loop of    every 202 is in the store and scored; every refusal is a 503
submissions                             JSON error (store-unavailable, zh/en), never a hang; the
                                        service recovers without a restart
the upload disk fills up (tmpfs)        507 storage-failed (zh/en), no quota spent, no partial file;
                                        the service keeps running; uploads work once space is back
a stored file's bytes are flipped       its checksum gives it away (FileStore.verify and
                                        submissions.verify_files); the scorer errors and refunds it
                                        and a rescore refuses to score it
SIGKILL the hub                         the contestant's server keeps running; every managed service
                                        (submission service, leaderboard, idle culler) ends with the
                                        hub within seconds (hub/die_with_parent.py); the hub started
                                        again with the same settings reaches the server through the
                                        proxy, its kernel works, its own new services answer, and
                                        nothing else of the old hub is left (its proxy is replaced)
======================================  ============================================================

After every fault :func:`fault_tools.store_problems` must find nothing: nothing accepted is lost,
interrupted submissions are rescored or refunded, no partial upload is left, every quota counts
exactly its charged submissions, and the audit log verifies.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from contest_fixtures import NOW, PG_ADMIN, prediction_frame
from fault_tools import (
    Tmpfs,
    alive,
    cmdline,
    find_below,
    kill,
    postgres_fault,
    slow_upload,
    store_problems,
    wait_for,
)
from hub_fixtures import SUITE_LIMITS, RunningHub, hub_settings, kernel_run
from sqlalchemy import select

from hub import scorer
from hub.accounts import prepare_organizer
from hub.launcher import HubProcess, descendants
from hub.testing import contest_file
from leaderboard import audit, contest, submissions, teams
from leaderboard import store as store_mod
from leaderboard.models import AuditEntry, Quota, Score, Submission
from leaderboard.submissions import PENDING, SubmissionRefused
from sandbox.settings import PROJECT_ROOT, Paths

EMERGENCY = "emergency_visit"  # 28 807 test rows, probabilities: a file of ~750 KB
FORECAST = "outpatient_forecast"  # 5 520 rows: a small file, for the submission loop
SUBMIT_MARK = "hub.submit_service"
SCORER_MARK = "hub.scorer"  # the pool, its workers ("hub.scorer worker") and their scoring children
ARTIFACTS = PROJECT_ROOT / "var" / "test-artifacts"


# --- the module's hub ---------------------------------------------------------------------------


def _csv(demo: Paths, ch: contest.Challenge, seed: int, noise: float = 0.6) -> bytes:
    """A valid submission file for ``ch`` built from its hidden solution plus noise."""
    out = prediction_frame(demo, ch, noise, seed)
    if ch.positive is not None:
        out[ch.prediction] = out[ch.prediction].round(6)
    elif ch.scorer.input == "value":
        out[ch.prediction] = out[ch.prediction].round(3)
    buf = io.StringIO()
    out.to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")


@dataclass
class FaultHub:
    hub: RunningHub
    settings_env: dict[str, str]
    org: str
    store: store_mod.Store
    demo: Paths
    contest: contest.Contest
    database: str | None  # the PostgreSQL database, or None on SQLite
    tmpfs: Tmpfs | None
    tmpfs_problem: str | None
    damaged: set[str] = field(default_factory=set)  # digests of files broken on purpose
    leftovers: list[tuple[int, int]] = field(default_factory=list)  # processes of a killed hub

    @property
    def api(self) -> str:
        return f"{self.hub.url}/services/submit/api"

    def service(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.request(method, f"{self.api}/{path}", headers=headers, timeout=kw.pop("timeout", 60), **kw)

    def team(self, label: str) -> tuple[str, str]:
        """A new team with one new contestant, made through the organizer API: (user, token)."""
        user, _, session = self.hub.account()
        token = self.hub.new_token(user, session=session)
        r = self.service(
            "POST", "admin/teams", self.org, json={"name": f"{label}-{uuid.uuid4().hex[:6]}", "members": [user]}
        )
        assert r.status_code == 201, r.text
        return user, token

    def csv(self, ch_id: str, seed: int) -> bytes:
        return _csv(self.demo, self.contest.challenge(ch_id), seed)

    def submit(self, token: str, ch_id: str, data: bytes, **kw) -> requests.Response:
        return self.service("POST", f"challenges/{ch_id}/submissions?file_name=faults.csv", token, data=data, **kw)

    def submit_proc(self) -> tuple[int, int]:
        """The submission service process below the running hub."""
        procs = wait_for(lambda: find_below(self.hub.process.proc.pid, SUBMIT_MARK), 60, "the submission service")
        return procs[0]

    def scorers(self) -> list[tuple[int, int]]:
        """The scorer pool's processes below the hub: the pool, its workers, their scoring children."""
        return find_below(self.hub.process.proc.pid, SCORER_MARK)

    def scorer_workers(self) -> list[tuple[int, int]]:
        """The pool's workers (not their scoring children, which are forked from them)."""
        workers = [p for p in self.scorers() if "hub.scorer worker" in cmdline(p[0])]
        return [p for p in workers if "hub.scorer worker" not in cmdline(parent_of(p[0]))]

    def wait_service(self, old: tuple[int, int] | None = None, timeout: float = 120) -> tuple[int, int]:
        """Wait until a submission service other than ``old`` runs below the hub and answers
        through the proxy; its (pid, start time)."""

        def answering():
            procs = [p for p in find_below(self.hub.process.proc.pid, SUBMIT_MARK) if p != old]
            if not procs:
                return None
            try:
                ok = requests.get(f"{self.api}/health", timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            return procs[0] if ok else None

        return wait_for(answering, timeout, "the submission service to answer again", every=0.5)

    def quota_used(self, token: str, ch_id: str) -> int:
        r = self.service("GET", "me", token)
        assert r.status_code == 200, r.text
        return next(q for q in r.json()["quotas"] if q["challenge"] == ch_id)["used"]

    def wait_done(self, token: str, ids: list[int], timeout: float = 120) -> list[dict]:
        """The submissions once none of them is pending any more."""

        def done():
            docs = [self.service("GET", f"submissions/{i}", token).json() for i in ids]
            return docs if all(d["status"] not in PENDING for d in docs) else None

        return wait_for(done, timeout, f"submissions {ids} to be scored", every=0.5)

    def statuses(self, ids: list[int]) -> dict[int, str]:
        with self.store.session() as s:
            return dict(s.execute(select(Submission.id, Submission.status).where(Submission.id.in_(ids))).all())

    def assert_sound(self, timeout: float = 90) -> None:
        """The store's invariants hold (waiting for scoring in progress to end)."""
        deadline = time.monotonic() + timeout
        while (problems := store_problems(self.store, damaged=self.damaged)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not problems, problems


def parent_of(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(text[text.rindex(")") + 2 :].split()[1])


def _pg_database() -> tuple[str, str] | None:
    """A new PostgreSQL database: (its name, its URL), or None when no server answers."""
    import psycopg

    try:
        con = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        return None
    name = f"contesthub_faults_{uuid.uuid4().hex[:10]}"
    with con:
        con.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


@pytest.fixture(scope="module")
def fh(demo, demo_contest, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    settings = hub_settings(root, demo.data_root)
    if "submit" not in (settings.service_names or ()):
        pytest.skip("the submission service does not import (see the output)")
    settings.private_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    (settings.private_root / "solutions").symlink_to(demo.private_root / "solutions")
    # The upload disk: the store's whole file area (uploads arrive in submissions/incoming and
    # are renamed into submissions/ab/..., so both must be on the same file system).
    tmpfs = Tmpfs(settings.private_root / "submissions")
    pg, hub, faults = None, None, None
    try:
        tmpfs_problem = tmpfs.mount()
        pg = _pg_database()
        # One scorer worker: a burst of submissions queues up. The loops below upload faster
        # than a person: the contest's per-team upload limits are lifted.
        env = {
            "CONTESTHUB_SCORERS": "1",
            "CONTESTHUB_CONTEST": str(contest_file(root / "config", **SUITE_LIMITS)),
        }
        if pg:
            env["CONTESTHUB_DB_URL"] = pg[1]
        url = pg[1] if pg else f"sqlite:///{settings.private_root / 'contest.sqlite'}"
        password = prepare_organizer(settings.db_url, settings.organizer)
        process = HubProcess(settings, extra_env=env, log=root / "jupyterhub.log")
        hub = RunningHub(settings, process, settings.organizer, password)
        process.start().wait_ready(240)
        faults = FaultHub(
            hub=hub,
            settings_env=env,
            org=hub.new_token(hub.organizer, session=hub.organizer_session()),
            store=store_mod.connect(
                Paths(demo.data_root, settings.private_root, PROJECT_ROOT / "datasets"),
                url,
                migrate=False,
                readonly=True,
            ),
            demo=demo,
            contest=demo_contest,
            database=pg[0] if pg else None,
            tmpfs=tmpfs if tmpfs.mounted else None,
            tmpfs_problem=tmpfs_problem,
        )
        yield faults
    finally:
        if hub is not None:
            hub.process.stop()
            with contextlib.suppress(OSError):  # the hub's and the services' output, for a failed run
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / "jupyterhub.log", ARTIFACTS / "faults-jupyterhub.log")
        if faults is not None:
            faults.store.dispose()
            for p in faults.leftovers:  # what a killed hub left running
                kill(p)
        tmpfs.unmount()
        if pg:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as con:
                con.execute(f'DROP DATABASE IF EXISTS "{pg[0]}" WITH (FORCE)')


# --- 1 and 2. the service killed mid-upload and mid-scoring --------------------------------------


@dataclass
class Crash:
    """One SIGKILL of the submission service, with an upload half sent and scoring queued."""

    uploader: str  # the token of the contestant whose upload was cut
    upload: bytes
    answer: tuple[int | None, bytes | str]  # what the slow client got
    partial: int  # bytes of the upload in the incoming folder when the service died
    left: list[str]  # the upload area right after the kill
    scorer: str  # the token of the team whose burst was queued
    ids: list[int]  # the burst's submissions (each answered 202)
    at_kill: dict[int, str]  # their statuses when the service died
    old: tuple[int, int]  # the killed service
    new: tuple[int, int]  # the one the hub started instead
    restart: float  # seconds from the kill until the new service answered


@pytest.fixture(scope="module")
def crash(fh) -> Crash:
    """A slow client sends a large valid file in chunks; half-way, another team submits a
    burst of three files (one scorer worker: they queue), and once the first is being scored
    the service and every process of the scorer pool (the pool, its worker, the worker's
    scoring child) are SIGKILLed at once, as a machine's crash would. JupyterHub notices on its
    next poll of its managed services (every 30 s) and starts both again; the test only waits."""
    _, uploader = fh.team("upload-kill")
    _, scorer = fh.team("score-kill")
    upload = fh.csv(EMERGENCY, seed=1)
    burst = [fh.csv(EMERGENCY, seed=s) for s in (11, 12, 13)]
    incoming = fh.store.files.incoming
    old = fh.submit_proc()
    seen: dict = {}

    def at_half() -> None:
        def partial():
            sizes = []
            for p in incoming.glob("upload-*"):
                with contextlib.suppress(FileNotFoundError):
                    sizes.append(p.stat().st_size)
            return [n for n in sizes if n > 0]

        seen["partial"] = wait_for(partial, 15, "the upload to arrive in the incoming folder")[0]
        seen["ids"] = []
        for data in burst:
            r = fh.submit(scorer, EMERGENCY, data)
            assert r.status_code == 202, r.text
            seen["ids"].append(r.json()["id"])
        wait_for(lambda: "validating" in fh.statuses(seen["ids"]).values(), 15, "a scorer to claim the burst")
        pool = fh.scorers()
        for proc in [old, *pool]:
            kill(proc)
        seen["killed"], seen["pool"] = time.monotonic(), pool

    url = f"{fh.api}/challenges/{EMERGENCY}/submissions?file_name=slow.csv"
    answer = slow_upload(url, uploader, upload, at_half=at_half)
    wait_for(lambda: not alive(old), 10, "the killed service to be gone")
    left = [p.name for p in incoming.iterdir()]
    at_kill = fh.statuses(seen["ids"])
    new = fh.wait_service(old)
    restart = time.monotonic() - seen["killed"]
    print(f"\nservice kill: the hub started it again and it answered {restart:.1f} s later; at the kill: {at_kill}")
    assert not [p for p in seen["pool"] if alive(p)]
    return Crash(uploader, upload, answer, seen["partial"], left, scorer, seen["ids"], at_kill, old, new, restart)


def test_killing_the_service_mid_upload_leaves_no_partial_file_and_charges_nothing(fh, crash):
    assert crash.answer[0] != 202, crash.answer
    assert 0 < crash.partial < len(crash.upload)
    assert crash.left, "the crash should have left the partial upload behind (the service had no chance to clean)"
    incoming = fh.store.files.incoming
    wait_for(lambda: not list(incoming.iterdir()), 30, "the restarted service to sweep the partial upload")
    assert fh.service("GET", "submissions", crash.uploader).json() == []  # nothing was recorded
    assert fh.quota_used(crash.uploader, EMERGENCY) == 0

    r = fh.submit(crash.uploader, EMERGENCY, crash.upload)  # the service answers again and takes the file
    assert r.status_code == 202, r.text
    (doc,) = fh.wait_done(crash.uploader, [r.json()["id"]])
    assert doc["status"] == "scored" and fh.quota_used(crash.uploader, EMERGENCY) == 1
    assert fh.submit_proc() == crash.new
    fh.assert_sound()


def test_killing_the_service_and_the_scorers_mid_scoring_leaves_nothing_pending(fh, crash):
    interrupted = [i for i in crash.ids if crash.at_kill[i] in PENDING]
    assert "validating" in crash.at_kill.values(), f"no scorer was at work when it was killed ({crash.at_kill})"
    docs = fh.wait_done(crash.scorer, crash.ids)
    assert [d["status"] for d in docs] == ["scored"] * 3  # their files are whole: all recovered
    assert fh.quota_used(crash.scorer, EMERGENCY) == sum(d["charged"] for d in docs) == 3
    with fh.store.session() as s:
        for i in interrupted:  # scored once, by the restarted pool
            row = s.get(Submission, i)
            assert len(row.scores) == 1 and row.attempts == (2 if crash.at_kill[i] == "validating" else 1), i
    assert fh.scorer_workers(), "the hub did not start the scorer pool again"
    fh.assert_sound()


def test_killing_a_scorer_worker_mid_score_loses_nothing(fh):
    """One worker SIGKILLed while it scores (its scoring child dies with it): the pool starts
    another at once, which sees the dead worker's claim and puts the submission back in the
    queue; it is scored once, with its quota unit, and the audit log says what happened."""
    _user, token = fh.team("scorer-kill")
    team = fh.service("GET", "me", token).json()["team"]["name"]
    grant = {"challenge": EMERGENCY, "extra": 10, "reason": "fault suite"}
    assert fh.service("POST", f"admin/teams/{team}/grants", fh.org, json=grant).status_code == 201
    ids = []
    for seed in range(41, 49):  # a queue: the worker is busy for a while, always holding a claim
        r = fh.submit(token, EMERGENCY, fh.csv(EMERGENCY, seed=seed))
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    (worker,) = wait_for(fh.scorer_workers, 60, "the scorer worker")
    wait_for(lambda: "validating" in fh.statuses(ids).values(), 30, "the worker to claim one", every=0.02)
    kill(worker)
    wait_for(lambda: not alive(worker), 10, "the worker to die")
    (again,) = wait_for(lambda: [p for p in fh.scorer_workers() if p != worker] or None, 30, "a new worker")
    docs = fh.wait_done(token, ids)
    assert [d["status"] for d in docs] == ["scored"] * len(ids) and fh.quota_used(token, EMERGENCY) == len(ids)
    with fh.store.session() as s:
        rows = [s.get(Submission, i) for i in ids]
        assert all(len(r.scores) == 1 for r in rows)
        (interrupted,) = [r for r in rows if r.attempts == 2]  # the one it was scoring, and only that one
        assert interrupted.claimed_by.endswith(f":{again[0]}")
        actions = s.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.subject == f"{EMERGENCY}#{interrupted.id}")
            .order_by(AuditEntry.seq)
        ).all()
    assert actions == ["submission.receive", "submission.requeue", "submission.scored"]
    fh.assert_sound()


# --- 3. PostgreSQL restarted during submissions -------------------------------------------------


def test_a_postgres_restart_during_submissions_loses_nothing(fh):
    if fh.database is None:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432: the module's store is SQLite")
    _user, token = fh.team("pg-restart")
    team = fh.service("GET", "me", token).json()["team"]["name"]
    grant = {"challenge": FORECAST, "extra": 200, "reason": "fault suite"}
    assert fh.service("POST", f"admin/teams/{team}/grants", fh.org, json=grant).status_code == 201
    files = [fh.csv(FORECAST, seed=100 + i) for i in range(8)]
    pid = fh.submit_proc()
    results: list[dict] = []
    stop = threading.Event()

    def client() -> None:  # a contestant submitting again and again, a tenth of a second apart
        for i in range(150):
            if stop.is_set():
                return
            t = time.monotonic()
            try:
                r = fh.submit(token, FORECAST, files[i % len(files)], timeout=60)
                answer = {"status": r.status_code, "type": r.headers.get("Content-Type", ""), "text": r.text}
            except requests.RequestException as exc:  # recorded; the test fails on it below
                answer = {"status": None, "type": "", "text": repr(exc)}
            results.append({"t": t, "s": time.monotonic() - t, **answer})
            time.sleep(0.1)

    def accepted_after(moment: float) -> int:
        return sum(x["status"] == 202 and x["t"] > moment for x in results)

    worker = threading.Thread(target=client, name="submitter")
    worker.start()
    try:
        wait_for(lambda: accepted_after(0) >= 3, 60, "three submissions before the fault")
        t_fault = time.monotonic()
        kind = postgres_fault(PG_ADMIN, fh.database)
        t_back = time.monotonic()
        wait_for(lambda: accepted_after(t_back) >= 3 or not worker.is_alive(), 120, "three submissions afterwards")
    finally:
        stop.set()
        worker.join(180)
    refused = [x for x in results if x["status"] != 202]
    print(
        f"\nPostgreSQL fault: {kind}, {t_back - t_fault:.1f} s; {len(results)} requests, {len(refused)} refused "
        f"{sorted({(x['status'], x['text'][:60]) for x in refused})[:3]}; slowest answer "
        f"{max(x['s'] for x in results):.2f} s"
    )

    for x in results:
        assert x["s"] < 30, f"an answer took {x['s']:.1f} s"  # never a hang
        if x["status"] == 202:
            continue
        assert x["status"] is not None, f"the connection broke: {x['text']}"
        assert x["status"] == 503 and x["type"].startswith("application/json"), x  # never a traceback page
        doc = json.loads(x["text"])
        assert doc["code"] == "store-unavailable" and doc["message_en"] and doc["message_zh"], doc
    assert accepted_after(t_back) >= 3
    accepted = [json.loads(x["text"])["id"] for x in results if x["status"] == 202]
    docs = fh.wait_done(token, accepted)
    assert [d["status"] for d in docs] == ["scored"] * len(accepted), [
        (d["id"], d["status"], d["errors"]) for d in docs
    ]
    mine = fh.service("GET", f"submissions?challenge={FORECAST}", token).json()
    assert sorted(d["id"] for d in mine) == sorted(accepted)  # nothing refused was recorded
    assert fh.quota_used(token, FORECAST) == len(accepted)
    assert fh.submit_proc() == pid, "the service was restarted: it should have recovered by itself"
    fh.assert_sound()


def test_a_scorer_whose_database_went_away_keeps_its_result_and_records_it_when_it_is_back(
    store, demo, demo_contest, predictions, submit, monkeypatch
):
    """The scorer's side of a database outage, made deterministic: the connection breaks when
    the worker records a result, twice; the worker holds on to the result and records it once
    the database answers (its claim held meanwhile). A bug (not an outage) is not retried."""
    from sqlalchemy.exc import OperationalError

    with store.session() as s:
        teams.create(s, demo_contest, "alpha", actor="organizer", members=("ann",), now=NOW)
    sub = submit(store, "ann", FORECAST, predictions(FORECAST, noise=0.1))
    real, calls = submissions.finish_and_claim, []  # a worker records a result with its next claim

    def flaky(*a, **kw):
        calls.append(a[2])
        if len(calls) <= 2:
            raise OperationalError("UPDATE submissions ...", {}, Exception("server closed the connection unexpectedly"))
        return real(*a, **kw)  # the database is back

    monkeypatch.setattr(scorer, "OUTAGE_PAUSES", (0.01,))
    monkeypatch.setattr(submissions, "finish_and_claim", flaky)
    worker = scorer.Worker(store, demo_contest, demo, scorer.Limits())
    assert worker.drain() == 1
    assert calls == [sub.id] * 3
    with store.session() as s:
        row = s.get(Submission, sub.id)
        assert row.status == "scored" and row.charged and len(row.scores) == 1 and row.attempts == 1

    def bug(*_a, **_kw):
        raise ZeroDivisionError

    monkeypatch.setattr(submissions, "finish_and_claim", bug)
    again = submit(store, "ann", FORECAST, predictions(FORECAST, noise=0.2))
    with pytest.raises(ZeroDivisionError):  # the worker process dies; the pool starts another
        worker.drain()
    monkeypatch.undo()
    assert submissions.reap(store, lambda who: who == worker.name) == [again.id]  # its claim comes back
    assert scorer.Worker(store, demo_contest, demo, scorer.Limits()).drain() == 1
    assert not store_problems(store)


# --- 4. the upload disk is full -----------------------------------------------------------------


def test_a_full_upload_disk_is_refused_clearly_and_uploads_work_again_with_space(fh):
    if fh.tmpfs is None:
        pytest.skip(f"the hub-level disk-full case needs a tmpfs ({fh.tmpfs_problem}); the store-level case runs")
    _user, token = fh.team("disk-full")
    data = fh.csv(EMERGENCY, seed=21)
    pid = fh.submit_proc()
    fh.tmpfs.resize(fh.tmpfs.used() + (128 << 10))  # 128 KiB left for a 750 KB upload
    try:
        r = fh.submit(token, EMERGENCY, data)
        left = list(fh.store.files.incoming.iterdir())
    finally:
        fh.tmpfs.resize(fh.tmpfs.size)
    assert r.status_code == 507, (r.status_code, r.text[:500])
    doc = r.json()
    assert doc["code"] == "storage-failed", doc
    assert "quota" in doc["message_en"] and "不计入" in doc["message_zh"], doc
    assert not left, left
    assert fh.service("GET", "submissions", token).json() == []
    assert fh.quota_used(token, EMERGENCY) == 0
    assert alive(pid) and fh.service("GET", "health").status_code == 200

    r = fh.submit(token, EMERGENCY, data)  # space is back
    assert r.status_code == 202, r.text
    (doc,) = fh.wait_done(token, [r.json()["id"]])
    assert doc["status"] == "scored" and fh.quota_used(token, EMERGENCY) == 1
    assert fh.submit_proc() == pid
    fh.assert_sound()


class _FullDisk:
    """A file object that takes ``room`` bytes and then fails as a full disk does."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, b: bytes) -> int:
        if len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b)
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_full_disk_at_the_store_level_costs_nothing_and_leaves_no_file(
    store, demo, demo_contest, predictions, monkeypatch
):
    """ENOSPC injected into a real Store (both databases): while receiving, and while keeping."""
    with store.session() as s:
        teams.create(s, demo_contest, "alpha", actor="organizer", members=("ann",), now=NOW)
    path = predictions(EMERGENCY, noise=0.2)
    real_fdopen = os.fdopen
    monkeypatch.setattr(store_mod.os, "fdopen", lambda fd, *a, **kw: _FullDisk(real_fdopen(fd, *a, **kw), 64 << 10))
    with open(path, "rb") as f, pytest.raises(store_mod.StorageFailed) as refused:
        store.files.receive(f, demo_contest.upload_limit)
    assert refused.value.code == "storage-failed" and "不计入" in refused.value.zh
    assert not list(store.files.incoming.iterdir())
    monkeypatch.undo()

    with open(path, "rb") as f:
        upload = store.files.receive(f, demo_contest.upload_limit)

    def no_room(*_a):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_mod.os, "replace", no_room)
    with pytest.raises(SubmissionRefused) as refused:
        submissions.accept(
            store, demo_contest, user="ann", challenge_id=EMERGENCY, upload=upload, file_name="p.csv", now=NOW
        )
    assert refused.value.code == "storage-failed" and "不计入" in refused.value.zh
    monkeypatch.undo()
    assert not list(store.files.incoming.iterdir())
    with store.session() as s:  # the file is kept inside the acceptance's transaction: nothing was recorded
        assert s.scalars(select(Submission)).all() == []
        assert sum(q.used for q in s.scalars(select(Quota))) == 0
        assert audit.verify(s).ok
    with open(path, "rb") as f:  # space is back
        upload = store.files.receive(f, demo_contest.upload_limit)
    sub = submissions.accept(
        store, demo_contest, user="ann", challenge_id=EMERGENCY, upload=upload, file_name="p.csv", now=NOW
    )
    assert submissions.score(store, demo_contest, demo, sub.id).status == "scored"
    assert not store_problems(store)


# --- 5. a stored file corrupted -----------------------------------------------------------------


def _flip_digits(path: Path, every: int = 20) -> None:
    """Flip the first decimal of the last column on every ``every``-th line: the file still
    parses (only its checksum gives it away) and scores differently."""
    path.chmod(0o600)
    lines = path.read_bytes().split(b"\n")
    for i in range(1, len(lines), every):
        dot = lines[i].rfind(b".")
        if dot > 0 and lines[i][dot + 1 : dot + 2].isdigit():
            digit = str((int(lines[i][dot + 1 : dot + 2]) + 5) % 10).encode()
            lines[i] = lines[i][: dot + 1] + digit + lines[i][dot + 2 :]
    path.write_bytes(b"\n".join(lines))
    path.chmod(0o400)


def _scored_then_corrupted(fh: FaultHub, token: str, seed: int) -> dict:
    r = fh.submit(token, EMERGENCY, fh.csv(EMERGENCY, seed=seed))
    assert r.status_code == 202, r.text
    (doc,) = fh.wait_done(token, [r.json()["id"]])
    assert doc["status"] == "scored"
    _flip_digits(fh.store.files.path(doc["sha256"]))
    fh.damaged.add(doc["sha256"])
    return doc


def test_a_corrupted_stored_file_is_found_by_its_checksum(fh):
    _user, token = fh.team("corrupt")
    doc = _scored_then_corrupted(fh, token, seed=31)
    assert not fh.store.files.verify(doc["sha256"])
    check = submissions.verify_files(fh.store)
    assert not check.ok
    assert {"sha256": doc["sha256"], "problem": "damaged", "submissions": [doc["id"]]} in check.problems
    assert {p["sha256"] for p in check.problems} == fh.damaged
    assert check.checked >= 5 and json.dumps(check.to_dict())
    fh.assert_sound()


def test_a_rescore_does_not_score_a_corrupted_file(fh):
    _user, token = fh.team("corrupt-rescore")
    doc = _scored_then_corrupted(fh, token, seed=32)
    r = fh.service(
        "POST", f"admin/challenges/{EMERGENCY}/rescores", fh.org, json={"reason": "fault suite: damaged file"}
    )
    assert r.status_code == 201, r.text
    run = r.json()["rescore"]
    try:
        with fh.store.session() as s:
            garbage = s.scalars(select(Score).where(Score.rescore_id == run, Score.submission_id == doc["id"])).all()
            row = s.get(Submission, doc["id"])
            assert not garbage, f"the damaged file was scored again: {[g.public_score for g in garbage]}"
            assert row.status == "error" and not row.charged
    finally:
        fh.service("POST", f"admin/rescores/{run}", fh.org, json={"publish": False})


def test_a_scorer_errors_and_refunds_a_pending_submission_whose_file_was_corrupted(
    store, demo, demo_contest, predictions, submit
):
    with store.session() as s:
        teams.create(s, demo_contest, "alpha", actor="organizer", members=("ann",), now=NOW)
    good = submit(store, "ann", FORECAST, predictions(FORECAST, noise=0.1, seed=1))
    bad = submit(store, "ann", FORECAST, predictions(FORECAST, noise=0.1, seed=2))
    _flip_digits(store.files.path(bad.sha256))  # while both waited for a scorer
    check = submissions.verify_files(store)
    assert check.problems == [{"sha256": bad.sha256, "problem": "damaged", "submissions": [bad.id]}]
    assert scorer.Worker(store, demo_contest, demo, scorer.Limits()).drain() == 2
    with store.session() as s:
        g, b = s.get(Submission, good.id), s.get(Submission, bad.id)
        assert g.status == "scored" and g.charged
        assert b.status == "error" and not b.charged and b.errors[0]["code"] == "file-lost" and not b.scores
        assert s.scalars(select(Quota)).one().used == 1
    assert not store_problems(store, damaged={bad.sha256})


# --- 6. the hub killed --------------------------------------------------------------------------


def test_killing_the_hub_keeps_the_contestants_server_and_a_restart_brings_everything_back(fh):
    user, token = fh.team("hub-kill")
    fh.hub.spawn(user, token)
    hub = fh.hub.process
    (server,) = find_below(hub.proc.pid, "jupyterhub.singleuser")
    before = [p for p in hub.refresh() if alive(p)]
    old_submit = fh.submit_proc()
    kept = {server, *descendants(server[0])}  # the contestant's server and whatever runs below it
    # Every managed service; not the proxy (it keeps routing until the next hub replaces it).
    marks = [{"submit": SUBMIT_MARK, "leaderboard": "streamlit"}[name] for name in fh.hub.services]
    marks += [SCORER_MARK, "jupyterhub_idle_culler"]  # the scorer pool runs with the submission service
    services = [p for p in before if any(m in cmdline(p[0]) for m in marks)]
    found = {m for m in marks if any(m in cmdline(p[0]) for p in services)}
    assert old_submit in services and found == set(marks), [cmdline(p[0]) for p in before]

    hub.proc.send_signal(signal.SIGKILL)
    hub.proc.wait()
    if hub._log_file:  # what stop() would close; its other work (ending what the hub started) is not wanted
        hub._log_file.close()
        hub._log_file = None
    fh.leftovers[:] = [p for p in before if p not in kept]  # ended at the module's end, whatever happens
    wait_for(  # else they would hold their ports and the next hub could not start its own
        lambda: not [p for p in services if alive(p)], 15, "every managed service to end with its hub"
    )
    time.sleep(1)
    assert alive(server), "the contestant's server died with the hub"

    started = time.monotonic()
    again = HubProcess(fh.hub.settings, extra_env=fh.settings_env, log=hub.log_path).start()
    fh.hub.process = again
    again.wait_ready(120)
    print(f"\nhub kill: the hub started again answered in {time.monotonic() - started:.1f} s")
    model = fh.hub.api("GET", f"/users/{user}", token=token).json()
    assert model["servers"][""]["ready"], model
    out = kernel_run(fh.hub, user, token, "print(6 * 7)")
    assert out["error"] is None and out["stdout"].strip() == "42", out
    assert alive(server), "the server was started anew instead of being kept"

    new_submit = fh.wait_service(old_submit)
    time.sleep(3)
    assert alive(new_submit), "the new hub's submission service is not staying up"
    assert fh.service("GET", "me", token).status_code == 200
    if "leaderboard" in fh.hub.services:  # the new hub's own leaderboard answers
        assert find_below(again.proc.pid, "streamlit"), "the new hub has no leaderboard"
        board = f"{fh.hub.url}/services/leaderboard/_stcore/health"
        wait_for(lambda: requests.get(board, timeout=5).status_code == 200, 60, "the leaderboard to answer")
    fh.assert_sound()


def test_nothing_of_a_killed_hub_outlives_it(fh):
    if not fh.leftovers:
        pytest.skip("the hub-kill case did not run")
    alive_left = [(p, Path(f"/proc/{p[0]}/cmdline").read_bytes()[:80]) for p in fh.leftovers if alive(p)]
    assert not alive_left, alive_left
