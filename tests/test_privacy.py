"""De-identification rules and the k-anonymity gate, read from the published files."""

from __future__ import annotations

import hashlib

import duckdb
import pytest
from factories import field, table

from sandbox.errors import DescriptorError, PrivacyGateError
from sandbox.privacy import load_salt


def _rows(n_per_group: dict[tuple[str, int], int]) -> str:
    lines, i = ["pid,name,id_card,gender,age,visit,area,fee"], 0
    for (gender, age), n in n_per_group.items():
        for _ in range(n):
            i += 1
            lines.append(
                f"P{i:04d},姓名{i},11010119800101{i:04d},{gender},{age},2024-03-{1 + i % 28:02d},110105,{i * 10}.5"
            )
    return "\n".join(lines) + "\n"


FIELDS = [
    field("pid", privacy={"class": "direct", "rule": "hash"}),
    field("name", privacy={"class": "direct", "rule": "drop"}),
    field("id_card", privacy={"class": "direct", "rule": "drop"}),
    field("gender", privacy={"class": "quasi", "rule": "keep"}),
    field("age", "integer", privacy={"class": "quasi", "rule": "age_band", "width": 5, "top_code": 90}),
    field("visit", "date", privacy={"class": "quasi", "rule": "month"}),
    field("area", privacy={"class": "quasi", "rule": "truncate", "length": 4}),
    field("fee", "number", privacy={"class": "sensitive", "rule": "top_code", "top_code": 50}),
]


def test_published_columns_are_de_identified(make_dataset, build, paths):
    csv = _rows({("男", 33): 12, ("女", 94): 11})
    ds = make_dataset({"p": table(FIELDS, "p.csv")}, {"p.csv": csv})
    result = build(ds)
    assert result.status == "built", result.error and result.error.en
    con = duckdb.connect()
    rel = f"'{paths.data_root}/{ds.id}/latest/p.parquet'"
    assert [d[0] for d in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()] == [
        "pid",
        "gender",
        "age",
        "visit",
        "area",
        "fee",
    ]  # name and id_card are gone
    rows = con.execute(f"SELECT pid, gender, age, visit, area, fee FROM {rel} ORDER BY fee").fetchall()
    assert {r[2] for r in rows} == {"30-34", "90+"}
    assert {r[3] for r in rows} == {"2024-03"}
    assert {r[4] for r in rows} == {"1101"}
    assert max(r[5] for r in rows) == 50  # top-coded
    # the pseudonym is the salted SHA-256, not the raw id and not an unsalted hash
    salt = load_salt(paths.private_root)
    assert rows[0][0] == hashlib.sha256(f"{salt}P0001".encode()).hexdigest()[:20]
    assert rows[0][0] != hashlib.sha256(b"P0001").hexdigest()[:20]
    text = b"".join(p.read_bytes() for p in (paths.data_root / ds.id).rglob("*") if p.is_file())
    for secret in ("姓名1".encode(), b"110101198001010001", b"P0001", salt.encode()):
        assert secret not in text


def test_salt_is_private_and_stable(paths):
    first = load_salt(paths.private_root)
    assert len(first) == 64 and load_salt(paths.private_root) == first
    salt_path = paths.private_root / "secrets" / "hash_salt"
    assert salt_path.stat().st_mode & 0o777 == 0o600
    assert not salt_path.is_relative_to(paths.data_root)


def test_small_groups_are_refused_with_advice(make_dataset, build, paths):
    ds = make_dataset({"p": table(FIELDS, "p.csv")}, {"p.csv": _rows({("男", 33): 12, ("女", 94): 3})})
    result = build(ds)
    assert result.status == "failed" and isinstance(result.error, PrivacyGateError)
    assert (
        "1 combination(s) of (gender, age, visit, area) occur in fewer than 11 rows (3 rows in all)" in result.error.en
    )
    assert "on_small_groups: suppress" in result.error.en and "少于 11 行" in result.error.zh
    assert not (paths.data_root / ds.id / "latest").exists()


def test_small_groups_are_suppressed_when_the_descriptor_says_so(make_dataset, build, paths):
    ds = make_dataset(
        {"p": table(FIELDS, "p.csv", k_anonymity={"k": 11, "on_small_groups": "suppress"})},
        {"p.csv": _rows({("男", 33): 12, ("女", 94): 3, ("女", 41): 5})},
    )
    result = build(ds)
    assert result.status == "built"
    assert result.tables[0].suppressed == 8 and result.tables[0].rows == 12
    groups = duckdb.sql(
        f"SELECT gender, age, count(*) FROM '{paths.data_root}/{ds.id}/latest/p.parquet' GROUP BY ALL"
    ).fetchall()
    assert groups == [("男", "30-34", 12)]


def test_k_is_configurable(make_dataset, build):
    ds = make_dataset({"p": table(FIELDS, "p.csv", k_anonymity={"k": 20})}, {"p.csv": _rows({("男", 33): 12})})
    result = build(ds)
    assert result.status == "failed" and "fewer than 20 rows" in result.error.en


def test_a_direct_identifier_must_be_dropped_or_hashed(make_dataset):
    with pytest.raises(DescriptorError) as info:
        make_dataset(
            {"p": table([field("phone", privacy={"class": "direct", "rule": "keep"})])}, {"data.csv": "phone\n1\n"}
        )
    problem = info.value.problems[0]
    assert problem.path == "tables.p.schema.fields[0].privacy.rule"
    assert "would be published as it is" in problem.what and problem.expected == "rule: drop or rule: hash"
