"""Crafted submission files: every way a contestant's file can be wrong, broken or hostile.

Used by tests/test_hostile_submissions.py, which sends each one to the real submission
service. A :class:`Hostile` names a file (``id``, readable in pytest's output), the challenge it
is sent to, how to make it (``make(test_sets, folder) -> Path``: written once into a tmp
folder and streamed from there, never held in memory when it is big) and what must come back:

* ``codes``: the submission is accepted (202) and then becomes ``invalid`` with at least one
  of these validation codes (sandbox/submission_checks.py's table);
* ``refusal``: the service refuses the upload itself with this HTTP status and ``code``;
* ``scored_ok``: a well-formed file in an unusual dress (GBK, a BOM, CRLF) that must be scored.

The files are built from the ids of the demo contest's real test sets (:class:`ContestIds`),
so that a file that is wrong in one way is right in every other: a NaN case has every id, the
right header and one NaN.
"""

from __future__ import annotations

import gzip
import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

FORECAST, EMERGENCY, TRIAGE = "outpatient_forecast", "emergency_visit", "department_triage"
HEADERS = {
    FORECAST: ("date", "hospital_id", "outpatient_visits"),
    EMERGENCY: ("visit_id", "p_emergency"),
    TRIAGE: ("visit_id", "department"),
}
MiB = 1 << 20
FORMULA = "=cmd|' /C calc'!A0"
FORMULAS = (FORMULA, "@SUM(1+1)*cmd|' /C calc'!A0", "+cmd|' /C notepad'!A0", "-2+3+cmd|' /C calc'!A0")


@dataclass(frozen=True)
class ContestIds:
    """The ids a submission must cover, read from the published ``*_test`` tables."""

    forecast: list[tuple[str, str]]  # (date, hospital_id) of outpatient_forecast
    visits: list[int]  # visit_id of emergency_visit and department_triage
    departments: tuple[str, ...]  # department_triage's labels

    @classmethod
    def load(cls, data_root: Path) -> ContestIds:
        folder = Path(data_root) / "hospital_outpatient" / "latest"
        con = duckdb.connect()
        try:
            forecast = con.execute(
                "SELECT strftime(date, '%Y-%m-%d'), hospital_id "
                f"FROM read_parquet('{folder / 'daily_visits_test.parquet'}') ORDER BY date, hospital_id"
            ).fetchall()
            visits = [
                r[0]
                for r in con.execute(
                    f"SELECT visit_id FROM read_parquet('{folder / 'visit_records_test.parquet'}') ORDER BY visit_id"
                ).fetchall()
            ]
            departments = tuple(
                r[0]
                for r in con.execute(
                    f"SELECT DISTINCT department FROM read_parquet('{folder / 'visit_records.parquet'}') ORDER BY 1"
                ).fetchall()
            )
        finally:
            con.close()
        return cls(forecast, visits, departments)

    def rows(self, challenge: str, value: Callable[[int], str] | None = None) -> list[list[str]]:
        """One row per test id, in test order; ``value(i)`` gives row i's prediction as text."""
        if challenge == FORECAST:
            value = value or (lambda i: str(100 + i % 37))
            return [[d, h, value(i)] for i, (d, h) in enumerate(self.forecast)]
        if challenge == EMERGENCY:
            value = value or (lambda i: f"{(i * 7919 % 1000) / 1000:.3f}")
            return [[str(v), value(i)] for i, v in enumerate(self.visits)]
        value = value or (lambda i: self.departments[i % len(self.departments)])
        return [[str(v), value(i)] for i, v in enumerate(self.visits)]


def csv_text(header, rows, newline: str = "\n") -> str:
    return newline.join([",".join(header), *(",".join(r) for r in rows)]) + newline


def valid_csv(ts: ContestIds, challenge: str, **kw) -> bytes:
    return csv_text(HEADERS[challenge], ts.rows(challenge), **kw).encode("utf-8")


def with_value(ts: ContestIds, challenge: str, bad: str, at: int = 3) -> bytes:
    """A valid file but for one prediction, ``bad`` (written as it is: quote it yourself)."""
    rows = ts.rows(challenge)
    rows[at][-1] = bad
    return csv_text(HEADERS[challenge], rows).encode("utf-8")


def with_header(ts: ContestIds, challenge: str, header: list[str]) -> bytes:
    rows = ts.rows(challenge)
    width = len(header)
    rows = [(r + ["1"] * width)[:width] for r in rows]
    return csv_text(header, rows).encode("utf-8")


def quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


# --- archives --------------------------------------------------------------------------------


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def gzip_bomb(path: Path, expands_to: int) -> Path:
    """A multi-member gzip file (each member 1 MiB of zeros, ~1 KiB packed) that expands to ``expands_to``."""
    member = gzip.compress(b"\0" * MiB, 9)
    with open(path, "wb") as f:
        for _ in range(expands_to // MiB):
            f.write(member)
    return path


def _zeros_deflate(n_mib: int) -> tuple[bytes, int]:
    """Raw deflate data of ``n_mib`` MiB of zeros, and its CRC-32, without compressing them all:
    a full flush resets the compressor, so every 1 MiB block packs to the same bytes."""
    block = b"\0" * MiB
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(n_mib):
        crc = zlib.crc32(block, crc)
    return packed * n_mib + c.flush(zlib.Z_FINISH), crc


def raw_zip(name: str, data: bytes, crc: int, size: int, *, declared: int | None = None, flags: int = 0) -> bytes:
    """A one-member deflate zip written by hand, so its headers can say what we like
    (``declared``: the uncompressed size they claim; ``flags``: 1 = encrypted)."""
    declared = size if declared is None else declared
    fname = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, 8, 0, 0x21, crc, len(data), declared, len(fname), 0)
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        *(0x02014B50, 20, 20, flags, 8, 0, 0x21, crc, len(data), declared, len(fname), 0, 0, 0, 0, 0o100644 << 16, 0),
    )
    directory = len(central) + len(fname)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, directory, len(local) + len(fname) + len(data), 0)
    return local + fname + data + central + fname + end


def xlsx_bytes(ts: ContestIds) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(list(HEADERS[FORECAST]))
    for row in ts.rows(FORECAST)[:200]:
        ws.append([row[0], row[1], float(row[2])])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def parquet_bytes(columns: dict[str, list]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


# --- the cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    id: str
    challenge: str
    make: Callable[[ContestIds, Path], Path]
    codes: frozenset[str] = frozenset()
    refusal: tuple[int, str] | None = None
    scored_ok: bool = False
    chunked: bool = False  # sent without a Content-Length (Transfer-Encoding: chunked)
    file_name: str = "predictions.csv"
    echoes: tuple[str, ...] = ()  # text an error must quote verbatim (as plain text, never escaped or run)


def _b(fn: Callable[[ContestIds], bytes]) -> Callable[[ContestIds, Path], Path]:
    """A maker that writes ``fn(ts)`` into a file of its own in the folder."""

    def make(ts: ContestIds, folder: Path) -> Path:
        data = fn(ts)
        path = folder / f"case-{zlib.crc32(data):08x}-{len(data)}"
        if not path.exists():
            path.write_bytes(data)
        return path

    return make


def _big(name: str, build: Callable[[Path], Path]) -> Callable[[ContestIds, Path], Path]:
    """A big file, built once per folder (the test module's tmp folder) and reused."""

    def make(ts: ContestIds, folder: Path) -> Path:
        path = folder / name
        if not path.exists():
            build(path)
        return path

    return make


def _filled(path: Path, size: int, head: bytes = b"") -> Path:
    block = (b"2024-10-01,H0001,1\n" * 4096)[:MiB]
    with open(path, "wb") as f:
        f.write(head)
        left = size - len(head)
        while left > 0:
            piece = block[: min(left, MiB)]
            f.write(piece)
            left -= len(piece)
    return path


def parquet_bomb(path: Path, rows: int = 100_000_000) -> Path:
    """A Parquet file of ``emergency_visit``'s two columns whose ``rows`` rows are all the same
    value, dictionary- and run-length encoded: 100 million rows in 0.7 MB. Read whole, it takes
    gigabytes and minutes before any row count can refuse it."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    codes = pa.array(np.zeros(rows, dtype=np.int8))
    ids = pa.DictionaryArray.from_arrays(codes, pa.array(["1"]))
    probabilities = pa.DictionaryArray.from_arrays(codes, pa.array([0.5]))
    table = pa.table({"visit_id": ids, "p_emergency": probabilities})
    pq.write_table(table, path, compression="zstd", row_group_size=10_000_000)
    return path


def parquet_long_text_bomb(path: Path, rows: int) -> Path:
    """A Parquet file with exactly ``rows`` rows (as many as the test set) whose ids are one 40 MiB
    text, dictionary-encoded: a few kilobytes that decode to rows × 40 MiB."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array(["7" * (40 * MiB)]))
    table = pa.table({"visit_id": ids, "p_emergency": pa.array(np.full(rows, 0.5))})
    pq.write_table(table, path, compression="zstd")
    return path


def _zip_bomb(path: Path, declared: int | None = None) -> Path:
    data, crc = _zeros_deflate(1100)
    path.write_bytes(raw_zip("predictions.csv", data, crc, 1100 * MiB, declared=declared))
    return path


def _long_line(ts: ContestIds) -> bytes:
    rows = ts.rows(FORECAST)
    rows[5][-1] = "9" * (5 * MiB)
    return csv_text(HEADERS[FORECAST], rows).encode()


def _nul_after_64k(ts: ContestIds) -> bytes:
    data = valid_csv(ts, FORECAST)
    cut = data.index(b"\n", 70_000) + 1
    row_end = data.index(b"\n", cut)
    return data[: row_end - 1] + b"\x00" + data[row_end:]


def _mixed_newlines(ts: ContestIds) -> bytes:
    lines = csv_text(HEADERS[FORECAST], ts.rows(FORECAST)).splitlines()
    return "".join(line + ("\r\n" if i % 2 else "\n") for i, line in enumerate(lines)).encode()


def _cr_only(ts: ContestIds) -> bytes:
    return csv_text(HEADERS[FORECAST], ts.rows(FORECAST), newline="\r").encode()


def _wide(ts: ContestIds, columns: int = 10_000) -> bytes:
    """The expected columns and then more, up to ``columns``, over a few rows."""
    header = list(HEADERS[FORECAST]) + [f"c{i}" for i in range(columns - 3)]
    extra = ",".join(["0"] * (columns - 3))
    rows = [f"{d},{h},1,{extra}" for d, h in ts.forecast[:5]]
    return ("\n".join([",".join(header), *rows]) + "\n").encode()


def _gbk(ts: ContestIds, label: Callable[[int], str] | None = None, bom: bytes = b"") -> bytes:
    return bom + csv_text(HEADERS[TRIAGE], ts.rows(TRIAGE, label)).encode("gbk")


def _random_bytes(n: int, seed: int) -> Callable[[ContestIds], bytes]:
    return lambda ts: random.Random(seed).randbytes(n)


def _nested(ts: ContestIds, depth: int, layers: str = "gz") -> bytes:
    """A good forecast CSV packed ``depth`` times, the layers taken in turn from ``layers``
    (``g`` gzip, ``z`` zip; ``"gz"``: gzip, then zip, then gzip, ...).

    What a contestant expects: a .csv.gz put in a zip (or zipped twice, or gzipped twice) is
    still their predictions, and is scored like the plain CSV. So up to three layers of gzip
    and zip, in any order, are unpacked (each into a file of its own, deleted afterwards); a
    fourth is ``bad-archive`` ('nested too deep'), since nobody packs a file four times by
    accident, and forty layers are an attack on the scorer's disk and time.
    """
    data = valid_csv(ts, FORECAST)
    for i in range(depth):
        kind = layers[i % len(layers)]
        data = gzip.compress(data) if kind == "g" else zip_bytes({f"layer{i}.bin": data})
    return data


def _deep_gzip(ts: ContestIds) -> bytes:
    data = valid_csv(ts, FORECAST)
    for _ in range(40):
        data = gzip.compress(data, 1)
    return data


def cases() -> list[Hostile]:
    F, E, T = FORECAST, EMERGENCY, TRIAGE
    H = Hostile
    header_f = list(HEADERS[F])
    return [
        # --- nothing there ---
        H("empty-body", F, _b(lambda ts: b""), refusal=(400, "empty-file")),
        H("only-whitespace", F, _b(lambda ts: b"  \n\t\r\n   \n"), frozenset({"empty-file"})),
        H("header-only", F, _b(lambda ts: b"date,hospital_id,outpatient_visits\n"), frozenset({"no-rows"})),
        H(
            "header-only-crlf-no-newline",
            F,
            _b(lambda ts: b"date,hospital_id,outpatient_visits"),
            frozenset({"no-rows"}),
        ),
        # --- not text at all ---
        H("only-bom", F, _b(lambda ts: b"\xef\xbb\xbf"), frozenset({"empty-file"})),
        H("random-binary", F, _b(_random_bytes(4096, 1)), frozenset({"unreadable"})),
        H("utf16-with-bom", F, _b(lambda ts: valid_csv(ts, F).decode().encode("utf-16")), frozenset({"unreadable"})),
        H(
            "latin1-garbage",
            F,
            _b(lambda ts: b"date,hospital_id,outpatient_visits\n\xff\xfe\x80\x81,\x9f,1\n"),
            frozenset({"unreadable", "unknown-id", "missing-id"}),
        ),
        H(
            "nul-byte-in-header",
            F,
            _b(lambda ts: b"date,hosp\x00ital_id,outpatient_visits\n2024-10-01,H0001,1\n"),
            frozenset({"unreadable"}),
        ),
        H("nul-byte-in-first-rows", F, _b(lambda ts: with_value(ts, F, "1\x002")), frozenset({"unreadable"})),
        H("nul-byte-after-64k", F, _b(_nul_after_64k), frozenset({"unreadable", "not-a-number"})),
        H("excel-xlsx-renamed-csv", F, _b(xlsx_bytes), frozenset({"bad-archive"}), file_name="predictions.csv"),
        H("parquet-truncated", F, _b(lambda ts: parquet_bytes({"a": [1, 2, 3]})[:40]), frozenset({"unreadable"})),
        H(
            "parquet-wrong-columns",
            F,
            _b(lambda ts: parquet_bytes({"date": ["2024-10-01"], "visits": [1.0]})),
            frozenset({"missing-column", "extra-column"}),
        ),
        # a Parquet file is not its size: its footer is read before any of its data
        H(
            "parquet-bomb-100M-rows",
            E,
            _big("parquet-bomb.parquet", parquet_bomb),
            frozenset({"too-many-rows"}),
            file_name="predictions.parquet",
        ),
        H(
            "parquet-long-text-bomb",
            E,
            lambda ts, folder: _big("parquet-text-bomb.parquet", lambda p: parquet_long_text_bomb(p, len(ts.visits)))(
                ts, folder
            ),
            frozenset({"unreadable"}),
            file_name="predictions.parquet",
        ),
        H(
            "parquet-nested-column",
            E,
            _b(lambda ts: parquet_bytes({"visit_id": [[v] for v in ts.visits[:100]], "p_emergency": [0.5] * 100})),
            frozenset({"unreadable"}),
            file_name="predictions.parquet",
        ),
        H(
            "pdf-magic",
            F,
            _b(lambda ts: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" * 20),
            frozenset({"unreadable", "missing-column", "extra-column"}),
        ),
        # --- the header ---
        H(
            "wrong-column-name",
            F,
            _b(lambda ts: with_header(ts, F, ["date", "hospital_id", "visits"])),
            frozenset({"missing-column", "extra-column"}),
        ),
        H(
            "missing-column",
            F,
            _b(lambda ts: with_header(ts, F, ["date", "hospital_id"])),
            frozenset({"missing-column"}),
        ),
        H("extra-column", F, _b(lambda ts: with_header(ts, F, [*header_f, "comment"])), frozenset({"extra-column"})),
        H(
            "duplicate-column",
            F,
            _b(lambda ts: with_header(ts, F, [*header_f, "outpatient_visits"])),
            frozenset({"duplicate-column"}),
        ),
        H(
            "header-case-differs",
            F,
            _b(lambda ts: with_header(ts, F, ["Date", "hospital_id", "outpatient_visits"])),
            frozenset({"missing-column", "extra-column"}),
        ),
        H(
            "header-padded-with-spaces",
            F,
            _b(lambda ts: with_header(ts, F, [" date", "hospital_id", "outpatient_visits "])),
            frozenset({"missing-column", "extra-column"}),
            scored_ok=True,  # the header's names are trimmed
        ),
        H(
            "semicolon-separated",
            F,
            _b(lambda ts: valid_csv(ts, F).replace(b",", b";")),
            frozenset({"missing-column", "extra-column"}),
        ),
        H("ten-thousand-columns", F, _b(_wide), frozenset({"extra-column"})),
        H("two-thousand-columns", F, _b(lambda ts: _wide(ts, 2000)), frozenset({"extra-column"})),
        H(
            "header-line-over-128KiB",  # one name of 200 KiB: reported, and quoted shortened
            F,
            _b(lambda ts: with_header(ts, F, [*HEADERS[F], "x" * (200 << 10)])),
            frozenset({"extra-column"}),
        ),
        H(
            "html-in-header",
            F,
            _b(lambda ts: with_header(ts, F, [*header_f, "<script>alert(1)</script>"])),
            frozenset({"extra-column"}),
            echoes=("<script>alert(1)</script>",),
        ),
        H(
            "formula-in-header",
            F,
            _b(lambda ts: with_header(ts, F, [*header_f, quoted(FORMULA)])),
            frozenset({"extra-column"}),
            echoes=(FORMULA,),
        ),
        # --- ids ---
        H("duplicate-id", F, _b(lambda ts: valid_csv(ts, F) + b"2024-10-01,H0001,5\n"), frozenset({"duplicate-id"})),
        H("unknown-id", F, _b(lambda ts: valid_csv(ts, F).replace(b"H0001", b"H9999")), frozenset({"unknown-id"})),
        H(
            "missing-ids",
            F,
            _b(lambda ts: csv_text(HEADERS[F], ts.rows(F)[: len(ts.forecast) // 2]).encode()),
            frozenset({"missing-id"}),
        ),
        H(
            "date-in-another-format",
            F,
            _b(lambda ts: valid_csv(ts, F).replace(b"2024-10-0", b"2024/10/0")),
            frozenset({"unknown-id"}),
        ),
        H(
            "empty-id",
            F,
            _b(lambda ts: valid_csv(ts, F).replace(b"2024-10-01,H0001,", b",H0001,", 1)),
            frozenset({"unknown-id", "missing-id"}),
        ),
        H(
            "formula-in-id",
            E,
            _b(lambda ts: valid_csv(ts, E).replace(f"\n{ts.visits[0]},".encode(), f"\n{quoted(FORMULA)},".encode(), 1)),
            frozenset({"unknown-id"}),
        ),
        H(
            "too-many-rows",
            F,
            _b(lambda ts: valid_csv(ts, F) + "".join(f"2099-01-0{i},H0001,1\n" for i in range(1, 10)).encode()),
            frozenset({"too-many-rows"}),
        ),
        # --- values ---
        H("nan", F, _b(lambda ts: with_value(ts, F, "NaN")), frozenset({"not-finite"})),
        H("lowercase-nan", F, _b(lambda ts: with_value(ts, F, "nan")), frozenset({"not-finite"})),
        H("infinity", F, _b(lambda ts: with_value(ts, F, "inf")), frozenset({"not-finite"})),
        H("minus-infinity", F, _b(lambda ts: with_value(ts, F, "-Infinity")), frozenset({"not-finite"})),
        H("huge-exponent", F, _b(lambda ts: with_value(ts, F, "1e999")), frozenset({"not-finite", "not-a-number"})),
        H("text-value", F, _b(lambda ts: with_value(ts, F, "many")), frozenset({"not-a-number"})),
        H("empty-value", F, _b(lambda ts: with_value(ts, F, "")), frozenset({"not-a-number"})),
        H("decimal-comma", F, _b(lambda ts: with_value(ts, F, '"1,5"')), frozenset({"not-a-number"})),
        H("percent-value", E, _b(lambda ts: with_value(ts, E, "50%")), frozenset({"not-a-number"})),
        *(
            H(f"formula-value-{i}", F, _b(lambda ts, f=f: with_value(ts, F, quoted(f))), frozenset({"not-a-number"}))
            for i, f in enumerate(FORMULAS)
        ),
        H("formula-label", T, _b(lambda ts: with_value(ts, T, quoted(FORMULA))), frozenset({"unknown-label"})),
        H("unknown-label", T, _b(lambda ts: with_value(ts, T, "骨科")), frozenset({"unknown-label"})),
        H("label-in-english", T, _b(lambda ts: with_value(ts, T, "Pediatrics")), frozenset({"unknown-label"})),
        H("probability-above-one", E, _b(lambda ts: with_value(ts, E, "1.5")), frozenset({"probability-range"})),
        H("probability-below-zero", E, _b(lambda ts: with_value(ts, E, "-0.01")), frozenset({"probability-range"})),
        H("probability-nan", E, _b(lambda ts: with_value(ts, E, "NaN")), frozenset({"not-finite"})),
        H("quoted-newline-in-value", F, _b(lambda ts: with_value(ts, F, '"1\n2"')), frozenset({"not-a-number"})),
        H(
            "quoted-newline-in-header",
            F,
            _b(lambda ts: with_header(ts, F, ["date", "hospital_id", '"outpatient\nvisits"'])),
            frozenset({"missing-column", "extra-column"}),
        ),
        H("unbalanced-quote", F, _b(lambda ts: with_value(ts, F, '"12')), frozenset({"unreadable", "not-a-number"})),
        H("ragged-row", F, _b(lambda ts: with_value(ts, F, "1,2,3")), frozenset({"unreadable"})),
        H("five-megabyte-line", F, _b(_long_line), frozenset({"unreadable", "not-a-number"})),
        # --- line endings and encodings of an otherwise good file ---
        H("mixed-line-endings", F, _b(_mixed_newlines), frozenset({"unreadable"}), scored_ok=True),
        H("crlf", F, _b(lambda ts: valid_csv(ts, F, newline="\r\n")), scored_ok=True),
        H("old-mac-cr-only", F, _b(_cr_only), scored_ok=True),  # DuckDB reads lines that end in CR alone
        H("utf8-bom", T, _b(lambda ts: b"\xef\xbb\xbf" + valid_csv(ts, T)), scored_ok=True),
        H("gbk", T, _b(lambda ts: _gbk(ts)), scored_ok=True),
        H(
            "gbk-unknown-label",
            T,
            _b(lambda ts: _gbk(ts, lambda i: "骨科" if i == 2 else ts.departments[i % 10])),
            frozenset({"unknown-label"}),
        ),
        H(
            "gbk-with-utf8-bom",
            T,
            _b(lambda ts: _gbk(ts, bom=b"\xef\xbb\xbf")),
            frozenset({"unreadable", "unknown-label", "missing-column", "extra-column"}),
        ),
        H(
            "gbk-broken-bytes",
            T,
            _b(lambda ts: _gbk(ts).replace("内科".encode("gbk"), b"\x81\x20", 1)),
            frozenset({"unreadable", "unknown-label"}),
        ),
        H("gbk-ends-mid-character", T, _b(_gbk_cut_mid_character), frozenset({"unreadable"})),
        H("gbk-broken-after-4MiB", T, _b(_gbk_broken_late), frozenset({"unreadable"})),
        # --- archives ---
        H("gzip-damaged", F, _b(lambda ts: gzip.compress(valid_csv(ts, F))[:500]), frozenset({"unreadable"})),
        H(
            "gzip-bomb-1100MiB",
            F,
            _big("gzip-bomb.gz", lambda p: gzip_bomb(p, 1100 * MiB)),
            frozenset({"decompressed-too-large"}),
            file_name="predictions.csv.gz",
        ),
        H(
            "gzip-expanding-to-60MiB",  # over the contest's upload_limit_mb, which holds after decompressing
            F,
            _big("gzip-60MiB.gz", _gzip_60mib),
            frozenset({"decompressed-too-large"}),
            file_name="p.csv.gz",
        ),
        H(
            "zip-bomb-1100MiB",
            F,
            _big("zip-bomb.zip", _zip_bomb),
            frozenset({"decompressed-too-large"}),
            file_name="predictions.zip",
        ),
        H(
            "zip-bomb-lying-header",
            F,
            _big("zip-bomb-lying.zip", lambda p: _zip_bomb(p, declared=1000)),
            frozenset({"bad-archive", "decompressed-too-large", "unreadable"}),
            file_name="predictions.zip",
        ),
        H(
            "zip-path-traversal",
            F,
            _b(lambda ts: zip_bytes({"../../../../etc/cron.d/x.csv": valid_csv(ts, F)})),
            frozenset({"bad-archive"}),
            file_name="predictions.zip",
            echoes=("../../../../etc/cron.d/x.csv",),
        ),
        H(
            "zip-absolute-path",
            F,
            _b(lambda ts: zip_bytes({"/tmp/predictions.csv": valid_csv(ts, F)})),
            frozenset({"bad-archive"}),
            file_name="predictions.zip",
        ),
        H(
            "zip-windows-traversal",
            F,
            _b(lambda ts: zip_bytes({"..\\..\\predictions.csv": valid_csv(ts, F)})),
            frozenset({"bad-archive"}),
            file_name="predictions.zip",
        ),
        H(
            "zip-two-members",
            F,
            _b(lambda ts: zip_bytes({"a.csv": valid_csv(ts, F), "b.csv": valid_csv(ts, F)})),
            frozenset({"bad-archive"}),
            file_name="predictions.zip",
        ),
        H(
            # an empty zip starts PK\x05\x06, not PK\x03\x04: still a zip, one that holds no file
            "zip-no-members",
            F,
            _b(lambda ts: zip_bytes({})),
            frozenset({"bad-archive"}),
            file_name="predictions.zip",
        ),
        H(
            "zip-damaged",
            F,
            _b(lambda ts: zip_bytes({"p.csv": valid_csv(ts, F)})[:300]),
            frozenset({"bad-archive"}),
            file_name="predictions.zip",
        ),
        H("zip-encrypted-flag", F, _b(_encrypted_zip), frozenset({"bad-archive"}), file_name="p.zip"),
        # up to three layers of gzip/zip are a contestant's file and scored; more are bad-archive (_nested)
        H(
            "csv-gz-inside-zip",
            F,
            _b(lambda ts: zip_bytes({"p.csv.gz": gzip.compress(valid_csv(ts, F))})),
            scored_ok=True,
            file_name="p.zip",
        ),
        H("gzip-in-gzip", F, _b(lambda ts: _nested(ts, 2, "g")), scored_ok=True, file_name="p.csv.gz.gz"),
        H("zip-in-zip", F, _b(lambda ts: _nested(ts, 2, "z")), scored_ok=True, file_name="p.zip"),
        H("zip-inside-gzip", F, _b(lambda ts: _nested(ts, 2, "zg")), scored_ok=True, file_name="p.zip.gz"),
        H("nested-gzip-zip-gzip", F, _b(lambda ts: _nested(ts, 3)), scored_ok=True, file_name="p.csv.gz"),
        H("four-layers-gzip-zip", F, _b(lambda ts: _nested(ts, 4)), frozenset({"bad-archive"}), file_name="p.zip"),
        H("forty-gzip-layers", F, _b(_deep_gzip), frozenset({"bad-archive"}), file_name="p.csv.gz"),
        # --- size ---
        H(
            "over-limit-200MB",
            F,
            _big("big-200MB.csv", lambda p: _filled(p, 200 * MiB, b"date,hospital_id,outpatient_visits\n")),
            refusal=(413, "file-too-large"),
        ),
        H(
            "over-limit-200MB-chunked",
            F,
            _big("big-200MB.csv", lambda p: _filled(p, 200 * MiB, b"date,hospital_id,outpatient_visits\n")),
            refusal=(413, "file-too-large"),
            chunked=True,
        ),
        H(
            "one-byte-over-limit",
            F,
            _big("big-50MiB+1.csv", lambda p: _filled(p, 50 * MiB + 1, b"date,hospital_id,outpatient_visits\n")),
            refusal=(413, "file-too-large"),
        ),
    ]


def _encrypted_zip(ts: ContestIds) -> bytes:
    """A good CSV in a zip whose member is marked encrypted (flag bit 0) without being so."""
    raw = valid_csv(ts, FORECAST)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return raw_zip("p.csv", c.compress(raw) + c.flush(), zlib.crc32(raw), len(raw), flags=1)


# --- more files of the cases above ---


def _gbk_cut_mid_character(ts: ContestIds) -> bytes:
    """A GBK file whose last byte is the first half of a two-byte character (a truncated export)."""
    return _gbk(ts) + "内".encode("gbk")[:1]


def _gbk_broken_late(ts: ContestIds) -> bytes:
    """A GBK file whose first 4 MiB are fine (the encoding sniffer reads that much) and then not."""
    head = HEADERS[TRIAGE]
    note = "门诊备注" * 40
    rows = [[*r, note] for r in ts.rows(TRIAGE)]
    data = csv_text([*head, "note"], rows).encode("gbk")
    assert len(data) > 4 * MiB + 1000
    return data[:-200] + b"\x81\x20" + data[-198:]


def _gzip_60mib(path: Path) -> Path:
    """A gzip file of CSV rows (a header, then the same row again and again) expanding to 60 MiB."""
    rows = b"2024-10-01,H0001,1\n" * (MiB // 19)
    with open(path, "wb") as f:
        f.write(gzip.compress(b"date,hospital_id,visits\n"))  # wrong: the checks stop after reading it
        member = gzip.compress(rows, 9)
        for _ in range(60):
            f.write(member)
    return path


def known_bugs() -> list[tuple[Hostile, str]]:
    """Files the checks get wrong today, each with what is wrong and the fix (xfail, strict).

    None at the moment: the nine recorded here before (a file of only a BOM, CR-only line
    endings, a header line over 128 KiB, GBK cut mid-character or broken after 4 MiB, archives
    in archives, the contest's upload limit after decompressing, thousands of extra columns, an
    empty zip) are fixed and are regular cases of :func:`cases`. Add a case here when a bug is
    found before it is fixed.
    """
    return []
