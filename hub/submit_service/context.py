"""The service's shared state: the contest, the store and its thread lanes, the acceptor that
takes waiting uploads together, the watch over pending submissions and the leaderboard cache.

One :class:`Context` per process, handed to every handler (``initialize(ctx)``), like
JupyterHub's ``settings`` dictionary."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from jupyterhub.services.auth import HubAuth
from sqlalchemy import select
from tornado import ioloop

from hub import groups
from leaderboard import contest as contest_config
from leaderboard import roles, submissions
from leaderboard.models import Member, Submission
from leaderboard.store import Store
from sandbox import statuses
from sandbox.settings import Paths

log = logging.getLogger("contesthub.submit")

# Threads for the handlers' database work: the event loop never waits for the database.
# Three lanes, so that nothing queues behind what it need not wait for: writes (one at a time
# on SQLite anyway), the refresh of pending submissions' statuses (what every waiting client's
# polls read), and the other reads (leaderboard, me, health, organizers' pages).
STORE_READERS = 2
STORE_POLLERS = 1
STORE_WRITERS = 2
# Uploads accepted in one transaction at most: a deadline rush's uploads share one commit and
# one flush to disk instead of queueing for the write lock one by one.
ACCEPT_BATCH = 64
UPLOAD_FLUSHERS = 4
# Seconds between two refreshes of the pending submissions' statuses: a client sees its score
# at most this much later than the store has it.
WATCH_EVERY = 0.25
# Seconds the leaderboard JSON of a challenge is served again before it is computed anew.
BOARD_TTL = 1.0


class PendingWatch:
    """The submissions this service knows to be pending, refreshed all at once.

    Every waiting client asks for its submission again and again (twice a second, as
    ``sandbox.submit`` did before it held one request open with ``?wait=``); in a deadline rush
    that was hundreds of read transactions a second, each answering "still pending". Instead
    the service keeps each pending submission it accepted, or found pending
    on a poll, with what its team sees of it, and :meth:`refresh` reads the statuses of all of
    them, and the teams of the users who asked, in one read every :data:`WATCH_EVERY` seconds. A
    poll is answered from here while the submission is pending and the asker is still in its
    team (as of the last refresh); once it is finished it is dropped, and the next poll reads
    the store, score included. Thread-safe: polls on the event loop, refreshes in a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[int, dict]] = {}  # submission id -> (team id, what the team sees)
        self._askers: dict[int, set[str]] = {}  # submission id -> users who may be answered
        self._teams: dict[str, int] = {}  # user -> team id, as of the last refresh

    def add(self, doc: dict, team_id: int, user: str) -> None:
        if doc["status"] not in statuses.PENDING:
            return
        with self._lock:
            self._pending[doc["id"]] = (team_id, doc)
            self._askers.setdefault(doc["id"], set()).add(user)
            self._teams[user] = team_id  # just read (or written) in the store

    def answer(self, submission_id: int, user: str) -> dict | None:
        """What ``user``'s team sees of a pending submission; None: ask the store."""
        with self._lock:
            entry = self._pending.get(submission_id)
            if entry is None or self._teams.get(user) != entry[0] or user not in self._askers[submission_id]:
                return None
            return dict(entry[1])

    def __len__(self) -> int:
        return len(self._pending)

    def refresh(self, store: Store) -> set[int]:
        """One read: the statuses of the pending submissions and the teams of their askers; the
        submissions found finished (dropped from the watch)."""
        with self._lock:
            ids, users = list(self._pending), set().union(*self._askers.values()) if self._askers else set()
        if not ids:
            return set()
        with store.read_session() as s:
            status_of = dict(s.execute(select(Submission.id, Submission.status).where(Submission.id.in_(ids))).all())
            teams_now = dict(s.execute(select(Member.user, Member.team_id).where(Member.user.in_(users))).all())
        finished = set()
        with self._lock:
            for sid in ids:
                status = status_of.get(sid)
                if status in statuses.PENDING and sid in self._pending:
                    self._pending[sid][1]["status"] = status
                else:  # finished (or gone): the next poll reads it from the store
                    self._pending.pop(sid, None)
                    self._askers.pop(sid, None)
                    finished.add(sid)
            asking = set().union(*self._askers.values()) if self._askers else set()
            self._teams = {u: t for u, t in teams_now.items() if u in asking}
        return finished


class Context:
    """What every handler shares: the contest, the store, its threads, the hub's auth, the caches."""

    def __init__(
        self,
        paths: Paths,
        contest: contest_config.Contest | contest_config.Watched,
        store: Store,
        hub_auth: HubAuth,
        *,
        readers: int = STORE_READERS,
        pollers: int = STORE_POLLERS,
        writers: int = STORE_WRITERS,
        teams_from_groups: bool = False,
    ):
        self.paths, self.store, self.hub_auth = paths, store, hub_auth
        self._contest = contest
        # Whether an identity provider's team-* groups make users members (else only the store does).
        self.teams_from_groups = teams_from_groups
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="groups")
        # Organizers' long jobs (a rescore, the reveal's intervals): scoring itself runs in
        # limited child processes (hub/scorer.py), this thread only waits for them.
        self.jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobs")
        self.readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="store-read")
        self.pollers = ThreadPoolExecutor(max_workers=pollers, thread_name_prefix="store-poll")
        self.writers = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="store-write")
        # Uploads' bytes flushed to disk (fsync) side by side, before they queue for acceptance.
        self.disk = ThreadPoolExecutor(max_workers=UPLOAD_FLUSHERS, thread_name_prefix="upload-disk")
        # Acceptances, in one thread that takes every upload waiting and accepts them together
        # (submissions.accept_many: one transaction, one flush to disk for all of them).
        self._incoming: queue.SimpleQueue = queue.SimpleQueue()
        self._acceptor = threading.Thread(target=self._accept_loop, name="store-accept", daemon=True)
        self._acceptor.start()
        self.pending = PendingWatch()
        self._refreshing = False
        self._waiting: dict[int, list[asyncio.Future]] = {}  # long polls, by submission (event loop only)
        self._boards: dict[str, tuple[float, asyncio.Future]] = {}
        self._sync_guard = threading.Lock()
        self._sync_queued = False

    @property
    def contest(self) -> contest_config.Contest:
        """The contest now: a watched one is read again when its file or the demo schedule changes."""
        c = self._contest
        return c.get() if isinstance(c, contest_config.Watched) else c

    async def read(self, fn, *args, **kw):
        """``fn(*args, **kw)`` in a reader thread; it should use ``store.read_session()`` only."""
        return await ioloop.IOLoop.current().run_in_executor(self.readers, partial(fn, *args, **kw))

    async def poll(self, fn, *args, **kw):
        """As :meth:`read`, in the poll lane (a team's submissions, asked for again and again)."""
        return await ioloop.IOLoop.current().run_in_executor(self.pollers, partial(fn, *args, **kw))

    async def write(self, fn, *args, **kw):
        """``fn(*args, **kw)`` in a writer thread (``store.session()``: one writer at a time on SQLite)."""
        return await ioloop.IOLoop.current().run_in_executor(self.writers, partial(fn, *args, **kw))

    async def accept(self, incoming: submissions.Incoming) -> Submission:
        """Accept one upload (raises its refusal), together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._incoming.put((incoming, loop, future))
        return await future

    def _accept_loop(self) -> None:
        while True:
            first = self._incoming.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < ACCEPT_BATCH:
                try:
                    item = self._incoming.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._incoming.put(None)  # stop after this batch
                    break
                batch.append(item)
            try:
                outcomes = submissions.accept_many(self.store, self.contest, [inc for inc, _, _ in batch])
            except BaseException as exc:  # the transaction failed (the store away): every upload hears it
                outcomes = [exc] * len(batch)
            for (_, loop, future), outcome in zip(batch, outcomes, strict=True):
                loop.call_soon_threadsafe(_settle, future, outcome)

    async def refresh_pending(self) -> None:
        """(every :data:`WATCH_EVERY` s, on the event loop) One refresh of the pending statuses."""
        if self._refreshing or not len(self.pending):
            return
        self._refreshing = True
        try:
            finished = await ioloop.IOLoop.current().run_in_executor(self.pollers, self.pending.refresh, self.store)
        except Exception as exc:  # the store away for a moment: polls read the store meanwhile
            log.warning("could not refresh the pending submissions: %s", exc)
            finished = set()
        finally:
            self._refreshing = False
        for sid in finished:  # wake the long polls of what is finished
            for waiter in self._waiting.pop(sid, []):
                if not waiter.done():
                    waiter.set_result(None)

    async def until_finished(self, submission_id: int, seconds: float) -> None:
        """Wait (on the event loop) until a refresh finds the submission finished, or ``seconds``."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(submission_id, []).append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), seconds)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiting.get(submission_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    self._waiting.pop(submission_id, None)

    async def board(self, ch_id: str, compute) -> dict:
        """The leaderboard JSON of a challenge, computed at most once per :data:`BOARD_TTL` seconds;
        callers arriving while it is being computed share that computation."""
        now = time.monotonic()
        cached = self._boards.get(ch_id)
        failed = cached is not None and cached[1].done() and (cached[1].cancelled() or cached[1].exception())
        if cached is None or cached[0] < now or failed:
            future = asyncio.ensure_future(self.read(compute))
            self._boards[ch_id] = (now + BOARD_TTL, future)
            cached = self._boards[ch_id]
        return await asyncio.shield(cached[1])

    def sync_groups_later(self) -> None:
        """Mirror the store's teams as hub groups, in the background (see hub.groups).

        Calls made while a round is queued and not started yet are covered by that round:
        an organizer creating a hundred teams queues one or two rounds, not a hundred."""
        api, token = os.environ.get("JUPYTERHUB_API_URL"), os.environ.get("JUPYTERHUB_API_TOKEN")
        if not (api and token):
            return
        with self._sync_guard:
            if self._sync_queued:
                return
            self._sync_queued = True
        self.background.submit(self._sync, api, token)

    def _sync(self, api: str, token: str) -> None:
        with self._sync_guard:
            self._sync_queued = False  # a change from now on queues the next round
        try:
            groups.reconcile(
                self.store, api, token, roles.team_group_prefix(), provider_owns_groups=self.teams_from_groups
            )
        except Exception as exc:  # the hub may be restarting; the next round retries
            log.warning("could not mirror teams as hub groups: %s", exc)
        try:  # conditional data: grants past their expiry end, in the store and on disk (issue 17)
            from hub import conditional_acl

            conditional_acl.sync(self.store, self.paths)
        except Exception as exc:
            log.warning("could not apply the conditional-data grants: %s", exc)

    def shutdown(self) -> None:
        self._incoming.put(None)
        self._acceptor.join(60)
        for pool in (self.background, self.jobs, self.readers, self.pollers, self.writers, self.disk):
            pool.shutdown(wait=True)


def _settle(future: asyncio.Future, outcome) -> None:
    if not future.done():
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
