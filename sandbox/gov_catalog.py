"""China's government data resource catalog: the fields, the opening plan, and the three lists.

A descriptor may carry a ``catalog:`` block with the fields a government data resource
catalog asks for (政务数据资源目录)::

    catalog:
      resource_code: 360100-B0001/00001      # 信息资源代码
      provider: {zh: 市卫生健康委, en: Municipal Health Commission}   # 提供方
      provider_code: 11360100MB1234567X      # 提供方代码（统一社会信用代码）
      sharing_type: unconditional            # 无条件共享 / conditional 有条件共享 / none 不予共享
      usage_mode: [download, api, sandbox]   # 使用方式：下载 / 接口 / 仅沙箱
      theme_code: "06.01"                    # 国家主题分类代码

The opening type (开放类型) is the descriptor's ``open_tier`` and the update cycle (更新周期)
its ``update_frequency``: one home per concept, so they cannot disagree. ``validate`` checks
the block (the JSON Schema for shapes; :func:`problems` for the rules across keys: download
and API use are for the unconditional tier only, nothing not open may be shared without
conditions).

``datasets/planned.yaml`` lists datasets planned but not yet published (``planned:`` entries:
id, title, publisher, planned date, theme, opening type; no tables): the opening plan
(开放计划). An entry whose date has passed without a published dataset of its id is overdue.
:func:`publish_plan` copies the checked plan into ``<data root>/plan.json`` after every
build, so that the public data service (which reads the data root only) can serve it.

The opening list (开放清单: every dataset open with or without conditions), the sharing list
(共享清单: every dataset shared with or without conditions) and the opening plan are rows
with Chinese and English headers, served as JSON and CSV by hub/data_service.py and shown by
the leaderboard app's catalog lists page.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import tempfile
from pathlib import Path

import yaml

from sandbox import clock
from sandbox.errors import DescriptorError, Problem

SHARING_TYPES = {
    "unconditional": {"zh": "无条件共享", "en": "Shared unconditionally"},
    "conditional": {"zh": "有条件共享", "en": "Shared on conditions"},
    "none": {"zh": "不予共享", "en": "Not shared"},
}
USAGE_MODES = {
    "download": {"zh": "下载", "en": "download"},
    "api": {"zh": "接口", "en": "API"},
    "sandbox": {"zh": "沙箱", "en": "sandbox"},
}
FREQUENCY_LABELS = {
    "daily": {"zh": "每日", "en": "daily"},
    "weekly": {"zh": "每周", "en": "weekly"},
    "monthly": {"zh": "每月", "en": "monthly"},
    "quarterly": {"zh": "每季度", "en": "quarterly"},
    "annual": {"zh": "每年", "en": "annual"},
    "irregular": {"zh": "不定期", "en": "irregular"},
    "never": {"zh": "不更新", "en": "never"},
}
PLAN_FILE = "planned.yaml"
PUBLISHED_PLAN = "plan.json"
LISTS = ("opening", "sharing", "plan")

_TEXT = {
    "type": "object",
    "required": ["zh", "en"],
    "additionalProperties": False,
    "properties": {"zh": {"type": "string", "minLength": 1}, "en": {"type": "string", "minLength": 1}},
}
PLAN_SCHEMA = {
    "type": "object",
    "required": ["planned"],
    "additionalProperties": False,
    "properties": {
        "planned": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "title", "publisher", "planned_date", "theme", "open_tier"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "pattern": "^[a-z][a-z0-9_]{1,62}$"},
                    "title": _TEXT,
                    "publisher": _TEXT,
                    "planned_date": {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
                    "theme": {
                        "enum": ["health", "social-security-employment", "education-culture", "transport-tourism"]
                    },
                    "open_tier": {"enum": ["unconditional", "conditional", "not-open"]},
                    "resource_code": {"type": "string"},
                    "note": _TEXT,
                },
            },
        }
    },
}


def problems(doc: dict, file: str) -> list[Problem]:
    """Rules of a descriptor's ``catalog:`` block that its JSON Schema cannot state."""
    cat = doc.get("catalog")
    if not isinstance(cat, dict):
        return []
    out = []
    tier = doc.get("open_tier")
    modes = cat.get("usage_mode") or []
    public = [m for m in modes if m in ("download", "api")]
    if tier != "unconditional" and public:
        out.append(
            Problem(
                file,
                "catalog.usage_mode",
                f"{', '.join(public)} is public use, but open_tier is {tier!r}",
                "usage_mode [sandbox] for a dataset that is not open unconditionally (下载和接口仅用于无条件开放数据)",
            )
        )
    if tier == "not-open" and cat.get("sharing_type") == "unconditional":
        out.append(
            Problem(
                file,
                "catalog.sharing_type",
                "a dataset that is not open cannot be shared unconditionally",
                "conditional or none (不予开放的数据不能无条件共享)",
            )
        )
    if len(set(modes)) != len(modes):
        out.append(Problem(file, "catalog.usage_mode", "names a mode twice", "each of download, api, sandbox once"))
    return out


# --- the opening plan --------------------------------------------------------------------------


def load_plan(datasets_dir: Path) -> list[dict]:
    """The planned datasets of ``datasets/planned.yaml`` (none when there is no such file)."""
    import jsonschema

    path = Path(datasets_dir) / PLAN_FILE
    if not path.exists():
        return []
    file = f"{Path(datasets_dir).name}/{PLAN_FILE}"
    try:
        doc = yaml.safe_load(path.read_text("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DescriptorError([Problem(file, "", f"is not valid UTF-8 YAML ({exc})", "YAML")]) from None
    except ValueError as exc:  # YAML reads 2027-02-30 as a date that does not exist
        raise DescriptorError([Problem(file, "", f"holds an impossible date ({exc})", "YYYY-MM-DD")]) from None
    # YAML reads 2027-03-31 as a date: the schema wants the text.
    for item in (doc or {}).get("planned") or [] if isinstance(doc, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("planned_date"), dt.date):
            item["planned_date"] = item["planned_date"].isoformat()
    validator = jsonschema.Draft202012Validator(PLAN_SCHEMA)
    found = [
        Problem(file, ".".join(map(str, e.absolute_path)), e.message, "see sandbox/gov_catalog.py")
        for e in validator.iter_errors(doc)
    ]
    if not found:
        seen: set[str] = set()
        for i, item in enumerate(doc["planned"]):
            try:
                dt.date.fromisoformat(item["planned_date"])
            except ValueError:
                found.append(Problem(file, f"planned.{i}.planned_date", "is not a calendar date", "YYYY-MM-DD"))
            if item["id"] in seen:
                found.append(Problem(file, f"planned.{i}.id", f"{item['id']!r} is planned twice", "unique ids"))
            seen.add(item["id"])
    if found:
        raise DescriptorError(found)
    return doc["planned"]


def publish_plan(datasets_dir: Path, data_root: Path) -> None:
    """Copy the checked plan to ``<data root>/plan.json`` (atomically); an invalid plan is left out."""
    try:
        plan = load_plan(datasets_dir)
    except DescriptorError:
        return  # `contesthub datasets validate` reports it; a build of a dataset goes on
    fd, tmp = tempfile.mkstemp(dir=data_root, prefix=".plan.json.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"planned": plan}, fh, ensure_ascii=False, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, Path(data_root) / PUBLISHED_PLAN)


def published_plan(data_root: Path) -> list[dict]:
    try:
        return json.loads((Path(data_root) / PUBLISHED_PLAN).read_text("utf-8"))["planned"]
    except (OSError, ValueError, KeyError):
        return []


# --- the three lists ---------------------------------------------------------------------------


def _label(table: dict, key: str | None, lang: str) -> str:
    return (table.get(key) or {}).get(lang, key or "") if key else ""


def _entries(cat: dict) -> list[tuple[str, dict]]:
    return sorted(((ds_id, d["entry"]) for ds_id, d in cat["datasets"].items()), key=lambda x: x[0])


def _row(ds_id: str, e: dict) -> dict:
    from sandbox.catalog import THEMES, TIERS

    c = e.get("catalog") or {}
    modes = c.get("usage_mode") or []
    return {
        "resource_code": c.get("resource_code", ""),
        "id": ds_id,
        "title_zh": e["title"]["zh"],
        "title_en": e["title"]["en"],
        "provider_zh": (c.get("provider") or e["publisher"])["zh"],
        "provider_en": (c.get("provider") or e["publisher"])["en"],
        "provider_code": c.get("provider_code", ""),
        "theme_zh": THEMES[e["theme"]]["zh"],
        "theme_en": THEMES[e["theme"]]["en"],
        "theme_code": c.get("theme_code", ""),
        "opening_type_zh": TIERS[e["open_tier"]]["zh"],
        "opening_type_en": TIERS[e["open_tier"]]["en"],
        "sharing_type_zh": _label(SHARING_TYPES, c.get("sharing_type"), "zh"),
        "sharing_type_en": _label(SHARING_TYPES, c.get("sharing_type"), "en"),
        "usage_mode_zh": "、".join(USAGE_MODES[m]["zh"] for m in modes),
        "usage_mode_en": ", ".join(USAGE_MODES[m]["en"] for m in modes),
        "update_cycle_zh": _label(FREQUENCY_LABELS, e.get("update_frequency"), "zh"),
        "update_cycle_en": _label(FREQUENCY_LABELS, e.get("update_frequency"), "en"),
        "version": e["version"],
        "built_at": e["built_at"],
    }


def opening_list(cat: dict) -> list[dict]:
    """开放清单: the datasets open to society, unconditionally or on conditions."""
    return [_row(i, e) for i, e in _entries(cat) if e["open_tier"] in ("unconditional", "conditional")]


def sharing_list(cat: dict) -> list[dict]:
    """共享清单: the datasets shared between government bodies, unconditionally or on conditions."""
    return [
        _row(i, e)
        for i, e in _entries(cat)
        if (e.get("catalog") or {}).get("sharing_type") in ("unconditional", "conditional")
    ]


def opening_plan(plan: list[dict], cat: dict, today: dt.date | None = None) -> list[dict]:
    """开放计划: each planned dataset with its status: published, planned, or overdue (past its date)."""
    from sandbox.catalog import THEMES, TIERS

    today = today or clock.now().date()
    status_text = {
        "published": {"zh": "已发布", "en": "published"},
        "planned": {"zh": "计划中", "en": "planned"},
        "overdue": {"zh": "已逾期", "en": "overdue"},
    }
    rows = []
    for p in sorted(plan, key=lambda p: (p["planned_date"], p["id"])):
        date = dt.date.fromisoformat(p["planned_date"])
        status = "published" if p["id"] in cat["datasets"] else ("overdue" if date < today else "planned")
        rows.append(
            {
                "id": p["id"],
                "resource_code": p.get("resource_code", ""),
                "title_zh": p["title"]["zh"],
                "title_en": p["title"]["en"],
                "publisher_zh": p["publisher"]["zh"],
                "publisher_en": p["publisher"]["en"],
                "theme_zh": THEMES[p["theme"]]["zh"],
                "theme_en": THEMES[p["theme"]]["en"],
                "opening_type_zh": TIERS[p["open_tier"]]["zh"],
                "opening_type_en": TIERS[p["open_tier"]]["en"],
                "planned_date": p["planned_date"],
                "status": status,
                "status_zh": status_text[status]["zh"],
                "status_en": status_text[status]["en"],
                "days_overdue": (today - date).days if status == "overdue" else 0,
            }
        )
    return rows


def to_csv(rows: list[dict]) -> bytes:
    """The rows as CSV in UTF-8 with a BOM (Excel opens it as UTF-8)."""
    out = io.StringIO()
    if rows:
        w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)
    return "\ufeff".encode() + out.getvalue().encode("utf-8")
