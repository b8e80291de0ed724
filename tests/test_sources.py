"""Raw sources as Chinese portals publish them: GBK, BOMs, Excel, JSON, custom date formats."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import openpyxl
import pytest
from factories import field, table

from sandbox.errors import SourceError

CN_FIELDS = [
    field("hospital_id", source_name="医院编码", constraints={"required": True}),
    field("name", source_name="医院名称"),
    field("province", source_name="省份", constraints={"enum": ["北京", "广东"]}),
    field("beds", "integer", source_name="床位数", constraints={"minimum": 0}),
]
CN_CSV = "医院编码,医院名称,省份,床位数\nH0001,北京协和医院,北京,2000\nH0002,中山大学附属第一医院,广东,3000\n"


def _published(paths, ds_id: str, tname: str) -> list[tuple]:
    return duckdb.sql(f"SELECT * FROM '{paths.data_root}/{ds_id}/latest/{tname}.parquet'").fetchall()


@pytest.mark.parametrize("declared", ["gbk", "auto"])
def test_gbk_csv_with_chinese_headers_and_values(make_dataset, build, paths, declared):
    raw = CN_CSV.encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the file really is GBK, not UTF-8
    ds = make_dataset(
        {"h": table(CN_FIELDS, "h.csv", primaryKey=["hospital_id"], source={"encoding": declared})}, {"h.csv": raw}
    )
    result = build(ds)
    assert result.status == "built", result.error and result.error.en
    assert _published(paths, ds.id, "h") == [
        ("H0001", "北京协和医院", "北京", 2000),
        ("H0002", "中山大学附属第一医院", "广东", 3000),
    ]
    catalog = json.loads((paths.data_root / ds.id / "latest" / "catalog.json").read_text("utf-8"))
    # Both: what the descriptor declares, and the codec that read it (GB18030 reads every GBK file).
    source = catalog["tables"]["h"]["source"]
    assert (source["encoding"], source["decoded_as"]) == (declared, "gb18030")


def test_gbk_file_with_a_bad_byte_names_the_line(make_dataset, build):
    raw = CN_CSV.encode("gbk") + b"H0003,\x81\x20bad,\xe5\x8c\x97,1\n"
    ds = make_dataset({"h": table(CN_FIELDS, "h.csv", source={"encoding": "gbk"})}, {"h.csv": raw})
    result = build(ds)
    assert result.status == "failed" and isinstance(result.error, SourceError)
    assert "line 4" in result.error.en and "GB18030" in result.error.en
    assert "第 4 行" in result.error.zh


def test_utf8_with_bom_excel_export(make_dataset, build, paths):
    ds = make_dataset(
        {"h": table(CN_FIELDS, "h.csv", source={"encoding": "utf-8-sig"})}, {"h.csv": CN_CSV.encode("utf-8-sig")}
    )
    assert build(ds).status == "built"
    assert _published(paths, ds.id, "h")[0][0] == "H0001"


def test_header_mismatch_lists_every_label_problem(make_dataset, build):
    ds = make_dataset({"h": table(CN_FIELDS, "h.csv")}, {"h.csv": "医院编码,医院名称,省,床位数,备注\nH1,a,北京,1,x\n"})
    result = build(ds)
    assert result.status == "failed"
    assert "missing-label: column '省份'" in result.error.en
    assert "extra-label: column '省'" in result.error.en and "extra-label: column '备注'" in result.error.en
    assert "表头" in result.error.zh


def test_empty_file_is_refused_with_a_message(make_dataset, build):
    ds = make_dataset({"h": table(CN_FIELDS, "h.csv")}, {"h.csv": b""})
    result = build(ds)
    assert result.status == "failed" and "empty" in result.error.en


def test_xlsx_with_typed_cells_and_text_dates(make_dataset, build, paths, tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "数据"
    ws.append(["月份", "城市", "就业人数", "平均工资", "登记日期"])
    ws.append(["2024-01", "杭州", 1520.0, 8123.5, dt.datetime(2024, 2, 3)])
    ws.append(["2024-02", "宁波", 980, 7001, dt.datetime(2024, 3, 1)])
    ws.append(["2024-13", "温州", "n/a", 6000, None])
    path = tmp_path / "e.xlsx"
    wb.save(path)
    fields = [
        field("month", "date", source_name="月份", format="%Y-%m"),
        field("city", source_name="城市"),
        field("employed", "integer", source_name="就业人数"),
        field("wage", "number", source_name="平均工资"),
        field("registered", "date", source_name="登记日期"),
    ]
    ds = make_dataset(
        {"e": table(fields, "e.xlsx", fmt="xlsx", on_error="quarantine", source={"sheet": "数据"})},
        {"e.xlsx": path.read_bytes()},
    )
    result = build(ds)
    assert result.status == "built", result.error and result.error.en
    assert _published(paths, ds.id, "e") == [
        (dt.date(2024, 1, 1), "杭州", 1520, 8123.5, dt.date(2024, 2, 3)),
        (dt.date(2024, 2, 1), "宁波", 980, 7001.0, dt.date(2024, 3, 1)),
    ]
    errors = json.loads((paths.data_root / ds.id / "latest" / "catalog.json").read_text("utf-8"))["tables"]["e"][
        "quality"
    ]["errors"]
    assert {(e["code"], e["field"]) for e in errors} == {("type-error", "month"), ("type-error", "employed")}
    assert all(e["examples"][0]["row"] == 4 for e in errors)


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_json_and_ndjson(make_dataset, build, paths, fmt):
    rows = [
        {"date": "2024-10-01", "spot": "故宫", "visitors": 80000},
        {"date": "2024-10-02", "spot": "故宫", "visitors": "很多"},
        {"date": "2024-10-03", "spot": "故宫", "visitors": 75000},
    ]
    text = (
        json.dumps(rows, ensure_ascii=False)
        if fmt == "json"
        else "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    )
    fields = [field("date", "date"), field("spot"), field("visitors", "integer", constraints={"minimum": 0})]
    ds = make_dataset(
        {"v": table(fields, f"v.{fmt}", fmt=fmt, primaryKey=["date", "spot"], on_error="quarantine")},
        {f"v.{fmt}": text},
    )
    assert build(ds).status == "built"
    assert _published(paths, ds.id, "v") == [
        (dt.date(2024, 10, 1), "故宫", 80000),
        (dt.date(2024, 10, 3), "故宫", 75000),
    ]


def test_broken_json_is_a_source_error(make_dataset, build):
    ds = make_dataset({"v": table([field("a")], "v.json", fmt="json")}, {"v.json": '[{"a": 1}, {"a": '})
    result = build(ds)
    assert result.status == "failed" and isinstance(result.error, SourceError)
    assert "v.json" in result.error.en


def test_missing_values_and_semicolons(make_dataset, build, paths):
    fields = [field("id", "integer"), field("x", "number")]
    ds = make_dataset(
        {"t": table(fields, primaryKey=["id"], missingValues=["", "NA", "-"], source={"delimiter": ";"})},
        {"data.csv": "id;x\n1;NA\n2;-\n3;2.5\n"},
    )
    assert build(ds).status == "built"
    assert _published(paths, ds.id, "t") == [(1, None), (2, None), (3, 2.5)]


def test_json_keys_are_checked_like_a_header(make_dataset, build):
    text = "\n".join(json.dumps(r) for r in [{"date": "2024-01-01", "n": 1, "temprature": 3}] * 3)
    fields = [field("date", "date"), field("n", "integer"), field("temperature", "number")]
    ds = make_dataset({"t": table(fields, "t.ndjson", fmt="ndjson")}, {"t.ndjson": text})
    result = build(ds)
    assert result.status == "failed"
    assert "missing-label: column 'temperature'" in result.error.en
    assert "extra-label: column 'temprature'" in result.error.en


def test_json_rows_are_numbered_from_the_first_record(make_dataset, build, paths):
    rows = [{"id": 1, "n": 5}, {"id": 2, "n": -1}, {"id": 3, "n": 7}]
    fields = [field("id", "integer"), field("n", "integer", constraints={"minimum": 0})]
    ds = make_dataset(
        {"t": table(fields, "t.json", fmt="json", primaryKey=["id"], on_error="quarantine")},
        {"t.json": json.dumps(rows)},
    )
    assert build(ds).status == "built"
    errors = json.loads((paths.data_root / ds.id / "latest" / "catalog.json").read_text("utf-8"))["tables"]["t"][
        "quality"
    ]["errors"]
    assert [e["examples"][0]["row"] for e in errors] == [2]


def test_row_numbers_stay_exact_on_large_parallel_reads(make_dataset, build, paths, tmp_path):
    """A long enum list must not reorder rows (DuckDB would plan it as a join): row 250,002 is named."""
    depts = [f"科室{i}" for i in range(12)]
    src = tmp_path / "big.csv"
    duckdb.sql(
        f"COPY (SELECT i AS id, {depts!r}[1 + i % 12] AS dept, i % 97 AS n FROM range(300000) t(i)) TO '{src}' (HEADER)"
    ).fetchall()
    lines = src.read_text("utf-8").splitlines()
    lines[250_001] = lines[250_001].replace("科室", "外院", 1)  # spreadsheet row 250,002
    fields = [field("id", "integer"), field("dept", constraints={"enum": depts}), field("n", "integer")]
    ds = make_dataset(
        {"t": table(fields, primaryKey=["id"], on_error="quarantine")}, {"data.csv": "\n".join(lines) + "\n"}
    )
    assert build(ds).status == "built"
    doc = json.loads((paths.data_root / ds.id / "latest" / "catalog.json").read_text("utf-8"))
    (error,) = doc["tables"]["t"]["quality"]["errors"]
    assert error["examples"] == [{"row": 250_002, "value": lines[250_001].split(",")[1]}]
    ids = duckdb.sql(f"SELECT id FROM '{paths.data_root}/{ds.id}/latest/t.parquet'").fetchnumpy()["id"]
    assert len(ids) == 299_999 and (ids[1:] > ids[:-1]).all()  # published in key order
