"""Tools for the fault suite (tests/test_faults.py): processes, faults, and the store's invariants.

=============================  ===================================================================
tool                           what it does
=============================  ===================================================================
``cmdline`` / ``find_below``   a process's command line; the processes below a pid whose command
                               line contains a marker (``hub.submit_service``, ``streamlit``, ...)
``alive`` / ``kill``           whether a (pid, start time) is still that process; SIGKILL it
``wait_for``                   poll a condition until it holds (or fail, saying what was awaited)
``slow_upload``                a slow streaming client: a raw HTTP POST sent in chunks, with a
                               callback once half the body is sent (to inject a fault mid-upload)
``Tmpfs``                      a size-limited tmpfs (root only): the "upload disk", shrunk to
                               fill it and grown again to give the space back
``postgres_fault``             restart the PostgreSQL cluster on 127.0.0.1:5432 (pg_ctlcluster),
                               or end every connection of one database (pg_terminate_backend)
``store_problems``             everything wrong with a contest store after a fault: pending rows,
                               charges that disagree with statuses or quotas, files missing or
                               damaged, partial uploads, a broken audit chain
=============================  ===================================================================
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy import select

from hub.launcher import descendants
from leaderboard import audit
from leaderboard.models import Quota, Submission
from leaderboard.store import Store
from leaderboard.submissions import PENDING

# --- processes ------------------------------------------------------------------------------


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def start_time(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2 :].split()[19])


def alive(proc: tuple[int, int]) -> bool:
    """Whether the process (pid, start time) still runs (a reused pid is another process)."""
    return start_time(proc[0]) == proc[1] and "zombie" not in _state(proc[0])


def _state(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.lower()
    except OSError:
        pass
    return ""


def find_below(pid: int, marker: str) -> list[tuple[int, int]]:
    """The processes below ``pid`` whose command line contains ``marker``, as (pid, start time)."""
    return [p for p in descendants(pid) if marker in cmdline(p[0])]


def kill(proc: tuple[int, int], sig: int = signal.SIGKILL) -> None:
    if alive(proc):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc[0], sig)


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.2):
    """Poll ``condition`` until it returns something true; that value. Fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# --- a slow streaming client ----------------------------------------------------------------


def slow_upload(
    url: str,
    token: str,
    data: bytes,
    *,
    chunk: int = 32 << 10,
    delay: float = 0.05,
    at_half: Callable[[], None] | None = None,
    timeout: float = 30,
) -> tuple[int | None, bytes | str]:
    """POST ``data`` to ``url`` in ``chunk``-sized pieces, ``delay`` seconds apart, with its
    Content-Length declared up front; ``at_half`` runs once half the body has been sent.

    Returns (HTTP status, body), or (None, the connection error) when the connection broke.
    """
    parts = urlparse(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.putrequest("POST", parts.path + (f"?{parts.query}" if parts.query else ""))
        conn.putheader("Authorization", f"token {token}")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders()
        sent, fired = 0, False
        while sent < len(data):
            if at_half is not None and not fired and sent >= len(data) // 2:
                fired = True
                at_half()
            try:
                conn.send(data[sent : sent + chunk])
            except OSError:
                break  # the other end went away: read whatever answer there is
            sent += chunk
            time.sleep(delay)
        try:
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            return None, repr(exc)
    finally:
        conn.close()


# --- the upload disk ------------------------------------------------------------------------


class Tmpfs:
    """A tmpfs mounted at ``path`` (root and CAP_SYS_ADMIN only; see :meth:`mount`)."""

    def __init__(self, path: Path, size: str = "256m"):
        self.path, self.size, self.mounted = path, size, False

    def mount(self) -> str | None:
        """Mount it; None when done, else why it could not be mounted."""
        if os.geteuid() != 0 or not shutil.which("mount"):
            return "not root: no tmpfs can be mounted"
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        run = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
        )
        if run.returncode:
            return f"mount -t tmpfs failed: {run.stderr.strip()}"
        self.mounted = True
        return None

    def used(self) -> int:
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def resize(self, size: str | int) -> None:
        """Grow or shrink it (never below what it holds): shrinking to ``used() + x`` fills the disk."""
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True, capture_output=True)

    def unmount(self) -> None:
        if self.mounted:
            run = subprocess.run(["umount", str(self.path)], capture_output=True)
            if run.returncode:  # something still holds a file open: detach it lazily
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False


# --- PostgreSQL -----------------------------------------------------------------------------


def _cluster_on(port: int) -> tuple[str, str] | None:
    """(version, name) of the local PostgreSQL cluster on ``port`` (Debian's pg_lsclusters)."""
    if not shutil.which("pg_lsclusters"):
        return None
    run = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True)
    for line in run.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == str(port) and fields[3] == "online":
            return fields[0], fields[1]
    return None


def postgres_fault(admin_dsn: str, database: str, port: int = 5432) -> str:
    """Take PostgreSQL away under the service: restart the cluster when we may (root, a local
    Debian cluster, and CONTESTHUB_TEST_PG_FAULT is not ``terminate``), else end every
    connection of ``database``. Returns which fault was made: "restart" or "terminate".

    A restart drops every connection of every database on the cluster for a second or two.
    """
    cluster = _cluster_on(port)
    if cluster and os.geteuid() == 0 and os.environ.get("CONTESTHUB_TEST_PG_FAULT") != "terminate":
        run = subprocess.run(
            ["pg_ctlcluster", cluster[0], cluster[1], "restart", "-m", "fast"], capture_output=True, text=True
        )
        if run.returncode == 0:
            return "restart"
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as con:
        con.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
    return "terminate"


# --- the store's invariants -----------------------------------------------------------------


def store_problems(store: Store, *, damaged: Iterable[str] = (), free_invalid_per_day: int = 1000) -> list[str]:
    """What is wrong with the store after a fault (empty when nothing is).

    Nothing accepted is lost (every submission is scored, invalid or errored, never pending;
    a scored one has its active score and its file, whole); interrupted ones were rescored or
    refunded (a charge exactly when scored, or invalid beyond the free invalid files of its
    day; each day's quota counts exactly the charged ones); no partial upload remains; the
    audit chain verifies. ``damaged``: digests of files a test broke on purpose;
    ``free_invalid_per_day``: the contest's (the suites' hubs lift it, tests/hub_fixtures.py).
    """
    damaged = set(damaged)
    problems: list[str] = []
    with store.session() as s:
        subs = s.scalars(select(Submission).order_by(Submission.id)).all()
        charged = Counter((x.team_id, x.challenge, x.quota_day) for x in subs if x.charged)
        free = Counter((x.team_id, x.challenge, x.quota_day) for x in subs if x.status == "invalid" and not x.charged)
        for x in subs:
            if x.status in PENDING:
                problems.append(f"submission {x.id} is still {x.status}")
            elif x.status == "scored":
                if not x.charged:
                    problems.append(f"submission {x.id} is scored but not charged")
                if not any(sc.active for sc in x.scores):
                    problems.append(f"submission {x.id} is scored without an active score")
                if x.sha256 not in damaged and not store.files.verify(x.sha256):
                    problems.append(f"the file of scored submission {x.id} is missing or damaged")
            elif x.charged and not (
                x.status == "invalid" and free[(x.team_id, x.challenge, x.quota_day)] >= free_invalid_per_day
            ):
                problems.append(f"submission {x.id} is {x.status} but still charged")
        for q in s.scalars(select(Quota)):
            n = charged.get((q.team_id, q.challenge, q.day), 0)
            if q.used != n:
                problems.append(f"quota of team {q.team_id} / {q.challenge} / {q.day}: used {q.used}, charged {n}")
        check = audit.verify(s)
        problems += [f"audit: {p}" for p in check.problems]
    if store.files.incoming.exists():
        problems += [f"partial upload left behind: {p.name}" for p in store.files.incoming.iterdir()]
    return problems
