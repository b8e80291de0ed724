"""Benchmark (issue 5, "Scale"): 100 contestants against one hub in demo mode, on this machine.

One JupyterHub (the real config, demo mode: every JupyterLab a local process) with
configurable-http-proxy, the submission service and the Streamlit leaderboard. Before the
contest opens the organizer has made the accounts (approved, each with its own password, as
``contesthub teams import`` does) and 50 teams of 2 through the service's organizer API
(``POST api/admin/teams``). Then contestants arrive, one every ``--arrival-seconds``
(default 3 s, see below), and each one, in a thread of its own:

1. **login**: opens the login page and posts the login form (xsrf cookie, real bcrypt check);
2. **token**: makes an API token with that browser session (what the hub's token page does);
3. **spawn**: asks for its server (``POST /hub/api/users/<name>/server``) and follows the
   spawn's progress stream (what the spawn-pending page reads) until it is ready;
4. **lab**: opens ``/user/<name>/lab`` with the browser session (the OAuth round trip to the
   hub, then JupyterLab's page);
5. **cell**: starts a kernel and runs a cell through the kernel websocket, through the proxy:
   ``sandbox.sql("SELECT count(*) FROM hospital_outpatient.daily_visits")``, checking the count;
6. **submit**: uploads a predictions file for ``outpatient_forecast`` to the submission service
   with its token and asks for it every 0.5 s (as ``sandbox.submit``) until it is scored;
7. **leaderboard**: reads the service's ``api/challenges/<ch>/leaderboard`` JSON (its team must
   be on it) and the Streamlit leaderboard page's HTML through the proxy.

The arrival rate: ``--arrival-seconds 3`` is BENCHMARKS.md's profile (a class logging in over
five minutes). On the 2-core machine this was written on, one contestant costs the platform
about 4 CPU-seconds (most of it in its server: start, lab page, kernel, first cell; printed as
"platform CPU per contestant"), so one every 3 s keeps the machine about two-thirds busy and
spawns do not queue: 100 of 100 succeeded, spawn median 3.8 s, p95 5.5 s. It was 10.7
CPU-seconds before jsonschema was kept below 4.25 (pyproject.toml): its rfc3987-syntax built
Earley parsers for the IRI grammar at import in every JupyterLab server and kernel, and at one
every 8 s 29 of 100 spawns then failed at the hub's 90 s ``Spawner.http_timeout``.

Its server keeps running. Meanwhile a sampler times ``GET /hub/api/user`` every 0.5 s (the
hub's REST API) and reads the memory of the hub, the proxy, the services and the contestants'
servers from ``/proc`` every 5 s. When all have finished the memory is read with every server
running, then every server is stopped through the API.

Then the **burst** (``--burst``, default 20; 0 leaves it out): that many new contestants do
the same, all at the same moment; it reports the time until all are ready and the hub API's
latency during the burst. At the end the servers and the hub are stopped.

Figures: errors by step (target: none), spawn time median and p95 (target median <= 5 s),
every step's p50/p95, hub API latency p50/p95 (arrivals, burst), submission latency (upload
to scored), memory (RSS; PSS where processes share pages) of the hub, the proxy and all
servers. Printed as a table and written as JSON under ``benchmarks/results/``.

    python3 dev.py bench hub_load [--users 100] [--arrival-seconds 3] [--burst 20] [--scorers 2] [--keep]

The load generator (threads with requests and websocket-client) runs on the same machine
and takes some of its CPU; so does whatever else runs there (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _hub
import _measure

from hub.kernel_client import run_code
from sandbox import statuses
from sandbox.settings import PROJECT_ROOT

CELL = """
import sandbox
print(sandbox.sql("SELECT count(*) FROM hospital_outpatient.daily_visits").fetchall()[0][0])
"""
STEPS = ("login", "token", "spawn", "lab", "cell", "submit", "leaderboard")


@dataclass
class Contestant:
    name: str
    password: str
    team: str
    arrive: float = 0.0  # seconds after the phase started
    times: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    failed: str | None = None  # the step that failed
    error: str | None = None
    ready_at: float | None = None  # seconds after the phase started
    done_at: float | None = None


def contestant_run(hub: _hub.Hub, c: Contestant, files: _hub.Predictions, expected_count: int, t0: float) -> None:
    step = "login"
    try:
        started = time.perf_counter()
        session = hub.login(c.name, c.password)
        c.times["login"] = time.perf_counter() - started

        step = "token"
        started = time.perf_counter()
        token = hub.new_token(c.name, session=session, note="hub load")
        c.times["token"] = time.perf_counter() - started

        step = "spawn"
        started = time.perf_counter()
        r = hub.api("POST", f"/users/{c.name}/server", token=token, timeout=300, json={"accept_rules": True})
        if r.status_code not in (201, 202):
            raise _hub.HttpError("spawn", r)
        c.extra["spawn request"] = time.perf_counter() - started
        if r.status_code == 202:
            last = _hub.wait_spawned(hub, c.name, token)
            if not last.get("ready"):
                raise RuntimeError(f"spawn did not become ready: {last}")
        c.times["spawn"] = time.perf_counter() - started
        c.ready_at = time.monotonic() - t0
        model = hub.api("GET", f"/users/{c.name}", token=token).json()
        if not model["servers"].get("", {}).get("ready"):
            raise RuntimeError(f"the hub does not report the server ready: {model}")

        step = "lab"
        started = time.perf_counter()
        r = session.get(f"{hub.url}/user/{c.name}/lab", timeout=300)
        if r.status_code != 200 or "jupyter-config-data" not in r.text:
            raise _hub.HttpError("lab", r)
        c.times["lab"] = time.perf_counter() - started

        step = "cell"
        started = time.perf_counter()
        out = run_code(hub.url, c.name, token, CELL, timeout=300)
        if out["error"] or out["stdout"].strip() != str(expected_count):
            raise RuntimeError(f"the cell answered {out['stdout']!r} {out['error']}")
        c.times["cell"] = time.perf_counter() - started
        c.extra["kernel start"], c.extra["cell run"] = out["start"], out["run"]

        step = "submit"
        started = time.perf_counter()
        r = hub.service(
            "POST",
            f"challenges/{_hub.CHALLENGE}/submissions?file_name=predictions.csv&client=hub_load",
            token,
            data=files.valid(),
            headers={"Content-Type": "application/octet-stream"},
        )
        if r.status_code != 202:
            raise _hub.HttpError("submit", r)
        c.extra["upload (to 202)"] = time.perf_counter() - started
        doc = r.json()
        while doc["status"] in (statuses.RECEIVED, statuses.VALIDATING):
            time.sleep(0.5)
            r = hub.service("GET", f"submissions/{doc['id']}", token)
            if r.status_code != 200:
                raise _hub.HttpError("submit poll", r)
            doc = r.json()
        if doc["status"] != statuses.SCORED:
            raise RuntimeError(f"the submission ended {doc['status']}: {doc['errors']}")
        c.times["submit"] = time.perf_counter() - started

        step = "leaderboard"
        started = time.perf_counter()
        r = hub.service("GET", f"challenges/{_hub.CHALLENGE}/leaderboard", token)
        if r.status_code != 200 or c.team not in {row["team"] for row in r.json()["public"]}:
            raise _hub.HttpError("leaderboard JSON", r)
        c.extra["leaderboard JSON"] = time.perf_counter() - started
        t1 = time.perf_counter()
        r = session.get(f"{hub.url}/services/leaderboard/", timeout=120)
        if r.status_code != 200 or "<html" not in r.text.lower():
            raise _hub.HttpError("leaderboard page", r)
        c.extra["leaderboard page"] = time.perf_counter() - t1
        c.times["leaderboard"] = time.perf_counter() - started
        c.done_at = time.monotonic() - t0
    except Exception as exc:
        c.failed, c.error = step, f"{type(exc).__name__}: {exc}"[:1000]


class Sampler(threading.Thread):
    """Times GET /hub/api/user every ``every`` s; reads memory every ``mem_every`` s."""

    def __init__(self, hub: _hub.Hub, token: str, every: float = 0.5, mem_every: float = 5.0):
        super().__init__(daemon=True)
        self.hub, self.token, self.every, self.mem_every = hub, token, every, mem_every
        self.api: list[tuple[float, float, int]] = []  # (monotonic, seconds, status)
        self.mem: list[tuple[float, dict]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        s = requests.Session()
        next_mem = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            try:
                t = time.perf_counter()
                r = s.get(f"{self.hub.url}/hub/api/user", headers={"Authorization": f"token {self.token}"}, timeout=60)
                self.api.append((now, time.perf_counter() - t, r.status_code))
            except requests.RequestException:
                self.api.append((now, time.perf_counter() - t, 0))
            if now >= next_mem:
                self.mem.append((now, _hub.memory(self.hub.process)))
                next_mem = now + self.mem_every
            self.stopping.wait(max(0.0, self.every - (time.monotonic() - now)))

    def api_between(self, a: float, b: float) -> list[float]:
        return [s for t, s, _ in self.api if a <= t <= b]

    def api_errors_between(self, a: float, b: float) -> int:
        return sum(1 for t, _, c in self.api if a <= t <= b and c != 200)

    def peak(self, kind: str, a: float, b: float) -> float:
        return max((m.get(kind, {}).get("rss_mib", 0.0) for t, m in self.mem if a <= t <= b), default=0.0)


def phase(
    hub: _hub.Hub,
    people: list[Contestant],
    gap: float,
    files: _hub.Predictions,
    expected: int,
) -> tuple[float, float, dict]:
    """Let ``people`` arrive ``gap`` seconds apart (0: all at once); (start, end, CPU use)."""
    watch = _hub.CpuWatch(hub.process).start()
    t0 = time.monotonic()
    threads = []
    for i, c in enumerate(people):
        wait = t0 + i * gap - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        c.arrive = time.monotonic() - t0
        th = threading.Thread(target=contestant_run, args=(hub, c, files, expected, t0), daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    return t0, time.monotonic(), watch.stop()


def stop_servers(hub: _hub.Hub, names: list[str], timeout: float = 300) -> float:
    """Stop every server through the API and wait until the hub reports none; seconds."""
    org = hub.organizer_token()
    started = time.monotonic()
    for name in names:
        r = hub.api("DELETE", f"/users/{name}/server", token=org)
        if r.status_code not in (202, 204, 400):
            raise _hub.HttpError("stop", r)
    while time.monotonic() - started < timeout:
        users = hub.api("GET", "/users?state=active", token=org).json()
        if not [u for u in users if u["name"] in names]:
            return time.monotonic() - started
        time.sleep(1)
    raise RuntimeError(f"servers still running after {timeout} s")


def step_figures(people: list[Contestant]) -> dict:
    out = {}
    for step in STEPS:
        out[step] = _hub.summary([c.times[step] for c in people if step in c.times])
    for key in sorted({k for c in people for k in c.extra}):
        out[key] = _hub.summary([c.extra[key] for c in people if key in c.extra])
    return out


def phase_figures(people: list[Contestant], sampler: Sampler, t0: float, t1: float, gap: float) -> dict:
    ok = [c for c in people if c.failed is None]
    ready = [c.ready_at for c in people if c.ready_at is not None]
    return {
        "contestants": len(people),
        "arrival gap s": gap,
        "arrival rate per min": (60 / gap) if gap else None,
        "succeeded": len(ok),
        "errors by step": dict(Counter(c.failed for c in people if c.failed)),
        "error examples": [f"{c.name} {c.failed}: {c.error}" for c in people if c.failed][:5],
        "seconds": t1 - t0,
        "all ready after s": max(ready) if len(ready) == len(people) else None,
        "spawn": _hub.summary([c.times["spawn"] for c in people if "spawn" in c.times]),
        "submission (upload to scored)": _hub.summary([c.times["submit"] for c in people if "submit" in c.times]),
        "hub API GET /hub/api/user": {
            **_hub.summary(sampler.api_between(t0, t1)),
            "non-200": sampler.api_errors_between(t0, t1),
        },
        "steps": step_figures(people),
        "contestant total (arrival to done)": _hub.summary(
            [c.done_at - c.arrive for c in people if c.done_at is not None]
        ),
    }


def report(doc: dict) -> None:
    def line(label: str, value: str) -> None:
        print(f"  {label:<44} {value}")

    def dist(s: dict, unit: str = "s") -> str:
        return (
            f"p50 {_hub.fmt(s['p50'], unit)}  p95 {_hub.fmt(s['p95'], unit)}  max {_hub.fmt(s['max'], unit)}"
            f"  (n={s['n']})"
        )

    for name in ("arrivals", "burst"):
        f = doc.get(name)
        if not f:
            continue
        how = f"one every {f['arrival gap s']:g} s" if f["arrival gap s"] else "all at once"
        print(f"\n{name}: {f['contestants']} contestants, {how}; phase took {f['seconds']:.0f} s")
        line("succeeded", f"{f['succeeded']}/{f['contestants']}")
        line("errors by step", json.dumps(f["errors by step"]) if f["errors by step"] else "none")
        for e in f["error examples"]:
            print(f"    {e[:300]}")
        sp = f["spawn"]
        met = sp["p50"] is not None and sp["p50"] <= 5
        line("spawn (request to ready)", f"{dist(sp)}   median target <= 5 s: {'met' if met else 'NOT met'}")
        if f["all ready after s"] is not None:
            line("all servers ready after (from phase start)", _hub.fmt(f["all ready after s"]))
        line("hub API GET /hub/api/user", dist(f["hub API GET /hub/api/user"]))
        line("submission (upload to scored)", dist(f["submission (upload to scored)"]))
        for step, s in f["steps"].items():
            if step not in ("spawn", "submit") and s["n"]:
                line(f"  {step}", dist(s))
        line("contestant total (arrival to done)", dist(f["contestant total (arrival to done)"]))
        print(f"  {_hub.cpu_line(f['cpu'])}")
        per = f["cpu"]["platform (cores)"] * f["cpu"]["seconds"] / f["contestants"]
        line("platform CPU per contestant", f"{per:.1f} s")
    mem = doc.get("memory with every server running (MiB)")
    if mem:
        print(f"\nmemory with {doc['servers running']} servers running (RSS; PSS counts shared pages once):")
        for kind, m in mem.items():
            per = f"  ({m['rss_mib'] / m['processes']:.0f} MiB each)" if m["processes"] > 1 else ""
            line(kind, f"{m['rss_mib']:8.0f} MiB RSS  {m['pss_mib']:8.0f} MiB PSS  {m['processes']} processes{per}")
        line(
            "peak RSS hub / proxy / servers",
            " / ".join(f"{doc['peak rss mib'][k]:.0f} MiB" for k in doc["peak rss mib"]),
        )
    print(f"\n  {doc['machine']}; {doc['load before']} before, {doc['load after']} after")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100, help="contestants arriving one after another")
    ap.add_argument("--arrival-seconds", type=float, default=3.0, help="seconds between two arrivals (0: all at once)")
    ap.add_argument("--burst", type=int, default=20, help="contestants arriving at the same moment afterwards")
    ap.add_argument("--scorers", type=int, default=2, help="the submission service's scorer threads")
    ap.add_argument("--keep", action="store_true", help="keep the hub's folder (logs, store) afterwards")
    args = ap.parse_args()
    doc: dict = {
        "machine": _measure.machine(),
        "load before": _hub.machine_load(),
        "config": vars(args),
    }
    print(f"machine: {doc['machine']}; {doc['load before']}")
    data = _hub.demo_data()
    files = _hub.Predictions(data)
    import duckdb

    daily = _hub._table(data.data_root / "hospital_outpatient" / "latest", "daily_visits")
    expected = duckdb.sql(f"SELECT count(*) FROM read_parquet('{daily}')").fetchall()[0][0]

    tag = secrets.token_hex(2)
    people = [
        Contestant(f"c{tag}{i:03d}", secrets.token_urlsafe(12), f"t{tag}-{i // 2:03d}") for i in range(args.users)
    ]
    burst = [Contestant(f"b{tag}{i:03d}", secrets.token_urlsafe(12), f"b{tag}-{i // 2:03d}") for i in range(args.burst)]
    root = Path(tempfile.mkdtemp(prefix="hub-load-", dir=PROJECT_ROOT / "var" / "bench"))
    print(f"making {len(people) + len(burst)} accounts and starting the hub in {root} ...", flush=True)
    t = time.monotonic()
    env = {"CONTESTHUB_SCORERS": str(args.scorers)}
    hub = _hub.Hub.start(
        root,
        data,
        extra_env=env,
        accounts={c.name: c.password for c in people + burst},
    )
    doc["hub start s (with accounts)"] = time.monotonic() - t
    sampler = None
    try:
        t = time.monotonic()
        for group in (people, burst):
            for i in range(0, len(group), 2):
                hub.make_team(group[i].team, [c.name for c in group[i : i + 2]])
        doc["teams made"] = {"teams": (len(people) + 1) // 2 + (len(burst) + 1) // 2, "seconds": time.monotonic() - t}
        print(
            f"hub up at {hub.url}; {doc['teams made']['teams']} teams of 2 made through the organizer API "
            f"in {doc['teams made']['seconds']:.1f} s",
            flush=True,
        )
        sampler = Sampler(hub, hub.organizer_token())
        sampler.start()
        time.sleep(3)
        idle = time.monotonic()
        print(f"arrivals: {len(people)} contestants, one every {args.arrival_seconds:g} s ...", flush=True)
        a0, a1, cpu = phase(hub, people, args.arrival_seconds, files, expected)
        doc["arrivals"] = phase_figures(people, sampler, a0, a1, args.arrival_seconds)
        doc["arrivals"]["cpu"] = cpu
        doc["hub API before the arrivals (idle)"] = _hub.summary(sampler.api_between(idle - 3, a0))
        running = [c.name for c in people if c.ready_at is not None]
        time.sleep(2)
        doc["servers running"] = len(running)
        doc["memory with every server running (MiB)"] = _hub.memory(hub.process)
        doc["peak rss mib"] = {k: sampler.peak(k, a0, time.monotonic()) for k in ("hub", "proxy", "servers")}
        print(f"  done in {a1 - a0:.0f} s; stopping {len(running)} servers ...", flush=True)
        doc["stop servers s"] = stop_servers(hub, running)
        if burst:
            time.sleep(5)
            print(f"burst: {len(burst)} contestants at once ...", flush=True)
            b0, b1, cpu = phase(hub, burst, 0.0, files, expected)
            doc["burst"] = phase_figures(burst, sampler, b0, b1, 0.0)
            doc["burst"]["cpu"] = cpu
            doc["burst"]["hub API while spawning"] = _hub.summary(
                sampler.api_between(b0, b0 + (doc["burst"]["all ready after s"] or (b1 - b0)))
            )
            stop_servers(hub, [c.name for c in burst if c.ready_at is not None])
    finally:
        if sampler:
            sampler.stopping.set()
        t = time.monotonic()
        hub.stop()
        doc["hub stop s"] = time.monotonic() - t
    doc["load after"] = _hub.machine_load()
    report(doc)
    path = _hub.write_result("hub_load", doc)
    print(f"  results: {path.relative_to(PROJECT_ROOT)}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    failed = doc["arrivals"]["errors by step"] or (burst and doc.get("burst", {}).get("errors by step"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
