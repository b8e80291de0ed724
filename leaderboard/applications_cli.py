"""``contesthub applications ...``: the application track from a terminal (应用创新赛道).

Contestants submit (``submit``); jurors declare conflicts, list their blind entries and score
(``conflict``, ``mine``, ``score``); organizers assign jurors, read the results with the
jury's agreement, and publish (``assign``, ``results``, ``reveal``). Everything goes through
leaderboard/applications.py and its audit log.
"""

from __future__ import annotations

from pathlib import Path

import click

from leaderboard import applications as apps
from leaderboard.cli import ORGANIZER, _contest, _store, _table, contest_option
from sandbox.cli import echo_json


@click.group("applications")
@contest_option
@click.pass_context
def applications_cmd(ctx: click.Context, contest_file: str | None) -> None:
    """The application track: entries, jurors, results (应用创新赛道)."""
    ctx.obj["contest_file"] = contest_file


def _session(ctx: click.Context):
    return _store(ctx).session()


@applications_cmd.command("submit")
@click.argument("user")
@click.option("--title", required=True)
@click.option("--writeup", type=click.Path(exists=True, dir_okay=False), required=True, help="Markdown or PDF.")
@click.option("--notebook", "notebooks", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--screenshot", "screenshots", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--link", help="https://... (a demo, a repository)")
@click.pass_context
def submit_cmd(ctx, user: str, title: str, writeup: str, notebooks, screenshots, link: str | None) -> None:
    """Submit a new version of USER's team's entry."""
    files = [apps.File("writeup", Path(writeup))]
    files += [apps.File("notebook", Path(p)) for p in notebooks]
    files += [apps.File("screenshot", Path(p)) for p in screenshots]
    app = apps.submit(_store(ctx), _contest(ctx), user=user, title=title, files=files, link=link)
    click.echo(f"version {app.version} kept ({app.code}) / 已保存第 {app.version} 版")


@applications_cmd.command("conflict")
@click.argument("juror")
@click.argument("team")
@click.pass_context
def conflict_cmd(ctx, juror: str, team: str) -> None:
    """JUROR declares a conflict of interest with TEAM (never sees its entry)."""
    with _session(ctx) as s:
        apps.declare_conflict(s, juror, team)
    click.echo(f"{juror}: conflict with {team} recorded / 已记录利益冲突")


@applications_cmd.command("assign")
@click.option("--juror", "jurors", multiple=True, required=True, help="A member of the hub's jurors group.")
@ORGANIZER
@click.pass_context
def assign_cmd(ctx, jurors: tuple[str, ...], by: str) -> None:
    """Assign the jurors to the entries: each gets jurors_per_entry without a conflict, evenly."""
    with _session(ctx) as s:
        out = apps.assign(s, _contest(ctx), list(jurors), by=by)
    _table("assignments / 评委分配", ["team", "jurors"], [[t, ", ".join(js)] for t, js in sorted(out.items())])


@applications_cmd.command("mine")
@click.argument("juror")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def mine_cmd(ctx, juror: str, as_json: bool) -> None:
    """The entries assigned to JUROR, blind (codes, titles, files), with the scores given so far."""
    with _session(ctx) as s:
        rows = apps.juror_view(s, _contest(ctx), juror)
    if as_json:
        echo_json(rows)
        return
    _table(
        f"{juror}: entries / 待评作品",
        ["code", "title", "files", "scored"],
        [[r["code"], r["title"], ", ".join(f["name"] for f in r["files"]), "yes" if r["scores"] else ""] for r in rows],
    )


@applications_cmd.command("score")
@click.argument("juror")
@click.argument("code")
@click.argument("scores", nargs=-1, required=True)
@click.pass_context
def score_cmd(ctx, juror: str, code: str, scores: tuple[str, ...]) -> None:
    """JUROR scores entry CODE: criterion=value for every criterion."""
    parsed = {}
    for item in scores:
        name, _, value = item.partition("=")
        if not value.strip().lstrip("-").isdigit():
            raise click.BadParameter(f"{item!r}: write criterion=whole number / 请写成 评分项=整数")
        parsed[name.strip()] = int(value)
    with _session(ctx) as s:
        apps.score(s, _contest(ctx), juror, code, parsed)
    click.echo(f"{code}: scored / 已评分")


@applications_cmd.command("results")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def results_cmd(ctx, as_json: bool) -> None:
    """Organizers: trimmed means, weighted scores, awards, the jury's agreement and outliers."""
    with _session(ctx) as s:
        report = apps.results(s, _contest(ctx))
    if as_json:
        echo_json(report)
        return
    icc = report["icc1"]
    _table(
        f"results / 评审结果 (ICC(1) = {'n/a' if icc is None else f'{icc:.2f}'})",
        ["rank", "code", "team", "score", "award", "outliers"],
        [
            [r["rank"], r["code"], r["team"], f"{r['score']:.2f}", r["award"] or "", ", ".join(r["outliers"])]
            for r in report["entries"]
        ],
    )


@applications_cmd.command("reveal")
@ORGANIZER
@click.pass_context
def reveal_cmd(ctx, by: str) -> None:
    """Publish the results and awards (after the track's reveal time; recorded)."""
    with _session(ctx) as s:
        report = apps.reveal(s, _contest(ctx), by=by)
    awarded = sum(1 for r in report["entries"] if r["award"])
    click.echo(f"published: {awarded} awarded entries / 已公布获奖作品")


@applications_cmd.command("finalists")
@click.pass_context
def finalists_cmd(ctx) -> None:
    """The public list of awarded entries (after the reveal)."""
    with _session(ctx) as s:
        echo_json(apps.finalists(s))
