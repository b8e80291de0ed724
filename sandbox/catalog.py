"""The published catalog: what is open, in which version, under which licence.

``<data root>/catalog.json`` is rebuilt after every build from the immutable per-version
``catalog.json`` files, and written atomically, so a reader (the sandbox, the leaderboard's
catalog page) always sees a whole file. Search understands Chinese and English: Chinese
text has no spaces, so a query matches as a substring of titles, keywords and
descriptions; English matches words case-insensitively.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import urllib.parse
from pathlib import Path

from sandbox import clock
from sandbox.errors import NotFound

THEMES = {
    "health": {"zh": "医疗健康", "en": "Health and medical care"},
    "social-security-employment": {"zh": "社保就业", "en": "Social security and employment"},
    "education-culture": {"zh": "教育文化", "en": "Education and culture"},
    "transport-tourism": {"zh": "交通旅游", "en": "Transport and tourism"},
}
TIERS = {
    "unconditional": {"zh": "无条件开放", "en": "Unconditional"},
    "conditional": {"zh": "有条件开放", "en": "Conditional"},
    "not-open": {"zh": "不予开放", "en": "Not open"},
}
# EU frequency vocabulary, as DCAT-AP expects.
FREQUENCIES = {
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "monthly": "MONTHLY",
    "quarterly": "QUARTERLY",
    "annual": "ANNUAL",
    "irregular": "IRREG",
    "never": "NEVER",
}


def write_root_catalog(
    data_root: Path, conditional_root: Path | None = None, not_open: dict[str, dict | None] | None = None
) -> dict:
    """Collect every dataset's versions into ``<data root>/catalog.json`` (atomic replace).

    With ``conditional_root`` (the public data root's catalog), the conditional datasets are
    listed too, under ``conditional``: their descriptions and schemas, so that teams can see
    what they would apply for, but no file names (the data stays in their own roots). The
    sharing list's not-open datasets (``not_open``: title, publisher, theme and the reason,
    nothing else) are kept from the file as it was, with ``not_open``'s changes applied (an
    entry of None removes one).
    """
    datasets = _collect(data_root)
    doc = {"generated_at": clock.now().isoformat(timespec="seconds"), "datasets": datasets}
    if conditional_root is not None or not_open:
        listing = dict(load(data_root).get("not_open", {}))
        for ds_id, entry in (not_open or {}).items():
            if entry is None:
                listing.pop(ds_id, None)
            else:
                listing[ds_id] = entry
        doc["not_open"] = listing
    if conditional_root is not None:
        listed = {}
        for root in sorted(conditional_root.iterdir()) if conditional_root.is_dir() else []:
            found = _collect(root) if root.is_dir() and (root / root.name / "latest").is_symlink() else {}
            if root.name in found:
                listed[root.name] = _without_files(found[root.name])
        doc["conditional"] = listed
    fd, tmp = tempfile.mkstemp(dir=data_root, prefix=".catalog.json.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, data_root / "catalog.json")
    return doc


def _without_files(d: dict) -> dict:
    tables = {n: {k: v for k, v in t.items() if k != "files"} for n, t in d["entry"]["tables"].items()}
    entry = {**d["entry"], "tables": tables}
    return {**d, "entry": entry}


def _collect(data_root: Path) -> dict:
    datasets = {}
    for home in sorted(p for p in data_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        link = home / "latest"
        if not link.is_symlink():
            continue
        vers = sorted(int(v.name[1:]) for v in home.iterdir() if v.name[:1] == "v" and v.name[1:].isdigit())
        entry = json.loads((link / "catalog.json").read_text("utf-8"))
        history = []
        for v in vers:
            doc = json.loads((home / f"v{v}" / "catalog.json").read_text("utf-8"))
            history.append(
                {
                    "version": v,
                    "built_at": doc["built_at"],
                    "descriptor_version": doc["descriptor_version"],
                    "rows": sum(t["rows"] for t in doc["tables"].values()),
                }
            )
        datasets[home.name] = {"latest": entry["version"], "versions": history, "entry": entry}
    return datasets


def load(data_root: Path) -> dict:
    path = data_root / "catalog.json"
    if not path.exists():
        return {"generated_at": None, "datasets": {}}
    return json.loads(path.read_text("utf-8"))


def entry(data_root: Path, dataset_id: str, version: int | None = None) -> dict:
    """The catalog entry of a dataset (latest version unless one is named)."""
    cat = load(data_root)
    if dataset_id not in cat["datasets"] and dataset_id in cat.get("conditional", {}) and version is None:
        return cat["conditional"][dataset_id]["entry"]  # its description; the data is in its own root
    if dataset_id not in cat["datasets"]:
        known = ", ".join(cat["datasets"]) or "none built yet"
        raise NotFound(
            f"no published dataset {dataset_id!r} (published: {known}); run `contesthub datasets list` to see them",
            f"没有已发布的数据集 {dataset_id!r}（已发布：{known}）；运行 `contesthub datasets list` 查看",
        )
    if version is None:
        return cat["datasets"][dataset_id]["entry"]
    path = data_root / dataset_id / f"v{version}" / "catalog.json"
    if not path.exists():
        have = ", ".join(str(v["version"]) for v in cat["datasets"][dataset_id]["versions"])
        raise NotFound(
            f"dataset {dataset_id!r} has no version {version} (versions: {have})",
            f"数据集 {dataset_id!r} 没有版本 {version}（现有版本：{have}）",
        )
    return json.loads(path.read_text("utf-8"))


def summary_rows(cat: dict) -> list[dict]:
    """One flat row per dataset, for listings (CLI, notebooks, the leaderboard's catalog page)."""
    rows = []
    for ds_id, d in cat["datasets"].items():
        e = d["entry"]
        rows.append(
            {
                "id": ds_id,
                "title_zh": e["title"]["zh"],
                "title_en": e["title"]["en"],
                "theme": e["theme"],
                "tier": e["open_tier"],
                "publisher_zh": e["publisher"]["zh"],
                "publisher_en": e["publisher"]["en"],
                "tables": ", ".join(e["tables"]),
                "rows": sum(t["rows"] for t in e["tables"].values()),
                "bytes": sum(t["bytes"] for t in e["tables"].values()),
                "version": e["version"],
                "licence": e["licence"]["id"],
                "built_at": e["built_at"],
            }
        )
    return rows


def _texts(e: dict) -> tuple[list[str], list[str], list[str]]:
    """(titles, keywords, descriptions) in both languages, tables and fields included."""
    titles = [e["title"]["zh"], e["title"]["en"]]
    keywords = e["keywords"]["zh"] + e["keywords"]["en"] + [e["id"], e["theme"]]
    descs = [e["description"]["zh"], e["description"]["en"]]
    for name, t in e["tables"].items():
        titles += [t["title"]["zh"], t["title"]["en"]]
        keywords.append(name)
        for f in t["schema"]["fields"]:
            descs += [f["name"], f["title"]["zh"], f["title"]["en"]]
    return titles, keywords, descs


def _hits(term: str, texts: list[str]) -> int:
    if re.search(r"[\u3400-\u9fff]", term):  # CJK: substring
        return sum(term in t for t in texts)
    pattern = re.compile(r"(?<![a-z0-9])" + re.escape(term.lower()), re.I)
    return sum(bool(pattern.search(t)) for t in texts)


def search(data_root: Path, query: str = "", *, theme: str | None = None, tier: str | None = None) -> list[dict]:
    """Datasets matching every word of ``query`` (zh or en), best first, with their score."""
    cat = load(data_root)
    terms = [t for t in re.split(r"[\s,，、]+", query.strip()) if t]
    scored = []
    for row in summary_rows(cat):
        e = cat["datasets"][row["id"]]["entry"]
        if (theme and e["theme"] != theme) or (tier and e["open_tier"] != tier):
            continue
        titles, keywords, descs = _texts(e)
        score = 0
        for term in terms:
            s = 3 * _hits(term, titles) + 2 * _hits(term, keywords) + _hits(term, descs)
            if not s:
                break
            score += s
        else:
            scored.append({**row, "score": score})
    return sorted(scored, key=lambda r: (-r["score"], r["id"]))


def export_dcat(data_root: Path, base_url: str = "") -> dict:
    """The catalog as DCAT-AP JSON-LD (datasets, distributions with size and checksum)."""
    cat = load(data_root)
    datasets = []
    for ds_id, d in cat["datasets"].items():
        e = d["entry"]
        gov = e.get("catalog") or {}
        dists = []
        for tname, t in e["tables"].items():
            for f in t["files"]:
                # Partition folders hold escaped values (city=%E5%8C%97...): quote the path so
                # a web server serving the data root maps the URL back to the real file.
                rel = f"{ds_id}/v{e['version']}/{urllib.parse.quote(f['path'])}"
                url = f"{base_url.rstrip('/')}/{rel}" if base_url else rel
                dists.append(
                    {
                        "@type": "dcat:Distribution",
                        "dct:title": [
                            {"@language": "zh", "@value": t["title"]["zh"]},
                            {"@language": "en", "@value": t["title"]["en"]},
                        ],
                        "dct:identifier": f"{ds_id}.{tname}",
                        "dcat:downloadURL": {"@id": url},
                        "dcat:mediaType": "application/vnd.apache.parquet",
                        "dct:format": "Parquet",
                        "dcat:byteSize": {"@value": str(f["bytes"]), "@type": "xsd:nonNegativeInteger"},
                        "spdx:checksum": {
                            "@type": "spdx:Checksum",
                            "spdx:algorithm": {"@id": "spdx:checksumAlgorithm_sha256"},
                            "spdx:checksumValue": f["sha256"],
                        },
                        "dct:license": {"@id": e["licence"]["url"]},
                    }
                )
        datasets.append(
            {
                "@type": "dcat:Dataset",
                "@id": f"{base_url.rstrip('/')}/{ds_id}" if base_url else ds_id,
                "dct:identifier": ds_id,
                "dct:title": [
                    {"@language": "zh", "@value": e["title"]["zh"]},
                    {"@language": "en", "@value": e["title"]["en"]},
                ],
                "dct:description": [
                    {"@language": "zh", "@value": e["description"]["zh"]},
                    {"@language": "en", "@value": e["description"]["en"]},
                ],
                "dcat:keyword": [{"@language": "zh", "@value": k} for k in e["keywords"]["zh"]]
                + [{"@language": "en", "@value": k} for k in e["keywords"]["en"]],
                "dcat:theme": [
                    {"@id": f"contesthub-theme:{e['theme']}", "skos:prefLabel": THEMES[e["theme"]]["en"]},
                    # The national theme classification (sandbox/gov_catalog.py), when declared.
                    *(
                        [{"@id": f"cn-theme:{gov['theme_code']}", "skos:notation": gov["theme_code"]}]
                        if gov.get("theme_code")
                        else []
                    ),
                ],
                **(
                    {
                        "adms:identifier": {"@type": "adms:Identifier", "skos:notation": gov["resource_code"]},
                        "dct:creator": {
                            "@type": "foaf:Agent",
                            "dct:identifier": gov["provider_code"],
                            "foaf:name": [
                                {"@language": "zh", "@value": gov["provider"]["zh"]},
                                {"@language": "en", "@value": gov["provider"]["en"]},
                            ],
                        },
                        "contesthub:sharingType": gov["sharing_type"],
                        "contesthub:usageMode": gov["usage_mode"],
                    }
                    if gov
                    else {}
                ),
                "dct:publisher": {
                    "@type": "foaf:Agent",
                    "foaf:name": [
                        {"@language": "zh", "@value": e["publisher"]["zh"]},
                        {"@language": "en", "@value": e["publisher"]["en"]},
                    ],
                },
                "dcat:contactPoint": {
                    "@type": "vcard:Kind",
                    "vcard:fn": e["contact"]["name"],
                    "vcard:hasEmail": f"mailto:{e['contact']['email']}",
                },
                "dct:license": {"@id": e["licence"]["url"], "dct:title": e["licence"]["title"]},
                "dct:accessRights": {
                    "@id": f"http://publications.europa.eu/resource/authority/access-right/{e['access_rights']}"
                },
                "dct:accrualPeriodicity": {
                    "@id": "http://publications.europa.eu/resource/authority/frequency/"
                    + FREQUENCIES[e["update_frequency"]]
                },
                "dct:temporal": {
                    "@type": "dct:PeriodOfTime",
                    "dcat:startDate": e["temporal"]["start"],
                    "dcat:endDate": e["temporal"]["end"],
                },
                "dct:spatial": {
                    "@type": "dct:Location",
                    "skos:prefLabel": [
                        {"@language": "zh", "@value": e["spatial"]["zh"]},
                        {"@language": "en", "@value": e["spatial"]["en"]},
                    ],
                },
                "dct:source": e["source"].get("citation"),
                "dcat:version": str(e["version"]),
                "dct:issued": e["built_at"],
                "dcat:distribution": dists,
            }
        )
    return {
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
            "foaf": "http://xmlns.com/foaf/0.1/",
            "vcard": "http://www.w3.org/2006/vcard/ns#",
            "skos": "http://www.w3.org/2004/02/skos/core#",
            "spdx": "http://spdx.org/rdf/terms#",
            "xsd": "http://www.w3.org/2001/XMLSchema#",
            "contesthub-theme": "urn:contesthub:theme:",
            "cn-theme": "urn:cn:gov-data-theme:",
            "adms": "http://www.w3.org/ns/adms#",
            "contesthub": "urn:contesthub:",
        },
        "@type": "dcat:Catalog",
        "dct:title": [
            {"@language": "zh", "@value": "contesthub 开放数据目录"},
            {"@language": "en", "@value": "contesthub open data catalog"},
        ],
        "dct:modified": cat.get("generated_at"),
        "dcat:dataset": datasets,
    }
