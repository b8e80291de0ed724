"""A new publisher's path, on a file made for the test: a GBK CSV with CRLF line ends, Chinese
headers and planted errors, and the Frictionless Table Schema a data team wrote for it.

``contesthub datasets init`` drafts the descriptor, ``validate`` asks for every privacy class,
the filled-in descriptor builds, and no row is lost: published + quarantined = read, each bad
row kept with its source row number, its error codes and its raw text, and ``datasets show``
says where.
"""

from __future__ import annotations

import json

import duckdb
import yaml

from sandbox.scaffold import field_name, sniff_encoding

HEADER = "就诊编号,就诊日期,年龄,费用（元）,性别,备注"
ROWS = [
    "1,2024/03/01,34,12.5,男,复诊",  # row 2
    "2,2024/03/02,七十,8,女,",  # row 3: an age the reader cannot parse
    "3,2024/03/03,40,NA,女,",  # row 4: NA is a missing value
    "4,2024/03/04,130,20,男,",  # row 5: above the maximum age
    "5,2024/03/05,52,15,其他,",  # row 6: not an allowed gender
    "5,2024/03/06,53,16,女,",  # row 7: the visit number repeats
    "6,2024/13/07,41,9.5,男,",  # row 8: no 13th month
    "7,2024/03/08,28",  # row 9: missing cells
    "8,2024/03/09,61,30,女,首诊",  # row 10
]
SCHEMA = {
    "fields": [
        {"name": "就诊编号", "type": "integer", "title": "就诊编号", "constraints": {"required": True}},
        {"name": "就诊日期", "type": "date", "format": "%Y/%m/%d", "title": "就诊日期"},
        {"name": "年龄", "type": "integer", "title": "年龄", "constraints": {"minimum": 0, "maximum": 120}},
        {"name": "费用（元）", "type": "number", "title": "Visit cost", "description": "元"},
        {"name": "性别", "type": "string", "title": "性别", "constraints": {"enum": ["男", "女"]}},
        {"name": "备注", "type": "string", "title": "Note"},
    ],
    "primaryKey": ["就诊编号"],
    "missingValues": ["", "NA"],
}
CLASSES = {
    "jiu_zhen_bian_hao": {"class": "direct", "rule": "hash"},
    "jiu_zhen_ri_qi": {"class": "quasi", "rule": "month"},
    "nian_ling": {"class": "quasi", "rule": "age_band", "width": 10},
    "fei_yong_yuan": {"class": "sensitive"},
    "xing_bie": {"class": "quasi"},
    "bei_zhu": {"class": "sensitive"},
}


def _raw(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    source = raw / "门诊记录.csv"
    source.write_bytes(("\r\n".join([HEADER, *ROWS]) + "\r\n").encode("gbk"))
    schema = raw / "schema.json"
    schema.write_text(json.dumps(SCHEMA, ensure_ascii=False), "utf-8")
    return source, schema


def test_encodings_are_sniffed(tmp_path):
    for encoding, data, expected in [
        ("utf-8", "年龄\n3\n".encode(), "utf-8"),
        ("utf-8-sig", "年龄\n3\n".encode("utf-8-sig"), "utf-8-sig"),
        ("gbk", "年龄\n3\n".encode("gbk"), "gbk"),
        ("gb18030", "年龄,𠀀\n3,4\n".encode("gb18030"), "gb18030"),  # a character GBK does not have
    ]:
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes(data)
        assert sniff_encoding(path) == expected, encoding


def test_chinese_headers_become_ascii_field_names():
    taken: set[str] = set()
    names = [field_name(h, taken) for h in ["年龄", "费用（元）", "2024年门诊量", "Visit Date", "年龄"]]
    assert names == ["nian_ling", "fei_yong_yuan", "c_2024_nian_men_zhen_liang", "visit_date", "nian_ling_2"]


def test_init_validate_build_show_from_a_gbk_file_and_its_table_schema(run_cli, paths, tmp_path):
    source, schema = _raw(tmp_path)
    result = run_cli("datasets", "init", "clinic", "--source", str(source), "--schema", str(schema))
    assert result.exit_code == 0, result.output
    descriptor = paths.datasets_dir / "clinic" / "dataset.yaml"
    assert f"wrote {descriptor}" in result.output
    doc = yaml.safe_load(descriptor.read_text("utf-8"))
    (tname,) = doc["tables"]
    t = doc["tables"][tname]
    assert tname == "men_zhen_ji_lu"
    assert t["source"] == {"path": "../../raw/门诊记录.csv", "format": "csv", "encoding": "gbk"}
    fields = {f["name"]: f for f in t["schema"]["fields"]}
    assert list(fields) == list(CLASSES)
    assert fields["nian_ling"] == {
        "name": "nian_ling",
        "source_name": "年龄",
        "type": "integer",
        "title": {"zh": "年龄", "en": "nian ling"},
        "constraints": {"minimum": 0, "maximum": 120},
        "privacy": {},
    }
    assert fields["jiu_zhen_ri_qi"]["format"] == "%Y/%m/%d" and fields["jiu_zhen_ri_qi"]["type"] == "date"
    assert fields["fei_yong_yuan"]["title"] == {"zh": "费用（元）", "en": "Visit cost"}
    assert fields["bei_zhu"]["title"] == {"zh": "备注", "en": "Note"}
    assert t["schema"]["primaryKey"] == ["jiu_zhen_bian_hao"] and t["schema"]["missingValues"] == ["", "NA"]

    # validate asks for every privacy class, by field name
    asked = run_cli("datasets", "validate", "clinic")
    assert asked.exit_code == 1
    for i, name in enumerate(CLASSES):
        assert f"tables.men_zhen_ji_lu.schema.fields[{i}].privacy: field {name!r} has no privacy class" in asked.output

    # The publisher fills them in (and names the person key: each row is one patient's visit).
    for f in t["schema"]["fields"]:
        f["privacy"] = CLASSES[f["name"]]
    t["privacy"] = {"person": "jiu_zhen_bian_hao", "risk": {"average": 0.6}}
    t["k_anonymity"] = {"k": 2, "on_small_groups": "suppress"}
    text = descriptor.read_text("utf-8")
    descriptor.write_text(text[: text.index("id: clinic")] + yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    ok = run_cli("datasets", "validate", "clinic")
    assert ok.exit_code == 0, ok.output

    built = run_cli("datasets", "build", "clinic", "--json")
    assert built.exit_code == 0, built.output
    shown = json.loads(run_cli("datasets", "show", "clinic", "--json").output)
    table = shown["tables"]["men_zhen_ji_lu"]
    rows = table["quality"]["rows"]
    assert rows["read"] == 9 and rows["quarantined"] == 6
    assert rows["published"] + rows["quarantined"] + rows["suppressed"] == rows["read"]
    assert table["source"]["encoding"] == "gbk" and table["source"]["decoded_as"] == "gb18030"

    (quarantine,) = (paths.private_root / "quarantine" / "clinic").rglob("*.parquet")
    kept = duckdb.sql(f"SELECT source_row, errors, raw FROM '{quarantine}' ORDER BY source_row").fetchall()
    assert [(r[0], sorted(e["code"] for e in r[1])) for r in kept] == [
        (3, ["type-error"]),
        (5, ["constraint-error"]),
        (6, ["constraint-error"]),
        (7, ["primary-key"]),
        (8, ["type-error"]),
        (9, ["missing-cell"]),
    ]
    assert kept[0][1] == [{"code": "type-error", "field": "nian_ling"}] and kept[0][2] == "2,2024/03/02,七十,8,女,"
    assert kept[5][2] == "7,2024/03/08,28"

    # The type error names the field (not the header), its declared type and, quoted privately, the value.
    errors = {(e["code"], e["field"]): e for e in table["quality"]["errors"]}
    age = errors[("type-error", "nian_ling")]
    assert age["message_en"] == "field 'nian_ling': value cannot be read as the declared type integer"
    assert age["message_zh"] == "字段 'nian_ling'：值无法按声明的类型 integer 读取"
    assert age["examples"] == [{"row": 3, "value": "<redacted>"}]  # age is a quasi-identifier
    date = errors[("type-error", "jiu_zhen_ri_qi")]
    assert date["message_en"].endswith("the declared type date in the format %Y/%m/%d")

    text = run_cli("datasets", "show", "clinic")
    assert text.exit_code == 0
    assert "source: 门诊记录.csv (csv, gbk, read as gb18030)" in text.output
    assert f"quarantine: 6 bad rows (source row, error codes, raw text) in {quarantine}" in text.output
    assert "rows: 9 read = " in text.output and "6 quarantined" in text.output


def test_a_failing_type_error_names_the_field_the_declared_type_and_the_value(make_dataset, build):
    from factories import field, table

    ds = make_dataset(
        {"t": table([field("id", "integer"), field("beds", "integer", source_name="床位数")], primaryKey=["id"])},
        {"data.csv": "id,床位数\n1,20\n2,二十\n".encode("gbk")},
    )
    result = build(ds)
    assert result.status == "failed"
    assert (
        "first: row 3, field 'beds': value cannot be read as the declared type integer (value '二十')"
        in result.error.en
    )
    assert "第一处：第 3 行，字段 'beds'：值无法按声明的类型 integer 读取（值 '二十'）" in result.error.zh


def test_init_refuses_to_replace_a_descriptor_and_other_formats(run_cli, paths, tmp_path):
    source, _ = _raw(tmp_path)
    assert run_cli("datasets", "init", "clinic", "--source", str(source)).exit_code == 0
    again = run_cli("datasets", "init", "clinic", "--source", str(source))
    assert again.exit_code == 1 and "exists already" in again.output
    xlsx = tmp_path / "book.xlsx"
    xlsx.write_bytes(b"PK")
    other = run_cli("datasets", "init", "book", "--source", str(xlsx))
    assert other.exit_code == 1 and "init reads CSV files" in other.output
    bad = run_cli("datasets", "init", "Bad-Id", "--source", str(source))
    assert bad.exit_code == 1 and "is not a dataset id" in bad.output
