"""Submission files: each problem a contestant can make, with the code, message and rows they see."""

from __future__ import annotations

import gzip
import io
import zipfile

import duckdb
import openpyxl
import pytest

from sandbox.submission_checks import Expect, SubmissionInvalid, typed_csv, validate_file

TEST_IDS = "SELECT * FROM (VALUES ('1'), ('2'), ('3'), ('4')) t(id)"
REG = Expect(id_columns=("id",), prediction_columns=("visits",), input="value")
PROB = Expect(id_columns=("id",), prediction_columns=("p",), input="probability")
LABEL = Expect(id_columns=("id",), prediction_columns=("mode",), input="label", labels=("air", "train", "bus", "car"))


@pytest.fixture
def submit(tmp_path):
    def run(content: bytes | str, expect: Expect = REG, name: str = "sub.csv"):
        path = tmp_path / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        con = duckdb.connect()
        return validate_file(con, path, tmp_path / "work", expect, TEST_IDS)

    return run


def problems(submit, content, expect=REG, name="sub.csv") -> dict[str, dict]:
    with pytest.raises(SubmissionInvalid) as info:
        submit(content, expect, name)
    out = {p.code: p.to_dict() for p in info.value.problems}
    assert all(p["message_en"] and p["message_zh"] for p in out.values())
    return out


GOOD = "id,visits\n1,10\n2,20.5\n3,0\n4,7\n"


def test_a_good_file_in_every_container(submit, tmp_path):
    assert submit(GOOD).rows == 4
    assert submit(GOOD.encode("utf-8-sig")).rows == 4
    assert submit(gzip.compress(GOOD.encode()), name="sub.csv.gz").rows == 4
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("预测.csv", GOOD)
    assert submit(buf.getvalue(), name="sub.zip").rows == 4
    duckdb.sql("SELECT * FROM (VALUES ('1', 1.0), ('2', 2.0), ('3', 3.0), ('4', 4.0)) t(id, visits)").write_parquet(
        str(tmp_path / "p.parquet")
    )
    assert submit((tmp_path / "p.parquet").read_bytes(), name="renamed.csv").rows == 4  # format from bytes


def test_gbk_file_with_chinese_labels(submit):
    expect = Expect(id_columns=("id",), prediction_columns=("科室",), input="label", labels=("内科", "外科"))
    assert submit("id,科室\n1,内科\n2,外科\n3,内科\n4,内科\n".encode("gbk"), expect).rows == 4
    found = problems(submit, "id,科室\n1,内科\n2,儿科\n3,内科\n4,内科\n".encode("gbk"), expect)
    assert found["unknown-label"]["rows"] == [3]


@pytest.mark.parametrize(
    ("content", "code", "rows"),
    [
        ("", "empty-file", []),
        ("  \n\n", "empty-file", []),
        ("id,visits\n", "no-rows", []),
        ("id,visits,extra\n1,1,x\n2,2,x\n3,3,x\n4,4,x\n", "extra-column", []),
        ("id,visit\n1,1\n2,2\n3,3\n4,4\n", "missing-column", []),
        ("id,visits,visits\n1,1,1\n2,2,2\n3,3,3\n4,4,4\n", "duplicate-column", []),
        ("id,visits\n1,1\n2,2\n2,3\n3,3\n4,4\n", "duplicate-id", [4]),
        ("id,visits\n1,1\n2,2\n9,3\n3,3\n4,4\n", "unknown-id", [4]),
        ("id,visits\n1,1\n2,2\n3,3\n", "missing-id", []),
        ("id,visits\n1,1\n2,abc\n3,\n4,4\n", "not-a-number", [3, 4]),
        ("id,visits\n1,1\n2,NaN\n3,inf\n4,-Infinity\n", "not-finite", [3, 4, 5]),
        ("id,visits\n1,1\n2,2\n3,3\n4,4\n5,5\n6,6\n", "too-many-rows", []),
    ],
    ids=lambda v: v if isinstance(v, str) and "\n" not in v and v else "",
)
def test_each_problem_is_named_with_rows(submit, content, code, rows):
    found = problems(submit, content)
    assert code in found, found
    assert found[code]["rows"] == rows


def test_probabilities_and_labels(submit):
    found = problems(submit, "id,p\n1,0.5\n2,1.2\n3,-0.1\n4,1\n", PROB)
    assert found["probability-range"]["rows"] == [3, 4] and found["probability-range"]["column"] == "p"
    found = problems(submit, "id,mode\n1,air\n2,plane\n3,car\n4,\n", LABEL)
    assert found["unknown-label"]["rows"] == [3, 5] and "air, train, bus, car" in found["unknown-label"]["message_en"]


def test_every_problem_is_reported_at_once(submit):
    found = problems(submit, "id,visits\n1,x\n1,2\n7,3\n")
    assert {"duplicate-id", "unknown-id", "missing-id", "not-a-number"} <= set(found)


def test_size_limits_and_bombs(submit):
    small = Expect(
        id_columns=("id",), prediction_columns=("visits",), input="value", max_bytes=5000, max_uncompressed_bytes=10_000
    )
    assert "file-too-large" in problems(submit, GOOD + "x" * 6000, small)
    bomb = gzip.compress(b"id,visits\n" + b"1,1\n" * 1_000_000)  # 4 MB of rows in about 5 KB
    assert len(bomb) < 5000
    assert "decompressed-too-large" in problems(submit, bomb, small, "bomb.csv.gz")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.csv", b"0" * 200_000)
    assert "decompressed-too-large" in problems(submit, buf.getvalue(), small, "bomb.zip")


def test_bad_archives(submit):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../etc/cron.d/x.csv", GOOD)
    assert (
        "points outside the archive" in problems(submit, buf.getvalue(), name="evil.zip")["bad-archive"]["message_en"]
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.csv", GOOD)
        z.writestr("b.csv", GOOD)
    assert "holds 2 files" in problems(submit, buf.getvalue(), name="two.zip")["bad-archive"]["message_en"]
    assert "bad-archive" in problems(submit, b"PK\x03\x04 not really a zip", name="broken.zip")
    assert "unreadable" in problems(submit, b"\x1f\x8b\x08 broken gzip", name="broken.gz")


def test_excel_file_renamed_to_csv_and_binary_junk(submit, tmp_path):
    wb = openpyxl.Workbook()
    wb.active.append(["id", "visits"])
    wb.save(tmp_path / "book.xlsx")
    found = problems(submit, (tmp_path / "book.xlsx").read_bytes(), name="book.csv")
    assert set(found) & {"bad-archive", "unreadable"}  # an .xlsx is a zip of XML parts, not one CSV
    assert "unreadable" in problems(submit, b"id,visits\n1,\x00\x00\n")
    assert "unreadable" in problems(submit, bytes(range(256)) * 10)


def test_empty_ids_are_one_id_repeated_and_not_in_the_test_set(submit):
    found = problems(submit, "id,visits\n,1\n,2\n3,3\n4,4\n")
    assert found["duplicate-id"]["rows"] == [3] and found["duplicate-id"]["count"] == 1
    assert found["unknown-id"]["rows"] == [2, 3] and found["missing-id"]["count"] == 2


@pytest.mark.parametrize(
    ("content", "typed"),
    [
        (GOOD, True),
        ("\ufeffvisits,id\r\n10,1\r\n", True),  # a BOM, CRLF and another column order
        ('"id","visits"\n1,10\n', False),  # quoted names: left to the full reader
        ("id, visits\n1,10\n", False),
        ("id,visits,extra\n1,10,x\n", False),
        ("id\n1\n", False),
    ],
    ids=["plain", "bom-crlf", "quoted", "space", "extra", "missing"],
)
def test_the_typed_read_takes_only_the_plainest_csv(tmp_path, content, typed):
    path = tmp_path / "sub.csv"
    path.write_bytes(content.encode("utf-8"))
    sql = typed_csv(path, REG, {"id": "VARCHAR", "visits": "DOUBLE"})
    assert (sql is not None) == typed
    if typed:
        rows = duckdb.connect().execute(f"SELECT id, visits FROM {sql}").fetchall()
        assert rows[0] == ("1", 10.0)


def test_the_typed_read_fails_where_the_full_check_has_something_to_say(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text("id,visits\n1,10\n2,abc\n", "utf-8")
    sql = typed_csv(path, REG, {"id": "VARCHAR", "visits": "DOUBLE"})
    with pytest.raises(duckdb.Error):
        duckdb.connect().execute(f"SELECT * FROM {sql}").fetchall()
