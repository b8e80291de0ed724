"""Re-running the finalists' notebooks: ``contesthub verify-run CHALLENGE [--team T]``.

Each final submission's notebook (the copy kept with its provenance, ``leaderboard/provenance.py``)
runs again in a clean sandbox, and the predictions it submits are compared with the file the team
submitted. The verdict is recorded in ``reruns`` with the run's log, and in the audit log:

* ``reproduced``: every row's prediction equal, up to floating-point rounding (relative 1e-9)
  plus the challenge's ``rerun_tolerance`` (absolute; labels must be equal);
* ``differs``: the run gave other predictions (how many rows, the largest difference);
* ``failed``: no notebook was recorded, the notebook raised, ran out of time or memory, or the
  file it submitted is not a valid submission.

The sandbox: a child process (the scorer's approach: a process of its own, ended with the
service that started it, with limits set before it runs anything) whose home holds the notebook
and nothing else; namespaces of its own (``unshare``; with a user namespace where the account
is not root; where neither is allowed the run is refused as ``failed``, never run unconfined):
no network but its own loopback, the private root (solutions, store, salts) and the contestants'
homes covered by empty read-only folders, the open data read-only;
``RLIMIT_DATA`` per process and ``RLIMIT_NPROC`` from :mod:`hub.limits`; the contest file's
``[limits] rerun_seconds`` of wall-clock time for the whole process group. The notebook runs in
a Jupyter kernel (``nbclient``), where ``sandbox.submit`` writes the predictions to the file the
run named (``CONTESTHUB_RERUN_OUTPUT``) instead of uploading them. The same image and packages:
the kernel is this installation's; the provenance's package digest says whether they match the
submitting kernel's (shown with the verdict). Secure mode's separate Unix account for the run and
cluster mode's Kubernetes Job are not built: the run uses the service's account.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leaderboard import audit
from leaderboard.contest import Challenge, Contest
from leaderboard.models import Rerun, Submission, SubmissionProvenance, Team
from leaderboard.store import Store
from sandbox import clock
from sandbox.settings import PROJECT_ROOT, Paths

VERDICTS = ("reproduced", "differs", "failed")
MAX_LOG = 64 * 1024  # the end of a run's output kept in the store
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
RELATIVE = 1e-9  # floating-point rounding: a sum in another order, a float printed and read back
NO_SANDBOX_EXIT = 97
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1,
    2,
    4,
    8,
    32,
    4096,
    16384,
    1 << 18,
)


@dataclass(frozen=True)
class RunLimits:
    seconds: int
    memory: int  # bytes per process
    processes: int = 512


@dataclass
class RunOutcome:
    predictions: Path | None
    log: str
    seconds: float
    error: str | None = None


def _loopback_up() -> None:
    """Bring up ``lo`` in this (new) network namespace: the notebook's kernel talks to its runner over it."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sh", b"lo", 0)))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


def _mount(libc, source: bytes | None, target: str, fstype: bytes | None, flags: int, data: bytes | None) -> None:
    if libc.mount(source, target.encode(), fstype, flags, data) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


def _isolate(hide: tuple[str, ...], read_only: tuple[str, ...]) -> None:
    """(in the child, before exec) Namespaces of its own: a network with only its own loopback, and
    a view of the file system in which ``hide`` are empty and ``read_only`` cannot be written.

    As root, network and mount namespaces; otherwise a user namespace too, in which this account
    maps to itself (its files stay its own). Where neither is allowed the run does not start."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        if libc.unshare(CLONE_NEWNS | CLONE_NEWNET) != 0:
            uid, gid = os.getuid(), os.getgid()
            if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare")
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
        _loopback_up()
        _mount(libc, None, "/", None, MS_REC | MS_PRIVATE, None)  # nothing below leaks to the machine
        for path in hide:  # an empty, unwritable folder over each: the hidden solutions, the store, others' homes
            if os.path.isdir(path):
                _mount(libc, b"tmpfs", path, b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, b"size=4k,mode=0")
        for path in read_only:
            if os.path.isdir(path):
                _mount(libc, path.encode(), path, None, MS_BIND | MS_REC, None)
                _mount(libc, None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
        return
    except OSError as exc:
        os.write(2, f"contesthub verify-run: the sandbox could not be made ({exc})\n".encode())
    os._exit(NO_SANDBOX_EXIT)


def _confine(limits: RunLimits, hide: tuple[str, ...], read_only: tuple[str, ...]):
    from hub.die_with_parent import die_with_parent
    from hub.limits import Limits, apply_rlimits

    def preexec() -> None:
        with contextlib.suppress(OSError):
            die_with_parent(signal.SIGKILL)
        _isolate(hide, read_only)
        apply_rlimits(Limits(memory=limits.memory, processes=limits.processes))

    return preexec


def _safe_name(name: str | None) -> str:
    base = re.sub(r"[^\w.\-\u3400-\u9fff]", "_", Path(name or "").name)[:100]
    return base if base.endswith(".ipynb") and base.strip("._") else "notebook.ipynb"


def run_notebook(
    notebook: bytes,
    name: str | None,
    data_root: Path,
    work: Path,
    limits: RunLimits,
    hide: tuple[Path, ...] = (),
) -> RunOutcome:
    """Run a notebook in a clean sandbox under ``work`` (made here); the predictions it submitted.

    ``hide``: folders the notebook must not see (the private root, the contestants' homes); they
    must not hold ``work``. The data root is read-only."""
    from sandbox.submit import RERUN_OUTPUT

    home, out = work / "home", work / "out"
    home.mkdir(parents=True, mode=0o700)
    out.mkdir(mode=0o700)
    nb = home / _safe_name(name)
    nb.write_bytes(notebook)
    predictions = out / "predictions"
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.defpath]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "CONTESTHUB_DATA_ROOT": str(data_root),
        "CONTESTHUB_PRIVATE_ROOT": str(work / "no-private-root"),
        RERUN_OUTPUT: str(predictions),
        "MEM_LIMIT": str(limits.memory),
        "CPU_LIMIT": "1",
        "JPY_SESSION_NAME": str(nb),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    log = work / "log.txt"
    start = time.monotonic()
    with open(log, "wb") as log_file:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "leaderboard.rerun", str(nb), str(limits.seconds)],
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_confine(limits, tuple(map(str, hide)), (str(data_root),)),
                start_new_session=True,  # its kernel and whatever the notebook starts: one group to end
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return RunOutcome(None, "", 0.0, f"the sandbox could not start: {exc}")
        try:
            code = proc.wait(timeout=limits.seconds)
            error = None
        except subprocess.TimeoutExpired:
            code, error = None, f"over its time limit of {limits.seconds} s"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the kernel too, whatever happened
            proc.wait()
    text = log.read_bytes()[-MAX_LOG:].decode("utf-8", "replace")
    if error is None and code == NO_SANDBOX_EXIT:
        error = "the sandbox (no network, hidden private folders) could not be made, so the notebook was not run"
    elif error is None and code != 0:
        error = f"the notebook stopped with an error (exit code {code})"
    elif error is None and not predictions.exists():
        error = "the notebook ran but submitted nothing (sandbox.submit was not called)"
    return RunOutcome(predictions if predictions.exists() else None, text, time.monotonic() - start, error)


def compare(ch: Challenge, paths: Paths, submitted: Path, produced: Path) -> tuple[str, dict]:
    """The verdict of a run's predictions against the submitted file, row by row (by id)."""
    from leaderboard.scoring import aligned
    from sandbox.submission_checks import SubmissionInvalid

    theirs = aligned(ch, submitted, paths)["p"]
    try:
        ours = aligned(ch, produced, paths)["p"]
    except SubmissionInvalid as exc:
        return "failed", {
            "why": "the re-run's file is not a valid submission",
            "errors": [str(p) for p in exc.problems][:5],
        }
    if ch.scorer.input in ("label", "ranking"):
        different = int(np.sum(theirs != ours))
        return ("reproduced" if not different else "differs"), {"rows": len(ours), "rows_differing": different}
    a, b = np.asarray(theirs, dtype=float), np.asarray(ours, dtype=float)
    gap = np.abs(a - b)
    allowed = ch.rerun_tolerance + RELATIVE * np.maximum(np.abs(a), np.abs(b))
    off = gap > allowed
    detail = {
        "rows": len(a),
        "rows_differing": int(off.sum()),
        "identical": bool(np.array_equal(a, b)),
        "largest_difference": float(gap.max()) if len(gap) else 0.0,
        "tolerance": ch.rerun_tolerance,
    }
    return ("differs" if off.any() else "reproduced"), detail


def _finals(store: Store, ch: Challenge, team: str | None) -> list[dict]:
    from leaderboard import ranking

    with store.session() as s:
        finals = ranking.final_submissions(s, ch, organizer=True)
        if team is not None:
            finals = [f for f in finals if f["team"] == team]
        for f in finals:
            prov = s.get(SubmissionProvenance, f["submission_id"])
            f["notebook_stored"] = prov.notebook_stored if prov else None
            f["notebook_name"] = prov.notebook_name if prov else None
            f["packages_sha256"] = prov.packages_sha256 if prov else None
    return finals


def packages_digest() -> str:
    """The package list's digest of this installation's kernels (as ``sandbox.provenance`` makes it)."""
    from sandbox import provenance

    return provenance.packages_sha256(provenance.packages())


def verify_run(
    store: Store,
    contest: Contest,
    paths: Paths,
    challenge_id: str,
    *,
    team: str | None = None,
    by: str,
    hide: tuple[Path, ...] = (),
    work_root: Path | None = None,
) -> list[dict]:
    """Re-run every final submission's notebook of the challenge (or of one team); record each verdict.

    The private root is hidden from the runs, and ``hide`` too (the hub's home root). The runs'
    folders are made in ``work_root`` (the system's temporary folder), outside everything hidden."""
    from leaderboard import teams as teams_mod

    ch = contest.challenge(challenge_id)
    if team is not None:
        with store.session() as s:
            teams_mod.get(s, team)  # NotFound, with the teams' names, for a mistyped team
    limits = RunLimits(seconds=contest.limits.rerun_seconds, memory=contest.limits.rerun_memory_mb << 20)
    ours = packages_digest()
    verdicts = []
    base = work_root or Path(tempfile.gettempdir())
    hidden = (paths.private_root, *hide)
    for f in _finals(store, ch, team):
        started = clock.now()
        detail: dict = {"same_packages": f["packages_sha256"] == ours if f["packages_sha256"] else None}
        log = ""
        seconds = 0.0
        if not f["notebook_stored"] or not store.files.path(f["notebook_stored"]).exists():
            verdict, detail["why"] = "failed", "no notebook was recorded with this submission"
        else:
            work = Path(tempfile.mkdtemp(prefix=f"contesthub-rerun-{f['submission_id']}-", dir=base))
            try:
                run = run_notebook(
                    store.files.path(f["notebook_stored"]).read_bytes(),
                    f["notebook_name"],
                    paths.data_root,
                    work,
                    limits,
                    hidden,
                )
                log, seconds = run.log, run.seconds
                if run.error is not None:
                    verdict, detail["why"] = "failed", run.error
                else:
                    verdict, more = compare(ch, paths, store.files.path(f["sha256"]), run.predictions)
                    detail.update(more)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        verdicts.append(_record(store, ch, f, verdict, detail, log, seconds, started, by))
    return verdicts


def _record(store: Store, ch: Challenge, f: dict, verdict: str, detail: dict, log: str, seconds, started, by) -> dict:
    with store.session() as s:
        team_id = s.get(Submission, f["submission_id"]).team_id
        row = Rerun(
            submission_id=f["submission_id"],
            challenge=ch.id,
            team_id=team_id,
            verdict=verdict,
            detail=detail,
            log=log,
            seconds=round(seconds, 3),
            by=by,
            started_at=started,
            finished_at=clock.now(),
        )
        s.add(row)
        s.flush()
        audit.record(
            s,
            by,
            "submission.rerun",
            f"{ch.id}/{f['submission_id']}",
            {
                "team": f["team"],
                "verdict": verdict,
                "detail": detail,
                "log_sha256": hashlib.sha256(log.encode("utf-8")).hexdigest(),
            },
        )
        return view(row, f["team"])


def view(row: Rerun, team: str) -> dict:
    return {
        "id": row.id,
        "challenge": row.challenge,
        "team": team,
        "submission_id": row.submission_id,
        "verdict": row.verdict,
        "detail": row.detail,
        "seconds": row.seconds,
        "by": row.by,
        "finished_at": row.finished_at.isoformat(),
    }


def latest(session, challenge_id: str | None = None) -> list[dict]:
    """The newest verdict of each re-run submission (what the organizer page and the results bundle show)."""
    from sqlalchemy import func, select

    newest = select(func.max(Rerun.id)).group_by(Rerun.submission_id)
    q = select(Rerun, Team.name).join(Team, Team.id == Rerun.team_id).where(Rerun.id.in_(newest)).order_by(Rerun.id)
    if challenge_id is not None:
        q = q.where(Rerun.challenge == challenge_id)
    return [view(r, name) for r, name in session.execute(q).all()]


def _child(notebook: str, seconds: str) -> None:
    """(the sandbox's process) Run every cell of the notebook in a kernel; exit 1 on an error."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=int(seconds), kernel_name="python3", resources={"metadata": {"path": str(Path(notebook).parent)}}
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        print(exc, flush=True)
        sys.exit(1)
    for cell in nb.cells:  # what the cells printed, for the log
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                sys.stdout.write(output.get("text", ""))
    print("notebook finished", flush=True)


if __name__ == "__main__":
    _child(*sys.argv[1:3])
