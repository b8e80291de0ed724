"""The submission service: the contest engine over HTTP, as a JupyterHub-managed service.

It runs at ``/services/submit/`` behind the hub's proxy. Every request carries a JupyterHub
token (``Authorization: token ...``); jupyterhub's own :class:`HubAuth` identifies it, and
only tokens of *users* that hold ``access:services!service=submit`` get in (a notebook's
token has it through ``c.Spawner.server_token_scopes``). The caller's team is their team in
the contest store. With local accounts the store is the only source (hub groups only mirror
it, see hub/groups.py); where an identity provider owns the groups
(``CONTESTHUB_TEAMS_FROM_GROUPS=1``, OAuth mode), a user it put in a group named
``team-<name>`` (see ``CONTESTHUB_TEAM_GROUP_PREFIX``) joins that team on first contact,
unless an organizer removed them from it. Organizers are the members of the ``organizers``
group (which the hub's config also makes admins).

Before a byte of an upload is stored, a read checks that the team may upload now (the
challenge is open, its quota, upload rate and storage leave room); the body is then streamed
to disk as it arrives (never held in memory) with the contest's size limit, and charged,
recorded and kept in one transaction. Nothing is scored here: the submission waits in the
store for the scorer pool (hub/scorer.py, other processes, on other machines in a cluster)
and the client asks for it, holding its request open until it is finished (``?wait=``, a long
poll) or again and again. A poll of a submission still pending is answered from memory: one
read every quarter of a second brings the status of every pending submission the service
knows of up to date (:class:`PendingWatch`), instead of one read per poll; the leaderboard
JSON is computed at most once a second per challenge. Uploads waiting for the write lock are
accepted together, in one transaction (``submissions.accept_many``). No database work runs on the event
loop: handlers hand it to bounded thread pools, one for reads (read-only transactions, which
on SQLite never wait for the write lock), one for the polls' refresh and one for writes. The
OpenAPI description is served at
``api/openapi.json``. No response ever carries a private score or rank before the reveal,
and no contestant ever sees a traceback: errors are ``{"code", "message", "message_en",
"message_zh"}``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import queue
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

from jupyterhub.services.auth import HubAuth, UserNotAllowed
from sqlalchemy import select
from tornado import httpserver, ioloop, web

from hub import groups, scorer
from hub.die_with_parent import die_with_parent
from leaderboard import contest as contest_config
from leaderboard import integrity, ranking, submissions, teams
from leaderboard import store as store_mod
from leaderboard.models import Member, Submission
from leaderboard.scoring import ScoreResult
from leaderboard.store import StorageFailed, Store, UploadTooLarge, store_unavailable
from sandbox import clock
from sandbox.errors import ContesthubError, NotFound
from sandbox.settings import Paths
from sandbox.submission_checks import TOO_LARGE_WHAT_TO_DO

log = logging.getLogger("contesthub.submit")

TEAM_PREFIX = os.environ.get("CONTESTHUB_TEAM_GROUP_PREFIX", "team-")
# "1" where an identity provider owns the hub's groups (OAuth; set by hub/services.py).
TEAMS_FROM_GROUPS = os.environ.get("CONTESTHUB_TEAMS_FROM_GROUPS") == "1"
ORGANIZERS = os.environ.get("CONTESTHUB_ORGANIZER_GROUP", "organizers")
OPENAPI = Path(__file__).with_name("openapi.json")
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
        if doc["status"] not in submissions.PENDING:
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
            statuses = dict(s.execute(select(Submission.id, Submission.status).where(Submission.id.in_(ids))).all())
            teams_now = dict(s.execute(select(Member.user, Member.team_id).where(Member.user.in_(users))).all())
        finished = set()
        with self._lock:
            for sid in ids:
                status = statuses.get(sid)
                if status in submissions.PENDING and sid in self._pending:
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
            groups.reconcile(self.store, api, token, TEAM_PREFIX, provider_owns_groups=self.teams_from_groups)
        except Exception as exc:  # the hub may be restarting; the next round retries
            log.warning("could not mirror teams as hub groups: %s", exc)

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


class Base(web.RequestHandler):
    ctx: Context
    identity: dict

    def initialize(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def lang(self) -> str:
        return "en" if (self.get_query_argument("lang", "") or "").startswith("en") else "zh"

    def check_xsrf_cookie(self) -> None:
        """Only tokens in the Authorization header are accepted, so there is no cookie to forge."""

    async def prepare(self) -> None:
        if not self.needs_user:
            return
        header = self.request.headers.get("Authorization", "")
        if not header.lower().startswith(("token ", "bearer ")):
            raise Refusal(
                401,
                "no-token",
                "send your JupyterHub token: Authorization: token <token>",
                "请在请求头中提供 JupyterHub 令牌",
            )
        model = await self.ctx.hub_auth.user_for_token(header.split(None, 1)[1].strip(), sync=False)
        if not model:
            raise Refusal(
                401, "bad-token", "the token is unknown or has expired; log in again", "令牌无效或已过期，请重新登录"
            )
        if model.get("kind") != "user":
            raise Refusal(
                403,
                "not-a-user",
                "only contestants' and organizers' own tokens are accepted",
                "只接受参赛者或组织方本人的令牌",
            )
        try:
            self.identity = HubAuthenticatedCheck(self.ctx.hub_auth).check(model)
        except UserNotAllowed:
            raise Refusal(
                403, "no-access", "this token may not use the submission service", "该令牌无权使用提交服务"
            ) from None

    needs_user = True

    @property
    def user(self) -> str:
        return self.identity["name"]

    @property
    def organizer(self) -> bool:
        return ORGANIZERS in self.identity.get("groups", [])

    def require_organizer(self) -> None:
        if not self.organizer:
            raise Refusal(403, "organizers-only", "only organizers may do this", "只有组织方可以进行此操作")

    def team(self, session):
        """The caller's team in the store; in OAuth mode, joins their provider group's team on first contact.

        ``session`` is a write session (joining writes); :meth:`in_team` is the read path."""
        team = teams.team_of(session, self.user)
        if team is not None:
            return team
        name = self.joinable_team(session)
        if name is None:
            raise self.no_team()
        try:
            teams.get(session, name)
        except NotFound:
            teams.create(session, self.ctx.contest, name, actor="identity-provider")
        teams.add_member(session, self.ctx.contest, name, self.user, actor="identity-provider")
        return teams.get(session, name)

    def joinable_team(self, session) -> str | None:
        """The team an identity provider's ``team-...`` group puts the caller in; None without one.

        Never with local accounts: there a hub group only mirrors the store, and a group left
        behind must not undo an organizer's ``teams remove``. Nor when an organizer removed the
        caller from that team: the provider's group still names them until it is changed there."""
        if not self.ctx.teams_from_groups:
            return None
        for group in sorted(self.identity.get("groups", [])):
            if group.startswith(TEAM_PREFIX):
                name = group.removeprefix(TEAM_PREFIX)
                return None if teams.was_removed(session, name, self.user) else name
        return None

    def no_team(self) -> Refusal:
        return Refusal(
            409,
            "no-team",
            f"{self.user} is not in a team yet; ask the organizers",
            f"{self.user} 尚未加入队伍，请联系组织方",
        )

    async def in_team(self, fn, *, poll: bool = False):
        """``fn(session, team)`` in a read session in a reader thread (``poll``: in the poll
        lane), with the caller's team.

        Only a caller with no team yet who has an identity provider's ``team-*`` group costs a
        write: joining that team (:meth:`team`). Without one the 409 ``no-team`` refusal
        writes nothing."""

        def attempt():
            with self.ctx.store.read_session() as s:
                team = teams.team_of(s, self.user)
                return (False, self.joinable_team(s) is not None) if team is None else (True, fn(s, team))

        read = self.ctx.poll if poll else self.ctx.read
        found, result = await read(attempt)
        if found:
            return result
        if not result:
            raise self.no_team()  # no team to join: nothing to write
        await self.ctx.write(self._join_team)
        found, result = await read(attempt)
        if not found:  # removed from the team in between
            raise self.no_team()
        return result

    def _join_team(self) -> None:
        with self.ctx.store.session() as s:
            self.team(s)

    def body_json(self) -> dict:
        try:
            doc = json.loads(self.request.body or b"{}")
        except (ValueError, RecursionError):
            raise Refusal(400, "bad-json", "the request body is not JSON", "请求体不是 JSON") from None
        if not isinstance(doc, dict):
            raise Refusal(400, "bad-json", "the request body must be a JSON object", "请求体必须是 JSON 对象")
        return doc

    def send(self, doc, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(doc, ensure_ascii=False, default=_json_default))

    def set_default_headers(self) -> None:
        # Every answer is JSON: a browser must never sniff it as HTML (an error may quote a file's text).
        self.set_header("X-Content-Type-Options", "nosniff")

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ContesthubError):
            doc = exc.to_dict(self.lang)
            retry_after = getattr(exc, "retry_after", None)
            if retry_after:  # RFC 9110: when to try again (a team uploading too fast)
                self.set_header("Retry-After", str(retry_after))
                doc["retry_after"] = retry_after
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            reason = exc.log_message or self._reason
            zh = HTTP_ZH.get(status_code, reason)
            doc = {"code": f"http-{status_code}", "message": zh, "message_en": reason, "message_zh": zh}
        else:
            doc = {
                "code": "internal-error",
                "message": "服务内部错误，组织方已收到通知；你的提交次数未受影响",
                "message_en": "internal error; the organizers were notified and your quota was not touched",
                "message_zh": "服务内部错误，组织方已收到通知；你的提交次数未受影响",
            }
        doc["status"] = status_code
        if status_code == 405:  # RFC 9110: say which methods the resource has
            self.set_header("Allow", ", ".join(allowed_methods(type(self))))
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(doc, ensure_ascii=False))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, ContesthubError):
            log.info("%s %s -> %s", self.request.method, self.request.path, getattr(value, "code", value))
        else:
            super().log_exception(typ, value, tb)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ContesthubError):
            self.send_error(http_status(e), exc_info=(type(e), e, e.__traceback__))
        elif store_unavailable(e) and not self._finished:
            log.warning("%s %s -> 503: the store is unavailable: %s", self.request.method, self.request.path, e)
            self.set_header("Retry-After", "30")
            unavailable = ContesthubError(
                "the contest database is unavailable for a moment; nothing was recorded and your quota was "
                "not touched; try again in a minute",
                "比赛数据库暂时不可用；本次请求未被记录，也不计入提交次数，请一分钟后重试",
                code="store-unavailable",
            )
            self.send_error(503, exc_info=(type(unavailable), unavailable, None))
        else:
            super()._handle_request_exception(e)


def allowed_methods(handler: type[web.RequestHandler]) -> list[str]:
    """The HTTP methods a handler class implements."""
    return [
        m
        for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if getattr(handler, m.lower()) is not getattr(web.RequestHandler, m.lower())
    ]


# Refusals that tornado makes itself (before a handler's own checks), in Chinese too.
HTTP_ZH = {
    400: "请求格式有误",
    405: "该接口不支持这种请求方法；请查看 api/openapi.json",
    413: "请求体过大",
}


def http_status(e: ContesthubError) -> int:
    if isinstance(e, Refusal):
        return e.status
    if isinstance(e, NotFound):
        return 404
    return {
        "quota-exceeded": 429,
        "file-too-large": 413,
        "challenge-closed": 403,
        "challenge-not-open": 403,
        "not-advanced": 403,
        "storage-failed": 507,
        "rate-limited": 429,
        "team-storage-full": 413,
    }.get(e.code, 400)


class HubAuthenticatedCheck:
    """jupyterhub's scope check (``access:services!service=submit``) without a Tornado mixin."""

    def __init__(self, hub_auth: HubAuth):
        self.hub_auth = hub_auth

    def check(self, model: dict) -> dict:
        if not self.hub_auth.check_scopes(self.hub_auth.access_scopes, model):
            raise UserNotAllowed(model)
        return model


class Refusal(ContesthubError):
    """A refusal by the service itself (authentication, permissions, request shape), with its HTTP status."""

    def __init__(self, status: int, code: str, en: str, zh: str):
        super().__init__(en, zh, code=code)
        self.status = status


MAX_ID = 2**63 - 1  # the largest row id the databases store; a larger number names no row
MAX_GRANT = 100_000  # extra submissions an organizer can grant a team in one go
STATUSES = ("received", "validating", "scored", "invalid", "error")


def row_id(text: str, en: str, zh: str) -> int:
    """A row id from the URL (digits only, by the route); beyond what a database holds, there is no such row."""
    value = int(text)
    if not 1 <= value <= MAX_ID:
        raise NotFound(f"no {en} {text}", f"没有编号为 {text} 的{zh}")
    return value


def is_int(value, low: int = 1, high: int = MAX_ID) -> bool:
    """A JSON integer (not a boolean, not a float) within [low, high]."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def text_field(doc: dict, name: str, code: str, *, required: bool = True) -> str | None:
    """A string member of a request body, stripped; a 400 when it is missing (if required) or not a string."""
    value = doc.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise Refusal(
            400,
            code,
            f"{name!r} must be a non-empty string" if required else f"{name!r} must be a string",
            f"{name} 必须是非空字符串" if required else f"{name} 必须是字符串",
        )
    return value.strip()


def _json_default(value):
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(type(value))


# --- contestants ------------------------------------------------------------------------------


class OpenAPIHandler(Base):
    needs_user = False

    def get(self) -> None:
        doc = json.loads(OPENAPI.read_text("utf-8"))
        doc["servers"] = [{"url": os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/submit/").rstrip("/")}]
        # This contest's challenges, so that clients (and API fuzzers) know the valid ids.
        ids = [ch.id for ch in self.ctx.contest.challenges]
        for item in doc["paths"].values():
            for op in item.values():
                for param in op.get("parameters", []):
                    if param["name"] == "challenge" and param["in"] == "path":
                        param["schema"] = {**param["schema"], "enum": ids}
        self.send(doc)


class MeHandler(Base):
    async def get(self) -> None:
        contest = self.ctx.contest

        def team_doc(s, team) -> dict:
            return {
                "team": {
                    "name": team.name,
                    "display_name": team.display_name,
                    "members": [m.user for m in team.members],
                },
                "quotas": [submissions.quota(s, contest, team, ch.id) for ch in contest.challenges],
            }

        try:
            doc = await self.in_team(team_doc)  # joins the identity provider's team on first contact
        except Refusal as exc:
            if exc.code != "no-team":
                raise
            doc = {"team": None, "quotas": []}
        self.send({"user": self.user, "organizer": self.organizer, **doc})


class ChallengesHandler(Base):
    def get(self) -> None:
        self.send([_challenge_doc(ch) for ch in self.ctx.contest.challenges])


def _challenge_doc(ch) -> dict:
    return {
        "id": ch.id,
        "title": ch.title,
        "description": ch.description,
        "metric": ch.metric,
        "higher_is_better": ch.higher_is_better,
        "id_columns": list(ch.id_columns),
        "prediction": ch.prediction,
        "test_table": f"{ch.dataset}.{ch.table}_test",
        "daily_quota": ch.daily_quota,
        "final_selections": ch.final_selections,
        "opens": ch.opens,
        "closes": ch.closes,
        "reveal": ch.reveal,
    }


# A refused upload's body (no token, unknown challenge, over the size limit, ...) is still read
# up to this size and dropped as it arrives, so the client, and the hub's proxy in between,
# finish sending and then read the JSON refusal. HTTP/1.1 clients read no answer before their
# body is sent: a server that answers and hangs up mid-body leaves them a reset connection (the
# proxy turns it into its own 503 page). A body declared larger than this gets the refusal at
# once and the connection is closed.
DRAIN_LIMIT = 1 << 30


@web.stream_request_body
class UploadHandler(Base):
    """``POST api/challenges/{id}/submissions``: the raw file as the body, streamed to disk.

    Nothing of the body is held in memory: each piece goes to the upload sink (hashed and
    counted, refused past the contest's limit) or, once the upload is refused, nowhere.
    """

    sink = None
    refused: BaseException | None = None
    uploader_team: tuple[int, str] | None = None  # (id, name) of the uploader's team, found before the body

    async def prepare(self) -> None:
        if self.request.method != "POST":
            await super().prepare()
            return  # answered with 405 by tornado; no upload is opened
        limit = self.ctx.contest.upload_limit
        length = _content_length(self.request)
        try:
            await super().prepare()
            ch = self.ctx.contest.challenge(self.path_args[0])  # an unknown challenge fails before any byte is stored
            if length is not None and length > limit:
                raise UploadTooLarge(
                    f"the file is {length / (1 << 20):.1f} MiB; the limit is {limit >> 20} MiB; "
                    + TOO_LARGE_WHAT_TO_DO[0],
                    f"文件大小为 {length / (1 << 20):.1f} MiB，超过上限 {limit >> 20} MiB；" + TOO_LARGE_WHAT_TO_DO[1],
                )
            if length != 0:  # (an empty body is refused as such in post())
                # Before a byte is stored, in a read (joining the identity provider's team first): a
                # closed challenge, a used-up quota, a team uploading too fast or out of storage.
                self.uploader_team = await self.in_team(lambda s, team: self._precheck(s, team, ch.id, length))
        except Exception as exc:
            if not (isinstance(exc, ContesthubError) or store_unavailable(exc)) or (
                length is not None and length > DRAIN_LIMIT
            ):
                raise
            self.refused = exc  # answered in post(), once the body has been read and dropped
            self.request.connection.set_max_body_size(DRAIN_LIMIT)
            return
        # Without a Content-Length (chunked), the sink enforces the limit and the rest is dropped.
        self.request.connection.set_max_body_size(limit + 1 if length is not None else DRAIN_LIMIT)
        self.sink = self.ctx.store.files.open_upload(limit)

    def _precheck(self, session, team, ch_id: str, size: int | None) -> tuple[int, str]:
        submissions.precheck(session, self.ctx.contest, team, ch_id, size=size)
        return team.id, team.name

    def data_received(self, chunk: bytes) -> None:
        if self.sink is None:
            return  # refused: the rest of the body is dropped
        try:
            self.sink.write(chunk)
        except (UploadTooLarge, StorageFailed) as exc:  # the sink has deleted what it had written
            self.sink, self.refused = None, exc

    def on_connection_close(self) -> None:
        self._abort()  # the client went away mid-upload: no partial file remains
        super().on_connection_close()

    def on_finish(self) -> None:
        self._abort()  # whatever ended the request, no upload is left in the upload area

    def _abort(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.abort()

    async def post(self, ch_id: str) -> None:
        if self.refused is not None:
            raise self.refused
        # The whole body is in: from here on the upload is this method's (nothing else deletes it).
        upload, self.sink = self.sink.close(), None
        if upload.size == 0 or self.uploader_team is None:
            upload.path.unlink(missing_ok=True)
            raise ContesthubError("the upload is empty", "上传的文件为空", code="empty-file")
        provenance = {k: self.get_query_argument(k, None) for k in ("notebook", "kernel", "sandbox_version", "client")}
        file_name = _safe_name(self.get_query_argument("file_name", "") or "submission")
        team_id, team_name = self.uploader_team
        # Charged, recorded and kept (or refused, and deleted); the scorer pool takes it from the store.
        try:  # the slow part of keeping it (an fsync), in parallel with other uploads' and outside any lock
            await ioloop.IOLoop.current().run_in_executor(self.ctx.disk, self.ctx.store.files.stage, upload)
        except OSError as exc:
            upload.path.unlink(missing_ok=True)
            log.error("an upload of %s could not be written: %s", self.user, exc)
            raise StorageFailed() from None
        incoming = submissions.Incoming(self.user, ch_id, upload, file_name, provenance, staged=True)
        sub = await self.ctx.accept(incoming)
        # As accepted (no score yet), without reading it back: a merge of the team in between
        # would make that read refuse a submission that is charged and kept.
        doc = submissions.public_view(sub, None, team=team_name)
        self.ctx.pending.add(doc, team_id, self.user)  # its polls are answered from memory
        self.send(doc, status=202)


def _content_length(request) -> int | None:
    """The declared body size, or None for a chunked body (tornado has refused malformed values)."""
    value = request.headers.get("Content-Length")
    return int(value) if value is not None else None


def _safe_name(name: str) -> str:
    """The file's base name as the client gave it, without paths or control characters."""
    base = re.split(r"[\\/]", name)[-1]
    return re.sub(r"[\x00-\x1f\x7f]", "", base)[:255] or "submission"


class SubmissionsHandler(Base):
    async def get(self) -> None:
        challenge = self.get_query_argument("challenge", None)
        self.send(await self.in_team(lambda s, team: submissions.for_team(s, team, challenge), poll=True))


# The longest a client may ask the service to hold its poll (``?wait=``, seconds).
MAX_WAIT = 30


class SubmissionHandler(Base):
    """``GET api/submissions/{id}[?wait=seconds]``: the submission as its team sees it.

    While it is pending the answer comes from the service's watch (no store transaction); with
    ``wait`` the service holds the request until it is finished or ``wait`` seconds have passed
    (a long poll: ``sandbox.submit`` asks once per submission instead of twice a second)."""

    async def get(self, submission_id: str) -> None:
        sid = row_id(submission_id, "submission", "提交")
        wait = self.get_query_argument("wait", "0")
        if not (wait.isascii() and wait.isdigit() and int(wait) <= MAX_WAIT):
            raise Refusal(400, "bad-query", f"wait must be 0–{MAX_WAIT} seconds", f"wait 须为 0–{MAX_WAIT} 秒")
        deadline = time.monotonic() + int(wait)
        while True:
            doc = self.ctx.pending.answer(sid, self.user)  # still pending at the last refresh: no store transaction
            if doc is None:
                doc, team_id = await self.in_team(
                    lambda s, team: (submissions.one_for_team(s, team, sid), team.id), poll=True
                )
                self.ctx.pending.add(doc, team_id, self.user)  # pending: its next polls are answered from memory
            left = deadline - time.monotonic()
            if doc["status"] not in submissions.PENDING or left <= 0 or self.request.connection.stream.closed():
                break
            await self.ctx.until_finished(sid, left)
        self.send(doc)


class SelectionHandler(Base):
    async def put(self, ch_id: str) -> None:
        ids = self.body_json().get("submissions")
        if not isinstance(ids, list) or not all(is_int(i) for i in ids):
            raise Refusal(400, "bad-selection", 'send {"submissions": [ids]}', '请发送 {"submissions": [编号]}')

        def select() -> list[int]:
            with self.ctx.store.session() as s:
                self.team(s)
                return submissions.select_final(s, self.ctx.contest, self.user, ch_id, ids)

        chosen = await self.ctx.write(select)
        self.send({"challenge": ch_id, "selected": chosen})


class LeaderboardHandler(Base):
    async def get(self, ch_id: str) -> None:
        ch = self.ctx.contest.challenge(ch_id)

        def standings() -> dict:
            with self.ctx.store.read_session() as s:
                rows = ranking.public_standings(s, ch)
                private = ranking.private_standings(s, ch) if ranking.revealed(s, ch.id) else None
            return {"challenge": ch.id, "public": rows, "private": private}

        # The same for every caller: computed at most once a second however many ask.
        self.send(await self.ctx.board(ch.id, standings))


# --- organizers -------------------------------------------------------------------------------


class AdminSubmissionsHandler(Base):
    async def get(self) -> None:
        self.require_organizer()
        from sqlalchemy import select

        limit = self.get_query_argument("limit", "200")
        status = self.get_query_argument("status", None)
        if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 5000) or status not in (None, *STATUSES):
            raise Refusal(
                400,
                "bad-query",
                f"limit must be 1–5000 and status one of {', '.join(STATUSES)}",
                f"limit 须为 1–5000，status 须为 {', '.join(STATUSES)} 之一",
            )
        q = select(Submission).order_by(Submission.id.desc()).limit(int(limit))
        if ch := self.get_query_argument("challenge", None):
            q = q.where(Submission.challenge == ch)
        if status:
            q = q.where(Submission.status == status)

        def listing() -> list[dict]:
            with self.ctx.store.read_session() as s:
                return [
                    submissions.public_view(sub, next((x for x in sub.scores if x.active), None))
                    for sub in s.scalars(q)
                ]

        self.send(await self.ctx.read(listing))


class GrantHandler(Base):
    async def post(self, team_name: str) -> None:
        self.require_organizer()
        doc = self.body_json()
        challenge = text_field(doc, "challenge", "grant-invalid")
        reason = text_field(doc, "reason", "grant-invalid")
        day_text = text_field(doc, "day", "grant-invalid", required=False)
        extra = doc.get("extra")
        try:
            day = dt.date.fromisoformat(day_text) if day_text else None
        except ValueError:
            day = False
        if not is_int(extra, 1, MAX_GRANT) or day is False:
            raise Refusal(
                400,
                "grant-invalid",
                f'send {{"challenge", "extra": 1–{MAX_GRANT}, "reason", "day": "YYYY-MM-DD" (optional)}}',
                f'请发送 {{"challenge", "extra": 1–{MAX_GRANT}, "reason", "day": "YYYY-MM-DD"（可选）}}',
            )

        def grant() -> dict:
            with self.ctx.store.session() as s:
                g = submissions.grant(
                    s, self.ctx.contest, team_name, challenge, extra, reason=reason, by=self.user, day=day
                )
                return {"team": team_name, "challenge": g.challenge, "day": g.day, "extra": g.extra, "reason": g.reason}

        self.send(await self.ctx.write(grant), 201)


class TeamsHandler(Base):
    """Organizers: list teams, or create one (``{"name", "display_name"?, "members"?}``)."""

    async def get(self) -> None:
        self.require_organizer()
        self.send(await self.ctx.read(self._listing))

    def _listing(self) -> list[dict]:
        with self.ctx.store.read_session() as s:
            return teams.listing(s)

    async def post(self) -> None:
        self.require_organizer()
        doc = self.body_json()
        name = text_field(doc, "name", "team-name-invalid")
        display_name = text_field(doc, "display_name", "team-name-invalid", required=False)
        members = doc.get("members") or []
        if not isinstance(members, list) or not all(isinstance(m, str) and m.strip() for m in members):
            raise Refusal(400, "bad-members", "members must be a list of user names", "members 必须是用户名列表")

        def create() -> str:
            with self.ctx.store.session() as s:
                return teams.create(
                    s, self.ctx.contest, name, actor=self.user, display_name=display_name, members=tuple(members)
                ).name

        name = await self.ctx.write(create)
        self.ctx.sync_groups_later()
        listing = await self.ctx.read(self._listing)
        self.send(next(t for t in listing if t["name"] == name), 201)


class TeamMembersHandler(Base):
    """Organizers: ``POST {"user"}`` adds a member, ``DELETE .../members/<user>`` removes one."""

    async def post(self, team_name: str) -> None:
        self.require_organizer()
        user = text_field(self.body_json(), "user", "bad-members")
        await self.ctx.write(self._change, teams.add_member, team_name, user)
        self.ctx.sync_groups_later()
        self.send({"team": team_name, "added": user}, 201)

    async def delete(self, team_name: str, user: str) -> None:
        self.require_organizer()
        await self.ctx.write(self._change, teams.remove_member, team_name, user)
        self.ctx.sync_groups_later()
        self.send({"team": team_name, "removed": user})

    def _change(self, change, team_name: str, user: str) -> None:
        with self.ctx.store.session() as s:
            change(s, self.ctx.contest, team_name, user, actor=self.user)


class TeamMergeHandler(Base):
    """Organizers: ``POST {"other"}`` merges team ``other`` into this one (Kaggle's quota rule)."""

    async def post(self, team_name: str) -> None:
        self.require_organizer()
        other = text_field(self.body_json(), "other", "merge-invalid")

        def merge() -> list[str]:
            with self.ctx.store.session() as s:
                merged = teams.merge(s, self.ctx.contest, team_name, other, actor=self.user)
                return [m.user for m in merged.members]

        members = await self.ctx.write(merge)
        self.ctx.sync_groups_later()
        self.send({"team": team_name, "merged": other, "members": members})


class RevealHandler(Base):
    async def post(self, ch_id: str) -> None:
        self.require_organizer()

        def reveal():
            with self.ctx.store.session() as s:
                return ranking.reveal(s, self.ctx.contest, ch_id, by=self.user)

        rec = await self.ctx.write(reveal)
        # Intervals and tied groups take a while: computed in the background, read by the pages.
        self.ctx.jobs.submit(integrity.attach_report, self.ctx.store, self.ctx.contest, self.ctx.paths, ch_id)
        self.send({"challenge": rec.challenge, "revealed_at": rec.revealed_at, "by": rec.by}, 201)


class PrivateStandingsHandler(Base):
    async def get(self, ch_id: str) -> None:
        self.require_organizer()
        ch = self.ctx.contest.challenge(ch_id)

        def standings() -> list[dict]:
            with self.ctx.store.read_session() as s:
                return ranking.private_standings(s, ch, organizer=True)

        self.send(await self.ctx.read(standings))


class RescoreHandler(Base):
    async def post(self, ch_id: str) -> None:
        self.require_organizer()
        reason = self.body_json().get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise Refusal(400, "reason-required", "say why you rescore (reason)", "请说明重新评分的原因（reason）")
        reason = reason.strip()
        run = partial(self._rescore, ch_id, reason)
        result = await asyncio.get_running_loop().run_in_executor(self.ctx.jobs, run)
        self.send(
            {"rescore": result.id, "scored": result.scored, "invalid": result.invalid, "changes": result.changes}, 201
        )

    def _rescore(self, ch_id: str, reason: str) -> ranking.RescoreResult:
        """(the jobs thread) Every file scored as the scorer pool scores: in a child process with limits."""
        ctx = self.ctx
        child = scorer.ScoringChild(scorer.Limits.from_env(), scorer.spill_folder(ctx.paths, "rescore"))

        def score(ch, path, paths) -> ScoreResult:
            outcome = child.run(scorer.score_in, ch, path, paths)
            if outcome.result is not None:
                return outcome.result
            why = outcome.error.en if outcome.error is not None else f"the scoring process died ({outcome.died})"
            log.error("rescoring %s: %s", path.name, why)
            return ScoreResult(valid=False, errors=[{"code": "scoring-failed", "message_en": why}])

        try:
            return ranking.rescore(ctx.store, ctx.contest, ctx.paths, ch_id, by=self.user, reason=reason, score=score)
        finally:
            child.close()


class RescoreDecisionHandler(Base):
    async def post(self, rescore_id: str) -> None:
        self.require_organizer()
        publish = self.body_json().get("publish")
        if not isinstance(publish, bool):
            raise Refusal(
                400,
                "bad-decision",
                'send {"publish": true} or {"publish": false}',
                '请发送 {"publish": true} 或 {"publish": false}',
            )
        rid = row_id(rescore_id, "pending rescore", "待确认的重新评分")

        def decide() -> dict:
            with self.ctx.store.session() as s:
                run = ranking.decide_rescore(s, rid, by=self.user, publish=publish)
                return {"rescore": run.id, "status": run.status}

        self.send(await self.ctx.write(decide))


class HealthHandler(Base):
    needs_user = False

    async def get(self) -> None:
        pending = await self.ctx.read(self._counts)
        self.send({"ok": True, "pending": pending.get("received", 0) + pending.get("validating", 0)})

    def _counts(self) -> dict[str, int]:
        with self.ctx.store.read_session() as s:
            return submissions.counts(s)


def make_app(ctx: Context, prefix: str) -> web.Application:
    p = prefix.rstrip("/") + "/api"
    routes = [
        (rf"{p}/openapi.json", OpenAPIHandler),
        (rf"{p}/health", HealthHandler),
        (rf"{p}/me", MeHandler),
        (rf"{p}/challenges", ChallengesHandler),
        (rf"{p}/challenges/([\w-]+)/submissions", UploadHandler),
        (rf"{p}/challenges/([\w-]+)/selection", SelectionHandler),
        (rf"{p}/challenges/([\w-]+)/leaderboard", LeaderboardHandler),
        (rf"{p}/submissions", SubmissionsHandler),
        (rf"{p}/submissions/(\d+)", SubmissionHandler),
        (rf"{p}/admin/submissions", AdminSubmissionsHandler),
        (rf"{p}/admin/teams", TeamsHandler),
        (rf"{p}/admin/teams/([^/]+)/members", TeamMembersHandler),
        (rf"{p}/admin/teams/([^/]+)/members/([^/]+)", TeamMembersHandler),
        (rf"{p}/admin/teams/([^/]+)/merge", TeamMergeHandler),
        (rf"{p}/admin/teams/([^/]+)/grants", GrantHandler),
        (rf"{p}/admin/challenges/([\w-]+)/reveal", RevealHandler),
        (rf"{p}/admin/challenges/([\w-]+)/private", PrivateStandingsHandler),
        (rf"{p}/admin/challenges/([\w-]+)/rescores", RescoreHandler),
        (rf"{p}/admin/rescores/(\d+)", RescoreDecisionHandler),
    ]
    return web.Application(
        [(r, h, {"ctx": ctx}) for r, h in routes],
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx},
    )


class NotFoundHandler(Base):
    needs_user = False

    def prepare(self) -> None:
        raise Refusal(
            404, "not-found", "no such endpoint; see api/openapi.json", "没有这个接口；请查看 api/openapi.json"
        )


def die_with_the_hub() -> None:
    """End this process when the hub that started it dies (Linux).

    The hub starts its managed services in sessions of their own, so nothing ends them when
    the hub is killed (SIGKILL, the OOM killer); a hub started again then starts another
    service that cannot bind the port, and restarts it every 30 s for ever, while the orphan
    answers unsupervised. Uploads cut short this way are swept by the next service's start;
    submissions accepted wait in the store for the scorers.
    """
    if not os.environ.get("JUPYTERHUB_API_URL"):
        return  # not started by a hub (tests, a developer's terminal)
    try:
        alive = die_with_parent()
    except OSError as exc:
        log.warning("cannot ask to be ended with the hub (%s)", exc)
        return
    if not alive:  # the hub died before we asked
        sys.exit("the hub that started this service is gone")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s submit] %(message)s")
    die_with_the_hub()
    paths = Paths.from_env()
    contest = contest_config.Watched(paths)
    started = clock.now()
    store = store_mod.connect(paths)
    # Uploads a killed service left half-written were never accepted: nothing names them.
    store.files.sweep_incoming(before=started.timestamp())
    hub_auth = HubAuth(allow_token_in_url=False, cache_max_age=60)
    ctx = Context(paths, contest, store, hub_auth, teams_from_groups=TEAMS_FROM_GROUPS)
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    port = int(os.environ.get("CONTESTHUB_PORT") or url.port or 10101)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/submit/")
    app = make_app(ctx, prefix)
    server = httpserver.HTTPServer(app, max_body_size=ctx.contest.upload_limit + 1, max_buffer_size=1 << 20)
    server.listen(port, url.hostname or "127.0.0.1")
    ioloop.PeriodicCallback(ctx.refresh_pending, WATCH_EVERY * 1000).start()
    ioloop.PeriodicCallback(ctx.sync_groups_later, 60_000).start()
    ctx.sync_groups_later()
    log.info("submission service listening on %s:%s%s", url.hostname, port, prefix)
    try:
        ioloop.IOLoop.current().start()
    except KeyboardInterrupt:  # the hub stopping its services (Ctrl-C on `contesthub up`): not an error
        log.info("submission service stopped")


if __name__ == "__main__":
    main()
