"""sandbox.validate: the service's file checks inside a sandbox, with no quota and nothing sent."""

from __future__ import annotations

import gzip
import json

import pytest

import sandbox


def test_a_good_file_passes_and_a_broken_one_says_what_to_fix(contestant, demo, predictions):
    good = sandbox.validate("department_triage", predictions("department_triage", noise=0.3))
    assert good.ok and good.status == "valid" and good.raw["rows"] > 0
    assert "不计入提交次数" in str(good) and "costs no quota" in str(good)

    df = sandbox.sql("SELECT visit_id FROM hospital_outpatient.visit_records_test").df()
    df["department"] = "火星科"  # a department that does not exist
    df.loc[3, "visit_id"] = df.loc[4, "visit_id"]  # and a duplicated id
    bad = sandbox.validate("department_triage", df)
    assert not bad.ok and bad.status == "invalid"
    codes = {e["code"] for e in bad.errors}
    assert {"unknown-label", "duplicate-id", "missing-id"} <= codes, codes
    label = next(e for e in bad.errors if e["code"] == "unknown-label")
    assert label["column"] == "department" and label["rows"][0] == 2  # spreadsheet numbering: header is row 1
    text = str(bad)
    assert "未提交" in text and "nothing was sent" in text and "火星科" in text


def test_validate_uses_the_published_rules_not_the_hidden_answers(contestant, demo):
    rules = json.loads((demo.data_root / "contest.json").read_text("utf-8"))
    spec = {c["id"]: c for c in rules["challenges"]}
    assert spec["emergency_visit"]["prediction_columns"] == ["p_emergency"]
    assert spec["emergency_visit"]["input"] == "probability"
    assert len(spec["department_triage"]["labels"]) == 10
    assert "solution" not in json.dumps(rules) and str(demo.private_root) not in json.dumps(rules)
    probs = sandbox.sql("SELECT visit_id, 1.5 AS p_emergency FROM hospital_outpatient.visit_records_test").df()
    out = sandbox.validate("emergency_visit", probs)
    assert [e["code"] for e in out.errors] == ["probability-range"]
    with pytest.raises(sandbox.ContesthubError, match="no challenge 'nope'") as missing:
        sandbox.validate("nope", probs)
    assert "outpatient_forecast" in missing.value.en and missing.value.zh


def test_validate_caps_decompression_at_the_contest_upload_limit(contestant, demo, tmp_path):
    from leaderboard import contest

    limit = contest.load(None, demo.datasets_dir).upload_limit
    rules = json.loads((demo.data_root / "contest.json").read_text("utf-8"))
    assert {(c["max_bytes"], c["max_uncompressed_bytes"]) for c in rules["challenges"]} == {(limit, limit)}
    # A small gzip file (members of 1 MiB of rows each) expanding to one MiB past the limit.
    member = gzip.compress(b"1,0.5\n" * ((1 << 20) // 6), 9)
    path = tmp_path / "p.csv.gz"
    with open(path, "wb") as f:
        f.write(gzip.compress(b"visit_id,p_emergency\n"))
        for _ in range((limit >> 20) + 1):
            f.write(member)
    assert path.stat().st_size < limit // 100
    out = sandbox.validate("emergency_visit", str(path))
    assert [e["code"] for e in out.errors] == ["decompressed-too-large"]
    assert f"{limit >> 20} MiB" in out.errors[0]["message_en"] and out.errors[0]["message_zh"]
