"""Where the contest keeps its records and files.

* **The database** (:func:`connect`): SQLite in WAL mode under the private root by default,
  PostgreSQL in production (``CONTESTHUB_DB_URL=postgresql+psycopg://...``). The schema is
  created and upgraded by Alembic (:func:`upgrade`), never by ``create_all``, so a
  production database follows the same migrations as a test one. Writes go through
  :meth:`Store.session`: on SQLite they take the write lock when their transaction begins
  (``BEGIN IMMEDIATE``), so two writers never both read and then collide on upgrade, and the
  threads of one process take turns on an in-process lock first (instead of sleeping in
  SQLite's busy handler). Reads go through :meth:`Store.read_session`: a read-only
  transaction (a deferred ``BEGIN`` on SQLite, ``READ ONLY`` on PostgreSQL) that sees one
  snapshot and never waits for a writer in WAL mode.
* **The files** (:class:`FileStore`): each submission file is stored once under its
  SHA-256, written to a temporary name in the same folder and renamed, so a file in the
  store is always whole and never changes. Both live in the private root, which
  contestants cannot read.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sandbox.digests import sha256_file
from sandbox.errors import ContesthubError
from sandbox.settings import Paths
from sandbox.submission_checks import TOO_LARGE_WHAT_TO_DO

MIGRATIONS = Path(__file__).with_name("migrations")
CHUNK = 1 << 20


def default_url(paths: Paths) -> str:
    return os.environ.get("CONTESTHUB_DB_URL") or f"sqlite:///{paths.private_root / 'contest.sqlite'}"


def make_engine(url: str, *, readonly: bool = False, fsync_commits: bool = True) -> Engine:
    """An engine with the settings each database needs for the contest's guarantees.

    ``fsync_commits=False`` (SQLite): a commit is not flushed to disk by itself, only with the
    next flushed one or checkpoint. For writers whose work a power cut may undo harmlessly: a
    scorer's claim or result lost that way is claimed and scored again (the scores are the
    same). Acceptances always flush: an accepted submission survives a power cut."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_con, _record) -> None:
            dbapi_con.isolation_level = None  # transactions are begun below, explicitly
            cur = dbapi_con.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # An accepted submission survives a power cut (WAL: a commit's frames are flushed by it,
            # or by the next flushed commit, which covers every frame before its own).
            cur.execute("PRAGMA synchronous=FULL" if fsync_commits else "PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            if readonly:
                cur.execute("PRAGMA query_only=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if readonly:
        engine = engine.execution_options(postgresql_readonly=True)
    return engine


def store_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the contest database cannot be reached right now (PostgreSQL
    restarting, a failover): something to wait for and try again, not a bug."""
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the database schema to the newest migration (safe to repeat)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")


# A writer of this process waits this long for the in-process write lock, then goes on
# and leaves it to SQLite's busy timeout (which raises "database is locked" in the end).
WRITE_LOCK_TIMEOUT = 60


class WriteLock:
    """One SQLite database's writers, in turn: the threads of this process (a lock), then the
    processes (``flock`` on ``<database>.lock``: the kernel hands it over the moment it is
    free, and lets it go when a process dies). Re-entrant within a thread."""

    def __init__(self, path: Path | None):
        self._threads = threading.RLock()
        self._path = path
        self._fd: int | None = None
        self._depth = threading.local()

    def acquire(self, timeout: float) -> bool:
        if not self._threads.acquire(timeout=timeout):
            return False
        depth = getattr(self._depth, "n", 0)
        if depth == 0 and self._path is not None:
            try:
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except OSError:  # e.g. a read-only folder: SQLite's own lock still keeps writers apart
                pass
        self._depth.n = depth + 1
        return True

    def release(self) -> None:
        self._depth.n -= 1
        if self._depth.n == 0 and self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()


_write_locks: dict[str, WriteLock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(url: str) -> WriteLock:
    """One lock per SQLite database in this process, shared by every Store on it."""
    with _write_locks_guard:
        if url not in _write_locks:
            file = url.removeprefix("sqlite:///")
            _write_locks[url] = WriteLock(Path(file + ".lock") if file and file != url and file != ":memory:" else None)
        return _write_locks[url]


@dataclass
class Store:
    """One contest store: its database and its submission files."""

    url: str
    engine: Engine
    files: FileStore
    sessions: sessionmaker[Session]
    read_engine: Engine | None = None  # reads: no write lock (None: the same engine as writes)
    read_sessions: sessionmaker[Session] | None = None
    write_lock: WriteLock | None = field(default=None, repr=False)  # SQLite: one writer at a time

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work that may write: committed when the block ends, rolled back if it raises.

        On SQLite it holds the database's write lock from its start to its end (one writer at
        a time), so keep it short and never open another one inside it; use
        :meth:`read_session` for what only reads."""
        lock = self.write_lock
        locked = lock is not None and lock.acquire(timeout=WRITE_LOCK_TIMEOUT)
        try:
            with self.sessions.begin() as s:
                yield s
        finally:
            if locked:
                lock.release()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A unit of work that only reads: one consistent snapshot, never the write lock.

        SQLite: a deferred ``BEGIN`` on a ``query_only`` connection, which in WAL mode neither
        waits for a writer nor makes one wait; PostgreSQL: a ``READ ONLY`` transaction at the
        usual isolation. Writing in it fails."""
        with (self.read_sessions or self.sessions).begin() as s:
            yield s

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not None and self.read_engine.pool is not self.engine.pool:  # SQLite: its own pool
            self.read_engine.dispose()


def connect(
    paths: Paths, url: str | None = None, *, migrate: bool = True, readonly: bool = False, fsync_commits: bool = True
) -> Store:
    """The store of ``paths`` (or ``url``); ``fsync_commits``: see :func:`make_engine` (SQLite only)."""
    url = url or default_url(paths)
    if migrate and not readonly:
        upgrade(url)
    engine = make_engine(url, readonly=readonly, fsync_commits=fsync_commits)
    files = FileStore(paths.private_root / "submissions")
    store = Store(url=url, engine=engine, files=files, sessions=sessionmaker(engine, expire_on_commit=False))
    if readonly:
        return store  # every session is a read session already
    if url.startswith("sqlite"):
        # Its own pool of query_only connections that begin with a plain (deferred) BEGIN.
        store.read_engine = make_engine(url, readonly=True)
        store.write_lock = _write_lock(url)
    else:  # PostgreSQL: the same pool, transactions marked READ ONLY (reset when a connection is returned)
        store.read_engine = engine.execution_options(postgresql_readonly=True)
    store.read_sessions = sessionmaker(store.read_engine, expire_on_commit=False)
    return store


class UploadTooLarge(ContesthubError):
    code = "file-too-large"
    http_status = 413


class StorageFailed(ContesthubError):
    """The upload area could not take the file (the disk is full, or failing); nothing was kept."""

    code = "storage-failed"
    http_status = 507

    def __init__(self) -> None:
        super().__init__(
            "the platform could not store your file (its disk may be full); it did not count against your "
            "quota, try again later",
            "平台暂时无法保存你的文件（磁盘可能已满）；本次不计入提交次数，请稍后再试",
        )


@dataclass(frozen=True)
class Upload:
    """A received file in the upload area, with the digest computed while it was written."""

    path: Path
    size: int
    sha256: str


class UploadSink:
    """Bytes arriving in pieces (an HTTP body), hashed and counted as they are written."""

    def __init__(self, folder: Path, limit: int):
        fd, name = tempfile.mkstemp(dir=folder, prefix="upload-")
        self.path, self.limit, self.size = Path(name), limit, 0
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            self.abort()
            raise UploadTooLarge(
                f"the file is larger than the limit of {self.limit >> 20} MiB; {TOO_LARGE_WHAT_TO_DO[0]}",
                f"文件超过 {self.limit >> 20} MiB 的上限；{TOO_LARGE_WHAT_TO_DO[1]}",
            )
        self._hash.update(chunk)
        try:
            self._file.write(chunk)
        except OSError:  # e.g. ENOSPC: the partial file goes, the contestant gets a clear refusal
            self.abort()
            raise StorageFailed() from None

    def close(self) -> Upload:
        try:
            self._file.close()  # writes what is still buffered: may fail as write() does
        except OSError:
            self.abort()
            raise StorageFailed() from None
        return Upload(self.path, self.size, self._hash.hexdigest())

    def abort(self) -> None:
        """Forget the upload: no partial file stays behind."""
        if not self._file.closed:
            with contextlib.suppress(OSError):  # a full disk fails the flush of buffered bytes too
                self._file.close()
        self.path.unlink(missing_ok=True)


class FileStore:
    """Content-addressed, immutable submission files: ``<root>/<sha[:2]>/<sha>``."""

    def __init__(self, root: Path):
        self.root = root
        self.incoming = root / "incoming"

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def open_upload(self, limit: int) -> UploadSink:
        """A temporary file in the upload area that refuses more than ``limit`` bytes."""
        self.incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
        return UploadSink(self.incoming, limit)

    def receive(self, stream: BinaryIO, limit: int) -> Upload:
        """Stream a file-like object into the upload area (hashing as it goes)."""
        sink = self.open_upload(limit)
        try:
            while chunk := stream.read(CHUNK):
                sink.write(chunk)
        except BaseException:
            sink.abort()
            raise
        return sink.close()

    def keep(self, upload: Upload) -> Path:
        """Move a received upload into the store under its digest (whole, fsynced, immutable)."""
        self.stage(upload)
        return self.place(upload)

    def stage(self, upload: Upload) -> None:
        """The slow half of :meth:`keep`, done before a transaction: the upload's bytes on disk
        (fsync) and read-only. Nothing is in the store yet."""
        with open(upload.path, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(upload.path, 0o400)

    def place(self, upload: Upload, *, sync: bool = True) -> Path:
        """The quick half of :meth:`keep`, for a staged upload: renamed into the store under its
        digest (the same bytes kept before: one copy is enough), and its folder's entry on disk
        (``sync=False``: the caller syncs the folders of several at once, :meth:`sync_folders`)."""
        target = self.path(upload.sha256)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if target.exists():
            upload.path.unlink(missing_ok=True)
            return target
        os.replace(upload.path, target)
        if sync:
            self.sync_folders([target.parent])
        return target

    @staticmethod
    def sync_folders(folders) -> None:
        """Flush the entries of these folders to disk (renames into them survive a power cut)."""
        for folder in folders:
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def verify(self, sha256: str) -> bool:
        """True when the stored file still has the digest it was stored under."""
        path = self.path(sha256)
        if not path.exists():
            return False
        return sha256_file(path) == sha256

    def sweep_incoming(self, before: float) -> int:
        """Remove uploads last written before ``before`` (a crash left them; they were never
        accepted); uploads still arriving are newer. Returns how many were removed."""
        if not self.incoming.exists():
            return 0
        removed = 0
        for p in self.incoming.iterdir():
            try:
                if p.stat().st_mtime < before:
                    p.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed
