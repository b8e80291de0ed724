"""``contesthub datasets init``: a first descriptor from a raw CSV file (and a Frictionless Table Schema).

What the file itself says is filled in: its encoding (UTF-8 with or without a BOM, GBK,
GB18030), delimiter and column types (DuckDB's CSV sniffer), and ASCII field names for
Chinese headers (pinyin, with the header kept as ``source_name``). A Frictionless Table Schema,
when given, adds what a data team already wrote down: types, titles, descriptions,
constraints, date formats, missing values, the primary and foreign keys.

What only the publisher can decide is left to them: the catalog texts are placeholders to
review, and no field gets a privacy class: ``privacy: {}`` makes ``contesthub datasets
validate`` name every field that still needs one.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import tempfile
from pathlib import Path

import duckdb
import yaml
from pypinyin import lazy_pinyin

from sandbox.errors import ContesthubError, SourceError
from sandbox.quoting import lit
from sandbox.sources import SNIFF_BYTES, transcode_to_utf8

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
CJK = re.compile(r"[\u3400-\u9fff]")
#: DuckDB's sniffed column types -> Table Schema field types.
TYPES = {
    "BOOLEAN": "boolean",
    "TINYINT": "integer",
    "SMALLINT": "integer",
    "INTEGER": "integer",
    "BIGINT": "integer",
    "HUGEINT": "integer",
    "UBIGINT": "integer",
    "FLOAT": "number",
    "DOUBLE": "number",
    "DECIMAL": "number",
    "DATE": "date",
    "TIMESTAMP": "datetime",
    "TIME": "time",
}
FRICTIONLESS_TYPES = {"string", "integer", "number", "boolean", "date", "datetime", "time", "year"}
CONSTRAINTS = ("required", "unique", "minimum", "maximum", "minLength", "maxLength", "pattern", "enum")
TO_REVIEW = {"zh": "待填写", "en": "to be written"}


def sniff_encoding(path: Path) -> str:
    """``utf-8-sig``, ``utf-8``, ``gbk`` or ``gb18030``: the narrowest codec that reads the file's start."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    for encoding in ("utf-8", "gbk", "gb18030"):
        try:
            codecs.getincrementaldecoder(encoding)("strict").decode(head, final=False)
            return encoding
        except UnicodeDecodeError:
            continue
    raise SourceError(
        f"{path.name}: neither UTF-8 nor GBK/GB18030 text; save it as UTF-8 CSV and run init again",
        f"{path.name}：既不是 UTF-8 也不是 GBK/GB18030 文本；请另存为 UTF-8 编码的 CSV 后重新运行 init",
    )


def field_name(header: str, taken: set[str]) -> str:
    """An ASCII field name for a header: pinyin for Chinese (年龄 -> nian_ling), snake_case otherwise."""
    words = [w.lower() for w in lazy_pinyin(header.strip(), errors="default")]
    slug = re.sub(r"[^a-z0-9]+", "_", "_".join(words)).strip("_") or "column"
    if not slug[0].isalpha():
        slug = f"c_{slug}"
    name, n = slug, 2
    while name in taken:
        name, n = f"{slug}_{n}", n + 1
    taken.add(name)
    return name


def _text(value: object, zh: str, en: str) -> dict[str, str]:
    """A zh + en text from one-language text: Chinese goes to zh, anything else to en; ``zh``/``en`` fill the other."""
    text = str(value).strip()
    if CJK.search(text):
        return {"zh": text, "en": en}
    return {"zh": zh if CJK.search(zh) else text, "en": text}


DELIMITERS = (",", ";", "\t", "|")


def _delimiter(readable: Path) -> str:
    """The delimiter of the header line: the candidate it holds most often (a comma when it holds none).

    Fixed before DuckDB's sniffer runs: on a short file with a broken row the sniffer can
    settle on a delimiter that reads the whole line as one column.
    """
    with open(readable, encoding="utf-8-sig", errors="replace") as fh:
        header = fh.readline()
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _sniff(path: Path, encoding: str, missing: list[str]) -> dict:
    """DuckDB's view of the file: date format and a type per column (read as UTF-8)."""
    with tempfile.TemporaryDirectory(prefix="contesthub-init-") as tmp:
        readable = path
        if encoding in ("gbk", "gb18030"):
            readable = transcode_to_utf8(path, "gb18030", Path(tmp) / "source.utf8.csv")
        delimiter = _delimiter(readable)
        nulls = ", ".join(lit(m) for m in missing or [""])
        con = duckdb.connect()
        try:
            row = con.execute(
                f"SELECT Delimiter, HasHeader, Columns, DateFormat FROM sniff_csv({lit(str(readable))}, "
                f"delim = {lit(delimiter)}, null_padding = true, nullstr = [{nulls}])"
            )
            delimiter, has_header, columns, date_format = row.fetchall()[0]
        except duckdb.Error as exc:
            raise SourceError(
                f"{path.name}: DuckDB cannot read it as CSV ({str(exc).splitlines()[0]})",
                f"{path.name}：DuckDB 无法按 CSV 读取（{str(exc).splitlines()[0]}）",
            ) from None
        finally:
            con.close()
    if not has_header:
        raise SourceError(
            f"{path.name}: the first line does not look like a header; put the column names on the first line",
            f"{path.name}：第一行看起来不是表头；请把列名放在第一行",
        )
    return {"delimiter": delimiter, "columns": columns, "date_format": date_format}


def _schema_fields(schema: dict | None) -> dict[str, dict]:
    if not schema:
        return {}
    return {str(f.get("name")): f for f in schema.get("fields", []) if isinstance(f, dict)}


def draft(dataset_id: str, source: Path, folder: Path, schema: dict | None = None, table: str | None = None) -> dict:
    """The descriptor of one table read from ``source``, for ``folder`` (``datasets/<id>``)."""
    if not NAME.match(dataset_id):
        raise ContesthubError(
            f"{dataset_id!r} is not a dataset id: use lower-case ASCII letters, digits and _, starting with a letter",
            f"{dataset_id!r} 不是有效的数据集标识：请使用小写英文字母、数字和下划线，并以字母开头",
        )
    if source.suffix.lower() not in (".csv", ".txt", ".tsv"):
        raise ContesthubError(
            f"{source.name}: init reads CSV files; describe XLSX and JSON sources by hand (README, Publish a dataset)",
            f"{source.name}：init 只读取 CSV 文件；XLSX 和 JSON 数据源请手动编写描述文件"
            "（见 README“Publish a dataset”）",
        )
    encoding = sniff_encoding(source)
    sniffed = _sniff(source, encoding, [str(v) for v in (schema or {}).get("missingValues", [])])
    declared = _schema_fields(schema)
    taken: set[str] = set()
    names: dict[str, str] = {}
    fields = []
    for col in sniffed["columns"]:
        header = col["name"]
        name = field_name(header, taken)
        names[header] = name
        given = declared.get(header, {})
        ftype = given.get("type") if given.get("type") in FRICTIONLESS_TYPES else TYPES.get(col["type"], "string")
        f: dict = {"name": name}
        if header != name:
            f["source_name"] = header
        f["type"] = ftype
        fmt = given.get("format")
        if isinstance(fmt, str) and "%" in fmt:
            f["format"] = fmt
        elif ftype == "date" and sniffed["date_format"] and sniffed["date_format"] != "%Y-%m-%d":
            f["format"] = sniffed["date_format"]
        f["title"] = _text(given.get("title") or header, header, name.replace("_", " "))
        if given.get("description"):
            text = str(given["description"])
            f["description"] = _text(text, f"（待翻译）{text}", f"(to translate) {text}")
        constraints = {k: given["constraints"][k] for k in CONSTRAINTS if k in (given.get("constraints") or {})}
        if constraints:
            f["constraints"] = constraints
        f["privacy"] = {}  # left to the publisher: validate asks for every class
        fields.append(f)
    table_schema: dict = {"fields": fields}
    if schema and schema.get("primaryKey"):
        pk = schema["primaryKey"]
        table_schema["primaryKey"] = [names.get(n, n) for n in ([pk] if isinstance(pk, str) else pk)]
    if schema and schema.get("missingValues"):
        table_schema["missingValues"] = [str(v) for v in schema["missingValues"]]
    tname = table or field_name(source.stem, set())
    for fk in (schema or {}).get("foreignKeys", []) or []:
        ref = fk.get("reference", {})
        mine = [fk["fields"]] if isinstance(fk.get("fields"), str) else list(fk.get("fields", []))
        theirs = [ref["fields"]] if isinstance(ref.get("fields"), str) else list(ref.get("fields", []))
        resource = ref.get("resource") or tname
        table_schema.setdefault("foreignKeys", []).append(
            {
                "fields": [names.get(n, n) for n in mine],
                "reference": {"resource": resource, "fields": [names.get(n, n) for n in theirs]},
            }
        )
    src: dict = {"path": os.path.relpath(source.resolve(), folder.resolve()), "format": "csv", "encoding": encoding}
    if sniffed["delimiter"] != ",":
        src["delimiter"] = sniffed["delimiter"]
    title = {"zh": dataset_id, "en": dataset_id}
    return {
        "id": dataset_id,
        "version": "0.1.0",
        "title": title,
        "description": {
            "zh": f"由 {source.name} 导入的数据（待补充说明）",
            "en": f"Data imported from {source.name} (to be described)",
        },
        "theme": "health",
        "keywords": {"zh": [dataset_id], "en": [dataset_id]},
        "publisher": dict(TO_REVIEW),
        "contact": {"name": TO_REVIEW["en"], "email": "data@example.org"},
        "licence": {
            "id": "CC-BY-4.0",
            "title": "Creative Commons Attribution 4.0",
            "url": "https://creativecommons.org/licenses/by/4.0/",
        },
        "source": {
            "description": {"zh": f"原始文件 {source.name}", "en": f"The raw file {source.name}"},
            "citation": source.name,
        },
        "open_tier": "conditional",
        # Conditional data is read only by teams an organizer approved, under this agreement.
        "access": {"agreement": {"version": "1", "text": dict(TO_REVIEW)}},
        "update_frequency": "irregular",
        "temporal": {"start": TO_REVIEW["en"], "end": TO_REVIEW["en"]},
        "spatial": dict(TO_REVIEW),
        "tables": {
            tname: {
                "title": title,
                "source": src,
                "on_error": "quarantine",
                "schema": table_schema,
            }
        },
    }


class _Dumper(yaml.SafeDumper):
    """Writes a text used twice (the dataset's and the table's title) twice, not as a YAML alias."""

    def ignore_aliases(self, data) -> bool:
        return True


HEADER = """\
# Drafted by `contesthub datasets init` from {source}.
# Review before building (README, "Publish a dataset"):
#   - the catalog texts: title, description, theme, keywords, publisher, contact, licence, open_tier,
#     temporal, spatial (placeholders read "待填写" / "to be written");
#   - open_tier is conditional (only approved teams read it): write the data-use agreement
#     (access.agreement.text), or choose unconditional;
#   - every English title drafted from pinyin;
#   - privacy: give every field a class (direct, quasi, sensitive or none) and a rule; where rows
#     describe people, name the person key under the table (privacy: {{person: <field>}}).
#     `contesthub datasets validate {id}` lists what is still missing.
"""


def write(dataset_id: str, source: Path, datasets_dir: Path, schema_file: Path | None, table: str | None) -> Path:
    """Write ``datasets_dir/<id>/dataset.yaml``; refuses to replace an existing descriptor."""
    folder = datasets_dir / dataset_id
    out = folder / "dataset.yaml"
    if out.exists():
        raise ContesthubError(
            f"{out} exists already; edit it, or move it away to draft a new one",
            f"{out} 已存在；请直接编辑，或移走后重新生成",
        )
    schema = None
    if schema_file is not None:
        try:
            schema = json.loads(schema_file.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContesthubError(
                f"{schema_file.name}: not a readable Table Schema JSON file ({exc})",
                f"{schema_file.name}：不是可读取的 Table Schema JSON 文件（{exc}）",
            ) from None
        if not isinstance(schema, dict) or not isinstance(schema.get("fields"), list):
            raise ContesthubError(
                f"{schema_file.name}: a Table Schema needs a list of fields",
                f"{schema_file.name}：Table Schema 需要字段列表（fields）",
            )
    doc = draft(dataset_id, source, folder, schema, table)
    folder.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(doc, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=100)
    out.write_text(HEADER.format(source=source.name, id=dataset_id) + text, "utf-8")
    return out
