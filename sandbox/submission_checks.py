"""Reading and checking a submission file: every problem a contestant can act on.

A submission is CSV (UTF-8, UTF-8 with a BOM, or GBK as Excel saves it on a Chinese
Windows), Parquet, or either inside gzip or zip. The format is read from the file's first
bytes, not its name. Decompression is streamed into a size-capped file, so a small archive
that expands to gigabytes (a decompression bomb) is stopped at the cap.

Checks, each reported with a code, a message in Chinese and English that says what to do,
and the first offending rows (spreadsheet numbering: the header is row 1) and column:

========================  ================================================================
file-too-large            the upload is over the size limit
decompressed-too-large    the archive expands beyond the limit
bad-archive               a zip with no, several, or unsafe (path traversal) members
empty-file                no bytes, or only white space
unreadable                not CSV, not Parquet, or text in an unknown encoding
no-rows                   a header but no rows
duplicate-column          a column name appears twice
missing-column            an expected column is absent
extra-column              a column that is not expected
too-many-rows             more rows than the test set has
duplicate-id              an id appears more than once
unknown-id                an id that is not in the test set
missing-id                an id of the test set has no prediction
not-a-number              a prediction that is not a number
not-finite                NaN or infinity
unknown-label             a label outside the allowed set
probability-range         a probability below 0 or above 1
========================  ================================================================

Validation never needs the hidden targets, only the test set's ids, so contestants can run
the same checks locally (``sandbox.validate``) without any quota.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import duckdb

from sandbox.errors import ContesthubError
from sandbox.quoting import lit, q

EXAMPLES = 5
MiB = 2**20
READ_BUFFER = 2 * MiB  # of the typed CSV reader (DuckDB's default, 32 MiB, is most of a scorer's memory)


@dataclass(frozen=True)
class Expect:
    """What a challenge's submission file must look like."""

    id_columns: tuple[str, ...]
    prediction_columns: tuple[str, ...]
    input: str  # value | label | probability | ranking
    labels: tuple = ()  # allowed labels for input == "label"
    max_bytes: int = 200 * MiB
    max_uncompressed_bytes: int = 1024 * MiB


@dataclass
class Problem:
    code: str
    en: str
    zh: str
    column: str | None = None
    rows: list[int] = field(default_factory=list)
    count: int = 0

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "message": self.zh,
            "message_en": self.en,
            "message_zh": self.zh,
            "column": self.column,
            "rows": self.rows,
            "count": self.count,
        }


class SubmissionInvalid(ContesthubError):
    """The file cannot be scored; ``problems`` says everything that is wrong with it."""

    code = "submission-invalid"

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        first = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            first.en + more,
            first.zh + (f"（另有 {len(problems) - 1} 处问题）" if len(problems) > 1 else ""),
            details=[p.to_dict() for p in problems],
        )


def _fail(code: str, en: str, zh: str, **kw) -> SubmissionInvalid:
    return SubmissionInvalid([Problem(code, en, zh, **kw)])


# --- unpacking -----------------------------------------------------------------------------


def id_text(alias: str, columns: tuple[str, ...]) -> str:
    """SQL: a row's id as one text value. Ids are compared as text everywhere, so a CSV's
    '2024-10-01' matches the solution's DATE and a Parquet file's typed ids match too."""
    return " || '|' || ".join(f"CAST({alias}.{q(c)} AS VARCHAR)" for c in columns)


def ids_equal(columns: tuple[str, ...], a: str, b: str) -> str:
    """SQL: rows ``a`` and ``b`` have the same id (column by column, as text)."""
    return " AND ".join(f"CAST({a}.{q(c)} AS VARCHAR) = CAST({b}.{q(c)} AS VARCHAR)" for c in columns)


def _head(path: Path, n: int) -> bytes:
    """The first ``n`` bytes of a file (never the whole file: it may be a gigabyte)."""
    with open(path, "rb") as fh:
        return fh.read(n)


def _copy_capped(src, dst: Path, cap: int) -> None:
    written = 0
    with open(dst, "wb") as out:
        while chunk := src.read(MiB):
            written += len(chunk)
            if written > cap:
                raise _fail(
                    "decompressed-too-large",
                    f"the archive expands to more than {cap // MiB} MiB; upload a smaller file",
                    f"压缩包解压后超过 {cap // MiB} MiB；请上传更小的文件",
                )
            out.write(chunk)


def unpack(path: Path, work: Path, expect: Expect) -> Path:
    """The plain file inside ``path`` (gzip or zip), written into ``work``; ``path`` itself otherwise."""
    size = path.stat().st_size
    if size > expect.max_bytes:
        raise _fail(
            "file-too-large",
            f"the file is {size / MiB:.1f} MiB; the limit is {expect.max_bytes // MiB} MiB",
            f"文件大小为 {size / MiB:.1f} MiB，超过上限 {expect.max_bytes // MiB} MiB",
        )
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] == b"\x1f\x8b":
        out = work / "unpacked"
        try:
            with gzip.open(path, "rb") as src:
                _copy_capped(src, out, expect.max_uncompressed_bytes)
        except (OSError, EOFError, zlib.error) as exc:
            raise _fail(
                "unreadable",
                f"the gzip file is damaged ({exc}); compress it again",
                f"gzip 文件已损坏（{exc}）；请重新压缩",
            ) from None
        return unpack(out, work, expect) if _head(out, 2) == b"\x1f\x8b" else out
    if magic == b"PK\x03\x04":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise _fail("bad-archive", f"the zip file is damaged ({exc})", f"zip 文件已损坏（{exc}）") from None
        with archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise _fail(
                    "bad-archive",
                    f"the zip holds {len(members)} files; put exactly one CSV or Parquet file in it",
                    f"zip 中有 {len(members)} 个文件；请只放一个 CSV 或 Parquet 文件",
                )
            member = members[0]
            name = PurePosixPath(member.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts:
                raise _fail(
                    "bad-archive",
                    f"the zip member name {member.filename!r} points outside the archive",
                    f"zip 中的文件名 {member.filename!r} 指向压缩包之外",
                )
            if member.file_size > expect.max_uncompressed_bytes:
                raise _fail(
                    "decompressed-too-large",
                    f"the archive expands to {member.file_size / MiB:.0f} MiB; the limit is "
                    f"{expect.max_uncompressed_bytes // MiB} MiB",
                    f"压缩包解压后为 {member.file_size / MiB:.0f} MiB，超过上限 "
                    f"{expect.max_uncompressed_bytes // MiB} MiB",
                )
            out = work / "unpacked"
            try:
                with archive.open(member) as src:  # the header's size may lie: the copy is capped too
                    _copy_capped(src, out, expect.max_uncompressed_bytes)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
                raise _fail(
                    "bad-archive", f"the zip member cannot be read ({exc})", f"无法读取 zip 中的文件（{exc}）"
                ) from None
        return unpack(out, work, expect) if _head(out, 2) in (b"\x1f\x8b", b"PK") else out
    return path


# --- reading -------------------------------------------------------------------------------


@dataclass
class Loaded:
    """The submission as a DuckDB table of text columns, in file order."""

    table: str
    columns: list[str]
    rows: int
    first_row: int  # row number of the first data row (2 under a CSV header, 1 in Parquet)


def load(con: duckdb.DuckDBPyConnection, path: Path, work: Path, expect: Expect, table: str = "submission") -> Loaded:
    plain = unpack(path, work, expect)
    head = _head(plain, 65536)
    raw = head[:4]
    if not head.strip():
        raise _fail(
            "empty-file",
            "the file is empty; it needs a header row and one row per test id",
            "文件是空的；需要一行表头以及每个测试 id 一行预测",
        )
    if raw == b"PAR1":
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {q(table)} AS SELECT * FROM read_parquet({lit(str(plain))})"
            ).fetchall()
        except duckdb.Error as exc:
            raise _fail(
                "unreadable",
                f"the Parquet file cannot be read ({str(exc).splitlines()[0]})",
                f"无法读取该 Parquet 文件（{str(exc).splitlines()[0]}）",
            ) from None
        first_row = 1
    else:
        # Imported here: sandbox.sources loads pyarrow (~50 MiB), which the scorer's fast path never needs.
        from sandbox.sources import detect_encoding, read_header, transcode_to_utf8

        try:
            encoding = detect_encoding(plain)
        except ContesthubError:
            raise _fail(
                "unreadable",
                "the file is neither CSV text (UTF-8 or GBK) nor Parquet; save it as UTF-8 CSV",
                "文件既不是 CSV 文本（UTF-8 或 GBK）也不是 Parquet；请另存为 UTF-8 编码的 CSV",
            ) from None
        if encoding != "utf-8":
            plain = transcode_to_utf8(plain, encoding, work / "utf8.csv")
        try:
            header = read_header(plain, ",")
        except ContesthubError:
            raise _fail(
                "unreadable",
                "the first line is not a readable CSV header; save the file as UTF-8 CSV",
                "第一行不是可读取的 CSV 表头；请另存为 UTF-8 编码的 CSV",
            ) from None
        dups = sorted({h for h in header if header.count(h) > 1})
        if dups:  # DuckDB would rename them (visits_1); say what the file really holds
            raise SubmissionInvalid(
                [
                    Problem(
                        "duplicate-column",
                        f"column {c!r} appears more than once; keep one",
                        f"列 {c!r} 出现了不止一次；请只保留一列",
                        column=c,
                    )
                    for c in dups
                ]
            )
        if b"\x00" in _head(plain, 65536):
            raise _fail(
                "unreadable",
                "the file holds NUL bytes, so it is not a CSV text file; save it as UTF-8 CSV",
                "文件中含有 NUL 字节，不是 CSV 文本文件；请另存为 UTF-8 编码的 CSV",
            )
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {q(table)} AS SELECT * FROM read_csv({lit(str(plain))}, header=true, "
                "all_varchar=true, delim=',', quote='\"', escape='\"', strict_mode=true, null_padding=false)"
            ).fetchall()
        except duckdb.Error as exc:
            raise _fail(
                "unreadable",
                f"the CSV cannot be parsed ({str(exc).splitlines()[0]}); check commas and quotes",
                f"无法解析该 CSV（{str(exc).splitlines()[0]}）；请检查逗号和引号",
            ) from None
        first_row = 2
    columns = [r[0] for r in con.execute(f"DESCRIBE {q(table)}").fetchall()]
    rows = con.execute(f"SELECT count(*) FROM {q(table)}").fetchall()[0][0]
    return Loaded(table, columns, rows, first_row)


def typed_csv(plain: Path, expect: Expect, types: dict[str, str]) -> str | None:
    """SQL reading ``plain`` (an unpacked file) in one typed pass, or None when it needs :func:`load`.

    Only for the plainest case: a UTF-8 CSV whose first line is exactly the expected column
    names (any order, no quotes or spaces). The columns get ``types`` and the reader does not
    sniff, so a value that does not fit its type makes the read fail: a caller then falls back
    to :func:`validate_file`, which reads every value as text and reports what is wrong.
    """
    head = _head(plain, 65536)
    if not head.strip() or head[:4] == b"PAR1" or b"\x00" in head:
        return None
    first = head.split(b"\n", 1)[0].removeprefix(b"\xef\xbb\xbf").removesuffix(b"\r")
    try:
        header = first.decode("utf-8").split(",")
    except UnicodeDecodeError:
        return None
    expected = list(expect.id_columns) + list(expect.prediction_columns)
    if len(header) != len(expected) or set(header) != set(expected) or set(header) != set(types):
        return None
    columns = "{" + ", ".join(f"{lit(h)}: {lit(types[h])}" for h in header) + "}"
    return (
        f"read_csv({lit(str(plain))}, header=true, auto_detect=false, columns={columns}, delim=',', "
        f"quote='\"', escape='\"', strict_mode=true, null_padding=false, buffer_size={READ_BUFFER})"
    )


# --- checking ------------------------------------------------------------------------------


def _rows(con, loaded: Loaded, where: str) -> tuple[int, list[int]]:
    (n,) = con.execute(f"SELECT count(*) FROM {q(loaded.table)} WHERE {where}").fetchall()[0]
    first = con.execute(f"SELECT rowid FROM {q(loaded.table)} WHERE {where} ORDER BY rowid LIMIT {EXAMPLES}").fetchall()
    return int(n), [int(r[0]) + loaded.first_row for r in first]


def prediction_checks(expect: Expect) -> list[tuple[str, str, str, str, str]]:
    """The checks of prediction values: (code, SQL true on a bad row, message en, message zh, column).

    The messages hold ``{n}`` for the number of bad rows."""
    out: list[tuple[str, str, str, str, str]] = []
    for c in expect.prediction_columns:
        v = f"trim(CAST({q(c)} AS VARCHAR))"
        if expect.input in ("value", "probability"):
            num = f"TRY_CAST({v} AS DOUBLE)"
            checks = [
                (
                    "not-a-number",
                    f"{v} IS NULL OR {v} = '' OR ({num} IS NULL)",
                    f"column {c!r}: {{n}} value(s) are not numbers",
                    f"列 {c!r}：有 {{n}} 个值不是数字",
                ),
                (
                    "not-finite",
                    f"{num} IS NOT NULL AND (isnan({num}) OR isinf({num}))",
                    f"column {c!r}: {{n}} value(s) are NaN or infinite; predict a finite number",
                    f"列 {c!r}：有 {{n}} 个值为 NaN 或无穷大；请给出有限的数值",
                ),
            ]
            if expect.input == "probability":
                checks.append(
                    (
                        "probability-range",
                        f"{num} IS NOT NULL AND isfinite({num}) AND ({num} < 0 OR {num} > 1)",
                        f"column {c!r}: {{n}} probabilities are outside [0, 1]",
                        f"列 {c!r}：有 {{n}} 个概率不在 [0, 1] 之间",
                    )
                )
        elif expect.input == "label":
            allowed = ", ".join(lit(str(x)) for x in expect.labels)
            shown = ", ".join(map(str, expect.labels))
            checks = [
                (
                    "unknown-label",
                    f"{v} IS NULL OR {v} NOT IN ({allowed})",
                    f"column {c!r}: {{n}} value(s) are not one of the labels {shown}",
                    f"列 {c!r}：有 {{n}} 个值不是允许的标签（{shown}）之一",
                )
            ]
        else:
            checks = []
        out += [(code, where, en, zh, c) for code, where, en, zh in checks]
    return out


def check(con: duckdb.DuckDBPyConnection, loaded: Loaded, expect: Expect, test_ids: str) -> list[Problem]:
    """Every problem of the loaded file; ``test_ids`` is SQL naming a relation of the test set's ids."""
    problems: list[Problem] = []
    cols = loaded.columns
    expected = list(expect.id_columns) + list(expect.prediction_columns)
    if loaded.rows == 0:
        return [
            Problem(
                "no-rows",
                "the file has a header but no rows; add one row per test id",
                "文件只有表头没有数据；请为每个测试 id 写一行预测",
            )
        ]
    for c in sorted({c for c in cols if cols.count(c) > 1}):
        problems.append(
            Problem("duplicate-column", f"column {c!r} appears more than once", f"列 {c!r} 出现了不止一次", column=c)
        )
    missing = [c for c in expected if c not in cols]
    for c in missing:
        problems.append(
            Problem(
                "missing-column",
                f"column {c!r} is missing; the header must be {','.join(expected)}",
                f"缺少列 {c!r}；表头应为 {','.join(expected)}",
                column=c,
            )
        )
    for c in [c for c in cols if c not in expected]:
        problems.append(
            Problem(
                "extra-column",
                f"column {c!r} is not expected; remove it (expected: {','.join(expected)})",
                f"列 {c!r} 不应出现；请删除（应有的列：{','.join(expected)}）",
                column=c,
            )
        )
    if problems:
        return problems  # the rest of the checks need the right columns

    t = q(loaded.table)
    n_test = con.execute(f"SELECT count(*) FROM ({test_ids})").fetchall()[0][0]
    if loaded.rows > n_test:
        problems.append(
            Problem(
                "too-many-rows",
                f"the file has {loaded.rows:,} rows; the test set has {n_test:,}",
                f"文件有 {loaded.rows:,} 行，而测试集只有 {n_test:,} 行",
                count=loaded.rows - n_test,
            )
        )
    ids = ", ".join(q(c) for c in expect.id_columns)
    key = ids_equal(expect.id_columns, "s", "i")
    # Every count in two passes (one scan of the file's table, one join with the test ids); the
    # row numbers of examples are looked up only for checks that fail.
    value_checks = prediction_checks(expect)
    distinct, *counts = con.execute(
        "SELECT "
        + ", ".join(
            [f"count(DISTINCT struct_pack({ids}))"]  # a struct, so an empty id is counted as a value too
            + [f"count(*) FILTER (WHERE {w})" for _, w, _, _, _ in value_checks]
        )
        + f" FROM {t}"
    ).fetchall()[0]
    unknown, missing_ids = con.execute(
        f"SELECT count(*) FILTER (WHERE i.__test IS NULL), count(*) FILTER (WHERE s.__row IS NULL) "
        f"FROM (SELECT *, true AS __row FROM {t}) s "
        f"FULL OUTER JOIN (SELECT *, true AS __test FROM ({test_ids})) i ON {key}"
    ).fetchall()[0]
    n, rows = (
        (0, [])
        if distinct == loaded.rows
        else _rows(
            con,
            loaded,
            f"rowid IN (SELECT rowid FROM (SELECT rowid, row_number() OVER (PARTITION BY {ids} "
            f"ORDER BY rowid) AS k FROM {t}) WHERE k > 1)",
        )
    )
    if n:
        problems.append(
            Problem(
                "duplicate-id",
                f"{n} row(s) repeat an id given earlier; keep one row per id",
                f"有 {n} 行的 id 与前面的行重复；每个 id 只保留一行",
                rows=rows,
                count=n,
            )
        )
    n, rows = (
        (0, [])
        if not unknown
        else _rows(con, loaded, f"rowid IN (SELECT s.rowid FROM {t} s ANTI JOIN ({test_ids}) i ON {key})")
    )
    if n:
        problems.append(
            Problem(
                "unknown-id",
                f"{n} row(s) have an id that is not in the test set",
                f"有 {n} 行的 id 不在测试集中",
                rows=rows,
                count=n,
                column=",".join(expect.id_columns),
            )
        )
    if missing_ids:
        shown = [
            r[0]
            for r in con.execute(
                f"SELECT {id_text('i', expect.id_columns)} FROM ({test_ids}) i "
                f"ANTI JOIN {t} s ON {key} LIMIT {EXAMPLES}"
            ).fetchall()
        ]
        problems.append(
            Problem(
                "missing-id",
                f"{missing_ids} test id(s) have no prediction, for example {shown}",
                f"有 {missing_ids} 个测试 id 没有预测，例如 {shown}",
                count=int(missing_ids),
                column=",".join(expect.id_columns),
            )
        )
    for (code, where, en, zh, c), n in zip(value_checks, counts, strict=True):
        if n:
            _, rows = _rows(con, loaded, where)
            seen = _examples(con, loaded, c, where)
            problems.append(
                Problem(
                    code,
                    en.format(n=n) + f"; for example {seen}",
                    zh.format(n=n) + f"；例如 {seen}",
                    column=c,
                    rows=rows,
                    count=int(n),
                )
            )
    return problems


def _examples(con, loaded: Loaded, column: str, where: str) -> str:
    """A few of the offending values as the file has them (shortened), so the fix is obvious."""
    values = con.execute(
        f"SELECT DISTINCT coalesce(CAST({q(column)} AS VARCHAR), '(empty)') FROM {q(loaded.table)} "
        f"WHERE {where} LIMIT {EXAMPLES}"
    ).fetchall()
    return ", ".join(repr(v[0][:40]) for v in values)


def validate_file(con: duckdb.DuckDBPyConnection, path: Path, work: Path, expect: Expect, test_ids: str) -> Loaded:
    """Load and check ``path``; raise :class:`SubmissionInvalid` listing every problem."""
    work.mkdir(parents=True, exist_ok=True)
    try:
        loaded = load(con, path, work, expect)
        problems = check(con, loaded, expect, test_ids)
    finally:
        for p in work.iterdir():
            if p.name in ("unpacked", "utf8.csv"):
                p.unlink(missing_ok=True)
    if problems:
        raise SubmissionInvalid(problems)
    return loaded
