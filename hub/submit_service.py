"""The submission service: the contest engine over HTTP, as a JupyterHub-managed service.

It runs at ``/services/submit/`` behind the hub's proxy. Every request carries a JupyterHub
token (``Authorization: token ...``); jupyterhub's own :class:`HubAuth` identifies it, and
only tokens of *users* that hold ``access:services!service=submit`` get in (a notebook's
token has it through ``c.Spawner.server_token_scopes``). The caller's team is their team in
the contest store, which follows their JupyterHub groups: a user whose identity provider put
them in a group named ``team-<name>`` (see ``CONTESTHUB_TEAM_GROUP_PREFIX``) joins that team
on first contact. Organizers are the members of the ``organizers`` group (which the hub's
config also makes admins).

Uploads are streamed to disk as they arrive (never held in memory) with the contest's size
limit, then charged against the quota and recorded in one transaction; scoring runs in a
worker thread and the client polls the submission. The OpenAPI description is served at
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
import re
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

from jupyterhub.services.auth import HubAuth, UserNotAllowed
from tornado import httpserver, ioloop, web

from hub import groups
from leaderboard import contest as contest_config
from leaderboard import ranking, submissions, teams
from leaderboard import store as store_mod
from leaderboard.models import Submission, utcnow
from leaderboard.store import Store, UploadTooLarge
from sandbox.errors import ContesthubError, NotFound
from sandbox.settings import Paths

log = logging.getLogger("contesthub.submit")

TEAM_PREFIX = os.environ.get("CONTESTHUB_TEAM_GROUP_PREFIX", "team-")
ORGANIZERS = os.environ.get("CONTESTHUB_ORGANIZER_GROUP", "organizers")
OPENAPI = Path(__file__).with_name("openapi.json")


class Context:
    """What every handler shares: the contest, the store, the scorer threads, the hub's auth."""

    def __init__(self, paths: Paths, contest: contest_config.Contest, store: Store, hub_auth: HubAuth, workers: int):
        self.paths, self.contest, self.store, self.hub_auth = paths, contest, store, hub_auth
        self.scorers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scorer")
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="groups")

    def sync_groups_later(self) -> None:
        """Mirror the store's teams as hub groups, in the background (see hub.groups)."""
        api, token = os.environ.get("JUPYTERHUB_API_URL"), os.environ.get("JUPYTERHUB_API_TOKEN")
        if api and token:
            self.background.submit(self._sync, api, token)

    def _sync(self, api: str, token: str) -> None:
        try:
            groups.reconcile(self.store, api, token, TEAM_PREFIX)
        except Exception as exc:  # the hub may be restarting; the next round retries
            log.warning("could not mirror teams as hub groups: %s", exc)

    def score_later(self, submission_id: int) -> None:
        self.scorers.submit(self._score, submission_id)

    def _score(self, submission_id: int) -> None:
        try:
            submissions.score(self.store, self.contest, self.paths, submission_id)
        except Exception:  # recorded by score() itself; never kill the worker
            log.exception("scoring submission %s failed", submission_id)


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
        """The caller's team in the store; joins the team of a ``team-...`` hub group on first contact."""
        team = teams.team_of(session, self.user)
        if team is not None:
            return team
        for group in sorted(self.identity.get("groups", [])):
            if group.startswith(TEAM_PREFIX):
                name = group.removeprefix(TEAM_PREFIX)
                try:
                    teams.get(session, name)
                except NotFound:
                    teams.create(session, self.ctx.contest, name, actor="identity-provider")
                teams.add_member(session, self.ctx.contest, name, self.user, actor="identity-provider")
                return teams.get(session, name)
        raise Refusal(
            409,
            "no-team",
            f"{self.user} is not in a team yet; ask the organizers",
            f"{self.user} 尚未加入队伍，请联系组织方",
        )

    def body_json(self) -> dict:
        try:
            doc = json.loads(self.request.body or b"{}")
        except ValueError:
            raise Refusal(400, "bad-json", "the request body is not JSON", "请求体不是 JSON") from None
        if not isinstance(doc, dict):
            raise Refusal(400, "bad-json", "the request body must be a JSON object", "请求体必须是 JSON 对象")
        return doc

    def send(self, doc, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(doc, ensure_ascii=False, default=_json_default))

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ContesthubError):
            doc = exc.to_dict(self.lang)
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            reason = exc.log_message or self._reason
            doc = {"code": f"http-{status_code}", "message": reason, "message_en": reason, "message_zh": reason}
        else:
            doc = {
                "code": "internal-error",
                "message": "服务内部错误，组织方已收到通知；你的提交次数未受影响",
                "message_en": "internal error; the organizers were notified and your quota was not touched",
                "message_zh": "服务内部错误，组织方已收到通知；你的提交次数未受影响",
            }
        doc["status"] = status_code
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
        else:
            super()._handle_request_exception(e)


def http_status(e: ContesthubError) -> int:
    if isinstance(e, Refusal):
        return e.status
    if isinstance(e, NotFound):
        return 404
    return {"quota-exceeded": 429, "file-too-large": 413, "challenge-closed": 403, "challenge-not-open": 403}.get(
        e.code, 400
    )


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
        self.send(doc)


class MeHandler(Base):
    def get(self) -> None:
        with self.ctx.store.session() as s:
            team = teams.team_of(s, self.user)
            quotas = (
                [submissions.quota(s, self.ctx.contest, team, ch.id) for ch in self.ctx.contest.challenges]
                if team
                else []
            )
            self.send(
                {
                    "user": self.user,
                    "organizer": self.organizer,
                    "team": team
                    and {
                        "name": team.name,
                        "display_name": team.display_name,
                        "members": [m.user for m in team.members],
                    },
                    "quotas": quotas,
                }
            )


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


@web.stream_request_body
class UploadHandler(Base):
    """``POST api/challenges/{id}/submissions``: the raw file as the body, streamed to disk."""

    async def prepare(self) -> None:
        await super().prepare()
        self.sink = None
        ch_id = self.path_args[0]
        self.ctx.contest.challenge(ch_id)  # an unknown challenge fails before any byte is stored
        limit = self.ctx.contest.upload_limit
        length = int(self.request.headers.get("Content-Length") or 0)
        if length > limit:
            raise UploadTooLarge(
                f"the file is {length / (1 << 20):.1f} MiB; the limit is {limit >> 20} MiB",
                f"文件大小为 {length / (1 << 20):.1f} MiB，超过上限 {limit >> 20} MiB",
            )
        self.request.connection.set_max_body_size(limit + 1)
        self.too_large = None
        self.sink = self.ctx.store.files.open_upload(limit)

    def data_received(self, chunk: bytes) -> None:
        if self.too_large is not None:
            return  # already refused and deleted; the rest of the body is dropped
        try:
            self.sink.write(chunk)
        except UploadTooLarge as exc:
            self.too_large = exc

    def on_connection_close(self) -> None:
        sink = getattr(self, "sink", None)
        if sink is not None:
            sink.abort()  # the client went away mid-upload: no partial file remains

    async def post(self, ch_id: str) -> None:
        if self.too_large is not None:
            raise self.too_large
        upload, self.sink = self.sink.close(), None
        if upload.size == 0:
            upload.path.unlink(missing_ok=True)
            raise ContesthubError("the upload is empty", "上传的文件为空", code="empty-file")
        provenance = {k: self.get_query_argument(k, None) for k in ("notebook", "kernel", "sandbox_version", "client")}
        file_name = _safe_name(self.get_query_argument("file_name", "") or "submission")
        with_ctx = partial(
            submissions.accept,
            self.ctx.store,
            self.ctx.contest,
            user=self.user,
            challenge_id=ch_id,
            upload=upload,
            file_name=file_name,
            provenance=provenance,
        )
        loop = asyncio.get_running_loop()
        with self.ctx.store.session() as s:
            self.team(s)  # joins the identity provider's team first, if needed
        sub: Submission = await loop.run_in_executor(None, with_ctx)
        self.ctx.score_later(sub.id)
        with self.ctx.store.session() as s:
            self.send(submissions.one_for_team(s, self.team(s), sub.id), status=202)


def _safe_name(name: str) -> str:
    """The file's base name as the client gave it, without paths or control characters."""
    base = re.split(r"[\\/]", name)[-1]
    return re.sub(r"[\x00-\x1f\x7f]", "", base)[:255] or "submission"


class SubmissionsHandler(Base):
    def get(self) -> None:
        with self.ctx.store.session() as s:
            self.send(submissions.for_team(s, self.team(s), self.get_query_argument("challenge", None)))


class SubmissionHandler(Base):
    def get(self, submission_id: str) -> None:
        with self.ctx.store.session() as s:
            self.send(submissions.one_for_team(s, self.team(s), int(submission_id)))


class SelectionHandler(Base):
    def put(self, ch_id: str) -> None:
        ids = self.body_json().get("submissions")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise Refusal(400, "bad-selection", 'send {"submissions": [ids]}', '请发送 {"submissions": [编号]}')
        with self.ctx.store.session() as s:
            self.team(s)
            chosen = submissions.select_final(s, self.ctx.contest, self.user, ch_id, ids)
        self.send({"challenge": ch_id, "selected": chosen})


class LeaderboardHandler(Base):
    def get(self, ch_id: str) -> None:
        ch = self.ctx.contest.challenge(ch_id)
        with self.ctx.store.session() as s:
            rows = ranking.public_standings(s, ch)
            private = ranking.private_standings(s, ch) if ranking.revealed(s, ch.id) else None
        self.send({"challenge": ch.id, "public": rows, "private": private})


# --- organizers -------------------------------------------------------------------------------


class AdminSubmissionsHandler(Base):
    def get(self) -> None:
        self.require_organizer()
        from sqlalchemy import select

        limit = min(int(self.get_query_argument("limit", "200")), 5000)
        q = select(Submission).order_by(Submission.id.desc()).limit(limit)
        if ch := self.get_query_argument("challenge", None):
            q = q.where(Submission.challenge == ch)
        if status := self.get_query_argument("status", None):
            q = q.where(Submission.status == status)
        with self.ctx.store.session() as s:
            rows = [
                submissions.public_view(sub, next((x for x in sub.scores if x.active), None)) for sub in s.scalars(q)
            ]
        self.send(rows)


class GrantHandler(Base):
    def post(self, team_name: str) -> None:
        self.require_organizer()
        doc = self.body_json()
        day = dt.date.fromisoformat(doc["day"]) if doc.get("day") else None
        with self.ctx.store.session() as s:
            g = submissions.grant(
                s,
                self.ctx.contest,
                team_name,
                str(doc.get("challenge", "")),
                int(doc.get("extra", 0)),
                reason=str(doc.get("reason", "")),
                by=self.user,
                day=day,
            )
            self.send(
                {"team": team_name, "challenge": g.challenge, "day": g.day, "extra": g.extra, "reason": g.reason}, 201
            )


class TeamsHandler(Base):
    """Organizers: list teams, or create one (``{"name", "display_name"?, "members"?}``)."""

    def get(self) -> None:
        self.require_organizer()
        with self.ctx.store.session() as s:
            self.send(teams.listing(s))

    def post(self) -> None:
        self.require_organizer()
        doc = self.body_json()
        members = doc.get("members") or []
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise Refusal(400, "bad-members", "members must be a list of user names", "members 必须是用户名列表")
        with self.ctx.store.session() as s:
            team = teams.create(
                s,
                self.ctx.contest,
                str(doc.get("name", "")),
                actor=self.user,
                display_name=doc.get("display_name"),
                members=tuple(members),
            )
            name = team.name
        self.ctx.sync_groups_later()
        with self.ctx.store.session() as s:
            self.send(next(t for t in teams.listing(s) if t["name"] == name), 201)


class TeamMembersHandler(Base):
    """Organizers: ``POST {"user"}`` adds a member, ``DELETE .../members/<user>`` removes one."""

    def post(self, team_name: str) -> None:
        self.require_organizer()
        user = str(self.body_json().get("user", ""))
        with self.ctx.store.session() as s:
            teams.add_member(s, self.ctx.contest, team_name, user, actor=self.user)
        self.ctx.sync_groups_later()
        self.send({"team": team_name, "added": user}, 201)

    def delete(self, team_name: str, user: str) -> None:
        self.require_organizer()
        with self.ctx.store.session() as s:
            teams.remove_member(s, self.ctx.contest, team_name, user, actor=self.user)
        self.ctx.sync_groups_later()
        self.send({"team": team_name, "removed": user})


class TeamMergeHandler(Base):
    """Organizers: ``POST {"other"}`` merges team ``other`` into this one (Kaggle's quota rule)."""

    def post(self, team_name: str) -> None:
        self.require_organizer()
        other = str(self.body_json().get("other", ""))
        with self.ctx.store.session() as s:
            merged = teams.merge(s, self.ctx.contest, team_name, other, actor=self.user)
            members = [m.user for m in merged.members]
        self.ctx.sync_groups_later()
        self.send({"team": team_name, "merged": other, "members": members})


class RevealHandler(Base):
    def post(self, ch_id: str) -> None:
        self.require_organizer()
        with self.ctx.store.session() as s:
            rec = ranking.reveal(s, self.ctx.contest, ch_id, by=self.user)
            self.send({"challenge": rec.challenge, "revealed_at": rec.revealed_at, "by": rec.by}, 201)


class PrivateStandingsHandler(Base):
    def get(self, ch_id: str) -> None:
        self.require_organizer()
        with self.ctx.store.session() as s:
            self.send(ranking.private_standings(s, self.ctx.contest.challenge(ch_id), organizer=True))


class RescoreHandler(Base):
    async def post(self, ch_id: str) -> None:
        self.require_organizer()
        reason = str(self.body_json().get("reason", "")).strip()
        if not reason:
            raise Refusal(400, "reason-required", "say why you rescore (reason)", "请说明重新评分的原因（reason）")
        run = partial(
            ranking.rescore, self.ctx.store, self.ctx.contest, self.ctx.paths, ch_id, by=self.user, reason=reason
        )
        result = await asyncio.get_running_loop().run_in_executor(self.ctx.scorers, run)
        self.send(
            {"rescore": result.id, "scored": result.scored, "invalid": result.invalid, "changes": result.changes}, 201
        )


class RescoreDecisionHandler(Base):
    def post(self, rescore_id: str) -> None:
        self.require_organizer()
        publish = self.body_json().get("publish")
        if not isinstance(publish, bool):
            raise Refusal(
                400,
                "bad-decision",
                'send {"publish": true} or {"publish": false}',
                '请发送 {"publish": true} 或 {"publish": false}',
            )
        with self.ctx.store.session() as s:
            run = ranking.decide_rescore(s, int(rescore_id), by=self.user, publish=publish)
            self.send({"rescore": run.id, "status": run.status})


class HealthHandler(Base):
    needs_user = False

    def get(self) -> None:
        with self.ctx.store.session() as s:
            pending = submissions.counts(s)
        self.send({"ok": True, "pending": pending.get("received", 0) + pending.get("validating", 0)})


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


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s submit] %(message)s")
    paths = Paths.from_env()
    contest = contest_config.load()
    store = store_mod.connect(paths)
    hub_auth = HubAuth(allow_token_in_url=False, cache_max_age=60)
    ctx = Context(paths, contest, store, hub_auth, workers=int(os.environ.get("CONTESTHUB_SCORERS", "2")))
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    port = int(os.environ.get("CONTESTHUB_PORT") or url.port or 10101)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/submit/")
    app = make_app(ctx, prefix)
    server = httpserver.HTTPServer(app, max_body_size=contest.upload_limit + 1, max_buffer_size=1 << 20)
    server.listen(port, url.hostname or "127.0.0.1")
    # Interrupted submissions are finished in the scorer threads while requests are served.
    ctx.scorers.submit(submissions.recover, store, contest, paths, utcnow())
    ioloop.PeriodicCallback(ctx.sync_groups_later, 60_000).start()
    ctx.sync_groups_later()
    log.info("submission service listening on %s:%s%s", url.hostname, port, prefix)
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
