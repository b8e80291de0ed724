"""Validation: every Frictionless error code on a small crafted file, with the rows a person sees."""

from __future__ import annotations

import duckdb
import pytest
from factories import field, table

from sandbox.errors import QualityGateError

PEOPLE_FIELDS = [
    field("id", "integer"),
    field("name", constraints={"required": True}),
    field("age", "integer", constraints={"minimum": 0, "maximum": 120}),
    field("city", constraints={"enum": ["北京", "上海"]}),
    field("code", constraints={"pattern": "[A-Z]{2}[0-9]{2}", "minLength": 4}),
    field("email", constraints={"unique": True}),
]
# Spreadsheet row numbers (header = row 1) are in the comments; the assertions use them.
PEOPLE_CSV = (
    "\n".join(
        [
            "id,name,age,city,code,email",
            "1,张三,30,北京,AB12,a@x",  # 2 ok
            "2,李四,abc,上海,CD34,b@x",  # 3 type-error (age)
            "3,,40,北京,EF56,c@x",  # 4 constraint-error: name required
            "4,王五,130,北京,GH78,d@x",  # 5 constraint-error: age maximum
            "5,赵六,20,广州,IJ90,e@x",  # 6 constraint-error: city enum
            "6,钱七,25,上海,bad,f@x",  # 7 constraint-error: code pattern and minLength
            "7,孙八,26,上海,KL12,z@x",  # 8 ok
            "7,周九,27,北京,MN34,g@x",  # 9 primary-key (7 again)
            "8,吴十,28",  # 10 missing-cell
            "9,郑一,29,北京,OP56,h@x,extra",  # 11 extra-cell
            ",,,,,",  # 12 blank-row
            "10,冯二,31,北京,QR78,a@x",  # 13 unique-error (email a@x again)
            "11,陈三,-1,上海,ST90,i@x",  # 14 constraint-error: age minimum
            "10,冯二,31,北京,QR78,a@x",  # 15 duplicate-row of 13 (and primary-key, unique-error)
        ]
    )
    + "\n"
)


def _finding(report: dict, code: str, field_name: str | None = None) -> dict:
    found = [e for e in report["errors"] if e["code"] == code and (field_name is None or e["field"] == field_name)]
    assert found, f"no {code} {field_name or ''} in {[(e['code'], e['field']) for e in report['errors']]}"
    return found[0]


@pytest.fixture
def people_report(make_dataset, build, paths) -> dict:
    ds = make_dataset(
        {"people": table(PEOPLE_FIELDS, "people.csv", primaryKey=["id"], on_error="quarantine")},
        {"people.csv": PEOPLE_CSV},
    )
    result = build(ds)
    assert result.status == "built", result.error and result.error.en
    from sandbox.catalog import entry

    return entry(paths.data_root, ds.id)["tables"]["people"]


@pytest.mark.parametrize(
    ("code", "field_name", "rows"),
    [
        ("type-error", "age", [3]),
        ("constraint-error", "name", [4]),
        ("constraint-error", "city", [6]),
        ("missing-cell", None, [10]),
        ("extra-cell", None, [11]),
        ("blank-row", None, [12]),
        ("primary-key", "id", [9, 15]),
        ("unique-error", "email", [13, 15]),
        ("duplicate-row", None, [15]),
    ],
    ids=lambda v: str(v) if not isinstance(v, list) else "",
)
def test_each_error_code_names_its_rows(people_report, code, field_name, rows):
    finding = _finding(people_report["quality"], code, field_name)
    assert [e["row"] for e in finding["examples"]] == rows
    assert finding["count"] == len(rows)
    assert finding["message_en"] and finding["message_zh"]


def test_numeric_and_text_constraints_are_reported_per_rule(people_report):
    errors = [e for e in people_report["quality"]["errors"] if e["code"] == "constraint-error"]
    by_message = {e["message_en"]: [x["row"] for x in e["examples"]] for e in errors}
    assert by_message["field 'age': value is above the maximum 120"] == [5]
    assert by_message["field 'age': value is below the minimum 0"] == [14]
    assert by_message["field 'code': value does not match the pattern [A-Z]{2}[0-9]{2}"] == [7]
    assert by_message["field 'code': text shorter than 4 characters"] == [7]
    assert by_message["field 'city': value is not one of 北京, 上海"] == [6]


def test_quarantine_publishes_only_good_rows_and_keeps_every_bad_one(people_report, paths):
    q = people_report["quality"]
    assert q["rows_read"] == 14
    # rows 2 and 8 are the only clean ones
    assert people_report["rows"] == 2
    published = duckdb.sql(f"SELECT id FROM '{paths.data_root}/*/latest/people.parquet' ORDER BY id").fetchall()
    assert published == [(1,), (7,)]
    quarantined = list((paths.private_root / "quarantine").rglob("people.parquet"))
    assert len(quarantined) == 1 and q["quarantine_file"] == str(quarantined[0].relative_to(paths.private_root))
    # Every bad row is kept, also those the CSV reader could not split or type (3, 10, 11).
    assert q["rows"] == {"read": 14, "published": 2, "test": 0, "quarantined": 12, "suppressed": 0, "withheld": 0}
    rows = {
        r["source_row"]: r
        for r in duckdb.sql(f"SELECT * FROM '{quarantined[0]}' ORDER BY source_row").df().to_dict("records")
    }
    assert list(rows) == [3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15]

    def codes(row: int) -> list[tuple[str, str | None]]:
        return sorted((e["code"], e["field"]) for e in rows[row]["errors"])

    assert codes(3) == [("type-error", "age")] and rows[3]["raw"] == "2,李四,abc,上海,CD34,b@x"
    assert rows[3]["name"] == "李四" and rows[3]["age"] == "abc"  # the cells of a rejected line, as written
    assert codes(4) == [("constraint-error", "name")] and rows[4]["raw"] == "3,,40,北京,EF56,c@x"
    assert codes(7) == [("constraint-error", "code"), ("constraint-error", "code")]
    assert codes(10) == [("missing-cell", None)] and rows[10]["raw"] == "8,吴十,28"
    assert codes(11) == [("extra-cell", None)] and rows[11]["raw"] == "9,郑一,29,北京,OP56,h@x,extra"
    assert codes(12) == [("blank-row", None)]
    assert codes(15) == [("duplicate-row", None), ("primary-key", "id"), ("unique-error", "email")]
    assert rows[15]["raw"] == "10,冯二,31,北京,QR78,a@x" and rows[15]["city"] == "北京"


def test_failing_table_names_row_and_rule_and_keeps_nothing(make_dataset, build, paths):
    csv = "id,age\n1,30\n2,abc\n3,200\n"
    ds = make_dataset(
        {
            "t": table(
                [field("id", "integer"), field("age", "integer", constraints={"maximum": 120})], primaryKey=["id"]
            )
        },
        {"data.csv": csv},
    )
    result = build(ds)
    assert result.status == "failed"
    assert isinstance(result.error, QualityGateError)
    assert "2 bad row(s)" in result.error.en
    assert "type-error ×1" in result.error.en and "constraint-error ×1" in result.error.en
    assert "row 3" in result.error.en and "on_error: quarantine" in result.error.en
    assert "第 3 行" in result.error.zh
    assert not (paths.data_root / ds.id / "latest").exists()
    assert list((paths.private_root / "reports" / ds.id).glob("*-failed.json"))


def test_private_values_never_appear_in_the_published_report(make_dataset, build, paths):
    csv = "id,phone,note\n1,13800000000,ok\n2,not-a-phone,x\n"
    fields = [
        field("id", "integer"),
        field("phone", constraints={"pattern": "1[0-9]{10}"}, privacy={"class": "direct", "rule": "drop"}),
        field("note", constraints={"enum": ["ok"]}),
    ]
    ds = make_dataset({"t": table(fields, primaryKey=["id"], on_error="quarantine")}, {"data.csv": csv})
    assert build(ds).status == "built"
    text = (paths.data_root / ds.id / "latest" / "catalog.json").read_text("utf-8")
    assert "not-a-phone" not in text and "13800000000" not in text
    assert '"value": "<redacted>"' in text
    assert '"value": "x"' in text  # ordinary fields show the value that broke the rule


def test_foreign_key_to_another_table(make_dataset, build, paths):
    ds = make_dataset(
        {
            "hospitals": table([field("hid")], "h.csv", primaryKey=["hid"]),
            "visits": table(
                [field("vid", "integer"), field("hid")],
                "v.csv",
                primaryKey=["vid"],
                foreignKeys=[{"fields": ["hid"], "reference": {"resource": "hospitals", "fields": ["hid"]}}],
                on_error="quarantine",
            ),
        },
        {"h.csv": "hid\nH1\nH2\n", "v.csv": "vid,hid\n1,H1\n2,H9\n3,H2\n4,\n"},
    )
    assert build(ds).status == "built"
    from sandbox.catalog import entry

    fk = _finding(entry(paths.data_root, ds.id)["tables"]["visits"]["quality"], "foreign-key")
    assert [e["row"] for e in fk["examples"]] == [3]
    assert "hospitals(hid)" in fk["message_en"]


def test_invalid_utf8_row_is_an_encoding_error(make_dataset, build, paths):
    raw = b"id,name\n1,ok\n2,bad\xff\xfe\n3,fine\n"
    ds = make_dataset(
        {
            "t": table(
                [field("id", "integer"), field("name")],
                primaryKey=["id"],
                source={"encoding": "utf-8"},
                on_error="quarantine",
            )
        },
        {"data.csv": raw},
    )
    assert build(ds).status == "built"
    from sandbox.catalog import entry

    t = entry(paths.data_root, ds.id)["tables"]["t"]
    assert [e["row"] for e in _finding(t["quality"], "encoding-error")["examples"]] == [3]
    assert t["rows"] == 2
