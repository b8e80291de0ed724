"""What every handler shares (JupyterHub's ``apihandlers/base.py``): who calls, the caller's
team, JSON in and out, and errors as ``{"status", "code", "message", ...}`` with the HTTP status
each error class carries (``http_status``), never a traceback.

The caller is identified as JupyterHub's own :class:`~jupyterhub.services.auth.HubAuthenticated`
mixin does it: the token's owner from the hub (cached a minute), then ``check_hub_user``: only
tokens holding ``access:services!service=submit`` get in. The token is looked up without
blocking the event loop (``user_for_token(..., sync=False)``), which the mixin's synchronous
``get_current_user`` would do."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

from jupyterhub.services.auth import HubAuth, HubAuthenticated, UserNotAllowed
from tornado import web

from hub.submit_service.context import Context
from leaderboard import roles, submissions, teams
from leaderboard.store import store_unavailable
from sandbox import statuses
from sandbox.errors import ContesthubError, NotFound

log = logging.getLogger("contesthub.submit")
OPENAPI = Path(__file__).resolve().parents[1] / "openapi.json"


class Base(HubAuthenticated, web.RequestHandler):
    ctx: Context
    identity: dict
    # Never every identified user: a service started without its access scope lets nobody in.
    allow_all = False

    def initialize(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def hub_auth(self) -> HubAuth:
        """The process's one HubAuth (its cache of tokens is shared by every request)."""
        return self.ctx.hub_auth

    @property
    def hub_scopes(self) -> set[str]:
        """What a caller's token must hold: ``access:services!service=<this service>``, as the hub
        says (``JUPYTERHUB_OAUTH_ACCESS_SCOPES``), else that scope for the service's name."""
        name = os.environ.get("JUPYTERHUB_SERVICE_NAME") or "submit"
        return set(self.hub_auth.access_scopes or ()) or {f"access:services!service={name}"}

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
            self.identity = self.check_hub_user(model)  # jupyterhub's own scope check
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
        return roles.is_organizer(self.identity)

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
        for name in roles.teams_of_groups(self.identity.get("groups", []))[:1]:
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
    """The status an error is answered with: its class says (``http_status``), a Refusal its own."""
    return e.http_status


class Refusal(ContesthubError):
    """A refusal by the service itself (authentication, permissions, request shape), with its HTTP status."""

    def __init__(self, status: int, code: str, en: str, zh: str):
        super().__init__(en, zh, code=code)
        self.status = self.http_status = status


MAX_ID = 2**63 - 1  # the largest row id the databases store; a larger number names no row


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


class HealthHandler(Base):
    needs_user = False

    async def get(self) -> None:
        pending = await self.ctx.read(self._counts)
        self.send({"ok": True, "pending": sum(pending.get(s, 0) for s in statuses.PENDING)})

    def _counts(self) -> dict[str, int]:
        with self.ctx.store.read_session() as s:
            return submissions.counts(s)


class NotFoundHandler(Base):
    needs_user = False

    def prepare(self) -> None:
        raise Refusal(
            404, "not-found", "no such endpoint; see api/openapi.json", "没有这个接口；请查看 api/openapi.json"
        )


default_handlers = [
    (r"/openapi.json", OpenAPIHandler),
    (r"/health", HealthHandler),
]
