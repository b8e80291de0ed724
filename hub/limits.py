"""Per-contestant limits in secure mode: memory, processes and CPU that the kernel enforces.

JupyterHub's ``LocalProcessSpawner`` only hands ``MEM_LIMIT`` and ``CPU_LIMIT`` to the server
as variables (its documentation says it does not enforce them): one contestant's kernel could
take the machine's memory, or fork until nobody can start a process, and bring the hub, the
submission service and every other contestant down with it. Secure mode therefore confines
each contestant's server, and everything it starts, with one of two mechanisms, chosen when
the hub starts (setting ``sandbox_limits``: ``auto``, ``cgroup`` or ``rlimit``) and named in
its log (:func:`choose`):

* **cgroup** (:class:`CgroupLimits`, cgroup v1): a control group per contestant,
  ``<the hub's own group>/contesthub/<account>``, in the ``memory`` and ``pids`` hierarchies
  (and ``cpu`` where mounted): ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes``,
  so swap is no way out) = ``mem_limit``, ``pids.max`` = ``max_processes``,
  ``cpu.cfs_quota_us`` = ``cpu_limit`` CPUs. The server joins its groups after the fork and
  before it drops root, so its kernels, terminals and local Dask workers count together, and
  the contestant cannot leave them (their files belong to root). Over the memory limit the
  kernel's OOM killer ends a process of that group only (the largest, normally the kernel
  that allocated); over the process limit ``fork`` fails with ``EAGAIN`` for that contestant
  only. When the server stops, whatever it left running in its groups is killed and the
  groups are removed.
* **rlimit** (:class:`RlimitLimits`), where no cgroup can be made (a cgroup v2-only machine
  without a delegated subtree, a container): ``setrlimit`` in the server, inherited by what it
  starts. ``RLIMIT_DATA`` = ``mem_limit`` bounds each process (not the contestant's total: two
  kernels may use twice as much), and the process that passes it gets ``MemoryError``;
  ``RLIMIT_NPROC`` = ``max_processes`` counts the processes and threads of the uid, which in
  secure mode is the contestant's alone. No CPU cap. ``RLIMIT_AS`` is not used, because address
  space is not memory: measured on a 2-core machine, a kernel's libraries (numpy, pandas,
  pyarrow, Dask, scikit-learn, ipykernel) with a 2000×2000 matrix product and a DuckDB
  group-by over 50 million rows on 16 threads peak at 2.9 GiB of address space for 340 MiB
  resident (thread stacks and allocator arenas reserve what they never touch, more with more
  cores): under ``RLIMIT_AS`` of 2 GiB DuckDB fails with "Allocation failure", while
  ``RLIMIT_DATA`` of 1 GiB runs it (at 512 MiB OpenBLAS cannot allocate its buffers).

The groups sit below the hub's own group, so a limit on the hub's service bounds them all too.

cgroup v2 is not used yet: the hub would need a delegated subtree of its own (with systemd,
``Delegate=yes``), which machines like this one (PID 1 is not systemd) do not have.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MECHANISMS = ("auto", "cgroup", "rlimit")
GROUP = "contesthub"  # the folder under the hub's own group that holds one group per contestant
NEEDED = ("memory", "pids")  # controllers a per-contestant group needs; cpu is used where mounted
CFS_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    """What one contestant may use: bytes of memory, processes (threads count), CPUs."""

    memory: int
    processes: int
    cpu: float | None = None


# --- cgroup v1 -----------------------------------------------------------------------------


def _v1_mounts(mountinfo: str) -> dict[str, Path]:
    """Mount point of each cgroup v1 controller whose mount shows its whole hierarchy."""
    out = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(tail) < 3 or tail[0] != "cgroup" or fields[3] != "/":
            continue
        for option in tail[2].split(","):
            out.setdefault(option, Path(fields[4]))
    return out


def _own_groups(proc_cgroup: str) -> dict[str, str]:
    """The calling process's group in each v1 hierarchy (``/proc/self/cgroup``), by controller."""
    out = {}
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            if controller:
                out[controller] = path
    return out


def cgroup_bases() -> tuple[dict[str, Path], str | None]:
    """Where the per-contestant groups go, by controller; and why cgroups cannot be used (or None)."""
    try:
        mounts = _v1_mounts(Path("/proc/self/mountinfo").read_text())
        own = _own_groups(Path("/proc/self/cgroup").read_text())
    except OSError as exc:
        return {}, f"cannot read /proc/self ({exc})"
    missing = [c for c in NEEDED if c not in mounts or c not in own]
    if missing:
        return {}, f"no cgroup v1 hierarchy for {', '.join(missing)} (cgroup v2 alone is not used yet)"
    bases = {c: mounts[c] / own[c].lstrip("/") / GROUP for c in (*NEEDED, "cpu") if c in mounts and c in own}
    return bases, None


class CgroupLimits:
    """One cgroup v1 group per contestant in the memory, pids (and cpu) hierarchies."""

    name = "cgroup"

    def __init__(self, bases: dict[str, Path]):
        self.bases = bases

    def describe(self) -> str:
        return "cgroup v1, one group per contestant: " + ", ".join(f"{c} {p}/<account>" for c, p in self.bases.items())

    def groups(self, account: str) -> dict[str, Path]:
        return {c: base / account for c, base in self.bases.items()}

    def prepare(self, account: str, limits: Limits) -> list[str]:
        """Make the contestant's groups (or reuse them) and write their limits, as root; their paths.

        The spawner keeps the paths in its state: a hub restarted in another group of its own
        still removes these when the server stops.
        """
        for controller, group in self.groups(account).items():
            for attempt in range(3):  # another server's stop may remove the empty parent meanwhile
                try:
                    group.mkdir(parents=True, exist_ok=True)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
            if controller == "memory":
                # Lower the total first: memsw must stay >= the memory limit at every step.
                memsw = group / "memory.memsw.limit_in_bytes"
                if memsw.exists():
                    _write(memsw, str(max(limits.memory, _read_int(group / "memory.limit_in_bytes"))))
                _write(group / "memory.limit_in_bytes", str(limits.memory))
                if memsw.exists():
                    _write(memsw, str(limits.memory))
            elif controller == "pids":
                _write(group / "pids.max", str(limits.processes))
            elif controller == "cpu" and limits.cpu:
                _write(group / "cpu.cfs_period_us", str(CFS_PERIOD_US))
                _write(group / "cpu.cfs_quota_us", str(max(1000, int(limits.cpu * CFS_PERIOD_US))))
        return [str(group) for group in self.groups(account).values()]

    def preexec(self, account: str, limits: Limits) -> Callable[[], None]:
        """Runs in the server's process after the fork, as root: join the groups (fails closed)."""
        procs = [str(group / "cgroup.procs") for group in self.groups(account).values()]

        def join() -> None:
            pid = str(os.getpid()).encode()
            for path in procs:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)

        return join

    def release(self, account: str, wait: float = 5.0, groups: list[str] | None = None) -> list[Path]:
        """After the server stopped: end what it left running, remove the groups; the groups still there.

        Whatever is still in the contestant's groups ``wait`` seconds after the server stopped
        (a kernel the server did not shut down, a background job) is killed, as systemd does
        with a stopped unit's control group: a stopped contestant runs nothing.
        """
        groups = [Path(g) for g in groups] if groups else list(self.groups(account).values())
        deadline = time.monotonic() + wait
        while _members(groups) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in _members(groups):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        left = []
        for group in groups:
            deadline = time.monotonic() + 5
            while True:
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        left.append(group)
                        break
                    time.sleep(0.1)
            with contextlib.suppress(OSError):
                group.parent.rmdir()  # the shared folder, once no contestant's group is left in it
        return left

    def probe(self) -> str | None:
        """Why a group cannot be made and limited here (None when it can): tried for real."""
        account = f".probe-{os.getpid()}"
        try:
            self.prepare(account, Limits(memory=2**30, processes=64, cpu=1.0))
        except OSError as exc:
            return f"cannot make a group under {', '.join(map(str, self.bases.values()))}: {exc}"
        finally:
            self.release(account, wait=0)
        return None


# --- setrlimit -----------------------------------------------------------------------------


class RlimitLimits:
    """``setrlimit`` in the server: RLIMIT_DATA per process, RLIMIT_NPROC per uid (= contestant)."""

    name = "rlimit"

    def describe(self) -> str:
        return "setrlimit: RLIMIT_DATA (memory, per process), RLIMIT_NPROC (processes and threads, per contestant)"

    def prepare(self, account: str, limits: Limits) -> list[str]:
        return []

    def preexec(self, account: str, limits: Limits) -> Callable[[], None]:
        return lambda: apply_rlimits(limits)

    def release(self, account: str, wait: float = 0, groups: list[str] | None = None) -> list[Path]:
        return []


def apply_rlimits(limits: Limits) -> None:
    """Lower this process's RLIMIT_DATA and RLIMIT_NPROC (soft and hard) to ``limits``."""
    resource.setrlimit(resource.RLIMIT_DATA, (limits.memory, limits.memory))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))


# --- the choice ----------------------------------------------------------------------------


def choose(setting: str) -> tuple[CgroupLimits | RlimitLimits, str | None]:
    """The mechanism for ``sandbox_limits``, and why cgroups were not taken (None when they were).

    ``auto`` takes cgroups where a group can be made and limited here, else setrlimit;
    ``cgroup`` raises ValueError, saying why, where it cannot; ``rlimit`` always takes setrlimit.
    """
    if setting not in MECHANISMS:
        raise ValueError(f"sandbox_limits {setting!r} is not one of {', '.join(MECHANISMS)}")
    if setting == "rlimit":
        return RlimitLimits(), "sandbox_limits = rlimit"
    bases, why = cgroup_bases()
    if why is None:
        cg = CgroupLimits(bases)
        why = cg.probe()
        if why is None:
            return cg, None
    if setting == "cgroup":
        raise ValueError(f"sandbox_limits = cgroup, but {why}")
    return RlimitLimits(), why


def _members(groups: list[Path]) -> set[int]:
    """The processes in ``groups`` (those that still exist)."""
    pids: set[int] = set()
    for group in groups:
        with contextlib.suppress(OSError):
            pids.update(int(line) for line in (group / "cgroup.procs").read_text().split())
    return pids


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())
