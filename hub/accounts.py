"""Accounts: real local accounts with hashed passwords, self sign-up approved by an organizer.

Why not jupyterhub-nativeauthenticator (which does exactly this): its 1.3.0 release, the
newest, does not work with JupyterHub 6. Every login form submission ends in a 500, because
its login handler calls ``self.statsd``, which JupyterHub 6 removed (jupyterhub#5407), and
the error page then fails as well (its ``_render`` does not take JupyterHub 6's ``sync``
argument); it also keeps its table through ``Authenticator.db``, which JupyterHub deprecates.
So this module is a small authenticator of our own on JupyterHub's helpers (its login form,
``BaseHandler``, ``needs_scope``, templates), with bcrypt hashes:

* **sign-up** at ``/hub/signup``: name, password twice. The account waits for approval;
  its password is checked at login but the login is refused until an organizer approves.
* **approval** at ``/hub/accounts`` (organizers, i.e. the ``admin:users`` scope): approve or
  reject each pending sign-up. A sign-up whose name a contest team already lists (a roster, or
  ``contesthub teams create/add``) shows that team: approving it gives whoever signed up that
  seat, so the organizer sees it before deciding.
* **password change** at ``/hub/accounts/password`` for a logged-in user.
* **one-time passwords**: accounts made from a roster (``contesthub teams import``) get a
  generated password that someone else handed out, so it works once: the login goes to
  the password page, and no server starts until the member has chosen a password of their own.
* **the organizer**, made by ``contesthub up`` on first start (:func:`prepare_organizer`):
  a generated password printed once, only its hash stored; config/jupyterhub_config.py puts it
  in the ``organizers`` group, which holds the admin role. A restart finds the account and keeps it.
* **names** follow hub/names.py, the rule the login form and the roster import use too.

Accounts live in a table ``contesthub_accounts`` of the hub's own database (SQLite in the
private root, or PostgreSQL), through an engine of our own; no plain password is stored
anywhere, and no password is shared between accounts.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

import bcrypt
from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler, LoginHandler
from jupyterhub.scopes import needs_scope
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    false,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from tornado import web
from tornado.httputil import url_concat
from traitlets import Bool, Float, Integer, List, Unicode

from hub.login_throttle import Policy, Throttle, client_address
from hub.names import RULE_EN, RULE_ZH, valid_username
from hub.runtime import ensure_dir
from sandbox import clock

PENDING, APPROVED = "pending", "approved"
# Who made an account: its owner at /hub/signup, a roster import, or `contesthub up` (the organizer).
SIGNUP, ROSTER, ORGANIZER = "signup", "roster", "organizer"
# Refused at sign-up whatever their length (the most common leaked passwords of 8+ characters).
COMMON_PASSWORDS = frozenset(
    [
        "password",
        "password1",
        "password123",
        "12345678",
        "123456789",
        "1234567890",
        "qwertyuiop",
        "qwerty123",
        "11111111",
        "00000000",
        "88888888",
        "iloveyou",
        "abcdefgh",
        "abc12345",
        "1q2w3e4r",
        "1qaz2wsx",
        "zaq12wsx",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "welcome1",
        "admin123",
        "letmein1",
        "passw0rd",
        "p@ssw0rd",
        "123qweasd",
        "a1234567",
        "aa123456",
        "woaini1314",
        "5201314520",
    ]
)

metadata = MetaData()
accounts = Table(
    "contesthub_accounts",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("password_hash", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Column("decided_by", String(64)),
    # A generated password handed out by someone else: to be replaced at the first login.
    Column("must_change_password", Boolean, nullable=False, server_default=false()),
    # SIGNUP, ROSTER or ORGANIZER: a roster import adopts only accounts a roster import made.
    Column("origin", String(16), nullable=False, server_default=SIGNUP),
)


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt()).decode("ascii")


def check_password(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed.encode("ascii"))
    except ValueError:
        return False


def new_password() -> str:
    return secrets.token_urlsafe(12)  # 16 characters, 96 bits


# A hash to check against when the account does not exist, so the time does not tell.
_DUMMY_HASH = hash_password(secrets.token_hex(8))


@dataclass(frozen=True)
class Account:
    name: str
    password_hash: str
    status: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    must_change_password: bool = False
    origin: str = SIGNUP

    @property
    def approved(self) -> bool:
        return self.status == APPROVED


def make_engine(db_url: str) -> Engine:
    if db_url.startswith("sqlite"):
        if db_url.startswith("sqlite:///") and db_url != "sqlite:///:memory:":
            ensure_dir(Path(db_url.removeprefix("sqlite:///")).parent)  # the private runtime dir
        engine = create_engine(db_url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _busy(dbapi_con, _record) -> None:
            dbapi_con.execute("PRAGMA busy_timeout=30000")

        return engine
    return create_engine(db_url, pool_pre_ping=True)


class AccountStore:
    """The accounts table: create, look up, approve, reject, change passwords."""

    def __init__(self, db_url: str):
        self.engine = make_engine(db_url)
        metadata.create_all(self.engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Bring a table made by an earlier contesthub up to date (accounts survive upgrades).

        The table's changes so far are added columns with defaults, which both SQLite and
        PostgreSQL add in place; a larger change would earn Alembic, as the store has.
        """
        have = {c["name"] for c in inspect(self.engine).get_columns(accounts.name)}
        if "must_change_password" not in have:
            default = "0" if self.engine.dialect.name == "sqlite" else "false"
            with self.engine.begin() as con:
                column = f"must_change_password BOOLEAN NOT NULL DEFAULT {default}"
                con.execute(text(f"ALTER TABLE {accounts.name} ADD COLUMN {column}"))
        if "origin" not in have:
            with self.engine.begin() as con:
                con.execute(
                    text(f"ALTER TABLE {accounts.name} ADD COLUMN origin VARCHAR(16) NOT NULL DEFAULT 'signup'")
                )
                # Earlier versions made approved accounts in one step only for the organizer
                # (by `contesthub up`) and for roster members; sign-ups were approved later.
                made_approved = (accounts.c.status == APPROVED) & (accounts.c.decided_at == accounts.c.created_at)
                con.execute(
                    update(accounts)
                    .where(made_approved, accounts.c.decided_by == "contesthub up")
                    .values(origin=ORGANIZER)
                )
                con.execute(
                    update(accounts)
                    .where(made_approved, accounts.c.decided_by != "contesthub up")
                    .values(origin=ROSTER)
                )

    def close(self) -> None:
        self.engine.dispose()

    def get(self, name: str) -> Account | None:
        with self.engine.connect() as con:
            row = con.execute(select(accounts).where(accounts.c.name == name)).first()
        return Account(**row._mapping) if row else None

    def list(self, status: str | None = None) -> list[Account]:
        query = select(accounts).order_by(accounts.c.created_at, accounts.c.name)
        if status:
            query = query.where(accounts.c.status == status)
        with self.engine.connect() as con:
            return [Account(**row._mapping) for row in con.execute(query)]

    def create(
        self,
        name: str,
        password: str,
        *,
        approved: bool = False,
        by: str | None = None,
        one_time: bool = False,
        origin: str = SIGNUP,
    ) -> Account:
        """A new account; ``one_time``: its password must be replaced at the first login.

        Raises sqlalchemy's IntegrityError when the name is taken."""
        now = clock.now()
        values = {
            "name": name,
            "password_hash": hash_password(password),
            "status": APPROVED if approved else PENDING,
            "created_at": now,
            "decided_at": now if approved else None,
            "decided_by": by if approved else None,
            "must_change_password": one_time,
            "origin": origin,
        }
        with self.engine.begin() as con:
            con.execute(accounts.insert().values(**values))
        return Account(**values)

    def approve(self, name: str, by: str) -> bool:
        with self.engine.begin() as con:
            done = con.execute(
                update(accounts)
                .where(accounts.c.name == name, accounts.c.status == PENDING)
                .values(status=APPROVED, decided_at=clock.now(), decided_by=by)
            )
        return done.rowcount == 1

    def reject(self, name: str) -> bool:
        """Remove a pending sign-up (the name becomes free again)."""
        with self.engine.begin() as con:
            done = con.execute(delete(accounts).where(accounts.c.name == name, accounts.c.status == PENDING))
        return done.rowcount == 1

    def remove(self, name: str) -> None:
        with self.engine.begin() as con:
            con.execute(delete(accounts).where(accounts.c.name == name))

    def set_password(self, name: str, password: str) -> bool:
        """The account's own new password (which ends a one-time password's term)."""
        with self.engine.begin() as con:
            done = con.execute(
                update(accounts)
                .where(accounts.c.name == name)
                .values(password_hash=hash_password(password), must_change_password=False)
            )
        return done.rowcount == 1


def prepare_organizer(db_url: str, name: str, *, reset: bool = False) -> str | None:
    """On first start (or with ``reset``): the organizer account with a new generated password.

    Returns the password, to be shown once; None when the account exists and is kept.
    """
    store = AccountStore(db_url)
    try:
        existing = store.get(name)
        if existing and not reset:
            return None
        password = new_password()
        if existing:
            store.set_password(name, password)
            if not existing.approved:
                store.approve(name, by="contesthub up")
        else:
            store.create(name, password, approved=True, by="contesthub up", origin=ORGANIZER)
        return password
    finally:
        store.close()


def password_problem(name: str, password: str, confirmation: str, min_length: int) -> tuple[str, str] | None:
    """What is wrong with a new password, as (en, zh); None when it is acceptable."""
    if password != confirmation:
        return "The two passwords differ.", "两次输入的密码不一致。"
    if len(password) < min_length:
        return (
            f"The password needs at least {min_length} characters.",
            f"密码至少需要 {min_length} 个字符。",
        )
    if len(password.encode("utf-8")) > 72:  # bcrypt's limit
        return "The password can have at most 72 bytes.", "密码最多 72 个字节。"
    if password.lower() in COMMON_PASSWORDS or name.lower() in password.lower():
        return (
            "This password is too easy to guess (a common password, or it contains the name).",
            "密码太容易被猜到（常见密码，或包含用户名）。",
        )
    return None


class LocalAccountsAuthenticator(Authenticator):
    """Local accounts with bcrypt hashes; sign-up, organizer approval, password change."""

    db_url = Unicode("sqlite:///accounts.sqlite", config=True, help="Where the accounts table lives.")
    contest_db_url = Unicode(
        "",
        config=True,
        help="The contest store, read here only to show on /hub/accounts the team a pending sign-up's "
        "name is listed in. Empty: not shown.",
    )
    min_password_length = Integer(10, config=True, help="Shortest password accepted at sign-up.")
    enable_signup = Bool(True, config=True, help="Whether /hub/signup accepts new accounts.")
    # Failed logins (hub/login_throttle.py): per client and name, per client, hub-wide.
    login_free_failures = Integer(
        5, config=True, help="Failed logins of one client for one name before each further attempt waits."
    )
    login_backoff_seconds = Float(
        2.0, config=True, help="The first wait; it doubles with each further failure of that client and name."
    )
    login_max_backoff_seconds = Float(300.0, config=True, help="The longest wait between two attempts.")
    login_client_free_failures = Integer(
        30, config=True, help="Failed logins of one client over all names before its attempts wait."
    )
    login_global_failures_per_minute = Integer(
        120,
        config=True,
        help="Failed logins a minute, hub-wide, beyond which every client that failed recently waits "
        "login_global_wait_seconds between attempts (clients that have not failed never wait).",
    )
    login_global_wait_seconds = Float(10.0, config=True, help="See login_global_failures_per_minute.")
    trusted_proxies = List(
        Unicode(),
        config=True,
        help="Addresses or networks of proxies in front of the hub's configurable-http-proxy whose "
        "X-Forwarded-For entries are believed when telling clients apart (a TLS terminator).",
    )

    @cached_property
    def store(self) -> AccountStore:
        return AccountStore(self.db_url)

    @cached_property
    def throttle(self) -> Throttle:
        return Throttle(
            Policy(
                free_failures=self.login_free_failures,
                backoff=self.login_backoff_seconds,
                max_backoff=self.login_max_backoff_seconds,
                client_free_failures=self.login_client_free_failures,
                global_failures_per_minute=self.login_global_failures_per_minute,
                global_wait=self.login_global_wait_seconds,
            )
        )

    async def authenticate(self, handler, data):
        name = self.normalize_username(data.get("username", ""))
        password = data.get("password", "")
        client = client_address(handler.request, trusted_proxies=self.trusted_proxies)
        wait = self.throttle.attempt(client, name)
        if wait > 0:  # refused before any password is checked
            seconds = math.ceil(wait)
            self.log.warning("Login for %r from %s held back for %s s (failed logins)", name[:64], client, seconds)
            error = web.HTTPError(
                429,
                f"登录失败次数过多，请 {seconds} 秒后再试。Too many failed logins from your address: "
                f"try again in {seconds} s.",
            )
            error.headers = {"Retry-After": str(seconds)}  # JupyterHub's write_error sends these
            raise error
        account = await asyncio.to_thread(self.store.get, name) if name else None
        ok = await asyncio.to_thread(check_password, password, account.password_hash if account else _DUMMY_HASH)
        if not (account and ok):
            return None
        self.throttle.succeeded(client, name)
        if not account.approved:
            raise web.HTTPError(
                403,
                "Your account is waiting for an organizer's approval. 您的账号正在等待组织者审核。",
            )
        return name

    @cached_property
    def _contest_engine(self) -> Engine:
        from leaderboard.store import make_engine

        return make_engine(self.contest_db_url, readonly=True)

    def claimed_teams(self, names: list[str]) -> dict[str, str]:
        """The contest team each of ``names`` is listed in (read from the contest store)."""
        url = self.contest_db_url
        if not (url and names):
            return {}
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            return {}  # no contest store yet (the submission service makes it): no team either
        from leaderboard import teams

        try:
            with Session(self._contest_engine) as session, session.begin():
                return teams.teams_of(session, names)
        except DBAPIError as exc:  # not migrated yet, or the database is away: the page still works
            self.log.warning("cannot read the contest teams of pending sign-ups: %s", exc)
            return {}

    def delete_user(self, user):
        """Deleting a user in the admin panel also deletes the account."""
        self.store.remove(user.name)
        return super().delete_user(user)

    async def pre_spawn_start(self, user, spawner):
        """No server for an account still on its one-time password (the API cannot skip the change)."""
        account = await asyncio.to_thread(self.store.get, user.name)
        if account and account.must_change_password:
            raise web.HTTPError(
                403,
                "请先在 /hub/accounts/password 把一次性密码改为您自己的密码，再启动服务器。"
                "Change your one-time password at /hub/accounts/password before starting a server.",
            )

    def get_handlers(self, app):
        return [
            (r"/login", OneTimePasswordLoginHandler),
            (r"/signup", SignupHandler),
            (r"/accounts", AccountsHandler),
            (r"/accounts/password", PasswordHandler),
        ]


# --- pages ---------------------------------------------------------------------------------


class OneTimePasswordLoginHandler(LoginHandler):
    """JupyterHub's login, except that a one-time password leads to the password page first."""

    def get_next_url(self, user=None, default=None):
        url = super().get_next_url(user, default)
        if user is None or not isinstance(self.authenticator, LocalAccountsAuthenticator):
            return url
        account = self.authenticator.store.get(user.name)
        if account and account.must_change_password:
            return url_concat(self.hub.base_url + "accounts/password", {"next": url})
        return url


class SignupHandler(BaseHandler):
    """``/hub/signup``: ask for an account; an organizer approves it."""

    async def get(self):
        if not self.authenticator.enable_signup:
            raise web.HTTPError(404)
        self.finish(await self._page())

    def _page(self, **ns):
        return self.render_template("signup.html", min_length=self.authenticator.min_password_length, **ns)

    async def post(self):
        auth: LocalAccountsAuthenticator = self.authenticator
        if not auth.enable_signup:
            raise web.HTTPError(404)
        raw = self.get_body_argument("username", "", strip=True)
        name = auth.normalize_username(raw)
        password = self.get_body_argument("password", "", strip=False)
        confirmation = self.get_body_argument("password_confirmation", "", strip=False)
        problem = None
        if not valid_username(name) or not auth.validate_username(name):
            problem = (RULE_EN, RULE_ZH)
        elif await asyncio.to_thread(auth.store.get, name) or self.find_user(name) or name in auth.admin_users:
            problem = ("This name is taken; choose another.", "该用户名已被占用，请换一个。")
        else:
            problem = password_problem(name, password, confirmation, auth.min_password_length)
        if problem:
            self.set_status(400)
            self.finish(await self._page(error=problem, username=raw))
            return
        await asyncio.to_thread(auth.store.create, name, password)
        self.log.info("Sign-up of %r is waiting for approval", name)
        self.finish(
            await self._page(
                done=(
                    "Your account request was sent to the organizers. You can log in once they approve it.",
                    "账号申请已提交给组织者，审核通过后即可登录。",
                )
            )
        )


class AccountsHandler(BaseHandler):
    """``/hub/accounts``: organizers approve or reject sign-ups."""

    @web.authenticated
    @needs_scope("admin:users")
    async def get(self):
        store: AccountStore = self.authenticator.store
        pending = await asyncio.to_thread(store.list, PENDING)
        self.finish(
            await self.render_template(
                "accounts.html",
                pending=pending,
                claims=await asyncio.to_thread(self.authenticator.claimed_teams, [a.name for a in pending]),
                approved=await asyncio.to_thread(store.list, APPROVED),
                message=self.get_argument("message", ""),
            )
        )

    @web.authenticated
    @needs_scope("admin:users")
    async def post(self):
        store: AccountStore = self.authenticator.store
        name = self.get_body_argument("name")
        action = self.get_body_argument("action")
        if action == "approve":
            done = await asyncio.to_thread(store.approve, name, self.current_user.name)
        elif action == "reject":
            done = await asyncio.to_thread(store.reject, name)
        else:
            raise web.HTTPError(400, f"unknown action {action!r}")
        if not done:
            raise web.HTTPError(404, f"no pending sign-up {name!r}")
        self.log.info("Sign-up of %r: %s by %s", name, action, self.current_user.name)
        done = {"approve": "approved / 已通过", "reject": "rejected / 已拒绝"}[action]
        self.redirect(url_concat(f"{self.hub.base_url}accounts", {"message": f"{name}: {done}"}))


class PasswordHandler(BaseHandler):
    """``/hub/accounts/password``: change one's own password (first of all a one-time one)."""

    async def _page(self, **ns):
        account = await asyncio.to_thread(self.authenticator.store.get, self.current_user.name)
        return await self.render_template(
            "password.html",
            min_length=self.authenticator.min_password_length,
            one_time=bool(account and account.must_change_password),
            next_url=self.get_argument("next", ""),
            **ns,
        )

    @web.authenticated
    async def get(self):
        self.finish(await self._page())

    @web.authenticated
    async def post(self):
        auth: LocalAccountsAuthenticator = self.authenticator
        name = self.current_user.name
        account = await asyncio.to_thread(auth.store.get, name)
        old = self.get_body_argument("old_password", "", strip=False)
        new = self.get_body_argument("password", "", strip=False)
        confirmation = self.get_body_argument("password_confirmation", "", strip=False)
        if not account or not await asyncio.to_thread(check_password, old, account.password_hash):
            problem = ("The current password is wrong.", "当前密码不正确。")
        elif new == old:
            problem = ("Choose a password different from the current one.", "新密码不能与当前密码相同。")
        else:
            problem = password_problem(name, new, confirmation, auth.min_password_length)
        if problem:
            self.set_status(400)
            self.finish(await self._page(error=problem))
            return
        await asyncio.to_thread(auth.store.set_password, name, new)
        if account.must_change_password and self.get_argument("next", ""):
            self.redirect(self.get_next_url(self.current_user))  # where the login was going
            return
        self.finish(await self._page(done=("Your password was changed.", "密码已修改。")))
