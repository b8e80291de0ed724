"""The contestant API: every open dataset one line away, in a notebook, a script or a terminal.

    import sandbox
    sandbox.datasets()                          # what is open
    sandbox.search("门诊")                       # find by zh or en words
    sandbox.describe("hospital_outpatient")      # schema, units, indicator definitions
    sandbox.sql("SELECT ... FROM hospital_outpatient.daily_visits").df()
    sandbox.dask("hospital_outpatient.visit_records", columns=[...], filters=[...])

Every published table is a read-only DuckDB view ``<dataset>.<table>`` over the latest
version; ``sql(..., version={"dataset": N})`` pins a whole query to version N. The
connection is confined: it reads the open data and the user's own files and nothing else
(no network, no other users' homes, no hidden solutions), its settings are locked, and its
threads and memory follow the sandbox's limits, spilling large queries to a folder in the
user's space.

Limits come from the environment the spawner sets (JupyterHub's ``CPU_LIMIT`` and
``MEM_LIMIT``), or from ``CONTESTHUB_THREADS`` / ``CONTESTHUB_MEMORY_LIMIT``; the data root
from ``CONTESTHUB_DATA_ROOT`` (see ``sandbox.settings``).
"""

from __future__ import annotations

import functools
import html
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from sandbox import catalog as _catalog
from sandbox import conditional_access
from sandbox.errors import ContesthubError, NotFound
from sandbox.quoting import lit, q
from sandbox.settings import Paths
from sandbox.sizes import parse_size


class SandboxError(ContesthubError):
    """A query the sandbox refused or could not finish, with what to do instead."""


# --- limits --------------------------------------------------------------------------------


def _physical_memory() -> int:
    """The machine's memory, or the container's limit (cgroup v2 or v1) where that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Limits:
    threads: int
    memory_bytes: int
    spill_dir: Path

    @classmethod
    def from_env(cls) -> Limits:
        cpu = os.environ.get("CONTESTHUB_THREADS") or os.environ.get("CPU_LIMIT")
        threads = max(1, int(float(cpu))) if cpu else _usable_cpus()
        mem = os.environ.get("CONTESTHUB_MEMORY_LIMIT")
        if mem:
            memory = parse_size(mem)
        elif os.environ.get("MEM_LIMIT"):
            # The kernel also holds pandas frames and the notebook: give DuckDB half.
            memory = int(parse_size(os.environ["MEM_LIMIT"]) * 0.5)
        else:
            memory = int(_physical_memory() * 0.5)
        spill = Path(os.environ.get("CONTESTHUB_SPILL_DIR", Path.home() / ".cache" / "contesthub" / "duckdb"))
        return cls(threads=threads, memory_bytes=memory, spill_dir=spill)

    @property
    def memory_text(self) -> str:
        return (
            f"{self.memory_bytes / 2**20:.0f} MiB"
            if self.memory_bytes < 2**30
            else f"{self.memory_bytes / 2**30:.1f} GiB"
        )


# --- the confined connection ---------------------------------------------------------------


def _table_source(data_root: Path, ds_id: str, version: int, tname: str, table: dict) -> str:
    base = data_root / ds_id / f"v{version}"
    if table.get("partition_by"):
        return f"read_parquet({lit(str(base / tname / '**' / '*.parquet'))}, hive_partitioning=true)"
    return f"read_parquet({lit(str(base / f'{tname}.parquet'))})"


def _allowed_directories(data_root: Path, limits: Limits, granted: Iterable[Path] = ()) -> list[str]:
    """The data root, the conditional roots granted, the user's own files and the spill folder,
    never the private root."""
    private = Paths.from_env().private_root
    allowed = [data_root, *granted, Path.home(), limits.spill_dir]
    # DuckDB has only an allow-list: a folder that contains the private root is left out.
    return [str(p.resolve()) + "/" for p in allowed if not private.resolve().is_relative_to(p.resolve())]


class Session:
    """One confined DuckDB instance with a view for every published table.

    Version pins do not open another instance (which would get a memory budget of its own):
    each set of pins gets an in-memory catalog of views inside this instance, used through a
    cursor of its own, so every query of the kernel shares one memory limit.
    """

    def __init__(self, data_root: Path | None = None, limits: Limits | None = None):
        self.data_root = (data_root or Paths.from_env().data_root).resolve()
        self.limits = limits or Limits.from_env()
        self.catalog = _catalog.load(self.data_root)
        # Where each dataset's files are: the data root, or a conditional dataset's own root
        # for those the platform says the team may read now (conditional_access.granted).
        self.roots = {ds_id: self.data_root for ds_id in self.catalog["datasets"]}
        self.conditional: dict[str, Path] = {}
        for ds_id, root, d in conditional_access.readable():
            self.catalog["datasets"][ds_id] = d
            self.roots[ds_id] = self.conditional[ds_id] = root
        self.limits.spill_dir.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(
            config={
                "threads": self.limits.threads,
                "memory_limit": f"{self.limits.memory_bytes // 2**20}MiB",
                "temp_directory": str(self.limits.spill_dir),
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            }
        )
        self._create_views(self.con, "memory", {})
        allowed = _allowed_directories(self.data_root, self.limits, self.conditional.values())
        self.con.execute(f"SET allowed_directories = {allowed!r}").fetchall()
        self.con.execute("SET enable_external_access = false").fetchall()
        self.con.execute("SET lock_configuration = true").fetchall()
        self._pinned: dict[tuple[tuple[str, int], ...], duckdb.DuckDBPyConnection] = {}

    def _create_views(self, con: duckdb.DuckDBPyConnection, db: str, pins: dict[str, int]) -> None:
        for ds_id in pins:
            if ds_id not in self.catalog["datasets"]:
                raise NotFound(
                    f"no published dataset {ds_id!r}; sandbox.datasets() lists them",
                    f"没有已发布的数据集 {ds_id!r}；sandbox.datasets() 可列出全部数据集",
                )
        for ds_id, d in self.catalog["datasets"].items():
            pinned = pins.get(ds_id, d["latest"])
            if pinned not in [v["version"] for v in d["versions"]]:
                have = ", ".join(str(v["version"]) for v in d["versions"])
                raise NotFound(
                    f"dataset {ds_id!r} has no version {pinned} (versions: {have})",
                    f"数据集 {ds_id!r} 没有版本 {pinned}（现有版本：{have}）",
                )
            # Only the version in use gets views: binding a view reads its files' footers, so
            # eager views for every old version made start-up grow with each rebuild. Older
            # versions are one version={...} pin away (a catalog built on first use).
            root = self.roots[ds_id]
            entry = d["entry"] if pinned == d["latest"] else _catalog.entry(root, ds_id, pinned)
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {q(db)}.{q(ds_id)}").fetchall()
            for tname, t in entry["tables"].items():
                src = _table_source(root, ds_id, pinned, tname, t)
                con.execute(f"CREATE VIEW {q(db)}.{q(ds_id)}.{q(tname)} AS SELECT * FROM {src}").fetchall()

    def connection(self, pins: dict[str, int] | None = None) -> duckdb.DuckDBPyConnection:
        """The connection to run a query on: the main one, or a cursor over pinned views."""
        key = tuple(sorted((pins or {}).items()))
        if not key:
            return self.con
        if key not in self._pinned:
            db = f"pinned_{len(self._pinned) + 1}"
            self.con.execute(f"ATTACH ':memory:' AS {q(db)}").fetchall()
            try:
                self._create_views(self.con, db, dict(key))
            except ContesthubError:
                self.con.execute(f"DETACH {q(db)}").fetchall()
                raise
            cur = self.con.cursor()
            cur.execute(f"USE {q(db)}").fetchall()
            self._pinned[key] = cur
        return self._pinned[key]

    def tables(self) -> list[str]:
        return [f"{ds}.{t}" for ds, d in self.catalog["datasets"].items() for t in d["entry"]["tables"]]


@functools.lru_cache(maxsize=4)
def _session(data_root: str) -> Session:
    return Session(Path(data_root))


def session() -> Session:
    """The process's session (created once, then reused; ``refresh()`` starts a new one)."""
    return _session(str(Paths.from_env().data_root))


def refresh() -> None:
    """Forget the open session, so the next query sees versions published since."""
    _session.cache_clear()


# --- errors a contestant can act on -------------------------------------------------------


def _translate(exc: duckdb.Error, s: Session) -> Exception:
    msg = str(exc).splitlines()[0]
    if isinstance(exc, duckdb.OutOfMemoryException):
        return SandboxError(
            f"The query needs more memory than this sandbox allows ({s.limits.memory_text}). Select fewer columns, "
            "filter or aggregate in SQL before fetching rows, or use sandbox.dask(...) for work that does not fit.",
            f"查询所需内存超过了沙箱的上限（{s.limits.memory_text}）。请只选择需要的列、先在 SQL 中过滤或聚合再取数据，"
            "或使用 sandbox.dask(...) 处理放不进内存的数据。",
            code="memory-limit",
        )
    if isinstance(exc, duckdb.PermissionException) or "disabled by configuration" in msg:
        return SandboxError(
            f"This sandbox reads only the open data ({s.data_root}) and your own files; the query tried to reach "
            f"something else ({msg}).",
            f"沙箱只能读取开放数据（{s.data_root}）和你自己的文件；该查询试图访问其他内容（{msg}）。",
            code="access-denied",
        )
    if isinstance(exc, duckdb.CatalogException) and "does not exist" in msg:
        shown = ", ".join(s.tables()[:12]) + (" …" if len(s.tables()) > 12 else "")
        return NotFound(
            f"{msg}. Tables are named <dataset>.<table>, for example {shown}; sandbox.datasets() lists every dataset.",
            f"{msg}。表名格式为 <数据集>.<表>，例如 {shown}；sandbox.datasets() 可列出全部数据集。",
        )
    return exc


def _guard(s: Session, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except duckdb.Error as exc:
        translated = _translate(exc, s)
        if translated is exc:
            raise
        raise translated from None


class Relation:
    """A DuckDB relation whose failures read as advice (``.df()``, ``.arrow()``, ``.pl()``, ...)."""

    def __init__(self, rel: duckdb.DuckDBPyRelation, s: Session):
        self._rel, self._session = rel, s

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._rel, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            out = _guard(self._session, attr, *args, **kwargs)
            return Relation(out, self._session) if isinstance(out, duckdb.DuckDBPyRelation) else out

        return call

    @property
    def columns(self) -> list[str]:
        return list(self._rel.columns)

    def df(self) -> Any:
        """A pandas DataFrame; integer sums stay integers.

        DuckDB sums integers into 128-bit integers, which pandas can only hold as floats, so
        they are narrowed to 64 bits when every value fits (otherwise left to DuckDB).
        """
        wide = [c for c, t in zip(self._rel.columns, self._rel.types, strict=True) if str(t) == "HUGEINT"]
        if wide:
            narrowed = self._rel.project(
                ", ".join(f"CAST({q(c)} AS BIGINT) AS {q(c)}" if c in wide else q(c) for c in self._rel.columns)
            )
            try:
                return _guard(self._session, narrowed.df)
            except duckdb.ConversionException:
                pass
        return _guard(self._session, self._rel.df)

    def __repr__(self) -> str:
        return _guard(self._session, repr, self._rel)

    def _repr_html_(self) -> str:
        df = Relation(self._rel.limit(20), self._session).df()
        return f"<p>前 20 行 / first rows: {', '.join(map(html.escape, self.columns))}</p>" + df.to_html(
            index=False, escape=True
        )


# --- the public functions ------------------------------------------------------------------


# --- what this kernel read (sent with a submission as its provenance) -----------------------

MAX_READS = 200  # distinct (dataset, version, table) kept per session: bounded whatever a kernel does
_READS: dict[tuple[str, int, str], None] = {}


def _record_read(ds_id: str, version: int, tname: str) -> None:
    if len(_READS) < MAX_READS:
        _READS[(ds_id, int(version), tname)] = None


def _record_query(s: Session, query: str, pins: dict[str, int] | None) -> None:
    """The published tables a query names (``<dataset>.<table>``, quoted or not), at the version it reads."""
    for ds_id, d in s.catalog["datasets"].items():
        if ds_id.lower() not in query.lower():
            continue
        version = (pins or {}).get(ds_id, d["latest"])
        for tname in d["entry"]["tables"]:
            if re.search(rf'(?<![\w"]){_ident(ds_id)}\s*\.\s*{_ident(tname)}(?![\w"])', query, re.IGNORECASE):
                _record_read(ds_id, version, tname)


def _ident(name: str) -> str:
    return rf'(?:{re.escape(name)}|"{re.escape(name)}")'


def reads() -> list[dict]:
    """The datasets, versions and tables this process read through this API, in first-read order
    (at most :data:`MAX_READS`)."""
    return [{"dataset": d, "version": v, "table": t} for d, v, t in _READS]


def sql(query: str, version: dict[str, int] | None = None) -> Relation:
    """Run SQL over the open data; ``version={"dataset": N}`` pins datasets to a version."""
    s = session()
    conditional_access.report(s, query, "sql")
    con = s.connection(version)
    rel = Relation(_guard(s, con.sql, query), s)
    _record_query(s, query, version)
    return rel


def table(name: str, version: dict[str, int] | None = None) -> Relation:
    """One table, ``"<dataset>.<table>"``, as a relation."""
    ds_id, tname = _split(name)
    return sql(f"SELECT * FROM {q(ds_id)}.{q(tname)}", version)


def _split(name: str) -> tuple[str, str]:
    ds_id, _, tname = name.partition(".")
    if not tname:
        raise NotFound(
            f"name tables as <dataset>.<table>, for example hospital_outpatient.daily_visits (got {name!r})",
            f"表名格式为 <数据集>.<表>，例如 hospital_outpatient.daily_visits（收到 {name!r}）",
        )
    return ds_id, tname


def datasets() -> Any:
    """A DataFrame of the open datasets: id, titles, theme, tier, tables, rows, version, licence."""
    import pandas as pd

    return pd.DataFrame(_catalog.summary_rows(_catalog.load(Paths.from_env().data_root)))


def search(query: str, theme: str | None = None, tier: str | None = None) -> Any:
    """Datasets matching every word of ``query`` (Chinese or English), best first."""
    import pandas as pd

    return pd.DataFrame(_catalog.search(Paths.from_env().data_root, query, theme=theme, tier=tier))


@dataclass
class Description:
    """A dataset's schema with units and definitions; a table in notebooks, text in terminals."""

    entry: dict

    def fields(self) -> Any:
        import pandas as pd

        rows = []
        for tname, t in self.entry["tables"].items():
            for f in t["schema"]["fields"]:
                rows.append(
                    {
                        "table": tname,
                        "field": f["name"],
                        "type": f["type"],
                        "title_zh": f["title"]["zh"],
                        "title_en": f["title"]["en"],
                        "unit": f.get("unit", ""),
                        "definition_zh": (f.get("definition") or {}).get("zh", ""),
                        "definition_en": (f.get("definition") or {}).get("en", ""),
                        "constraints": ", ".join(f"{k}={v}" for k, v in f.get("constraints", {}).items()),
                        "privacy": ""
                        if f["privacy"]["class"] == "none"
                        else f"{f['privacy']['class']}: {f['privacy']['rule']}",
                    }
                )
        return pd.DataFrame(rows)

    def _header(self) -> list[str]:
        e = self.entry
        return [
            f"{e['title']['zh']} / {e['title']['en']}  ({e['id']} v{e['version']})",
            f"{_catalog.THEMES[e['theme']]['zh']} / {_catalog.THEMES[e['theme']]['en']} · "
            f"{_catalog.TIERS[e['open_tier']]['zh']} · licence {e['licence']['title']} · "
            f"{e['source'].get('citation', '')}",
        ] + [f"{name}: {t['rows']:,} rows — {t['title']['zh']} / {t['title']['en']}" for name, t in e["tables"].items()]

    def __str__(self) -> str:
        from rich.console import Console
        from rich.table import Table

        # force_jupyter=False: inside a notebook rich would display each table as it prints.
        console = Console(width=160, record=True, force_jupyter=False, file=open(os.devnull, "w"))  # noqa: SIM115
        for line in self._header():
            console.print(line, markup=False)
        for tname, group in self.fields().groupby("table", sort=False):
            table = Table(title=f"{self.entry['id']}.{tname}")
            for col in ("field", "type", "title_zh", "title_en", "unit", "definition_en", "constraints", "privacy"):
                table.add_column(col)
            for row in group.itertuples():
                table.add_row(
                    row.field,
                    row.type,
                    row.title_zh,
                    row.title_en,
                    row.unit,
                    row.definition_en,
                    row.constraints,
                    row.privacy,
                )
            console.print(table)
        text = console.export_text()
        console.file.close()
        return text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<p>{html.escape(line)}</p>" for line in self._header())
        return head + self.fields().to_html(index=False, escape=True)


def describe(dataset_id: str, version: int | None = None) -> Description:
    """The schema of a dataset, with units, indicator definitions and privacy rules."""
    return Description(_catalog.entry(Paths.from_env().data_root, dataset_id, version))


def locate(name: str, version: dict[str, int] | None = None) -> tuple[Path, dict]:
    """Where ``<dataset>.<table>`` lives (its version folder) and its catalog entry."""
    ds_id, tname = _split(name)
    root = session().roots.get(ds_id, Paths.from_env().data_root)
    entry = _catalog.entry(root, ds_id, (version or {}).get(ds_id))
    if tname not in entry["tables"]:
        raise NotFound(
            f"dataset {ds_id!r} has no table {tname!r} (tables: {', '.join(entry['tables'])})",
            f"数据集 {ds_id!r} 没有表 {tname!r}（现有：{', '.join(entry['tables'])}）",
        )
    _record_read(ds_id, entry["version"], tname)
    return root / ds_id / f"v{entry['version']}", entry["tables"][tname]


def dask(
    name: str, columns: Iterable[str] | None = None, filters: list | None = None, version: dict[str, int] | None = None
) -> Any:
    """A Dask dataframe over ``<dataset>.<table>``, reading only ``columns`` and the partitions
    and row groups ``filters`` can match (pyarrow filter syntax, e.g. ``[("city", "==", "北京")]``)."""
    import dask.dataframe as dd

    folder, t = locate(name, version)
    conditional_access.report(session(), name, "dask")
    # Partitions of about 64 MiB of row groups, so a large file is not one pandas frame.
    options = {
        "columns": list(columns) if columns else None,
        "filters": filters,
        "split_row_groups": "adaptive",
        "blocksize": "64MiB",
    }
    if t.get("partition_by"):  # a hive-partitioned folder: filters on its keys skip whole folders
        return dd.read_parquet(str(folder / _split(name)[1]), **options)
    return dd.read_parquet([str(folder / f["path"]) for f in t["files"]], **options)


def dask_client(workers: int | None = None) -> Any:
    """A Dask client for work that does not fit one DuckDB query.

    Where the hub configured a dask-gateway (dask's config ``gateway.address``, set by the
    spawner as ``DASK_GATEWAY__ADDRESS``), a cluster is asked from the gateway, which enforces
    the team's limits on cores, memory and workers, and how many clusters a person and a team
    may run at once (a refusal is a :class:`SandboxError` with the gateway's reason); otherwise
    a local cluster sized to this sandbox's own limits (threads and memory, spilling into the
    user's space).
    """
    import dask.config
    from distributed import Client, LocalCluster

    if dask.config.get("gateway.address", None):
        from dask_gateway import GatewayCluster

        # The cluster owns its gateway connection and shuts down when closed (or the kernel ends).
        try:
            cluster = GatewayCluster(shutdown_on_close=True)
        except ValueError as exc:  # refused by the gateway (422): e.g. its cap on clusters, "zh | en"
            zh, _, en = str(exc).partition(" | ")
            raise SandboxError(en or zh, zh, code="dask-cluster-refused") from None
        cluster.scale(workers or 2)
        return cluster.get_client()
    limits = Limits.from_env()
    limits.spill_dir.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(
        n_workers=workers or 1,
        threads_per_worker=max(1, limits.threads // (workers or 1)),
        memory_limit=limits.memory_bytes // (workers or 1),
        local_directory=str(limits.spill_dir),
        dashboard_address=None,
    )
    return Client(cluster)
