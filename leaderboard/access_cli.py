"""``contesthub access ...``: apply for conditional data and decide requests (数据申请).

``request`` is run by a team member (``--as`` names them; in a sandbox terminal it is the
signed-in user); ``approve``, ``reject`` and ``revoke`` by organizers or the dataset's
reviewers, who have the store at hand. Every step goes into the audit log; after a decision
the grants in force are applied to the file system where the platform can (secure mode:
``hub/conditional_acl.py``).
"""

from __future__ import annotations

import datetime as dt
import getpass
import os

import click

from leaderboard import access
from sandbox.cli import echo_json
from sandbox.descriptor import load_all

BY = click.option("--by", default=getpass.getuser, help="Who decides (recorded in the audit log).")


def _store(ctx: click.Context):
    from leaderboard import store

    return store.connect(ctx.obj["paths"])


def _dataset(ctx: click.Context, dataset_id: str):
    return load_all(ctx.obj["paths"].datasets_dir, [dataset_id])[0]


def _after_decision(ctx: click.Context) -> None:
    """Apply the grants in force to the conditional roots (secure mode), if this account can."""
    from hub import conditional_acl

    store = _store(ctx)
    done = conditional_acl.sync(store, ctx.obj["paths"])
    if done:
        click.echo(done)


@click.group("access")
def access_cmd() -> None:
    """Conditional data: requests, decisions, the access log (有条件开放数据申请)."""


@access_cmd.command("request")
@click.argument("dataset_id")
@click.option("--purpose", required=True, help="What the team will use the data for.")
@click.option("--serves", required=True, help="The challenge or application it serves.")
@click.option("--accept", "agreement_version", required=True, help="The agreement version you read and accept.")
@click.option("--as", "user", default=lambda: os.environ.get("JUPYTERHUB_USER") or getpass.getuser())
@click.pass_context
def request_cmd(ctx, dataset_id: str, purpose: str, serves: str, agreement_version: str, user: str) -> None:
    """Apply for DATASET_ID on behalf of your team (see its agreement: contesthub access agreement).

    In a sandbox (JUPYTERHUB_API_TOKEN and CONTESTHUB_SUBMIT_URL set) the request goes through
    the submission service as the signed-in user; elsewhere into the store, as ``--as``.
    """
    from sandbox import conditional_access

    if conditional_access._platform():
        doc = conditional_access.request_access(dataset_id, purpose=purpose, serves=serves, accept=agreement_version)
        click.echo(f"request {doc['id']}: {doc['team']} → {dataset_id}, pending / 已提交，待审批")
        return
    ds = _dataset(ctx, dataset_id)
    with _store(ctx).session() as s:
        req = access.request(s, ds, user, purpose=purpose, serves=serves, agreement_version=agreement_version)
        rid, team = req.id, req.team.name
    click.echo(f"request {rid}: {team} → {dataset_id}, pending / 已提交，待审批")


@access_cmd.command("agreement")
@click.argument("dataset_id")
@click.pass_context
def agreement_cmd(ctx, dataset_id: str) -> None:
    """Print the data-use agreement of DATASET_ID (zh and en) and its version."""
    ds = access._conditional(_dataset(ctx, dataset_id))
    a = ds.agreement
    click.echo(f"{ds.id} 数据使用协议 / data-use agreement, version {a['version']}\n")
    click.echo(a["text"]["zh"] + "\n\n" + a["text"]["en"])


@access_cmd.command("approve")
@click.argument("request_id", type=int)
@click.option("--days", type=click.IntRange(1, 3660), help="Grant for this many days from now.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Grant until the end of this day (UTC).")
@BY
@click.pass_context
def approve_cmd(ctx, request_id: int, days: int | None, until, by: str) -> None:
    """Approve REQUEST_ID until an expiry (--days or --until)."""
    from sandbox import clock

    if (days is None) == (until is None):
        raise click.UsageError("give exactly one of --days and --until / 请给出 --days 或 --until 之一")
    expires = (
        clock.now() + dt.timedelta(days=days)
        if days
        else dt.datetime.combine(until.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    )
    with _store(ctx).session() as s:
        req = access.get(s, request_id)
        req = access.approve(s, _dataset(ctx, req.dataset), request_id, by, expires_at=expires)
        line = f"request {req.id}: {req.team.name} may read {req.dataset} until {expires:%Y-%m-%d %H:%M} UTC / 已批准"
    click.echo(line)
    _after_decision(ctx)


@access_cmd.command("reject")
@click.argument("request_id", type=int)
@click.option("--reason", required=True)
@BY
@click.pass_context
def reject_cmd(ctx, request_id: int, reason: str, by: str) -> None:
    """Reject REQUEST_ID with a reason (the team sees it)."""
    with _store(ctx).session() as s:
        req = access.reject(s, request_id, by, reason=reason)
        click.echo(f"request {req.id}: rejected / 已驳回 ({req.reason})")


@access_cmd.command("revoke")
@click.argument("request_id", type=int)
@click.option("--reason", required=True)
@BY
@click.pass_context
def revoke_cmd(ctx, request_id: int, reason: str, by: str) -> None:
    """Revoke an approved REQUEST_ID at once."""
    with _store(ctx).session() as s:
        req = access.revoke(s, request_id, by, reason=reason)
        click.echo(f"request {req.id}: revoked / 已撤销 ({req.reason})")
    _after_decision(ctx)


@access_cmd.command("expire")
@click.pass_context
def expire_cmd(ctx) -> None:
    """Mark grants past their expiry as expired and close their roots (the hub does this every minute)."""
    with _store(ctx).session() as s:
        n = len(access.expire_due(s))
    click.echo(f"{n} grant(s) expired / 已到期")
    _after_decision(ctx)


@access_cmd.command("list")
@click.option("--team")
@click.option("--dataset")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_cmd(ctx, team: str | None, dataset: str | None, as_json: bool) -> None:
    """Requests and their state (in a sandbox: your team's, through the submission service)."""
    from leaderboard.cli import _table
    from sandbox import conditional_access

    if conditional_access._platform():
        rows = conditional_access._call("GET", "access/requests")["requests"]
    else:
        with _store(ctx).session() as s:
            rows = access.listing(s, team=team, dataset=dataset)
    if as_json:
        echo_json(rows)
        return
    _table(
        "access requests / 数据申请",
        ["id", "dataset", "team", "state", "serves", "expires", "reason"],
        [[r["id"], r["dataset"], r["team"], r["state"], r["serves"], r["expires_at"], r["reason"]] for r in rows],
    )


@access_cmd.command("log")
@click.option("--team")
@click.option("--dataset")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def log_cmd(ctx, team: str | None, dataset: str | None, as_json: bool) -> None:
    """The access log: grants, server starts and queries, newest first (organizers)."""
    from leaderboard.cli import _table

    with _store(ctx).session() as s:
        rows = access.events(s, dataset=dataset, team=team)
    if as_json:
        echo_json(rows)
        return
    _table(
        "access log / 访问记录",
        ["at", "dataset", "team", "user", "kind", "detail"],
        [[r["at"][:19], r["dataset"], r["team"], r["user"], r["kind"], r["detail"]] for r in rows],
    )


# --- data requests and error reports (leaderboard/reports.py) ---------------------------------


@click.group("reports")
def reports_cmd() -> None:
    """Data requests and error reports; organizers triage them (数据需求与纠错)."""


def _send_report(ctx, user: str, kind: str, **fields) -> None:
    from leaderboard import reports
    from sandbox import conditional_access

    if conditional_access._platform():  # in a sandbox: as the signed-in user, through the service
        doc = conditional_access.send_report(kind, **fields)
        rid = doc["id"]
    else:
        with _store(ctx).session() as s:
            rid = reports.submit(s, ctx.obj["paths"].data_root, user, kind, **fields).id
    click.echo(f"report {rid}: kept, status new / 已提交")


@reports_cmd.command("request")
@click.argument("dataset")
@click.option("--description", required=True, help="What data you need and why.")
@click.option("--as", "user", default=lambda: os.environ.get("JUPYTERHUB_USER") or getpass.getuser())
@click.pass_context
def report_request_cmd(ctx, dataset: str, description: str, user: str) -> None:
    """Ask for a dataset that is not in the catalog."""
    _send_report(ctx, user, "request", dataset=dataset, description=description)


@reports_cmd.command("error")
@click.argument("dataset")
@click.option("--description", required=True, help="What is wrong.")
@click.option("--version", type=int)
@click.option("--table")
@click.option("--row-key")
@click.option("--field")
@click.option("--as", "user", default=lambda: os.environ.get("JUPYTERHUB_USER") or getpass.getuser())
@click.pass_context
def report_error_cmd(ctx, dataset, description, version, table, row_key, field, user) -> None:
    """Report an error in a published dataset (version, table, row key, field)."""
    _send_report(
        ctx,
        user,
        "error",
        dataset=dataset,
        description=description,
        version=version,
        table=table,
        row_key=row_key,
        field=field,
    )


@reports_cmd.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reports_list_cmd(ctx, as_json: bool) -> None:
    """Every report and its state (what the public status page shows)."""
    from leaderboard import reports
    from leaderboard.cli import _table

    with _store(ctx).session() as s:
        rows = reports.public_listing(s)
    if as_json:
        echo_json(rows)
        return
    _table(
        "data requests and error reports / 数据需求与纠错",
        ["id", "kind", "dataset", "where", "status", "planned", "fixed in", "reason"],
        [
            [
                r["id"],
                r["kind"],
                r["dataset"],
                ".".join(str(x) for x in (r["table"], r["field"], r["row_key"]) if x),
                r["status"],
                r["planned_for"],
                r["fixed_in_version"],
                r["reason"],
            ]
            for r in rows
        ],
    )


@reports_cmd.command("triage")
@click.argument("report_id", type=int)
@click.option("--status", required=True, type=click.Choice(["accepted", "planned", "rejected", "fixed"]))
@click.option("--planned-for", type=click.DateTime(["%Y-%m-%d"]), help="planned: the date.")
@click.option("--reason", help="rejected: why (shown publicly).")
@click.option("--fixed-in", type=int, help="fixed: the dataset version that fixes it.")
@BY
@click.pass_context
def reports_triage_cmd(ctx, report_id: int, status: str, planned_for, reason, fixed_in, by: str) -> None:
    """Triage REPORT_ID: accepted, planned (with a date), rejected (with a reason), fixed (in version N)."""
    from leaderboard import reports

    with _store(ctx).session() as s:
        r = reports.triage(
            s,
            report_id,
            by,
            status,
            planned_for=planned_for.date() if planned_for else None,
            reason=reason,
            fixed_in_version=fixed_in,
        )
        click.echo(f"report {r.id}: {r.status} / 已处理")
