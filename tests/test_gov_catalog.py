"""China's catalog fields, the opening plan and the three lists (sandbox/gov_catalog.py)."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io

import pytest
import yaml
from factories import BASE_META, field, table

from sandbox import catalog, clock, gov_catalog
from sandbox.descriptor import load_all
from sandbox.errors import DescriptorError

GOOD = {
    "resource_code": "B0601-00001/00001",
    "provider": {"zh": "市卫生健康委员会", "en": "Municipal Health Commission"},
    "provider_code": "11360100MB0000001X",
    "sharing_type": "conditional",
    "usage_mode": ["download", "api", "sandbox"],
    "theme_code": "06.01",
}
# A conditional dataset's data-use agreement (its own rule: tests/test_conditional_build.py).
AGREEMENT = {"agreement": {"version": "1", "text": {"zh": "仅用于本次比赛。", "en": "For this contest only."}}}


def _problems(paths, ds_id: str, **meta) -> list[str]:
    folder = paths.datasets_dir / ds_id
    folder.mkdir()
    doc = {"id": ds_id, **copy.deepcopy(BASE_META), **meta, "tables": {"t": table([field("a")])}}
    (folder / "dataset.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    try:
        load_all(paths.datasets_dir, [ds_id])
    except DescriptorError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_catalog_fields_are_validated(paths):
    assert _problems(paths, "fine", catalog=GOOD, open_tier="unconditional") == []
    bad = {**GOOD, "resource_code": "b06 01", "provider_code": "123", "sharing_type": "maybe", "theme_code": "6"}
    text = "\n".join(_problems(paths, "shapes", catalog=bad))
    for key in ("resource_code", "provider_code", "sharing_type", "theme_code"):
        assert f"datasets/shapes/dataset.yaml: catalog.{key}: " in text, text
    # Download and API are public use: not for a dataset that is open on conditions only.
    (problem,) = _problems(paths, "closed", catalog=GOOD, open_tier="conditional", access=AGREEMENT)
    assert problem.startswith("datasets/closed/dataset.yaml: catalog.usage_mode: download, api is public use")
    assert "usage_mode [sandbox]" in problem
    sandbox_only = {**GOOD, "usage_mode": ["sandbox"]}
    assert _problems(paths, "sandboxed", catalog=sandbox_only, open_tier="conditional", access=AGREEMENT) == []
    shared = {**sandbox_only, "sharing_type": "unconditional"}
    (problem,) = _problems(paths, "notopen", catalog=shared, open_tier="not-open")
    assert "catalog.sharing_type: a dataset that is not open cannot be shared unconditionally" in problem
    missing = {k: v for k, v in GOOD.items() if k != "provider_code"}
    assert _problems(paths, "partial", catalog=missing) == [
        "datasets/partial/dataset.yaml: catalog: 'provider_code' is missing; expected this key to be present"
    ]


def test_the_shipped_plan_is_valid_and_a_bad_one_names_its_mistakes(paths):
    from sandbox.settings import PROJECT_ROOT

    shipped = gov_catalog.load_plan(PROJECT_ROOT / "datasets")
    assert {p["id"] for p in shipped} >= {"bus_punctuality", "pension_coverage"}
    (paths.datasets_dir / "planned.yaml").write_text(
        "planned:\n"
        "  - {id: a_plan, title: {zh: 甲, en: A}, publisher: {zh: 乙, en: B}, planned_date: 2027-03-01,"
        " theme: health, open_tier: unconditional}\n"
        "  - {id: b_plan, publisher: {zh: 乙, en: B}, planned_date: 2027-03-01, theme: cooking,"
        " open_tier: unconditional, tables: {}}\n",
        "utf-8",
    )
    with pytest.raises(DescriptorError) as info:
        gov_catalog.load_plan(paths.datasets_dir)
    text = "\n".join(map(str, info.value.problems))
    assert "planned.yaml: planned.1: 'title' is a required property" in text, text
    assert "planned.1.theme: 'cooking' is not one of" in text
    assert "planned.1: " in text and "'tables'" in text
    (paths.datasets_dir / "planned.yaml").write_text("planned:\n  - {id: x, planned_date: 2027-02-30}\n", "utf-8")
    with pytest.raises(DescriptorError) as info:
        gov_catalog.load_plan(paths.datasets_dir)
    assert "holds an impossible date (day is out of range for month)" in str(info.value.problems[0])


def test_plan_dates_and_duplicates(paths):
    (paths.datasets_dir / "planned.yaml").write_text(
        "planned:\n"
        "  - {id: a_plan, title: {zh: 甲, en: A}, publisher: {zh: 乙, en: B}, planned_date: '2027-02-30',"
        " theme: health, open_tier: unconditional}\n"
        "  - {id: a_plan, title: {zh: 甲, en: A}, publisher: {zh: 乙, en: B}, planned_date: 2027-03-01,"
        " theme: health, open_tier: unconditional}\n",
        "utf-8",
    )
    with pytest.raises(DescriptorError) as info:
        gov_catalog.load_plan(paths.datasets_dir)
    text = "\n".join(map(str, info.value.problems))
    assert "planned.0.planned_date: is not a calendar date" in text
    assert "planned.1.id: 'a_plan' is planned twice" in text


def test_opening_plan_shows_overdue_entries_by_the_clock(demo):
    plan = gov_catalog.published_plan(demo.data_root)  # copied there by the build
    cat = catalog.load(demo.data_root)
    with clock.pinned(dt.datetime(2026, 12, 1, tzinfo=dt.UTC)):
        rows = {r["id"]: r for r in gov_catalog.opening_plan(plan, cat)}
    assert rows["bus_punctuality"]["status"] == "overdue" and rows["bus_punctuality"]["status_zh"] == "已逾期"
    assert rows["bus_punctuality"]["days_overdue"] == 31
    assert rows["pension_coverage"]["status"] == "planned"
    assert rows["scenic_visitors"]["status"] == "published"  # planned, and built since
    with clock.pinned(dt.datetime(2027, 7, 1, tzinfo=dt.UTC)):
        later = {r["id"]: r["status"] for r in gov_catalog.opening_plan(plan, cat)}
    assert later["pension_coverage"] == "overdue"


def test_opening_and_sharing_lists_and_dcat(demo):
    cat = catalog.load(demo.data_root)
    opening = {r["id"]: r for r in gov_catalog.opening_list(cat)}
    assert set(opening) == set(cat["datasets"])  # every demo dataset is open unconditionally
    h = opening["hospital_outpatient"]
    assert h["resource_code"] == "B0601-00001/00001" and h["provider_zh"] == "市卫生健康委员会（示例）"
    assert h["opening_type_zh"] == "无条件开放" and h["usage_mode_zh"] == "下载、接口、沙箱"
    assert h["update_cycle_zh"] == "每日" and h["theme_code"] == "06.01"
    # A dataset without the catalog block is listed with its publisher as the provider.
    assert opening["rand_hie"]["resource_code"] == "" and opening["rand_hie"]["provider_zh"]
    sharing = {r["id"]: r["sharing_type_zh"] for r in gov_catalog.sharing_list(cat)}
    assert sharing == {
        "hospital_outpatient": "无条件共享",
        "metro_ridership": "无条件共享",
        "school_enrollment": "有条件共享",
    }
    text = gov_catalog.to_csv(gov_catalog.opening_list(cat))
    assert text.startswith(b"\xef\xbb\xbfresource_code,id,title_zh")
    parsed = list(csv.DictReader(io.StringIO(text[3:].decode("utf-8"))))
    assert len(parsed) == len(opening)
    dcat = {d["dct:identifier"]: d for d in catalog.export_dcat(demo.data_root)["dcat:dataset"]}
    hosp = dcat["hospital_outpatient"]
    assert {"@id": "cn-theme:06.01", "skos:notation": "06.01"} in hosp["dcat:theme"]
    assert hosp["adms:identifier"]["skos:notation"] == "B0601-00001/00001"
    assert hosp["dct:creator"]["dct:identifier"] == "11360100MB0000001X"
    assert hosp["dct:accessRights"]["@id"].endswith("/PUBLIC")
    assert hosp["dct:accrualPeriodicity"]["@id"].endswith("/DAILY")
    assert "adms:identifier" not in dcat["rand_hie"]


def test_freshness_due_is_last_build_plus_update_cycle(demo, run_cli):
    import json as _json

    from sandbox import freshness

    cat = catalog.load(demo.data_root)
    e = cat["datasets"]["hospital_outpatient"]["entry"]  # daily
    built = dt.datetime.fromisoformat(e["built_at"])
    on_time = freshness.of_entry(e, built + dt.timedelta(hours=23))
    assert on_time["due"] == (built + dt.timedelta(days=1)).isoformat() and not on_time["overdue"]
    late = freshness.of_entry(e, built + dt.timedelta(days=3, hours=1))
    assert late["overdue"] and late["overdue_days"] == 2
    monthly = freshness.of_entry({**e, "built_at": "2026-01-31T10:00:00+00:00", "update_frequency": "monthly"})
    assert monthly["due"] == "2026-02-28T10:00:00+00:00"  # a calendar month, not 30 days
    assert freshness.of_entry({**e, "update_frequency": "irregular"})["due"] is None
    with clock.pinned(built + dt.timedelta(days=10)):
        out = run_cli("datasets", "freshness", "--json", root=demo)
    assert out.exit_code == 0, out.output
    doc = _json.loads(out.output)
    daily = {r["id"] for r in doc["datasets"] if r["update_frequency"] == "daily"}
    assert "hospital_outpatient" in doc["overdue"] and daily <= set(doc["overdue"])
    assert doc["datasets"][0]["overdue"]  # the overdue first
