"""Shared by the hub benchmarks (hub_load, deadline_rush) and tests/test_load.py: one real hub.

* :func:`demo_data`: the demo datasets built once (scale 1) into ``var/bench/hub/`` (kept
  between runs; the build skips what is up to date), with the contest's hidden solutions.
* :class:`Hub`: JupyterHub started with the real config (demo mode) on free ports, with its
  own private and home roots in a fresh folder, the organizer account made as on ``contesthub
  up``'s first start, and the submission service and leaderboard running. Stopping it stops
  every server, the services and the proxy (:meth:`hub.launcher.HubProcess.stop`).
* HTTP helpers that act the way a person or a notebook does: the login form (with the xsrf
  cookie), the hub's REST API with a token, the submission service with a token (a cell in a
  contestant's kernel: :func:`hub.kernel_client.run_code`, shared with the tests).
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from hub.accounts import AccountStore, prepare_organizer
from hub.launcher import HubProcess, descendants, free_ports
from hub.settings import HubSettings
from sandbox.descriptor import test_table_name
from sandbox.settings import PROJECT_ROOT, Paths

BENCH_HOME = PROJECT_ROOT / "var" / "bench" / "hub"
RESULTS = PROJECT_ROOT / "benchmarks" / "results"
CHALLENGE = "outpatient_forecast"


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


def contest_file(folder: Path, **limits: int) -> Path:
    """config/contest.toml with other ``[limits]`` (``uploads_per_minute=1000``, ...), written
    into ``folder``: a load test, or a test suite, uploads far faster than any person, and a
    hub reads it through ``CONTESTHUB_CONTEST``."""
    import re

    text = (PROJECT_ROOT / "config" / "contest.toml").read_text("utf-8")
    for key, value in limits.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {int(value)}", text, count=1, flags=re.M)
        if n != 1:
            raise KeyError(f"config/contest.toml has no [limits] key {key}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "contest.toml"
    path.write_text(text, "utf-8")
    return path


# Limits of the contest the load benchmarks run: the rush is limited by the platform, not by
# the rules that keep one team from costing it too much (tests/test_upload_limits.py has those).
LOAD_LIMITS = {"uploads_per_minute": 100_000, "free_invalid_per_day": 100_000}


# --- the hub -------------------------------------------------------------------------------


@dataclass
class Hub:
    """A running hub (with its submission service and leaderboard) and its organizer."""

    settings: HubSettings
    process: HubProcess
    organizer: str
    organizer_password: str
    root: Path
    _org_token: str | None = field(default=None, repr=False)

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
        """Start a hub in ``root`` over the built ``data`` (its solutions are linked in).

        ``accounts`` (name -> password) are made approved in the hub's accounts table first, as
        an organizer's roster import does (bcrypt hashes, in parallel: not part of any timing).
        """
        ports = free_ports(5)
        values = {
            "mode": "demo",
            "port": ports[0],
            "hub_port": ports[1],
            "proxy_api_port": ports[2],
            "submit_port": ports[3],
            "leaderboard_port": ports[4],
            "data_root": data.data_root,
            "private_root": root / "private",
            "home_root": root / "homes",
            "hub_db_url": "",
            "cpu_limit": 1,
            "mem_limit": "2G",
            "min_password_length": 8,
            "demo_open_login": False,
            "idle_timeout": 0,
            "services": services,
            **overrides,
        }
        settings = HubSettings.load(values, environ={})
        settings.private_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        link = settings.private_root / "solutions"
        if not link.exists():
            link.symlink_to(data.private_root / "solutions")
        password = prepare_organizer(settings.db_url, settings.organizer)
        if not password:
            raise RuntimeError(f"{root} already holds a hub: use a fresh folder")
        if accounts:
            store = AccountStore(settings.db_url)
            try:
                with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
                    list(pool.map(lambda kv: store.create(*kv, approved=True, by="organizer"), accounts.items()))
            finally:
                store.close()
        process = HubProcess(settings, extra_env=extra_env, log=root / "jupyterhub.log").start()
        hub = cls(settings, process, settings.organizer, password, root)
        try:
            process.wait_ready(timeout)
            hub.wait_services(timeout)
        except BaseException:
            process.stop()
            raise
        return hub

    def stop(self) -> int | None:
        return self.process.stop()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.settings.public_url

    @property
    def store_paths(self) -> Paths:
        """The paths the submission service uses (its store is under this private root)."""
        return Paths(self.settings.data_root, self.settings.private_root, PROJECT_ROOT / "datasets")

    def wait_services(self, timeout: float = 180) -> None:
        """Until the submission service and the leaderboard answer through the proxy."""
        names = self.settings.service_names or ()
        checks = []
        if "submit" in names:
            checks.append(f"{self.url}/services/submit/api/health")
        if "leaderboard" in names:
            checks.append(f"{self.url}/services/leaderboard/_stcore/health")
        deadline = time.monotonic() + timeout
        for url in checks:
            while True:
                try:
                    if requests.get(url, timeout=10).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s\n{self.process.log_tail(60)}")
                if self.process.poll() is not None:
                    raise RuntimeError(f"the hub exited\n{self.process.log_tail(60)}")
                time.sleep(0.5)

    # --- as a person -----------------------------------------------------------------------

    def login(self, name: str, password: str, timeout: float = 120) -> requests.Session:
        """The login form, as a browser fills it in: GET the page (xsrf cookie), POST the form."""
        s = requests.Session()
        r = s.get(f"{self.url}/hub/login", timeout=timeout)
        r.raise_for_status()
        r = s.post(
            f"{self.url}/hub/login",
            data={"username": name, "password": password, "_xsrf": s.cookies["_xsrf"]},
            allow_redirects=False,
            timeout=timeout,
        )
        if r.status_code != 302:
            raise HttpError("login", r)
        return s

    def api(self, method: str, path: str, *, token: str | None = None, session=None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"token {token}"
        if session is not None and "_xsrf" in session.cookies:
            headers["X-XSRFToken"] = session.cookies["_xsrf"]
        return (session or requests).request(
            method, f"{self.url}/hub/api{path}", headers=headers, timeout=kw.pop("timeout", 120), **kw
        )

    def new_token(self, name: str, *, session=None, token: str | None = None, note: str = "load") -> str:
        r = self.api(
            "POST", f"/users/{name}/tokens", session=session, token=token, json={"note": note, "expires_in": 86400}
        )
        if r.status_code != 201:
            raise HttpError("token", r)
        return r.json()["token"]

    def organizer_token(self) -> str:
        if self._org_token is None:
            session = self.login(self.organizer, self.organizer_password)
            self._org_token = self.new_token(self.organizer, session=session, note="organizer")
        return self._org_token

    def service(self, method: str, path: str, token: str | None, **kw) -> requests.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        headers.update(kw.pop("headers", {}))
        return requests.request(
            method,
            f"{self.url}/services/submit/api/{path}",
            headers=headers,
            timeout=kw.pop("timeout", 120),
            **kw,
        )

    # --- as an organizer -------------------------------------------------------------------

    def make_team(self, name: str, members: list[str]) -> None:
        r = self.service("POST", "admin/teams", self.organizer_token(), json={"name": name, "members": members})
        if r.status_code != 201:
            raise HttpError("team", r)

    def grant(self, team: str, extra: int, reason: str = "load test", challenge: str = CHALLENGE) -> None:
        r = self.service(
            "POST",
            f"admin/teams/{team}/grants",
            self.organizer_token(),
            json={"challenge": challenge, "extra": extra, "reason": reason},
        )
        if r.status_code != 201:
            raise HttpError("grant", r)

    def make_users(self, names: list[str]) -> None:
        """Hub users made by the organizer through the REST API (no password: token use only)."""
        for i in range(0, len(names), 100):
            r = self.api("POST", "/users", token=self.organizer_token(), json={"usernames": names[i : i + 100]})
            if r.status_code != 201:
                raise HttpError("users", r)

    def pending(self) -> int:
        """Submissions the service has not finished scoring (its health endpoint)."""
        return self.service("GET", "health", None).json()["pending"]

    def wait_scored(self, timeout: float = 1800) -> float:
        """Until no submission is pending; the seconds it took."""
        started = time.monotonic()
        while self.pending():
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"submissions still pending after {timeout:.0f} s")
            time.sleep(0.5)
        return time.monotonic() - started


class HttpError(RuntimeError):
    def __init__(self, step: str, r: requests.Response):
        super().__init__(f"{step}: {r.request.method} {r.url} -> {r.status_code} {r.text[:500]}")
        self.step, self.status = step, r.status_code


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
