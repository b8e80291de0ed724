"""``contesthub contest ...`` and ``contesthub score``: the organizer's contest commands."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from leaderboard import contest as contest_config
from leaderboard.scoring import score_file
from sandbox import catalog, statuses
from sandbox.cli import echo_json, out
from sandbox.errors import NotFound

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
    """Check the contest definition against its schema and the datasets; list the challenges.

    Each challenge whose data is built is also checked for leaks: predictors built from the
    dataset's public tables alone must not beat the naive baseline by more than its
    leakage_margin (leaderboard/leakage.py); a leaking challenge is refused, naming the predictor.
    """
    from leaderboard import leakage
    from leaderboard.publish import public_challenge

    c = contest_config.load_for(ctx.obj["paths"], contest_file)
    published = catalog.load(ctx.obj["paths"].data_root)["datasets"]
    reports = {r.challenge: r for r in leakage.check_all(c, ctx.obj["paths"])}
    leakage.refuse_leaks(c, list(reports.values()))
    rows = []
    for ch in c.challenges:
        entry = published.get(ch.dataset, {}).get("entry")
        test = entry["tables"].get(ch.test_table) if entry else None
        rows.append(
            public_challenge(ch)
            | {
                "data": ch.test_relation,
                "test_rows": test["rows"] if test else None,
                "public_fraction": ch.public_fraction,
                "leakage": reports[ch.id].to_dict(),
            }
        )
    if as_json:
        echo_json({"valid": True, "title": c.title, "timezone": str(c.timezone), "challenges": rows})
        return
    lang = ctx.obj["lang"]
    table = Table(title=f"{c.title[lang]} — {len(rows)} challenge(s), time zone {c.timezone}")
    for col in ("challenge", "title", "test set", "metric", "test rows", "public", "quota/day", "closes", "leakage"):
        table.add_column(col)
    for r in rows:
        leak = reports[r["id"]]
        best = leak.predictors[0] if leak.predictors else None
        leak_text = leak.skipped or (f"ok (best {best.gain:+.0%}, margin {leak.margin:.0%})" if best else "ok")
        table.add_row(
            r["id"],
            r["title"][lang],
            r["data"],
            r["metric"] + (" ↑" if r["higher_is_better"] else " ↓"),
            f"{r['test_rows']:,}" if r["test_rows"] is not None else "not built yet",
            f"{r['public_fraction']:.0%}",
            str(r["daily_quota"]),
            r["closes"][:16],
            leak_text,
        )
    out().print(table)
    click.echo("contest definition valid / 比赛定义有效")


@contest.command("publish")
@contest_option
@click.option("--by", default=lambda: __import__("getpass").getuser(), help="Who does this (recorded).")
@click.pass_context
def publish_cmd(ctx: click.Context, contest_file: str | None, by: str) -> None:
    """Write the submission rules contestants may see to <data root>/contest.json (for sandbox.validate),
    and commit to each challenge's solution and scoring code (<data root>/contest-results/commitments.json)."""
    from leaderboard import publish, results

    paths = ctx.obj["paths"]
    c = contest_config.load_for(paths, contest_file)
    doc = publish.write(c, paths)
    click.echo(f"published the rules of {len(doc['challenges'])} challenge(s) to {paths.data_root / publish.FILE}")
    with _store(ctx).session() as s:
        made = results.commit(s, c, paths, by=by)
    where = results.results_dir(paths) / "commitments.json"
    click.echo(f"commitments: {len(made)} new, in {where} / 已发布答案与评分代码的承诺")


@contest.command("demo")
@click.argument("action", type=click.Choice(["status", "open", "close"]), default="status")
@contest_option
@click.option("--by", default=lambda: __import__("getpass").getuser(), help="Who does this (recorded).")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule as JSON.")
@click.pass_context
def demo_cmd(ctx: click.Context, action: str, contest_file: str | None, by: str, as_json: bool) -> None:
    """The demo's moving schedule: status, open (from today) or close (ready to reveal) (演示赛程).

    A demo contest file ([demo] day = ...) has its dates moved so that this day falls on the
    demo's anchor day. ``close`` moves the anchor back so that every challenge closed yesterday:
    no more submissions, the review phase runs and organizers can reveal. ``open`` makes today
    the anchor again. The running platform reads the new dates at once.
    """
    from leaderboard import audit, publish, schedule

    paths = ctx.obj["paths"]
    c = contest_config.load_for(paths, contest_file)
    if action != "status":
        paths.ensure()
        anchor = (schedule.open_today if action == "open" else schedule.close)(c, paths.private_root, by)
        c = contest_config.load_for(paths, contest_file)
        with _store(ctx).session() as s:
            audit.record(s, by, f"demo.{action}", "schedule", anchor.to_dict())
        if (paths.data_root / publish.FILE).exists():  # what sandboxes see follows the new dates
            try:
                publish.write(c, paths)
            except NotFound as exc:
                click.echo(f"warning: {exc.message(ctx.obj['lang'])}; contest.json keeps the old dates", err=True)
    if c.demo_day is None and action == "status":
        click.echo(f"{c.path.name}: fixed dates (not a demo) / 固定日期（非演示）")
        return
    recorded = schedule.read(paths.private_root)
    doc = {
        "demo_day": c.demo_day.isoformat() if c.demo_day else None,
        "anchor_day": c.anchor_day.isoformat() if c.anchor_day else None,
        "state": recorded.state if recorded else "not recorded (today is the anchor)",
        "challenges": [
            {
                "id": ch.id,
                "opens": ch.opens.isoformat(),
                "closes": ch.closes.isoformat(),
                "reveal": ch.reveal.isoformat(),
            }
            for ch in c.challenges
        ],
    }
    if as_json:
        echo_json(doc)
        return
    click.echo(f"demo schedule / 演示赛程: anchor {doc['anchor_day']} (file's day {doc['demo_day']}), {doc['state']}")
    for ch in doc["challenges"]:
        click.echo(f"  {ch['id']}: opens {ch['opens'][:16]}, closes {ch['closes'][:16]}, reveal {ch['reveal'][:16]}")


@click.command("score")
@click.argument("challenge_id")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@contest_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def score_cmd(ctx: click.Context, challenge_id: str, file: str, contest_file: str | None, as_json: bool) -> None:
    """Validate and score a file offline, for organizers (public and private score)."""
    paths = ctx.obj["paths"]
    ch = contest_config.load_for(paths, contest_file).challenge(challenge_id)
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


# --- the contest store: teams, quotas, submissions, reveal, rescore, audit --------------------


def _contest(ctx: click.Context) -> contest_config.Contest:
    return contest_config.load_for(ctx.obj["paths"], ctx.obj.get("contest_file"))


def _store(ctx: click.Context):
    from leaderboard import store

    return store.connect(ctx.obj["paths"])


def _table(title: str, columns: list[str], rows: list[list]) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*["" if v is None else str(v) for v in r])
    out().print(table)


ORGANIZER = click.option(
    "--by", default=lambda: __import__("getpass").getuser(), help="Who does this (recorded in the audit log)."
)


@click.group("teams")
@contest_option
@click.pass_context
def teams_cmd(ctx: click.Context, contest_file: str | None) -> None:
    """Teams: create, add and remove members, merge, list (队伍管理)."""
    ctx.obj["contest_file"] = contest_file


@teams_cmd.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def teams_list(ctx: click.Context, as_json: bool) -> None:
    from leaderboard import teams

    with _store(ctx).session() as s:
        rows = teams.listing(s)
    if as_json:
        echo_json(rows)
        return
    _table(
        "teams / 队伍",
        ["team", "display name", "members"],
        [[t["name"], t["display_name"], ", ".join(t["members"])] for t in rows],
    )


@teams_cmd.command("create")
@click.argument("name")
@click.argument("members", nargs=-1)
@click.option("--display-name", help="The name shown on the leaderboard (default: NAME).")
@click.option("--region", help="The team's region (赛区), when rounds advance teams per region.")
@ORGANIZER
@click.pass_context
def teams_create(
    ctx: click.Context, name: str, members: tuple[str, ...], display_name: str | None, region: str | None, by: str
) -> None:
    """Create team NAME with MEMBERS (user names)."""
    from leaderboard import teams

    with _store(ctx).session() as s:
        teams.create(s, _contest(ctx), name, actor=by, display_name=display_name, members=members, region=region)
    click.echo(f"team {name} created with {len(members)} member(s) / 已创建队伍")


@teams_cmd.command("add")
@click.argument("team")
@click.argument("user")
@ORGANIZER
@click.pass_context
def teams_add(ctx: click.Context, team: str, user: str, by: str) -> None:
    """Add USER to TEAM."""
    from leaderboard import teams

    with _store(ctx).session() as s:
        teams.add_member(s, _contest(ctx), team, user, actor=by)
    click.echo(f"{user} joined {team} / 已加入")


@teams_cmd.command("region")
@click.argument("team")
@click.argument("region")
@ORGANIZER
@click.pass_context
def teams_region(ctx: click.Context, team: str, region: str, by: str) -> None:
    """Put TEAM in REGION (赛区); an empty REGION takes it out of any."""
    from leaderboard import teams

    with _store(ctx).session() as s:
        teams.set_region(s, _contest(ctx), team, region, actor=by)
    click.echo(f"{team}: region {region or '-'} / 赛区已设置")


@teams_cmd.command("remove")
@click.argument("team")
@click.argument("user")
@ORGANIZER
@click.pass_context
def teams_remove(ctx: click.Context, team: str, user: str, by: str) -> None:
    """Remove USER from TEAM."""
    from leaderboard import teams

    with _store(ctx).session() as s:
        teams.remove_member(s, _contest(ctx), team, user, actor=by)
    click.echo(f"{user} left {team} / 已退出")


@teams_cmd.command("merge")
@click.argument("team")
@click.argument("other")
@ORGANIZER
@click.pass_context
def teams_merge(ctx: click.Context, team: str, other: str, by: str) -> None:
    """Merge team OTHER into TEAM (refused when their submissions exceed a merged team's quota)."""
    from leaderboard import teams

    with _store(ctx).session() as s:
        merged = teams.merge(s, _contest(ctx), team, other, actor=by)
        members = [m.user for m in merged.members]
    click.echo(f"{other} merged into {team}: {', '.join(members)} / 合并完成")


@click.command("grant")
@click.argument("team")
@click.argument("challenge_id")
@click.argument("extra", type=int)
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@click.option("--day", type=click.DateTime(["%Y-%m-%d"]), help="The contest day (default today).")
@contest_option
@ORGANIZER
@click.pass_context
def grant_cmd(ctx, team: str, challenge_id: str, extra: int, reason: str, day, contest_file, by: str) -> None:
    """Give TEAM EXTRA submissions on CHALLENGE_ID for one day (追加提交次数)."""
    from leaderboard import submissions

    ctx.obj["contest_file"] = contest_file
    with _store(ctx).session() as s:
        g = submissions.grant(
            s, _contest(ctx), team, challenge_id, extra, reason=reason, by=by, day=day.date() if day else None
        )
    click.echo(f"{team}: +{g.extra} on {g.challenge} for {g.day} ({g.reason}) / 已追加")


@click.command("submissions")
@click.option("--challenge", "challenge_id")
@click.option("--status", type=click.Choice(statuses.ALL))
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def submissions_cmd(ctx, challenge_id: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List submissions, newest first (organizers; public scores only)."""
    from leaderboard import organizer

    with _store(ctx).session() as s:
        rows = organizer.submission_listing(s, challenge=challenge_id, status=status, limit=limit)
    if as_json:
        echo_json(rows)
        return
    _table(
        "submissions / 提交",
        ["id", "challenge", "team", "user", "time (UTC)", "status", "public score", "file"],
        [
            [
                r["id"],
                r["challenge"],
                r["team"],
                r["user"],
                r["created_at"][:19],
                r["status"],
                r["public_score"],
                r["file_name"],
            ]
            for r in rows
        ],
    )


@click.command("reveal")
@click.argument("challenge_id")
@contest_option
@ORGANIZER
@click.pass_context
def reveal_cmd(ctx, challenge_id: str, contest_file, by: str) -> None:
    """Make CHALLENGE_ID's private ranking public (after its deadline; recorded) and publish its
    signed results bundle (公布最终排名与签名结果)."""
    from leaderboard import organizer, ranking

    ctx.obj["contest_file"] = contest_file
    contest = _contest(ctx)
    store = _store(ctx)
    done = organizer.reveal(store, contest, ctx.obj["paths"], challenge_id, by=by)
    report = done["report"]
    click.echo(f"signed results / 已签名的结果: {done['bundle']}")
    with store.session() as s:
        rows = ranking.private_standings(s, contest.challenge(challenge_id))
    band = report.get("intervals", {})
    _table(
        f"{challenge_id}: private ranking / 最终排名",
        ["rank", "team", "score", "95% interval", "tied group", "public rank", "shift"],
        [
            [
                r["rank"],
                r["team"],
                f"{r['score']:.6g}",
                "–".join(f"{v:.4g}" for v in band[r["team"]]) if r["team"] in band else "",
                report.get("groups", {}).get(r["team"], ""),
                r["public_rank"],
                r["shift"],
            ]
            for r in rows[:20]
        ],
    )


@click.command("rescore")
@click.argument("challenge_id")
@click.option("--reason", help="Why (recorded); needed to start a rescore.")
@click.option("--publish", "publish_id", type=int, help="Publish the pending rescore with this id.")
@click.option("--discard", "discard_id", type=int, help="Discard the pending rescore with this id.")
@click.option("--json", "as_json", is_flag=True)
@contest_option
@ORGANIZER
@click.pass_context
def rescore_cmd(ctx, challenge_id, reason, publish_id, discard_id, as_json, contest_file, by) -> None:
    """Score CHALLENGE_ID's submissions again and show rank changes; publish or discard it after (重新评分)."""
    from leaderboard import organizer, ranking

    ctx.obj["contest_file"] = contest_file
    store = _store(ctx)
    if publish_id or discard_id:
        run = organizer.decide_rescore(store, publish_id or discard_id, by=by, publish=bool(publish_id))
        click.echo(f"rescore {run['rescore']}: {run['status']}")
        return
    if not reason:
        raise click.UsageError("say why with --reason")
    result = ranking.rescore(store, _contest(ctx), ctx.obj["paths"], challenge_id, by=by, reason=reason)
    if as_json:
        echo_json(organizer.rescore_summary(result))
        return
    _table(
        f"rescore {result.id} of {challenge_id}: rank changes (not published) / 排名变化（未发布）",
        ["team", "public rank", "→", "private rank", "→"],
        [
            [
                c["team"],
                c["public_rank_before"],
                c["public_rank_after"],
                c["private_rank_before"],
                c["private_rank_after"],
            ]
            for c in result.changes
        ],
    )
    click.echo(f"publish with: contesthub rescore {challenge_id} --publish {result.id}   (or --discard {result.id})")


@click.group("audit")
def audit_cmd() -> None:
    """The audit log (审计日志)."""


@audit_cmd.command("verify")
@click.option(
    "--files", "check_files", is_flag=True, help="Also read every stored submission file and check its SHA-256."
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit_verify(ctx: click.Context, check_files: bool, as_json: bool) -> None:
    """Check the hash chain (and, with --files, every stored file): exit 1 on any tampering or damage."""
    from leaderboard import audit, submissions

    store = _store(ctx)
    with store.session() as s:
        result = audit.verify(s)
    files = submissions.verify_files(store) if check_files else None
    ok = result.ok and (files is None or files.ok)
    if as_json:
        echo_json({**result.to_dict(), **({"files": files.to_dict()} if files else {}), "ok": ok})
    else:
        if result.ok:
            click.echo(f"audit log intact: {result.entries} entries / 审计日志完整")
        for p in result.problems:
            click.echo(p, err=True)
        if files is not None and files.ok:
            click.echo(f"submission files intact: {files.checked} checked / 提交文件完整")
        for p in files.problems if files else []:
            zh = "损坏" if p["problem"] == "damaged" else "丢失"
            subs = ", ".join(map(str, p["submissions"]))
            click.echo(f"{p['problem']} file {p['sha256']} (submissions {subs}) / 提交文件{zh}", err=True)
    if not ok:
        ctx.exit(1)


def _hub_parts(ctx: click.Context, homes: bool):
    """Where this installation's hub keeps its accounts and the contestants' homes (config/hub.toml)."""
    from hub.settings import HubSettings
    from leaderboard.backup_hub import HubParts

    settings = HubSettings.load({"private_root": str(ctx.obj["paths"].private_root)})
    return HubParts(settings.db_url, settings.home_root, homes)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


@click.command("backup")
@click.argument("dest", type=click.Path(file_okay=False))
@contest_option
@click.option("--homes", is_flag=True, help="Whole homes, not only the notebooks in them (see the size report).")
@click.pass_context
def backup_cmd(ctx: click.Context, dest: str, contest_file: str | None, homes: bool) -> None:
    """Write a consistent backup of the whole contest into DEST, also while submissions continue: the
    store, files, data, solutions, secrets, the hub's accounts and the contestants' notebooks (备份)."""
    from leaderboard import backup

    manifest = backup.backup(
        _store(ctx), ctx.obj["paths"], contest_config.config_path(contest_file), Path(dest), _hub_parts(ctx, homes)
    )
    rows = ", ".join(f"{k} {v}" for k, v in manifest["rows"].items() if v)
    click.echo(f"backup written to {dest}: {len(manifest['files'])} files; rows: {rows} / 备份完成")
    hub = manifest["hub"]
    sizes = hub["home_sizes"]
    whole = sum(r["bytes"] for r in sizes.values())
    notebooks = sum(r["notebook_bytes"] for r in sizes.values())
    click.echo(
        f"hub accounts: {hub['accounts']}; homes of {len(sizes)} contestants: {_mb(whole)} in all, "
        f"notebooks {_mb(notebooks)}; backed up: {'whole homes' if homes else 'notebooks only (--homes for all)'}"
        f" / 账号 {hub['accounts']} 个；主目录共 {_mb(whole)}，其中笔记本 {_mb(notebooks)}"
    )
    for user, r in sorted(sizes.items(), key=lambda kv: -kv[1]["bytes"])[:10]:
        skipped = f", {r['skipped']} links or special files left out" if r["skipped"] else ""
        click.echo(f"  {user}: {r['files']} files, {_mb(r['bytes'])}; {r['notebooks']} notebooks{skipped}")


@click.command("restore")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.option("--contest-target", type=click.Path(dir_okay=False), help="Also write the backup's contest.toml here.")
@click.pass_context
def restore_cmd(ctx: click.Context, src: str, contest_target: str | None) -> None:
    """Restore a backup into an empty store and empty roots (the hub's accounts and the homes too);
    verifies checksums and the audit log (恢复)."""
    from leaderboard import backup

    paths = ctx.obj["paths"].ensure()
    manifest = backup.restore(
        Path(src), _store(ctx), paths, Path(contest_target) if contest_target else None, _hub_parts(ctx, False)
    )
    click.echo(f"restored {sum(manifest['rows'].values())} rows and {len(manifest['files'])} files; audit log verified")


@click.command("duplicates")
@click.argument("challenge_id")
@click.option("--threshold", default=0.99, show_default=True, help="Similarity at or above which a pair is listed.")
@click.option("--json", "as_json", is_flag=True)
@contest_option
@click.pass_context
def duplicates_cmd(ctx, challenge_id: str, threshold: float, as_json: bool, contest_file) -> None:
    """Organizers: teams that submitted the same file or near-identical predictions (疑似雷同提交)."""
    from leaderboard import integrity

    ctx.obj["contest_file"] = contest_file
    pairs = integrity.near_duplicates(_store(ctx), _contest(ctx), ctx.obj["paths"], challenge_id, threshold=threshold)
    if as_json:
        echo_json(pairs)
        return
    _table(
        f"{challenge_id}: similar submissions / 相似提交",
        ["team", "team", "submissions", "kind", "similarity"],
        [
            [p["teams"][0], p["teams"][1], " / ".join(map(str, p["submissions"])), p["kind"], f"{p['similarity']:.4f}"]
            for p in pairs
        ],
    )


@click.command("verify-results")
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option(
    "--solutions", type=click.Path(file_okay=False), help="The solutions, laid out as <private root>/solutions."
)
@click.option(
    "--submissions", type=click.Path(file_okay=False), help="The final submissions' files (<sha[:2]>/<sha> or flat)."
)
@click.option("--public-key", help="The contest's public key from its home page (hex); else the bundle's own.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify_results_cmd(ctx, bundle: str, solutions, submissions, public_key, as_json: bool) -> None:
    """Check a signed results bundle; given solutions and submissions, score every final submission
    again and recompute the board. Needs no store. Exit 1 on any problem (核验比赛结果)."""
    from leaderboard import results

    verdict = results.verify(
        Path(bundle),
        Path(solutions) if solutions else None,
        Path(submissions) if submissions else None,
        public_key,
    )
    lang = ctx.obj["lang"]
    if as_json:
        echo_json(verdict.to_dict())
    else:
        for p in verdict.problems:
            click.echo(f"{p['file']}: {p['zh'] if lang == 'zh' else p['en']}", err=True)
        if verdict.ok:
            click.echo(f"results verified / 结果核验通过: {', '.join(verdict.checked)}")
    if not verdict.ok:
        ctx.exit(1)


@click.command("verify-run")
@click.argument("challenge_id")
@click.option("--team", help="Only this team's final submissions.")
@contest_option
@click.option("--by", default=lambda: __import__("getpass").getuser(), help="Who does this (recorded).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify_run_cmd(ctx, challenge_id: str, team: str | None, contest_file, by: str, as_json: bool) -> None:
    """Run each final submission's notebook again in a clean sandbox and compare its predictions with
    the submitted file: reproduced, differs or failed, recorded with the log (复现决赛提交)."""
    from leaderboard import rerun

    ctx.obj["contest_file"] = contest_file
    store = _store(ctx)
    homes = _hub_parts(ctx, False).home_root  # the contestants' homes: hidden from the runs, like the private root
    try:
        verdicts = rerun.verify_run(
            store, _contest(ctx), ctx.obj["paths"], challenge_id, team=team, by=by, hide=(homes,)
        )
    finally:
        store.dispose()  # runs can take long: no connection left behind for the process's life
    if as_json:
        echo_json(verdicts)
        return
    zh = {"reproduced": "已复现", "differs": "结果不同", "failed": "运行失败"}
    _table(
        f"{challenge_id}: re-runs / 复现",
        ["team", "submission", "verdict", "details"],
        [
            [
                v["team"],
                v["submission_id"],
                f"{v['verdict']} / {zh[v['verdict']]}",
                v["detail"].get("why")
                or f"{v['detail'].get('rows_differing', 0)} of {v['detail'].get('rows', 0)} rows differ",
            ]
            for v in verdicts
        ],
    )


@click.group("rounds")
@contest_option
@click.pass_context
def rounds_cmd(ctx: click.Context, contest_file: str | None) -> None:
    """Rounds: who advanced, and advancing after a round's reveal (轮次与晋级)."""
    ctx.obj["contest_file"] = contest_file


@rounds_cmd.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rounds_list(ctx: click.Context, as_json: bool) -> None:
    """Each round: its challenges, dates, rule and the teams admitted to it."""
    from leaderboard import rounds

    contest, store = _contest(ctx), _store(ctx)
    with store.session() as s:
        rows = [
            {
                "id": r.id,
                "title": r.title,
                "challenges": list(r.challenges),
                "opens": r.opens.isoformat(),
                "closes": r.closes.isoformat(),
                "reveal": r.reveal.isoformat(),
                "advance": None
                if r.advance is None
                else {"top": r.advance.top, "by": r.advance.by, "per_region": r.advance.per_region},
                "admitted": None if i == 0 else [a["team"] for a in rounds.advanced(s, r.id)],
            }
            for i, r in enumerate(contest.rounds)
        ]
    store.dispose()
    if as_json:
        echo_json(rows)
        return
    _table(
        "rounds / 轮次",
        ["round", "challenges", "opens", "closes", "admitted"],
        [
            [
                f"{r['id']} {r['title']['zh']}",
                ", ".join(r["challenges"]),
                r["opens"],
                r["closes"],
                "all / 全部" if r["admitted"] is None else ", ".join(r["admitted"]) or "-",
            ]
            for r in rows
        ],
    )


@rounds_cmd.command("advance")
@click.argument("round_id")
@click.option("--json", "as_json", is_flag=True)
@ORGANIZER
@click.pass_context
def rounds_advance(ctx: click.Context, round_id: str, as_json: bool, by: str) -> None:
    """Advance ROUND_ID's teams to the next round by its rule, after its reveal (recorded) (晋级)."""
    from leaderboard import rounds

    contest = _contest(ctx)
    store = _store(ctx)
    try:
        with store.session() as s:
            chosen = rounds.advance(s, contest, round_id, by=by)
    finally:
        store.dispose()
    nxt = contest.next_round(round_id)
    if as_json:
        echo_json({"round": round_id, "to": nxt.id, "teams": chosen})
        return
    _table(
        f"{round_id} → {nxt.id}: advanced / 晋级",
        ["team", "region", "basis"],
        [[c["team"], c["region"], ", ".join(f"{k}={v}" for k, v in c["basis"].items())] for c in chosen],
    )
