"""Dataset descriptors: ``datasets/<id>/dataset.yaml``.

A descriptor is the one place a data owner describes a dataset: the catalog entry, a
Frictionless Table Schema per table (with zh/en titles, units and indicator definitions)
and the privacy rules. :func:`load_all` checks every descriptor against
``schemas/dataset.schema.json`` and then against the rules a JSON Schema cannot express
(keys name real fields, identifiers are never published as they are, ...), and reports
*every* problem at once, each with file, field path, what is wrong and what is expected.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sandbox import gov_catalog
from sandbox.errors import DescriptorError, NotFound, Problem

SCHEMA_PATH = Path(__file__).with_name("schemas") / "dataset.schema.json"

#: Frictionless field type -> DuckDB column type.
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "datetime": "TIMESTAMP",
    "time": "TIME",
    "year": "INTEGER",
}

#: Which generalisation rules make sense for which field types.
RULE_TYPES = {
    "age_band": {"integer", "number"},
    "top_code": {"integer", "number"},
    "week": {"date", "datetime"},
    "month": {"date", "datetime"},
    "quarter": {"date", "datetime"},
    "year": {"date", "datetime"},
    "truncate": {"string"},
}

#: Access rights in DCAT terms for each open tier (China's catalog guides call these
#: unconditional / conditional / not open).
ACCESS_RIGHTS = {"unconditional": "PUBLIC", "conditional": "RESTRICTED", "not-open": "NON_PUBLIC"}

DEFAULT_K = 11
#: The highest average re-identification risk a person-level table may have unless its
#: descriptor says otherwise (the Heritage Health Prize's release used 0.05).
DEFAULT_AVERAGE_RISK = 0.05
#: Field types that are quasi-identifiers in a person-level table unless a reason says why not.
TEMPORAL_TYPES = {"date", "datetime", "time", "year"}


def test_table_name(table: str) -> str:
    """The published test table of a table with a holdout: its held-out rows without the hidden
    columns. The build writes it, challenges point contestants to it, the leakage check reads it."""
    return f"{table}_test"


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    title: dict[str, str]
    description: dict[str, str] | None
    unit: str | None
    definition: dict[str, str] | None
    constraints: dict[str, Any]
    format: str | None
    privacy_class: str
    rule: str
    rule_options: dict[str, Any]
    source_name: str  # the header in the raw file
    reason: dict[str, str] | None = None  # why a date or facility id is no quasi-identifier; why a pseudonym is stable

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.type]

    @property
    def published(self) -> bool:
        return self.rule != "drop"


@dataclass(frozen=True)
class SourceSpec:
    path: str
    format: str
    encoding: str = "auto"
    delimiter: str = ","
    sheet: str | None = None


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: dict[str, str]
    description: dict[str, str] | None
    source: SourceSpec
    fields: tuple[Field, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[dict, ...]
    missing_values: tuple[str, ...]
    on_error: str
    sort_by: tuple[str, ...]
    partition_by: tuple[str, ...]
    k: int
    on_small_groups: str
    allow_duplicate_rows: bool = False
    holdout: dict | None = None  # {"where": SQL over source values, "hidden": [fields], "related": {table: {where}}}
    person: str | None = None  # the field identifying a person: k counts distinct persons
    risk_max: float | None = None  # highest prosecutor risk allowed; None: 1/k
    risk_average: float = DEFAULT_AVERAGE_RISK

    @property
    def published_sort_by(self) -> tuple[str, ...]:
        """The order of the published rows: a person-level table keeps only sort fields published
        unchanged, then takes a keyed random order (sorting on a pseudonym is random anyway, and
        far slower to do on text than on a number)."""
        if not self.person:
            return self.sort_by
        return tuple(c for c in self.sort_by if self.field(c).rule == "keep")

    @property
    def max_risk(self) -> float:
        """The highest prosecutor risk (1 / smallest group) the build accepts."""
        return self.risk_max if self.risk_max is not None else 1 / self.k

    @property
    def test_table(self) -> str | None:
        """Name of the published test table (the held-out rows without the hidden columns)."""
        return test_table_name(self.name) if self.holdout else None

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def quasi_identifiers(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.privacy_class == "quasi" and f.published)


@dataclass(frozen=True)
class Dataset:
    id: str
    path: Path  # the descriptor file
    meta: dict[str, Any]  # the catalog fields, as written
    tables: tuple[TableSpec, ...] = field(default=())

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def text(self) -> bytes:
        return self.path.read_bytes()

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text).hexdigest()

    @property
    def tier(self) -> str:
        """unconditional, conditional (有条件开放) or not-open (不予开放)."""
        return self.meta["open_tier"]

    @property
    def agreement(self) -> dict | None:
        """``{version, text: {zh, en}}`` of a conditional dataset's data-use agreement."""
        return (self.meta.get("access") or {}).get("agreement")

    @property
    def reviewers(self) -> str | None:
        """The hub group of the publishing body's reviewers, who may decide access requests."""
        return (self.meta.get("access") or {}).get("reviewers")

    def table(self, name: str) -> TableSpec:
        for t in self.tables:
            if t.name == name:
                return t
        raise NotFound(f"dataset {self.id!r} has no table {name!r}", f"数据集 {self.id!r} 没有表 {name!r}")

    def withheld(self, table: str) -> tuple[tuple[str, str], ...]:
        """``(holdout table, where)`` for each holdout that cuts rows out of ``table``.

        Those rows are published nowhere (neither in ``table`` nor in its test table): they
        would let anyone count the held-out answers back (see ``holdout.related``).
        """
        return tuple(
            (t.name, cut["where"])
            for t in self.tables
            if t.holdout
            for name, cut in (t.holdout.get("related") or {}).items()
            if name == table
        )

    def build_order(self) -> list[TableSpec]:
        """Tables ordered so that a referenced table is built before the tables pointing at it."""
        done: list[TableSpec] = []
        pending = list(self.tables)
        while pending:
            for t in pending:
                refs = {fk["reference"]["resource"] for fk in t.foreign_keys} - {t.name}
                if refs <= {d.name for d in done}:
                    done.append(t)
                    pending.remove(t)
                    break
            else:  # a cycle; validate() reports it, keep declaration order here
                done.extend(pending)
                break
        return done


class _Loader(yaml.SafeLoader):
    """YAML without implicit timestamps: ``minimum: 2023-01-01`` stays text, as in a Table Schema."""


_Loader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _expected(error: jsonschema.ValidationError) -> str:
    v, s = error.validator, error.schema
    if v == "enum":
        return "one of " + ", ".join(map(str, s["enum"]))
    if v == "required":
        return "this key to be present"
    if v == "additionalProperties":
        return "only the keys " + ", ".join(sorted(s.get("properties", {})))
    if v == "pattern":
        return f"text matching {s['pattern']}"
    if v == "type":
        return f"a value of type {s['type']}"
    return ""


def _schema_problems(doc: Any, file: str) -> list[Problem]:
    problems = []
    for e in sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        what = e.message
        if e.validator == "enum":
            what = f"{e.instance!r} is not allowed"
        elif e.validator == "required":
            what = e.message.replace("is a required property", "is missing")
        expected = _expected(e)
        if e.validator == "required" and list(e.absolute_path)[-1:] == ["privacy"] and "'class'" in e.message:
            name = _field_name(doc, e.absolute_path)
            what = f"field {name!r} has no privacy class"
            expected = "class: direct, quasi, sensitive or none (see README, Publish a dataset)"
        problems.append(Problem(file, _path(e.absolute_path), what, expected))
    return problems


def _field_name(doc: Any, path) -> str:
    """The ``name`` of the field whose sub-key ``path`` points into (for messages)."""
    node = doc
    for part in list(path)[:-1]:
        node = node[part]
    return str(node.get("name", "?")) if isinstance(node, dict) else "?"


def _semantic_problems(doc: dict, file: str) -> list[Problem]:
    """Rules across keys that the JSON Schema cannot state."""
    out: list[Problem] = []
    tables = doc.get("tables") or {}
    for tname, t in tables.items():
        base = f"tables.{tname}"
        fields = t.get("schema", {}).get("fields", [])
        names = [f.get("name") for f in fields]
        seen = set()
        for i, f in enumerate(fields):
            fp = f"{base}.schema.fields[{i}]"
            if f.get("name") in seen:
                out.append(Problem(file, f"{fp}.name", f"field {f['name']!r} is declared twice", "unique names"))
            seen.add(f.get("name"))
            priv = f.get("privacy") or {}
            cls, rule = priv.get("class", "none"), priv.get("rule")
            if cls == "direct" and rule not in ("drop", "hash"):
                out.append(
                    Problem(
                        file,
                        f"{fp}.privacy.rule",
                        f"direct identifier {f.get('name')!r} would be published as it is",
                        "rule: drop or rule: hash",
                    )
                )
            if rule in RULE_TYPES and f.get("type") not in RULE_TYPES[rule]:
                out.append(
                    Problem(
                        file,
                        f"{fp}.privacy.rule",
                        f"rule {rule!r} does not apply to a {f.get('type')} field",
                        "a field of type " + " or ".join(sorted(RULE_TYPES[rule])),
                    )
                )
            if rule == "age_band" and "width" not in priv:
                out.append(Problem(file, f"{fp}.privacy.width", "age_band needs a band width", "width: 5"))
            if rule == "top_code" and "top_code" not in priv:
                out.append(Problem(file, f"{fp}.privacy.top_code", "top_code needs a value", "top_code: 90"))
            if rule == "truncate" and "length" not in priv:
                out.append(Problem(file, f"{fp}.privacy.length", "truncate needs a length", "length: 4"))
            if "scope" in priv and rule != "hash":
                out.append(Problem(file, f"{fp}.privacy.scope", "scope applies to pseudonyms only", "rule: hash"))
            if rule == "hash" and priv.get("scope", "version") != "version" and "reason" not in priv:
                out.append(
                    Problem(
                        file,
                        f"{fp}.privacy.reason",
                        f"pseudonym {f.get('name')!r} is kept across {priv['scope']} but the descriptor does not "
                        "say why (a shared pseudonym lets anyone join the tables or versions it appears in)",
                        "reason: {zh: ..., en: ...}, shown in the catalog, or no scope (one pseudonym per version)",
                    )
                )
            pattern = (f.get("constraints") or {}).get("pattern")
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    out.append(
                        Problem(
                            file, f"{fp}.constraints.pattern", f"not a valid pattern ({exc})", "a regular expression"
                        )
                    )
        schema = t.get("schema", {})
        published = {f.get("name") for f in fields if (f.get("privacy") or {}).get("rule") != "drop"}
        out += _person_problems(file, base, t, fields)
        for key in ("primaryKey",):
            for n in schema.get(key) or []:
                if n not in names:
                    out.append(
                        Problem(
                            file,
                            f"{base}.schema.{key}",
                            f"names unknown field {n!r}",
                            "one of " + ", ".join(map(str, names)),
                        )
                    )
        for key in ("sort_by", "partition_by"):
            for n in t.get(key) or []:
                if n not in published:
                    out.append(
                        Problem(
                            file,
                            f"{base}.{key}",
                            f"names {n!r}, which is not a published field",
                            "one of " + ", ".join(sorted(map(str, published))),
                        )
                    )
        holdout = t.get("holdout")
        if holdout:
            for n in holdout.get("hidden", []):
                if n not in published:
                    out.append(
                        Problem(
                            file,
                            f"{base}.holdout.hidden",
                            f"names {n!r}, which is not a published field",
                            "one of " + ", ".join(sorted(map(str, published))),
                        )
                    )
            for other in holdout.get("related") or {}:
                if other == tname:
                    out.append(
                        Problem(
                            file,
                            f"{base}.holdout.related.{other}",
                            "a holdout does not cut its own table here",
                            "the held-out rows of this table are chosen by holdout.where",
                        )
                    )
                elif other not in tables:
                    out.append(
                        Problem(
                            file,
                            f"{base}.holdout.related.{other}",
                            f"names unknown table {other!r}",
                            "one of " + ", ".join(n for n in tables if n != tname),
                        )
                    )
            if test_table_name(tname) in tables:
                out.append(
                    Problem(
                        file,
                        f"{base}.holdout",
                        f"the test table {test_table_name(tname)} would clash with a table",
                        f"no table named {test_table_name('<table>')}",
                    )
                )
        for j, fk in enumerate(schema.get("foreignKeys") or []):
            fkp = f"{base}.schema.foreignKeys[{j}]"
            for n in fk.get("fields", []):
                if n not in names:
                    out.append(
                        Problem(
                            file, f"{fkp}.fields", f"names unknown field {n!r}", "one of " + ", ".join(map(str, names))
                        )
                    )
            ref = fk.get("reference", {})
            target = tables.get(ref.get("resource"))
            if target is None:
                out.append(
                    Problem(
                        file,
                        f"{fkp}.reference.resource",
                        f"names unknown table {ref.get('resource')!r}",
                        "one of " + ", ".join(tables),
                    )
                )
            else:
                tnames = [f.get("name") for f in target.get("schema", {}).get("fields", [])]
                for n in ref.get("fields", []):
                    if n not in tnames:
                        out.append(
                            Problem(
                                file,
                                f"{fkp}.reference.fields",
                                f"names unknown field {n!r} of table {ref.get('resource')!r}",
                                "one of " + ", ".join(map(str, tnames)),
                            )
                        )
            if len(fk.get("fields", [])) != len(ref.get("fields", [])):
                out.append(Problem(file, fkp, "fields and reference.fields differ in length", "the same length"))
    out += _access_problems(doc, file)
    return out


def _access_problems(doc: dict, file: str) -> list[Problem]:
    """A conditional dataset needs the agreement applicants accept; a not-open one says why."""
    tier, access = doc.get("open_tier"), doc.get("access") or {}
    out = []
    if tier == "conditional" and "agreement" not in access:
        out.append(
            Problem(
                file,
                "access.agreement",
                "a conditional dataset has no data-use agreement for applicants to accept",
                "access: {agreement: {version: '1', text: {zh: ..., en: ...}}}",
            )
        )
    if tier != "conditional" and {"agreement", "reviewers", "max_days"} & set(access):
        out.append(
            Problem(
                file,
                "access",
                f"an agreement or reviewers apply to conditional data, not {tier}",
                "open_tier: conditional",
            )
        )
    if tier != "not-open" and "reason" in access:
        out.append(Problem(file, "access.reason", "a reason applies to not-open data", "open_tier: not-open"))
    return out


def _person_problems(file: str, base: str, t: dict, fields: list[dict]) -> list[Problem]:
    """The rules of a person-level table (one that names ``privacy.person``).

    Every field is classified on purpose, the person key itself is never published as it is,
    and dates and facility ids (fields pointing at another table) count as quasi-identifiers
    unless the field says why not: an exact visit date with a hospital is as identifying as a
    birth date.
    """
    person = (t.get("privacy") or {}).get("person")
    if not person:
        return []
    out: list[Problem] = []
    names = [f.get("name") for f in fields]
    if person not in names:
        out.append(
            Problem(file, f"{base}.privacy.person", f"names unknown field {person!r}", "one of " + ", ".join(names))
        )
    facility = {n for fk in (t.get("schema", {}).get("foreignKeys") or []) for n in fk.get("fields", [])}
    for i, f in enumerate(fields):
        fp, name = f"{base}.schema.fields[{i}]", f.get("name")
        priv = f.get("privacy")
        if not priv:
            out.append(
                Problem(
                    file,
                    f"{fp}.privacy",
                    f"field {name!r} has no privacy class; in a table about persons (privacy.person: {person}) "
                    "every field needs one",
                    "privacy: {class: direct, quasi, sensitive or none}",
                )
            )
            continue
        cls, rule = priv.get("class"), priv.get("rule", "keep")
        if name == person and not (cls == "direct" and rule in ("drop", "hash")):
            out.append(
                Problem(
                    file,
                    f"{fp}.privacy",
                    f"the person key {name!r} would be published as it is",
                    "class: direct with rule: drop or rule: hash",
                )
            )
        kind = "date" if f.get("type") in TEMPORAL_TYPES else ("facility id" if name in facility else None)
        if kind and rule != "drop" and cls != "quasi" and "reason" not in priv:
            out.append(
                Problem(
                    file,
                    f"{fp}.privacy.class",
                    f"{kind} {name!r} is published with class {cls!r}, but in a table about persons dates and "
                    "facility ids are quasi-identifiers",
                    "class: quasi with a generalisation (week, month, quarter, year), rule: drop, "
                    "or reason: {zh, en} saying why it identifies nobody",
                )
            )
    return out


def _to_dataset(doc: dict, path: Path) -> Dataset:
    tables = []
    for tname, t in doc["tables"].items():
        schema = t["schema"]
        fields = []
        for f in schema["fields"]:
            priv = dict(f.get("privacy") or {"class": "none"})
            cls = priv.pop("class")
            rule = priv.pop("rule", "keep")
            priv.pop("note", None)
            reason = priv.pop("reason", None)
            fields.append(
                Field(
                    name=f["name"],
                    type=f["type"],
                    title=f["title"],
                    description=f.get("description"),
                    unit=f.get("unit"),
                    definition=f.get("definition"),
                    constraints=f.get("constraints") or {},
                    format=f.get("format"),
                    privacy_class=cls,
                    rule=rule,
                    rule_options=priv,
                    source_name=f.get("source_name", f["name"]),
                    reason=reason,
                )
            )
        src = t["source"]
        ka = t.get("k_anonymity") or {}
        tp = t.get("privacy") or {}
        risk = tp.get("risk") or {}
        pk = tuple(schema.get("primaryKey") or ())
        tables.append(
            TableSpec(
                name=tname,
                title=t["title"],
                description=t.get("description"),
                source=SourceSpec(
                    path=src["path"],
                    format=src["format"],
                    encoding=src.get("encoding", "auto"),
                    delimiter=src.get("delimiter", ","),
                    sheet=src.get("sheet"),
                ),
                fields=tuple(fields),
                primary_key=pk,
                foreign_keys=tuple(schema.get("foreignKeys") or ()),
                missing_values=tuple(schema.get("missingValues", [""])),
                on_error=t.get("on_error", "fail"),
                sort_by=tuple(t.get("sort_by") or pk),
                partition_by=tuple(t.get("partition_by") or ()),
                k=ka.get("k", DEFAULT_K),
                on_small_groups=ka.get("on_small_groups", "refuse"),
                allow_duplicate_rows=t.get("allow_duplicate_rows", False),
                holdout=t.get("holdout"),
                person=tp.get("person"),
                risk_max=risk.get("max"),
                risk_average=risk.get("average", DEFAULT_AVERAGE_RISK),
            )
        )
    meta = {k: v for k, v in doc.items() if k != "tables"}
    return Dataset(id=doc["id"], path=path, meta=meta, tables=tuple(tables))


def load_file(path: Path, root: Path | None = None) -> tuple[Dataset | None, list[Problem]]:
    """Load one descriptor; return it (or None) and every problem found."""
    file = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except UnicodeDecodeError:
        return None, [Problem(file, "", "is not UTF-8 text", "a UTF-8 encoded YAML file")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return None, [Problem(file, where, f"is not valid YAML ({getattr(exc, 'problem', exc)})", "YAML")]
    if not isinstance(doc, dict):
        return None, [Problem(file, "", "is not a mapping of keys to values", "a YAML mapping")]
    problems = _schema_problems(doc, file)
    if doc.get("id") and doc["id"] != path.parent.name:
        problems.append(
            Problem(file, "id", f"{doc['id']!r} differs from the folder name {path.parent.name!r}", "the folder name")
        )
    if problems:  # semantic checks assume the basic shape is right
        return None, problems
    problems = _semantic_problems(doc, file) + gov_catalog.problems(doc, file)
    return (None if problems else _to_dataset(doc, path)), problems


def descriptor_files(datasets_dir: Path) -> list[Path]:
    return sorted(datasets_dir.glob("*/dataset.yaml"))


def load_all(datasets_dir: Path, ids: list[str] | tuple[str, ...] = ()) -> list[Dataset]:
    """Load descriptors (all, or those named); raise one DescriptorError listing every problem."""
    files = descriptor_files(datasets_dir)
    known = {p.parent.name: p for p in files}
    for i in ids:
        if i not in known:
            raise NotFound(
                f"no dataset {i!r} in {datasets_dir} (known: {', '.join(known) or 'none'})",
                f"在 {datasets_dir} 中没有数据集 {i!r}（已有：{', '.join(known) or '无'}）",
            )
    chosen = [known[i] for i in ids] if ids else files
    datasets, problems = [], []
    for path in chosen:
        ds, found = load_file(path, datasets_dir.parent)
        problems.extend(found)
        if ds:
            datasets.append(ds)
    if problems:
        raise DescriptorError(problems)
    return datasets
