"""Benchmark: scoring a submission of more than a million rows, against pandas + scikit-learn.

Uses the 10-million-row outpatient table built by ``build_10m`` (its holdout, the last
quarter of 2024, is 1.43 million visits) and two demo challenges on it:
``emergency_visit`` (ROC AUC on probabilities) and ``department_triage`` (macro F1 on ten
labels). For each, in one run, alternating sides, each in a fresh process, imports excluded:

(a) ``leaderboard.scoring.score_file``: read the CSV, check every rule of a submission
    (columns, duplicate/unknown/missing ids, numbers, NaN, labels, ranges), join with the
    hidden solution, public and private score;
(b) pandas ``read_csv`` + ``read_parquet`` of the solution + ``merge`` + the scikit-learn
    metric on each split. The baseline checks nothing and is *given* the public/private
    split as a precomputed column, so the comparison is conservative.

Both sides get their per-solution preparation before the timed runs: (b) the solution with
its split column, (a) the scorer's cache of the solution (ids as text, targets, split), which
``score_file`` would otherwise make on its first call (``leaderboard.scoring.warm_cache``).

Both sides must give the same public and private scores. Persisting the result in the
contest store is not part of (a) yet (the store comes later in issue 4).
Target (issue 4): (a) >= 2x faster than (b) in wall time and >= 3x less peak memory.

    python3 dev.py bench score_1m [--runs 3]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure

from sandbox.settings import PROJECT_ROOT

SCRIPT = Path(__file__).resolve()
HOME = PROJECT_ROOT / "var" / "bench"
CHALLENGES = {
    # challenge: (prediction SQL over the test table, scikit-learn reference)
    "emergency_visit": ("round(least(fee_yuan / 2000.0, 1.0), 4) AS p_emergency", "roc_auc"),
    "department_triage": (
        "CASE WHEN age IN ('0-4', '5-9', '10-14') THEN '儿科' WHEN fee_yuan > 600 THEN '急诊科' ELSE '内科' END "
        "AS department",
        "f1_macro",
    ),
}


def _paths():
    from sandbox.settings import Paths

    return Paths.from_env(HOME / "data", HOME / "private", PROJECT_ROOT / "datasets")


def prepare(challenge_id: str) -> tuple[Path, Path]:
    """The submission CSV and, for the baseline, the solution with its split (both cached)."""
    import duckdb

    from leaderboard import contest
    from leaderboard.scoring import solution_for, split_expr, warm_cache

    paths = _paths()
    ch = contest.load().challenge(challenge_id)
    solution, version = solution_for(ch, paths)
    sub = HOME / f"submission_{challenge_id}_v{version}.csv"
    with_split = HOME / f"solution_{challenge_id}_v{version}.parquet"
    test = paths.data_root / ch.dataset / f"v{version}" / f"{ch.test_table}.parquet"
    if not sub.exists():
        duckdb.sql(
            f"COPY (SELECT visit_id, {CHALLENGES[challenge_id][0]} FROM read_parquet('{test}') "
            f"ORDER BY visit_id) TO '{sub}' (HEADER)"
        ).fetchall()
    if not with_split.exists():
        duckdb.sql(
            f"COPY (SELECT s.*, {split_expr(ch)} AS split FROM read_parquet('{solution}') s) "
            f"TO '{with_split}' (FORMAT parquet)"
        ).fetchall()
    warm_cache(ch, paths, version)
    return sub, with_split


def w_contesthub(challenge_id: str, sub: str):
    from leaderboard import contest
    from leaderboard.scoring import score_file

    ch, paths = contest.load().challenge(challenge_id), _paths()

    def work() -> dict:
        r = score_file(ch, Path(sub), paths)
        assert r.valid, r.errors
        return {"public": r.public_score, "private": r.private_score, "rows": r.rows}

    return work


def w_pandas(challenge_id: str, sub: str, solution: str):
    import numpy as np
    import pandas as pd
    from sklearn import metrics as skm

    def work() -> dict:
        s = pd.read_csv(sub)
        truth = pd.read_parquet(solution, columns=["visit_id", "department", "split"])
        m = truth.merge(s, on="visit_id", how="inner")
        out = {}
        for split in ("public", "private"):
            part = m[m["split"] == split]
            if challenge_id == "emergency_visit":
                out[split] = skm.roc_auc_score((part["department"] == "急诊科").astype(int), part["p_emergency"])
            else:
                out[split] = skm.f1_score(
                    part["department_x"].astype(str), part["department_y"].astype(str), average="macro"
                )
        out["rows"] = len(s)
        assert np.isfinite(out["public"])
        return out

    return work


WORKERS = {"contesthub": w_contesthub, "pandas": w_pandas}


def prepared(challenge_id: str) -> tuple[Path, Path]:
    """:func:`prepare` in a process of its own.

    A process's peak RSS (``ru_maxrss``) starts at its parent's: Linux carries the high-water
    mark across ``exec``. Writing the files takes a few hundred MiB, so done here it would be
    the floor of every worker's peak memory, on both sides.
    """
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--prepare", challenge_id], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return Path(out[-2]), Path(out[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {_measure.machine()}")
    for challenge_id, (_, metric) in CHALLENGES.items():
        sub, with_split = prepared(challenge_id)
        print(f"\n{challenge_id} ({metric}): submission {sub.name}, {sub.stat().st_size / 2**20:.0f} MiB")
        sides = {
            "(a) contesthub score_file": ("contesthub", challenge_id, str(sub)),
            "(b) pandas + scikit-learn": ("pandas", challenge_id, str(sub), str(with_split)),
        }
        res = _measure.rounds(SCRIPT, sides, args.runs)
        a, b = res["(a) contesthub score_file"], res["(b) pandas + scikit-learn"]
        for x, y in zip(a, b, strict=True):
            for split in ("public", "private"):
                assert math.isclose(x[split], y[split], rel_tol=1e-9), (split, x[split], y[split])
        ta, tb = _measure.median(a, "seconds"), _measure.median(b, "seconds")
        ma, mb = _measure.median(a, "peak_mib"), _measure.median(b, "peak_mib")
        print(
            f"  rows {a[0]['rows']:,}; scores equal on both sides: public {a[0]['public']:.6f}, "
            f"private {a[0]['private']:.6f}"
        )
        print(f"  medians: (a) {ta:.2f} s {ma:.0f} MiB   (b) {tb:.2f} s {mb:.0f} MiB")
        print(f"  (b)/(a) wall time {tb / ta:6.2f}   target >= 2   {'met' if tb / ta >= 2 else 'NOT met'}")
        print(f"  (b)/(a) peak memory {mb / ma:6.2f}   target >= 3   {'met' if mb / ma >= 3 else 'NOT met'}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        _measure.worker_main(WORKERS)
    elif len(sys.argv) > 2 and sys.argv[1] == "--prepare":
        print(*prepare(sys.argv[2]), sep="\n")
    else:
        main()
