"""``contesthub contest ...`` and ``contesthub score``: the organizer's contest commands."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from leaderboard import contest as contest_config
from leaderboard.scoring import score_file
from sandbox import catalog
from sandbox.cli import echo_json, out

contest_option = click.option(
    "--contest",
    "contest_file",
    type=click.Path(dir_okay=False),
    help="The contest definition [CONTESTHUB_CONTEST, default config/contest.toml].",
)


@click.group("contest")
def contest() -> None:
    """Define and check the contest (比赛定义)."""


@contest.command("validate")
@contest_option
@click.option("--json", "as_json", is_flag=True, help="Print the challenges as JSON.")
@click.pass_context
def validate_cmd(ctx: click.Context, contest_file: str | None, as_json: bool) -> None:
    """Check the contest definition against its schema and the datasets; list the challenges."""
    c = contest_config.load(contest_config.config_path(contest_file), ctx.obj["paths"].datasets_dir)
    published = catalog.load(ctx.obj["paths"].data_root)["datasets"]
    rows = []
    for ch in c.challenges:
        entry = published.get(ch.dataset, {}).get("entry")
        test = entry["tables"].get(f"{ch.table}_test") if entry else None
        rows.append(
            {
                "id": ch.id,
                "title": ch.title,
                "data": f"{ch.dataset}.{ch.table}_test",
                "metric": ch.metric,
                "higher_is_better": ch.higher_is_better,
                "test_rows": test["rows"] if test else None,
                "public_fraction": ch.public_fraction,
                "daily_quota": ch.daily_quota,
                "opens": ch.opens.isoformat(),
                "closes": ch.closes.isoformat(),
                "reveal": ch.reveal.isoformat(),
            }
        )
    if as_json:
        echo_json({"valid": True, "title": c.title, "timezone": str(c.timezone), "challenges": rows})
        return
    lang = ctx.obj["lang"]
    table = Table(title=f"{c.title[lang]} — {len(rows)} challenge(s), time zone {c.timezone}")
    for col in ("challenge", "title", "test set", "metric", "test rows", "public", "quota/day", "closes"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["id"],
            r["title"][lang],
            r["data"],
            r["metric"] + (" ↑" if r["higher_is_better"] else " ↓"),
            f"{r['test_rows']:,}" if r["test_rows"] is not None else "not built yet",
            f"{r['public_fraction']:.0%}",
            str(r["daily_quota"]),
            r["closes"][:16],
        )
    out().print(table)
    click.echo("contest definition valid / 比赛定义有效")


@click.command("score")
@click.argument("challenge_id")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@contest_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def score_cmd(ctx: click.Context, challenge_id: str, file: str, contest_file: str | None, as_json: bool) -> None:
    """Validate and score a file offline, for organizers (public and private score)."""
    paths = ctx.obj["paths"]
    ch = contest_config.load(contest_config.config_path(contest_file), paths.datasets_dir).challenge(challenge_id)
    result = score_file(ch, Path(file), paths)
    lang = ctx.obj["lang"]
    if as_json:
        echo_json(result.to_dict())
    elif result.valid:
        click.echo(
            f"{ch.id}: {result.rows:,} rows valid; {ch.metric} v{result.metric_version}: "
            f"public {result.public_score:.6g}, private {result.private_score:.6g} "
            f"(dataset {ch.dataset} v{result.dataset_version})"
        )
    else:
        for e in result.errors:
            where = f" (rows {', '.join(map(str, e['rows']))})" if e["rows"] else ""
            click.echo(f"{e['code']}: {e['message_' + lang]}{where}", err=True)
    if not result.valid:
        ctx.exit(1)
