"""``contesthub teams import roster.csv``: accounts and teams for a whole school or city at once.

A roster is a CSV (UTF-8, UTF-8 with BOM, or GBK as Excel saves it) with the columns
``team, member, email`` (or ``队伍, 成员, 邮箱``). Every row is checked before anything is
written, and every problem is reported with its row and column. Then each member gets an
approved hub account with a generated password (only its hash is stored; the password is
printed once or written to a file only the organizer can read, for the organizer to hand
out; it is a one-time password: the member's first login leads to ``/hub/accounts/password``
and no server starts until they have chosen their own), and each team is created and filled
through the contest engine, so the size limit, the freeze date and the audit log apply.
Running the same roster twice changes nothing: members whose account a roster import made
keep it and their password.

A roster never adopts an account it did not make. Someone who signed up first with a
member's name (names are often guessable, and team pages show them) would otherwise keep
their own password, be put in the team, and become a member when an organizer approves the
sign-up. So the import refuses, before writing anything, every row whose name has an account
made otherwise (a sign-up, waiting or approved, or the organizer's), saying what to do; and
a sign-up that arrives while the import runs is not adopted either (its row is flagged).
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from hub.accounts import ROSTER, AccountStore, new_password
from hub.names import MAX_LENGTH, valid_username
from leaderboard import teams
from leaderboard.contest import Contest
from leaderboard.store import Store
from sandbox.errors import NotFound, Problem, ProblemsError
from sandbox.sources import detect_encoding

COLUMNS = {"team": ("team", "队伍"), "member": ("member", "成员"), "email": ("email", "邮箱")}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class RosterError(ProblemsError):
    code = "roster-invalid"
    what_en, what_zh = "the roster", "名单"


@dataclass(frozen=True)
class Entry:
    row: int
    team: str
    member: str
    email: str


@dataclass
class Outcome:
    team: str
    member: str
    email: str
    password: str | None  # None: the account existed and keeps its password (or ``taken``)
    taken: bool = False  # a sign-up took the name while the import ran: not this member's account


def read(path: Path) -> list[Entry]:
    """The roster's rows, or one RosterError listing every problem (row numbers as in a spreadsheet)."""
    text = path.read_text(detect_encoding(path)).lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(text)))
    name = path.name
    if not rows:
        raise RosterError([Problem(name, "", "is empty", "a header: team, member, email")])
    header = [h.strip().lower() for h in rows[0]]
    where = {}
    for key, names in COLUMNS.items():
        found = [i for i, h in enumerate(header) if h in names]
        if not found:
            raise RosterError(
                [Problem(name, "row 1", f"has no column {names[0]!r} (or {names[1]!r})", "team, member, email")]
            )
        where[key] = found[0]
    problems, entries, seen = [], [], {}
    for n, raw in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in raw):
            continue
        cell = {k: (raw[i].strip() if i < len(raw) else "") for k, i in where.items()}
        if not cell["team"]:
            problems.append(Problem(name, f"row {n}, column team", "is empty", "the team's name"))
        if not valid_username(cell["member"]):
            problems.append(
                Problem(
                    name,
                    f"row {n}, column member",
                    f"{cell['member']!r} is not a valid user name",
                    f"1 to {MAX_LENGTH} of a-z, 0-9, . _ - (a letter or digit first): the login accepts no other",
                )
            )
        if not EMAIL.match(cell["email"]):
            problems.append(
                Problem(
                    name, f"row {n}, column email", f"{cell['email']!r} is not an e-mail address", "name@example.org"
                )
            )
        if cell["member"] in seen:
            problems.append(
                Problem(
                    name,
                    f"row {n}, column member",
                    f"{cell['member']} is also on row {seen[cell['member']]}",
                    "each member once",
                )
            )
        seen.setdefault(cell["member"], n)
        entries.append(Entry(n, cell["team"], cell["member"], cell["email"]))
    if problems:
        raise RosterError(problems)
    return entries


def check_sizes(entries: list[Entry], contest: Contest, name: str) -> None:
    sizes: dict[str, list[int]] = {}
    for e in entries:
        sizes.setdefault(e.team, []).append(e.row)
    problems = [
        Problem(
            name,
            f"rows {', '.join(map(str, rows))}",
            f"team {team!r} has {len(rows)} members",
            f"at most {contest.max_team_size}",
        )
        for team, rows in sizes.items()
        if len(rows) > contest.max_team_size
    ]
    if problems:
        raise RosterError(problems)


def check_accounts(entries: list[Entry], accounts: AccountStore, name: str) -> None:
    """Refuse, with every row, members whose name has an account no roster import made."""
    problems = []
    for e in entries:
        account = accounts.get(e.member)
        if account is None or account.origin == ROSTER:
            continue
        if not account.approved:
            what = (
                f"{e.member!r} 已有一个待审核的自助注册（{account.created_at:%Y-%m-%d %H:%M} UTC），"
                "不是名单导入创建的，可能是他人抢注 / "
                f"{e.member!r} has a sign-up waiting for approval ({account.created_at:%Y-%m-%d %H:%M} UTC) "
                "that no roster import made, possibly someone else's"
            )
            todo = (
                "在 /hub/accounts 拒绝该注册后重新导入（本人将收到名单的一次性密码）/ "
                "reject it at /hub/accounts and import again (the member then gets the roster's one-time password)"
            )
        else:
            what = (
                f"{e.member!r} 已有一个不是名单导入创建的账号（{account.origin}）/ "
                f"{e.member!r} already has an account that no roster import made ({account.origin})"
            )
            todo = (
                f"若确为本人，删去此行并执行 contesthub teams add {e.team} {e.member}；否则为该成员换一个用户名 / "
                f"if it is this member's, drop the row and run contesthub teams add {e.team} {e.member}; "
                "otherwise give the member another name"
            )
        problems.append(Problem(name, f"row {e.row}, column member", what, todo))
    if problems:
        raise RosterError(problems)


def apply(
    entries: list[Entry], contest: Contest, store: Store, hub_db_url: str, *, by: str, name: str = "roster"
) -> list[Outcome]:
    """Create the accounts and teams; returns each member's outcome (passwords only for new accounts).

    Refuses (:func:`check_accounts`, before writing anything) names whose account no roster
    import made; ``name`` is the roster's file name in those messages."""
    accounts = AccountStore(hub_db_url)
    out = []
    try:
        check_accounts(entries, accounts, name)
        with store.session() as s:  # all teams or none: one transaction through the contest engine
            for e in entries:
                try:
                    teams.get(s, e.team)
                except NotFound:
                    teams.create(s, contest, e.team, actor=by)
                teams.add_member(s, contest, e.team, e.member, actor=by)
        for e in entries:
            password, taken = None, False
            if accounts.get(e.member) is None:
                password = new_password()
                try:
                    accounts.create(e.member, password, approved=True, by=by, one_time=True, origin=ROSTER)
                except IntegrityError:  # a sign-up since check_accounts: never adopted
                    password, taken = None, True
            out.append(Outcome(e.team, e.member, e.email, password, taken))
    finally:
        accounts.close()
    return out


def write_passwords(outcomes: list[Outcome], path: Path) -> None:
    """The new passwords as CSV, readable by the organizer only (mode 0600 from the first byte).

    Written to a new file (``mkstemp``: O_EXCL, 0600) that then replaces ``path``: a file
    already there keeps neither its mode nor its inode, so whoever could read it, or still
    holds it open, never sees these passwords; a link at ``path`` is replaced, not followed."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as f:
            w = csv.writer(f)
            w.writerow(["team", "member", "email", "password"])
            for o in outcomes:
                w.writerow([o.team, o.member, o.email, shown_password(o)])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


TAKEN = "(name taken by a sign-up during the import: reject it at /hub/accounts, import again)"


def shown_password(o: Outcome) -> str:
    """What the passwords file and the console show in a member's password column."""
    if o.taken:
        return TAKEN
    return o.password or "(existing account, unchanged)"


def taken_error(outcomes: list[Outcome], name: str) -> RosterError | None:
    """The rows whose name a sign-up took while the import ran, as one error (None: no such row)."""
    problems = [
        Problem(
            name,
            f"member {o.member}",
            f"导入期间有人以 {o.member!r} 自助注册，该账号未被采用 / "
            f"someone signed up as {o.member!r} while the import ran; that account was not adopted",
            "在 /hub/accounts 拒绝该注册后重新导入 / reject it at /hub/accounts and import again",
        )
        for o in outcomes
        if o.taken
    ]
    return RosterError(problems) if problems else None
