"""Small builders for crafted datasets in tests (see conftest.py for the fixtures)."""

from __future__ import annotations

import itertools

_ids = itertools.count(1)


def new_id(prefix: str = "ds") -> str:
    return f"{prefix}_{next(_ids)}"


BASE_META = {
    "version": "1.0.0",
    "title": {"zh": "测试数据", "en": "Test data"},
    "description": {"zh": "测试用的小数据集", "en": "A small dataset for tests"},
    "theme": "health",
    "keywords": {"zh": ["测试"], "en": ["test"]},
    "publisher": {"zh": "测试", "en": "Tests"},
    "contact": {"name": "tests", "email": "tests@contesthub.example"},
    "licence": {"id": "CC0-1.0", "title": "CC0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"},
    "source": {"description": {"zh": "测试", "en": "tests"}, "citation": "tests"},
    "open_tier": "unconditional",
    "update_frequency": "never",
    "temporal": {"start": "2024-01-01", "end": "2024-12-31"},
    "spatial": {"zh": "无", "en": "none"},
}


def field(name: str, type_: str = "string", **extra) -> dict:
    return {"name": name, "type": type_, "title": {"zh": name, "en": name}, **extra}


def table(fields: list[dict], path: str = "data.csv", fmt: str = "csv", **extra) -> dict:
    schema_keys = {k: extra.pop(k) for k in ("primaryKey", "foreignKeys", "missingValues") if k in extra}
    source = {"path": path, "format": fmt, **extra.pop("source", {})}
    return {
        "title": {"zh": "表", "en": "table"},
        "source": source,
        "schema": {"fields": fields, **schema_keys},
        **extra,
    }
