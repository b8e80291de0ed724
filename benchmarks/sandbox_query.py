"""Benchmark: a contestant's query through ``sandbox.sql``, ten readers at once, and Dask's pruning.

On the 10-million-row published table ``hospital_outpatient.visit_records`` (built by
``build_10m``), in one run, each side in a fresh process (imports excluded from the timing):

1. A typical contestant query (filter + group-by + aggregate, fetched as a pandas DataFrame),
   alternating sides:

   (a) ``sandbox.sql(query).df()``: the first call, so the session (confined connection, a
       view for every published table) is created inside the timing, as a contestant pays it;
   (b) bare ``duckdb.sql(...)`` over ``read_parquet`` of the same Parquet file: the limit;
   (c) pandas ``read_csv`` of the CSV form of the *published* Parquet (written once, cached;
       the raw CSV holds personal columns and raw ages) + the same filter/group-by/aggregate;
   (d) pandas ``read_parquet`` of the same Parquet + the same computation;
   (a') and (b'): a second query in a process that has run it once (session made, caches
       warm), to separate the sandbox's one-off cost from its cost per query.

   ``.df()`` imports pandas lazily; every worker imports it before the timing starts.

   The pandas sides read the whole table (what "load the data set" means to most users), then
   filter only the three columns the aggregation needs (``df.loc[mask, cols]``, which is much
   faster than ``df[mask]``), so they are measured at their reasonable best. All four answers
   are checked equal (same groups, same counts, averages and sums within 1e-6 relative).

   Targets (issue): (a) >= 10x faster than (c); (a) >= 8x faster than (d); peak memory of
   (a) <= 1/10 of (c) and of (d); (a) <= 1.10 x (b) in wall time (sandbox overhead <= 10%).

2. Ten processes running the query of (1) through ``sandbox.sql`` at once (they import, wait
   at a barrier, then start together), against one process alone: peak RSS of each process
   (``ru_maxrss``) and, sampled every 20 ms from ``/proc/<pid>/smaps_rollup``, PSS (shared
   pages divided among the processes sharing them). Run on the 10M-row table as published
   (zstd, ~170 MB) and on the same rows stored uncompressed without dictionaries (~1.2 GB,
   standing for "the same 1 GB dataset"; written once into a separate data root, cached).
   Target: the total PSS of ten readers well under (<= half of) 10 x one reader's RSS.

3. Dask pruning: ``sandbox.dask(..., columns=[department, fee_yuan])`` computing the fee sum
   per department, with and without a ``visit_date`` filter; the bytes those column chunks
   (and row groups) occupy in the file, from the Parquet metadata, against what the process
   read (``/proc/self/io``: ``rchar`` counts bytes returned by read calls, page cache hits
   included; ``read_bytes`` only what came from the disk, so ~0 when the file is cached).

    python3 dev.py bench sandbox_query [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure

from sandbox.digests import sha256_file

# The parent stays small on purpose: on Linux a child's ru_maxrss starts from the RSS high-water
# mark of the process it was forked from (exec keeps it), so a parent that imported DuckDB or
# pandas, or read data, would raise the floor under every worker's peak. Data work and heavy
# imports happen in workers only (``sandbox.settings`` is not imported either: ``import
# sandbox`` loads DuckDB).
SCRIPT = Path(__file__).resolve()
PROJECT_ROOT = SCRIPT.parents[1]
HOME = PROJECT_ROOT / "var" / "bench"
DATA_ROOT = HOME / "data"
PRIVATE_ROOT = HOME / "private"
LARGE_ROOT = HOME / "data_1g"
PUBLISHED_CSV = HOME / "visit_records_published.csv"
DATASET, TABLE = "hospital_outpatient", "visit_records"
NAME = f"{DATASET}.{TABLE}"
READERS = 10

QUERY = """
SELECT department, age, count(*) AS visits, avg(fee_yuan) AS avg_fee, sum(fee_yuan) AS total_fee
FROM {src}
WHERE visit_date >= DATE '2024-01-01' AND insurance_type <> '自费'
GROUP BY department, age
ORDER BY department, age
"""
DASK_COLUMNS = ["department", "fee_yuan"]
DASK_SINCE = dt.date(2024, 1, 1)


# --- shared helpers ---------------------------------------------------------------------------


def _rows(df) -> list[list]:
    """A result frame as sorted plain rows [department, age, visits, avg_fee, total_fee]."""
    return sorted(
        [str(r[0]), str(r[1]), int(r[2]), float(r[3]), float(r[4])]
        for r in df[["department", "age", "visits", "avg_fee", "total_fee"]].itertuples(index=False)
    )


def _pandas_answer(df, since) -> dict:
    keep = (df["visit_date"] >= since) & df["insurance_type"].notna() & (df["insurance_type"] != "自费")
    cols = df.loc[keep, ["department", "age", "fee_yuan"]]
    out = (
        cols.groupby(["department", "age"], dropna=False)["fee_yuan"]
        .agg(visits="size", avg_fee="mean", total_fee="sum")
        .reset_index()
    )
    return {"result": _rows(out)}


def _close(x: float, y: float, rel: float = 1e-6) -> bool:
    return abs(x - y) <= rel * max(abs(x), abs(y), 1e-12)


def _differences(ref: list[list], other: list[list]) -> list[str]:
    """What differs between two query answers (empty when they agree)."""
    a, b = {(r[0], r[1]): r[2:] for r in ref}, {(r[0], r[1]): r[2:] for r in other}
    problems = []
    if a.keys() != b.keys():
        problems.append(f"groups differ: {sorted(a.keys() ^ b.keys())[:5]}")
    for key in sorted(a.keys() & b.keys()):
        (n1, avg1, sum1), (n2, avg2, sum2) = a[key], b[key]
        if n1 != n2 or not _close(avg1, avg2) or not _close(sum1, sum2):
            problems.append(f"{key}: {a[key]} vs {b[key]}")
    return problems


def _smaps(pid: int | str) -> dict[str, float] | None:
    """``/proc/<pid>/smaps_rollup`` in MiB (None when gone or unreadable)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines()[1:]:
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[-1] == "kB":
            out[key.strip()] = int(parts[0]) / 1024
    return out


def _io() -> dict[str, int]:
    pairs = (line.split(":") for line in Path("/proc/self/io").read_text().splitlines())
    return {k.strip(): int(v) for k, v in pairs}


def _use_root(data_root: str, private_root: str) -> None:
    os.environ["CONTESTHUB_DATA_ROOT"] = data_root
    os.environ["CONTESTHUB_PRIVATE_ROOT"] = private_root


# --- workers (each runs in its own process) -------------------------------------------------


def w_sandbox(data_root: str, private_root: str, warm: str = "0"):
    """The first ``sandbox.sql`` of a process (session created in the timing); with ``warm=1`` a second one."""
    _use_root(data_root, private_root)
    import pandas  # noqa: F401 - .df() imports it lazily; the timing excludes imports

    import sandbox
    import sandbox.api

    if warm == "1":
        sandbox.sql(QUERY.format(src=NAME)).df()

    def work() -> dict:
        started = time.perf_counter()
        s = sandbox.api.session()  # what the first sandbox.sql() does; cached for the call below
        session_s = time.perf_counter() - started
        df = sandbox.sql(QUERY.format(src=NAME)).df()
        return {
            "result": _rows(df),
            "session_s": session_s,
            "threads": s.limits.threads,
            "memory_limit": s.limits.memory_text,
        }

    return work


def w_duckdb(parquet: str, warm: str = "0"):
    import duckdb
    import pandas  # noqa: F401 - .df() imports it lazily; the timing excludes imports

    query = QUERY.format(src=f"read_parquet('{parquet}')")
    if warm == "1":
        duckdb.sql(query).df()
    return lambda: {"result": _rows(duckdb.sql(query).df())}


def w_pandas_csv(csv: str):
    import pandas as pd

    return lambda: _pandas_answer(pd.read_csv(csv, parse_dates=["visit_date"]), pd.Timestamp("2024-01-01"))


def w_pandas_parquet(parquet: str):
    import pandas as pd

    return lambda: _pandas_answer(pd.read_parquet(parquet), dt.date(2024, 1, 1))


def w_reader(data_root: str, private_root: str, barrier: str):
    """One of the concurrent readers: imports, says it is ready, waits for the go file."""
    _use_root(data_root, private_root)
    import pandas  # noqa: F401 - .df() imports it lazily; the timing excludes imports

    import sandbox

    barrier_dir = Path(barrier)
    before = _smaps("self")  # after the imports, before the session and the query
    (barrier_dir / f"ready-{os.getpid()}").touch()
    while not (barrier_dir / "go").exists():
        time.sleep(0.005)

    def work() -> dict:
        df = sandbox.sql(QUERY.format(src=NAME)).df()
        return {"result": _rows(df), "smaps_before": before, "smaps_at_end": _smaps("self")}

    return work


def w_dask(data_root: str, private_root: str, with_filter: str):
    _use_root(data_root, private_root)
    import dask.dataframe  # noqa: F401 - imported here so that the timing excludes it
    import pyarrow.dataset  # noqa: F401

    import sandbox

    filters = [("visit_date", ">=", DASK_SINCE)] if with_filter == "1" else None

    def work() -> dict:
        before = _io()
        ddf = sandbox.dask(NAME, columns=DASK_COLUMNS, filters=filters)
        sums = ddf.groupby("department")["fee_yuan"].sum().compute()
        after = _io()
        return {
            "partitions": ddf.npartitions,
            "sums": {str(k): float(v) for k, v in sums.items()},
            **{k: after[k] - before[k] for k in ("rchar", "read_bytes", "syscr")},
        }

    return work


# --- inputs (written once, cached) ------------------------------------------------------------


def published_parquet() -> Path:
    cat = DATA_ROOT / "catalog.json"
    d = json.loads(cat.read_text("utf-8"))["datasets"].get(DATASET) if cat.exists() else None
    if not d:
        sys.exit(f"{NAME} is not built in {DATA_ROOT}: run build_10m first (or build_dataset(..., scale=50.0))")
    return DATA_ROOT / DATASET / f"v{d['latest']}" / d["entry"]["tables"][TABLE]["files"][0]["path"]


def published_csv(parquet: Path) -> Path:
    """The published table as CSV (same rows and values as the Parquet), written once."""
    stamp = PUBLISHED_CSV.with_suffix(".source")
    if PUBLISHED_CSV.exists() and stamp.exists() and stamp.read_text() == str(parquet):
        return PUBLISHED_CSV
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    tmp = PUBLISHED_CSV.with_suffix(".csv.tmp")
    con.execute(f"COPY (SELECT * FROM read_parquet('{parquet}')) TO '{tmp}' (FORMAT csv, HEADER)")
    os.replace(tmp, PUBLISHED_CSV)
    stamp.write_text(str(parquet))
    return PUBLISHED_CSV


def large_root(parquet: Path) -> Path:
    """A data root holding the latest version with the table uncompressed and undictionaried."""
    import pyarrow.parquet as pq

    d = json.loads((DATA_ROOT / "catalog.json").read_text("utf-8"))["datasets"][DATASET]
    version = d["latest"]
    dst = LARGE_ROOT / DATASET / f"v{version}"
    done = dst / ".complete"
    if done.exists() and done.read_text() == str(parquet):
        return LARGE_ROOT
    if LARGE_ROOT.exists():
        shutil.rmtree(LARGE_ROOT)
    dst.mkdir(parents=True)
    entry = json.loads(json.dumps(d["entry"]))
    src_dir = parquet.parent
    for tname, t in entry["tables"].items():
        if tname != TABLE:
            for f in t["files"]:
                shutil.copy2(src_dir / f["path"], dst / f["path"])
    target = dst / entry["tables"][TABLE]["files"][0]["path"]
    tmp = target.with_suffix(".tmp")
    pf = pq.ParquetFile(parquet)
    with pq.ParquetWriter(tmp, pf.schema_arrow, compression="none", use_dictionary=False) as writer:
        for i in range(pf.num_row_groups):  # keep the row groups as published
            writer.write_table(pf.read_row_group(i))
    os.replace(tmp, target)
    size = target.stat().st_size
    entry["tables"][TABLE]["bytes"] = size
    entry["tables"][TABLE]["files"][0].update(bytes=size, sha256=sha256_file(target))
    (dst / "catalog.json").write_text(json.dumps(entry, ensure_ascii=False, indent=1), "utf-8")
    (LARGE_ROOT / DATASET / "latest").symlink_to(f"v{version}")
    history = [v for v in d["versions"] if v["version"] == version]
    root = {"generated_at": None, "datasets": {DATASET: {"latest": version, "versions": history, "entry": entry}}}
    (LARGE_ROOT / "catalog.json").write_text(json.dumps(root, ensure_ascii=False, indent=1), "utf-8")
    done.write_text(str(parquet))
    return LARGE_ROOT


def w_prepare(parquet: str, large: str):
    """Writes the cached inputs (in a worker, so that the parent stays small)."""

    import dask
    import duckdb
    import pandas
    import pyarrow

    def work() -> dict:
        out = {"csv": str(published_csv(Path(parquet)))}
        out.update(duckdb=duckdb.__version__, pandas=pandas.__version__, pyarrow=pyarrow.__version__)
        out["dask"] = dask.__version__
        if large == "1":
            out["large_root"] = str(large_root(Path(parquet)))
        return out

    return work


def w_dask_expect(parquet: str):
    """What the Dask sides should read and answer, from the Parquet metadata and DuckDB."""
    import duckdb
    import pyarrow.parquet as pq

    def work() -> dict:
        meta = pq.ParquetFile(parquet).metadata
        names = [meta.schema.column(j).name for j in range(meta.num_columns)]

        def chunk_bytes(columns: list[str], row_groups) -> int:
            return sum(
                meta.row_group(i).column(j).total_compressed_size
                for i in row_groups
                for j in range(meta.num_columns)
                if names[j] in columns
            )

        every = range(meta.num_row_groups)
        date_idx = names.index("visit_date")
        matching = [i for i in every if meta.row_group(i).column(date_idx).statistics.max >= DASK_SINCE]
        footer = meta.serialized_size + 8
        con = duckdb.connect()
        ref = {
            key: dict(
                con.execute(
                    f"SELECT department, sum(fee_yuan) FROM read_parquet('{parquet}') {where} GROUP BY department"
                ).fetchall()
            )
            for key, where in (("cols", ""), ("filter", f"WHERE visit_date >= DATE '{DASK_SINCE}'"))
        }
        return {
            "row_groups": meta.num_row_groups,
            "matching": len(matching),
            "columns": {n: chunk_bytes([n], every) for n in names},
            "expect": {
                "cols": chunk_bytes(DASK_COLUMNS, every) + footer,
                "filter": chunk_bytes([*DASK_COLUMNS, "visit_date"], matching) + footer,
            },
            "ref": ref,
        }

    return work


# --- part 2: concurrent readers ---------------------------------------------------------------


def concurrent(n: int, data_root: Path) -> dict:
    """Start ``n`` readers, release them together, sample their RSS and PSS until all exit."""
    barrier = Path(tempfile.mkdtemp(prefix="bench-readers-", dir=HOME))
    logs = [(open(barrier / f"out-{i}", "w+"), open(barrier / f"err-{i}", "w+")) for i in range(n)]  # noqa: SIM115
    cmd = [sys.executable, str(SCRIPT), "--worker", "reader", str(data_root), str(PRIVATE_ROOT), str(barrier)]
    procs = [subprocess.Popen(cmd, stdout=out, stderr=err, text=True) for out, err in logs]
    peak_rss = dict.fromkeys((p.pid for p in procs), 0.0)
    peak_pss = dict.fromkeys((p.pid for p in procs), 0.0)
    peak_total_pss = peak_total_rss = 0.0
    smaps_ok = _smaps(procs[0].pid) is not None
    released = None
    deadline = time.monotonic() + 120
    while any(p.poll() is None for p in procs):
        if released is None and len(list(barrier.glob("ready-*"))) == n:
            (barrier / "go").touch()
            released = time.perf_counter()
        if time.monotonic() > deadline:
            for p in procs:
                p.kill()
            raise RuntimeError(f"readers did not finish; see {barrier}")
        total_pss = total_rss = 0.0
        for p in procs:
            if p.poll() is None and (m := _smaps(p.pid)):
                peak_rss[p.pid] = max(peak_rss[p.pid], m.get("Rss", 0.0))
                peak_pss[p.pid] = max(peak_pss[p.pid], m.get("Pss", 0.0))
                total_pss += m.get("Pss", 0.0)
                total_rss += m.get("Rss", 0.0)
        peak_total_pss, peak_total_rss = max(peak_total_pss, total_pss), max(peak_total_rss, total_rss)
        time.sleep(0.02)
    wall = time.perf_counter() - (released or time.perf_counter())
    results = []
    for p, (out, err) in zip(procs, logs, strict=True):
        out.seek(0)
        err.seek(0)
        line = next((x for x in out.read().splitlines() if x.startswith("RESULT ")), None)
        if p.returncode or line is None:
            raise RuntimeError(f"reader {p.pid} failed:\n{err.read()[-4000:]}")
        results.append(json.loads(line[7:]))
        out.close()
        err.close()
    shutil.rmtree(barrier)
    return {
        "wall": wall,
        "results": results,
        "maxrss": [r["peak_mib"] for r in results],
        "seconds": [r["seconds"] for r in results],
        "sampled_rss": list(peak_rss.values()),
        "sampled_pss": list(peak_pss.values()),
        "peak_total_pss": peak_total_pss,
        "peak_total_rss": peak_total_rss,
        "smaps": smaps_ok,
    }


def part_two(root: Path, label: str, runs: int, reference: list[list]) -> None:
    size = (root / DATASET / "latest" / f"{TABLE}.parquet").stat().st_size
    print(f"\n2. {READERS} concurrent readers via sandbox.sql, {label} ({size / 2**20:,.0f} MiB Parquet)")
    singles, groups = [], []
    for i in range(runs):
        one, many = concurrent(1, root), concurrent(READERS, root)
        for r in one["results"] + many["results"]:
            if diff := _differences(reference, r["result"]):
                raise SystemExit(f"a reader's answer differs from (b): {diff[:3]}")
        singles.append(one)
        groups.append(many)
        print(
            f"  round {i + 1}/{runs}  1 reader {one['wall']:6.2f} s {one['maxrss'][0]:6.0f} MiB RSS   "
            f"{READERS} readers {many['wall']:6.2f} s  RSS total {sum(many['maxrss']):7.0f} MiB  "
            f"PSS total (sampled peak) {many['peak_total_pss']:7.0f} MiB",
            flush=True,
        )
    med = statistics.median
    single_rss = med(s["maxrss"][0] for s in singles)
    single_pss = med(s["sampled_pss"][0] for s in singles)
    mid = sorted(groups, key=lambda g: g["peak_total_pss"])[len(groups) // 2]  # the median run, shown whole
    total_rss = sum(mid["maxrss"])
    total_pss = mid["peak_total_pss"]
    print(f"  one reader alone (median): peak RSS {single_rss:.0f} MiB (ru_maxrss), peak PSS {single_pss:.0f} MiB")
    print(f"  {READERS} readers (median run by total PSS), wall {mid['wall']:.2f} s from release to last exit:")
    print("    peak RSS per process  " + " ".join(f"{x:.0f}" for x in mid["maxrss"]) + " MiB")
    print("    peak RSS (sampled)    " + " ".join(f"{x:.0f}" for x in mid["sampled_rss"]) + " MiB")
    print("    peak PSS (sampled)    " + " ".join(f"{x:.0f}" for x in mid["sampled_pss"]) + " MiB")
    print("    query time per proc.  " + " ".join(f"{x:.1f}" for x in mid["seconds"]) + " s")
    print(f"    total of the peak RSS (ru_maxrss)           {total_rss:7.0f} MiB")
    print(f"    total RSS (peak of the sum at one instant)  {mid['peak_total_rss']:7.0f} MiB")
    print(f"    total PSS (peak of the sum at one instant)  {total_pss:7.0f} MiB")
    if not mid["smaps"]:
        print("    (/proc/<pid>/smaps_rollup not readable: PSS figures are zero)")
    for key, when in (("smaps_before", "after the imports, before the query"), ("smaps_at_end", "after the query")):
        snaps = [r[key] for r in mid["results"] if r.get(key)]
        if snaps:
            mean = {k: statistics.mean(e.get(k, 0.0) for e in snaps) for k in ("Rss", "Pss_Anon", "Pss_File")}
            shared = statistics.mean(e.get("Shared_Clean", 0.0) + e.get("Shared_Dirty", 0.0) for e in snaps)
            print(
                f"    per process, {when} (mean): Rss {mean['Rss']:.0f}, Pss_Anon {mean['Pss_Anon']:.0f} (private "
                f"heap), Pss_File {mean['Pss_File']:.0f} (mapped files: libraries), Shared {shared:.0f} MiB"
            )
    print(
        f"    the Parquet itself is read with read calls into each process's own buffers; the file's pages sit once "
        f"in the OS page cache ({size / 2**20:,.0f} MiB at most), counted in no process's RSS or PSS"
    )
    pss_share = total_pss / (READERS * single_rss)
    print("  ratios")
    print(f"    total RSS / ({READERS} x one RSS)       {total_rss / (READERS * single_rss):7.2f}")
    print(f"    total RSS / one RSS                {total_rss / single_rss:7.2f}")
    print(f"    total PSS / one RSS                {total_pss / single_rss:7.2f}")
    print(
        f"    total PSS / ({READERS} x one RSS)       {pss_share:7.2f}   target <= 0.5 (well under)  "
        f"{'met' if pss_share <= 0.5 else 'NOT met'}"
    )


# --- part 3: dask pruning ---------------------------------------------------------------------


def part_three(parquet: Path, runs: int) -> None:
    info = _measure.measure(SCRIPT, "dask_expect", str(parquet))
    size, rgs = parquet.stat().st_size, info["row_groups"]
    print(f"\n3. Dask pruning: sandbox.dask({NAME!r}, columns={DASK_COLUMNS}), fee sum per department")
    print(f"  file {size / 2**20:,.1f} MiB, {rgs} row groups; column chunks (compressed) per column:")
    for name, b in info["columns"].items():
        print(f"    {name:<16} {b / 2**20:7.1f} MiB  {b / size:6.1%}")
    sides = {
        "(e) dask, 2 columns": ("dask", str(DATA_ROOT), str(PRIVATE_ROOT), "0"),
        f"(f) dask, 2 columns, >= {DASK_SINCE}": ("dask", str(DATA_ROOT), str(PRIVATE_ROOT), "1"),
    }
    res = _measure.rounds(SCRIPT, sides, runs)
    print("  medians; 'expected' = footer + the selected column chunks of the selected row groups, from the metadata")
    for (label, rs), key in zip(res.items(), ("cols", "filter"), strict=True):
        want = info["ref"][key]
        for r in rs:
            got = r["sums"]
            if got.keys() != want.keys() or not all(_close(got[k], want[k]) for k in want):
                raise SystemExit(f"{label}: dask's answer differs from DuckDB's: {got} vs {want}")
        rchar, disk = _measure.median(rs, "rchar"), _measure.median(rs, "read_bytes")
        groups = rgs if key == "cols" else info["matching"]
        cols = DASK_COLUMNS if key == "cols" else [*DASK_COLUMNS, "visit_date (filter)"]
        expect = info["expect"][key]
        print(
            f"  {label}: {_measure.median(rs, 'seconds'):.2f} s, {_measure.median(rs, 'peak_mib'):.0f} MiB, "
            f"{rs[0]['partitions']} partition(s), answer equal to DuckDB's"
        )
        print(
            f"    expected   {expect / 2**20:7.1f} MiB = {expect / size:6.1%} of the file "
            f"({', '.join(cols)}; {groups}/{rgs} row groups)"
        )
        print(f"    rchar      {rchar / 2**20:7.1f} MiB = {rchar / size:6.1%} of the file (bytes the reads returned)")
        print(f"    read_bytes {disk / 2**20:7.1f} MiB = {disk / size:6.1%} of the file (from disk, not page cache)")


WORKERS = {
    "sandbox": w_sandbox,
    "duckdb": w_duckdb,
    "pandas_csv": w_pandas_csv,
    "pandas_parquet": w_pandas_parquet,
    "reader": w_reader,
    "dask": w_dask,
    "prepare": w_prepare,
    "dask_expect": w_dask_expect,
}


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-large", action="store_true", help="skip the ~1.2 GB uncompressed copy in part 2")
    args = ap.parse_args()

    print(f"machine: {_measure.machine()}")
    started = time.perf_counter()
    parquet = published_parquet()
    prepared = _measure.measure(SCRIPT, "prepare", str(parquet), "0" if args.no_large else "1")
    csv = Path(prepared["csv"])
    print(f"Parquet: {parquet} ({parquet.stat().st_size / 2**20:,.0f} MiB)")
    print(f"CSV of the published table: {csv} ({csv.stat().st_size / 2**20:,.0f} MiB)")
    print(", ".join(f"{k} {prepared[k]}" for k in ("duckdb", "pandas", "pyarrow", "dask")))

    print("\n1. the query, fetched as a pandas DataFrame:" + QUERY.rstrip().replace("\n", "\n     "))
    sides = {
        "(a) sandbox.sql().df()": ("sandbox", str(DATA_ROOT), str(PRIVATE_ROOT)),
        "(b) bare duckdb.sql().df()": ("duckdb", str(parquet)),
        "(c) pandas read_csv": ("pandas_csv", str(csv)),
        "(d) pandas read_parquet": ("pandas_parquet", str(parquet)),
        "(a') sandbox, 2nd query": ("sandbox", str(DATA_ROOT), str(PRIVATE_ROOT), "1"),
        "(b') bare duckdb, 2nd query": ("duckdb", str(parquet), "1"),
    }
    res = _measure.rounds(SCRIPT, sides, args.runs)
    labels = list(sides)
    reference = res[labels[1]][0]["result"]
    for label in labels:
        for r in res[label]:
            if diff := _differences(reference, r["result"]):
                raise SystemExit(f"{label} gives a different answer from (b): {diff[:3]}")
    visits = sum(r[2] for r in reference)
    print(f"  answers: all {len(labels) * args.runs} equal ({len(reference)} groups, {visits:,} visits)")
    t = {k: _measure.median(res[k], "seconds") for k in labels}
    m = {k: _measure.median(res[k], "peak_mib") for k in labels}
    a, b, c, d, a2, b2 = labels
    sess = _measure.median(res[a], "session_s")
    print(f"\nmedians of {args.runs} runs")
    for k in labels:
        print(f"  {k:<28} {t[k]:7.2f} s  {m[k]:7.0f} MiB")
    first = res[a][0]
    print(
        f"  (a) includes creating the session: {sess:.2f} s (threads {first['threads']}, "
        f"memory limit {first['memory_limit']}); the query alone {t[a] - sess:.2f} s"
    )
    checks = [
        ("(c) / (a) wall time", t[c] / t[a], ">= 10", t[c] / t[a] >= 10),
        ("(d) / (a) wall time", t[d] / t[a], ">= 8", t[d] / t[a] >= 8),
        ("(a) / (c) peak memory", m[a] / m[c], "<= 0.10", m[a] / m[c] <= 0.10),
        ("(a) / (d) peak memory", m[a] / m[d], "<= 0.10", m[a] / m[d] <= 0.10),
        ("(a) / (b) wall time", t[a] / t[b], "<= 1.10", t[a] / t[b] <= 1.10),
    ]
    print("\nratios")
    for label, value, target, ok in checks:
        print(f"  {label:<26} {value:8.2f}   target {target:<8} {'met' if ok else 'NOT met'}")
    print(f"  (a') / (b') wall time      {t[a2] / t[b2]:8.2f}   (a second query in the same process; no target)")

    part_two(DATA_ROOT, "the table as published", args.runs, reference)
    if not args.no_large:
        part_two(Path(prepared["large_root"]), "the same rows uncompressed, no dictionaries", args.runs, reference)
    print(
        f"  for comparison: {READERS} pandas processes would each hold the table: "
        f"{READERS} x {m[d]:.0f} MiB (read_parquet) = {READERS * m[d] / 1024:.1f} GiB"
    )

    part_three(parquet, args.runs)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\ntotal benchmark time {time.perf_counter() - started:.0f} s; the parent's own peak RSS {own:.0f} MiB")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        _measure.worker_main(WORKERS)
    else:
        main()
