"""What the hub benchmarks (hub_load, deadline_rush) add to :mod:`hub.testing`, the one hub driver
of the tests and the benchmarks.

* :func:`demo_data`: the demo datasets built once (scale 1) into ``var/bench/hub/`` (kept
  between runs; the build skips what is up to date), with the contest's hidden solutions.
* :class:`Hub`: JupyterHub started with the real config (demo mode) on free ports, with its
  own private and home roots in a fresh folder, the organizer account made as on ``contesthub
  up``'s first start, and the submission service and leaderboard running. Stopping it stops
  every server, the services and the proxy (:meth:`hub.launcher.HubProcess.stop`).
* HTTP helpers that act the way a person or a notebook does come from
  :class:`hub.testing.HubDriver` (a cell in a contestant's kernel: :func:`hub.kernel_client.run_code`).
* :func:`predictions`: valid (or broken) prediction files for ``outpatient_forecast``, each
  with different bytes, so every submission is a file of its own in the store.
* :func:`memory`: RSS (and PSS) of the hub, the proxy, the services and the contestants'
  servers, read from ``/proc``.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import requests

from hub.launcher import HubProcess, descendants
from hub.testing import CHALLENGE, HttpError, HubDriver, contest_file, hub_settings, start_hub
from sandbox.descriptor import test_table_name
from sandbox.settings import PROJECT_ROOT, Paths

# Re-exported for the scenarios (benchmarks/deadline_rush.py, benchmarks/hub_load.py).
__all__ = ["CHALLENGE", "HttpError", "contest_file"]

BENCH_HOME = PROJECT_ROOT / "var" / "bench" / "hub"
RESULTS = PROJECT_ROOT / "benchmarks" / "results"


# --- data ----------------------------------------------------------------------------------


def demo_data(home: Path = BENCH_HOME, only: tuple[str, ...] | None = None) -> Paths:
    """Every demo dataset (or ``only`` these) built into ``home``; a :class:`Paths`."""
    from sandbox.build import build_dataset
    from sandbox.descriptor import load_all

    p = Paths(home / "data", home / "private", PROJECT_ROOT / "datasets").ensure()
    for ds in load_all(p.datasets_dir, list(only or ())):
        result = build_dataset(ds, p)
        if result.status not in ("built", "up-to-date"):
            raise RuntimeError(f"building {ds.id} failed: {result.error and result.error.en}")
    return p


class Predictions:
    """Prediction files for ``outpatient_forecast``: the test ids with a per-hospital mean.

    Every call to :meth:`valid` gives a file with different bytes (a different first value), so
    each submission is stored on its own; :meth:`broken` gives one with a wrong column name
    (an ``invalid`` submission that gives its quota unit back).
    """

    def __init__(self, data: Paths):
        import duckdb

        root = data.data_root / "hospital_outpatient" / "latest"
        con = duckdb.connect()
        try:
            test = _table(root, test_table_name("daily_visits"))
            train = _table(root, "daily_visits")
            rows = con.execute(
                f"""
                SELECT strftime(t.date, '%Y-%m-%d'), t.hospital_id, round(avg(v.outpatient_visits), 3)
                FROM read_parquet('{test}') t JOIN read_parquet('{train}') v USING (hospital_id)
                GROUP BY ALL ORDER BY 1, 2"""
            ).fetchall()
        finally:
            con.close()
        self.header = "date,hospital_id,outpatient_visits\n"
        self.first = rows[0]
        self.rest = "".join(f"{d},{h},{v}\n" for d, h, v in rows[1:]).encode()
        self.rows = len(rows)
        self._n = 0

    def valid(self) -> bytes:
        self._n += 1
        d, h, v = self.first
        value = float(v) + self._n / 1000 + random.random() / 1e6
        return f"{self.header}{d},{h},{value:.7f}\n".encode() + self.rest

    def broken(self) -> bytes:
        self._n += 1
        d, h, v = self.first
        return f"date,hospital_id,visits\n{d},{h},{float(v) + self._n / 1000}\n".encode() + self.rest


def _table(root: Path, table: str) -> str:
    folder = root / table
    return str(folder / "**" / "*.parquet") if folder.is_dir() else str(root / f"{table}.parquet")


# Limits of the contest the load benchmarks run: the rush is limited by the platform, not by
# the rules that keep one team from costing it too much (tests/test_upload_limits.py has those).
LOAD_LIMITS = {"uploads_per_minute": 100_000, "free_invalid_per_day": 100_000}


# --- the hub -------------------------------------------------------------------------------


@dataclass
class Hub(HubDriver):
    """A running hub (with its submission service and leaderboard) and its organizer
    (:class:`hub.testing.HubDriver`, the tests' driver too), started by :meth:`start`."""

    _stack: ExitStack | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        root: Path,
        data: Paths,
        *,
        services: str = "submit,leaderboard",
        extra_env: dict | None = None,
        accounts: dict[str, str] | None = None,
        timeout: float = 180,
        **overrides,
    ) -> Hub:
        """Start a hub in ``root`` over the built ``data`` (its solutions are linked in), and wait
        for its services.

        ``accounts`` (name -> password) are made approved in the hub's accounts table first, as
        an organizer's roster import does (bcrypt hashes, in parallel: not part of any timing).
        """
        settings = hub_settings(root, data.data_root, services=services, idle_timeout=0, **overrides)
        stack = ExitStack()
        hub = stack.enter_context(
            start_hub(
                settings,
                root / "jupyterhub.log",
                solutions=data.private_root / "solutions",
                extra_env=extra_env,
                accounts=accounts,
                timeout=timeout,
                wait_services=True,
                driver=cls,
            )
        )
        hub._stack = stack
        return hub

    def stop(self) -> int | None:
        code = super().stop()
        if self._stack is not None:
            self._stack.close()
        return code

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# --- memory --------------------------------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _mem(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes; (0, 0) when the process is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def classify(cmd: str) -> str:
    if "configurable-http-proxy" in cmd:
        return "proxy"
    if "jupyterhub.singleuser" in cmd or "jupyterhub-singleuser" in cmd:
        return "servers"
    if "ipykernel" in cmd:
        return "kernels"
    if "hub.submit_service" in cmd:
        return "submit service"
    if "hub.scorer" in cmd:
        return "scorers"
    if "streamlit" in cmd:
        return "leaderboard"
    if "idle_culler" in cmd:
        return "idle culler"
    return "other"


def memory(process: HubProcess) -> dict[str, dict]:
    """RSS and PSS (MiB) and process count per kind: hub, proxy, servers, kernels, services."""
    out: dict[str, dict] = {}

    def add(kind: str, pid: int) -> None:
        rss, pss = _mem(pid)
        if not rss:
            return
        d = out.setdefault(kind, {"processes": 0, "rss_mib": 0.0, "pss_mib": 0.0})
        d["processes"] += 1
        d["rss_mib"] += rss / 2**20
        d["pss_mib"] += pss / 2**20

    if process.proc is None or process.proc.poll() is not None:
        return out
    add("hub", process.proc.pid)
    servers = set()
    for pid, _start in descendants(process.proc.pid):
        kind = classify(_cmdline(pid))
        if kind == "servers":
            servers.add(pid)
        add(kind, pid)
    return out


# --- figures -------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest-rank; None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(q / 100 * len(v)) - 1))
    return v[k]


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values) if values else None,
        "mean": statistics.fmean(values) if values else None,
    }


def fmt(x: float | None, unit: str = "s", digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f} {unit}".rstrip()


def machine_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def write_result(name: str, doc: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8")
    return path


# --- a contestant's server -----------------------------------------------------------------


def wait_spawned(hub: Hub, name: str, token: str, timeout: float = 300) -> dict:
    """Follow the spawn's progress stream (what the spawn-pending page reads) until it ends.

    Returns the last event (``ready`` true, or ``failed``).
    """
    url = f"{hub.url}/hub/api/users/{name}/server/progress"
    deadline = time.monotonic() + timeout
    last: dict = {}
    with requests.get(url, headers={"Authorization": f"token {token}"}, stream=True, timeout=timeout) as r:
        if r.status_code != 200:
            raise HttpError("spawn progress", r)
        for raw in r.iter_lines(decode_unicode=True):
            if raw and raw.startswith("data:"):
                last = json.loads(raw[5:])
                if last.get("ready") or last.get("failed"):
                    return last
            if time.monotonic() > deadline:
                break
    return last


# --- whose CPU ------------------------------------------------------------------------------


def _proc_cpu(pid: int) -> float:
    """CPU seconds of a process and of its children it has reaped (kernels, stopped servers)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    f = text[text.rindex(")") + 2 :].split()
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (not idle, not waiting for I/O)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """Who used the machine's CPU between :meth:`start` and :meth:`stop`, in cores.

    ``platform``: the hub and everything below it (proxy, services, servers, kernels);
    ``load generator``: this process (the simulated contestants); ``others``: the rest of the
    machine (other people's work on a shared machine). Approximate (a process that ended in
    between counts through its parent), but enough to tell a slow platform from a busy machine.
    """

    def __init__(self, process: HubProcess):
        self.process = process

    def _platform(self) -> dict[str, float]:
        """CPU seconds so far by kind of process (hub, proxy, servers, submit service, ...)."""
        out: dict[str, float] = {}
        if self.process.proc is None:
            return out
        pid = self.process.proc.pid
        out["hub"] = _proc_cpu(pid)
        for p, _ in descendants(pid):
            kind = classify(_cmdline(p))
            out[kind] = out.get(kind, 0.0) + _proc_cpu(p)
        return out

    @staticmethod
    def _me() -> float:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def start(self) -> CpuWatch:
        self.t0, self.busy0, self.platform0, self.me0 = time.monotonic(), _machine_busy(), self._platform(), self._me()
        self.load0 = os.getloadavg()[0]
        return self

    def stop(self) -> dict:
        seconds = time.monotonic() - self.t0
        busy = (_machine_busy() - self.busy0) / seconds
        now = self._platform()
        # A process that ended in between (a stopped server) counts through its parent (the hub).
        kinds = {k: max(0.0, v - self.platform0.get(k, 0.0)) / seconds for k, v in now.items()}
        platform = sum(kinds.values())
        me = (self._me() - self.me0) / seconds
        return {
            "seconds": seconds,
            "cores": os.cpu_count(),
            "machine busy (cores)": busy,
            "platform (cores)": platform,
            "platform by process (cores)": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
            "load generator (cores)": me,
            "others (cores)": max(0.0, busy - platform - me),
            "load average at start / end": [self.load0, os.getloadavg()[0]],
        }


def cpu_line(c: dict) -> str:
    return (
        f"CPU over {c['seconds']:.0f} s ({c['cores']} cores): machine busy {c['machine busy (cores)']:.2f} cores = "
        f"platform {c['platform (cores)']:.2f} + load generator {c['load generator (cores)']:.2f} + "
        f"others {c['others (cores)']:.2f}; load average {c['load average at start / end'][0]:.1f} -> "
        f"{c['load average at start / end'][1]:.1f}\n    platform: "
        + ", ".join(f"{k} {v:.2f}" for k, v in c["platform by process (cores)"].items() if v >= 0.005)
    )
