"""``contesthub backup`` and ``contesthub restore``: the whole contest, consistently, while it runs.

A backup is a folder:

==========================  ==============================================================
``store/<table>.jsonl``     every row of every store table, read in one snapshot
                            transaction (REPEATABLE READ on PostgreSQL; a WAL read
                            transaction on SQLite), so submissions, quotas and the audit
                            log agree with each other even while uploads continue
``submissions/``            the submission files those rows name, and the notebooks kept
                            with their provenance (content-addressed and immutable, so
                            copying them after the snapshot is still exact)
``data/``, ``solutions/``   the published catalog versions and the hidden solutions, so
                            every score can be recomputed after a restore
``secrets/``                the contest's secret salts (``split_salt``: which test rows are
                            public; ``hash_salt``: the de-identification's), without which
                            a rescore after a restore would split the test rows anew, and
                            the results signing key (``results_ed25519.pem``)
``contest.toml``            the contest definition in force
``hub/``, ``homes/``        with ``hub=``: the hub's accounts and the contestants' notebooks
                            (or whole homes), :mod:`leaderboard.backup_hub`
``manifest.json``           what is inside, with the SHA-256 of every file
==========================  ==============================================================

The rows are written as JSON, not as a database dump, so a backup of a SQLite store can be
restored into PostgreSQL (and back). :func:`restore` refuses a non-empty target, checks every
checksum before it writes anything, and verifies the audit chain afterwards.

A backup holds the hidden solutions, every team's files and the sealed private scores, so it
is the organizer's alone: it is written into a new folder made with mode 0700
(``tempfile.mkdtemp``: a fresh name no one else can have made, so nothing is written into a
folder or through a link someone else prepared) and, before it gets its final name, every
folder in it is 0700 and every file 0600. :func:`restore` gives each part back the modes of
its home: published data readable by all (0444/0555, as the build publishes it), hidden
solutions and submission files the service account's only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import Date, DateTime, TypeDecorator, func, insert, select, text, update

from leaderboard import audit, backup_hub
from leaderboard.backup_hub import HubParts
from leaderboard.models import Base, Submission, SubmissionProvenance
from leaderboard.store import Store
from sandbox import clock
from sandbox.digests import sha256_file
from sandbox.errors import ContesthubError
from sandbox.settings import Paths

FORMAT = 1


class BackupError(ContesthubError):
    code = "backup-error"


def _jsonable(value):
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _snapshot_rows(store: Store) -> dict[str, list[dict]]:
    tables = {}
    with store.engine.connect() as con:
        if con.dialect.name == "postgresql":
            con = con.execution_options(isolation_level="REPEATABLE READ")
        with con.begin():
            for table in Base.metadata.sorted_tables:
                rows = con.execute(select(table).order_by(*table.primary_key.columns)).mappings()
                tables[table.name] = [{k: _jsonable(v) for k, v in r.items()} for r in rows]
    return tables


def _copy_tree(src: Path, dst: Path, manifest: dict[str, str], base: Path) -> None:
    """Copy a folder as it is (``latest`` stays a symlink; builds in progress are left out)."""
    if not src.exists():
        return
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".tmp-*", "*.lock", ".lock*"))
    for folder, _dirs, names in os.walk(dst):
        for name in sorted(names):
            path = Path(folder) / name
            if not path.is_symlink():
                manifest[str(path.relative_to(base))] = sha256_file(path)


def _set_modes(root: Path, file_mode: int, dir_mode: int) -> None:
    """Give everything under ``root`` (not ``root`` itself) these modes; links are left as they are."""
    for folder, dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if not path.is_symlink():
                os.chmod(path, file_mode)
        for name in dirs:
            path = Path(folder) / name
            if not path.is_symlink():
                os.chmod(path, dir_mode)


def _published_modes(data_root: Path) -> None:
    """The modes the build gives published data: a version ``<id>/v<N>/`` is read-only for
    everyone (files 0444, folders 0555), the folders around it stay 0755 (the next build adds
    versions there)."""
    for folder, dirs, names in os.walk(data_root):
        here = Path(folder)
        in_version = any(_is_version(part) for part in here.relative_to(data_root).parts)
        for name in names:
            if not (here / name).is_symlink():
                os.chmod(here / name, 0o444)
        for name in dirs:
            if not (here / name).is_symlink():
                os.chmod(here / name, 0o555 if in_version or _is_version(name) else 0o755)


def _is_version(name: str) -> bool:
    return name[:1] == "v" and name[1:].isdigit()


def backup(store: Store, paths: Paths, contest_file: Path, dest: Path, hub: HubParts | None = None) -> dict:
    """Write a consistent backup into ``dest`` (a new folder, owner-only); returns the manifest.

    ``hub``: also the hub's accounts and the contestants' notebooks (or whole homes), with a
    size report per contestant (:mod:`leaderboard.backup_hub`)."""
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty; choose a new folder", f"{dest} 不是空目录，请换一个新目录")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{dest.name}.partial-", dir=dest.parent))  # 0700, a name of its own
    try:
        manifest = _write(store, paths, contest_file, work, hub)
        _set_modes(work, 0o600, 0o700)
        if dest.exists():
            dest.rmdir()
        os.replace(work, dest)
    except BaseException:
        _set_modes(work, 0o600, 0o700)  # the copied data's read-only folders would stop the clean-up
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _write(store: Store, paths: Paths, contest_file: Path, work: Path, hub: HubParts | None = None) -> dict:
    """The backup's contents, written into the (owner-only) folder ``work``."""
    (work / "store").mkdir(mode=0o700)
    files: dict[str, str] = {}
    rows = _snapshot_rows(store)
    for name, items in rows.items():
        path = work / "store" / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for r in items:
                f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
        files[str(path.relative_to(work))] = sha256_file(path)
    missing = []
    # The bytes of invalid files dropped after their retention period are gone on purpose.
    kept = {r["sha256"] for r in rows[Submission.__tablename__] if r.get("file_dropped_at") is None}
    # The notebooks' copies kept with their submissions' provenance, in the same file store.
    kept |= {r["notebook_stored"] for r in rows.get(SubmissionProvenance.__tablename__, []) if r["notebook_stored"]}
    # The application track's write-ups, notebooks and screenshots are in the same file store.
    kept |= {f["sha256"] for r in rows.get("applications", []) for f in r.get("files") or []}
    for sha in sorted(kept):
        src = store.files.path(sha)
        if not src.exists():  # accepted a moment ago, file not renamed yet: restore refunds it
            missing.append(sha)
            continue
        target = work / "submissions" / sha[:2] / sha
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        files[str(target.relative_to(work))] = sha256_file(target)
        if files[str(target.relative_to(work))] != sha:
            raise BackupError(f"stored submission file {sha} is damaged", f"提交文件 {sha} 已损坏")
    _copy_tree(paths.data_root, work / "data", files, work)
    _copy_tree(paths.private_root / "solutions", work / "solutions", files, work)
    _copy_tree(paths.private_root / "secrets", work / "secrets", files, work)
    shutil.copy2(contest_file, work / "contest.toml")
    files["contest.toml"] = sha256_file(work / "contest.toml")
    hub_report = backup_hub.write(hub, work, files, sha256_file) if hub is not None else None
    manifest = {
        "format": FORMAT,
        "created_at": clock.now().isoformat(),
        "source": store.url.split("@")[-1],
        "rows": {k: len(v) for k, v in rows.items()},
        "missing_submission_files": missing,
        "files": files,
        "hub": hub_report,
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), "utf-8")
    return manifest


def _decode(table, row: dict) -> dict:
    out = {}
    for col in table.columns:
        value = row.get(col.name)
        kind = col.type.impl if isinstance(col.type, TypeDecorator) else col.type
        if value is not None and isinstance(kind, DateTime):
            value = dt.datetime.fromisoformat(value)
        elif value is not None and isinstance(kind, Date):
            value = dt.date.fromisoformat(value)
        out[col.name] = value
    return out


def restore(
    src: Path, store: Store, paths: Paths, contest_target: Path | None = None, hub: HubParts | None = None
) -> dict:
    """Bring a backup back into an empty store and empty roots; returns the manifest.

    ``hub``: also the hub's accounts (into its database) and the homes (into its home root),
    when the backup has them."""
    manifest_path = src / "manifest.json"
    if not manifest_path.exists():
        raise BackupError(
            f"{src} is not a contesthub backup (no manifest.json)", f"{src} 不是备份目录（缺少 manifest.json）"
        )
    manifest = json.loads(manifest_path.read_text("utf-8"))
    for rel, sha in manifest["files"].items():
        if not (src / rel).exists() or sha256_file(src / rel) != sha:
            raise BackupError(f"{rel} in the backup is missing or damaged", f"备份中的 {rel} 缺失或损坏")
    with store.session() as s:
        if s.execute(select(func.count()).select_from(Submission)).scalar_one():
            raise BackupError(
                "the target store is not empty; restore into a new database", "目标数据库非空，请恢复到新数据库"
            )
    accounts = backup_hub.check_restore(src, hub) if hub is not None else None
    with store.engine.begin() as con:
        for table in Base.metadata.sorted_tables:
            dump = src / "store" / f"{table.name}.jsonl"
            # A table added after the backup was made (a later migration) starts empty.
            lines = dump.read_text("utf-8").splitlines() if dump.exists() else []
            rows = [_decode(table, json.loads(line)) for line in lines]
            self_refs = [fk.parent.name for fk in table.foreign_keys if fk.column.table is table]
            if rows:
                con.execute(insert(table), [{**r, **dict.fromkeys(self_refs)} for r in rows])
            for r in rows:  # references to rows of the same table, once they all exist
                if any(r[c] is not None for c in self_refs):
                    pk = table.primary_key.columns.values()[0]
                    con.execute(update(table).where(pk == r[pk.name]).values({c: r[c] for c in self_refs}))
        if con.dialect.name == "postgresql":
            for table in Base.metadata.sorted_tables:
                pk = table.primary_key.columns.values()
                if len(pk) == 1 and pk[0].autoincrement is True:
                    con.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{pk[0].name}'), "
                            f"coalesce((SELECT max({pk[0].name}) FROM {table.name}), 0) + 1, false)"
                        )
                    )
    for folder, target in (
        ("submissions", store.files.root),
        ("data", paths.data_root),
        ("solutions", paths.private_root / "solutions"),
        ("secrets", paths.private_root / "secrets"),  # the backed-up salts replace any made here since
    ):
        if (src / folder).exists():
            shutil.copytree(src / folder, target, dirs_exist_ok=True, symlinks=True)
    # The backup's owner-only modes would hide the open data from contestants.
    _set_modes(store.files.root, 0o400, 0o700)  # as FileStore.keep leaves them
    _published_modes(paths.data_root)
    if contest_target is not None:
        shutil.copy2(src / "contest.toml", contest_target)
    if hub is not None:
        backup_hub.restore(src, hub, accounts)
    with store.session() as s:
        check = audit.verify(s)
    if not check.ok:
        raise BackupError("the restored audit log does not verify: " + "; ".join(check.problems))
    return manifest
