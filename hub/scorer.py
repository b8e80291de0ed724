"""The scorer pool: submissions are scored outside the submission service, in processes with limits.

``python -m hub.scorer [--workers N]`` starts N worker processes (``python -m hub.scorer
worker``) and starts again any that dies. ``contesthub up`` runs the pool as a hub service
beside the submission service (``scorers`` in config/hub.toml; 0, the default, is one per
core); on Kubernetes it is the ``contesthub-scorer`` Deployment, whose replicas follow the
queue's depth (config/kubernetes/contest-services.yaml).

The queue is the contest store itself (leaderboard/submissions.py: :func:`claim`, :func:`renew`,
:func:`finish`, :func:`crashed`, :func:`reap`), so nothing else has to run, on SQLite as on
PostgreSQL. A worker, again and again:

1. now and then takes back the claims of scorers that are gone (their lease ran out, or on
   this machine their process no longer runs);
2. asks, in a read, whether a submission waits, and if one does claims the oldest (one
   conditional UPDATE; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL);
3. checks its file against its SHA-256, then scores it in its child process (:class:`ScoringChild`,
   forked from the worker, which scores one file after another), with limits: its address
   space (``RLIMIT_AS``), CPU seconds (``RLIMIT_CPU``, per scoring) and a wall-clock limit,
   DuckDB's memory limit and one thread, and DuckDB's spill folder under the private root
   with a size cap. While the child works, the worker renews its claim;
4. records the child's result; when the child died instead (killed, out of memory or time),
   the submission goes back to the queue, and the second time it ends in
   ``error``/``scoring-failed`` (refunded) and is never tried again. A child that died, or
   holds much memory after a scoring, is replaced by a fresh one for the next file.

A worker killed mid-score loses nothing: its claim stays in the store and is taken back (step
1), and the submission is scored again by whichever worker claims it. The pool's supervisor
also deletes the bytes of invalid files past their retention period, once an hour.

Environment: ``CONTESTHUB_SCORERS`` (workers; 0 or unset: one per core),
``CONTESTHUB_SCORER_MEMORY`` (address space of one scoring, e.g. 2G; DuckDB gets a quarter,
its spill folder as much), ``CONTESTHUB_SCORER_SECONDS`` (wall-clock limit of one scoring),
and the store's: ``CONTESTHUB_PRIVATE_ROOT``, ``CONTESTHUB_DATA_ROOT``, ``CONTESTHUB_DB_URL``,
``CONTESTHUB_CONTEST``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import OperationalError, ProgrammingError

from hub.die_with_parent import die_with_parent
from hub.settings import size_bytes
from leaderboard import contest as contest_config
from leaderboard import store as store_mod
from leaderboard import submissions
from leaderboard.models import Submission
from leaderboard.scoring import Database, Resources, ScoreResult, score_file
from leaderboard.store import store_unavailable
from sandbox import clock
from sandbox.errors import ContesthubError
from sandbox.settings import Paths

log = logging.getLogger("contesthub.scorer")

LEASE = 30.0  # seconds a claim holds unless renewed; a worker renews it every LEASE / 6 while scoring
POLL = 0.2  # seconds an idle worker waits before asking again whether a submission waits
REAP_EVERY = 5.0  # seconds between a worker's looks for the claims of scorers that are gone
PRUNE_EVERY = 3600.0  # seconds between the supervisor's deletions of old invalid files' bytes
OUTAGE_PAUSES = (0.5, 1, 2, 4, 8, 15, 30, 60)  # a worker's pauses while the store is unreachable


# --- limits --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What one scoring may use: its child's address space and seconds; DuckDB gets a quarter of
    the address space as its memory limit (it needs much more address space than memory) and
    as much again in its spill folder."""

    memory: int = 2 << 30
    seconds: float = 60.0

    @classmethod
    def from_env(cls, environ=os.environ) -> Limits:
        memory = size_bytes("CONTESTHUB_SCORER_MEMORY", environ.get("CONTESTHUB_SCORER_MEMORY") or "2G")
        seconds = float(environ.get("CONTESTHUB_SCORER_SECONDS") or 60)
        if memory < 512 << 20 or seconds <= 0:
            raise ContesthubError(
                "CONTESTHUB_SCORER_MEMORY must be at least 512M and CONTESTHUB_SCORER_SECONDS above 0",
                "CONTESTHUB_SCORER_MEMORY 至少为 512M，CONTESTHUB_SCORER_SECONDS 必须大于 0",
                code="scorer-settings",
            )
        return cls(memory, seconds)

    def resources(self, spill: Path) -> Resources:
        quarter = f"{self.memory // 4 >> 20}MB"
        return Resources(memory_limit=quarter, threads=1, temp_directory=spill, max_temp_directory_size=quarter)


def workers_wanted(environ=os.environ) -> int:
    """``CONTESTHUB_SCORERS``, or one worker per core this process may use."""
    value = int(environ.get("CONTESTHUB_SCORERS") or 0)
    return value if value > 0 else len(os.sched_getaffinity(0))


# --- one scoring in a child process --------------------------------------------------------


@dataclass
class ChildOutcome:
    """What a scoring child gave back: a result, an error a person must act on, or why it died."""

    result: ScoreResult | None = None
    error: ContesthubError | None = None
    died: str | None = None


def _serve(conn, limits: Limits, spill: Path | None) -> None:
    """The child's loop: apply the limits once, open one DuckDB database, run tasks until told to stop.

    A task is ``(fn, args)``: ``fn(database, *args)``, a module-level function. Before each, the
    CPU limit is moved to this task's share (the child's CPU time so far plus ``seconds``)."""
    with contextlib.suppress(OSError):
        die_with_parent(signal.SIGKILL)  # a worker killed takes its scoring along
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
    database = Database(limits.resources(spill) if spill is not None else None)
    start = _rss()  # what it inherited from the worker, and the database: the rest is what scorings left
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        fn, args = task
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu = int(used.ru_utime + used.ru_stime + limits.seconds) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, resource.RLIM_INFINITY))
        try:
            outcome = ChildOutcome(result=fn(database, *args))
        except ContesthubError as exc:  # e.g. the solution is missing: an organizer must act
            outcome = ChildOutcome(error=ContesthubError(exc.en, exc.zh, code=exc.code))
        except MemoryError:
            conn.send((ChildOutcome(died="out of memory"), None))
            return  # its memory is not to be trusted for the next file
        conn.send((outcome, _rss() - start))


def _rss() -> int:
    """This process's resident memory now, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class ScoringChild:
    """A worker's child process that scores one file at a time, within :class:`Limits`.

    It is forked from the worker (the imports are done: it is ready at once) and keeps one
    DuckDB database from one scoring to the next (:class:`leaderboard.scoring.Database`: each
    scoring has a connection of its own, starting a database costs more than scoring a usual
    file). A child that died, outlived the wall-clock limit (killed), or has grown after a
    scoring by more than a quarter of its address space is replaced by a fresh one for the
    next file, and every child retires after ``max_tasks`` scorings."""

    def __init__(self, limits: Limits, spill: Path | None, *, max_tasks: int = 200):
        self.limits, self.spill, self.max_tasks = limits, spill, max_tasks
        self.proc = self.conn = None
        self.tasks = 0

    def run(
        self, fn: Callable[..., ScoreResult], *args, every: float = 5.0, tick: Callable[[], bool] | None = None
    ) -> ChildOutcome:
        """``fn(database, *args)`` in the child. ``tick()`` runs every ``every`` seconds while it
        works (a worker renews its claim); when it returns False the child is killed (the claim
        was lost). A child that exits without an answer, or outlives the wall-clock limit, is
        reported as ``died``, with the reason."""
        if self.proc is None or not self.proc.is_alive():
            self._start()
        deadline = time.monotonic() + self.limits.seconds
        self.conn.send((fn, args))
        while True:
            if self.conn.poll(max(0.0, min(every, deadline - time.monotonic()))):
                try:
                    outcome, grown = self.conn.recv()
                except (EOFError, OSError):  # it died before it could answer
                    self.proc.join(5)
                    return self._retire(ChildOutcome(died=_why_dead(self.proc.exitcode)))
                self.tasks += 1
                if grown is None or grown > self.limits.memory // 4 or self.tasks >= self.max_tasks:
                    self.close()
                return outcome
            if time.monotonic() >= deadline:
                return self._retire(ChildOutcome(died=f"over its time limit of {self.limits.seconds:g} s"))
            if tick is not None and not tick():
                return self._retire(ChildOutcome(died="its claim was taken back"))

    def _start(self) -> None:
        if self.spill is not None:
            self.spill.mkdir(parents=True, exist_ok=True, mode=0o700)
        ctx = multiprocessing.get_context("fork")  # the worker's imports are the child's: it starts at once
        self.conn, theirs = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(theirs, self.limits, self.spill), name="scoring")
        self.proc.start()
        theirs.close()
        self.tasks = 0

    def _retire(self, outcome: ChildOutcome) -> ChildOutcome:
        self.close(kill=True)
        return outcome

    def close(self, kill: bool = False) -> None:
        """End the child (at once with ``kill``), and remove its spill folder."""
        if self.proc is not None:
            if not kill and self.proc.is_alive():
                with contextlib.suppress(OSError):
                    self.conn.send(None)
                self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(5)
            self.conn.close()
        self.proc = self.conn = None
        if self.spill is not None:
            shutil.rmtree(self.spill, ignore_errors=True)


def _why_dead(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return {"SIGKILL": "killed, out of memory?", "SIGXCPU": "over its CPU time"}.get(name, f"killed by {name}")
    return f"exited with code {code}"


def score_in(database: Database, ch, path: Path, paths: Paths) -> ScoreResult:
    """(in a :class:`ScoringChild`) :func:`leaderboard.scoring.score_file` in the child's database."""
    return score_file(ch, path, paths, database=database)


def score_limited(ch, path: Path, paths: Paths, limits: Limits, spill: Path) -> ChildOutcome:
    """Score one file in a child process of its own, with ``limits``."""
    child = ScoringChild(limits, spill)
    try:
        return child.run(score_in, ch, path, paths)
    finally:
        child.close()


def spill_folder(paths: Paths, what: str) -> Path:
    """A spill folder of this process under the private root (contestants' bytes stay there)."""
    return paths.private_root / "tmp" / "scoring" / f"{what}-{socket.gethostname()}-{os.getpid()}"


# --- a worker -------------------------------------------------------------------------------


def this_host_gone(worker: str) -> bool:
    """Whether the scorer ``worker`` ("host:pid") ran on this machine and its process is gone."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return state[state.rindex(")") + 2] in "ZX"  # a zombie has stopped scoring too


class Worker:
    """One scorer: claims submissions from the store and scores each in its limited child."""

    def __init__(self, store: store_mod.Store, contest: contest_config.Contest, paths: Paths, limits: Limits):
        self.store, self.contest, self.paths, self.limits = store, contest, paths, limits
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.spill = spill_folder(paths, "worker")
        self.child = ScoringChild(limits, self.spill)

    def run(self, stop: threading.Event) -> None:
        """Score until ``stop`` is set (the store being away only pauses it)."""
        next_reap, outage, busy = 0.0, 0, False
        while not stop.is_set():
            try:
                if time.monotonic() >= next_reap:
                    for sid in submissions.reap(self.store, this_host_gone):
                        log.warning("submission %s: its scorer stopped; back in the queue, or failed", sid)
                    next_reap = time.monotonic() + REAP_EVERY
                # Idle, a read asks first (no write transaction while nothing waits); busy, the claim does.
                waiting = busy or submissions.has_queue(self.store)
                sub = submissions.claim(self.store, self.name, LEASE) if waiting else None
                busy, outage = sub is not None, 0
            except Exception as exc:
                if not store_unavailable(exc):
                    raise
                pause = OUTAGE_PAUSES[min(outage, len(OUTAGE_PAUSES) - 1)]
                outage += 1
                log.warning("the store is unavailable (%s); again in %s s", exc, pause)
                clock.wait(stop, pause)
                continue
            if sub is None:
                clock.wait(stop, POLL)
                continue
            while sub is not None:  # each result recorded with the next claim, while busy
                sub = self.score(sub, claim_next=not stop.is_set())
        self.child.close()

    def drain(self) -> int:
        """Score whatever waits now, one by one; how many (tests, benchmarks)."""
        done = 0
        try:
            sub = submissions.claim(self.store, self.name, LEASE)
            while sub is not None:
                sub = self.score(sub)
                done += 1
        finally:
            self.child.close()
        return done

    def score(self, sub: Submission, *, claim_next: bool = True) -> Submission | None:
        """Score one claimed submission and record what became of it; the next one claimed with
        that record (one write a submission while the queue is not empty), or None."""
        sid, started = sub.id, time.monotonic()
        if not self.store.files.verify(sub.sha256):  # damaged at rest: never score what was not submitted
            lost = [submissions.file_lost_error()]
            self._record(sid, lambda: submissions.finish(self.store, self.contest, sid, self.name, errors=lost))
            return None
        path = self.store.files.path(sub.sha256)
        challenge = sub.challenge
        outcome = self.child.run(
            score_in,
            self.contest.challenge(challenge),
            path,
            self.paths,
            every=LEASE / 6,
            tick=lambda: self._renew(sid),
        )
        if outcome.died is not None:
            log.warning("submission %s: its scoring process died (%s)", sid, outcome.died)
            self._record(sid, lambda: submissions.crashed(self.store, sid, self.name, outcome.died))
            return None
        errors = None
        if outcome.error is not None:
            log.error("submission %s could not be scored: %s", sid, outcome.error.en)
            errors = [submissions.scoring_failed_error(outcome.error.en, outcome.error.zh)]

        def record():
            kw = {"result": outcome.result, "errors": errors}
            if not claim_next:
                return submissions.finish(self.store, self.contest, sid, self.name, **kw)
            return submissions.finish_and_claim(self.store, self.contest, sid, self.name, LEASE, **kw)[1]

        following = self._record(sid, record)
        log.info("submission %s finished in %.2f s", sid, time.monotonic() - started)
        return following if claim_next else None

    def _renew(self, sid: int) -> bool:
        try:
            return submissions.renew(self.store, sid, self.name, LEASE)
        except Exception as exc:  # the store away for a moment: the lease is long enough to wait
            if not store_unavailable(exc):
                raise
            log.warning("submission %s: could not renew its claim (%s)", sid, exc)
            return True

    def _record(self, sid: int, write: Callable[[], object]):
        """``write()`` until the store takes it: a result is never dropped because the database
        restarted (the claim holds meanwhile; should its lease run out, another worker scores
        the submission again and this write finds the claim gone and records nothing)."""
        attempt = 0
        while True:
            try:
                return write()
            except Exception as exc:
                if not store_unavailable(exc):
                    raise
                pause = OUTAGE_PAUSES[min(attempt, len(OUTAGE_PAUSES) - 1)]
                attempt += 1
                log.warning("submission %s: the store is unavailable (%s); again in %s s", sid, exc, pause)
                time.sleep(pause)


# --- the pool -------------------------------------------------------------------------------


def _context() -> tuple[Paths, contest_config.Contest, store_mod.Store]:
    paths = Paths.from_env()
    # A claim or a result that a power cut undoes is claimed and scored again, to the same score:
    # on SQLite the workers' commits need not wait for the disk (acceptances always do).
    return paths, contest_config.load(), store_mod.connect(paths, migrate=False, fsync_commits=False)


def wait_for_schema(paths: Paths, stop: threading.Event) -> None:
    """Until the store's schema is the newest: the submission service migrates it at its start,
    which may be a moment after ours (the scorers never migrate, so two never race to)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(store_mod.alembic_config(store_mod.default_url(paths))).get_current_head()
    while not stop.is_set():
        store = store_mod.connect(paths, migrate=False, readonly=True)
        try:
            with store.read_session() as s:
                if s.execute(text("SELECT version_num FROM alembic_version")).scalar() == head:
                    return
        except (OperationalError, ProgrammingError):
            pass  # no database or no tables yet
        finally:
            store.dispose()
        log.info("waiting for the contest store's schema (%s)", head)
        clock.wait(stop, 2)


def worker_main(parent: int | None) -> None:
    """One worker process (``python -m hub.scorer worker``), until SIGTERM or its pool ends."""
    if parent is not None and not die_with_parent(signal.SIGTERM, parent):
        sys.exit("the scorer pool that started this worker is gone")
    # A session of its own, as JupyterHub gives each service: where the kernel shares the CPU
    # between sessions (Linux's autogroup, on by default in Debian's and Ubuntu's kernels), the
    # workers of one pool would otherwise share one session's part of a busy machine, and a
    # second worker would add no scoring at all. Its scoring child shares its session.
    with contextlib.suppress(OSError):
        os.setsid()
    stop = _stop_on_signals()
    paths, contest, store = _context()
    worker = Worker(store, contest, paths, Limits.from_env())
    log.info(
        "scorer %s ready (limits: %s MiB, %g s per submission)",
        worker.name,
        worker.limits.memory >> 20,
        worker.limits.seconds,
    )
    try:
        worker.run(stop)
    finally:
        store.dispose()


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def pool_main(workers: int) -> None:
    """The pool: ``workers`` worker processes, started again when one dies, and an hourly prune."""
    stop = _stop_on_signals()
    paths = Paths.from_env()
    wait_for_schema(paths, stop)
    command = [sys.executable, "-m", "hub.scorer", "worker", "--parent", str(os.getpid())]
    procs: list[subprocess.Popen | None] = [None] * workers
    next_prune = 0.0
    log.info("scorer pool: %d worker(s)", workers)
    try:
        while not stop.is_set():
            for i, proc in enumerate(procs):
                if proc is None or proc.poll() is not None:
                    if proc is not None:
                        log.error("scorer worker %s exited with %s; starting another", proc.pid, proc.returncode)
                    procs[i] = subprocess.Popen(command)
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY
                _prune(paths)
            clock.wait(stop, 1.0)
    finally:
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        grace = Limits.from_env().seconds + 10  # a worker finishes the scoring it is in
        for proc in procs:
            if proc is not None:
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
        log.info("scorer pool stopped")


def _prune(paths: Paths) -> None:
    """Delete the bytes of invalid files past the contest's retention period (digests stay)."""
    try:
        store = store_mod.connect(paths, migrate=False)
        try:
            dropped = submissions.drop_invalid_files(store, contest_config.load(), clock.now())
        finally:
            store.dispose()
    except Exception as exc:  # tried again in an hour; scoring goes on
        log.warning("could not delete old invalid files: %s", exc)
        return
    if dropped:
        log.info("deleted the bytes of %d invalid file(s) past their retention period", dropped)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s scorer] %(message)s")
    ap = argparse.ArgumentParser(prog="python -m hub.scorer", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="role")
    one = sub.add_parser("worker", help="one worker (the pool starts these)")
    one.add_argument("--parent", type=int, help="end with this process (the pool)")
    ap.add_argument("--workers", type=int, help="worker processes [CONTESTHUB_SCORERS; default one per core]")
    args = ap.parse_args(argv)
    if args.role == "worker":
        worker_main(args.parent)
        return
    # (Started by a hub, it ends with it: hub/services.py starts it through hub.die_with_parent.)
    pool_main(args.workers or workers_wanted())


if __name__ == "__main__":
    main()
