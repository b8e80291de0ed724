"""The catalog as organizers and the public use it: list, search (zh/en), show, DCAT export."""

from __future__ import annotations

import json

from sandbox import catalog
from sandbox.digests import sha256_file


def test_list_json_has_every_demo_dataset(demo, run_cli):
    result = run_cli("datasets", "list", "--json", root=demo)
    assert result.exit_code == 0
    rows = {r["id"]: r for r in json.loads(result.output)}
    assert {"hospital_outpatient", "rand_hie", "us_employment", "travel_mode_choice"} <= set(rows)
    assert rows["rand_hie"]["rows"] == 20190 and rows["rand_hie"]["licence"] == "public-domain"
    assert rows["hospital_outpatient"]["title_zh"] == "医院门诊就诊数据（模拟）"
    assert all(r["bytes"] > 0 and r["version"] >= 1 for r in rows.values())


def test_search_in_chinese_and_english(demo):
    zh = catalog.search(demo.data_root, "门诊")
    assert zh[0]["id"] == "hospital_outpatient"
    en = [r["id"] for r in catalog.search(demo.data_root, "employment")]
    assert "us_employment" in en and "hospital_outpatient" not in en
    assert catalog.search(demo.data_root, "outpatient visits")[0]["id"] == "hospital_outpatient"
    assert catalog.search(demo.data_root, "门诊 不存在的词") == []


def test_search_filters(demo, run_cli):
    result = run_cli("datasets", "search", "", "--theme", "transport-tourism", "--json", root=demo)
    found = json.loads(result.output)
    assert found and {r["theme"] for r in found} == {"transport-tourism"}
    assert "travel_mode_choice" in {r["id"] for r in found}
    none = run_cli("datasets", "search", "", "--tier", "not-open", root=demo)
    assert none.exit_code == 0 and "no datasets found / 没有找到数据集" in none.output


def test_show_has_schema_units_licence_versions_quality(demo, run_cli):
    result = run_cli("datasets", "show", "hospital_outpatient", "--json", root=demo)
    doc = json.loads(result.output)
    fields = {f["name"]: f for f in doc["tables"]["visit_records"]["schema"]["fields"]}
    assert fields["fee_yuan"]["unit"] == "元 (CNY)"
    assert fields["fee_yuan"]["definition"]["en"].startswith("Total medical cost")
    assert fields["age"]["type"] == "string" and fields["age"]["privacy"]["rule"] == "age_band"
    assert "patient_name" not in fields and "id_card" not in fields
    assert doc["licence"]["id"] == "CC-BY-4.0" and doc["versions"][0]["version"] == 1
    q = doc["tables"]["visit_records"]["quality"]
    assert q["on_error"] == "quarantine" and q["bad_rows"] > 0
    assert doc["tables"]["visit_records"]["privacy"]["suppressed_rows"] > 0

    text = run_cli("datasets", "show", "hospital_outpatient", root=demo, lang="zh")
    assert text.exit_code == 0
    assert "医院门诊就诊数据（模拟）" in text.output and "元 (CNY)" in text.output and "无条件开放" in text.output


def test_show_unknown_dataset_is_one_line(demo, run_cli):
    result = run_cli("datasets", "show", "nope", root=demo)
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: no published dataset 'nope'")
    assert len(result.output.strip().splitlines()) == 1
    old = run_cli("datasets", "show", "rand_hie", "--version", "9", root=demo)
    assert old.exit_code == 1 and "has no version 9" in old.output


def test_export_dcat(demo, run_cli, tmp_path):
    out = tmp_path / "dcat.jsonld"
    result = run_cli("datasets", "export-dcat", "-o", str(out), "--base-url", "https://data.example/open", root=demo)
    assert result.exit_code == 0
    doc = json.loads(out.read_text("utf-8"))
    assert doc["@type"] == "dcat:Catalog" and "dcat" in doc["@context"]
    by_id = {d["dct:identifier"]: d for d in doc["dcat:dataset"]}
    hosp = by_id["hospital_outpatient"]
    assert hosp["dct:accessRights"]["@id"].endswith("/PUBLIC")
    assert hosp["dct:accrualPeriodicity"]["@id"].endswith("/DAILY")
    assert {"@language": "zh", "@value": "门诊"} in hosp["dcat:keyword"]
    for dist in hosp["dcat:distribution"]:
        url = dist["dcat:downloadURL"]["@id"]
        assert url.startswith("https://data.example/open/hospital_outpatient/v")
        local = demo.data_root / url.removeprefix("https://data.example/open/")
        assert dist["spdx:checksum"]["spdx:checksumValue"] == sha256_file(local)
        assert int(dist["dcat:byteSize"]["@value"]) == local.stat().st_size


def test_dcat_urls_of_partitioned_files_resolve(demo):
    """Partition folders hold escaped values; the URL must map back to the file a server serves."""
    import urllib.parse

    doc = catalog.export_dcat(demo.data_root, "https://data.example/open")
    (metro,) = [d for d in doc["dcat:dataset"] if d["dct:identifier"] == "metro_ridership"]
    assert len(metro["dcat:distribution"]) >= 3  # one file per city partition
    for dist in metro["dcat:distribution"]:
        path = urllib.parse.unquote(dist["dcat:downloadURL"]["@id"].removeprefix("https://data.example/open/"))
        assert (demo.data_root / path).is_file(), path


def test_show_says_where_every_row_went_and_how_private_it_is(demo, run_cli):
    doc = json.loads(run_cli("datasets", "show", "hospital_outpatient", "--json", root=demo).output)
    visits, test = doc["tables"]["visit_records"], doc["tables"]["visit_records_test"]
    rows = visits["quality"]["rows"]
    assert rows["read"] == 200_000 == sum(v for k, v in rows.items() if k != "read")
    assert rows["test"] == test["rows"] and rows["published"] == visits["rows"]
    assert rows["quarantined"] == visits["quality"]["bad_rows"] > 0
    assert rows["withheld"] == visits["withheld"]["rows"] > 0 and visits["withheld"]["by"] == ["daily_visits"]
    for t in (visits, test):  # each published table is gated and measured as it is published
        p = t["privacy"]
        assert p["counted_on"] == "persons (patient_id)" and p["k"] == 11
        assert p["risk"]["max"] <= p["risk"]["thresholds"]["max"] == round(1 / 11, 6)
        assert p["risk"]["average"] <= p["risk"]["thresholds"]["average"] == 0.05
        assert p["risk"]["unique_share"] == 0 and p["risk"]["smallest_group"] >= 11
    fields = {f["name"]: f for f in visits["schema"]["fields"]}
    assert fields["visit_id"]["privacy"]["scope"] == "version" and fields["visit_date"]["format"] == "YYYY-Qn"
    assert "hospital_id" not in fields and "patient_id" not in fields
    hospitals = doc["tables"]["hospitals"]["source"]
    assert (hospitals["encoding"], hospitals["decoded_as"]) == ("gbk", "gb18030")

    text = run_cli("datasets", "show", "hospital_outpatient", root=demo).output
    assert "source: hospitals.csv (csv, gbk, read as gb18030)" in text
    parts = " + ".join(
        f"{rows[k]:,} {k}" for k in ("published", "test", "quarantined", "suppressed", "withheld") if rows[k]
    )
    assert f"rows: 200,000 read = {parts}" in text
    risk = visits["privacy"]["risk"]
    assert (
        f"privacy: k=11 on persons (patient_id), {visits['privacy']['suppressed_rows']:,} suppressed; "
        f"re-identification risk: max {risk['max']:.3f} (<= 0.091), average {risk['average']:.3f} (<= 0.050)"
    ) in text
    assert "pseudonym visit_id: one per version" in text
    quarantine = demo.private_root / visits["quality"]["quarantine_file"]
    assert quarantine.is_file()
    assert f"quarantine: {rows['quarantined']} bad rows (source row, error codes, raw text) in {quarantine}" in text


def test_lang_works_before_and_after_the_subcommand(demo, run_cli):
    after = run_cli("datasets", "show", "nope", "--lang", "zh", root=demo)  # run_cli puts --lang en first
    assert after.exit_code == 1 and "没有已发布的数据集 'nope'" in after.output
    equals = run_cli("datasets", "show", "nope", "--lang=zh", root=demo)
    assert "没有已发布的数据集 'nope'" in equals.output
    before = run_cli("datasets", "show", "nope", root=demo, lang="zh")
    assert before.output == after.output
    assert (
        "no published dataset 'nope'"
        in run_cli("datasets", "show", "nope", "--lang", "en", root=demo, lang="zh").output
    )
