"""The ``contesthub`` console script: one root, subcommands grouped by room.

Each room contributes its own group (``sandbox.cli.datasets``, ...). A user error anywhere
is a :class:`ContesthubError`; here it becomes one line on stderr and exit code 1, in the
user's language (``--lang``, else ``CONTESTHUB_LANG``, else Chinese when ``LANG`` is zh_*).
"""

from __future__ import annotations

import os

import click

from hub.data_cli import data
from hub.up import up_cmd
from leaderboard.applications_cli import applications_cmd
from leaderboard.cli import (
    audit_cmd,
    backup_cmd,
    contest,
    duplicates_cmd,
    grant_cmd,
    rescore_cmd,
    restore_cmd,
    reveal_cmd,
    rounds_cmd,
    score_cmd,
    submissions_cmd,
    teams_cmd,
    verify_results_cmd,
    verify_run_cmd,
)
from sandbox.cli import datasets, sql_cmd, submit_cmd
from sandbox.errors import ContesthubError
from sandbox.settings import Paths


def default_lang() -> str:
    lang = os.environ.get("CONTESTHUB_LANG") or os.environ.get("LANG", "")
    return "zh" if lang.lower().startswith("zh") else "en"


def lang_first(args: list[str]) -> list[str]:
    """``args`` with every ``--lang X`` / ``--lang=X`` moved to the front, where the root group reads it.

    So ``contesthub datasets show x --lang zh`` works as ``contesthub --lang zh datasets show x``
    does; nothing after ``--`` is touched.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg == "--lang" and i + 1 < len(args):
            front += args[i : i + 2]
            i += 2
            continue
        (front if arg.startswith("--lang=") else rest).append(arg)
        i += 1
    return front + rest


class ContesthubGroup(click.Group):
    """Turns domain errors into one-line CLI errors (no traceback for a user error); takes ``--lang`` anywhere."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, lang_first(args))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ContesthubError as exc:
            lang = (ctx.obj or {}).get("lang", default_lang())
            raise click.ClickException(exc.message(lang)) from None


@click.group(cls=ContesthubGroup)
@click.option("--data-root", type=click.Path(file_okay=False), help="Published open data [CONTESTHUB_DATA_ROOT].")
@click.option(
    "--private-root", type=click.Path(file_okay=False), help="Organizer-only files [CONTESTHUB_PRIVATE_ROOT]."
)
@click.option("--datasets-dir", type=click.Path(file_okay=False), help="Dataset descriptors [CONTESTHUB_DATASETS].")
@click.option("--lang", type=click.Choice(["zh", "en"]), default=default_lang, help="Language of messages.")
@click.version_option(package_name="contesthub")
@click.pass_context
def cli(ctx: click.Context, data_root, private_root, datasets_dir, lang) -> None:
    """contesthub: an open-data innovation contest in one repository (开放数据创新大赛平台)."""
    ctx.obj = {"paths": Paths.from_env(data_root, private_root, datasets_dir), "lang": lang}
    # Flags win over the environment, also for the contestant API that `contesthub sql` uses.
    for flag, var in ((data_root, "CONTESTHUB_DATA_ROOT"), (private_root, "CONTESTHUB_PRIVATE_ROOT")):
        if flag:
            os.environ[var] = str(flag)


cli.add_command(datasets)
cli.add_command(sql_cmd)
cli.add_command(contest)
cli.add_command(score_cmd)
for command in (
    submit_cmd,
    teams_cmd,
    grant_cmd,
    submissions_cmd,
    reveal_cmd,
    rescore_cmd,
    audit_cmd,
    backup_cmd,
    restore_cmd,
    duplicates_cmd,
    verify_results_cmd,
    verify_run_cmd,
    rounds_cmd,
    applications_cmd,
):
    cli.add_command(command)


# `contesthub access`: conditional data (leaderboard/access_cli.py).
cli.add_command(__import__("leaderboard.access_cli", fromlist=["access_cmd"]).access_cmd)
cli.add_command(__import__("leaderboard.access_cli", fromlist=["reports_cmd"]).reports_cmd)
# `contesthub data`: a hub's public data service from a laptop (hub/data_cli.py).
cli.add_command(data)

# `contesthub up`: the open data, JupyterHub, the services (hub/up.py).
cli.add_command(up_cmd)


def main() -> None:
    cli(prog_name="contesthub")


@teams_cmd.command("import")
@click.argument("roster", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--passwords-out",
    type=click.Path(dir_okay=False),
    help="Write the new passwords to this CSV (mode 0600) instead of printing them.",
)
@click.option("--by", default=lambda: __import__("getpass").getuser(), help="Who does this (audit log).")
@click.option("--hub-config", type=click.Path(dir_okay=False), help="Hub settings file (default config/hub.toml).")
@click.pass_context
def teams_import(ctx: click.Context, roster: str, passwords_out: str | None, by: str, hub_config: str | None) -> None:
    """Create approved accounts and teams from ROSTER (CSV: team, member, email) (批量导入队伍名单)."""
    from pathlib import Path

    from hub import roster as roster_mod
    from hub.settings import HubSettings
    from leaderboard import contest as contest_config
    from leaderboard import store

    paths: Paths = ctx.obj["paths"]
    contest = contest_config.load_for(paths, ctx.obj.get("contest_file"))
    entries = roster_mod.read(Path(roster))
    roster_mod.check_sizes(entries, contest, Path(roster).name)
    settings = HubSettings.load({"private_root": str(paths.private_root)})
    outcomes = roster_mod.apply(
        entries, contest, store.connect(paths.ensure()), settings.db_url, by=by, name=Path(roster).name
    )
    new = [o for o in outcomes if o.password]
    if passwords_out:
        roster_mod.write_passwords(outcomes, Path(passwords_out))
        click.echo(
            f"已导入 / {len(outcomes)} members in {len({o.team for o in outcomes})} teams; {len(new)} new accounts; "
            f"passwords written to {passwords_out} (mode 0600)"
        )
    else:
        for o in outcomes:
            click.echo(f"{o.team}\t{o.member}\t{o.email}\t{roster_mod.shown_password(o)}")
        click.echo(f"新账号密码仅显示一次 / {len(new)} new accounts: hand each member their password once", err=True)
    taken = roster_mod.taken_error(outcomes, Path(roster).name)
    if taken:
        raise taken
