"""Benchmark: the public data service (hub/data_service.py) against Datasette, same table, one run.

The table is the published visit records, ``hospital_outpatient.visit_records``, built at
``--scale`` (50: the 10-million-row table of build_10m; the holdout keeps some rows back, so
the published table has a little fewer; the count is printed). Datasette 0.65.5 is installed
for this benchmark only, into its own virtualenv under var/bench (never a project
dependency), and serves the same rows, in the same order, as SQLite (one ``INSERT`` per
Arrow batch of the published Parquet; an index on the filtered column, Datasette's best
case: without it every filtered page would count 10M rows).

Both servers run alone on this machine, in their own processes, with their defaults (ours:
``CONTESTHUB_DATA_WORKERS`` threads, the rate limit off; Datasette: ``datasette serve`` with
its defaults). Sides alternate; each side is measured ``--runs`` times, the median printed.

1. A filtered 100-row JSON page under ``--clients`` concurrent clients (keep-alive
   connections, one thread each, http.client, in a separate process) for ``--seconds``: each request asks
   for the first page of visits by people living in one area, the area changing from request to request
   (``residence_area=`` each of its 26 values in turn). p50 and p95 of every request, and
   requests/s = whole pages answered within the window / its seconds (errors and requests
   still open when it ends, e.g. waiting for the client's 60-s timeout, are not counted).
   Each side's answer to one query is checked against DuckDB over the Parquet: same 100
   visit ids, in the same order.
2. The whole table as CSV, once per run: ours ``download?format=csv`` (UTF-8 with BOM) both
   cold (the cache emptied first: the export is written, then sent) and warm (sent from the
   cache), Datasette's ``visit_records.csv?_stream=on&_size=max`` (every row, streamed).
   MB/s = bytes received / wall seconds. Row counts are checked equal.

Targets (issue 16): requests/s >= 2x Datasette with our p95 <= 100 ms; CSV export >= 2x.

    python3 dev.py bench data_service [--scale 50] [--clients 20] [--seconds 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure

SCRIPT = Path(__file__).resolve()
PROJECT_ROOT = SCRIPT.parents[1]
HOME = PROJECT_ROOT / "var" / "bench" / "data_service"
DATASETTE_VENV = PROJECT_ROOT / "var" / "bench" / "datasette-venv"
DATASETTE_VERSION = "0.65.5"
DATASET, TABLE = "hospital_outpatient", "visit_records"
FILTER = "residence_area"
PAGE = 100
UNLIMITED_CSV = ("--setting", "max_csv_mb", "0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stdout.read().decode()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {seconds} s")


# --- inputs (made once, cached under var/bench/data_service) ------------------------------------


def data_root(scale: float) -> Path:
    return HOME / f"scale{scale:g}" / "data"


def ensure_table(scale: float) -> Path:
    """The published visit records at ``scale`` (built once), its Parquet file."""
    root = data_root(scale)
    cat = root / "catalog.json"
    if not cat.exists() or DATASET not in json.loads(cat.read_text("utf-8"))["datasets"]:
        print(f"building {DATASET} at scale {scale:g} into {root} (once) ...", flush=True)
        code = (
            "from sandbox.settings import Paths, PROJECT_ROOT\n"
            "from sandbox.descriptor import load_all\n"
            "from sandbox.build import build_dataset\n"
            f"p = Paths.from_env({str(root)!r}, {str(root.parent / 'private')!r}, PROJECT_ROOT / 'datasets').ensure()\n"
            f"ds = next(d for d in load_all(p.datasets_dir) if d.id == {DATASET!r})\n"
            f"r = build_dataset(ds, p, scale={scale!r})\n"
            "assert r.status == 'built', r\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)
    d = json.loads(cat.read_text("utf-8"))["datasets"][DATASET]
    return root / DATASET / f"v{d['latest']}" / d["entry"]["tables"][TABLE]["files"][0]["path"]


def ensure_sqlite(parquet: Path) -> Path:
    """The same rows in the same order as a SQLite table, with an index on the filtered column."""
    db = parquet.parents[3] / "visits.db"
    stamp = db.with_suffix(".source")
    if db.exists() and stamp.exists() and stamp.read_text() == str(parquet):
        return db
    print(f"writing {db} from {parquet} (once) ...", flush=True)
    code = f"""
import sqlite3, pyarrow.parquet as pq
f = pq.ParquetFile({str(parquet)!r})
names = f.schema_arrow.names
tmp = {str(db) + ".tmp"!r}
import os
if os.path.exists(tmp): os.unlink(tmp)
con = sqlite3.connect(tmp)
con.execute("PRAGMA journal_mode = OFF"); con.execute("PRAGMA synchronous = OFF")
cols = ", ".join(f'"{{n}}"' for n in names)
con.execute(f"CREATE TABLE {TABLE} ({{cols}})")
ins = f"INSERT INTO {TABLE} VALUES ({{', '.join('?' * len(names))}})"
for batch in f.iter_batches(batch_size=100_000):
    cols_ = [c.to_pylist() for c in batch.columns]
    con.executemany(ins, zip(*[[v.isoformat() if hasattr(v, "isoformat") else v for v in c] for c in cols_]))
con.execute("CREATE INDEX idx_{FILTER} ON {TABLE} ({FILTER})")
con.commit(); con.close()
os.replace(tmp, {str(db)!r})
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)
    stamp.write_text(str(parquet))
    return db


def ensure_datasette() -> Path:
    exe = DATASETTE_VENV / "bin" / "datasette"
    if not exe.exists():
        print(f"installing datasette {DATASETTE_VERSION} into {DATASETTE_VENV} (benchmark only) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(DATASETTE_VENV)], check=True)
        subprocess.run(
            [str(DATASETTE_VENV / "bin" / "pip"), "install", "-q", f"datasette=={DATASETTE_VERSION}"], check=True
        )
    return exe


# --- servers ------------------------------------------------------------------------------------


class Server:
    def __init__(self, label: str, command: list[str], env: dict, probe: str, page: str, csv: str):
        self.label, self.command, self.env = label, command, env
        self.probe, self.page, self.csv = probe, page, csv
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        # Ended with this runner however it ends (hub/die_with_parent.py): a server left behind
        # would take CPU from the next run's measurements.
        command = [sys.executable, "-m", "hub.die_with_parent", "--parent", str(os.getpid()), "--", *self.command]
        self.proc = subprocess.Popen(
            command, env=self.env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        _wait(self.probe, self.proc)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def ours(root: Path, cache: Path, row_cache: bool = True) -> Server:
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTESTHUB_", "JUPYTERHUB_"))}
    env.update({"CONTESTHUB_DATA_ROOT": str(root), "CONTESTHUB_DATA_RATE": "0"})
    if not row_cache:
        env["CONTESTHUB_DATA_ROW_CACHE"] = "0"
    rows = f"{base}api/datasets/{DATASET}/tables/{TABLE}/rows"
    return Server(
        "contesthub" if row_cache else "contesthub, no page cache",
        [sys.executable, "-m", "hub.data_service", "--port", str(port), "--prefix", "/", "--cache", str(cache)],
        env,
        base + "api/openapi.json",
        rows + f"?_size={PAGE}&{FILTER}={{value}}",
        f"{base}api/datasets/{DATASET}/tables/{TABLE}/download?format=csv",
    )


def datasette(db: Path) -> Server:
    port = _free_port()
    base = f"http://127.0.0.1:{port}/{db.stem}/{TABLE}"
    return Server(
        f"datasette {DATASETTE_VERSION}",
        # max_csv_mb 0: the whole table (its default stops a streamed CSV at 100 MB).
        [str(ensure_datasette()), "serve", str(db), "--port", str(port), "--host", "127.0.0.1", *UNLIMITED_CSV],
        {**os.environ},
        f"http://127.0.0.1:{port}/-/versions.json",
        # _nocount, _nofacet: no count of the matching rows and no facets (our API computes neither).
        base + f".json?_size={PAGE}&_shape=objects&_nocount=1&_nofacet=1&{FILTER}={{value}}",
        base + ".csv?_stream=on&_size=max",
    )


# --- the load (a worker process: the clients' CPU is not the servers') ---------------------------


def load_worker(url: str, clients: str, seconds: str, values: str) -> callable:
    """``clients`` threads, each on its own keep-alive connection (http.client: a lean client, so
    that the machine's two cores go to the servers, not to parsing), for ``seconds``."""
    import http.client
    from urllib.parse import urlsplit

    n, duration, keys = int(clients), float(seconds), values.split(",")
    parts = urlsplit(url)
    conns = [http.client.HTTPConnection(parts.hostname, parts.port, timeout=60) for _ in range(n)]
    path = url[len(f"{parts.scheme}://{parts.netloc}") :]

    def get(conn, value: str) -> tuple[int, bytes]:
        conn.request("GET", path.format(value=value))
        r = conn.getresponse()
        return r.status, r.read()

    for c in conns:  # one warm-up request each: connections open, first-touch costs paid
        status, body = get(c, keys[0])
        assert status == 200, body[:300]

    def work() -> dict:
        latencies: list[list[float]] = [[] for _ in range(n)]
        errors = [0] * n
        answered = [0] * n  # whole pages answered within the window
        first_error: list[str] = []
        stop = time.perf_counter() + duration

        def client(i: int) -> None:
            c, k = conns[i], i
            while time.perf_counter() < stop:
                t = time.perf_counter()
                try:
                    status, body = get(c, keys[k % len(keys)])
                    # A whole page: one "visit_id": per row (both servers write rows as objects).
                    ok = status == 200 and body.count(b'"visit_id":') == PAGE
                except (OSError, http.client.HTTPException) as exc:
                    ok, body = False, str(exc).encode()
                    c = conns[i] = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
                done = time.perf_counter()
                latencies[i].append(done - t)
                if done <= stop and ok:
                    answered[i] += 1
                if not ok:
                    errors[i] += 1
                    first_error.append(body[:300].decode("utf-8", "replace"))
                k += n

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        every = sorted(x for lat in latencies for x in lat)
        return {
            "requests": len(every),
            "errors": sum(errors),
            # Pages answered within the window per second of it: a request left hanging past the
            # window (to the client's 60-s timeout) counts as an error, not as time served.
            "rps": sum(answered) / duration,
            "wall": wall,
            "p50_ms": 1000 * every[len(every) // 2],
            "p95_ms": 1000 * every[int(len(every) * 0.95)],
            "first_error": first_error[:1],
        }

    return work


def csv_worker(url: str) -> callable:
    import requests

    def work() -> dict:
        size, lines = 0, 0
        with requests.get(url, stream=True, timeout=3600) as r:
            r.raise_for_status()
            for chunk in r.iter_content(1 << 20):
                size += len(chunk)
                lines += chunk.count(b"\n")
        return {"bytes": size, "lines": lines}

    return work


def answer_worker(url: str, parquet: str, value: str) -> callable:
    import duckdb
    import requests

    def work() -> dict:
        got = [r["visit_id"] for r in requests.get(url.format(value=value), timeout=60).json()["rows"]]
        want = [
            v
            for (v,) in duckdb.sql(
                f"SELECT visit_id FROM read_parquet('{parquet}') WHERE {FILTER} = '{value}' LIMIT {PAGE}"
            ).fetchall()
        ]
        return {"same": got == want, "n": len(got)}

    return work


WORKERS = {"load": load_worker, "csv": csv_worker, "answer": answer_worker}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=50.0, help="50: the 10-million-row table")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    print(f"machine: {_measure.machine()}")
    parquet = ensure_table(args.scale)
    db = ensure_sqlite(parquet)
    ensure_datasette()
    import pyarrow.parquet as pq

    meta = pq.read_metadata(parquet)
    rows = meta.num_rows
    print(f"table: {DATASET}.{TABLE}, {rows:,} rows; Parquet {parquet.stat().st_size / 2**20:,.0f} MiB, "
          f"SQLite {db.stat().st_size / 2**20:,.0f} MiB")  # fmt: skip
    hospitals = subprocess.run(
        [sys.executable, "-c", f"import duckdb; print(','.join(r[0] for r in duckdb.sql(\"SELECT DISTINCT {FILTER} "
         f"FROM read_parquet('{parquet}') ORDER BY 1\").fetchall()))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    cache = HOME / "cache"
    sides = {
        "ours": lambda: ours(parquet.parents[2], cache),
        "ours_nocache": lambda: ours(parquet.parents[2], cache, row_cache=False),
        "datasette": lambda: datasette(db),
    }
    results: dict[str, dict[str, list]] = {k: {"load": [], "csv": [], "csv_warm": []} for k in sides}
    for i in range(args.runs):
        for key, make in sides.items():
            if key != "datasette":  # the export is written again: the first download pays for it
                shutil.rmtree(cache, ignore_errors=True)
            with make() as server:
                if i == 0:
                    check = _measure.measure(SCRIPT, "answer", server.page, str(parquet), hospitals.split(",")[0])
                    if not check["same"]:
                        raise SystemExit(f"{server.label} answers differently from DuckDB over the Parquet")
                csv_r = _measure.measure(SCRIPT, "csv", server.csv)
                csv_r["mbps"] = csv_r["bytes"] / 1e6 / csv_r["seconds"]
                results[key]["csv"].append(csv_r)
                if key != "datasette":
                    warm = _measure.measure(SCRIPT, "csv", server.csv)
                    warm["mbps"] = warm["bytes"] / 1e6 / warm["seconds"]
                    results[key]["csv_warm"].append(warm)
                load = _measure.measure(SCRIPT, "load", server.page, str(args.clients), str(args.seconds), hospitals)
                results[key]["load"].append(load)
                print(
                    f"  round {i + 1}/{args.runs} {server.label:<26} {load['rps']:8.1f} req/s"
                    f"  p50 {load['p50_ms']:6.1f} ms"
                    f"  p95 {load['p95_ms']:6.1f} ms  errors {load['errors']}  CSV {csv_r['mbps']:6.1f} MB/s"
                    + (f" (warm {warm['mbps']:.1f})" if key != "datasette" else ""),
                    flush=True,
                )
                if load["first_error"]:
                    print(f"    first error: {load['first_error'][0][:200]}", flush=True)
    med = lambda key, part, field: statistics.median(r[field] for r in results[key][part])  # noqa: E731
    for key in sides:
        lines = [r["lines"] for r in results[key]["csv"]]
        if any(n != rows + 1 for n in lines):
            raise SystemExit(f"{key}: CSV has {lines} lines, want {rows + 1} (header + rows)")
    o, d = "ours", "datasette"
    print(f"\nmedians of {args.runs} runs, {rows:,} rows, {args.clients} clients x {args.seconds:g} s")
    print(f"  {'':<28}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'CSV MB/s':>10}")
    for key, label in (
        (o, "contesthub data service"),
        ("ours_nocache", "  the same, no page cache"),
        (d, f"datasette {DATASETTE_VERSION}"),
    ):
        print(
            f"  {label:<28}{med(key, 'load', 'rps'):9.1f}{med(key, 'load', 'p50_ms'):9.1f}"
            f"{med(key, 'load', 'p95_ms'):9.1f}{med(key, 'csv', 'mbps'):10.1f}"
        )
    print(f"  {'  (ours, CSV from the cache)':<55}{med(o, 'csv_warm', 'mbps'):10.1f}")
    rps_ratio = med(o, "load", "rps") / med(d, "load", "rps")
    csv_ratio = med(o, "csv", "mbps") / med(d, "csv", "mbps")
    warm_ratio = med(o, "csv_warm", "mbps") / med(d, "csv", "mbps")
    p95 = med(o, "load", "p95_ms")
    print(f"\n  req/s: {rps_ratio:.2f}x Datasette (target >= 2x), our p95 {p95:.0f} ms (target <= 100 ms): "
          f"{'met' if rps_ratio >= 2 and p95 <= 100 else 'NOT met'}")  # fmt: skip
    nc_ratio = med("ours_nocache", "load", "rps") / med(d, "load", "rps")
    nc_p95 = med("ours_nocache", "load", "p95_ms")
    print(f"  without the page cache (each page read from the Parquet): {nc_ratio:.2f}x Datasette, "
          f"p95 {nc_p95:.0f} ms: "
          f"{'met' if nc_ratio >= 2 and nc_p95 <= 100 else 'NOT met'}")  # fmt: skip
    print(f"  CSV export: {csv_ratio:.2f}x Datasette cold, {warm_ratio:.2f}x from the cache (target >= 2x): "
          f"{'met' if csv_ratio >= 2 else 'NOT met cold'}{'' if warm_ratio >= 2 else ', NOT met warm'}")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        _measure.worker_main(WORKERS)
    else:
        main()
