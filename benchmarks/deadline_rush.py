"""Benchmark (issue 7, suite 2 "Load"): the deadline rush against one hub.

``streams`` contestants (default 200, two per team) submit predictions for
``outpatient_forecast`` through the hub's proxy to the submission service, each with their own
JupyterHub token, for ``seconds`` (default 60), all at once. Each stream does what
``sandbox.submit`` / ``contesthub submit`` does: upload the file, then ask for the submission
until it is scored (a long poll, ``?wait=30``: the service answers when it is finished; with
``--poll-every 0.5`` the streams ask every half second instead, as clients before it did),
then upload the next one. One upload in 20 is a broken file
(a wrong column: ``invalid``, the quota unit is given back). Most teams get a large grant from
the organizer (the grant endpoint), so the rush is limited by the platform, not by quotas;
``limited`` teams (default 10) keep the daily quota plus a grant of 1 (6 submissions) and
their members are impatient (they upload again 0.2 s after each answer without waiting for
the score, and retry every second after a refusal; on a slow machine they go on past the end
until their team was refused once): their quota runs out during the rush, which checks that
quotas are exact under concurrency.

The hub runs the demo contest with its per-team upload limits lifted (``_hub.LOAD_LIMITS``):
the rush is limited by the platform, not by the rules that keep one team from costing it
too much. Scoring is done by the scorer pool (hub/scorer.py, ``--scorers`` worker processes),
outside the submission service.

During the rush a sampler times, every second, the Streamlit leaderboard's health endpoint
and page (``/services/leaderboard/_stcore/health`` and ``/services/leaderboard/``), the
service's leaderboard JSON (``api/challenges/<ch>/leaderboard``) and the hub's REST API
(``GET /hub/api/user``). After the rush it waits until no submission is pending, then reads
the contest store (``leaderboard.store.connect`` on the hub's private root, read-only) and
checks:

* nothing lost: every upload answered 202 is in the store, for the uploader's team, with the
  sha256 of the bytes sent, its file present and verifying, and a final status (``scored``
  for a valid file with an active score row, ``invalid`` for a broken one); no submission of
  the rush's teams exists that no client was told about; no upload is left in ``incoming``;
* every refusal is a quota refusal (429 ``quota-exceeded``) of a limited team whose quota was
  full: at the end its ``used`` equals its ``allowed`` and the number of its charged
  submissions; no team with a grant was refused;
* quotas are exact: for every team and day, ``used`` equals the submissions still charged and
  never exceeds ``daily quota + granted``; invalid submissions were refunded;
* the audit log verifies, with one ``submission.receive`` and one final entry per submission;
* no error response at any step (every status other than 202/429 on upload and 200 on reads
  is counted as an error, by step).

Figures: accepted, refused (by reason), errors, throughput (accepted and scored per second),
p50/p95/p99 of the upload latency (upload start to 202) and of upload start to score visible
(what a contestant waits), the scoring lag in the store (received to finished), the time to
drain the queue after the rush, and the leaderboard's latency during the rush. The load
generator (asyncio + tornado's AsyncHTTPClient, a dependency of JupyterHub) runs on the same
machine and takes CPU from the platform: the figures are a lower bound of what the platform
does on its own two cores.

Then, with the hub stopped, the scorers' scaling (:func:`scaling`): ``--scaling-files`` valid
``emergency_visit`` files (28,807 rows each) wait in a fresh store, and the pool is started on
them with 1 worker process, then with 2, alternately (``--scaling-rounds`` times each): scored
per second from the first to the last finished submission, medians, and the ratio. CPU-bound
scoring only: no uploads, no polls.

    python3 dev.py bench deadline_rush [--streams 200] [--seconds 60] [--limited 10]
                                       [--scorers 2] [--keep] [--scaling-rounds 3] [--scaling-files 60]
                                       (teams: two streams each; --scaling-rounds 0 skips the scaling)

Notes: quotas are per contest day (midnight in Asia/Shanghai); a run across that midnight
starts new quotas mid-rush (the checks still hold per day, but the grants are for the first).
tests/test_load.py runs the same scenario (a small one always, the full one with --run-slow).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _hub
import _measure

from sandbox import clock, statuses
from sandbox.descriptor import test_table_name
from sandbox.settings import PROJECT_ROOT, Paths

FINAL = statuses.FINISHED
PENDING = statuses.PENDING


@dataclass
class RushConfig:
    streams: int = 200  # concurrent contestants submitting
    seconds: float = 60  # how long new uploads start
    team_size: int = 2
    limited: int = 10  # teams whose quota runs out during the rush
    limited_grant: int = 1  # their grant on top of the daily quota
    impatient_pause: float = 0.2  # limited teams' members upload again this soon, without waiting for scores
    grant: int = 100_000  # the other teams' grant: the platform limits them, not the quota
    invalid_share: float = 0.05  # broken files among the patient streams' uploads
    poll: float = 0.0  # 0: long polls as sandbox.submit (?wait=30); else seconds between plain polls
    retry: float = 1.0  # pause after a refusal or an error
    sample_every: float = 1.0  # leaderboard sampler period
    request_timeout: float = 300
    wait_for_score: float = 900  # a stream gives up waiting for one score after this
    seed: int = 7

    @property
    def teams(self) -> int:
        return -(-self.streams // self.team_size)


@dataclass
class Upload:
    user: str
    team: str
    limited: bool
    kind: str  # valid | broken
    sha256: str
    size: int
    started: float  # wall clock (time.time())
    status: int | None = None
    code: str | None = None
    latency: float | None = None  # upload start -> response
    id: int | None = None
    visible: float | None = None  # upload start -> final status seen by the client
    final: str | None = None


@dataclass
class Contestant:
    user: str
    token: str
    team: str
    limited: bool


@dataclass
class Rush:
    """What one rush did, as the clients saw it."""

    config: RushConfig
    challenge: str
    tag: str
    contestants: list[Contestant]
    teams: dict[str, bool]  # team -> limited
    uploads: list[Upload] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # "step status" -> count
    polls: int = 0
    samples: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)  # name -> (t, s, status)
    started: float = 0.0
    ended: float = 0.0  # wall clock: the last moment a new upload could start
    streams_done: float = 0.0  # wall clock: every stream saw its last submission's result
    drained: float = 0.0  # wall clock: the service reported nothing pending
    setup_seconds: float = 0.0
    cpu: dict = field(default_factory=dict)  # who used the CPU during the rush (_hub.CpuWatch)


# --- set-up: users, tokens, teams, grants (not timed) --------------------------------------


def prepare(hub: _hub.Hub, cfg: RushConfig, challenge: str = _hub.CHALLENGE) -> Rush:
    """``cfg.streams`` hub users with a token each, in teams of ``cfg.team_size``, with grants."""
    started = time.monotonic()
    tag = "r" + secrets.token_hex(3)  # a fresh prefix: several rushes can share one hub
    names = [f"{tag}u{i:03d}" for i in range(cfg.streams)]
    hub.make_users(names)
    org = hub.organizer_token()
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda n: hub.new_token(n, token=org, note="deadline rush"), names))
    teams: dict[str, bool] = {}
    contestants = []
    for t in range(cfg.teams):
        team = f"{tag}-t{t:03d}"
        members = names[t * cfg.team_size : (t + 1) * cfg.team_size]
        limited = t < cfg.limited
        hub.make_team(team, members)
        if limited:
            if cfg.limited_grant:
                hub.grant(team, cfg.limited_grant, "load test: a small grant", challenge)
        else:
            hub.grant(team, cfg.grant, "load test: the rush is limited by the platform, not the quota", challenge)
        teams[team] = limited
        for m in members:
            contestants.append(Contestant(m, tokens[names.index(m)], team, limited))
    rush = Rush(cfg, challenge, tag, contestants, teams)
    rush.setup_seconds = time.monotonic() - started
    return rush


# --- the rush ------------------------------------------------------------------------------


async def _run(hub: _hub.Hub, rush: Rush, files: _hub.Predictions) -> None:
    from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

    cfg = rush.config
    client = AsyncHTTPClient(force_instance=True, max_clients=4 * cfg.streams + 50, max_body_size=1 << 26)
    base = f"{hub.url}/services/submit/api"
    rng = random.Random(cfg.seed)
    org = hub.organizer_token()
    sampler_token = rush.contestants[-1].token

    async def fetch(step: str, url: str, token: str | None, method: str = "GET", body: bytes | None = None):
        """(status, parsed JSON or None, seconds); status 0 for no answer (counted as an error)."""
        headers = {"Authorization": f"token {token}"} if token else {}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        req = HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=body,
            request_timeout=cfg.request_timeout,
            connect_timeout=60,
            follow_redirects=False,
            decompress_response=True,
        )
        t0 = time.perf_counter()
        try:
            resp = await client.fetch(req, raise_error=False)
        except HTTPClientError as exc:  # raise_error=False still raises for timeouts (599)
            rush.errors[f"{step} {exc.code}"] += 1
            return 0, None, time.perf_counter() - t0
        except Exception as exc:
            rush.errors[f"{step} {type(exc).__name__}"] += 1
            return 0, None, time.perf_counter() - t0
        seconds = time.perf_counter() - t0
        doc = None
        if resp.body and "json" in (resp.headers.get("Content-Type") or ""):
            try:
                doc = json.loads(resp.body)
            except ValueError:
                doc = None
        return resp.code, doc, seconds

    end = time.monotonic() + cfg.seconds
    refused = dict.fromkeys(rush.teams, False)

    async def stream(c: Contestant, delay: float) -> None:
        await asyncio.sleep(delay)
        query = urlencode({"file_name": "predictions.csv", "client": "deadline_rush"})
        # An impatient member of a team with a small quota goes on until the team is refused
        # (on a slow machine that can be a little after the end; never more than a minute).
        while time.monotonic() < end or (c.limited and not refused[c.team] and time.monotonic() < end + 60):
            broken = not c.limited and rng.random() < cfg.invalid_share
            body = files.broken() if broken else files.valid()
            up = Upload(
                c.user,
                c.team,
                c.limited,
                "broken" if broken else "valid",
                hashlib.sha256(body).hexdigest(),
                len(body),
                time.time(),
            )
            rush.uploads.append(up)
            status, doc, up.latency = await fetch(
                "upload", f"{base}/challenges/{rush.challenge}/submissions?{query}", c.token, "POST", body
            )
            up.status, up.code = status, (doc or {}).get("code")
            if status == 202:
                up.id = doc["id"]
                if c.limited:  # impatient: no waiting for the score
                    await asyncio.sleep(cfg.impatient_pause)
                    continue
                t0, state = time.monotonic(), doc["status"]
                wait = "" if cfg.poll else "?wait=30"
                while state in PENDING and time.monotonic() - t0 < cfg.wait_for_score:
                    await asyncio.sleep(cfg.poll)
                    code, doc2, _ = await fetch("poll", f"{base}/submissions/{up.id}{wait}", c.token)
                    rush.polls += 1
                    if code == 200:
                        state = doc2["status"]
                    elif code:
                        rush.errors[f"poll {code}"] += 1
                if state not in PENDING:
                    up.final, up.visible = state, time.time() - up.started
            else:
                if status == 429 and up.code == "quota-exceeded":
                    refused[c.team] = True
                else:
                    rush.errors[f"upload {status} {up.code}"] += 1
                await asyncio.sleep(cfg.retry)

    async def sampler() -> None:
        targets = {
            "leaderboard health (Streamlit)": (f"{hub.url}/services/leaderboard/_stcore/health", None),
            "leaderboard page HTML (Streamlit)": (f"{hub.url}/services/leaderboard/", None),
            "leaderboard JSON (service)": (f"{base}/challenges/{rush.challenge}/leaderboard", org),
            "hub API GET /hub/api/user": (f"{hub.url}/hub/api/user", sampler_token),
        }
        for name in targets:
            rush.samples[name] = []

        async def one(name: str, url: str, token: str | None) -> None:
            at = time.time() - rush.started
            code, _, seconds = await fetch(f"sample[{name}]", url, token)
            rush.samples[name].append((at, seconds, code))
            if code and code != 200:
                rush.errors[f"sample[{name}] {code}"] += 1

        pending = set()
        while time.monotonic() < end:
            for name, (url, token) in targets.items():
                pending.add(asyncio.ensure_future(one(name, url, token)))
            await asyncio.sleep(cfg.sample_every)
        await asyncio.gather(*pending)

    rush.started = time.time()
    rush.ended = rush.started + cfg.seconds
    # Everyone presses "submit" within the first second, not in the same millisecond.
    tasks = [stream(c, i / len(rush.contestants)) for i, c in enumerate(rush.contestants)]
    try:
        await asyncio.gather(sampler(), *tasks)
    finally:
        client.close()
    rush.streams_done = time.time()


def run(hub: _hub.Hub, cfg: RushConfig, files: _hub.Predictions, rush: Rush | None = None) -> Rush:
    """Prepare (unless given), rush, then wait until nothing is pending."""
    rush = rush or prepare(hub, cfg)
    watch = _hub.CpuWatch(hub.process).start()
    asyncio.run(_run(hub, rush, files))
    rush.cpu = watch.stop()
    hub.wait_scored(timeout=cfg.wait_for_score)
    rush.drained = time.time()
    return rush


# --- afterwards: the store -----------------------------------------------------------------


def check(hub: _hub.Hub, rush: Rush) -> dict:
    """Read the store and check the invariants; figures from the store too."""
    from sqlalchemy import func, select

    from leaderboard import audit, contest
    from leaderboard import store as store_mod
    from leaderboard.models import AuditEntry, Quota, Score, Submission, Team

    ch = contest.load().challenge(rush.challenge)
    st = store_mod.connect(hub.store_paths, migrate=False, readonly=True)
    problems: dict[str, list[str]] = defaultdict(list)
    try:
        with st.session() as s:
            team_ids = dict(s.execute(select(Team.name, Team.id).where(Team.name.in_(list(rush.teams)))).all())
            subs = {
                sub.id: sub
                for sub in s.scalars(select(Submission).where(Submission.team_id.in_(list(team_ids.values()))))
            }
            active = {
                sid
                for (sid,) in s.execute(
                    select(Score.submission_id).where(Score.submission_id.in_(list(subs)), Score.active.is_(True))
                )
            }
            quotas = s.scalars(select(Quota).where(Quota.team_id.in_(list(team_ids.values())))).all()
            subjects = {f"{ch.id}#{i}" for i in subs}
            audit_actions = Counter()
            for subject, action in s.execute(
                select(AuditEntry.subject, AuditEntry.action).where(AuditEntry.action.like("submission.%"))
            ):
                if subject in subjects:
                    audit_actions[(subject, action)] += 1
            verification = audit.verify(s)
            status_counts = dict(s.execute(select(Submission.status, func.count()).group_by(Submission.status)).all())
        accepted = [u for u in rush.uploads if u.status == 202]
        by_id = {u.id: u for u in accepted}

        # Nothing lost: every 202 is in the store with its file, for the right team, finished.
        for u in accepted:
            sub = subs.get(u.id)
            if sub is None:
                problems["lost"].append(f"submission {u.id} of {u.user} was accepted but is not in the store")
                continue
            if sub.user != u.user or sub.team_id != team_ids[u.team]:
                problems["wrong team"].append(f"{u.id}: {sub.user}/{sub.team_id}, sent by {u.user}/{u.team}")
            if sub.sha256 != u.sha256 or sub.size != u.size:
                problems["wrong file"].append(f"{u.id}: stored {sub.sha256[:12]} ({sub.size} B), sent {u.sha256[:12]}")
            if not st.files.path(sub.sha256).exists():
                problems["file missing"].append(f"{u.id}: {st.files.path(sub.sha256)}")
            elif not st.files.verify(sub.sha256):
                problems["file damaged"].append(f"{u.id}: {sub.sha256}")
            want = statuses.SCORED if u.kind == "valid" else statuses.INVALID
            if sub.status != want:
                problems["not finished as expected"].append(f"{u.id} ({u.kind}): {sub.status} {sub.errors}")
            if sub.status == statuses.SCORED and sub.id not in active:
                problems["scored without a score"].append(str(sub.id))
            if sub.status == statuses.INVALID and sub.charged:
                problems["invalid but charged"].append(str(sub.id))
            if u.final is not None and u.final != sub.status:
                problems["client saw another status"].append(f"{u.id}: {u.final} vs {sub.status}")
        for sid in subs:
            if sid not in by_id:
                problems["unacknowledged"].append(f"submission {sid} is in the store but no client got a 202 for it")
        left = list(st.files.incoming.iterdir()) if st.files.incoming.exists() else []
        if left:
            problems["uploads left in incoming"].append(f"{len(left)}: {[p.name for p in left[:5]]}")
        pending = [sid for sid, sub in subs.items() if sub.status in PENDING]
        if pending:
            problems["still pending"].append(f"{len(pending)}: {pending[:10]}")

        # Quotas exact: used == charged submissions, never above allowed.
        charged = Counter((sub.team_id, sub.challenge, sub.quota_day) for sub in subs.values() if sub.charged)
        quota_of = {(q.team_id, q.challenge, q.day): q for q in quotas}
        for key in set(charged) | set(quota_of):
            q = quota_of.get(key)
            used, granted = (q.used, q.granted) if q else (0, 0)
            if used != charged[key]:
                problems["quota not exact"].append(f"{key}: used {used}, charged submissions {charged[key]}")
            if used > ch.daily_quota + granted:
                problems["quota exceeded"].append(f"{key}: used {used} > {ch.daily_quota} + {granted}")

        # Refusals: only quota refusals, only for limited teams, whose quota was then full.
        refused = [u for u in rush.uploads if u.status == 429]
        refused_teams = {u.team for u in refused}
        for u in refused:
            if u.code != "quota-exceeded":
                problems["refusal of another kind"].append(f"{u.user}: 429 {u.code}")
        for team in refused_teams:
            if not rush.teams[team]:
                problems["refused despite a grant"].append(team)
                continue
            tid = team_ids[team]
            full = [q for q in quotas if q.team_id == tid and q.challenge == ch.id]
            if not full or any(q.used != ch.daily_quota + q.granted for q in full):
                problems["refused while quota left"].append(
                    f"{team}: {[(q.day, q.used, ch.daily_quota + q.granted) for q in full]}"
                )
        limited_not_refused = [t for t, lim in rush.teams.items() if lim and t not in refused_teams]
        other = [u for u in rush.uploads if u.status not in (202, 429)]
        if other:
            problems["error responses"].append(f"{len(other)}: {Counter((u.status, u.code) for u in other)}")

        # The audit log: intact, one entry for receiving and one for the outcome of each.
        if not verification.ok:
            problems["audit log"].extend(verification.problems[:10])
        for sid, sub in subs.items():
            subject = f"{ch.id}#{sid}"
            if audit_actions[(subject, "submission.receive")] != 1:
                problems["audit entries"].append(f"{subject}: {audit_actions[(subject, 'submission.receive')]} receive")
            if sub.status in FINAL and audit_actions[(subject, f"submission.{sub.status}")] != 1:
                problems["audit entries"].append(f"{subject}: no single submission.{sub.status} entry")

        lags = [
            (sub.finished_at - sub.created_at).total_seconds() for sub in subs.values() if sub.finished_at is not None
        ]
        in_rush = [
            sub
            for sub in subs.values()
            if sub.finished_at is not None and sub.finished_at.timestamp() <= rush.ended and sub.status in FINAL
        ]
        store_figures = {
            "submissions": len(subs),
            "by status": dict(Counter(sub.status for sub in subs.values())),
            "store-wide statuses": status_counts,
            "scoring lag (received to finished)": _hub.summary(lags),
            "finished during the rush": len(in_rush),
            "audit entries": verification.entries,
            "limited teams never refused": limited_not_refused,
        }
    finally:
        st.dispose()
    return {"problems": {k: v for k, v in problems.items() if v}, "store": store_figures}


# --- the scorers' scaling: 1 worker process against 2 -----------------------------------------

SCALING_CHALLENGE = "emergency_visit"


def _emergency_files(data: Paths, n: int, folder: Path, seed: int = 5) -> list[Path]:
    """``n`` valid prediction files for ``emergency_visit`` (every test id, a random probability each)."""
    import duckdb

    test = data.data_root / "hospital_outpatient" / "latest" / f"{test_table_name('visit_records')}.parquet"
    ids = [r[0] for r in duckdb.connect().execute(f"SELECT visit_id FROM read_parquet('{test}') ORDER BY 1").fetchall()]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        path = folder / f"emergency-{i}.csv"
        path.write_text("visit_id,p_emergency\n" + "".join(f"{v},{rng.random():.6f}\n" for v in ids), "utf-8")
        out.append(path)
    return out


def _scored_per_second(data: Paths, files: list[Path], workers: int, folder: Path) -> dict:
    """A fresh store with ``files`` waiting; the pool with ``workers`` processes scores them all."""
    from sqlalchemy import func, select

    from leaderboard import contest as contest_mod
    from leaderboard import store as store_mod
    from leaderboard import submissions, teams
    from leaderboard.models import Submission

    folder.mkdir(parents=True)
    private = folder / "private"
    private.mkdir(mode=0o700)
    (private / "solutions").symlink_to(data.private_root / "solutions")
    paths = Paths(data.data_root, private, data.datasets_dir)
    contest_path = _hub.contest_file(folder, **_hub.LOAD_LIMITS)
    contest = contest_mod.load(contest_path)
    store = store_mod.connect(paths, f"sqlite:///{private / 'contest.sqlite'}")
    now = clock.now()
    ch = contest.challenge(SCALING_CHALLENGE)
    if not ch.opens <= now < ch.closes:  # the demo's dates: keep the scaling runnable whenever it runs
        now = ch.opens + dt.timedelta(days=1)
    try:
        with store.session() as s:
            teams.create(s, contest, "scaling", actor="bench", members=("bench",), now=now)
            day = contest.day(now)
            submissions.grant(s, contest, "scaling", ch.id, len(files), reason="scaling", by="bench", day=day)
        for path in files:
            with open(path, "rb") as f:
                upload = store.files.receive(f, contest.upload_limit)
            submissions.accept(
                store, contest, user="bench", challenge_id=ch.id, upload=upload, file_name=path.name, now=now
            )
        env = {
            **os.environ,
            "CONTESTHUB_DATA_ROOT": str(paths.data_root),
            "CONTESTHUB_PRIVATE_ROOT": str(private),
            "CONTESTHUB_DB_URL": store.url,
            "CONTESTHUB_CONTEST": str(contest_path),
        }
        started = time.monotonic()
        with open(folder / "pool.log", "w") as log:  # the workers' lines: one per submission scored
            command = [sys.executable, "-m", "hub.scorer", "--workers", str(workers)]
            pool = subprocess.Popen(command, env=env, stderr=log)
        try:
            while True:
                with store.read_session() as s:
                    left = s.execute(select(func.count()).where(Submission.status.in_(PENDING))).scalar_one()
                if not left or time.monotonic() - started > 900:
                    break
                time.sleep(0.2)
        finally:
            pool.terminate()
            pool.wait(120)
        with store.read_session() as s:
            done = sorted(s.scalars(select(Submission.finished_at).where(Submission.status == statuses.SCORED)).all())
    finally:
        store.dispose()
    span = (done[-1] - done[0]).total_seconds() if len(done) > 1 else float("nan")
    return {"workers": workers, "scored": len(done), "seconds": span, "scored/s": (len(done) - 1) / span}


def scaling(data: Paths, rounds: int = 3, n: int = 60) -> dict:
    """Scored/s of the pool with 1 and with 2 worker processes, alternated ``rounds`` times; medians."""
    folder = Path(tempfile.mkdtemp(prefix="scaling-", dir=PROJECT_ROOT / "var" / "bench"))
    try:
        files = _emergency_files(data, n, folder)
        runs = []
        for r in range(rounds):
            for workers in (1, 2):
                run = _scored_per_second(data, files, workers, folder / f"run-{r}-{workers}")
                run["load average"] = os.getloadavg()[0]
                print(f"  scaling round {r + 1}: {workers} worker(s) {run['scored/s']:.2f} scored/s", flush=True)
                runs.append(run)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    one = statistics.median(x["scored/s"] for x in runs if x["workers"] == 1)
    two = statistics.median(x["scored/s"] for x in runs if x["workers"] == 2)
    return {
        "files": n,
        "challenge": SCALING_CHALLENGE,
        "runs": runs,
        "1 worker scored/s": one,
        "2 workers scored/s": two,
        "ratio": two / one,
    }


# --- figures -------------------------------------------------------------------------------


def figures(rush: Rush, checked: dict) -> dict:
    cfg = rush.config
    accepted = [u for u in rush.uploads if u.status == 202]
    refused = [u for u in rush.uploads if u.status == 429]
    patient = [u for u in accepted if not u.limited]
    visible = [u.visible for u in patient if u.visible is not None]
    seconds = cfg.seconds
    return {
        "config": asdict(cfg),
        "teams": {"total": len(rush.teams), "limited": sum(rush.teams.values())},
        "setup seconds": rush.setup_seconds,
        "uploads": len(rush.uploads),
        "accepted (202)": len(accepted),
        "accepted valid / broken": [
            sum(u.kind == "valid" for u in accepted),
            sum(u.kind == "broken" for u in accepted),
        ],
        "refused (429 quota-exceeded)": sum(u.code == "quota-exceeded" for u in refused),
        "refused by reason": dict(Counter(f"{u.status} {u.code}" for u in rush.uploads if u.status != 202)),
        "errors by step": dict(rush.errors),
        "polls": rush.polls,
        "throughput accepted/s": len(accepted) / seconds,
        "throughput scored/s during the rush": checked["store"]["finished during the rush"] / seconds,
        "throughput overall/s (start to drained)": len(accepted) / max(1e-9, rush.drained - rush.started),
        "seconds after the rush until every stream saw its score": rush.streams_done - rush.ended,
        "seconds after the rush until nothing pending": rush.drained - rush.ended,
        "upload latency (start to 202)": _hub.summary([u.latency for u in accepted]),
        # Everyone presses "submit" in the first second: the rest of the rush, without that herd.
        "upload latency (start to 202), after the first 10 s": _hub.summary(
            [u.latency for u in accepted if u.started - rush.started >= 10]
        ),
        "upload latency, refusals (start to 429)": _hub.summary([u.latency for u in refused]),
        "upload start to score visible (patient streams)": _hub.summary(visible),
        "leaderboard during the rush": {
            name: {
                **_hub.summary([s for _t, s, _c in samples]),
                "non-200": sum(1 for *_x, c in samples if c != 200),
            }
            for name, samples in rush.samples.items()
        },
        "CPU while the streams ran": rush.cpu,
        **{f"store: {k}": v for k, v in checked["store"].items()},
        "problems": checked["problems"],
    }


def report(fig: dict) -> None:
    def line(label: str, value: str) -> None:
        print(f"  {label:<58} {value}")

    cfg = fig["config"]
    print(
        f"\ndeadline rush: {cfg['streams']} streams x {cfg['seconds']:.0f} s, {fig['teams']['total']} teams "
        f"({fig['teams']['limited']} with a small quota)"
    )
    line(
        "uploads / accepted / refused (quota)",
        f"{fig['uploads']} / {fig['accepted (202)']} / {fig['refused (429 quota-exceeded)']}",
    )
    line("accepted valid / broken", " / ".join(map(str, fig["accepted valid / broken"])))
    line("errors by step", json.dumps(fig["errors by step"]) if fig["errors by step"] else "none")
    line(
        "throughput: accepted/s, scored/s during the rush",
        f"{fig['throughput accepted/s']:.1f}, {fig['throughput scored/s during the rush']:.1f}",
    )
    line("throughput: accepted/s from start until drained", f"{fig['throughput overall/s (start to drained)']:.1f}")
    line(
        "drain: streams saw scores / nothing pending (s after end)",
        f"{fig['seconds after the rush until every stream saw its score']:.1f} / "
        f"{fig['seconds after the rush until nothing pending']:.1f}",
    )
    for key in (
        "upload latency (start to 202)",
        "upload latency (start to 202), after the first 10 s",
        "upload latency, refusals (start to 429)",
        "upload start to score visible (patient streams)",
        "store: scoring lag (received to finished)",
    ):
        s = fig[key]
        line(
            key,
            f"p50 {_hub.fmt(s['p50'])}  p95 {_hub.fmt(s['p95'])}  p99 {_hub.fmt(s['p99'])}  "
            f"max {_hub.fmt(s['max'])}  (n={s['n']})",
        )
    for name, s in fig["leaderboard during the rush"].items():
        line(
            name,
            f"p50 {_hub.fmt(s['p50'])}  p95 {_hub.fmt(s['p95'])}  max {_hub.fmt(s['max'])}  "
            f"(n={s['n']}, non-200 {s['non-200']})",
        )
    line("store: submissions by status", json.dumps(fig["store: by status"]))
    if fig["CPU while the streams ran"]:
        print(f"  {_hub.cpu_line(fig['CPU while the streams ran'])}")
    line("store: audit entries (verified)", str(fig["store: audit entries"]))
    if fig["problems"]:
        print("  INVARIANTS BROKEN:")
        for k, v in fig["problems"].items():
            print(f"    {k}: {len(v)}  e.g. {v[:3]}")
    else:
        print(
            "  invariants: nothing lost, every 202 stored with its verified file and finished, refusals only for "
            "full quotas, quotas exact, audit log verified: all hold"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--limited", type=int, default=10, help="teams whose quota runs out during the rush")
    ap.add_argument("--scorers", type=int, default=2, help="worker processes of the scorer pool")
    ap.add_argument("--poll-every", type=float, default=0.0, help="seconds between plain polls (0: long polls)")
    ap.add_argument("--keep", action="store_true", help="keep the hub's folder (logs, store) afterwards")
    ap.add_argument("--scaling-rounds", type=int, default=3, help="runs of 1 and of 2 workers (0: no scaling)")
    ap.add_argument("--scaling-files", type=int, default=60, help="submissions each scaling run scores")
    args = ap.parse_args()
    cfg = RushConfig(streams=args.streams, seconds=args.seconds, limited=args.limited, poll=args.poll_every)
    print(f"machine: {_measure.machine()}; {_hub.machine_load()} before")
    data = _hub.demo_data()
    files = _hub.Predictions(data)
    root = Path(tempfile.mkdtemp(prefix="deadline-rush-", dir=PROJECT_ROOT / "var" / "bench"))
    contest = _hub.contest_file(root / "config", **_hub.LOAD_LIMITS)
    hub = _hub.Hub.start(
        root, data, extra_env={"CONTESTHUB_SCORERS": str(args.scorers), "CONTESTHUB_CONTEST": str(contest)}
    )
    try:
        print(f"hub up at {hub.url} (folder {root}); preparing {cfg.streams} users, tokens, {cfg.teams} teams")
        rush = prepare(hub, cfg)
        print(f"  set-up took {rush.setup_seconds:.1f} s; rushing for {cfg.seconds:.0f} s ...", flush=True)
        run(hub, cfg, files, rush)
        checked = check(hub, rush)
        mem = _hub.memory(hub.process)
    finally:
        hub.stop()
    fig = figures(rush, checked)
    fig["scorers"] = args.scorers
    fig["memory after the rush (MiB)"] = mem
    fig["machine"] = _measure.machine()
    fig["load after"] = _hub.machine_load()
    report(fig)
    print("  memory after the rush: " + ", ".join(f"{k} {v['rss_mib']:.0f} MiB RSS" for k, v in mem.items()))
    if args.scaling_rounds:
        print(f"\nscorers' scaling: {args.scaling_files} {SCALING_CHALLENGE} files, CPU-bound scoring only")
        fig["scaling"] = sc = scaling(data, args.scaling_rounds, args.scaling_files)
        print(
            f"  scored/s, medians of {args.scaling_rounds}: 1 worker {sc['1 worker scored/s']:.2f}, "
            f"2 workers {sc['2 workers scored/s']:.2f}: ratio {sc['ratio']:.2f} (target >= 1.7)"
        )
    print(f"  machine: {fig['machine']}; {fig['load after']} after")
    path = _hub.write_result("deadline_rush", fig)
    print(f"  results: {path.relative_to(PROJECT_ROOT)}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    if fig["problems"] or fig["errors by step"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
