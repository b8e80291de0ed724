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


# --- files the checks once got wrong (tests/hostile_files.py has each as a case for the real service) ---


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("content", [b"\xef\xbb\xbf", b"\xef\xbb\xbf \r\n\t\n"], ids=["bom", "bom-and-blanks"])
def test_a_file_of_only_a_bom_is_empty(submit, content):
    found = problems(submit, content)
    assert set(found) == {"empty-file"}, found


def test_cr_only_line_endings_are_read_as_csv(submit):
    assert submit(GOOD.replace("\n", "\r")).rows == 4
    assert submit(GOOD.replace("\n", "\r").encode("gbk"), name="gbk.csv").rows == 4
    found = problems(submit, "id,visits\r1,10\r2,20,5\r3,0\r4,7\r")  # and ragged: DuckDB cannot read it
    assert set(found) == {"unreadable"}
    assert "LF or CRLF" in found["unreadable"]["message_en"] and "LF 或 CRLF" in found["unreadable"]["message_zh"]


def test_a_header_name_over_128_kib_is_an_extra_column_quoted_short(submit):
    name = "x" * (200 << 10)
    found = problems(submit, GOOD.replace("id,visits\n", f"id,visits,{name}\n", 1).replace("\n1,10", "\n1,10,1"))
    extra = found["extra-column"]
    assert "204,800 characters" in extra["message_en"] and "204,800 个字符" in extra["message_zh"]
    assert "column 3" in extra["message_en"] and "第 3 列" in extra["message_zh"]
    assert len(str(extra)) < 2000 and extra["column"].startswith("xxx")


@pytest.mark.parametrize(
    ("first", "said"),
    [
        ('id,visits,"' + "x" * (200 << 10) + '"', "cannot be read as a CSV header"),  # over the csv module's limit
        ("id,visits," + "x" * (2 << 20), "longer than 1 MiB"),
        ("", "the first line is blank"),
    ],
    ids=["quoted-200KiB-name", "2MiB-line", "blank"],
)
def test_a_header_line_that_cannot_be_read_says_so(submit, first, said):
    found = problems(submit, first + "\n" + GOOD)
    assert set(found) == {"unreadable"}, found
    assert said in found["unreadable"]["message_en"] and "id,visits" in found["unreadable"]["message_en"]
    assert "表头" in found["unreadable"]["message_zh"] and found["unreadable"]["rows"] == [1]


LABELS = Expect(id_columns=("id",), prediction_columns=("科室",), input="label", labels=("内科", "外科"))
GBK = "id,科室\n1,内科\n2,外科\n3,内科\n4,外科\n".encode("gbk")


def test_a_gbk_file_cut_in_the_middle_of_a_character(submit):
    found = problems(submit, GBK + "内".encode("gbk")[:1], LABELS)
    assert set(found) == {"unreadable"}
    bad = found["unreadable"]
    assert "cut short" in bad["message_en"] and "UTF-8" in bad["message_en"] and "不完整" in bad["message_zh"]
    assert bad["rows"] == [6]  # the line after the last newline


def test_a_gbk_file_broken_after_the_part_the_encoding_is_told_from(submit):
    rows = "".join(f"{i},{'内科' if i % 2 else '外科'}\n" for i in range(1, 600_001))
    data = ("id,科室\n" + rows).encode("gbk")
    assert len(data) > 4 << 20  # detect_encoding reads 4 MiB
    cut = data.index(b"\n", 5 << 20) + 1
    line = data[:cut].count(b"\n") + 1
    found = problems(submit, data[:cut] + b"9,\x81\x20\n" + data[cut:], LABELS)
    assert set(found) == {"unreadable"}
    bad = found["unreadable"]
    assert bad["rows"] == [line] and f"line {line}" in bad["message_en"] and f"第 {line} 行" in bad["message_zh"]
    assert "dataset.yaml" not in bad["message_en"] + bad["message_zh"]  # written for a contestant


def test_transcoding_names_the_line_and_byte_across_chunks(tmp_path):
    from sandbox.errors import SourceError
    from sandbox.sources import CHUNK, transcode_to_utf8

    head = "id,科室\n".encode("gbk") + b"1,x\n" * 1000
    head += b"y" * (CHUNK - 1 - len(head))  # a bad pair of bytes that the first chunk cuts in two
    data = head + b"\x81\x20\n" + "2,内科\n".encode("gbk")
    (tmp_path / "in.csv").write_bytes(data)
    with pytest.raises(SourceError) as info:
        transcode_to_utf8(tmp_path / "in.csv", "gb18030", tmp_path / "out.csv")
    assert info.value.details == {"line": 1002, "byte": CHUNK - 1, "truncated": False}
    assert "line 1002" in info.value.en and "第 1002 行" in info.value.zh


@pytest.mark.parametrize(
    "pack",
    [
        lambda b: _zip({"p.csv.gz": gzip.compress(b)}),
        lambda b: gzip.compress(gzip.compress(b)),
        lambda b: _zip({"inner.zip": _zip({"p.csv": b})}),
        lambda b: gzip.compress(_zip({"p.csv": b})),
        lambda b: gzip.compress(_zip({"p.csv.gz": gzip.compress(b)})),
    ],
    ids=["csv.gz-in-zip", "gz-in-gz", "zip-in-zip", "zip-in-gz", "three-layers"],
)
def test_archives_in_archives_up_to_three_layers(submit, tmp_path, pack):
    assert submit(pack(GOOD.encode()), name="sub.bin").rows == 4
    assert list((tmp_path / "work").iterdir()) == []  # every layer deleted


def test_four_layers_are_nested_too_deep_and_leave_nothing_behind(tmp_path):
    from sandbox.submission_checks import unpack

    data = GOOD.encode()
    for i in range(4):
        data = gzip.compress(data) if i % 2 else _zip({"p": data})
    path, work = tmp_path / "sub.bin", tmp_path / "work"
    path.write_bytes(data)
    work.mkdir()
    with pytest.raises(SubmissionInvalid) as info:
        unpack(path, work, REG)
    (bad,) = info.value.problems
    assert bad.code == "bad-archive" and "nested too deep" in bad.en and "嵌套" in bad.zh
    assert list(work.iterdir()) == []
    path.write_bytes(gzip.compress(_zip({"p": GOOD.encode()})))  # two layers: one file left, the last
    assert unpack(path, work, REG).read_bytes() == GOOD.encode() and [p.name for p in work.iterdir()] == ["unpacked-2"]


def test_the_limit_after_decompressing_holds_at_every_layer(submit):
    small = Expect(("id",), ("visits",), "value", max_bytes=50_000, max_uncompressed_bytes=100_000)
    inner = gzip.compress(b"id,visits\n" + b"1,1\n" * 50_000)  # 200 KB of rows
    assert "decompressed-too-large" in problems(submit, _zip({"p.csv.gz": inner}), small)


def test_the_contest_upload_limit_reaches_the_checks():
    from leaderboard import contest, scoring

    c = contest.load()
    for ch in c.challenges:
        assert ch.upload_limit == c.upload_limit == c.upload_limit_mb << 20
        expect = scoring._expect(ch, ())
        assert expect.max_bytes == expect.max_uncompressed_bytes == c.upload_limit


def test_thousands_of_extra_columns_give_twenty_problems_and_a_count(submit):
    from sandbox.submission_checks import PER_CODE

    extra = [f"c{i}" for i in range(2000)]
    header = "id,visits," + ",".join(extra) + "\n"
    row = ",0" * 2000
    with pytest.raises(SubmissionInvalid) as info:
        submit(header + "".join(f"{i},1{row}\n" for i in range(1, 5)))
    listed = info.value.problems
    assert [p.code for p in listed] == ["extra-column"] * (PER_CODE + 1)
    assert [p.column for p in listed[:PER_CODE]] == extra[:PER_CODE]
    assert listed[-1].count == 2000 - PER_CODE and "1,980 more" in listed[-1].en and "1,980" in listed[-1].zh
    assert len(str([p.to_dict() for p in listed])) < 16_000


def test_the_header_is_checked_before_the_rows_are_read(submit):
    # ragged rows that DuckDB would refuse: the header's problem is what the contestant hears
    with pytest.raises(SubmissionInvalid) as info:
        submit("id,visits,,note\n1,1\n2,2,2,2,2\n")
    assert [(p.code, p.column) for p in info.value.problems] == [("extra-column", ""), ("extra-column", "note")]
    assert "column 3 has no name" in info.value.problems[0].en and "第 3 列没有列名" in info.value.problems[0].zh
    found = problems(submit, "id,visits,visits,x,x\n1,1,1,1,1\n")
    assert set(found) == {"duplicate-column", "extra-column"}
    assert "appears 2 times" in found["duplicate-column"]["message_en"]


def test_an_empty_zip_is_a_bad_archive(submit):
    empty = _zip({})
    assert empty.startswith(b"PK\x05\x06")
    found = problems(submit, empty, name="sub.zip")
    assert set(found) == {"bad-archive"}
    assert "holds no file" in found["bad-archive"]["message_en"] and "没有文件" in found["bad-archive"]["message_zh"]


def test_no_message_shows_the_servers_path(submit, tmp_path):
    found = problems(submit, 'id,visits\n1,1\n2,"2\n')
    assert str(tmp_path) not in str(found)
