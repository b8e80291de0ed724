"""De-identification and the k-anonymity gate.

Person-level livelihood data (medical records above all: PIPL counts them as sensitive
personal information) is published only after

1. every direct identifier is dropped or replaced by a keyed hash (SHA-256 of a secret,
   per-installation salt and the value, so the same patient keeps the same pseudonym
   across tables and versions without the value being recoverable by hashing guesses);
2. quasi-identifiers are generalised as the descriptor says (age to bands with a top code,
   dates to month or year, codes truncated); and
3. every combination of the published quasi-identifier values occurs in at least ``k``
   rows (11 by default, the common small-cell rule). Otherwise the build refuses, or, when
   the descriptor says ``on_small_groups: suppress``, drops those rows and reports how many.
"""

from __future__ import annotations

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


def output_expr(f: Field) -> str | None:
    """The SQL producing the published value of ``f``; None when the field is dropped."""
    c = q(f.name)
    o = f.rule_options
    match f.rule:
        case "drop":
            return None
        case "hash":
            # left_grapheme equals left on the ASCII hex digest, and takes half the time.
            return f"left_grapheme(sha256(getvariable('contesthub_salt') || CAST({c} AS VARCHAR)), {HASH_HEX_CHARS})"
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
        case "month":
            return f"strftime({c}, '%Y-%m')"
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
    if f.rule in ("hash", "age_band", "month"):
        out["type"] = "string"
        constraints = {k: v for k, v in constraints.items() if k == "required"}
        out["format"] = {"hash": "pseudonym", "age_band": "age band", "month": "YYYY-MM"}[f.rule]
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
    k: int
    quasi_identifiers: list[str]
    small_groups: int = 0
    suppressed_rows: int = 0
    suppress_condition: str | None = None  # SQL over the de-identified columns, true on rows to drop

    def to_dict(self) -> dict:
        return {
            "k": self.k,
            "quasi_identifiers": self.quasi_identifiers,
            "small_groups": self.small_groups,
            "suppressed_rows": self.suppressed_rows,
        }


def k_anonymity_gate(con: duckdb.DuckDBPyConnection, table: TableSpec, source_sql: str) -> GateResult:
    """Refuse (or prepare to suppress) quasi-identifier combinations seen in fewer than k rows.

    ``source_sql`` is a query producing the rows that would be published, with their source
    values (before de-identification). The small groups found are kept, with their published
    quasi-identifier values, in the temporary table behind ``suppress_condition``.
    """
    quasi_fields = table.quasi_identifiers
    quasi = [f.name for f in quasi_fields]
    result = GateResult(k=table.k, quasi_identifiers=quasi)
    if not quasi:
        return result
    cols = ", ".join(q(c) for c in quasi)
    published = ", ".join(f"{output_expr(f)} AS {q(f.name)}" for f in quasi_fields)
    small = f"__small_{table.name}"
    # Count the combinations of source values first, then generalise each combination once and
    # add up: the same counts as generalising every row (the rules are functions of the value),
    # without computing the published values of millions of rows.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {q(small)} AS SELECT {published}, sum(__n) AS __n "
        f"FROM (SELECT {cols}, count(*) AS __n FROM ({source_sql}) GROUP BY ALL) "
        f"GROUP BY ALL HAVING sum(__n) < {table.k}"
    ).fetchall()
    groups, rows = con.execute(f"SELECT count(*), coalesce(sum(__n), 0) FROM {q(small)}").fetchall()[0]
    result.small_groups = int(groups)
    if not groups:
        return result
    if table.on_small_groups != "suppress":
        raise PrivacyGateError(
            f"table {table.name!r}: {groups} combination(s) of ({', '.join(quasi)}) occur in fewer than {table.k} "
            f"rows ({rows} rows in all); publishing them could identify people. Generalise a quasi-identifier "
            f"further (wider age bands, month to year) or set tables.{table.name}.k_anonymity.on_small_groups: "
            "suppress in dataset.yaml",
            f"表 {table.name!r}：准标识符（{', '.join(quasi)}）有 {groups} 种取值组合出现次数少于 {table.k} 行"
            f"（共 {rows} 行），发布后可能识别出个人。请进一步泛化准标识符（放宽年龄分组、将月份改为年份），"
            f"或在 dataset.yaml 中设置 tables.{table.name}.k_anonymity.on_small_groups: suppress",
            details={"small_groups": int(groups), "rows": int(rows)},
        )
    result.suppressed_rows = int(rows)
    match = " AND ".join(f"g.{q(c)} IS NOT DISTINCT FROM d.{q(c)}" for c in quasi)
    result.suppress_condition = f"EXISTS (SELECT 1 FROM {q(small)} g WHERE {match})"
    return result
