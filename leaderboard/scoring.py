"""Scoring a submission file against a challenge's hidden solution.

DuckDB reads and checks the file once (:mod:`leaderboard.validation`), joins it with the
solution by id, and hands each split's aligned targets and predictions to the metric. The
public/private split of the test rows is a hash of the challenge and the row's id (md5, so
it never changes with a library upgrade): fixed when the challenge is created, the same
for every team.

The private score is returned to the caller (the contest store seals it); nothing here
prints it for a contestant.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from leaderboard.contest import Challenge
from leaderboard.validation import Expect, SubmissionInvalid, id_text, ids_equal, validate_file
from sandbox import catalog
from sandbox.build import solution_file
from sandbox.errors import NotFound
from sandbox.quoting import lit, q
from sandbox.settings import Paths

SPLIT_BUCKETS = 1_000_000


@dataclass
class ScoreResult:
    valid: bool
    rows: int = 0
    public_score: float | None = None
    private_score: float | None = None
    metric: str = ""
    metric_version: int = 0
    dataset_version: int | None = None
    errors: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def split_expr(challenge: Challenge, alias: str = "s") -> str:
    """SQL: 'public' or 'private' for a solution row, from md5(challenge id : row id)."""
    bucket = (
        f"CAST('0x' || substr(md5({lit(challenge.id + ':')} || {id_text(alias, challenge.id_columns)}), 1, 8) "
        f"AS UBIGINT) % {SPLIT_BUCKETS}"
    )
    return f"CASE WHEN {bucket} < {int(challenge.public_fraction * SPLIT_BUCKETS)} THEN 'public' ELSE 'private' END"


def solution_for(challenge: Challenge, paths: Paths, version: int | None = None) -> tuple[Path, int]:
    """The hidden solution file of the challenge's table (latest published version unless given)."""
    entry = catalog.entry(paths.data_root, challenge.dataset, version)
    path = solution_file(paths.private_root, challenge.dataset, entry["version"], challenge.table)
    if not path.exists():
        raise NotFound(
            f"the solution of {challenge.id!r} is missing ({path}); rebuild {challenge.dataset}",
            f"赛题 {challenge.id!r} 的答案文件缺失（{path}）；请重新构建 {challenge.dataset}",
        )
    return path, entry["version"]


def expect_for(challenge: Challenge, con: duckdb.DuckDBPyConnection, solution: Path) -> Expect:
    scorer = challenge.scorer
    labels: tuple = ()
    if scorer.input == "label" and challenge.positive is None:
        labels = tuple(
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT CAST({q(challenge.target)} AS VARCHAR) FROM read_parquet({lit(str(solution))}) "
                "ORDER BY 1"
            ).fetchall()
        )
    elif scorer.input == "label":
        labels = ("0", "1")
    return Expect(
        id_columns=challenge.id_columns, prediction_columns=(challenge.prediction,), input=scorer.input, labels=labels
    )


def score_file(challenge: Challenge, path: Path, paths: Paths, *, version: int | None = None) -> ScoreResult:
    """Validate and score ``path``; an invalid file gives ``valid=False`` and every problem found."""
    scorer = challenge.scorer
    result = ScoreResult(valid=False, metric=scorer.name, metric_version=scorer.version)
    solution, result.dataset_version = solution_for(challenge, paths, version)
    con = duckdb.connect()
    con.execute("SET disabled_optimizers = 'in_clause'").fetchall()  # keep the file's row order for row numbers
    sol = f"read_parquet({lit(str(solution))})"
    expect = expect_for(challenge, con, solution)
    test_ids = (
        "SELECT " + ", ".join(f"CAST({q(c)} AS VARCHAR) AS {q(c)}" for c in challenge.id_columns) + f" FROM {sol}"
    )
    with tempfile.TemporaryDirectory(prefix="contesthub-score-") as work:
        try:
            loaded = validate_file(con, path, Path(work), expect, test_ids)
        except SubmissionInvalid as exc:
            result.errors = [{**p.to_dict(), "row": p.rows[0] if p.rows else None} for p in exc.problems]
            return result
    target = q(challenge.target)
    if challenge.positive is not None:
        y_true = f"CASE WHEN CAST(s.{target} AS VARCHAR) = {lit(challenge.positive)} THEN 1 ELSE 0 END"
    elif scorer.input == "value":
        y_true = f"CAST(s.{target} AS DOUBLE)"
    else:
        y_true = f"CAST(s.{target} AS VARCHAR)"
    pred = f"t.{q(challenge.prediction)}"
    y_pred = f"trim(CAST({pred} AS VARCHAR))" if scorer.input == "label" else f"CAST({pred} AS DOUBLE)"
    on = ids_equal(challenge.id_columns, "s", "t")
    rows = con.execute(
        f"SELECT {split_expr(challenge)} AS split, {y_true} AS y, {y_pred} AS p "
        f"FROM {sol} s JOIN {q(loaded.table)} t ON {on}"
    ).fetchnumpy()
    result.rows = loaded.rows
    y_all, p_all = np.asarray(rows["y"]), np.asarray(rows["p"])
    if scorer.input == "label" and challenge.positive is None:
        # Integer codes in sorted label order: metrics see the same labels in the same order
        # (which quadratic kappa relies on) without sorting a million Python strings.
        codes, _ = pd.factorize(np.concatenate([y_all, p_all]), sort=True)
        y_all, p_all = codes[: len(y_all)], codes[len(y_all) :]
    for split in ("public", "private"):
        mask = rows["split"] == split
        y, p = y_all[mask], p_all[mask]
        if scorer.input == "label" and challenge.positive is not None:
            p = p.astype(int)
        value = scorer(y, p, **challenge.metric_params)
        setattr(result, f"{split}_score", value)
    result.valid = True
    return result
