"""``contesthub datasets ...`` and ``contesthub sql``: the open-data room's commands.

Every listing takes ``--json``; every user error is one line and exit code 1 (the root
group in ``hub.cli`` turns :class:`ContesthubError` into that).
"""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from sandbox import build as builder
from sandbox import catalog as cat
from sandbox.descriptor import load_all
from sandbox.progress import Reporter
from sandbox.settings import Paths
from sandbox.sizes import format_bytes


def out() -> Console:
    console = Console(soft_wrap=True)
    if not console.is_terminal:  # pipes and CI logs: do not squeeze tables into 80 columns
        console = Console(soft_wrap=True, width=160)
    return console


def echo_json(doc: object) -> None:
    click.echo(json.dumps(doc, ensure_ascii=False, indent=2, default=str))


def _lang(ctx: click.Context) -> str:
    return ctx.obj["lang"]


def _t(ctx: click.Context, text: dict) -> str:
    return text.get(_lang(ctx)) or text.get("en") or next(iter(text.values()))


@click.group("datasets")
def datasets() -> None:
    """Publish and browse the open-data catalog (开放数据目录)."""


@datasets.command("validate")
@click.argument("ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def validate_cmd(ctx: click.Context, ids: tuple[str, ...], as_json: bool) -> None:
    """Check dataset descriptors; report every problem with file and field path."""
    paths: Paths = ctx.obj["paths"]
    found = load_all(paths.datasets_dir, ids)  # raises DescriptorError listing every problem
    from sandbox import gov_catalog

    plan = gov_catalog.load_plan(paths.datasets_dir)  # datasets/planned.yaml, the opening plan
    if as_json:
        echo_json({"valid": True, "datasets": [d.id for d in found], "planned": [p["id"] for p in plan]})
    else:
        click.echo(f"{len(found)} descriptor(s) valid: {', '.join(d.id for d in found)}")
        if plan:
            click.echo(f"opening plan valid: {len(plan)} planned dataset(s)")


@datasets.command("init")
@click.argument("dataset_id")
@click.option(
    "--source", "source", required=True, type=click.Path(exists=True, dir_okay=False), help="The raw CSV file."
)
@click.option(
    "--schema",
    "schema_file",
    type=click.Path(exists=True, dir_okay=False),
    help="A Frictionless Table Schema (JSON) of the file: types, titles, constraints, keys.",
)
@click.option("--table", help="The table's name (default: from the file name).")
@click.pass_context
def init_cmd(ctx: click.Context, dataset_id: str, source: str, schema_file: str | None, table: str | None) -> None:
    """Draft datasets/DATASET_ID/dataset.yaml from a raw CSV (GBK, GB18030, UTF-8 with or without BOM)."""
    from pathlib import Path

    from sandbox import scaffold
    from sandbox.errors import DescriptorError

    paths: Paths = ctx.obj["paths"]
    out_file = scaffold.write(
        dataset_id, Path(source), paths.datasets_dir, Path(schema_file) if schema_file else None, table
    )
    zh = _lang(ctx) == "zh"
    click.echo(f"已生成 {out_file}" if zh else f"wrote {out_file}")
    try:
        load_all(paths.datasets_dir, [dataset_id])
    except DescriptorError as exc:
        click.echo(
            f"还需填写 {len(exc.problems)} 处（多为各字段的隐私类别）："
            if zh
            else f"{len(exc.problems)} thing(s) left to fill in (mostly each field's privacy class):"
        )
        for problem in exc.problems:
            click.echo(f"  - {problem}")
    click.echo(
        "检查标题、说明和隐私规则后运行 `contesthub datasets validate` 和 `contesthub datasets build`"
        if zh
        else "Review the titles, texts and privacy rules, then run `contesthub datasets validate` and `build`"
    )


@datasets.command("build")
@click.argument("ids", nargs=-1)
@click.option(
    "--scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Grow generated datasets (50 makes the largest table 10 million rows).",
)
@click.option("--force", is_flag=True, help="Build a new version even when nothing changed.")
@click.option(
    "--memory-limit",
    default=builder.DEFAULT_MEMORY_LIMIT,
    show_default=True,
    help="DuckDB memory limit for the build; beyond it DuckDB spills to the private root.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (no progress bars).")
@click.pass_context
def build_cmd(
    ctx: click.Context, ids: tuple[str, ...], scale: float, force: bool, memory_limit: str, as_json: bool
) -> None:
    """Build datasets into new immutable versions of checked, de-identified Parquet."""
    paths: Paths = ctx.obj["paths"]
    found = load_all(paths.datasets_dir, ids)
    results = []
    with Reporter(enabled=not as_json and sys.stderr.isatty()) as reporter:
        for ds in found:
            if not as_json:
                click.echo(f"building {ds.id} …", err=True)
            results.append(
                builder.build_dataset(ds, paths, scale=scale, force=force, reporter=reporter, memory_limit=memory_limit)
            )
    failed = [r for r in results if r.status == "failed"]
    if as_json:
        echo_json([r.to_dict() for r in results])
    else:
        table = Table(title="build summary / 构建结果")
        for col in ("dataset", "status", "version", "tables", "rows", "size", "bad rows", "suppressed", "seconds"):
            table.add_column(col, justify="right" if col not in ("dataset", "status") else "left")
        for r in results:
            table.add_row(
                r.dataset,
                r.status,
                str(r.version or "-"),
                str(len(r.tables) or "-"),
                f"{sum(t.rows for t in r.tables):,}" if r.tables else "-",
                format_bytes(sum(t.bytes for t in r.tables)) if r.tables else "-",
                str(sum(t.quarantined for t in r.tables)) if r.tables else "-",
                str(sum(t.suppressed for t in r.tables)) if r.tables else "-",
                f"{r.seconds:.1f}",
            )
        out().print(table)
        for r in failed:
            click.echo(f"error: {r.dataset}: {r.error.message(_lang(ctx))}", err=True)
    if failed:
        ctx.exit(1)


def print_listing(ctx: click.Context, rows: list[dict], title: str) -> None:
    """The catalog as a table: `datasets list`, `datasets search` and `contesthub up` after its build."""
    lang = _lang(ctx)
    table = Table(title=title)
    for col in ("id", "title", "theme", "tier", "tables", "rows", "size", "version", "licence"):
        table.add_column(col, justify="right" if col in ("rows", "size", "version") else "left")
    for r in rows:
        table.add_row(
            r["id"],
            r[f"title_{lang}"],
            cat.THEMES[r["theme"]][lang],
            cat.TIERS[r["tier"]][lang],
            r["tables"],
            f"{r['rows']:,}",
            format_bytes(r["bytes"]),
            f"v{r['version']}",
            r["licence"],
        )
    out().print(table)
    if not rows:
        click.echo("no datasets found / 没有找到数据集")


@datasets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List published datasets."""
    rows = cat.summary_rows(cat.load(ctx.obj["paths"].data_root))
    if as_json:
        echo_json(rows)
    else:
        print_listing(ctx, rows, "open datasets / 开放数据集")


@datasets.command("freshness")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def freshness_cmd(ctx: click.Context, as_json: bool) -> None:
    """Which datasets are due again (last build + update cycle) and which are overdue (数据更新时效)."""
    from sandbox import catalog as cat
    from sandbox import freshness

    rows = freshness.report(cat.load(ctx.obj["paths"].data_root))
    if as_json:
        echo_json({"datasets": rows, "overdue": [r["id"] for r in rows if r["overdue"]]})
        return
    zh = _lang(ctx) == "zh"
    for r in rows:
        state = (
            (f"逾期 {r['overdue_days']} 天" if zh else f"overdue by {r['overdue_days']} day(s)")
            if r["overdue"]
            else ("按时" if zh else "on time")
            if r["due"]
            else ("不定期" if zh else "no cycle")
        )
        click.echo(f"{r['id']:<24} {r['update_frequency'] or '-':<10} {r['due'] or '-':<26} {state}")


@datasets.command("search")
@click.argument("query", default="")
@click.option("--theme", type=click.Choice(sorted(cat.THEMES)), help="Only this theme.")
@click.option("--tier", type=click.Choice(sorted(cat.TIERS)), help="Only this open tier.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
def search_cmd(ctx: click.Context, query: str, theme: str | None, tier: str | None, as_json: bool) -> None:
    """Search titles, keywords and descriptions in Chinese or English (例如：门诊)."""
    rows = cat.search(ctx.obj["paths"].data_root, query, theme=theme, tier=tier)
    if as_json:
        echo_json(rows)
    else:
        print_listing(ctx, rows, f"search: {query}")


@datasets.command("show")
@click.argument("dataset_id")
@click.option("--version", "version", type=int, help="A specific version (default: latest).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole catalog entry as JSON.")
@click.pass_context
def show_cmd(ctx: click.Context, dataset_id: str, version: int | None, as_json: bool) -> None:
    """Show a dataset: schema with units, licence, versions and quality report."""
    root = ctx.obj["paths"].data_root
    if dataset_id in cat.load(root).get("conditional", {}):  # its own root (readable by organizers)
        root = ctx.obj["paths"].conditional_dataset_root(dataset_id)
    e = cat.entry(root, dataset_id, version)
    history = cat.load(root)["datasets"][dataset_id]["versions"]
    if as_json:
        echo_json({**e, "versions": history})
        return
    con = out()
    con.print(f"[bold]{_t(ctx, e['title'])}[/bold]  ({e['id']} v{e['version']}, built {e['built_at']})")
    con.print(_t(ctx, e["description"]), markup=False)
    con.print(
        f"theme: {cat.THEMES[e['theme']][_lang(ctx)]}   tier: {cat.TIERS[e['open_tier']][_lang(ctx)]} "
        f"({e['access_rights']})   licence: {e['licence']['title']}   publisher: {_t(ctx, e['publisher'])}",
        markup=False,
    )
    con.print(f"source: {e['source'].get('citation', '')}", markup=False)
    con.print("versions: " + ", ".join(f"v{v['version']} ({v['built_at'][:10]}, {v['rows']:,} rows)" for v in history))
    for name, t in e["tables"].items():
        if "test_of" in t:  # a contest's test set: the held-out rows of another table
            head = f"test set of {t['test_of']}, hidden: {', '.join(e['tables'][t['test_of']]['holdout']['hidden'])}"
        else:
            q, p = t["quality"], t["privacy"]
            head = (
                f"quality: {q['rows_read']:,} read, {q['bad_rows']} bad; "
                f"privacy: k={p['k']}, {p['suppressed_rows']} suppressed"
            )
        table = Table(
            title=f"{e['id']}.{name} — {_t(ctx, t['title'])}: {t['rows']:,} rows, {format_bytes(t['bytes'])}; {head}"
        )
        for col in ("field", "type", "title", "unit", "constraints", "privacy"):
            table.add_column(col)
        for f in t["schema"]["fields"]:
            priv = f["privacy"]
            table.add_row(
                f["name"],
                f["type"],
                _t(ctx, f["title"]),
                f.get("unit", ""),
                ", ".join(f"{k}={v}" for k, v in f.get("constraints", {}).items()),
                "" if priv["class"] == "none" else f"{priv['class']}: {priv['rule']}",
            )
        con.print(table)
        for line in _table_notes(ctx, e, name, t):
            con.print(f"  {line}", markup=False)


def _table_notes(ctx: click.Context, e: dict, name: str, t: dict) -> list[str]:
    """What a publisher needs under a table: where each row went, the privacy report, the bad rows."""
    zh = _lang(ctx) == "zh"
    lines = []
    src = t.get("source")
    if src:
        decoded = src.get("decoded_as")
        enc = src["encoding"] + (f", read as {decoded}" if decoded and decoded != src["encoding"] else "")
        lines.append(f"{'来源' if zh else 'source'}: {src['file']} ({src['format']}, {enc})")
    q, p = t.get("quality") or {}, t.get("privacy") or {}
    rows = q.get("rows")
    if rows:
        parts = [f"{rows[k]:,} {k}" for k in ("published", "test", "quarantined", "suppressed", "withheld") if rows[k]]
        lines.append(f"{'行' if zh else 'rows'}: {rows['read']:,} read = " + " + ".join(parts or ["0 published"]))
    if p.get("quasi_identifiers") or p.get("risk"):
        text = f"k={p['k']} on {p['counted_on']}, {p['suppressed_rows']:,} suppressed"
        risk = p.get("risk")
        if risk:
            th = risk["thresholds"]
            text += (
                f"; re-identification risk: max {risk['max']:.3f} (<= {th['max']:.3f}), average "
                f"{risk['average']:.3f} (<= {th['average']:.3f}), unique {risk['unique_share']:.1%}"
            )
        lines.append(f"{'隐私' if zh else 'privacy'}: {text}")
    for f in t["schema"]["fields"]:
        priv = f["privacy"]
        if priv.get("rule") == "hash":
            scope = priv.get("scope", "installation")
            why = f": {_t(ctx, priv['reason'])}" if priv.get("reason") else ""
            lines.append(f"{'假名' if zh else 'pseudonym'} {f['name']}: one per {scope}{why}")
        elif priv.get("reason"):
            lines.append(f"{f['name']}: {priv['class']}: {_t(ctx, priv['reason'])}")
    if t.get("withheld"):
        by = ", ".join(t["withheld"]["by"])
        lines.append(f"{'扣留' if zh else 'withheld'}: {t['withheld']['rows']:,} rows, cut by the holdout of {by}")
    for err in q.get("errors", []):
        lines.append(f"{err['code']} ×{err['count']}: {err['message_' + _lang(ctx)]}")
    if q.get("quarantine_file"):
        where = ctx.obj["paths"].private_root / q["quarantine_file"]
        lines.append(
            f"{'隔离' if zh else 'quarantine'}: {q['quarantined_rows']:,} bad rows (source row, error codes, raw text) "
            f"in {where}" + ("" if where.exists() else " (not on this machine)")
        )
    return lines


@datasets.command("export-dcat")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write to this file.")
@click.option("--base-url", default="", help="Public URL under which the data root is served.")
@click.pass_context
def export_dcat_cmd(ctx: click.Context, output: str | None, base_url: str) -> None:
    """Write the catalog as DCAT-AP JSON-LD."""
    doc = cat.export_dcat(ctx.obj["paths"].data_root, base_url)
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"wrote {len(doc['dcat:dataset'])} datasets to {output}", err=True)
    else:
        click.echo(text)


@click.command("sql")
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--limit", type=int, default=1000, show_default=True, help="At most this many rows (0: all).")
def sql_cmd(query: str, fmt: str, limit: int) -> None:
    """Query the open data with SQL from a terminal (tables are <dataset>.<table>)."""
    import sandbox

    rel = sandbox.sql(query)
    df = (rel.limit(limit) if limit else rel).df()
    if fmt == "csv":
        click.echo(df.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(df.to_json(orient="records", force_ascii=False, date_format="iso"))
    else:
        table = Table()
        for col in df.columns:
            table.add_column(str(col), justify="right" if df[col].dtype.kind in "iuf" else "left")
        for row in df.itertuples(index=False):
            table.add_row(*("" if v is None else str(v) for v in row))
        out().print(table)
        click.echo(f"{len(df)} row(s)" + (f" (limited to {limit}; use --limit 0 for all)" if len(df) == limit else ""))


@click.command("submit")
@click.argument("challenge_id")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the submission as JSON.")
@click.option("--hub", help="From a laptop: the hub's public URL [CONTESTHUB_URL].")
@click.option("--token", help="From a laptop: your API token from the hub's Token page [CONTESTHUB_TOKEN].")
@click.pass_context
def submit_cmd(
    ctx: click.Context, challenge_id: str, file: str, as_json: bool, hub: str | None, token: str | None
) -> None:
    """Submit FILE for CHALLENGE_ID from JupyterLab, or from a laptop with --hub and --token (costs one of
    today's submissions)."""
    import os

    from sandbox.submit import submit

    hub = hub or os.environ.get("CONTESTHUB_URL")
    token = token or os.environ.get("CONTESTHUB_TOKEN")
    if hub:  # a laptop: the hub's submission service through its proxy, with the person's own token
        os.environ["CONTESTHUB_SUBMIT_URL"] = hub.rstrip("/") + "/services/submit"
        if token:
            os.environ["JUPYTERHUB_API_TOKEN"] = token

    result = submit(challenge_id, file, quiet=True)
    if as_json:
        echo_json(result.raw)
    else:
        click.echo("\n".join(result.lines(_lang(ctx))))
    if not result.ok:
        ctx.exit(1)
