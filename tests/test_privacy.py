"""De-identification rules, the k-anonymity gate and the risk report, read from the published files.

Every table here is made for the test: the groups a gate must refuse are planted on purpose
(groups of many rows but few persons, visits unique on their exact date, a test table with a
small group that the whole table hides), and each test asserts what the build and the
catalog say about them.
"""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pytest
from factories import field, table

from sandbox.catalog import entry
from sandbox.errors import DescriptorError, PrivacyGateError
from sandbox.privacy import load_salt, pseudonym_key


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
# Two groups of 11 and 12 people have an average risk of 2/23: above the default 0.05 these
# small tables are allowed more.
SMALL_TABLE_RISK = {"risk": {"average": 0.1}}


def test_published_columns_are_de_identified(make_dataset, build, paths):
    csv = _rows({("男", 33): 12, ("女", 94): 11})
    ds = make_dataset({"p": table(FIELDS, "p.csv", privacy=SMALL_TABLE_RISK)}, {"p.csv": csv})
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
    # the pseudonym is SHA-256 keyed with this version's key, not the raw id and not an unkeyed hash
    salt = load_salt(paths.private_root)
    key = pseudonym_key(salt, ds.id, 1)
    assert rows[0][0] == hashlib.sha256(f"{key}P0001".encode()).hexdigest()[:20]
    assert rows[0][0] != hashlib.sha256(b"P0001").hexdigest()[:20]
    assert rows[0][0] != hashlib.sha256(f"{salt}P0001".encode()).hexdigest()[:20]
    text = b"".join(p.read_bytes() for p in (paths.data_root / ds.id).rglob("*") if p.is_file())
    for secret in ("姓名1".encode(), b"110101198001010001", b"P0001", salt.encode(), key.encode()):
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
        "1 combination(s) of (gender, age, visit, area) describe fewer than 11 rows (3 rows in all)" in result.error.en
    )
    assert "on_small_groups: suppress" in result.error.en and "少于 11 行" in result.error.zh
    assert not (paths.data_root / ds.id / "latest").exists()


def test_small_groups_are_suppressed_when_the_descriptor_says_so(make_dataset, build, paths):
    ds = make_dataset(
        {"p": table(FIELDS, "p.csv", k_anonymity={"k": 11, "on_small_groups": "suppress"}, privacy=SMALL_TABLE_RISK)},
        {"p.csv": _rows({("男", 33): 12, ("女", 94): 3, ("女", 41): 5})},
    )
    result = build(ds)
    assert result.status == "built"
    assert result.tables[0].suppressed == 8 and result.tables[0].rows == 12
    groups = duckdb.sql(
        f"SELECT gender, age, count(*) FROM '{paths.data_root}/{ds.id}/latest/p.parquet' GROUP BY ALL"
    ).fetchall()
    assert groups == [("男", "30-34", 12)]


def test_suppression_tells_a_missing_quasi_identifier_from_a_value(make_dataset, build, paths):
    # Twelve people with no gender and no age form a group like any other; three women of no
    # age are a small group of their own, and only they are dropped.
    ds = make_dataset(
        {"p": table(FIELDS, "p.csv", k_anonymity={"k": 11, "on_small_groups": "suppress"}, privacy=SMALL_TABLE_RISK)},
        {"p.csv": _rows({("男", 33): 12, ("", ""): 12, ("女", ""): 3})},
    )
    result = build(ds)
    assert result.status == "built", result.error and result.error.en
    assert result.tables[0].suppressed == 3 and result.tables[0].rows == 24
    groups = duckdb.sql(
        f"SELECT gender, age, count(*) FROM '{paths.data_root}/{ds.id}/latest/p.parquet' GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert groups == [("男", "30-34", 12), (None, None, 12)]


def test_k_is_configurable(make_dataset, build):
    ds = make_dataset({"p": table(FIELDS, "p.csv", k_anonymity={"k": 20})}, {"p.csv": _rows({("男", 33): 12})})
    result = build(ds)
    assert result.status == "failed" and "describe fewer than 20 rows" in result.error.en


def test_a_direct_identifier_must_be_dropped_or_hashed(make_dataset):
    with pytest.raises(DescriptorError) as info:
        make_dataset(
            {"p": table([field("phone", privacy={"class": "direct", "rule": "keep"})])}, {"data.csv": "phone\n1\n"}
        )
    problem = info.value.problems[0]
    assert problem.path == "tables.p.schema.fields[0].privacy.rule"
    assert "would be published as it is" in problem.what and problem.expected == "rule: drop or rule: hash"


# --- person-level tables: k counts persons ---------------------------------------------------

PERSON_FIELDS = [
    field("visit_id", "integer", privacy={"class": "direct", "rule": "hash"}),
    field("patient", privacy={"class": "direct", "rule": "drop"}),
    field("gender", privacy={"class": "quasi", "rule": "keep"}),
    field("age", "integer", privacy={"class": "quasi", "rule": "age_band", "width": 10}),
    field("diagnosis", privacy={"class": "sensitive", "rule": "keep"}),
]


def _visits(groups: list[tuple[str, int, int, int]]) -> str:
    """Visits: for each (gender, age, persons, visits per person) that many patients, each seen that often."""
    lines, visit, patient = ["visit_id,patient,gender,age,diagnosis"], 0, 0
    for gender, age, persons, each in groups:
        for _ in range(persons):
            patient += 1
            for _ in range(each):
                visit += 1
                lines.append(f"{visit},P{patient:05d},{gender},{age},J06.9")
    return "\n".join(lines) + "\n"


# Twelve groups of 12 visits by 3 patients each (enough rows, too few people), one group of 30 patients.
TWELVE = [(g, age, 3, 4) for g in ("男", "女") for age in (5, 15, 25, 35, 45, 55)] + [("男", 75, 30, 1)]


def test_k_counts_rows_without_a_person_key(make_dataset, build):
    ds = make_dataset({"v": table(PERSON_FIELDS, privacy={"risk": {"average": 0.2}})}, {"data.csv": _visits(TWELVE)})
    result = build(ds)
    assert result.status == "built", result.error and result.error.en  # every group has >= 11 rows


def test_k_counts_distinct_persons_where_the_table_names_its_person_key(make_dataset, build, paths):
    tables = {"v": table(PERSON_FIELDS, privacy={"person": "patient", "risk": {"average": 0.2}})}
    ds = make_dataset(tables, {"data.csv": _visits(TWELVE)})
    result = build(ds)
    assert result.status == "failed" and isinstance(result.error, PrivacyGateError)
    assert (
        "table 'v': 12 combination(s) of (gender, age) describe fewer than 11 distinct persons (patient) "
        "(144 rows in all)" in result.error.en
    )
    assert "少于 11 个不同的人（patient）" in result.error.zh

    tables["v"]["k_anonymity"] = {"on_small_groups": "suppress"}
    ds = make_dataset(tables, {"data.csv": _visits(TWELVE)}, ds_id=ds.id)
    result = build(ds)
    assert result.status == "built", result.error and result.error.en
    assert (result.tables[0].rows, result.tables[0].suppressed) == (30, 144)
    privacy = entry(paths.data_root, ds.id)["tables"]["v"]["privacy"]
    assert privacy["counted_on"] == "persons (patient)" and privacy["small_groups"] == 12
    assert privacy["risk"]["max"] == pytest.approx(1 / 30, abs=1e-6) and privacy["risk"]["smallest_group"] == 30


def _dated_visits(days: int, hospitals: int, persons: int) -> str:
    """One visit per person, spread over ``days`` days of March 2024 and ``hospitals`` hospitals."""
    lines = ["visit_id,patient,visit_date,hospital_id,gender,diagnosis"]
    for i in range(persons):
        lines.append(f"{i + 1},P{i:05d},2024-03-{1 + i % days:02d},H{i % hospitals},{'男女'[i % 2]},J06.9")
    return "\n".join(lines) + "\n"


def _dated_fields(date_rule: str = "keep", hospital_rule: str = "keep") -> list[dict]:
    return [
        field("visit_id", "integer", privacy={"class": "direct", "rule": "hash"}),
        field("patient", privacy={"class": "direct", "rule": "drop"}),
        field("visit_date", "date", privacy={"class": "quasi", "rule": date_rule}),
        field("hospital_id", privacy={"class": "quasi", "rule": hospital_rule}),
        field("gender", privacy={"class": "quasi", "rule": "keep"}),
        field("diagnosis", privacy={"class": "sensitive", "rule": "keep"}),
    ]


def test_visits_unique_on_their_exact_date_are_refused_and_generalising_fixes_it(make_dataset, build, paths):
    raw = {"data.csv": _dated_visits(days=30, hospitals=4, persons=240)}
    ds = make_dataset({"v": table(_dated_fields(), privacy={"person": "patient"})}, raw)
    result = build(ds)
    assert result.status == "failed"
    assert "combination(s) of (visit_date, hospital_id, gender) describe fewer than 11 distinct persons" in (
        result.error.en
    )
    assert result.error.details["rows"] == 240  # every visit is in a group too small

    # Dates to month, the hospital dropped: two groups of 120 patients.
    ds = make_dataset({"v": table(_dated_fields("month", "drop"), privacy={"person": "patient"})}, raw, ds_id=ds.id)
    result = build(ds)
    assert result.status == "built", result.error and result.error.en
    t = entry(paths.data_root, ds.id)["tables"]["v"]
    risk = t["privacy"]["risk"]
    assert (risk["records"], risk["groups"], risk["smallest_group"]) == (240, 2, 120)
    assert risk["max"] == pytest.approx(1 / 120, abs=1e-6) and risk["average"] == pytest.approx(1 / 120, abs=1e-6)
    assert risk["unique_share"] == 0 and risk["thresholds"] == {"max": round(1 / 11, 6), "average": 0.05}
    assert risk["before_suppression"]["groups"] == 2
    assert t["quality"]["reidentification_risk"] == risk  # the quality report carries it too
    published = duckdb.sql(f"SELECT DISTINCT visit_date FROM '{paths.data_root}/{ds.id}/latest/v.parquet'").fetchall()
    assert published == [("2024-03",)]


def test_the_risk_report_fails_the_build_above_the_descriptors_thresholds(make_dataset, build):
    raw = {"data.csv": _dated_visits(days=30, hospitals=4, persons=240)}
    fields = _dated_fields("month", "drop")
    ds = make_dataset({"v": table(fields, privacy={"person": "patient", "risk": {"average": 0.005}})}, raw)
    result = build(ds)
    assert result.status == "failed" and isinstance(result.error, PrivacyGateError)
    assert "re-identification risk on (visit_date, gender) too high: average risk 0.0083 is above 0.0050" in (
        result.error.en
    )
    assert "privacy.risk" in result.error.en and "平均风险 0.0083 超过上限 0.0050" in result.error.zh
    ds = make_dataset({"v": table(fields, privacy={"person": "patient", "risk": {"max": 0.005}})}, raw, ds_id=ds.id)
    result = build(ds)
    assert result.status == "failed" and "max risk 0.0083 is above 0.0050" in result.error.en


def test_the_test_table_is_gated_as_it_is_published(make_dataset, build, paths):
    # 130 patients in March, 2 of each gender in April: the whole table passes (66 + 66), the
    # April test table alone has groups of 2.
    lines = ["visit_id,patient,visit_date,gender,diagnosis"]
    for i in range(134):
        day = "2024-04-02" if i >= 130 else f"2024-03-{1 + i % 28:02d}"
        lines.append(f"{i + 1},P{i:05d},{day},{'男女'[i % 2]},{'J06.9' if i % 3 else 'I10'}")
    fields = [f for f in _dated_fields("month") if f["name"] != "hospital_id"]
    holdout = {"where": "visit_date >= DATE '2024-04-01'", "hidden": ["diagnosis"]}
    tables = {"v": table(fields, privacy={"person": "patient"}, holdout=holdout)}
    raw = {"data.csv": "\n".join(lines) + "\n"}
    ds = make_dataset(tables, raw)
    result = build(ds)
    assert result.status == "failed"
    assert "table 'v_test': 2 combination(s) of (visit_date, gender) describe fewer than 11" in result.error.en

    tables["v"]["k_anonymity"] = {"on_small_groups": "suppress"}
    ds = make_dataset(tables, raw, ds_id=ds.id)
    result = build(ds)
    assert result.status == "built", result.error and result.error.en
    doc = entry(paths.data_root, ds.id)["tables"]
    assert doc["v"]["rows"] == 130 and doc["v"]["privacy"]["suppressed_rows"] == 0
    assert doc["v_test"]["rows"] == 0 and doc["v_test"]["privacy"]["suppressed_rows"] == 4
    assert doc["v"]["quality"]["rows"] == {
        "read": 134,
        "published": 130,
        "test": 0,
        "quarantined": 0,
        "suppressed": 4,
        "withheld": 0,
    }
    solution = paths.private_root / "solutions" / ds.id / "v1" / "v.parquet"
    assert duckdb.sql(f"SELECT count(*) FROM '{solution}'").fetchall() == [(0,)]  # the answers are cut too


def test_pseudonyms_change_with_each_version_unless_the_descriptor_says_why(make_dataset, build, paths):
    raw = {"data.csv": _dated_visits(days=30, hospitals=4, persons=240)}
    fields = _dated_fields("month", "drop")
    ds = make_dataset({"v": table(fields, privacy={"person": "patient"})}, raw)

    def ids(version: int) -> set[str]:
        path = paths.data_root / ds.id / f"v{version}" / "v.parquet"
        return {r[0] for r in duckdb.sql(f"SELECT visit_id FROM '{path}'").fetchall()}

    assert build(ds).version == 1 and build(ds, force=True).version == 2
    assert len(ids(1)) == 240 and not ids(1) & ids(2)  # nobody can join v1 and v2 on the visit id
    shown = entry(paths.data_root, ds.id)["tables"]["v"]["schema"]["fields"][0]["privacy"]
    assert shown == {"class": "direct", "rule": "hash", "scope": "version"}

    reason = {"zh": "各版本的就诊编号须能对应", "en": "visit numbers must match across versions"}
    fields[0]["privacy"] = {"class": "direct", "rule": "hash", "scope": "dataset", "reason": reason}
    ds = make_dataset({"v": table(fields, privacy={"person": "patient"})}, raw, ds_id=ds.id)
    assert build(ds).version == 3 and build(ds, force=True).version == 4
    assert ids(3) == ids(4) and not ids(3) & ids(2)
    shown = entry(paths.data_root, ds.id)["tables"]["v"]["schema"]["fields"][0]["privacy"]
    assert shown == {"class": "direct", "rule": "hash", "scope": "dataset", "reason": reason}


def test_a_wider_pseudonym_scope_needs_a_reason(make_dataset):
    fields = _dated_fields("month", "drop")
    fields[0]["privacy"] = {"class": "direct", "rule": "hash", "scope": "installation"}
    with pytest.raises(DescriptorError) as info:
        make_dataset({"v": table(fields, privacy={"person": "patient"})}, {"data.csv": "x\n"})
    (problem,) = info.value.problems
    assert problem.path == "tables.v.schema.fields[0].privacy.reason"
    assert "kept across installation but the descriptor does not say why" in problem.what


def test_rows_of_a_person_table_are_not_published_in_source_order(make_dataset, build, paths):
    # The source lists visits by date: the row order would give back the days the month hides.
    raw = {"data.csv": _dated_visits(days=30, hospitals=4, persons=240)}
    fields = _dated_fields("month", "drop")
    tables = {"v": table(fields, privacy={"person": "patient"}, primaryKey=["visit_id"], sort_by=["gender"])}
    ds = make_dataset(tables, raw)
    assert build(ds).status == "built"
    key = pseudonym_key(load_salt(paths.private_root), ds.id, 1)
    source_order = {hashlib.sha256(f"{key}{i + 1}".encode()).hexdigest()[:20]: i for i in range(240)}
    published = duckdb.sql(f"SELECT visit_id, gender FROM '{paths.data_root}/{ds.id}/latest/v.parquet'").fetchall()
    # Sorted by the fields published unchanged (gender), then in an order keyed by this version.
    assert [g for _, g in published] == sorted(g for _, g in published)
    assert entry(paths.data_root, ds.id)["tables"]["v"]["sort_by"] == ["gender"]
    for gender in ("男", "女"):
        positions = np.array([source_order[v] for v, g in published if g == gender])
        assert abs(np.corrcoef(positions, np.arange(len(positions)))[0, 1]) < 0.3


# --- person-level tables: what the descriptor must say ---------------------------------------


def _descriptor_problems(make_dataset, fields: list[dict], **extra) -> list[str]:
    with pytest.raises(DescriptorError) as info:
        make_dataset({"v": table(fields, privacy={"person": "patient"}, **extra)}, {"data.csv": "x\n"})
    return [f"{p.path}: {p.what}" for p in info.value.problems]


def test_every_field_of_a_person_table_needs_a_privacy_class(make_dataset):
    fields = _dated_fields("month", "drop")
    del fields[5]["privacy"], fields[4]["privacy"]
    problems = _descriptor_problems(make_dataset, fields)
    assert problems == [
        "tables.v.schema.fields[4].privacy: field 'gender' has no privacy class; in a table about persons "
        "(privacy.person: patient) every field needs one",
        "tables.v.schema.fields[5].privacy: field 'diagnosis' has no privacy class; in a table about persons "
        "(privacy.person: patient) every field needs one",
    ]


def test_dates_and_facility_ids_are_quasi_identifiers_unless_a_reason_is_given(make_dataset):
    fields = _dated_fields("month", "drop")
    fields[2]["privacy"] = {"class": "none"}  # the visit date, published exactly
    fields[3]["privacy"] = {"class": "sensitive"}  # the hospital, a foreign key into hospitals
    fields[1]["privacy"] = {"class": "quasi", "rule": "keep"}  # the person key itself
    keys = [{"fields": ["hospital_id"], "reference": {"resource": "v", "fields": ["hospital_id"]}}]
    problems = "\n".join(_descriptor_problems(make_dataset, fields, foreignKeys=keys))
    assert "tables.v.schema.fields[1].privacy: the person key 'patient' would be published as it is" in problems
    assert (
        "tables.v.schema.fields[2].privacy.class: date 'visit_date' is published with class 'none', but in a "
        "table about persons dates and facility ids are quasi-identifiers" in problems
    )
    assert "fields[3].privacy.class: facility id 'hospital_id' is published with class 'sensitive'" in problems

    # A reason says why a date identifies nobody (here: every visit of the file is on one day).
    fields[1]["privacy"] = {"class": "direct", "rule": "drop"}
    fields[2]["privacy"] = {"class": "none", "reason": {"zh": "全部为同一天", "en": "all on one day"}}
    fields[3]["privacy"] = {"class": "quasi", "rule": "drop"}
    ds = make_dataset({"v": table(fields, privacy={"person": "patient"}, foreignKeys=keys)}, {"data.csv": "x\n"})
    assert ds.table("v").field("visit_date").reason == {"zh": "全部为同一天", "en": "all on one day"}


def test_an_unknown_person_key_is_named(make_dataset):
    with pytest.raises(DescriptorError) as info:
        make_dataset({"v": table(_dated_fields(), privacy={"person": "who"})}, {"data.csv": "x\n"})
    assert [(p.path, p.what) for p in info.value.problems] == [("tables.v.privacy.person", "names unknown field 'who'")]
