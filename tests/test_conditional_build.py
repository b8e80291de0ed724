"""Issue 17, item 1: where each open tier's data goes (有条件开放 / 不予开放).

Unconditional data goes to the public data root; conditional data to a root of its own under
the conditional root, which no sandbox reads by default; not-open data nowhere.
"""

from __future__ import annotations

import copy
import json
import stat

import yaml
from factories import BASE_META, field, table

from sandbox.descriptor import load_all
from sandbox.settings import PROJECT_ROOT

AGREEMENT = {"version": "1", "text": {"zh": "仅用于本赛题。", "en": "For this challenge only."}}


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _ds(make_dataset, tier: str, **access):
    return make_dataset(
        {"t": table([field("city"), field("n", "integer")])},
        {"data.csv": "city,n\n北京,1\n上海,2\n"},
        open_tier=tier,
        **({"access": access} if access else {}),
    )


def test_conditional_data_is_built_into_its_own_root_and_listed_without_files(make_dataset, build, paths):
    ds = _ds(make_dataset, "conditional", agreement=AGREEMENT)
    result = build(ds)
    assert result.status == "built", result.error and result.error.en
    own = paths.conditional_root / ds.id
    assert (own / ds.id / "v1" / "t.parquet").is_file()
    # Nothing of it under the public data root but its listing in catalog.json.
    assert not (paths.data_root / ds.id).exists()
    public = json.loads((paths.data_root / "catalog.json").read_text("utf-8"))
    assert ds.id not in public["datasets"]
    listed = public["conditional"][ds.id]["entry"]
    assert listed["open_tier"] == "conditional" and listed["access_rights"] == "RESTRICTED"
    assert "files" not in listed["tables"]["t"] and listed["tables"]["t"]["rows"] == 2
    assert str(own) not in json.dumps(public)
    # Others may pass through the conditional root but not list it; the dataset's root is its owner's.
    assert stat.S_IMODE(paths.conditional_root.stat().st_mode) == 0o711
    assert stat.S_IMODE(own.stat().st_mode) == 0o700


def test_a_not_open_dataset_leaves_no_file_under_any_root(make_dataset, build, paths):
    before = {r: _files(r) for r in (paths.data_root, paths.conditional_root)}
    ds = _ds(make_dataset, "not-open", reason={"zh": "含个人敏感信息", "en": "Holds sensitive personal data"})
    result = build(ds)
    assert result.status == "not-open"
    for root in (paths.data_root, paths.conditional_root):
        assert not [f for f in _files(root) if ds.id in f], root
    assert {r: _files(r) for r in before if r != paths.data_root} == {
        r: f for r, f in before.items() if r != paths.data_root
    }
    assert set(_files(paths.data_root)) - set(before[paths.data_root]) <= {"catalog.json"}
    assert not (paths.private_root / "raw" / ds.id).exists()  # not even staged
    # The sharing list names it as 不予开放 with its reason, and nothing else.
    listed = json.loads((paths.data_root / "catalog.json").read_text("utf-8"))["not_open"][ds.id]
    assert listed == {
        "title": {"zh": "测试数据", "en": "Test data"},
        "publisher": {"zh": "测试", "en": "Tests"},
        "theme": "health",
        "reason": {"zh": "含个人敏感信息", "en": "Holds sensitive personal data"},
    }


def test_a_tier_change_withdraws_what_the_old_tier_published(make_dataset, build, paths):
    ds = _ds(make_dataset, "unconditional")
    assert build(ds).status == "built"
    assert (paths.data_root / ds.id / "v1" / "t.parquet").is_file()
    doc = yaml.safe_load(ds.path.read_text("utf-8"))
    doc["open_tier"], doc["access"] = "conditional", {"agreement": AGREEMENT}
    ds.path.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    (ds,) = load_all(paths.datasets_dir, [ds.id])
    assert build(ds).status == "built"
    assert not (paths.data_root / ds.id).exists()
    assert ds.id not in json.loads((paths.data_root / "catalog.json").read_text("utf-8"))["datasets"]
    doc["open_tier"], doc["access"] = "not-open", {"reason": {"zh": "撤回", "en": "withdrawn"}}
    ds.path.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    (ds,) = load_all(paths.datasets_dir, [ds.id])
    assert build(ds).status == "not-open"
    assert not (paths.conditional_root / ds.id).exists()
    public = json.loads((paths.data_root / "catalog.json").read_text("utf-8"))
    assert ds.id not in public["conditional"] and public["not_open"][ds.id]["reason"]["en"] == "withdrawn"
    doc["open_tier"] = "unconditional"
    del doc["access"]
    ds.path.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    (ds,) = load_all(paths.datasets_dir, [ds.id])
    assert build(ds).status == "built"
    public = json.loads((paths.data_root / "catalog.json").read_text("utf-8"))
    assert ds.id in public["datasets"] and ds.id not in public["not_open"]


def test_a_conditional_descriptor_needs_its_agreement(run_cli, paths):
    folder = paths.datasets_dir / "cond"
    folder.mkdir()
    doc = {"id": "cond", **copy.deepcopy(BASE_META), "open_tier": "conditional", "tables": {"t": table([field("a")])}}
    (folder / "dataset.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    result = run_cli("datasets", "validate", "cond")
    assert result.exit_code == 1
    assert (
        "datasets/cond/dataset.yaml: access.agreement: a conditional dataset has no data-use agreement for "
        "applicants to accept" in result.output
    )
    doc["access"] = {"agreement": {"version": "1", "text": {"zh": "仅用于本赛题", "en": ""}}}
    (folder / "dataset.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    result = run_cli("datasets", "validate", "cond")
    assert result.exit_code == 1 and "access.agreement.text.en" in result.output


def test_the_demo_has_one_conditional_dataset_with_its_agreement_in_zh_and_en(demo):
    (ds,) = load_all(PROJECT_ROOT / "datasets", ["employment_histories"])
    assert ds.tier == "conditional" and ds.reviewers == "reviewers-hrss"
    assert ds.agreement["version"] == "2026-1"
    assert "不尝试识别任何个人" in ds.agreement["text"]["zh"] and "identify any person" in ds.agreement["text"]["en"]
    assert (demo.conditional_root / "employment_histories" / "employment_histories" / "latest").is_symlink()
    assert not (demo.data_root / "employment_histories").exists()


def test_a_sandbox_sees_no_conditional_data_by_default(contestant, demo):
    import pytest

    import sandbox
    from sandbox.errors import NotFound

    assert "employment_histories" not in set(sandbox.datasets()["id"])
    with pytest.raises(NotFound) as err:
        sandbox.sql("SELECT count(*) FROM employment_histories.job_spells").fetchall()
    assert "employment_histories" in err.value.en
    # Its description is public, so a team knows what it would apply for.
    assert "job_spells" in str(sandbox.describe("employment_histories"))


def test_no_answer_from_the_platform_means_no_conditional_data(contestant, demo, monkeypatch):
    import socket

    import pytest

    import sandbox
    from sandbox.errors import NotFound

    with socket.socket() as closed:  # a port nobody listens on: the platform is down
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("CONTESTHUB_SUBMIT_URL", f"http://127.0.0.1:{port}/services/submit/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "a-token")
    sandbox.refresh()
    with pytest.raises(NotFound):
        sandbox.sql("SELECT count(*) FROM employment_histories.job_spells").fetchall()
    assert sandbox.sql("SELECT count(*) FROM metro_ridership.daily_entries").fetchall()[0][0] > 0
