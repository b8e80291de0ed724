"""The hub's half of a backup: its accounts, and the contestants' notebooks or whole homes.

:mod:`leaderboard.backup` keeps the contest; without this a restored contest has no logins
(the accounts, with their bcrypt hashes, live in the hub's database, ``hub/accounts.py``) and
no contestant finds their work. A backup holds:

=====================  ==================================================================
``hub/accounts.jsonl``  every row of ``contesthub_accounts`` (names, password hashes, status)
``homes/<user>/...``    each contestant's notebooks (``*.ipynb``, checkpoints left out), or,
                        with ``homes=True``, every regular file of their home
=====================  ==================================================================

and ``manifest["hub"]`` the size report: per contestant the files and bytes of the whole home
and of its notebooks, so an organizer sees what ``--homes`` would cost before asking for it.

Homes are contestants' ground: nothing here follows a link in them (``os.walk`` without
``followlinks``, files opened with ``O_NOFOLLOW`` and copied only when they are regular files);
links, sockets and pipes are counted as skipped. A restore refuses an accounts table that
already holds a backed-up name, and a home that already has files, before it writes anything.
Restored homes belong to the account running the restore (0700 folders, 0600 files): right for
the demo and single-account modes; in secure mode the contestants' Unix accounts do not exist yet
on a fresh machine, so their homes must be given to them once they do (not automated here).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, inspect, select

from sandbox.errors import ContesthubError

CHUNK = 1 << 20


@dataclass(frozen=True)
class HubParts:
    """Where the hub keeps what a backup should carry, and whether to take whole homes."""

    db_url: str
    home_root: Path
    homes: bool = False  # False: only the notebooks of each home


class HubBackupError(ContesthubError):
    code = "backup-error"


def _is_notebook(rel: Path) -> bool:
    return rel.suffix == ".ipynb" and ".ipynb_checkpoints" not in rel.parts


def _walk(home: Path):
    """(relative path, size, is a regular file) for everything in a home, never following a link."""
    for folder, dirs, names in os.walk(home, followlinks=False):
        here = Path(folder)
        for name in sorted(names) + [d for d in dirs if (here / d).is_symlink()]:
            path = here / name
            st = os.lstat(path)
            yield path.relative_to(home), st.st_size, stat.S_ISREG(st.st_mode)


def home_report(home_root: Path) -> dict:
    """Per contestant: files and bytes of the whole home and of its notebooks; skipped entries."""
    report: dict[str, dict] = {}
    if not home_root.is_dir():
        return report
    for home in sorted(p for p in home_root.iterdir() if p.is_dir() and not p.is_symlink()):
        r = {"files": 0, "bytes": 0, "notebooks": 0, "notebook_bytes": 0, "skipped": 0}
        for rel, size, regular in _walk(home):
            if not regular:
                r["skipped"] += 1
                continue
            r["files"] += 1
            r["bytes"] += size
            if _is_notebook(rel):
                r["notebooks"] += 1
                r["notebook_bytes"] += size
        report[home.name] = r
    return report


def _copy_regular(src: Path, dst: Path) -> bool:
    """Copy ``src`` if it is a regular file (opened without following a link); False otherwise."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with os.fdopen(os.dup(fd), "rb") as f, open(dst, "xb") as out:
            while chunk := f.read(CHUNK):
                out.write(chunk)
        return True
    finally:
        os.close(fd)


def _jsonable(value):
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _account_rows(db_url: str) -> list[dict]:
    """The accounts table's rows; none when the hub never ran (its SQLite file is not made here)."""
    from hub.accounts import accounts, make_engine

    if db_url.startswith("sqlite:///") and not Path(db_url.removeprefix("sqlite:///")).exists():
        return []
    engine = make_engine(db_url)
    try:
        with engine.connect() as con:
            if not inspect(con).has_table(accounts.name):
                return []
            return [{k: _jsonable(v) for k, v in r.items()} for r in con.execute(select(accounts)).mappings()]
    finally:
        engine.dispose()


def write(parts: HubParts, work: Path, files: dict[str, str], sha256) -> dict:
    """Write the accounts and the homes (or notebooks) into the backup folder ``work``; the report."""
    rows = _account_rows(parts.db_url)
    (work / "hub").mkdir(mode=0o700)
    path = work / "hub" / "accounts.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows), "utf-8")
    files[str(path.relative_to(work))] = sha256(path)
    report = home_report(parts.home_root)
    for user in report:
        home = parts.home_root / user
        for rel, _size, regular in _walk(home):
            if not regular or not (parts.homes or _is_notebook(rel)):
                continue
            target = work / "homes" / user / rel
            if _copy_regular(home / rel, target):
                files[str(target.relative_to(work))] = sha256(target)
    return {"accounts": len(rows), "homes": "all" if parts.homes else "notebooks", "home_sizes": report}


def check_restore(src: Path, parts: HubParts) -> list[dict]:
    """The accounts to restore; raises (before anything is written) when a target is not empty."""
    dump = src / "hub" / "accounts.jsonl"
    rows = [json.loads(line) for line in dump.read_text("utf-8").splitlines()] if dump.exists() else []
    have = {r["name"] for r in _account_rows(parts.db_url)}
    clash = sorted(have & {r["name"] for r in rows})
    if clash:
        raise HubBackupError(
            f"the hub's accounts table already has {', '.join(clash[:5])}; restore into a new hub database",
            f"中心账号表中已有 {', '.join(clash[:5])}；请恢复到新的中心数据库",
        )
    homes = src / "homes"
    for user in sorted(p.name for p in homes.iterdir()) if homes.is_dir() else []:
        target = parts.home_root / user
        if target.exists() and any(target.iterdir()):
            raise HubBackupError(
                f"the home {target} is not empty; restore into an empty home root",
                f"主目录 {target} 非空；请恢复到空的主目录根",
            )
    return rows


def restore(src: Path, parts: HubParts, rows: list[dict]) -> None:
    """Bring the accounts and homes back (after :func:`check_restore`)."""
    from hub.accounts import AccountStore, accounts

    store = AccountStore(parts.db_url)  # makes the table as the hub would
    try:
        if rows:
            values = [
                {
                    c.name: dt.datetime.fromisoformat(r[c.name])
                    if r.get(c.name) and c.name in ("created_at", "decided_at")
                    else r.get(c.name)
                    for c in accounts.columns
                }
                for r in rows
            ]
            with store.engine.begin() as con:
                con.execute(insert(accounts), values)
    finally:
        store.close()
    homes = src / "homes"
    if not homes.is_dir():
        return
    parts.home_root.mkdir(parents=True, exist_ok=True, mode=0o755)
    for folder, dirs, names in os.walk(homes, followlinks=False):
        here = Path(folder)
        rel = here.relative_to(homes)
        target = parts.home_root / rel
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        if rel.parts:  # a home or a folder in it: its owner's alone, as the spawner makes homes
            os.chmod(target, 0o700)
        for name in names:
            if _copy_regular(here / name, target / name):
                os.chmod(target / name, 0o600)
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
