"""Contestants' Unix accounts in secure mode: one per hub user, never shared, never adopted.

Two hub users must never end up with one Unix account: the account is the wall around a
contestant's files, kernels and home. Two things keep them apart.

* **An injective name mapping** (:func:`system_username`). ``<prefix><name>`` when that is
  shorter than 32 characters (useradd's limit); otherwise exactly 32 characters: the start
  of ``<prefix><name>``, ``-`` and 13 base32 characters (65 bits) of the name's SHA-256. The
  short form is always under 32 characters and the long form always 32, so no name of one
  kind maps to an account of the other. (The mapping contesthub used before kept names of
  exactly 32 characters as they were and shortened longer ones to 26 characters plus 5 hex
  digits: signing up with that 24-character tail of a long name gave the same account.)
* **A record of hub user ↔ account ↔ uid** (:class:`UnixAccounts`), in the table
  ``contesthub_unix_accounts`` of the hub's own database (in the private root, or the
  PostgreSQL server of ``hub_db_url``), which no contestant can write. An account is used
  for a hub user only when the record says it was made for them and its uid is still the
  recorded one (:func:`ensure_account`); an account that already exists without such a
  record (made by hand, left by another tool, or made for someone else) is refused, never
  adopted, and so is an account whose uid changed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError

from hub.accounts import make_engine
from sandbox import clock
from sandbox.errors import ContesthubError

MAX_NAME = 32  # useradd's limit on Debian and most Linux systems
HASH_CHARS = 13  # base32 characters of SHA-256 in a shortened name: 65 bits

metadata = MetaData()
unix_accounts = Table(
    "contesthub_unix_accounts",
    metadata,
    Column("hub_user", String(64), primary_key=True),
    Column("account", String(MAX_NAME), nullable=False, unique=True),
    Column("uid", Integer, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class AccountRefused(ContesthubError):
    """A hub user's server does not start: the Unix account it would run as is not theirs."""

    code = "unix-account-refused"

    def __str__(self) -> str:  # JupyterHub shows this on the spawn page: both languages
        return f"{self.zh}\n{self.en}"


def system_username(prefix: str, name: str) -> str:
    """The Unix account of hub user ``name``: different for every different name (see the module docstring)."""
    full = f"{prefix}{name}"
    if len(full) < MAX_NAME:
        return full
    digest = base64.b32encode(hashlib.sha256(name.encode("utf-8")).digest()).decode("ascii").lower()
    return f"{full[: MAX_NAME - 1 - HASH_CHARS]}-{digest[:HASH_CHARS]}"


@dataclass(frozen=True)
class Record:
    hub_user: str
    account: str
    uid: int
    created_at: datetime


class UnixAccounts:
    """The record of which Unix account (and uid) was made for which hub user."""

    def __init__(self, db_url: str):
        self.engine = make_engine(db_url)
        metadata.create_all(self.engine)

    def get(self, hub_user: str) -> Record | None:
        with self.engine.connect() as con:
            row = con.execute(select(unix_accounts).where(unix_accounts.c.hub_user == hub_user)).first()
        return Record(**row._mapping) if row else None

    def owner_of(self, account: str | None = None, uid: int | None = None) -> Record | None:
        """The record holding ``account`` or ``uid``, if any."""
        column, value = (unix_accounts.c.account, account) if account is not None else (unix_accounts.c.uid, uid)
        with self.engine.connect() as con:
            row = con.execute(select(unix_accounts).where(column == value)).first()
        return Record(**row._mapping) if row else None

    def add(self, hub_user: str, account: str, uid: int) -> Record:
        """Record a new account; IntegrityError when the hub user, account or uid is recorded already."""
        values = {"hub_user": hub_user, "account": account, "uid": uid, "created_at": clock.now()}
        with self.engine.begin() as con:
            con.execute(unix_accounts.insert().values(**values))
        return Record(**values)


@cache
def accounts_store(db_url: str) -> UnixAccounts:
    """One store per database for the hub process (the spawners share it)."""
    return UnixAccounts(db_url)


def _refused(en: str, zh: str) -> AccountRefused:
    return AccountRefused(
        f"Your server cannot start: {en} An organizer has been told in the hub's log; please contact them.",
        f"无法启动你的服务器：{zh} 已在 hub 日志中告知组织者，请联系他们。",
    )


def ensure_account(
    store: UnixAccounts,
    prefix: str,
    hub_user: str,
    home: Path,
    log: Callable[[str], None] = print,
) -> pwd.struct_passwd:
    """The Unix account of ``hub_user``: the recorded one, or a new one made and recorded now.

    Raises :class:`AccountRefused` (and logs why, for organizers) instead of using an account
    that was not made for this hub user, or whose uid is no longer the recorded one.
    """
    record = store.get(hub_user)
    if record is not None:
        try:
            entry = pwd.getpwnam(record.account)
        except KeyError:
            log(f"Unix account {record.account} (uid {record.uid}) recorded for hub user {hub_user} no longer exists")
            raise _refused("its Unix account no longer exists.", "它的 Unix 账号已不存在。") from None
        if entry.pw_uid != record.uid:
            log(
                f"Unix account {record.account} of hub user {hub_user} has uid {entry.pw_uid}, "
                f"not the recorded {record.uid}: refused"
            )
            raise _refused("its Unix account was changed.", "它的 Unix 账号已被改动。")
        return entry

    name = system_username(prefix, hub_user)
    other = store.owner_of(account=name)
    try:
        existing = pwd.getpwnam(name)
    except KeyError:
        existing = None
    if other is not None or existing is not None:
        whose = f"was made for hub user {other.hub_user}" if other else "was not made by contesthub for this hub user"
        log(f"Unix account {name} for hub user {hub_user} already exists and {whose}: refused, never adopted")
        raise _refused(
            "the Unix account it would run as already exists and was not made for you.",
            "它将使用的 Unix 账号已经存在，且不是为你创建的。",
        )

    Path(home).parent.mkdir(parents=True, exist_ok=True)
    useradd = useradd_command() or "useradd"
    cmd = [useradd, "--create-home", "--home-dir", str(home), "--shell", "/bin/bash", "--user-group", name]
    log(f"Creating Unix account {name} for hub user {hub_user}: {' '.join(cmd)}")
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    entry = pwd.getpwnam(name)
    try:
        store.add(hub_user, name, entry.pw_uid)
    except IntegrityError:
        holder = store.owner_of(uid=entry.pw_uid)
        log(
            f"Unix account {name} got uid {entry.pw_uid}, which is recorded for hub user "
            f"{holder.hub_user if holder else '?'}: refused"
        )
        raise _refused(
            "its new Unix account got a user id that belongs to someone else.", "新 Unix 账号的用户 ID 已属于他人。"
        ) from None
    return entry


def useradd_command() -> str | None:
    return shutil.which("useradd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
