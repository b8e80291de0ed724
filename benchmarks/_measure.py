"""Shared by the benchmarks: run one measurement in a fresh process, report wall time and peak memory.

Each measurement is a subprocess running ``<benchmark> --worker NAME ...``; the worker
times only the work (imports excluded) and reports its own peak RSS, so every side is
measured the same way and no side inherits another's memory.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def worker_main(workers: dict[str, Callable[..., Callable[[], dict | None]]]) -> None:
    """Entry point of ``--worker NAME [ARGS]``.

    ``workers[NAME](*ARGS)`` does the imports and set-up and returns the work as a
    callable; only the callable is timed. Peak memory covers the whole process.
    """
    name, args = sys.argv[2], sys.argv[3:]
    work = workers[name](*args)
    started, cpu = time.perf_counter(), cpu_seconds()
    extra = work() or {}
    seconds = time.perf_counter() - started
    peak = peak_rss_mib()
    print("RESULT " + json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds() - cpu, "peak_mib": peak, **extra}))


def cpu_seconds() -> float:
    """CPU time of this process so far, every thread's, user and system (with its children's
    that ended). On a shared machine wall time depends on what else runs; this much less."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mib() -> float:
    """This process's peak resident memory since its ``exec``.

    Not ``getrusage().ru_maxrss``: Linux carries the parent's peak over a fork and exec into
    it, so every worker started by a runner that once held 3 GiB would report 3 GiB.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(script: Path, name: str, *args: str, env: dict | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, str(script), "--worker", name, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def rounds(script: Path, sides: dict[str, tuple], runs: int) -> dict[str, list[dict]]:
    """Run every side ``runs`` times, alternating sides within each round."""
    results: dict[str, list[dict]] = {k: [] for k in sides}
    for i in range(runs):
        for label, (name, *args) in sides.items():
            r = measure(script, name, *args)
            results[label].append(r)
            cpu = f"  {r['cpu_seconds']:8.2f} CPU-s" if "cpu_seconds" in r else ""
            mem = f"{r['peak_mib']:8.0f} MiB"
            print(f"  round {i + 1}/{runs} {label:<28} {r['seconds']:8.2f} s{cpu}  {mem}", flush=True)
    return results


def median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)
