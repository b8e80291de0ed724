"""``contesthub datasets build``: raw source -> checked, de-identified, versioned Parquet.

Per table: stage the raw source (``sources``), validate it (``quality``), de-identify and
pass the k-anonymity gate (``privacy``), and write zstd Parquet sorted by the declared key.
Per dataset: everything is written into a hidden temporary folder inside the dataset's
folder, then renamed to ``v<N>`` (immutable from then on) and the ``latest`` symlink is
replaced atomically. A build that fails or is killed leaves the previous version published
and readable; the temporary folder of a killed build is removed by the next build.

All heavy lifting is DuckDB; Python only orchestrates.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from sandbox import clock, gov_catalog, privacy, quality, sources
from sandbox.catalog import load as _catalog_load
from sandbox.catalog import write_root_catalog
from sandbox.descriptor import ACCESS_RIGHTS, Dataset, TableSpec
from sandbox.digests import sha256_file
from sandbox.errors import ContesthubError, QualityGateError
from sandbox.progress import QUIET, Reporter
from sandbox.quoting import lit, q
from sandbox.settings import Paths

#: Bump when the build's output changes for the same inputs (forces rebuilds).
BUILD_FORMAT = 1
# The privacy gate's distinct-person count and a person table's shuffle hold their data in
# memory up to this limit and spill beyond it; on the 10-million-row benchmark 600 MB kept the
# build's peak near 0.9 GiB (1.3 GiB with 1 GB) at no cost in time.
DEFAULT_MEMORY_LIMIT = os.environ.get("CONTESTHUB_BUILD_MEMORY", "600MB")


@dataclass
class TableResult:
    name: str
    rows: int
    bytes: int
    errors: int
    quarantined: int
    suppressed: int


@dataclass
class BuildResult:
    dataset: str
    status: str  # built | up-to-date | failed
    version: int | None
    seconds: float
    tables: list[TableResult] = field(default_factory=list)
    error: ContesthubError | None = None

    def to_dict(self) -> dict:
        out = {
            "dataset": self.dataset,
            "status": self.status,
            "version": self.version,
            "seconds": round(self.seconds, 3),
            "tables": [t.__dict__ for t in self.tables],
        }
        if self.error:
            out["error"] = self.error.to_dict("en")
        return out


# --- folders and versions ------------------------------------------------------------------


def dataset_dir(data_root: Path, dataset_id: str) -> Path:
    return data_root / dataset_id


def versions(data_root: Path, dataset_id: str) -> list[int]:
    d = dataset_dir(data_root, dataset_id)
    if not d.is_dir():
        return []
    return sorted(int(p.name[1:]) for p in d.iterdir() if p.name[:1] == "v" and p.name[1:].isdigit() and p.is_dir())


def latest_version(data_root: Path, dataset_id: str) -> int | None:
    link = dataset_dir(data_root, dataset_id) / "latest"
    if not link.is_symlink():
        return None
    return int(os.readlink(link)[1:])


def read_version_catalog(data_root: Path, dataset_id: str, version: int) -> dict:
    return json.loads((dataset_dir(data_root, dataset_id) / f"v{version}" / "catalog.json").read_text("utf-8"))


@contextmanager
def _lock(paths: Paths, dataset_id: str) -> Iterator[None]:
    lock_dir = paths.private_root / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{dataset_id}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ContesthubError(
                f"another build of {dataset_id!r} is running; wait for it to finish",
                f"数据集 {dataset_id!r} 正在被另一个构建进程处理；请等待其完成",
                code="build-busy",
            ) from None
        yield


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_json(path: Path, doc: object) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=1, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# --- raw sources ---------------------------------------------------------------------------


def _load_recipe(ds: Dataset):
    path = ds.folder / ds.meta["source"]["generator"]
    spec = importlib.util.spec_from_file_location(f"contesthub_recipe_{ds.id}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def source_fingerprint(ds: Dataset, scale: float) -> str:
    """Everything the published bytes depend on, so an unchanged dataset is not rebuilt."""
    src = ds.meta["source"]
    parts: dict[str, object] = {"format": BUILD_FORMAT, "descriptor": ds.digest}
    if "generator" in src:
        parts["scale"] = scale
        parts["recipe"] = sha256_file(ds.folder / src["generator"])
        parts["seed"] = src.get("seed", 0)
    else:
        if "package" in src:
            parts["package"] = f"{src['package']}=={importlib.metadata.version(src['package'])}"
        for t in ds.tables:
            p = _static_source_base(ds) / t.source.path
            parts[t.name] = sha256_file(p) if p.is_file() else "missing"
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _static_source_base(ds: Dataset) -> Path:
    src = ds.meta["source"]
    if "package" in src:
        return Path(str(importlib.resources.files(src["package"].replace("-", "_"))))
    return ds.folder


def resolve_sources(ds: Dataset, paths: Paths, scale: float, reporter: Reporter = QUIET) -> dict[str, Path]:
    """Raw source file of each table; runs the seeded generator (once) where there is one."""
    src = ds.meta["source"]
    if "generator" not in src:
        base = _static_source_base(ds)
        return {t.name: base / t.source.path for t in ds.tables}
    recipe_hash = sha256_file(ds.folder / src["generator"])[:12]
    seed = src.get("seed", 0)
    out = paths.private_root / "raw" / ds.id / f"seed{seed}-scale{scale:g}-{recipe_hash}"
    if not (out / ".complete").exists():
        tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with reporter.step(f"{ds.id}: generating raw source (seed {seed}, scale {scale:g})"):
            _load_recipe(ds).generate(tmp, seed=seed, scale=scale)
        (tmp / ".complete").write_text(clock.now().isoformat())
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    return {t.name: out / t.source.path for t in ds.tables}


# --- one table -----------------------------------------------------------------------------


def connect_for_build(scratch: Path, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(
        config={
            "memory_limit": memory_limit,
            "temp_directory": str(scratch / "duckdb-spill"),
            "preserve_insertion_order": True,  # output keeps source order, so sorted sources need no sort
            "threads": os.cpu_count() or 2,
        }
    )
    # DuckDB plans a long IN list (an enum constraint) as a join, and joins do not keep row
    # order: the staged rows would be shuffled and row numbers in reports would be wrong.
    con.execute("SET disabled_optimizers = 'in_clause'").fetchall()
    # Our Reporter draws progress from query_progress(); DuckDB must not print its own bar.
    con.execute("SET enable_progress_bar_print = false").fetchall()
    return con


def deidentified_select(
    table: TableSpec,
    staged: sources.Staged,
    bad: str,
    where: str | None = None,
    gate: privacy.GateResult | None = None,
) -> str:
    """SQL for the table's good rows as they are published (de-identified, small groups suppressed).

    ``where`` (a holdout, a related table's cut) and the gate's suppression are evaluated on the
    staged source values (alias ``s``), inside the scan, so DuckDB can skip row groups instead
    of de-identifying every row first. A person-level table is ordered here, on the narrow
    source values, by its kept sort fields and then a keyed hash of the source row number: the
    order of a source (visits by day and hospital) would otherwise give back the dates and
    places the published columns generalise.
    """
    conditions = [f"NOT ({bad})"]
    if where:
        conditions.append(f"({where})")
    if gate and gate.suppress_condition:
        conditions.append(f"NOT {gate.suppress_condition}")
    rows = f"{_staged_rows(staged)} s WHERE {' AND '.join(conditions)}"
    shuffle = ""
    if table.person:
        key = privacy.key_variable("version")
        shuffle = f", hash(s.file_row_number, getvariable({lit(key)})) AS {SHUFFLE}"
    return f"SELECT {privacy.select_list(table)}{shuffle} FROM {rows}"


#: The column that orders the rows of a person-level table among equal sort keys (never published).
SHUFFLE = "__shuffle"


def _staged_rows(staged: sources.Staged) -> str:
    """The staging file as a table, with the ``file_row_number`` the bad-row conditions use."""
    return f"read_parquet({lit(str(staged.file))}, file_row_number=true)"


@dataclass
class PublishedRows:
    """The de-identified rows of one table, ready to be written whole or split by a holdout."""

    con: duckdb.DuckDBPyConnection
    table: TableSpec
    staged: sources.Staged
    bad: str  # SQL over the staged rows: true on rows that failed validation
    needs_sort: bool
    reporter: Reporter

    def write(
        self,
        target: Path,
        label: str,
        gate: privacy.GateResult,
        *,
        where: str | None = None,
        drop: tuple[str, ...] = (),
        partition: bool = True,
    ) -> int:
        """Write the rows matching ``where`` that ``gate`` lets through, without the ``drop`` columns, as Parquet."""
        table = self.table
        select = deidentified_select(table, self.staged, self.bad, where, gate)
        excluded = [*drop, *([SHUFFLE] if table.person else [])]
        columns = "* EXCLUDE (" + ", ".join(q(c) for c in excluded) + ")" if excluded else "*"
        query = f"SELECT {columns} FROM ({select}) d"
        if table.person:
            # Kept sort fields, then a keyed hash: the order of a source (visits by day and hospital)
            # would otherwise give back the dates and places the published columns generalise.
            query += " ORDER BY " + ", ".join([*(q(c) for c in table.published_sort_by), SHUFFLE])
        elif self.needs_sort and table.sort_by:
            query += " ORDER BY " + ", ".join(q(c) for c in table.sort_by)
        target.parent.mkdir(parents=True, exist_ok=True)
        statement = f"COPY ({query}) TO {lit(str(target))} ({_parquet_options(table, partition)})"
        return int(self.reporter.sql(self.con, statement, label).fetchall()[0][0])


def _parquet_options(table: TableSpec, partition: bool = True) -> str:
    # zstd level 1: on the 10-million-row benchmark table it wrote faster *and* smaller files
    # than DuckDB's default level 3 (173 vs 180 MiB); readers decompress both equally fast.
    options = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"
    if table.partition_by and partition:
        options += ", PARTITION_BY (" + ", ".join(q(c) for c in table.partition_by) + ")"
    return options


def solution_file(private_root: Path, dataset_id: str, version: int, table: str) -> Path:
    """Where the answers of a table's held-out rows are kept (organizers and the scorer only)."""
    return private_root / "solutions" / dataset_id / f"v{version}" / f"{table}.parquet"


def quarantine_file(private_root: Path, dataset_id: str, version: int, table: str) -> Path:
    """Where the rows of a table that failed validation are kept (organizers only)."""
    return private_root / "quarantine" / dataset_id / f"v{version}" / f"{table}.parquet"


def _csv_cell(value: str, delimiter: str) -> str:
    """SQL: ``value`` (VARCHAR) as a CSV cell, quoted when it holds the delimiter, a quote or a line break."""
    special = " OR ".join(f"contains({value}, {c})" for c in (lit(delimiter), "'\"'", "chr(10)", "chr(13)"))
    return f"""CASE WHEN {special} THEN '"' || replace({value}, '"', '""') || '"' ELSE {value} END"""


def _quarantine(con, staged: sources.Staged, report: quality.Report, bad: str, out: Path) -> int:
    """Keep every row that failed validation for the organizer, never published; returns how many.

    One row per bad source row, in source order: ``source_row`` (as a spreadsheet numbers it),
    ``errors`` (each ``{code, field}`` it broke), ``raw`` (the line as in the file for rows
    the reader could not split or type, such as an age of "七十"; else the row's cells as read,
    joined with the delimiter), then every staged field as text. Rows the reader rejected are
    here too: published + quarantined (+ suppressed, withheld, test rows) = read.
    """
    table = staged.table
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = [f for f in table.fields if f.name in sources.staged_fields(table)]
    as_text = [f"CAST(s.{q(f.name)} AS VARCHAR)" for f in kept]
    delimiter = table.source.delimiter
    cells = ", ".join(f"coalesce({_csv_cell(v, delimiter)}, '')" for v in as_text)
    raw = f"array_to_string([{cells}], {lit(delimiter)})"
    row_errors = ", ".join(
        f"CASE WHEN {test} THEN {{'code': {lit(code)}, 'field': {lit(fname)}}} END"
        for code, fname, test in report.row_errors
    )
    errors = f"list_filter([{row_errors}], lambda e: e IS NOT NULL)" if row_errors else "[]"
    join = ""
    if report.set_errors:
        join = (
            f"LEFT JOIN (SELECT r AS __r, list({{'code': code, 'field': field}} ORDER BY code) AS __errors "
            f"FROM {report.set_errors} GROUP BY r) ON __r = s.file_row_number"
        )
        errors = f"list_concat({errors}, coalesce(__errors, []))"
    # Staging rows are numbered without the rejected ones: after the k-th rejected source row
    # (r_k), staged index i sits k + 1 rows further down once i >= r_k - first_row - k.
    # Consecutive rejected rows share a threshold; the last one counts them all.
    shift = {r - staged.first_row - k: k + 1 for k, r in enumerate(sorted({r.row for r in staged.rejects}))}
    shifts = pa.table({"__t": pa.array(list(shift), pa.int64()), "__n": pa.array(list(shift.values()), pa.int64())})
    con.register("__shifts", shifts)
    by_row: dict[int, list[sources.Reject]] = {}
    for r in staged.rejects:
        by_row.setdefault(r.row, []).append(r)
    split = [_cells(rs[0].line, staged) for rs in by_row.values()]
    rejects = pa.table(
        {
            "source_row": pa.array(list(by_row), pa.int64()),
            "errors": pa.array(
                [[{"code": r.code, "field": r.field} for r in rs] for rs in by_row.values()],
                pa.list_(pa.struct([("code", pa.string()), ("field", pa.string())])),
            ),
            "raw": pa.array([rs[0].line for rs in by_row.values()], pa.string()),
            **{f.name: pa.array([c.get(f.name) for c in split], pa.string()) for f in kept},
        }
    )
    con.register("__rejects", rejects)
    try:
        staged_bad = (
            f"SELECT s.file_row_number + {staged.first_row} + coalesce(__n, 0) AS source_row, {errors} AS errors, "
            f"{raw} AS raw, " + ", ".join(f"{v} AS {q(f.name)}" for f, v in zip(kept, as_text, strict=True)) + " "
            f"FROM {_staged_rows(staged)} s {join} ASOF LEFT JOIN __shifts ON s.file_row_number >= __t "
            f"WHERE {bad}"
        )
        rows = con.execute(
            f"COPY (SELECT * FROM ({staged_bad}) UNION ALL BY NAME SELECT * FROM __rejects ORDER BY source_row) "
            f"TO {lit(str(out))} (FORMAT parquet, COMPRESSION zstd)"
        ).fetchall()[0][0]
    finally:
        con.unregister("__shifts")
        con.unregister("__rejects")
    return int(rows)


def _cells(line: str | None, staged: sources.Staged) -> dict[str, str | None]:
    """The cells of a rejected source ``line`` by field name, when it splits into the file's columns."""
    table = staged.table
    by_source = {f.source_name: f.name for f in table.fields}
    if line is None or not staged.header:
        return {}
    try:
        cells = next(csv.reader([line], delimiter=table.source.delimiter))
    except (csv.Error, StopIteration):
        return {}
    if len(cells) != len(staged.header):
        return {}
    return {by_source[h]: c for h, c in zip(staged.header, cells, strict=True) if h in by_source}


def _files_of(target: Path, root: Path, hashing: Executor) -> list[dict]:
    """Catalog entries of the Parquet files at ``target``.

    Their ``sha256`` is a future, computed on ``hashing`` (hashlib releases the GIL) while the
    build goes on; :func:`_resolve_checksums` fills the values in before the catalog is written.
    """
    files = [target] if target.is_file() else sorted(p for p in target.rglob("*.parquet"))
    return [
        {"path": str(p.relative_to(root)), "bytes": p.stat().st_size, "sha256": hashing.submit(sha256_file, p)}
        for p in files
    ]


def _resolve_checksums(tables_doc: dict[str, dict]) -> None:
    for entry in tables_doc.values():
        for f in entry["files"]:
            if isinstance(f["sha256"], Future):
                f["sha256"] = f["sha256"].result()


# --- one dataset ---------------------------------------------------------------------------


def build_dataset(
    ds: Dataset,
    paths: Paths,
    *,
    scale: float = 1.0,
    force: bool = False,
    reporter: Reporter = QUIET,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> BuildResult:
    """Build one dataset into a new immutable version; never raises for a data problem.

    Where it goes follows its open tier: unconditional data into the public data root,
    conditional data into a root of its own (:func:`root_for`), not-open data nowhere (status
    ``not-open``; the build reads nothing). A tier that changed withdraws the copies the old
    tier left under the other roots.
    """
    started = time.perf_counter()
    paths.ensure()
    try:
        with _lock(paths, ds.id):
            _withdraw_elsewhere(ds, paths)
            if ds.tier == "not-open":
                write_root_catalog(paths.data_root, paths.conditional_root, {ds.id: _sharing_entry(ds)})
                return BuildResult(ds.id, "not-open", None, time.perf_counter() - started)
            if ds.id in _catalog_load(paths.data_root).get("not_open", {}):  # open now: off the list
                write_root_catalog(paths.data_root, paths.conditional_root, {ds.id: None})
            return _build_locked(ds, paths, scale, force, reporter, memory_limit, started)
    except ContesthubError as exc:
        return BuildResult(ds.id, "failed", None, time.perf_counter() - started, error=exc)


def _sharing_entry(ds: Dataset) -> dict:
    """What the sharing list says of a not-open dataset (不予开放): what it is and why, nothing else."""
    return {
        "title": ds.meta["title"],
        "publisher": ds.meta["publisher"],
        "theme": ds.meta["theme"],
        "reason": (ds.meta.get("access") or {}).get("reason"),
    }


def root_for(ds: Dataset, paths: Paths) -> Path | None:
    """The data root a dataset is published under: the public one, its own, or none."""
    if ds.tier == "unconditional":
        return paths.data_root
    if ds.tier == "conditional":
        return paths.conditional_dataset_root(ds.id)
    return None


def _withdraw_elsewhere(ds: Dataset, paths: Paths) -> list[Path]:
    """Remove what an earlier build under another tier published where this tier must not be."""
    keep = root_for(ds, paths)
    gone = []
    for root, folder in (
        (paths.data_root, paths.data_root / ds.id),
        (paths.conditional_dataset_root(ds.id), paths.conditional_dataset_root(ds.id)),
    ):
        if root != keep and (folder.exists() or folder.is_symlink()):
            _remove_tree(folder)
            gone.append(folder)
    if gone and paths.data_root.is_dir():
        write_root_catalog(paths.data_root, paths.conditional_root)
    return gone


def _build_locked(ds, paths: Paths, scale, force, reporter: Reporter, memory_limit, started) -> BuildResult:
    root = root_for(ds, paths)
    if ds.tier == "conditional" and not root.is_dir():
        paths.ensure_conditional()
        root.mkdir(mode=0o700)
        os.chmod(root, 0o700)  # only approved teams get in (hub/conditional_acl.py adds them)
    home = dataset_dir(root, ds.id)
    home.mkdir(parents=True, exist_ok=True)
    for stale in home.glob(".tmp-*"):  # left by a killed build; we hold the lock, so nobody owns it
        _remove_tree(stale)

    fingerprint = source_fingerprint(ds, scale)
    current = latest_version(root, ds.id)
    if current and not force and read_version_catalog(root, ds.id, current).get("fingerprint") == fingerprint:
        return BuildResult(ds.id, "up-to-date", current, time.perf_counter() - started)

    raw = resolve_sources(ds, paths, scale, reporter)
    version = (max(versions(root, ds.id), default=0)) + 1
    tmp = home / f".tmp-v{version}-{os.getpid()}"
    scratch = paths.private_root / "build" / f"{ds.id}-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, mode=0o700)
    tmp.mkdir()
    results: list[TableResult] = []
    tables_doc: dict[str, dict] = {}
    written_private: list[Path] = []  # solutions and quarantined rows of this version, removed if it fails
    hashing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="contesthub-sha256")
    try:
        con = connect_for_build(scratch, memory_limit)
        privacy.set_pseudonym_keys(con, privacy.load_salt(paths.private_root), ds.id, version)
        staged_by_name: dict[str, sources.Staged] = {}
        for table in ds.build_order():
            label = f"{ds.id}.{table.name}"
            checks = quality.row_checks(table, {f.name for f in sources.converted_fields(table)})
            with reporter.step(f"{label}: reading and checking {raw[table.name].name}"):
                staged = sources.stage(con, table, raw[table.name], scratch, quality.flag_columns(checks))
            staged_by_name[table.name] = staged
            with reporter.step(f"{label}: validating {staged.rows_read:,} rows"):
                report, bad = quality.validate(con, staged, checks, staged_by_name)
            if report.findings and table.on_error == "fail":
                _save_failed_report(paths, ds, report)
                raise _quality_gate_error(ds, table, report)
            split = _Split.of(ds, table)
            good = f"SELECT * FROM {_staged_rows(staged)} WHERE NOT ({bad})"
            with reporter.step(f"{label}: privacy gate (k={table.k})"):
                gate = privacy.gate(con, table, good + (f" AND ({split.train})" if split.train else ""), table.name)
                test_gate = (
                    privacy.gate(con, table, f"{good} AND ({split.test})", table.test_table) if split.test else None
                )
            target = tmp / (table.name if table.partition_by else f"{table.name}.parquet")
            # Filters through a join (set-level bad rows, suppressed groups) do not keep row order; a
            # sort key the privacy rules change (a hashed id) is in source order, not published order.
            needs_sort = (
                not report.sorted
                or report.bad_by_join
                or any(g and g.suppress_condition for g in (gate, test_gate))
                or any(table.field(c).rule != "keep" for c in table.sort_by)
            )
            published = PublishedRows(con, table, staged, bad, needs_sort, reporter)
            rows = published.write(target, f"{label}: writing Parquet", gate, where=split.train)
            files = _files_of(target, tmp, hashing)
            nbytes = sum(f["bytes"] for f in files)
            quarantined = 0
            if report.bad_rows:
                # After the write, so that it runs while the written files are being checksummed.
                qfile = quarantine_file(paths.private_root, ds.id, version, table.name)
                written_private.append(qfile.parent)
                quarantined = _quarantine(con, staged, report, bad, qfile)
            withheld = 0
            if split.withheld:
                withheld = con.execute(f"SELECT count(*) FROM ({good}) WHERE {split.withheld}").fetchall()[0][0]
            test_doc = None
            if test_gate:
                test_doc = _write_holdout(
                    published,
                    test_gate,
                    split.test,
                    ds.id,
                    label,
                    tmp,
                    paths.private_root,
                    version,
                    written_private,
                    hashing,
                )
            accounting = {
                "read": staged.rows_read,
                "published": rows,
                "test": test_doc["rows"] if test_doc else 0,
                "quarantined": quarantined,
                "suppressed": gate.suppressed_rows + (test_gate.suppressed_rows if test_gate else 0),
                "withheld": withheld,
            }
            _check_accounting(label, accounting)
            results.append(
                TableResult(
                    table.name, rows, nbytes, sum(report.counts().values()), quarantined, accounting["suppressed"]
                )
            )
            tables_doc[table.name] = {
                "title": table.title,
                "description": table.description,
                "rows": rows,
                "bytes": nbytes,
                "files": files,
                "partition_by": list(table.partition_by),
                "sort_by": list(table.published_sort_by),
                "source": {
                    "file": raw[table.name].name,
                    "format": table.source.format,
                    # What dataset.yaml says, and the codec that read it (GB18030 reads every GBK file).
                    "encoding": table.source.encoding,
                    "decoded_as": staged.encoding,
                },
                "schema": {
                    "fields": [privacy.published_field(f) for f in table.fields if f.published],
                    **({"primaryKey": list(table.primary_key)} if table.primary_key else {}),
                    **({"foreignKeys": _published_keys(table)} if _published_keys(table) else {}),
                },
                "privacy": _privacy_doc(table, gate),
                "quality": {
                    **report.to_dict(),
                    "on_error": table.on_error,
                    "quarantined_rows": quarantined,
                    **({"quarantine_file": str(qfile.relative_to(paths.private_root))} if quarantined else {}),
                    "rows": accounting,
                    **({"reidentification_risk": gate.risk} if gate.risk else {}),
                },
                **({"holdout": {**table.holdout, "test_table": table.test_table}} if table.holdout else {}),
                **(
                    {"withheld": {"rows": withheld, "by": [h for h, _ in ds.withheld(table.name)]}}
                    if split.withheld
                    else {}
                ),
            }
            if test_doc:  # listed right after the table it was cut from
                tables_doc[table.test_table] = test_doc
        con.close()
        _resolve_checksums(tables_doc)
        doc = {
            "id": ds.id,
            "version": version,
            "built_at": clock.now().isoformat(timespec="seconds"),
            "descriptor_version": ds.meta["version"],
            "descriptor_sha256": ds.digest,
            "fingerprint": fingerprint,
            "scale": scale,
            "access_rights": ACCESS_RIGHTS[ds.meta["open_tier"]],
            **_catalog_meta(ds),
            "tables": tables_doc,
        }
        _atomic_write_json(tmp / "catalog.json", doc)
        _publish(home, tmp, version)
    except BaseException:
        hashing.shutdown(cancel_futures=True)
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in written_private:  # answers and bad rows of a version that was never published
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        hashing.shutdown(cancel_futures=True)
        shutil.rmtree(scratch, ignore_errors=True)
    if root != paths.data_root:
        write_root_catalog(root)  # the dataset's own root, which approved sandboxes read
    # The public catalog lists conditional data too, without its files.
    write_root_catalog(paths.data_root, paths.conditional_root)
    gov_catalog.publish_plan(paths.datasets_dir, paths.data_root)
    return BuildResult(ds.id, "built", version, time.perf_counter() - started, results)


@dataclass(frozen=True)
class _Split:
    """Which good rows of a table go where, as SQL over its staged source values.

    ``train``: the published table (None: every row); ``test``: its contest test table (None:
    no holdout); ``withheld``: rows a holdout of another table cuts out of this one, which are
    published nowhere (None: none).
    """

    train: str | None
    test: str | None
    withheld: str | None

    @classmethod
    def of(cls, ds: Dataset, table: TableSpec) -> _Split:
        cuts = [f"({where})" for _, where in ds.withheld(table.name)]
        withheld = " OR ".join(cuts) or None
        keep = [f"NOT ({withheld})"] if withheld else []
        if not table.holdout:
            return cls(" AND ".join(keep) or None, None, withheld)
        held = f"({table.holdout['where']})"
        return cls(" AND ".join([f"NOT {held}", *keep]), " AND ".join([held, *keep]), withheld)


def _quality_gate_error(ds: Dataset, table: TableSpec, report: quality.Report) -> QualityGateError:
    worst = ", ".join(f"{c} ×{n}" for c, n in report.counts().items())
    first = report.findings[0]
    ex = first.examples[0] if first.examples else {}
    value = f" (value {ex['value']!r})" if "value" in ex else ""
    value_zh = f"（值 {ex['value']!r}）" if "value" in ex else ""
    return QualityGateError(
        f"table {table.name!r}: {report.bad_rows} bad row(s) ({worst}); first: row {ex.get('row', '?')}, "
        f"{first.message_en}{value}. Fix the source, or set tables.{table.name}.on_error: quarantine "
        f"in {ds.path.name} to publish the good rows.",
        f"表 {table.name!r}：{report.bad_rows} 行有问题（{worst}）；"
        f"第一处：第 {ex.get('row', '?')} 行，{first.message_zh}{value_zh}。请修正源数据，"
        f"或在 {ds.path.name} 中设置 tables.{table.name}.on_error: quarantine 以只发布合格的行。",
        details=report.to_dict(),
    )


def _check_accounting(label: str, rows: dict[str, int]) -> None:
    """Every row read is published, in the test table, quarantined, suppressed or withheld; none is lost."""
    placed = sum(v for k, v in rows.items() if k != "read")
    if placed != rows["read"]:
        raise ContesthubError(
            f"{label}: {rows['read']} rows read but {placed} accounted for ({rows}); nothing was published. "
            "This is a bug in contesthub: please report it with the descriptor",
            f"{label}：读取 {rows['read']} 行，但只有 {placed} 行有去向（{rows}）；未发布任何内容。"
            "这是 contesthub 的缺陷，请附上描述文件报告",
            code="rows-unaccounted",
        )


def _privacy_doc(table: TableSpec, gate: privacy.GateResult) -> dict:
    """The catalog's privacy summary of one published table: the gate, the risk report, the rules."""
    return {
        **gate.to_dict(),
        "dropped": [f.name for f in table.fields if f.rule == "drop"],
        "hashed": [f.name for f in table.fields if f.rule == "hash"],
        "generalised": {f.name: f.rule for f in table.fields if f.rule not in ("keep", "drop", "hash")},
    }


def _published_keys(table: TableSpec) -> list[dict]:
    """Foreign keys whose fields are all published (a dropped facility id takes its key with it)."""
    return [fk for fk in table.foreign_keys if all(table.field(n).published for n in fk["fields"])]


def _write_holdout(
    published: PublishedRows,
    gate: privacy.GateResult,
    where: str,
    dataset_id: str,
    label: str,
    tmp: Path,
    private_root: Path,
    version: int,
    written_private: list[Path],
    hashing: Executor,
) -> dict:
    """Publish the held-out rows without their hidden columns; keep the answers private.

    ``gate`` was counted on exactly these rows (the test table is gated as it is published)
    and suppresses its own small groups from both the test table and the answers. Returns the
    catalog entry of the test table.
    """
    table = published.table
    holdout, name = table.holdout, table.test_table
    solution = solution_file(private_root, dataset_id, version, table.name)
    written_private.append(solution.parent)
    published.write(solution, f"{label}: writing the solution", gate, where=where, partition=False)
    # The test set is the solution without its hidden columns: copy it from that (already
    # de-identified, much smaller) file instead of scanning the whole table again.
    target = tmp / (name if table.partition_by else f"{name}.parquet")
    hidden_cols = ", ".join(q(c) for c in holdout["hidden"])
    rows = published.con.execute(
        f"COPY (SELECT * EXCLUDE ({hidden_cols}) FROM read_parquet({lit(str(solution))})) "
        f"TO {lit(str(target))} ({_parquet_options(table)})"
    ).fetchall()[0][0]
    files = _files_of(target, tmp, hashing)
    hidden = ", ".join(holdout["hidden"])
    return {
        "title": {"zh": f"{table.title['zh']}（测试集）", "en": f"{table.title['en']} (test set)"},
        "description": {
            "zh": f"{table.name} 中留作比赛测试集的行，不含 {hidden}。",
            "en": f"Rows of {table.name} kept back as a contest's test set, without {hidden}.",
        },
        "rows": rows,
        "bytes": sum(f["bytes"] for f in files),
        "files": files,
        "test_of": table.name,
        "partition_by": list(table.partition_by),
        "sort_by": list(table.published_sort_by),
        "schema": {
            "fields": [
                privacy.published_field(f) for f in table.fields if f.published and f.name not in holdout["hidden"]
            ]
        },
        "privacy": _privacy_doc(table, gate),
    }


def _catalog_meta(ds: Dataset) -> dict:
    keep = (
        "title",
        "description",
        "theme",
        "keywords",
        "publisher",
        "contact",
        "licence",
        "source",
        "open_tier",
        "update_frequency",
        "temporal",
        "spatial",
    )
    meta = {k: ds.meta[k] for k in keep}
    if "access" in ds.meta:  # the agreement applicants accept, its reviewers, or why it is not open
        meta["access"] = ds.meta["access"]
    if "catalog" in ds.meta:  # China's catalog fields (sandbox/gov_catalog.py)
        meta["catalog"] = ds.meta["catalog"]
    meta["source"] = {k: v for k, v in meta["source"].items() if k in ("description", "citation", "package")}
    return meta


def _publish(home: Path, tmp: Path, version: int) -> None:
    """Make ``tmp`` version ``version`` and point ``latest`` at it, each step atomic.

    A published version is immutable, and its modes say so (files 0444, folders 0555): a
    sandbox running as another account, or as the builder's own in demo mode, cannot change
    or add a file in it by mistake.
    """
    for p in sorted(tmp.rglob("*"), reverse=True):  # contents before their folder
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            os.chmod(p, 0o444)
        elif p.is_dir():
            os.chmod(p, 0o555)
    _fsync_dir(tmp)
    os.chmod(tmp, 0o555)
    final = home / f"v{version}"
    os.rename(tmp, final)
    link = home / f".latest-{os.getpid()}"
    if link.is_symlink():
        link.unlink()
    os.symlink(final.name, link)
    os.replace(link, home / "latest")
    _fsync_dir(home)


def _remove_tree(path: Path) -> None:
    """Delete a folder even when it was already made read-only by :func:`_publish`."""
    for p in [path, *path.rglob("*")] if path.is_dir() else []:
        if p.is_dir() and not p.is_symlink():
            os.chmod(p, 0o755)  # deleting an entry takes write permission on its folder
    shutil.rmtree(path, ignore_errors=True)


def _save_failed_report(paths: Paths, ds: Dataset, report: quality.Report) -> None:
    out = paths.private_root / "reports" / ds.id
    out.mkdir(parents=True, exist_ok=True)
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    _atomic_write_json(out / f"{stamp}-{report.table}-failed.json", report.to_dict())


def build_all(
    datasets: list[Dataset],
    paths: Paths,
    *,
    scale: float = 1.0,
    force: bool = False,
    reporter: Reporter = QUIET,
) -> list[BuildResult]:
    return [build_dataset(ds, paths, scale=scale, force=force, reporter=reporter) for ds in datasets]
