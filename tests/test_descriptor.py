"""Descriptor checks: every mistake named with file, field path, what is wrong and what is expected."""

from __future__ import annotations

import copy

import pytest
import yaml
from factories import BASE_META, field, table

from sandbox.descriptor import load_all
from sandbox.errors import DescriptorError
from sandbox.settings import PROJECT_ROOT


def _write(paths, ds_id: str, doc: dict | str) -> None:
    folder = paths.datasets_dir / ds_id
    folder.mkdir()
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, allow_unicode=True)
    (folder / "dataset.yaml").write_text(text, "utf-8")


def _problems(paths, ds_id: str) -> list[str]:
    with pytest.raises(DescriptorError) as info:
        load_all(paths.datasets_dir, [ds_id])
    return [str(p) for p in info.value.problems]


def test_every_shipped_descriptor_is_valid():
    found = load_all(PROJECT_ROOT / "datasets")
    themes = {d.meta["theme"] for d in found}
    assert {"health", "social-security-employment", "transport-tourism"} <= themes
    assert all(d.meta["licence"].get("redistribution", True) for d in found)


def test_mistakes_are_all_reported_with_file_and_path(paths):
    doc = {
        "id": "broken",
        **copy.deepcopy(BASE_META),
        "tables": {
            "t": table(
                [field("id", "int"), field("when", "date", constraints={"minimum": "2024-01-01", "unknown": 1})],
                primaryKey=["id"],
            ),
        },
    }
    doc["theme"] = "weather"
    del doc["licence"]
    doc["contact"]["email"] = "not-an-email"
    _write(paths, "broken", doc)
    problems = _problems(paths, "broken")
    text = "\n".join(problems)
    assert "datasets/broken/dataset.yaml: theme: 'weather' is not allowed; expected one of health, " in text
    assert "datasets/broken/dataset.yaml: (top level): 'licence' is missing; expected this key to be present" in text
    assert "contact.email: 'not-an-email' does not match" in text
    assert "tables.t.schema.fields[0].type: 'int' is not allowed; expected one of string, integer" in text
    assert (
        "tables.t.schema.fields[1].constraints: Additional properties are not allowed ('unknown' was unexpected)"
        in text
    )
    assert len(problems) == 5


def test_cross_key_mistakes(paths):
    doc = {
        "id": "keys",
        **copy.deepcopy(BASE_META),
        "tables": {
            "t": table(
                [field("a"), field("a"), field("b", constraints={"pattern": "([a-z"})],
                primaryKey=["zz"],
                sort_by=["secret"],
                foreignKeys=[{"fields": ["a"], "reference": {"resource": "nowhere", "fields": ["x"]}}],
            ),
        },
    }
    doc["tables"]["t"]["schema"]["fields"].append(field("secret", privacy={"class": "direct", "rule": "drop"}))
    doc["tables"]["t"]["schema"]["fields"].append(field("age", privacy={"class": "quasi", "rule": "age_band"}))
    _write(paths, "keys", doc)
    text = "\n".join(_problems(paths, "keys"))
    assert "tables.t.schema.fields[1].name: field 'a' is declared twice" in text
    assert "tables.t.schema.fields[2].constraints.pattern: not a valid pattern" in text
    assert "tables.t.schema.primaryKey: names unknown field 'zz'" in text
    assert "tables.t.sort_by: names 'secret', which is not a published field" in text
    assert "tables.t.schema.foreignKeys[0].reference.resource: names unknown table 'nowhere'" in text
    assert "tables.t.schema.fields[4].privacy.rule: rule 'age_band' does not apply to a string field" in text


def test_yaml_syntax_error_names_line(paths):
    _write(paths, "syntax", "id: syntax\ntitle: {zh: a\n  en: b\n")
    (problem,) = _problems(paths, "syntax")
    assert problem.startswith("datasets/syntax/dataset.yaml: line ") and "is not valid YAML" in problem


def test_folder_and_id_must_agree(paths):
    _write(paths, "folder_a", {"id": "other", **copy.deepcopy(BASE_META), "tables": {"t": table([field("a")])}})
    (problem,) = _problems(paths, "folder_a")
    assert "id: 'other' differs from the folder name 'folder_a'" in problem


def test_cli_validate_exit_codes(paths, run_cli):
    _write(paths, "good", {"id": "good", **copy.deepcopy(BASE_META), "tables": {"t": table([field("a")])}})
    ok = run_cli("datasets", "validate")
    assert ok.exit_code == 0 and "1 descriptor(s) valid: good" in ok.output
    _write(
        paths,
        "bad",
        {"id": "bad", **copy.deepcopy(BASE_META), "open_tier": "sometimes", "tables": {"t": table([field("a")])}},
    )
    result = run_cli("datasets", "validate")
    assert result.exit_code == 1
    assert "Error: 1 problem(s) in dataset descriptors:" in result.output
    assert "datasets/bad/dataset.yaml: open_tier: 'sometimes' is not allowed" in result.output
    assert "Traceback" not in result.output
    zh = run_cli("datasets", "validate", lang="zh")
    assert "数据集描述文件有 1 处问题" in zh.output
    unknown = run_cli("datasets", "validate", "nope")
    assert unknown.exit_code == 1 and "no dataset 'nope'" in unknown.output
