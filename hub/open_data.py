"""What the public data service serves, without HTTP: the catalog's public view, rows, exports.

The service (hub/data_service.py) is a thin tornado layer over this module, so that the
same logic can run in a test or a script. Only the published open data is read, through the
published catalog (``<data root>/catalog.json``, sandbox/catalog.py): a dataset is named by
its catalog key, a table by its key in the catalog entry, a file by the entry's file list.
Nothing a client sends becomes a path; every file is resolved and must lie inside the data
root's folder of its dataset, so neither ``..``, an encoded slash, nor a symlink planted in
the data root reaches anything else (the private root with the hidden solutions is never
even known to the service: hub/services.py does not give it ``CONTESTHUB_PRIVATE_ROOT``).

Only datasets of the unconditional tier (无条件开放) have rows and downloads; the others show
their catalog entry only.

Rows are read with DuckDB straight from the published Parquet. Filters name declared fields
only, every value is a bound parameter cast to the column's own type, and pages follow a
keyset (the position of the last row: its file and row number in the file, or the sort value
first when ``_sort`` is given), in the way Datasette's ``_next`` works, so page 1000 costs what
page 1 costs when the table is read in its published order.

Exports (a table version as one Parquet file, or CSV in UTF-8 with a BOM, or GB18030 for
``encoding=gbk``) are written once per version into a cache folder: published versions never
change, so the file, its SHA-256 and its ETag never do either.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import duckdb

from sandbox import catalog as _catalog
from sandbox import freshness
from sandbox.errors import ContesthubError, NotFound
from sandbox.quoting import lit, q

PUBLIC_TIER = "unconditional"
PAGE_SIZE = 20  # datasets per page of the search
DEFAULT_ROWS = 100
MAX_ROWS = 1000  # the largest ``_size``; Datasette's max_returned_rows is the same
MAX_IN_VALUES = 100
MAX_VALUE_CHARS = 1000
OPS = ("exact", "gt", "gte", "lt", "lte", "in", "contains")
SQL_OPS = {"exact": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
CONTROL = ("_size", "_next", "_sort", "_sort_desc", "version", "lang", "_shape")
ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gb18030", "gb18030": "gb18030"}
CHUNK = 1 << 20


class Refused(ContesthubError):
    """A request the service will not answer as asked, with its HTTP status."""

    def __init__(self, status: int, code: str, en: str, zh: str):
        super().__init__(en, zh, code=code)
        self.status = status


def bad_request(code: str, en: str, zh: str) -> Refused:
    return Refused(400, code, en, zh)


# --- the catalog, read again when it changes ----------------------------------------------------


class Catalog:
    """The published catalog, re-read whenever ``catalog.json`` is replaced (a build finished)."""

    def __init__(self, data_root: Path):
        self.data_root = Path(data_root)
        self.real_root = self.data_root.resolve()
        self._stamp: tuple | None = None
        self._doc: dict = {"generated_at": None, "datasets": {}}
        self._contest: dict = {}
        self._lock = threading.Lock()

    def _stat(self, name: str) -> tuple:
        try:
            st = (self.data_root / name).stat()
            return (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return ()

    def doc(self) -> dict:
        stamp = (self._stat("catalog.json"), self._stat("contest.json"))
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._doc = _catalog.load(self.data_root)
                    try:
                        self._contest = json.loads((self.data_root / "contest.json").read_text("utf-8"))
                    except (OSError, ValueError):
                        self._contest = {}
                    self._stamp = stamp
        return self._doc

    def stamp(self) -> tuple | None:
        """What identifies the published catalog now (changes with every build)."""
        self.doc()
        return self._stamp

    def contest(self) -> dict:
        self.doc()
        return self._contest

    def dataset(self, ds_id: str) -> dict:
        datasets = self.doc()["datasets"]
        if ds_id not in datasets:
            raise NotFound(
                f"no published dataset {ds_id!r}; search with api/datasets",
                f"没有已发布的数据集 {ds_id!r}；请用 api/datasets 搜索",
            )
        return datasets[ds_id]

    def entry(self, ds_id: str, version: int | None = None) -> dict:
        d = self.dataset(ds_id)
        if version is None or version == d["latest"]:
            return d["entry"]
        if version not in {v["version"] for v in d["versions"]}:
            have = ", ".join(str(v["version"]) for v in d["versions"])
            raise NotFound(
                f"dataset {ds_id!r} has no version {version} (versions: {have})",
                f"数据集 {ds_id!r} 没有版本 {version}（现有版本：{have}）",
            )
        return _catalog.entry(self.data_root, ds_id, version)

    def public_entry(self, ds_id: str, version: int | None = None) -> dict:
        """The entry of a dataset whose data is open to anyone; a 403 for the other tiers."""
        e = self.entry(ds_id, version)
        if e["open_tier"] != PUBLIC_TIER:
            tier = _catalog.TIERS.get(e["open_tier"], {"zh": e["open_tier"], "en": e["open_tier"]})
            raise Refused(
                403,
                "not-open-to-the-public",
                f"dataset {ds_id!r} is {tier['en'].lower()}: only its catalog entry is public here; "
                "its data is given out through the publisher",
                f"数据集 {ds_id!r} 属于「{tier['zh']}」：这里只公开其目录信息，数据需向提供方申请",
            )
        return e

    def table(self, ds_id: str, name: str, version: int | None = None) -> tuple[dict, dict]:
        e = self.public_entry(ds_id, version)
        if name not in e["tables"]:
            raise NotFound(
                f"dataset {ds_id!r} has no table {name!r} (tables: {', '.join(e['tables'])})",
                f"数据集 {ds_id!r} 没有表 {name!r}（现有表：{'、'.join(e['tables'])}）",
            )
        return e, e["tables"][name]

    def file_path(self, ds_id: str, version: int, rel: str) -> Path:
        """A file the catalog lists, resolved; refused unless it lies inside its dataset's folder."""
        home = (self.real_root / ds_id).resolve()
        path = (self.data_root / ds_id / f"v{version}" / rel).resolve()
        if not path.is_relative_to(home) or not path.is_file():
            raise NotFound(f"no such file in dataset {ds_id!r}", f"数据集 {ds_id!r} 中没有这个文件")
        return path

    def table_files(self, ds_id: str, entry: dict, table: dict) -> list[Path]:
        return [self.file_path(ds_id, entry["version"], f["path"]) for f in table["files"]]

    def published_file(self, rel_url: str) -> tuple[str, dict, dict, Path]:
        """``<id>/v<N>/<quoted path>`` as the DCAT export names a file: (dataset, entry, file, path)."""
        parts = rel_url.split("/", 2)
        if len(parts) != 3 or not re.fullmatch(r"v\d{1,9}", parts[1]):
            raise NotFound("no such file; see api/catalog.jsonld", "没有这个文件；请查看 api/catalog.jsonld")
        ds_id, version, rest = parts[0], int(parts[1][1:]), urllib.parse.unquote(parts[2])
        e = self.public_entry(ds_id, version)
        for t in e["tables"].values():
            for f in t["files"]:
                if f["path"] == rest:
                    return ds_id, e, f, self.file_path(ds_id, version, f["path"])
        raise NotFound("no such file; see api/catalog.jsonld", "没有这个文件；请查看 api/catalog.jsonld")


# --- search and the catalog's public documents ------------------------------------------------


def search(cat: Catalog, query: str, *, theme: str, tier: str, publisher: str, page: int) -> dict:
    """Datasets matching ``query`` as sandbox.search ranks them, one page, and facet counts."""
    if len(query) > MAX_VALUE_CHARS:
        raise bad_request("query-too-long", "q is longer than 1000 characters", "q 超过 1000 个字符")
    cat.doc()
    found = _catalog.search(cat.data_root, query)
    entries = {ds_id: d["entry"] for ds_id, d in cat.doc()["datasets"].items()}
    found = [r for r in found if r["id"] in entries]

    def keep(r: dict, skip: str = "") -> bool:
        return (
            (skip == "theme" or not theme or r["theme"] == theme)
            and (skip == "tier" or not tier or r["tier"] == tier)
            and (skip == "publisher" or not publisher or publisher in (r["publisher_zh"], r["publisher_en"]))
        )

    rows = [r for r in found if keep(r)]
    facets = {}
    # Each facet counts what the other filters leave, as faceted search does.
    for name, key, labels in (
        ("theme", "theme", _catalog.THEMES),
        ("tier", "tier", _catalog.TIERS),
        ("publisher", "publisher_zh", None),
    ):
        counts: dict[str, int] = {}
        for r in found:
            if keep(r, name):
                counts[r[key]] = counts.get(r[key], 0) + 1
        facets[name] = [
            {"value": v, "count": n, **({"label": labels[v]} if labels and v in labels else {})}
            for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    if page < 1:
        raise bad_request("bad-page", "page must be 1 or more", "page 必须大于等于 1")
    start = (page - 1) * PAGE_SIZE
    return {
        "query": query,
        "total": len(rows),
        "page": page,
        "pages": pages,
        "datasets": [{**r, "open_data": r["tier"] == PUBLIC_TIER} for r in rows[start : start + PAGE_SIZE]],
        "facets": facets,
    }


def dataset_document(cat: Catalog, ds_id: str, base: str) -> dict:
    """A dataset's catalog entry as the API shows it: versions, tables, links, challenges."""
    d = cat.dataset(ds_id)
    e = d["entry"]
    public = e["open_tier"] == PUBLIC_TIER
    tables = {}
    for name, t in e["tables"].items():
        tables[name] = {
            "title": t["title"],
            "description": t.get("description"),
            "rows": t["rows"],
            "bytes": t["bytes"],
            "schema": t["schema"],
            "sort_by": t.get("sort_by", []),
            "partition_by": t.get("partition_by", []),
            "files": [{"path": f["path"], "bytes": f["bytes"], "sha256": f["sha256"]} for f in t["files"]],
            "quality": _quality_summary(t.get("quality")),
            **({"test_of": t["test_of"]} if t.get("test_of") else {}),
            **(
                {
                    "links": {
                        "rows": f"{base}api/datasets/{ds_id}/tables/{name}/rows",
                        "parquet": f"{base}api/datasets/{ds_id}/tables/{name}/download?format=parquet",
                        "csv": f"{base}api/datasets/{ds_id}/tables/{name}/download?format=csv",
                    }
                }
                if public
                else {}
            ),
        }
    challenges = [
        {k: ch.get(k) for k in ("id", "title", "metric", "opens", "closes", "test_table")}
        for ch in cat.contest().get("challenges", [])
        if str(ch.get("test_table", "")).split(".", 1)[0] == ds_id
    ]
    keep = {k: v for k, v in e.items() if k != "tables"}
    return {
        **keep,
        "open_data": public,
        "versions": [
            {**v, "tables": _version_checksums(cat, ds_id, v["version"])} if public else v for v in d["versions"]
        ],
        "tables": tables,
        "challenges": challenges,
        "citation": _citation(e),
        "freshness": freshness.of_entry(e),
    }


def _version_checksums(cat: Catalog, ds_id: str, version: int) -> dict:
    e = cat.entry(ds_id, version)
    return {name: [{"path": f["path"], "sha256": f["sha256"]} for f in t["files"]] for name, t in e["tables"].items()}


def _quality_summary(report: dict | None) -> dict | None:
    if not report:
        return None
    skip = {"quarantine_file"}  # where organizers find the rejected rows: not the public's business
    return {k: v for k, v in report.items() if k not in skip}


def _citation(e: dict) -> dict:
    year = str(e.get("built_at", ""))[:4]
    zh = f"{e['publisher']['zh']}. {e['title']['zh']}（第 {e['version']} 版）. {year}. {e['licence']['id']}."
    en = f"{e['publisher']['en']}. {e['title']['en']} (version {e['version']}). {year}. {e['licence']['id']}."
    source = (e.get("source") or {}).get("citation")
    return {"zh": zh, "en": en, **({"source": source} if source else {})}


def dcat(cat: Catalog, base: str) -> dict:
    """The DCAT-AP export of sandbox/catalog.py, with downloads only for the unconditional tier."""
    doc = _catalog.export_dcat(cat.data_root, base_url=f"{base}files")
    tiers = {ds_id: d["entry"]["open_tier"] for ds_id, d in cat.doc()["datasets"].items()}
    for ds in doc["dcat:dataset"]:
        if tiers.get(ds["dct:identifier"]) != PUBLIC_TIER:
            ds["dcat:distribution"] = []
    return doc


def catalog_list(cat: Catalog, name: str) -> list[dict]:
    """The opening list, the sharing list or the opening plan (sandbox/gov_catalog.py)."""
    from sandbox import gov_catalog

    doc = cat.doc()
    if name == "opening":
        return gov_catalog.opening_list(doc)
    if name == "sharing":
        return gov_catalog.sharing_list(doc)
    if name == "plan":
        return gov_catalog.opening_plan(gov_catalog.published_plan(cat.data_root), doc)
    raise NotFound(
        f"no list {name!r}; the lists are opening, sharing and plan",
        f"没有清单 {name!r}；可用的清单：opening（开放清单）、sharing（共享清单）、plan（开放计划）",
    )


# --- rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowsQuery:
    size: int
    where: list[str]
    params: list
    sort: str | None
    desc: bool
    after: list | None  # the keyset cursor, decoded


def _int(value: str, name: str, low: int, high: int | None = None) -> int:
    if not re.fullmatch(r"-?\d{1,40}", value.strip()):
        raise bad_request(f"bad-{name.strip('_')}", f"{name} must be a whole number", f"{name} 必须是整数")
    n = int(value)
    if n < low:
        raise bad_request(f"bad-{name.strip('_')}", f"{name} must be {low} or more", f"{name} 必须大于等于 {low}")
    return min(n, high) if high is not None else n


def parse_rows_query(args: dict[str, list[str]], fields: list[str], types: dict[str, str]) -> RowsQuery:
    """The query string of a rows request, checked against the table's declared fields."""
    size = DEFAULT_ROWS
    where: list[str] = []
    params: list = []
    sort, desc, after = None, False, None
    names = ", ".join(fields)
    for key, values in args.items():
        value = values[-1]
        if key == "_size":
            # Above the cap, the cap (as Datasette does), never an error a script trips over.
            size = MAX_ROWS if value == "max" else _int(value, "_size", 1, MAX_ROWS)
            continue
        if key in ("_sort", "_sort_desc"):
            if value not in fields:
                raise bad_request(
                    "unknown-field",
                    f"{key}: {value!r} is not a field of this table (fields: {names})",
                    f"{key}：{value!r} 不是本表的字段（字段：{names}）",
                )
            sort, desc = value, key == "_sort_desc"
            continue
        if key == "_next":
            after = _decode_cursor(value)
            continue
        if key in CONTROL:
            continue
        name, _, op = key.rpartition("__") if "__" in key else (key, "", "exact")
        if name not in fields or op not in OPS:
            what = (
                f"{op!r} is not a filter; use one of {', '.join(OPS)}"
                if name in fields
                else f"{name!r} is not a field of this table (fields: {names})"
            )
            what_zh = (
                f"{op!r} 不是可用的筛选条件；可用：{'、'.join(OPS)}"
                if name in fields
                else f"{name!r} 不是本表的字段（字段：{names}）"
            )
            raise bad_request("unknown-filter", f"{key}: {what}", f"{key}：{what_zh}")
        for value in values:
            if len(value) > MAX_VALUE_CHARS:
                raise bad_request(
                    "value-too-long", f"{key}: the value is longer than 1000 characters", f"{key}：值超过 1000 个字符"
                )
            col, typ = q(name), types[name]
            if op == "contains":
                where.append(f"contains(CAST({col} AS VARCHAR), ?)")
                params.append(value)
            elif op == "in":
                items = [v for v in value.split(",")]
                if not 1 <= len(items) <= MAX_IN_VALUES:
                    raise bad_request(
                        "bad-in",
                        f"{key}: give 1 to {MAX_IN_VALUES} comma-separated values",
                        f"{key}：请给出 1 到 {MAX_IN_VALUES} 个以逗号分隔的值",
                    )
                where.append(f"{col} IN ({', '.join(f'TRY_CAST(? AS {typ})' for _ in items)})")
                params.extend(items)
            else:
                where.append(f"{col} {SQL_OPS[op]} TRY_CAST(? AS {typ})")
                params.append(value)
            if op != "contains":
                _check_values(items if op == "in" else [value], key, typ)
    if after is not None:
        want = 3 if sort else 2
        if len(after) != want or not all(isinstance(v, int) for v in after[-2:]):
            raise _bad_next()
    return RowsQuery(size, where, params, sort, desc, after)


def _check_values(values: list[str], key: str, typ: str) -> None:
    """A value that cannot be the column's type is the client's mistake: say so, not 'no rows'."""
    con = _local_con()
    for v in values:
        if con.execute(f"SELECT TRY_CAST(? AS {typ}) IS NULL", [v]).fetchone()[0]:
            raise bad_request(
                "bad-value",
                f"{key}: {v[:80]!r} is not a value of type {typ}",
                f"{key}：{v[:80]!r} 不是 {typ} 类型的值",
            )


def _bad_next() -> Refused:
    return bad_request(
        "bad-next",
        "_next is not a cursor this service gave out; start again without _next",
        "_next 不是本服务给出的翻页标记；请去掉 _next 从第一页开始",
    )


def _encode_cursor(values: list) -> str:
    raw = json.dumps(values, default=_json_value, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str) -> list:
    if len(text) > 4 * MAX_VALUE_CHARS or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise _bad_next()
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise _bad_next() from None
    if not isinstance(values, list) or not all(
        v is None or (isinstance(v, str | int | float) and not isinstance(v, bool)) for v in values
    ):
        raise _bad_next()
    return values


def _json_value(v):
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return str(v)


_local = threading.local()


def _local_con() -> duckdb.DuckDBPyConnection:
    """One DuckDB connection per thread (the service's thread pool), with small limits."""
    con = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect(config={"threads": int(os.environ.get("CONTESTHUB_DATA_THREADS", "1"))})
        con.execute(f"SET memory_limit = {lit(os.environ.get('CONTESTHUB_DATA_MEMORY', '512MB'))}")
        con.execute("SET preserve_insertion_order = true")
        con.execute("SET parquet_metadata_cache = true")  # the footer read once, not per page
        _local.con = con
    return con


def _source(paths: list[Path], first: int, partitioned: bool, columns: str) -> str:
    """The table's files in their published order, each row with its file index and row number."""
    parts = []
    for i, p in enumerate(paths):
        if i < first:
            continue
        opts = ", hive_partitioning = true, hive_types_autocast = false" if partitioned else ""
        parts.append(
            f"SELECT {columns}, {i} AS __f, file_row_number AS __r "
            f"FROM read_parquet({lit(str(p))}, file_row_number = true{opts})"
        )
    return " UNION ALL ".join(parts)


_types_cache: dict[tuple, dict[str, str]] = {}


def column_types(paths: list[Path], fields: list[str], partitioned: bool) -> dict[str, str]:
    key = tuple(map(str, paths))
    if key not in _types_cache:
        opts = ", hive_partitioning = true, hive_types_autocast = false" if partitioned else ""
        rows = _local_con().execute(f"DESCRIBE SELECT * FROM read_parquet({lit(str(paths[0]))}{opts})").fetchall()
        types = {r[0]: r[1] for r in rows}
        _types_cache[key] = {f: types.get(f, "VARCHAR") for f in fields}
    return _types_cache[key]


def read_rows(cat: Catalog, ds_id: str, table_name: str, version: int | None, args: dict[str, list[str]], url) -> dict:
    """One page of a table's rows as JSON-ready values, with the cursor of the next page."""
    e, t = cat.table(ds_id, table_name, version)
    fields = [f["name"] for f in t["schema"]["fields"]]
    paths = cat.table_files(ds_id, e, t)
    # A published version never changes: the same question has the same answer (its files'
    # checksums are part of the key, so a rebuilt catalog cannot be answered from the past).
    key = (
        ds_id,
        e["version"],
        table_name,
        tuple(f["sha256"] for f in t["files"]),
        tuple(sorted((k, tuple(v)) for k, v in args.items() if k != "lang")),
    )
    hit = _rows_cache.get(key)
    if hit is None:
        hit = _page(t, fields, paths, args)
        _rows_cache.put(key, hit)
    out, next_token = hit
    return {
        "ok": True,
        "dataset": ds_id,
        "table": table_name,
        "version": e["version"],
        "columns": fields,
        "rows": out,
        "next": next_token,
        "next_url": url(next_token) if next_token else None,
    }


class LRU:
    """A small thread-safe LRU of pages; ``CONTESTHUB_DATA_ROW_CACHE`` entries (0: none)."""

    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        if self.size <= 0:
            return
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


ROW_CACHE = int(os.environ.get("CONTESTHUB_DATA_ROW_CACHE", "1024"))
_rows_cache = LRU(ROW_CACHE)


def _page(t: dict, fields: list[str], paths: list[Path], args: dict[str, list[str]]) -> tuple[list, str | None]:
    partitioned = bool(t.get("partition_by"))
    types = column_types(paths, fields, partitioned)
    rq = parse_rows_query(args, fields, types)
    columns = ", ".join(q(f) for f in fields)
    where, params = list(rq.where), list(rq.params)
    first = 0
    if rq.sort is None:
        # The published order: DuckDB keeps it without sorting (preserve_insertion_order, set
        # on every connection), so the scan stops at the page's last row instead of sorting
        # every matching row of the table.
        order = None
        if rq.after is not None:
            first = rq.after[0]
            where.append("(__f, __r) > (?, ?)")
            params += rq.after
    else:
        s = q(rq.sort)
        d = " DESC" if rq.desc else ""
        # NULLs last either way; the cursor's position then compares (is-null, value, file, row).
        order = f"{s} IS NULL, {s}{d}, __f, __r"
        if rq.after is not None:
            v, f, r = rq.after
            cmp = "<" if rq.desc else ">"
            if v is None:
                where.append(f"{s} IS NULL AND (__f, __r) > (?, ?)")
                params += [f, r]
            else:
                where.append(
                    f"({s} IS NULL OR {s} {cmp} TRY_CAST(? AS {types[rq.sort]}) "
                    f"OR ({s} = TRY_CAST(? AS {types[rq.sort]}) AND (__f, __r) > (?, ?)))"
                )
                params += [v, v, f, r]
    if first >= len(paths) or first < 0:
        raise _bad_next()
    sql = (
        f"SELECT * FROM ({_source(paths, first, partitioned, columns)}) "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} {f'ORDER BY {order}' if order else ''} "
        f"LIMIT {rq.size + 1}"
    )
    try:
        rows = _local_con().execute(sql, params).fetchall()
    except duckdb.Error as exc:
        raise bad_request(
            "bad-query", f"the filters cannot be applied: {str(exc)[:200]}", "筛选条件无法执行，请检查字段和值的类型"
        ) from None
    more = len(rows) > rq.size
    rows = rows[: rq.size]
    out = [dict(zip(fields, (_plain(v) for v in r[: len(fields)]), strict=True)) for r in rows]
    next_token = None
    if more:
        last = rows[-1]
        pos = [last[-2], last[-1]]
        next_token = _encode_cursor(([_plain(last[fields.index(rq.sort)])] if rq.sort else []) + pos)
    return out, next_token


def _plain(v):
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else None
    return _json_value(v)


# --- exports --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    path: Path
    sha256: str
    bytes: int
    media_type: str
    filename: str


_export_locks: dict[str, threading.Lock] = {}
_export_guard = threading.Lock()


def export(
    cat: Catalog, cache: Path, ds_id: str, table_name: str, version: int | None, fmt: str, encoding: str
) -> Export:
    """The table version as one file, made once and kept (versions never change)."""
    if fmt not in ("parquet", "csv"):
        raise bad_request("bad-format", "format must be parquet or csv", "format 必须是 parquet 或 csv")
    codec = ENCODINGS.get(encoding.lower())
    if codec is None or (fmt == "parquet" and encoding.lower() not in ("utf-8", "utf8")):
        raise bad_request(
            "bad-encoding",
            "encoding must be utf-8 (the default) or gbk, and only for format=csv",
            "encoding 只能是 utf-8（默认）或 gbk，且只用于 format=csv",
        )
    e, t = cat.table(ds_id, table_name, version)
    v = e["version"]
    base = f"{ds_id}-v{v}-{table_name}"
    if fmt == "parquet" and len(t["files"]) == 1:
        f = t["files"][0]
        path = cat.file_path(ds_id, v, f["path"])
        return Export(path, f["sha256"], path.stat().st_size, "application/vnd.apache.parquet", f"{base}.parquet")
    suffix = "parquet" if fmt == "parquet" else ("csv" if codec == "utf-8" else "gbk.csv")
    target = cache / ds_id / f"v{v}" / f"{table_name}.{suffix}"
    media = "application/vnd.apache.parquet" if fmt == "parquet" else f"text/csv; charset={codec}"
    with _export_guard:
        lock = _export_locks.setdefault(str(target), threading.Lock())
    with lock:
        if not target.exists():
            _write_export(cat, e, t, ds_id, target, fmt, codec)
    sha = target.with_name(target.name + ".sha256").read_text().strip()
    return Export(target, sha, target.stat().st_size, media, f"{base}.{suffix}")


def _write_export(cat: Catalog, e: dict, t: dict, ds_id: str, target: Path, fmt: str, codec: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fields = [f["name"] for f in t["schema"]["fields"]]
    paths = cat.table_files(ds_id, e, t)
    partitioned = bool(t.get("partition_by"))
    # In the published order without a sort (preserve_insertion_order, DuckDB's default).
    src = f"SELECT {', '.join(q(f) for f in fields)} FROM ({_source(paths, 0, partitioned, '*')})"
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    tmp = Path(tmp_name)
    raw = tmp.with_name(tmp.name + ".raw")
    try:
        con = duckdb.connect(config={"threads": 2, "preserve_insertion_order": True})
        con.execute(f"SET memory_limit = {lit(os.environ.get('CONTESTHUB_DATA_MEMORY', '512MB'))}")
        if fmt == "parquet":
            con.execute(f"COPY ({src}) TO {lit(str(tmp))} (FORMAT parquet, COMPRESSION zstd)")
        else:
            con.execute(f"COPY ({src}) TO {lit(str(raw))} (FORMAT csv, HEADER true)")
        con.close()
        digest = hashlib.sha256()
        if fmt == "csv":
            # A BOM, so that Excel opens UTF-8 as UTF-8; GB18030 (which every GBK reader reads
            # for the characters GBK has) for software that wants the national encoding.
            with raw.open("rb") as src_fh, tmp.open("wb") as out:
                head = "\ufeff".encode() if codec == "utf-8" else b""
                out.write(head)
                digest.update(head)
                if codec == "utf-8":
                    while chunk := src_fh.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                else:
                    import codecs

                    decoder = codecs.getincrementaldecoder("utf-8")()
                    while chunk := src_fh.read(CHUNK):
                        data = decoder.decode(chunk).encode(codec)
                        out.write(data)
                        digest.update(data)
            raw.unlink()
        else:
            with tmp.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
        side = target.with_name(target.name + ".sha256")
        side.write_text(digest.hexdigest())
        os.replace(tmp, target)
    finally:
        for p in (tmp, raw):
            if p.exists():
                p.unlink()


def clear_cache(cache: Path) -> None:
    """Remove the exports (tests, or an organizer reclaiming space); they are made again on demand."""
    shutil.rmtree(cache, ignore_errors=True)
