"""Reading a raw source into a typed staging file.

Chinese portals publish CSV in UTF-8, UTF-8 with a BOM (Excel's "CSV UTF-8") and GBK/GB18030
(Excel's default "CSV" on a Chinese Windows); also XLSX, JSON and NDJSON. Whatever comes in,
this module produces one staging Parquet file per table: the declared columns in source
order, typed per the Table Schema, plus the extra columns the caller asks for (validation
flags), computed on the typed row in the same pass. Rows DuckDB's CSV reader cannot parse
at all (too few or too many cells, bad quoting, invalid UTF-8) are recorded as
:class:`Reject` and left out.

The staging file holds raw, not yet de-identified values: it lives in the organizer-only
scratch folder and is deleted after the build.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from sandbox.descriptor import Field, TableSpec
from sandbox.errors import SourceError
from sandbox.quoting import lit, q

SNIFF_BYTES = 4 << 20
CHUNK = 1 << 20


@dataclass(frozen=True)
class Reject:
    """A source row that could not be parsed; ``row`` is the spreadsheet row (header = 1)."""

    row: int
    field: str | None  # the schema's field name (not the source's header)
    code: str
    value: str | None
    line: str | None = None  # the row's text as in the source (after decoding), for the quarantine


@dataclass
class Staged:
    table: TableSpec
    file: Path
    rows: int  # rows in the staging file
    rejects: list[Reject] = field(default_factory=list)
    converted: tuple[str, ...] = ()  # fields typed in SQL rather than by the reader
    encoding: str | None = "utf-8"  # None for sources that are not text files (XLSX)
    first_row: int = 2  # row number of the first record: 2 under a header line, 1 in JSON
    header: tuple[str, ...] = ()  # a CSV file's column names, in the file's order
    _rejected_rows: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rejected_rows = sorted({r.row for r in self.rejects})

    @property
    def rows_read(self) -> int:
        return self.rows + len(self._rejected_rows)

    def source_row(self, index: int) -> int:
        """Row number in the source of the staging row at 0-based ``index``.

        For CSV and XLSX the header is row 1, as a spreadsheet shows it; for JSON the first
        record is row 1.
        """
        row = index + self.first_row
        # Each rejected row at or before the candidate pushes it one further down.
        seen = 0
        while True:
            n = bisect.bisect_right(self._rejected_rows, row)
            if n == seen:
                return row
            row += n - seen
            seen = n


# --- encodings -----------------------------------------------------------------------------

_ENCODING_NAMES = {"gbk": "gb18030", "gb18030": "gb18030", "utf-8": "utf-8", "utf-8-sig": "utf-8"}


def detect_encoding(path: Path, declared: str = "auto") -> str:
    """Return 'utf-8' or 'gb18030' (GB18030 is a superset of GBK, so it reads both)."""
    if declared != "auto":
        return _ENCODING_NAMES[declared]
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8"
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        codecs.getincrementaldecoder("gb18030")("strict").decode(head, final=False)
        return "gb18030"
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{path.name}: the file is neither UTF-8 nor GBK/GB18030 (undecodable bytes at offset {exc.start}); "
            "save it as UTF-8 CSV and build again",
            f"{path.name}：文件既不是 UTF-8 也不是 GBK/GB18030 编码（第 {exc.start} 字节无法解码）；"
            "请另存为 UTF-8 编码的 CSV 后重新构建",
        ) from None


def transcode_to_utf8(path: Path, encoding: str, out: Path) -> Path:
    """Stream ``path`` from ``encoding`` to UTF-8 so DuckDB's fast reader can take it.

    Bytes that are not ``encoding`` text, anywhere in the file (also half a character at the
    very end of a file cut short), raise a SourceError whose ``details`` say where:
    ``{"line": ..., "byte": ..., "truncated": ...}`` (line 1 is the first line).
    """
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    line, offset = 1, 0  # the line the next chunk starts on, and its offset in the file
    with open(path, "rb") as src, open(out, "w", encoding="utf-8", newline="") as dst:
        while True:
            chunk = src.read(CHUNK)
            held = len(decoder.getstate()[0])  # bytes of a character the last chunk cut in two
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                # exc.start counts from the held bytes, which come before ``chunk``
                bad_at = offset - held + exc.start
                line += chunk[: max(exc.start - held, 0)].count(b"\n")
                truncated = not chunk
                what_en = (
                    f"ends in the middle of a {encoding.upper()} character (line {line}, byte {bad_at}): "
                    "the file is cut short"
                    if truncated
                    else f"line {line} (byte {bad_at}) is not valid {encoding.upper()} text"
                )
                what_zh = (
                    f"在一个 {encoding.upper()} 字符的中间结束（第 {line} 行，第 {bad_at} 字节）：文件不完整"
                    if truncated
                    else f"第 {line} 行（第 {bad_at} 字节）不是有效的 {encoding.upper()} 文本"
                )
                raise SourceError(
                    f"{path.name}: {what_en}; "
                    "fix or re-export the file, or declare its encoding in dataset.yaml (source.encoding)",
                    f"{path.name}：{what_zh}；请修正或重新导出文件，或在 dataset.yaml 中声明编码（source.encoding）",
                    details={"line": line, "byte": bad_at, "truncated": truncated},
                ) from None
            dst.write(text)
            if not chunk:
                return out
            line += chunk.count(b"\n")
            offset += len(chunk)


# --- headers -------------------------------------------------------------------------------


HEADER_LIMIT = 1 << 20  # the longest first line read_header reads


def read_header(path: Path, delimiter: str) -> list[str]:
    """The header cells; only the first line is decoded, so a bad byte further down is a row error.

    The first line ends at the first LF, CRLF or lone CR (an old Mac file) outside quotes, as
    DuckDB's reader sees it; if a quote in it is never closed, at the first line break. Raises
    SourceError with ``details={"problem": ...}``: ``blank`` (no header), ``encoding`` (not
    UTF-8), ``too-long`` (no line break in the first :data:`HEADER_LIMIT` bytes) or ``csv``.
    """
    with open(path, "rb") as fh:
        head = fh.read(HEADER_LIMIT + 1)
    end = _line_end(head)
    if end > HEADER_LIMIT:
        raise SourceError(
            f"{path.name}: the first line is longer than {HEADER_LIMIT >> 20} MiB; "
            "the first line must be the header, the column names",
            f"{path.name}：第一行超过 {HEADER_LIMIT >> 20} MiB；第一行必须是表头（列名）",
            details={"problem": "too-long", "limit": HEADER_LIMIT},
        )
    first = head[:end]
    if not first.strip():
        raise SourceError(
            f"{path.name}: the file is empty or its first line is blank; the first line must be the header",
            f"{path.name}：文件为空或首行为空；第一行必须是表头",
            details={"problem": "blank"},
        )
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SourceError(
            f"{path.name}: the header line is not valid UTF-8; declare source.encoding in dataset.yaml",
            f"{path.name}：表头行不是有效的 UTF-8；请在 dataset.yaml 中声明 source.encoding",
            details={"problem": "encoding"},
        ) from None
    if '"' not in text:  # the usual header: no quoting, so no limit on a name's length either
        return [h.strip() for h in text.split(delimiter)]
    try:
        cells = next(csv.reader([text], delimiter=delimiter))
    except csv.Error as exc:  # a quoted name over the csv module's field limit (128 Ki characters)
        raise SourceError(
            f"{path.name}: the header line cannot be read as CSV ({exc}); the first line must be the column names",
            f"{path.name}：表头行无法按 CSV 读取（{exc}）；第一行必须是列名",
            details={"problem": "csv"},
        ) from None
    return [h.strip() for h in cells]


def _line_end(head: bytes) -> int:
    """Where the first line of ``head`` ends (its length if it has no line break): the first CR or
    LF outside double quotes, or the first one at all when a quote is left open."""
    quoted = False
    for m in re.finditer(rb'["\r\n]', head):
        if m.group() == b'"':
            quoted = not quoted
        elif not quoted:
            return m.start()
    if not quoted:
        return len(head)
    breaks = [i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0]
    return min(breaks, default=len(head))


def check_header(name: str, header: list[str], table: TableSpec) -> None:
    """Raise one SourceError naming every label problem (Frictionless label error codes)."""
    declared = [f.source_name for f in table.fields]
    problems_en, problems_zh = [], []
    for i, h in enumerate(header, start=1):
        if not h:
            problems_en.append(f"blank-label: column {i} has no name")
            problems_zh.append(f"blank-label：第 {i} 列没有列名")
    dups = sorted({h for h in header if h and header.count(h) > 1})
    for h in dups:
        problems_en.append(f"duplicate-label: column {h!r} appears more than once")
        problems_zh.append(f"duplicate-label：列 {h!r} 出现了不止一次")
    for m in [d for d in declared if d not in header]:
        problems_en.append(f"missing-label: column {m!r} declared in the schema is not in the file")
        problems_zh.append(f"missing-label：表结构声明的列 {m!r} 不在文件中")
    for x in [h for h in header if h and h not in declared]:
        problems_en.append(f"extra-label: column {x!r} is in the file but not in the schema")
        problems_zh.append(f"extra-label：文件中的列 {x!r} 未在表结构中声明")
    if problems_en:
        raise SourceError(
            f"{name}: the header does not match table {table.name!r}: "
            + "; ".join(problems_en)
            + ". Rename the columns or update the schema in dataset.yaml.",
            f"{name}：表头与表 {table.name!r} 的结构不符："
            + "；".join(problems_zh)
            + "。请修改列名或更新 dataset.yaml 中的表结构。",
            code="header-error",
        )


# --- staging -------------------------------------------------------------------------------


def _needs_sql_conversion(f: Field) -> bool:
    """Fields DuckDB's CSV reader cannot type by itself: custom formats."""
    return f.format is not None and f.type in ("date", "datetime", "time")


def _convert(f: Field, raw: str) -> str:
    if f.type == "string":
        return raw
    if f.format and f.type in ("date", "datetime", "time"):
        target = {"date": "DATE", "datetime": "TIMESTAMP", "time": "TIME"}[f.type]
        return f"CAST(try_strptime(trim({raw}), {lit(f.format)}) AS {target})"
    if f.type == "integer":
        # Spreadsheets hand integers over as 3.0; accept exact whole numbers only.
        return (
            f"CASE WHEN TRY_CAST(trim({raw}) AS DOUBLE) = round(TRY_CAST(trim({raw}) AS DOUBLE)) "
            f"THEN TRY_CAST(TRY_CAST(trim({raw}) AS DOUBLE) AS BIGINT) END"
        )
    return f"TRY_CAST(trim({raw}) AS {f.duckdb_type})"


def _stage_select(
    table: TableSpec, converted: list[Field], source_sql: str, missing: tuple[str, ...], extra: list[str]
) -> str:
    """SELECT that types the fields, then adds ``extra`` columns computed on the typed row.

    ``__type_errors`` (the converted fields whose value did not parse) and ``__blank`` (the
    row is entirely empty) are visible to the extra columns, which is how validation flags
    are computed in the same pass as the read.
    """
    cols, flags = [], []
    conv_names = {f.name for f in converted}
    for f in table.fields:
        if f.name not in conv_names:
            cols.append(f"{q(f.source_name)} AS {q(f.name)}")
            continue
        raw = q(f.source_name)
        if missing:
            raw = f"(CASE WHEN {raw} IN ({', '.join(lit(m) for m in missing)}) THEN NULL ELSE {raw} END)"
        cols.append(f"{_convert(f, raw)} AS {q(f.name)}")
        flags.append(f"CASE WHEN {raw} IS NOT NULL AND {_convert(f, raw)} IS NULL THEN {lit(f.name)} END")
    errors = f"NULLIF(concat_ws(',', {', '.join(flags)}), '')" if flags else "CAST(NULL AS VARCHAR)"
    typed = f"SELECT {', '.join(cols)}, {errors} AS __type_errors FROM {source_sql}"
    all_null = " AND ".join(f"{q(f.name)} IS NULL" for f in table.fields)
    marked = f"SELECT *, ({all_null}) AND __type_errors IS NULL AS __blank FROM ({typed})"
    kept = ", ".join(q(f.name) for f in table.fields if f.name in staged_fields(table))
    return f"SELECT {kept}{''.join(', ' + e for e in extra)} FROM ({marked})"


def staged_fields(table: TableSpec) -> set[str]:
    """The fields written to the staging file.

    Writing Parquet is most of a build's cost, and a dropped identifier is needed only for
    its row-level rules, which run while the source is read. So a dropped field is staged
    only when a key (primary, unique, foreign, the person key) or the whole-row duplicate check needs it;
    that also keeps it out of the organizer's quarantine file.
    """
    if not table.primary_key and not table.allow_duplicate_rows:
        return {f.name for f in table.fields}
    needed = {f.name for f in table.fields if f.published or f.constraints.get("unique")}
    needed |= set(table.primary_key)
    if table.person:  # the privacy gate counts distinct persons, also when their key is not published
        needed.add(table.person)
    for fk in table.foreign_keys:
        needed |= set(fk["fields"])
    return needed


def converted_fields(table: TableSpec) -> list[Field]:
    """Fields typed in SQL (not by the reader); their parse failures are type-errors in validation."""
    if table.source.format == "csv":
        return [f for f in table.fields if _needs_sql_conversion(f)]
    return list(table.fields)


_CAST_VALUE = re.compile(r'Could not convert string "(.*)" to', re.S)
_REJECT_CODES = {
    "CAST": "type-error",
    "MISSING COLUMNS": "missing-cell",
    "TOO MANY COLUMNS": "extra-cell",
    "INVALID ENCODING": "encoding-error",
    "INVALID UNICODE": "encoding-error",
}


def _copy_to_stage(con: duckdb.DuckDBPyConnection, select: str, out: Path) -> int:
    """Write the staging file; returns its number of rows."""
    # Uncompressed: the file lives only during the build, in the page cache, and is read back
    # several times; on the 10-million-row benchmark table lz4 cost more CPU to write and read
    # than it saved (the dictionary encoding already halves the file). No query of it looks
    # values up, so it needs no Bloom filters either.
    return int(
        con.execute(
            f"COPY ({select}) TO {lit(str(out))} (FORMAT parquet, COMPRESSION uncompressed, WRITE_BLOOM_FILTER false)"
        ).fetchall()[0][0]
    )


def stage_csv(
    con: duckdb.DuckDBPyConnection, table: TableSpec, path: Path, out: Path, scratch: Path, extra: list[str]
) -> Staged:
    encoding = detect_encoding(path, table.source.encoding)
    readable = path if encoding == "utf-8" else transcode_to_utf8(path, encoding, scratch / f"{table.name}.utf8.csv")
    header = read_header(readable, table.source.delimiter)
    check_header(path.name, header, table)
    by_source = {f.source_name: f for f in table.fields}
    converted = converted_fields(table)
    columns = ", ".join(
        f"{lit(h)}: {lit('VARCHAR' if by_source[h] in converted else by_source[h].duckdb_type)}" for h in header
    )
    rej = f"rej_{table.name}"
    source_sql = (
        f"read_csv({lit(str(readable))}, header=true, auto_detect=false, columns={{{columns}}}, "
        f"delim={lit(table.source.delimiter)}, quote='\"', escape='\"', "
        f"nullstr=[{', '.join(lit(m) for m in table.missing_values) or lit('')}], "
        f"store_rejects=true, rejects_table={lit(rej)}, rejects_scan={lit(rej + '_scan')})"
    )
    try:
        rows = _copy_to_stage(con, _stage_select(table, converted, source_sql, table.missing_values, extra), out)
    except duckdb.Error as exc:
        raise SourceError(
            f"{path.name}: cannot be read as CSV ({str(exc).splitlines()[0]})",
            f"{path.name}：无法按 CSV 读取（{str(exc).splitlines()[0]}）",
        ) from None
    rejects = []
    for line, column, etype, message, text in con.execute(
        f"SELECT line, column_name, CAST(error_type AS VARCHAR), error_message, csv_line FROM {rej} ORDER BY line"
    ).fetchall():
        m = _CAST_VALUE.search(message or "")
        code = _REJECT_CODES.get(etype, "format-error")
        # DuckDB names the column by its header; reports name the schema's field, as every other message does.
        field = by_source[column].name if code == "type-error" and column in by_source else None
        # With CRLF line ends DuckDB's copy of the line starts with the LF of the line before.
        text = text.strip("\r\n") if text is not None else None
        reject = Reject(row=int(line), field=field, code=code, value=m.group(1) if m else None, line=text)
        # DuckDB reports a short row once per missing column; a person sees one row with missing cells.
        if not rejects or (rejects[-1].row, rejects[-1].code, rejects[-1].field) != (reject.row, code, reject.field):
            rejects.append(reject)
    return Staged(table, out, rows, rejects, tuple(f.name for f in converted), encoding, header=tuple(header))


def _cell_text(v: object) -> str | None:
    """Turn a spreadsheet or JSON cell into the text a CSV export would hold."""
    import datetime as dt

    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v.time() == dt.time() else v.isoformat(sep=" ")
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    return str(v)


def _xlsx_rows(path: Path, sheet: str | None) -> Iterator[tuple]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken file
        raise SourceError(
            f"{path.name}: not a readable XLSX workbook ({exc})", f"{path.name}：不是可读取的 XLSX 工作簿（{exc}）"
        ) from None
    try:
        if sheet and sheet not in wb.sheetnames:
            raise SourceError(
                f"{path.name}: no sheet {sheet!r} (sheets: {', '.join(wb.sheetnames)})",
                f"{path.name}：没有工作表 {sheet!r}（现有：{', '.join(wb.sheetnames)}）",
            )
        yield from (wb[sheet] if sheet else wb.worksheets[0]).iter_rows(values_only=True)
    finally:
        wb.close()


def stage_xlsx(con: duckdb.DuckDBPyConnection, table: TableSpec, path: Path, out: Path, extra: list[str]) -> Staged:
    rows = _xlsx_rows(path, table.source.sheet)
    header = [("" if h is None else str(h)).strip() for h in next(rows, ())]
    if not header:
        raise SourceError(f"{path.name}: the sheet is empty", f"{path.name}：工作表是空的")
    check_header(path.name, header, table)
    columns: list[list[str | None]] = [[] for _ in header]
    for values in rows:
        for i in range(len(header)):
            columns[i].append(_cell_text(values[i]) if i < len(values) else None)
    arrow = pa.table({h: pa.array(c, type=pa.string()) for h, c in zip(header, columns, strict=True)})
    con.register("__xlsx_src", arrow)
    try:
        _copy_to_stage(con, _stage_select(table, list(table.fields), "__xlsx_src", table.missing_values, extra), out)
    finally:
        con.unregister("__xlsx_src")
    return Staged(table, out, arrow.num_rows, [], tuple(f.name for f in table.fields), encoding=None)


def stage_json(con: duckdb.DuckDBPyConnection, table: TableSpec, path: Path, out: Path, extra: list[str]) -> Staged:
    fmt = "newline_delimited" if table.source.format == "ndjson" else "array"
    try:  # the keys, as DuckDB detects them from a sample of the records
        keys = [
            r[0]
            for r in con.execute(f"DESCRIBE SELECT * FROM read_json({lit(str(path))}, format={lit(fmt)})").fetchall()
        ]
    except duckdb.Error as exc:
        raise SourceError(
            f"{path.name}: cannot be read as {fmt.replace('_', '-')} JSON ({str(exc).splitlines()[0]})",
            f"{path.name}：无法按 JSON 读取（{str(exc).splitlines()[0]}）",
        ) from None
    check_header(path.name, keys, table)
    columns = ", ".join(f"{lit(f.source_name)}: 'VARCHAR'" for f in table.fields)
    source_sql = f"read_json({lit(str(path))}, format={lit(fmt)}, columns={{{columns}}})"
    try:
        rows = _copy_to_stage(
            con, _stage_select(table, list(table.fields), source_sql, table.missing_values, extra), out
        )
    except duckdb.Error as exc:
        raise SourceError(
            f"{path.name}: cannot be read as {fmt.replace('_', '-')} JSON ({str(exc).splitlines()[0]})",
            f"{path.name}：无法按 JSON 读取（{str(exc).splitlines()[0]}）",
        ) from None
    return Staged(table, out, rows, [], tuple(f.name for f in table.fields), encoding="utf-8", first_row=1)


def stage(
    con: duckdb.DuckDBPyConnection, table: TableSpec, path: Path, scratch: Path, extra: list[str] | None = None
) -> Staged:
    """Read ``path`` (the table's raw source) into ``scratch/<table>.stage.parquet``.

    ``extra`` are SQL columns computed on each typed row during the same pass (validation
    flags); they may use ``__type_errors``.
    """
    extra = extra or []
    if not path.is_file():
        raise SourceError(
            f"source file {path} of table {table.name!r} does not exist", f"表 {table.name!r} 的源文件 {path} 不存在"
        )
    if path.stat().st_size == 0:
        raise SourceError(f"{path.name}: the file is empty", f"{path.name}：文件是空的")
    out = scratch / f"{table.name}.stage.parquet"
    fmt = table.source.format
    if fmt == "csv":
        return stage_csv(con, table, path, out, scratch, extra)
    if fmt == "xlsx":
        return stage_xlsx(con, table, path, out, extra)
    return stage_json(con, table, path, out, extra)
