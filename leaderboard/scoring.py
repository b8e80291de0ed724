"""Scoring a submission file against a challenge's hidden solution.

The public/private split of the test rows is a hash of the contest's secret split salt, the
challenge and the row's id (md5, so it never changes with a library upgrade): fixed when the
challenge is created, the same for every team, and not computable by a contestant, who would
otherwise know which test rows the public board scores (the salt is generated on first use in
``<private root>/secrets/split_salt`` and travels with backups).

What the scorer needs of a solution (per row, in file order: its id as text, its target as
0/1, a number or a label's code, and its split) is computed once per solution file, challenge
definition and salt and kept as a small DuckDB file under
``<private root>/cache/scoring/<challenge>/`` (:func:`warm_cache` makes it ahead of time), so
no submission pays for the md5 of a million ids. A read-only private root only means the
cache is made in memory for each submission.

A submission is then read in one of two ways, with the same result:

* the fast path, for the usual file (a UTF-8 CSV whose header is exactly the expected
  columns): DuckDB reads it in one typed pass, without sniffing, into a temporary table of
  (id, prediction), and one pass over it beside the cached solution (a positional join: row i
  against row i, ids compared as text) checks the ids and the values. A file in another
  order is matched by id instead;
* anything else (another container, encoding or header, text ids, or any check failing) goes
  through :func:`sandbox.submission_checks.validate_file`, which reports every problem, and a
  valid file is joined with the solution by id.

Either way DuckDB ends with (split, target, prediction) rows. For labels and yes/no targets
it groups them into the counts of each distinct (split, target, prediction), a few thousand
rows that give the metric exactly (:meth:`leaderboard.metrics.Metric.from_counts`: the
confusion matrix, or ROC AUC from rank statistics); otherwise the rows are fetched as numpy
arrays in solution order. Nothing of the file's size becomes Python objects.

The private score is returned to the caller (the contest store seals it); nothing here prints
it for a contestant.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from leaderboard.contest import Challenge
from sandbox import catalog
from sandbox.errors import NotFound
from sandbox.quoting import lit, q
from sandbox.settings import Paths
from sandbox.submission_checks import Expect, SubmissionInvalid, id_text, typed_csv, unpack, validate_file

SPLIT_BUCKETS = 1_000_000
CACHE_FORMAT = 2  # bump when what the cache holds changes


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


@dataclass(frozen=True)
class Resources:
    """What DuckDB may use to score one file: memory (it spills beyond it), threads, and a spill
    folder with a cap on what it may hold. The scorers (hub/scorer.py) pass their child's
    share of its limits; without it (an organizer's offline ``contesthub score``, tests) DuckDB
    keeps its defaults."""

    memory_limit: str = "512MB"
    threads: int = 1
    temp_directory: Path | None = None  # under the private root: contestants' bytes stay there
    max_temp_directory_size: str = "1GB"

    def config(self) -> dict[str, str]:
        out = {"memory_limit": self.memory_limit, "threads": str(self.threads)}
        if self.temp_directory is not None:
            out["temp_directory"] = str(self.temp_directory)
            out["max_temp_directory_size"] = self.max_temp_directory_size
        return out


class Database:
    """One DuckDB database for one scoring after another (a scorer's child process keeps one).

    Starting a DuckDB database costs about 30 ms of CPU, more than scoring a usual file. Each
    scoring gets a connection of its own (its temporary tables go with it), and what a scoring
    sets for the whole database is undone after it: the solution's cache is detached and the
    optimizer settings reset, so one submission never sees another's."""

    def __init__(self, resources: Resources | None = None):
        self.resources = resources
        self._db = duckdb.connect(config=resources.config() if resources else {})

    @contextlib.contextmanager
    def connection(self):
        con = self._db.cursor()
        try:
            yield con
        finally:
            with contextlib.suppress(duckdb.Error):
                con.execute("DETACH DATABASE IF EXISTS truth").fetchall()
                con.execute("RESET disabled_optimizers").fetchall()
            con.close()

    def close(self) -> None:
        self._db.close()


def split_salt_file(private_root: Path) -> Path:
    return private_root / "secrets" / "split_salt"


def split_salt(private_root: Path) -> str:
    """The contest's secret salt of the public/private split, generated on first use (0600).

    Made whole under a temporary name and linked into place, so that scorers starting at the
    same moment agree on one salt and none ever reads a half-written one."""
    path = split_salt_file(private_root)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".split_salt-")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):  # another scorer's salt won: use it
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


def split_expr(challenge: Challenge, salt: str, alias: str = "s") -> str:
    """SQL: 'public' or 'private' for a solution row, from md5(salt : challenge id : row id).

    A ranking challenge splits by group (its rows are ranked together, so a group is public or
    private as a whole)."""
    key = (challenge.group,) if challenge.group else challenge.id_columns
    bucket = (
        f"CAST('0x' || substr(md5({lit(f'{salt}:{challenge.id}:')} || {id_text(alias, key)}), 1, 8) "
        f"AS UBIGINT) % {SPLIT_BUCKETS}"
    )
    return f"CASE WHEN {bucket} < {int(challenge.public_fraction * SPLIT_BUCKETS)} THEN 'public' ELSE 'private' END"


def _solution_file(private_root: Path, dataset_id: str, version: int, table: str) -> Path:
    # The same path as sandbox.build.solution_file (tests/test_contest.py checks it): importing
    # sandbox.build would load pyarrow and rich, a third of the scorer's memory, for one line.
    return private_root / "solutions" / dataset_id / f"v{version}" / f"{table}.parquet"


# The latest version of each dataset, and the root catalog's bytes it was read from.
_LATEST: dict[tuple[str, str], tuple[bytes, int]] = {}


def _latest_version(data_root: Path, dataset_id: str) -> int:
    """The dataset's latest published version, from the root catalog.

    A scorer asks before every submission, and parsing the catalog's JSON was a tenth of
    scoring a usual file: it is parsed again only when its bytes changed (reading them costs
    a few microseconds; a file's times and inode number can repeat within a clock tick)."""
    try:
        raw = (data_root / "catalog.json").read_bytes()
    except OSError:
        return catalog.entry(data_root, dataset_id)["version"]  # raises NotFound as it should
    key = (str(data_root), dataset_id)
    known = _LATEST.get(key)
    if known is not None and known[0] == raw:
        return known[1]
    version = catalog.entry(data_root, dataset_id)["version"]
    _LATEST[key] = (raw, version)
    return version


def solution_for(challenge: Challenge, paths: Paths, version: int | None = None) -> tuple[Path, int]:
    """The hidden solution file of the challenge's table (latest published version unless given)."""
    if version is None:
        version = _latest_version(paths.data_root, challenge.dataset)
    else:
        version = catalog.entry(paths.data_root, challenge.dataset, version)["version"]
    path = _solution_file(paths.private_root, challenge.dataset, version, challenge.table)
    if not path.exists():
        raise NotFound(
            f"the solution of {challenge.id!r} is missing ({path}); rebuild {challenge.dataset}",
            f"赛题 {challenge.id!r} 的答案文件缺失（{path}）；请重新构建 {challenge.dataset}",
        )
    return path, version


def _labels(challenge: Challenge, con: duckdb.DuckDBPyConnection, solution: Path) -> tuple:
    """The allowed labels of a label challenge, sorted (their index is the label's code)."""
    if challenge.scorer.input != "label":
        return ()
    if challenge.positive is not None:
        return ("0", "1")
    rows = con.execute(
        f"SELECT DISTINCT CAST({q(challenge.target)} AS VARCHAR) FROM read_parquet({lit(str(solution))}) ORDER BY 1"
    ).fetchall()
    return tuple(r[0] for r in rows)


def _expect(challenge: Challenge, labels: tuple, rows: int | None = None) -> Expect:
    # The contest's upload limit holds after decompressing too: an archive that expands past it
    # is stopped there, not at the checks' default of a gigabyte.
    return Expect(
        id_columns=challenge.id_columns,
        prediction_columns=(challenge.prediction,),
        input=challenge.scorer.input,
        labels=labels,
        max_bytes=challenge.upload_limit,
        max_uncompressed_bytes=challenge.upload_limit,
        max_rows=rows,
        group=challenge.group,
    )


def expect_for(challenge: Challenge, con: duckdb.DuckDBPyConnection, solution: Path) -> Expect:
    return _expect(challenge, _labels(challenge, con, solution))


# --- what the scorer keeps of a solution ---------------------------------------------------

TRUTH = "truth.truth"  # the attached cache's table (see Truth)


@dataclass(frozen=True)
class Truth:
    """A solution as the scorer reads it: the table :data:`TRUTH` of the attached cache, one row
    per solution row in file order: ``row`` (its number in the file), ``id_0``, ``id_1``, ... (the
    id columns as text, which is how ids are compared), ``y`` (0/1 for a yes/no question, a float
    for a value, else the label's code) and ``public``."""

    rows: int
    labels: tuple  # the allowed labels of a label challenge; a label's code is its index
    distinct_ids: bool  # every row has an id, and no two the same (else only the full check can judge)


def _code(labels: tuple, text: str) -> str:
    """SQL: the 0-based index of ``text`` in ``labels``, NULL when it is not one of them."""
    kind = "SMALLINT" if len(labels) < 1 << 15 else "INTEGER"
    return f"CAST(list_position([{', '.join(lit(str(x)) for x in labels)}]::VARCHAR[], {text}) - 1 AS {kind})"


def _same_ids(challenge: Challenge, a: str, b: str) -> str:
    """SQL: rows ``a`` and ``b`` of the fast path's tables (ids as text in id_0, id_1, ...) have the same id."""
    return " AND ".join(f"{a}.id_{i} = {b}.id_{i}" for i in range(len(challenge.id_columns)))


def _fill_truth(con: duckdb.DuckDBPyConnection, db: str, challenge: Challenge, solution: Path, salt: str) -> None:
    """Write the tables ``truth`` and ``meta`` of the attached database ``db``."""
    scorer = challenge.scorer
    labels = _labels(challenge, con, solution)
    target = f"s.{q(challenge.target)}"
    if challenge.positive is not None:
        y = f"CAST(CAST({target} AS VARCHAR) = {lit(challenge.positive)} AS TINYINT)"
    elif scorer.input == "value":
        y = f"CAST({target} AS DOUBLE)"
    elif scorer.input == "label":
        y = _code(labels, f"CAST({target} AS VARCHAR)")
    else:
        y = f"CAST({target} AS VARCHAR)"
    ids = ", ".join(f"CAST(s.{q(c)} AS VARCHAR) AS id_{i}" for i, c in enumerate(challenge.id_columns))
    (rows,) = con.execute(
        f"CREATE TABLE {q(db)}.truth AS SELECT file_row_number AS row, {ids}, {y} AS y, "
        f"{split_expr(challenge, salt)} = 'public' AS public "
        f"FROM read_parquet({lit(str(solution))}, file_row_number=true) s"
    ).fetchall()[0]
    id_cols = [f"id_{i}" for i in range(len(challenge.id_columns))]
    (with_id, distinct) = con.execute(
        f"SELECT count(*) FILTER (WHERE {' AND '.join(f'{c} IS NOT NULL' for c in id_cols)}), "
        f"count(DISTINCT struct_pack({', '.join(id_cols)})) FROM {q(db)}.truth"
    ).fetchall()[0]
    con.execute(
        f"CREATE TABLE {q(db)}.meta AS SELECT [{', '.join(lit(str(x)) for x in labels)}]::VARCHAR[] AS labels, "
        f"{rows}::BIGINT AS rows, {lit(with_id == distinct == rows)} AS distinct_ids"
    ).fetchall()


# Held while a scorer thread writes a solution's cache; processes keep apart by their temp names.
_CACHE_BUILDS = threading.Lock()


def _write_truth(con: duckdb.DuckDBPyConnection, challenge: Challenge, solution: Path, file: Path, salt: str) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.stem}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    con.execute(f"ATTACH {lit(str(tmp))} AS truth_new").fetchall()
    try:
        _fill_truth(con, "truth_new", challenge, solution, salt)
    except BaseException:
        con.execute("DETACH truth_new").fetchall()
        for junk in (tmp, tmp.with_name(tmp.name + ".wal")):
            junk.unlink(missing_ok=True)
        raise
    con.execute("DETACH truth_new").fetchall()  # checkpoints: the file is complete
    os.replace(tmp, file)
    for old in file.parent.iterdir():  # made for an earlier solution file or challenge definition
        if old.suffix == ".duckdb" and old != file:
            old.unlink(missing_ok=True)


def _truth(con: duckdb.DuckDBPyConnection, challenge: Challenge, solution: Path, paths: Paths) -> Truth:
    """Attach the solution's cache as ``truth`` (made first if missing or stale); its :class:`Truth`."""
    st = solution.stat()
    salt = split_salt(paths.private_root)
    what = (
        CACHE_FORMAT,
        duckdb.__version__,
        str(solution.resolve()),
        st.st_size,
        st.st_mtime_ns,
        challenge.id,
        challenge.id_columns,
        challenge.target,
        challenge.positive,
        challenge.public_fraction,
        challenge.scorer.input,
        SPLIT_BUCKETS,
        hashlib.sha256(salt.encode()).hexdigest(),  # the cache holds the split: made again for another salt
    )
    file = (
        paths.private_root
        / "cache"
        / "scoring"
        / challenge.id
        / f"{hashlib.sha256(repr(what).encode()).hexdigest()[:24]}.duckdb"
    )
    try:
        if not file.exists():
            with _CACHE_BUILDS:  # the service's scorer threads: one builds, the others wait and use it
                if not file.exists():
                    _write_truth(con, challenge, solution, file, salt)
        con.execute(f"ATTACH {lit(str(file))} AS truth (READ_ONLY)").fetchall()
    except (OSError, duckdb.Error):
        # A read-only private root, or a damaged file (made again next time): keep it in memory
        # this time. A real problem with the solution raises again from _fill_truth.
        with contextlib.suppress(OSError):
            file.unlink(missing_ok=True)
        con.execute("ATTACH ':memory:' AS truth").fetchall()
        _fill_truth(con, "truth", challenge, solution, salt)
    labels, rows, distinct_ids = con.execute("SELECT labels, rows, distinct_ids FROM truth.meta").fetchall()[0]
    return Truth(rows=rows, labels=tuple(labels), distinct_ids=distinct_ids)


def warm_cache(challenge: Challenge, paths: Paths, version: int | None = None) -> Path:
    """Make the scorer's cache of the challenge's solution now (scoring makes it when missing);
    the solution file."""
    solution, _ = solution_for(challenge, paths, version)
    con = duckdb.connect()
    try:
        _truth(con, challenge, solution, paths)
    finally:
        con.close()
    return solution


# --- reading the predictions -----------------------------------------------------------------


def _fast(
    con: duckdb.DuckDBPyConnection, challenge: Challenge, path: Path, work: Path, expect: Expect, truth: Truth
) -> str | None:
    """SQL of (row, public, y, p) if the file is the usual valid CSV; None sends it to the full check.

    Raises SubmissionInvalid when the file cannot be unpacked (the full check would say the same)."""
    if not truth.distinct_ids or expect.input not in ("value", "probability", "label"):
        return None
    plain = unpack(path, work, expect)
    pred = challenge.prediction
    label = expect.input == "label"
    types = dict.fromkeys(challenge.id_columns, "VARCHAR") | {pred: "VARCHAR" if label else "DOUBLE"}
    source = typed_csv(plain, expect, types)
    if source is None:
        return None
    ids = ", ".join(f"{q(c)} AS id_{i}" for i, c in enumerate(challenge.id_columns))
    p = _code(expect.labels, f"trim({q(pred)})") if label else q(pred)
    try:
        (rows,) = con.execute(f"CREATE TEMP TABLE fast AS SELECT {ids}, {p} AS p FROM {source}").fetchall()[0]
    except duckdb.Error:
        return None  # a value that is not a number, a ragged row, bad UTF-8, ...
    bad = {
        "value": "s.p IS NULL OR NOT isfinite(s.p)",
        "probability": "s.p IS NULL OR NOT (s.p BETWEEN 0 AND 1)",  # NaN is above 1 in DuckDB
        "label": "s.p IS NULL",  # an unknown label has no code
    }[expect.input]
    n = len(challenge.id_columns)
    if rows == truth.rows:
        no_id, misplaced, bad_values = con.execute(
            f"SELECT count(*) FILTER (WHERE {' OR '.join(f's.id_{i} IS NULL' for i in range(n))}), "
            f"count(*) FILTER (WHERE NOT ({_same_ids(challenge, 's', 'c')})), "
            f"count(*) FILTER (WHERE {bad}) FROM fast s POSITIONAL JOIN {TRUTH} c"
        ).fetchall()[0]
        if not no_id and not bad_values:
            if not misplaced:  # the test set's order, as usual
                return f"SELECT c.row, c.public, c.y, s.p FROM fast s POSITIONAL JOIN {TRUTH} c"
            unknown, missing = con.execute(
                "SELECT count(*) FILTER (WHERE c.row IS NULL), count(*) FILTER (WHERE s.p IS NULL) "
                f"FROM fast s FULL OUTER JOIN {TRUTH} c ON {_same_ids(challenge, 's', 'c')}"
            ).fetchall()[0]
            if not unknown and not missing:  # as many rows as test ids, each id found: each once
                return (
                    f"SELECT c.row, c.public, c.y, s.p FROM fast s JOIN {TRUTH} c ON {_same_ids(challenge, 's', 'c')}"
                )
    con.execute("DROP TABLE fast").fetchall()
    return None


def _joined(challenge: Challenge, table: str, expect: Expect) -> str:
    """SQL of (row, public, y, p) for a validated file, joined with the solution by id as text."""
    v = f"trim(CAST(t.{q(challenge.prediction)} AS VARCHAR))"
    p = _code(expect.labels, v) if expect.input == "label" else f"TRY_CAST({v} AS DOUBLE)"
    on = " AND ".join(f"CAST(t.{q(c)} AS VARCHAR) = c.id_{i}" for i, c in enumerate(challenge.id_columns))
    return f"SELECT c.row, c.public, c.y, {p} AS p FROM {q(table)} t JOIN {TRUTH} c ON {on}"


def _column(a) -> np.ndarray:
    return np.ma.filled(a, np.nan) if np.ma.isMaskedArray(a) and a.dtype.kind == "f" else np.asarray(a)


def _scores(con: duckdb.DuckDBPyConnection, challenge: Challenge, pairs: str) -> dict[str, float]:
    """The public and private score of the (row, public, y, p) rows of ``pairs``."""
    scorer, params = challenge.scorer, challenge.metric_params
    if challenge.group is not None:  # ranking: each group's items ordered by score
        g, i = challenge.id_columns.index(challenge.group), challenge.id_columns.index(challenge.item)
        got = con.execute(
            f"SELECT x.public, x.y, x.p, c.id_{g} AS g, c.id_{i} AS item FROM ({pairs}) x JOIN {TRUTH} c USING (row)"
        ).fetchnumpy()
        public, y, p, groups, items = (_column(got[k]) for k in ("public", "y", "p", "g", "item"))
        return {
            split: challenge.evaluate(
                y[public == flag], p[public == flag], groups[public == flag], items[public == flag]
            )
            for split, flag in (("public", True), ("private", False))
        }
    if scorer.order_free and (challenge.positive is not None or scorer.input == "label"):
        # y takes two values (or a label's code): the distinct (y, p) pairs and their counts are
        # a few thousand rows, not a million, and give the metric exactly.
        got = con.execute(f"SELECT public, y, p, count(*) AS n FROM ({pairs}) GROUP BY ALL").fetchnumpy()
        public, y, p, n = (_column(got[k]) for k in ("public", "y", "p", "n"))
        return {
            split: scorer.from_counts(y[public == flag], p[public == flag], n[public == flag], **params)
            for split, flag in (("public", True), ("private", False))
        }
    got = con.execute(f"SELECT public, y, p FROM ({pairs}) ORDER BY row").fetchnumpy()
    public, y, p = (_column(got[k]) for k in ("public", "y", "p"))
    return {
        split: scorer(y[public == flag], p[public == flag], **params)
        for split, flag in (("public", True), ("private", False))
    }


def _pairs(con: duckdb.DuckDBPyConnection, challenge: Challenge, path: Path, work: Path, truth: Truth) -> str:
    """SQL of (row, public, y, p) for a valid file; raises SubmissionInvalid with every problem."""
    expect = _expect(challenge, truth.labels, truth.rows)
    pairs = _fast(con, challenge, path, work, expect, truth)
    if pairs is not None:
        return pairs
    con.execute("SET disabled_optimizers = 'in_clause'").fetchall()  # file order for row numbers
    test_ids = "SELECT " + ", ".join(f"id_{i} AS {q(c)}" for i, c in enumerate(challenge.id_columns)) + f" FROM {TRUTH}"
    loaded = validate_file(con, path, work, expect, test_ids)
    return _joined(challenge, loaded.table, expect)


def score_file(
    challenge: Challenge,
    path: Path,
    paths: Paths,
    *,
    version: int | None = None,
    database: Database | None = None,
) -> ScoreResult:
    """Validate and score ``path``; an invalid file gives ``valid=False`` and every problem found.

    ``database``: the DuckDB database to score in, with its limits (and its spill folder, where
    unpacked archives go too); without it, one is made for this file and closed afterwards."""
    scorer = challenge.scorer
    result = ScoreResult(valid=False, metric=scorer.name, metric_version=scorer.version)
    solution, result.dataset_version = solution_for(challenge, paths, version)
    own = database is None
    database = database or Database()
    scratch = database.resources.temp_directory if database.resources else None
    try:
        with database.connection() as con:
            return _score(con, challenge, path, paths, solution, scratch, result)
    finally:
        if own:
            database.close()


@contextlib.contextmanager
def _work_folder(scratch: Path | None) -> Iterator[Path]:
    """Where one scoring unpacks an archive, emptied when it ends.

    Offline (no ``scratch``): a temporary folder. In a scorer's child (``scratch`` is its own
    spill folder, one scoring at a time): one folder kept from one scoring to the next, so a
    usual file (no archive) costs no folder made and removed per submission, two writes to
    the file system's journal that on a busy disk kept a scorer waiting (17 ms per removal
    was measured beside a large build). The child's spill folder goes when the child does.
    """
    if scratch is None:
        with tempfile.TemporaryDirectory(prefix="contesthub-score-") as work:
            yield Path(work)
        return
    work = scratch / "work"
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        yield work
    finally:
        with os.scandir(work) as entries:
            for entry in entries:  # what this scoring unpacked, never seen by the next one
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)


def _score(
    con: duckdb.DuckDBPyConnection,
    challenge: Challenge,
    path: Path,
    paths: Paths,
    solution: Path,
    scratch: Path | None,
    result: ScoreResult,
) -> ScoreResult:
    return _score_on(con, challenge, path, _truth(con, challenge, solution, paths), scratch, result)


def _score_on(
    con: duckdb.DuckDBPyConnection,
    challenge: Challenge,
    path: Path,
    truth: Truth,
    scratch: Path | None,
    result: ScoreResult,
) -> ScoreResult:
    with _work_folder(scratch) as work:
        try:
            pairs = _pairs(con, challenge, path, work, truth)
        except SubmissionInvalid as exc:
            result.errors = [{**e.to_dict(), "row": e.rows[0] if e.rows else None} for e in exc.problems]
            return result
        scores = _scores(con, challenge, pairs)
    result.rows = truth.rows
    result.public_score, result.private_score = scores["public"], scores["private"]
    result.valid = True
    return result


def public_rows(challenge: Challenge, paths: Paths, version: int | None = None) -> np.ndarray:
    """Which rows of the solution the public board scores (True), in the solution's row order.

    What a results bundle publishes after the reveal instead of the split salt, which stays
    secret because every challenge's split is made from it."""
    solution, _ = solution_for(challenge, paths, version)
    con = duckdb.connect()
    try:
        _truth(con, challenge, solution, paths)
        got = con.execute(f"SELECT public FROM {TRUTH} ORDER BY row").fetchnumpy()["public"]
    finally:
        con.close()
    return np.asarray(got, dtype=bool)


def score_with_split(challenge: Challenge, path: Path, solution: Path, public: np.ndarray) -> ScoreResult:
    """Score ``path`` against a solution file with the public/private split given row by row.

    For ``contesthub verify-results``: on a machine with no private root and no salt, the
    split comes from the results bundle; everything else is the scorer's own code."""
    import pyarrow as pa  # here, not above: the scorers never load it (a third of their memory)

    scorer = challenge.scorer
    result = ScoreResult(valid=False, metric=scorer.name, metric_version=scorer.version)
    con = duckdb.connect()
    try:
        con.execute("ATTACH ':memory:' AS truth").fetchall()
        _fill_truth(con, "truth", challenge, solution, salt="")  # its split is replaced just below
        labels, rows, distinct_ids = con.execute("SELECT labels, rows, distinct_ids FROM truth.meta").fetchall()[0]
        if rows != len(public):
            raise ValueError(f"the split has {len(public)} rows, the solution {rows}")
        given = pa.table({"row": np.arange(rows, dtype=np.int64), "public": np.asarray(public, dtype=bool)})
        con.register("given_split", given)
        con.execute(
            "UPDATE truth.truth SET public = g.public FROM given_split g WHERE g.row = truth.truth.row"
        ).fetchall()
        truth = Truth(rows=rows, labels=tuple(labels), distinct_ids=distinct_ids)
        return _score_on(con, challenge, path, truth, None, result)
    finally:
        con.close()


def aligned(challenge: Challenge, path: Path, paths: Paths, *, version: int | None = None) -> dict[str, np.ndarray]:
    """A valid file's predictions beside the solution's targets, in the solution's row order.

    ``{"public": bool, "y": target (number or label code), "p": prediction}``, one entry per
    test row: what bootstrap intervals and the near-duplicate report compare across teams.
    Raises SubmissionInvalid for a file that would not be scored.
    """
    solution, _ = solution_for(challenge, paths, version)
    con = duckdb.connect()
    try:
        truth = _truth(con, challenge, solution, paths)
        with tempfile.TemporaryDirectory(prefix="contesthub-aligned-") as work:
            got = con.execute(
                f"SELECT public, y, p FROM ({_pairs(con, challenge, path, Path(work), truth)}) ORDER BY row"
            ).fetchnumpy()
    finally:
        con.close()
    return {k: _column(got[k]) for k in ("public", "y", "p")}
