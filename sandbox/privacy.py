"""De-identification, the k-anonymity gate and the re-identification risk report.

Person-level livelihood data (medical records above all: PIPL counts them as sensitive
personal information) is published only after

1. every direct identifier is dropped or replaced by a keyed hash (SHA-256 of a secret key
   and the value, so the value cannot be recovered by hashing guesses). The key is derived
   per dataset *version* from the installation's secret salt: a pseudonym joins the tables
   of one version and nothing else, unless the descriptor asks for a wider ``scope`` and
   says why (the reason is published in the catalog);
2. quasi-identifiers are generalised as the descriptor says (age to bands with a top code,
   dates to week, month, quarter or year, codes truncated); and
3. every combination of the published quasi-identifier values describes at least ``k``
   people (11 by default, the common small-cell rule), counted on each table *as it is
   published* (the training rows and a contest's test table separately). Where the table
   names its person key (``privacy.person``) k counts distinct persons, not rows: ten visits
   of one patient are one person. Otherwise the build refuses, or, when the descriptor says
   ``on_small_groups: suppress``, drops those rows and reports how many;
4. the re-identification risk of what remains is measured (prosecutor risk: the largest
   1 / group size; the average over the records; the share of records unique on the
   quasi-identifiers) and the build fails above the descriptor's thresholds (defaults:
   at most 1/k and 0.05 on average, as in the Heritage Health Prize's release).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import duckdb

from sandbox.descriptor import Field, TableSpec
from sandbox.errors import PrivacyGateError
from sandbox.quoting import lit, q

HASH_HEX_CHARS = 20  # 80 bits: no collisions among billions of people, short enough to read
#: Ages below this (without a top code) get their age band label from a lookup list.
AGE_BAND_LOOKUP = 150


def salt_file(private_root: Path) -> Path:
    return private_root / "secrets" / "hash_salt"


def load_salt(private_root: Path) -> str:
    """The installation's secret salt, generated on first use and never published."""
    path = salt_file(private_root)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


#: Pseudonym scopes, narrowest first: the DuckDB variable holding each one's key.
SCOPES = ("version", "dataset", "installation")


def key_variable(scope: str) -> str:
    return f"contesthub_key_{scope}"


def pseudonym_key(salt: str, dataset_id: str, version: int, scope: str = "version") -> str:
    """The secret key of the pseudonyms of one scope.

    ``installation``: the salt itself (the same pseudonym everywhere); ``dataset``: one key per
    dataset, all versions; ``version``: one key per dataset version, so nobody can join two
    versions (or two datasets) on a pseudonym. Derived with HMAC-SHA-256, so one key tells
    nothing about another or about the salt.
    """
    if scope == "installation":
        return salt
    label = f"dataset:{dataset_id}" + (f":v{version}" if scope == "version" else "")
    return hmac.new(salt.encode(), label.encode(), hashlib.sha256).hexdigest()


def set_pseudonym_keys(con: duckdb.DuckDBPyConnection, salt: str, dataset_id: str, version: int) -> None:
    """Make every scope's key available to :func:`output_expr` (as DuckDB variables, never in SQL text)."""
    for scope in SCOPES:
        con.execute(
            f"SET VARIABLE {key_variable(scope)} = $key", {"key": pseudonym_key(salt, dataset_id, version, scope)}
        ).fetchall()


#: Date generalisations: the SQL of the published value of a date ``{c}``, and its text format.
DATE_RULES = {
    "week": ("strftime({c}, '%G-W%V')", "YYYY-Www"),  # ISO week: 2024-W01 starts on Monday 1 January 2024
    "month": ("strftime({c}, '%Y-%m')", "YYYY-MM"),
    "quarter": ("CAST(year({c}) AS VARCHAR) || '-Q' || CAST(quarter({c}) AS VARCHAR)", "YYYY-Qn"),
}


def group_key(f: Field, column: str | None = None) -> str:
    """SQL grouping rows exactly as ``output_expr`` would, but cheaper to compute on every row.

    ``column`` is the SQL of the source value (default: the field's name)."""
    c, o = column or q(f.name), f.rule_options
    match f.rule:
        case "age_band":
            band = f"CAST(floor({c} / {int(o['width'])}) AS BIGINT)"
            top = o.get("top_code")
            return band if top is None else f"CASE WHEN {c} >= {lit(top)} THEN {2**62} ELSE {band} END"
        case "week" | "month" | "quarter":
            return f"date_trunc({lit(f.rule)}, {c})"
        case "year" | "top_code" | "truncate":
            return output_expr(f, c)
        case _:
            return c


def output_expr(f: Field, column: str | None = None) -> str | None:
    """The SQL producing the published value of ``f``; None when the field is dropped.

    ``column`` is the SQL of the source value (default: the field's name)."""
    c = column or q(f.name)
    o = f.rule_options
    match f.rule:
        case "drop":
            return None
        case "hash":
            # left_grapheme equals left on the ASCII hex digest, and takes half the time.
            key = f"getvariable({lit(key_variable(o.get('scope', 'version')))})"
            return f"left_grapheme(sha256({key} || CAST({c} AS VARCHAR)), {HASH_HEX_CHARS})"
        case "age_band":
            w, top = int(o["width"]), o.get("top_code")
            band_no = f"CAST(floor({c} / {w}) AS BIGINT)"
            lo = f"({band_no} * {w})"
            band = f"CAST({lo} AS VARCHAR) || '-' || CAST({lo} + {w - 1} AS VARCHAR)"
            # Building the label text is most of this rule's cost on millions of rows: look the
            # usual bands up in a constant list instead; values outside it are built as before.
            n = math.ceil(top / w) if top is not None else math.ceil(AGE_BAND_LOOKUP / w)
            labels = ", ".join(lit(f"{i * w}-{i * w + w - 1}") for i in range(n))
            lookup = f"WHEN {c} >= 0 AND {c} < {n * w} THEN [{labels}][{band_no} + 1] " if n > 0 else ""
            top_case = f"WHEN {c} >= {top} THEN '{int(top)}+' " if top is not None else ""
            return f"CASE WHEN {c} IS NULL THEN NULL {top_case}{lookup}ELSE {band} END"
        case "top_code":
            return f"least({c}, {lit(o['top_code'])})"
        case "week" | "month" | "quarter":
            return DATE_RULES[f.rule][0].format(c=c)
        case "year":
            return f"CAST(year({c}) AS INTEGER)"
        case "truncate":
            return f"left({c}, {int(o['length'])})"
        case _:
            return c


def published_field(f: Field) -> dict:
    """The Table Schema entry for the published column (types change with some rules)."""
    out = {"name": f.name, "type": f.type, "title": f.title}
    for key in ("description", "unit", "definition"):
        if getattr(f, key):
            out[key] = getattr(f, key)
    constraints = dict(f.constraints)
    if f.rule in ("hash", "age_band", *DATE_RULES):
        out["type"] = "string"
        constraints = {k: v for k, v in constraints.items() if k == "required"}
        formats = {"hash": "pseudonym", "age_band": "age band", **{r: v[1] for r, v in DATE_RULES.items()}}
        out["format"] = formats[f.rule]
    elif f.rule == "year":
        out["type"] = "year"
        constraints = {k: v for k, v in constraints.items() if k == "required"}
    elif f.rule in ("top_code", "truncate"):
        constraints = {k: v for k, v in constraints.items() if k in ("required", "minimum")}
    elif f.format and f.type not in ("date", "datetime", "time"):
        out["format"] = f.format  # a parsed date is published as a date; its source format is moot
    if constraints:
        out["constraints"] = constraints
    out["privacy"] = {"class": f.privacy_class, "rule": f.rule, **f.rule_options}
    if f.rule == "hash":
        out["privacy"].setdefault("scope", "version")
    if f.reason:
        out["privacy"]["reason"] = f.reason
    return out


def select_list(table: TableSpec) -> str:
    cols = []
    for f in table.fields:
        expr = output_expr(f)
        if expr is not None:
            cols.append(f"{expr} AS {q(f.name)}")
    return ", ".join(cols)


@dataclass
class GateResult:
    """The gate and risk report of one table as published (``table`` may be a ``<table>_test``)."""

    table: str
    k: int
    quasi_identifiers: list[str]
    person: str | None = None
    small_groups: int = 0
    suppressed_rows: int = 0
    suppress_condition: str | None = None  # SQL over the source columns, true on rows to drop
    risk: dict | None = None

    def to_dict(self) -> dict:
        out = {
            "k": self.k,
            "counted_on": f"persons ({self.person})" if self.person else "rows",
            "quasi_identifiers": self.quasi_identifiers,
            "small_groups": self.small_groups,
            "suppressed_rows": self.suppressed_rows,
        }
        if self.risk is not None:
            out["risk"] = self.risk
        return out


def _risk(con: duckdb.DuckDBPyConnection, classes: str, where: str) -> dict:
    """Prosecutor risk over the records of the classes that ``where`` keeps.

    Each record's risk is 1 / (persons sharing its quasi-identifier values): ``max`` is the
    largest, ``average`` the mean over the records, ``unique_share`` the share of records
    whose values describe one person only.
    """
    records, groups, smallest, average, unique = con.execute(
        f"SELECT coalesce(sum(__n), 0), count(*), min(__p), sum(__n / __p) / sum(__n), "
        f"coalesce(sum(__n) FILTER (WHERE __p = 1), 0) / sum(__n) FROM {classes} WHERE __n > 0 AND ({where})"
    ).fetchall()[0]
    return {
        "records": int(records),
        "groups": int(groups),
        "smallest_group": int(smallest) if smallest is not None else None,
        "max": round(1 / smallest, 6) if smallest else 0.0,
        "average": round(float(average), 6) if average is not None else 0.0,
        "unique_share": round(float(unique), 6) if unique is not None else 0.0,
    }


def gate(con: duckdb.DuckDBPyConnection, table: TableSpec, source_sql: str, published: str) -> GateResult:
    """Count, gate and measure the re-identification risk of one table as it will be published.

    ``source_sql`` is a query producing exactly the rows that would be published as
    ``published`` (a table's training rows, or its test rows), with their source values
    (before de-identification). Groups of quasi-identifier values describing fewer than k
    persons (rows, where the table names no person key) are refused or, with
    ``on_small_groups: suppress``, kept in a temporary table behind ``suppress_condition``.
    The risk of what remains is checked against the descriptor's thresholds.
    """
    quasi_fields = table.quasi_identifiers
    quasi = [f.name for f in quasi_fields]
    result = GateResult(table=published, k=table.k, quasi_identifiers=quasi, person=table.person)
    if not quasi and not table.person:
        return result
    classes, small = q(f"__classes_{published}"), q(f"__small_{published}")
    # Group on cheap keys that split the rows exactly as the published values do (a quarter's
    # first day, not its label), keeping one source value per group: the published values are
    # computed for the small groups only, not for millions of rows.
    keys = "".join(f"{group_key(f)} AS __g{i}, " for i, f in enumerate(quasi_fields))
    samples = "".join(f"any_value({q(f.name)}) AS {q(f.name)}, " for f in quasi_fields)
    # Ten visits of one patient are one person: distinct persons, where the table names its key.
    # Counted on a 64-bit hash of the key (a third less memory than the text): two persons whose
    # hashes collide would count as one, which can only make a group look smaller, never larger.
    persons = f"count(DISTINCT hash({q(table.person)}))" if table.person else "count(*)"
    grouped = f"SELECT {keys}{samples}count(*) AS __n, {persons} AS __p FROM ({source_sql})"
    key_names = ", ".join(f"__g{i}" for i in range(len(quasi)))
    if quasi:
        grouped += f" GROUP BY {key_names}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {classes} AS {grouped}").fetchall()
    k = table.k
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {small} AS SELECT {key_names}{', ' if quasi else ''}__n FROM {classes} "
        f"WHERE __n > 0 AND __p < {k}"
    ).fetchall()
    groups, rows = con.execute(f"SELECT count(*), coalesce(sum(__n), 0) FROM {small}").fetchall()[0]
    result.small_groups = int(groups)
    who_en = f"distinct persons ({table.person})" if table.person else "rows"
    who_zh = f"个不同的人（{table.person}）" if table.person else "行"
    names = ", ".join(quasi) or "(no quasi-identifier)"
    if groups and table.on_small_groups != "suppress":
        raise PrivacyGateError(
            f"table {published!r}: {groups} combination(s) of ({names}) describe fewer than {table.k} {who_en} "
            f"({rows} rows in all); publishing them could identify people. Generalise a quasi-identifier "
            f"further (wider age bands, month to quarter or year) or set tables.{table.name}.k_anonymity."
            "on_small_groups: suppress in dataset.yaml",
            f"表 {published!r}：准标识符（{names}）有 {groups} 种取值组合对应的人数少于 {table.k} {who_zh}"
            f"（共 {rows} 行），发布后可能识别出个人。请进一步泛化准标识符（放宽年龄分组、将月份改为季度或年份），"
            f"或在 dataset.yaml 中设置 tables.{table.name}.k_anonymity.on_small_groups: suppress",
            details={"table": published, "small_groups": int(groups), "rows": int(rows)},
        )
    result.suppressed_rows = int(rows)
    if groups:
        # Over the source rows (alias s), so it filters before de-identifying and sorting.
        result.suppress_condition = _in_small_groups(quasi_fields, small)
    result.risk = {
        **_risk(con, classes, f"__p >= {k}"),
        "thresholds": {"max": round(table.max_risk, 6), "average": table.risk_average},
        "before_suppression": _risk(con, classes, "TRUE"),
    }
    _check_risk(table, published, names, result.risk)
    return result


def _in_small_groups(quasi_fields: list[Field], small: str) -> str:
    """SQL over the source rows (alias ``s``): true on a row whose group is in the table ``small``.

    Each row's group keys as one struct, looked up among the small groups' structs: DuckDB
    plans that as one hash join against a few hundred rows. (A correlated ``EXISTS`` comparing
    each key with ``IS NOT DISTINCT FROM`` was decorrelated into a copy of every source row:
    10 CPU-seconds on the 10-million-row benchmark table, against 0.8.) Struct equality
    matches a missing value with a missing value, as ``IS NOT DISTINCT FROM`` does, and a
    struct is never NULL itself, so a row outside every small group is never dropped.
    """
    if not quasi_fields:  # no quasi-identifier: the table is one group
        return f"EXISTS (SELECT 1 FROM {small})"
    row = ", ".join(f"'g{i}': {group_key(f, f's.{q(f.name)}')}" for i, f in enumerate(quasi_fields))
    groups = ", ".join(f"'g{i}': __g{i}" for i in range(len(quasi_fields)))
    return f"({{{row}}} IN (SELECT {{{groups}}} FROM {small}))"


def _check_risk(table: TableSpec, published: str, names: str, risk: dict) -> None:
    over = []
    if risk["max"] > table.max_risk + 1e-9:
        over.append(("max", risk["max"], table.max_risk, "最大风险"))
    if risk["average"] > table.risk_average + 1e-9:
        over.append(("average", risk["average"], table.risk_average, "平均风险"))
    if not over:
        return
    en = "; ".join(f"{w} risk {v:.4f} is above {limit:.4f}" for w, v, limit, _ in over)
    zh = "；".join(f"{z} {v:.4f} 超过上限 {limit:.4f}" for _, v, limit, z in over)
    raise PrivacyGateError(
        f"table {published!r}: re-identification risk on ({names}) too high: {en} "
        f"({risk['records']} records in {risk['groups']} groups, the smallest of {risk['smallest_group']}). "
        f"Generalise a quasi-identifier further, or raise k; the thresholds are tables.{table.name}.privacy.risk "
        "in dataset.yaml",
        f"表 {published!r}：在（{names}）上的再识别风险过高：{zh}（{risk['records']} 条记录，{risk['groups']} 个组，"
        f"最小的组 {risk['smallest_group']}）。请进一步泛化准标识符或提高 k；上限在 dataset.yaml 的 "
        f"tables.{table.name}.privacy.risk 中设置",
        details={"table": published, "risk": risk},
    )
