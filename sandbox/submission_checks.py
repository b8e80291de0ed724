"""Reading and checking a submission file: every problem a contestant can act on.

A submission is CSV (UTF-8, UTF-8 with a BOM, or GBK as Excel saves it on a Chinese
Windows), Parquet, or either inside gzip or zip (up to three layers: a .csv.gz zipped is
two). The format is read from the file's first bytes, not its name. Decompression is
streamed into a size-capped file (the contest's upload limit applies after decompressing
too), so a small archive that expands to gigabytes (a decompression bomb) is stopped at the
cap. A CSV's header is checked before the rest of it is read.

Checks, each reported with a code, a message in Chinese and English that says what to do,
and the first offending rows (spreadsheet numbering: the header is row 1) and column:

========================  ================================================================
file-too-large            the upload is over the size limit
decompressed-too-large    the archive expands beyond the limit
bad-archive               a zip with no, several, or unsafe (path traversal) members, or
                          archives nested more than three deep
empty-file                no bytes, or only white space (or a BOM)
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
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import duckdb

from sandbox.errors import ContesthubError
from sandbox.quoting import lit, q

EXAMPLES = 5
MiB = 2**20
READ_BUFFER = 2 * MiB  # of the typed CSV reader (DuckDB's default, 32 MiB, is most of a scorer's memory)
MAX_LAYERS = 3  # of archives in archives: a .csv.gz put in a zip is two
PER_CODE = 20  # problems of one code listed one by one; one more counts the rest
NAME_SHOWN = 100  # characters of a column name a message quotes
BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")


@dataclass(frozen=True)
class Expect:
    """What a challenge's submission file must look like."""

    id_columns: tuple[str, ...]
    prediction_columns: tuple[str, ...]
    input: str  # value | label | probability | ranking
    labels: tuple = ()  # allowed labels for input == "label"
    max_bytes: int = 200 * MiB
    max_uncompressed_bytes: int = 1024 * MiB
    max_rows: int | None = None  # the test set's rows; None: counted by validate_file
    group: str | None = None  # input == "ranking": the id column whose rows are ranked together


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
                    f"the archive expands to more than {cap // MiB} MiB, the limit after decompressing; "
                    "upload a smaller file (fewer columns, shorter numbers)",
                    f"压缩包解压后超过 {cap // MiB} MiB（解压后的上限）；请上传更小的文件（减少列数或缩短数字）",
                )
            out.write(chunk)


def _archive(path: Path) -> str | None:
    """'gzip' or 'zip' from the file's first bytes (every zip signature: an empty zip starts
    PK\\x05\\x06, a spanned one PK\\x07\\x08); None for anything else."""
    magic = _head(path, 4)
    if magic[:2] == GZIP_MAGIC:
        return "gzip"
    if magic in ZIP_MAGIC:
        return "zip"
    return None


# What to do about a file over the size limit (en, zh). Not "compress it": the contest's limit
# counts the file after decompressing too.
TOO_LARGE_WHAT_TO_DO = (
    "keep only the id and prediction columns and write fewer decimal places "
    "(the limit counts the file after decompressing too)",
    "请只保留 id 列和预测列，并减少小数位数（上限也适用于解压后的文件）",
)


def _gunzip(path: Path, out: Path, expect: Expect) -> None:
    try:
        with gzip.open(path, "rb") as src:
            _copy_capped(src, out, expect.max_uncompressed_bytes)
    except (OSError, EOFError, zlib.error) as exc:
        raise _fail(
            "unreadable",
            f"the gzip file is damaged ({exc}); compress it again",
            f"gzip 文件已损坏（{exc}）；请重新压缩",
        ) from None


def _unzip(path: Path, out: Path, expect: Expect) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise _fail(
            "bad-archive",
            f"the zip file is damaged ({exc}); compress the file again",
            f"zip 文件已损坏（{exc}）；请重新压缩",
        ) from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if not members:
            raise _fail(
                "bad-archive",
                "the zip holds no file; put your CSV or Parquet file in it",
                "zip 中没有文件；请把 CSV 或 Parquet 文件放进去",
            )
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
                f"the zip member name {member.filename!r} points outside the archive; zip the file alone, "
                "without folders",
                f"zip 中的文件名 {member.filename!r} 指向压缩包之外；请只压缩该文件本身，不要带目录",
            )
        if member.file_size > expect.max_uncompressed_bytes:
            raise _fail(
                "decompressed-too-large",
                f"the archive expands to {member.file_size / MiB:.0f} MiB; the limit is "
                f"{expect.max_uncompressed_bytes // MiB} MiB after decompressing too; upload a smaller file",
                f"压缩包解压后为 {member.file_size / MiB:.0f} MiB，超过解压后的上限 "
                f"{expect.max_uncompressed_bytes // MiB} MiB；请上传更小的文件",
            )
        try:
            with archive.open(member) as src:  # the header's size may lie: the copy is capped too
                _copy_capped(src, out, expect.max_uncompressed_bytes)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error) as exc:
            raise _fail(
                "bad-archive",
                f"the zip member cannot be read ({exc}); zip the file again without a password",
                f"无法读取 zip 中的文件（{exc}）；请不加密码重新压缩",
            ) from None


def unpack(path: Path, work: Path, expect: Expect) -> Path:
    """The plain file inside ``path``, written into ``work``; ``path`` itself when it is no archive.

    Up to :data:`MAX_LAYERS` layers of gzip and zip, in any order (a .csv.gz put in a zip is
    two). Each layer is written to a file of its own, ``work/unpacked-<layer>``, capped at
    ``expect.max_uncompressed_bytes``, and the layer it came from is deleted once read; on any
    failure every layer written is deleted. The caller deletes the file returned.
    """
    size = path.stat().st_size
    if size > expect.max_bytes:
        raise _fail(
            "file-too-large",
            f"the file is {size / MiB:.1f} MiB; the limit is {expect.max_bytes // MiB} MiB; {TOO_LARGE_WHAT_TO_DO[0]}",
            f"文件大小为 {size / MiB:.1f} MiB，超过上限 {expect.max_bytes // MiB} MiB；{TOO_LARGE_WHAT_TO_DO[1]}",
        )
    current, layer = path, 0
    try:
        while (kind := _archive(current)) is not None:
            layer += 1
            if layer > MAX_LAYERS:
                raise _fail(
                    "bad-archive",
                    f"the file is nested too deep: more than {MAX_LAYERS} layers of gzip/zip; "
                    "compress the CSV or Parquet file once",
                    f"文件嵌套压缩过深：超过 {MAX_LAYERS} 层 gzip/zip；请只压缩一次 CSV 或 Parquet 文件",
                )
            out = work / f"unpacked-{layer}"
            (_gunzip if kind == "gzip" else _unzip)(current, out, expect)
            if current != path:
                current.unlink()
            current = out
    except BaseException:
        for p in work.glob("unpacked-*"):
            p.unlink(missing_ok=True)
        raise
    return current


def _is_scratch(p: Path) -> bool:
    """A file :func:`unpack` or :func:`load` wrote into the work folder."""
    return p.name.startswith("unpacked-") or p.name == "utf8.csv"


# --- the header ----------------------------------------------------------------------------


def _shown(name: str) -> tuple[str, str]:
    """A column name as the messages quote it (en, zh): as it is, or its start when very long."""
    if len(name) <= NAME_SHOWN:
        return repr(name), repr(name)
    start = repr(name[:NAME_SHOWN])
    return f"{start}… ({len(name):,} characters)", f"{start}…（共 {len(name):,} 个字符）"


def _column(name: str) -> str:
    """A column name as a problem's ``column`` holds it (shortened like :func:`_shown`)."""
    return name if len(name) <= NAME_SHOWN else name[:NAME_SHOWN] + "…"


_MORE = {  # the last problem of a code listed PER_CODE times: how many more there are
    "duplicate-column": (
        "and {n:,} more column names appear more than once; keep each column once (the header must be {want})",
        "另有 {n:,} 个列名重复出现；每列只保留一次（表头应为 {want}）",
    ),
    "missing-column": (
        "and {n:,} more columns are missing; the header must be {want}",
        "另缺少 {n:,} 列；表头应为 {want}",
    ),
    "extra-column": (
        "and {n:,} more columns are not expected; remove every column but {want}",
        "另有 {n:,} 列不应出现；请删除 {want} 以外的所有列",
    ),
}


def _capped(problems: list[Problem], want: str) -> list[Problem]:
    """At most :data:`PER_CODE` problems of each code, then one that counts the rest, so that a
    file with 10,000 columns gets a short answer."""
    if len(problems) <= PER_CODE:
        return problems
    code, n = problems[0].code, len(problems) - PER_CODE
    en, zh = _MORE[code]
    return [*problems[:PER_CODE], Problem(code, en.format(n=n, want=want), zh.format(n=n, want=want), count=n)]


def column_problems(columns: list[str], expect: Expect) -> list[Problem]:
    """Duplicate, missing and extra columns of a header, the first :data:`PER_CODE` of each one
    by one (with the column's position and name), then a count of the rest."""
    expected = [*expect.id_columns, *expect.prediction_columns]
    want = ",".join(expected)
    seen = Counter(columns)
    duplicate, missing, extra = [], [], []
    for c, n in seen.items():
        if n > 1:
            en, zh = _shown(c)
            duplicate.append(
                Problem(
                    "duplicate-column",
                    f"column {en} appears {n} times; keep one (the header must be {want})",
                    f"列 {zh} 出现了 {n} 次；请只保留一列（表头应为 {want}）",
                    column=_column(c),
                )
            )
    for c in expected:
        if c not in seen:
            missing.append(
                Problem(
                    "missing-column",
                    f"column {c!r} is missing; the header must be {want}",
                    f"缺少列 {c!r}；表头应为 {want}",
                    column=c,
                )
            )
    reported = set()
    for i, c in enumerate(columns, start=1):
        if c in expected or c in reported:
            continue
        reported.add(c)
        if not c:
            en = f"column {i} has no name (a comma too many?); remove it: the header must be {want}"
            zh = f"第 {i} 列没有列名（多了一个逗号？）；请删除该列：表头应为 {want}"
        else:
            name_en, name_zh = _shown(c)
            en = f"column {i}, {name_en}, is not expected; remove it (the header must be {want})"
            zh = f"第 {i} 列 {name_zh} 不应出现；请删除（表头应为 {want}）"
        extra.append(Problem("extra-column", en, zh, column=_column(c)))
    return [*_capped(duplicate, want), *_capped(missing, want), *_capped(extra, want)]


# --- reading -------------------------------------------------------------------------------


@dataclass
class Loaded:
    """The submission as a DuckDB table of text columns, in file order."""

    table: str
    columns: list[str]
    rows: int
    first_row: int  # row number of the first data row (2 under a CSV header, 1 in Parquet)


def _utf8(plain: Path, head: bytes, work: Path) -> Path:
    """``plain`` as UTF-8 text (transcoded from GBK into ``work/utf8.csv`` if need be)."""
    # Imported here: sandbox.sources loads pyarrow (~50 MiB), which the scorer's fast path never needs.
    from sandbox.sources import detect_encoding, transcode_to_utf8

    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _fail(
            "unreadable",
            "the file is UTF-16 text (Excel's 'Unicode text'); save it as UTF-8 CSV ('CSV UTF-8' in Excel)",
            "文件是 UTF-16 编码的文本（Excel 的“Unicode 文本”）；请另存为 UTF-8 编码的 CSV（Excel 中的“CSV UTF-8”）",
        )
    if b"\x00" in head:
        raise _fail(
            "unreadable",
            "the file holds NUL bytes, so it is not a CSV text file; save it as UTF-8 CSV",
            "文件中含有 NUL 字节，不是 CSV 文本文件；请另存为 UTF-8 编码的 CSV",
        )
    try:
        encoding = detect_encoding(plain)
    except ContesthubError:
        raise _fail(
            "unreadable",
            "the file is neither CSV text (UTF-8 or GBK) nor Parquet; save it as UTF-8 CSV",
            "文件既不是 CSV 文本（UTF-8 或 GBK）也不是 Parquet；请另存为 UTF-8 编码的 CSV",
        ) from None
    if encoding == "utf-8":
        return plain
    try:
        return transcode_to_utf8(plain, encoding, work / "utf8.csv")
    except ContesthubError as exc:  # a bad byte after the part the encoding was told from
        where = exc.details if isinstance(exc.details, dict) else {}
        line = where.get("line")
        if where.get("truncated"):
            en = "the file is GBK text that ends in the middle of a character, so it is cut short"
            zh = "文件是 GBK 编码的文本，但结束在一个字符的中间，文件不完整"
        else:
            en = f"line {line} is not valid GBK text, though the lines before it are"
            zh = f"第 {line} 行不是有效的 GBK 文本（之前的行都是）"
        raise _fail(
            "unreadable",
            f"{en}; export the file again, saved as UTF-8 CSV ('CSV UTF-8' in Excel)",
            f"{zh}；请重新导出，另存为 UTF-8 编码的 CSV（Excel 中的“CSV UTF-8”）",
            rows=[line] if line else [],
        ) from None


def _csv_header(plain: Path, expect: Expect) -> list[str]:
    """The header's names; an unreadable first line is a problem the contestant can fix."""
    from sandbox.sources import HEADER_LIMIT, read_header

    want = ",".join([*expect.id_columns, *expect.prediction_columns])
    try:
        return read_header(plain, ",")
    except ContesthubError as exc:
        problem = exc.details.get("problem") if isinstance(exc.details, dict) else None
    if problem == "blank":
        en, zh = "the first line is blank", "第一行是空的"
    elif problem == "too-long":
        en = f"the first line is longer than {HEADER_LIMIT // MiB} MiB"
        zh = f"第一行超过 {HEADER_LIMIT // MiB} MiB"
    else:
        en, zh = "the first line cannot be read as a CSV header", "第一行无法作为 CSV 表头读取"
    raise _fail(
        "unreadable",
        f"{en}; the first line must be the header: {want}",
        f"{zh}；第一行必须是表头：{want}",
        rows=[1],
    )


def _why(exc: duckdb.Error, plain: Path) -> str:
    """The first line of DuckDB's error, without the path of the file on the server."""
    return str(exc).splitlines()[0].replace(str(plain), "…")


def load(con: duckdb.DuckDBPyConnection, path: Path, work: Path, expect: Expect, table: str = "submission") -> Loaded:
    plain = unpack(path, work, expect)
    head = _head(plain, 65536)
    if not head.removeprefix(BOM).strip():
        raise _fail(
            "empty-file",
            "the file is empty; it needs a header row and one row per test id",
            "文件是空的；需要一行表头以及每个测试 id 一行预测",
        )
    if head[:4] == b"PAR1":
        _parquet_footer(con, plain, expect)  # rows, columns and sizes, before any data is read
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {q(table)} AS SELECT * FROM read_parquet({lit(str(plain))})"
            ).fetchall()
        except duckdb.OutOfMemoryException:
            # Within the footer's limits, values can still decode to far more than the file (one
            # long text repeated through a dictionary): the scorer's memory limit stops it here.
            raise _fail(
                "unreadable",
                "the Parquet file's values take more memory than a submission may use (very long texts?); "
                "write the ids and predictions as plain numbers or short texts",
                "该 Parquet 文件的数值解码后所需内存超过提交允许的上限（文本过长？）；"
                "请把 id 和预测写成普通数字或短文本",
            ) from None
        except duckdb.Error as exc:
            why = _why(exc, plain)
            raise _fail(
                "unreadable",
                f"the Parquet file cannot be read ({why}); write it again",
                f"无法读取该 Parquet 文件（{why}）；请重新写出该文件",
            ) from None
        first_row = 1
    else:
        plain = _utf8(plain, head, work)
        # The header first: a wrong one is all there is to say, and DuckDB need not read a
        # file of 10,000 columns to find that out.
        problems = column_problems(_csv_header(plain, expect), expect)
        if problems:
            raise SubmissionInvalid(problems)
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {q(table)} AS SELECT * FROM read_csv({lit(str(plain))}, header=true, "
                "all_varchar=true, delim=',', quote='\"', escape='\"', strict_mode=true, null_padding=false)"
            ).fetchall()
        except duckdb.Error as exc:
            why = _why(exc, plain)
            crlf = head.count(b"\r\n")
            lone_cr, lone_lf = head.count(b"\r") - crlf, head.count(b"\n") - crlf
            if lone_cr or (crlf and lone_lf):  # DuckDB reads CR-only files, but not every mix of endings
                en = (
                    "its lines end in different ways (or with a lone CR, an old Mac format); save the file again "
                    "with LF or CRLF line endings, the same on every line"
                )
                zh = "文件的行尾不统一（或使用了单独的 CR，即旧版 Mac 格式）；请以 LF 或 CRLF 换行符重新保存，每行一致"
            else:
                en, zh = "check commas and quotes", "请检查逗号和引号"
            raise _fail(
                "unreadable",
                f"the CSV cannot be parsed ({why}); {en}",
                f"无法解析该 CSV（{why}）；{zh}",
            ) from None
        first_row = 2
    columns = [r[0] for r in con.execute(f"DESCRIBE {q(table)}").fetchall()]
    rows = con.execute(f"SELECT count(*) FROM {q(table)}").fetchall()[0][0]
    return Loaded(table, columns, rows, first_row)


def _parquet_footer(con: duckdb.DuckDBPyConnection, plain: Path, expect: Expect) -> None:
    """Check a Parquet file from its footer alone, before any of its data is read.

    A Parquet file is not its size: dictionary and run-length encoding let 0.7 MB hold 100
    million rows, which DuckDB would decode in full before a row count could refuse them. The
    footer says how many rows and values there are, which columns, and how large the pages are
    once decompressed: each is checked against the test set and the contest's limits here.
    """
    src = lit(str(plain))
    try:
        (rows,) = con.execute(f"SELECT num_rows FROM parquet_file_metadata({src})").fetchall()[0]
        columns = con.execute(f"DESCRIBE SELECT * FROM read_parquet({src})").fetchall()
        values, unpacked = con.execute(
            f"SELECT coalesce(max(n), 0), coalesce(sum(size), 0) FROM (SELECT path_in_schema, sum(num_values) AS n, "
            f"sum(total_uncompressed_size) AS size FROM parquet_metadata({src}) GROUP BY ALL)"
        ).fetchall()[0]
    except duckdb.Error as exc:
        why = _why(exc, plain)
        raise _fail(
            "unreadable",
            f"the Parquet file cannot be read ({why}); write it again",
            f"无法读取该 Parquet 文件（{why}）；请重新写出该文件",
        ) from None
    problems = column_problems([c[0] for c in columns], expect)
    if problems:
        raise SubmissionInvalid(problems)
    nested = [c[0] for c in columns if any(k in str(c[1]) for k in ("[", "STRUCT", "MAP", "UNION"))]
    if nested:
        raise _fail(
            "unreadable",
            f"column {nested[0]!r} holds lists or records; write one plain value (a number or a text) per cell",
            f"列 {nested[0]!r} 中是列表或结构；每个单元格请只写一个普通值（数字或文本）",
            column=nested[0],
        )
    if expect.max_rows is not None and max(rows, values) > expect.max_rows:
        n = max(rows, values)
        raise SubmissionInvalid(
            [
                Problem(
                    "too-many-rows",
                    f"the file has {n:,} rows; the test set has {expect.max_rows:,}",
                    f"文件有 {n:,} 行，而测试集只有 {expect.max_rows:,} 行",
                    count=n - expect.max_rows,
                )
            ]
        )
    if unpacked > expect.max_uncompressed_bytes:
        cap = expect.max_uncompressed_bytes // MiB
        raise _fail(
            "decompressed-too-large",
            f"the Parquet file's pages expand to {unpacked / MiB:,.0f} MiB, more than the limit of {cap} MiB after "
            "decompressing; keep only the id and prediction columns",
            f"该 Parquet 文件的数据页解压后为 {unpacked / MiB:,.0f} MiB，超过解压后的上限 {cap} MiB；"
            "请只保留 id 列和预测列",
        )


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
        if expect.input in ("value", "probability", "ranking"):
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
    cols = loaded.columns
    if loaded.rows == 0:
        return [
            Problem(
                "no-rows",
                "the file has a header but no rows; add one row per test id",
                "文件只有表头没有数据；请为每个测试 id 写一行预测",
            )
        ]
    problems = column_problems(cols, expect)
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
    problems += _ranking_ties(con, loaded, expect)
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


def _ranking_ties(con, loaded: Loaded, expect: Expect) -> list[Problem]:
    """A ranking's scores must order each group's items: two items of one group with the same
    score would leave their order to chance, so the file is refused saying which group."""
    if expect.input != "ranking" or expect.group is None:
        return []
    g, (score,) = q(expect.group), expect.prediction_columns
    num = f"TRY_CAST(trim(CAST({q(score)} AS VARCHAR)) AS DOUBLE)"
    where = (
        f"{num} IS NOT NULL AND ({g}, {num}) IN (SELECT ({g}, {num}) FROM {q(loaded.table)} "
        f"WHERE {num} IS NOT NULL GROUP BY ALL HAVING count(*) > 1)"
    )
    (groups,) = con.execute(f"SELECT count(DISTINCT {g}) FROM {q(loaded.table)} WHERE {where}").fetchall()[0]
    if not groups:
        return []
    n, rows = _rows(con, loaded, where)
    seen = _examples(con, loaded, expect.group, where)
    return [
        Problem(
            "ranking-tie",
            f"column {score!r}: {groups} {expect.group}(s) give two or more items the same score, so their "
            f"order is undecided; give the items of one {expect.group} different scores (higher ranks first); "
            f"for example {seen}",
            f"列 {score!r}：有 {groups} 个 {expect.group} 的若干项得分相同，排序无法确定；"
            f"请为同一 {expect.group} 的每一项给出不同的分数（分数高者排在前面）；例如 {seen}",
            column=score,
            rows=rows,
            count=n,
        )
    ]


def _examples(con, loaded: Loaded, column: str, where: str) -> str:
    """A few of the offending values as the file has them (shortened), so the fix is obvious."""
    values = con.execute(
        f"SELECT DISTINCT coalesce(CAST({q(column)} AS VARCHAR), '(empty)') FROM {q(loaded.table)} "
        f"WHERE {where} LIMIT {EXAMPLES}"
    ).fetchall()
    return ", ".join(repr(v[0][:40]) for v in values)


def validate_file(con: duckdb.DuckDBPyConnection, path: Path, work: Path, expect: Expect, test_ids: str) -> Loaded:
    """Load and check ``path``; raise :class:`SubmissionInvalid` listing every problem."""
    if expect.max_rows is None:  # what a Parquet footer's row count is checked against
        (n_test,) = con.execute(f"SELECT count(*) FROM ({test_ids})").fetchall()[0]
        expect = replace(expect, max_rows=n_test)
    work.mkdir(parents=True, exist_ok=True)
    try:
        loaded = load(con, path, work, expect)
        problems = check(con, loaded, expect, test_ids)
    finally:
        for p in work.iterdir():
            if _is_scratch(p):
                p.unlink(missing_ok=True)
    if problems:
        raise SubmissionInvalid(problems)
    return loaded
