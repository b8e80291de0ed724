"""``contesthub up``: the whole platform on this machine, in the foreground.

1. records the demo contest's schedule on the first start (it opens a month before that day),
   or rolls it forward when it is over (leaderboard/schedule.py); a real contest's dates stay;
   then builds and publishes the demo datasets (skipped where up to date; ``--no-build`` skips it);
2. on first start, creates the organizer account with a generated password (shown once,
   stored as a bcrypt hash);
3. starts JupyterHub with config/jupyterhub_config.py, which starts configurable-http-proxy
   and the hub-managed services (submission service, leaderboard, idle culler);
4. prints the URLs, and supervises: Ctrl-C (SIGINT) or SIGTERM stops the hub and every process
   it started; all state (accounts, teams, submissions, scores, secrets) stays in the private
   root for the next start. Should the hub itself be killed, its services end with it
   (hub/die_with_parent.py) and ``contesthub up`` exits: start it again.

Settings: config/hub.toml, then CONTESTHUB_* variables, then these flags (hub/settings.py).
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import click

from hub.settings import MODES, HubSettings
from sandbox import clock
from sandbox.errors import ContesthubError
from sandbox.settings import Paths


class UpError(ContesthubError):
    code = "up"


def _port_in_use(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip or "0.0.0.0", port))
        except OSError:
            return True
    return False


def _check_can_start(settings: HubSettings) -> None:
    for name in ("port", "hub_port", "proxy_api_port", "submit_port", "leaderboard_port", "data_port"):
        port = getattr(settings, name)
        ip = settings.ip if name == "port" else "127.0.0.1"
        if _port_in_use(ip, port):
            flag = "--" + name.replace("_", "-")
            raise UpError(
                f"port {port} ({name}) is already in use (another hub?): choose another with {flag} "
                f"or CONTESTHUB_{name.upper()}",
                f"端口 {port}（{name}）已被占用（另一个 hub？）：请用 {flag} 或 CONTESTHUB_{name.upper()} 换一个",
            )
    if settings.mode == "secure":
        from hub.sandboxes import secure_mode_config
        from hub.settings import SettingsError

        try:  # what the hub's config will do: check every path, find or build the contestants' Python
            secure_mode_config(settings)
        except SettingsError as exc:
            raise UpError(exc.en, exc.zh) from None
    proxy = Path(settings.proxy_command[0])
    if not proxy.is_absolute() or not proxy.exists():
        raise UpError(
            "configurable-http-proxy was not found: `python3 dev.py up` installs it into node_modules/",
            "找不到 configurable-http-proxy：运行 `python3 dev.py up` 会把它安装到 node_modules/",
        )


def _build(ctx: click.Context, settings: HubSettings) -> bool:
    """The open-data layer first: every demo dataset built and published; False if one failed."""
    from sandbox.build import build_all
    from sandbox.catalog import load, summary_rows
    from sandbox.cli import print_listing
    from sandbox.descriptor import load_all
    from sandbox.progress import Reporter

    paths = Paths(
        settings.data_root, settings.private_root, ctx.obj["paths"].datasets_dir, settings.conditional_root
    ).ensure()
    with Reporter() as reporter:
        results = build_all(load_all(paths.datasets_dir), paths, reporter=reporter)
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        click.echo(f"error: {r.dataset}: {r.error.message(ctx.obj['lang'])}", err=True)
    print_listing(ctx, summary_rows(load(paths.data_root)), "open datasets / 开放数据集")
    if not failed:
        from leaderboard import contest, publish

        # What a submission must look like, next to the data, for sandbox.validate.
        publish.write(contest.load_for(paths), paths)
    return not failed


def _demo_schedule(ctx: click.Context, settings: HubSettings) -> None:
    """A demo contest is open whenever it starts: record or roll its schedule (leaderboard/schedule.py)."""
    from leaderboard import contest, schedule

    paths = Paths(
        settings.data_root, settings.private_root, ctx.obj["paths"].datasets_dir, settings.conditional_root
    ).ensure()
    anchor = schedule.start(contest.load_for(paths), paths.private_root)
    if anchor is None:
        return
    c = contest.load_for(paths)  # the build that follows publishes these dates for sandboxes
    if anchor.state == schedule.CLOSED:
        click.echo(
            f"demo contest closed on {c.last_close:%Y-%m-%d %H:%M} (`contesthub contest demo close`): ready to "
            "reveal; `contesthub contest demo open` opens it again / 演示比赛已截止，可公布结果"
        )
    else:
        opens = min(ch.opens for ch in c.challenges)
        click.echo(
            f"demo contest open from {opens:%Y-%m-%d} to {c.last_close:%Y-%m-%d %H:%M} ({c.timezone}) / "
            f"演示比赛开放提交：{opens:%Y-%m-%d} 至 {c.last_close:%Y-%m-%d %H:%M}"
        )


def _banner(settings: HubSettings, services: list[str], password: str | None, log: Path | None) -> str:
    url = settings.public_url
    lines = [
        "",
        f"contesthub is up (mode {settings.mode}) / 平台已启动",
        f"  hub login / 登录:              {url}/hub/login",
        f"  sign-up / 注册:                {url}/hub/signup",
        f"  approve sign-ups / 审核注册:   {url}/hub/accounts   (organizers)",
    ]
    if "leaderboard" in services:
        lines.append(f"  leaderboard / 排行榜:          {url}/services/leaderboard/")
    else:
        lines.append("  leaderboard / 排行榜:          not started (no leaderboard/app.py, or --services)")
    if "submit" in services:
        lines.append(f"  submission API / 提交接口:     {url}/services/submit/")
        lines.append(f"  scorer pool / 评分进程:        {settings.scorer_workers} worker(s), hub/scorer.py")
    else:
        lines.append("  submission API / 提交接口:     not started (no hub/submit_service/, or --services)")
    if "data" in services:
        lines.append(f"  public data / 公共数据服务:    {url}/services/data/api/datasets   (no login)")
    lines += [
        f"  data root (read-only) / 数据:  {settings.data_root}",
        f"  private root / 私有目录:       {settings.private_root}",
    ]
    if log:
        lines.append(f"  hub log / 日志:                {log}")
    if settings.demo_open_login:
        lines.append("  OPEN LOGIN: any name logs in without a password (--demo-open-login). 任何人无需密码即可登录。")
    elif password:
        lines += [
            "",
            "  Organizer account (first start; shown only this once, stored hashed) / 组织者账号（仅显示这一次）:",
            f"    name / 用户名: {settings.organizer}",
            f"    password / 密码: {password}",
        ]
    else:
        lines.append(
            f"  organizer account / 组织者账号: {settings.organizer} (kept; `contesthub up "
            "--reset-organizer-password` sets a new password)"
        )
    lines += ["", "Ctrl-C stops everything; a restart keeps all state. 按 Ctrl-C 停止；重启后数据保留。", ""]
    return "\n".join(lines)


def _demo_warning(settings: HubSettings) -> None:
    if settings.mode == "demo":
        click.secho(
            "WARNING: demo mode. Every contestant's JupyterLab runs as this account: contestants are NOT "
            "isolated from each other or from the private root. Use --mode secure for a real contest.\n"
            "警告：演示模式，参赛者之间没有隔离，正式比赛请使用 --mode secure。",
            fg="yellow",
            bold=True,
            err=True,
        )
    if settings.demo_open_login:
        click.secho(
            "WARNING: --demo-open-login: anyone who reaches this hub logs in with any name and no password.\n"
            "警告：开放登录，任何人无需密码即可登录。",
            fg="red",
            bold=True,
            err=True,
        )


@click.command("up")
@click.option("--mode", type=click.Choice(MODES), help="demo | secure | cluster [CONTESTHUB_MODE].")
@click.option("--ip", help="Address of the public URL [CONTESTHUB_IP].")
@click.option("--port", type=int, help="Public port: the proxy [CONTESTHUB_PORT].")
@click.option("--hub-port", type=int, help="The hub behind the proxy [CONTESTHUB_HUB_PORT].")
@click.option("--proxy-api-port", type=int, help="configurable-http-proxy's API [CONTESTHUB_PROXY_API_PORT].")
@click.option("--submit-port", type=int, help="The submission service [CONTESTHUB_SUBMIT_PORT].")
@click.option("--leaderboard-port", type=int, help="The leaderboard [CONTESTHUB_LEADERBOARD_PORT].")
@click.option("--data-port", type=int, help="The public data service [CONTESTHUB_DATA_PORT].")
@click.option("--home-root", type=click.Path(file_okay=False), help="Contestants' homes [CONTESTHUB_HOME_ROOT].")
@click.option("--cpu-limit", type=float, help="CPUs per contestant [CONTESTHUB_CPU_LIMIT].")
@click.option("--mem-limit", help="Memory per contestant, e.g. 4G [CONTESTHUB_MEM_LIMIT].")
@click.option("--services", help="auto | none | e.g. submit,leaderboard [CONTESTHUB_SERVICES].")
@click.option(
    "--idle-timeout", type=int, help="Seconds before an idle server stops; 0 never [CONTESTHUB_IDLE_TIMEOUT]."
)
@click.option(
    "--hub-config",
    type=click.Path(dir_okay=False),
    help="Settings file instead of config/hub.toml [CONTESTHUB_HUB_CONFIG].",
)
@click.option(
    "--demo-open-login",
    is_flag=True,
    default=None,
    help="No passwords at all (DummyAuthenticator): a throwaway demo only; warns loudly.",
)
@click.option("--reset-organizer-password", is_flag=True, help="Give the organizer account a new password.")
@click.option("--build/--no-build", default=True, show_default=True, help="Build the demo datasets first.")
@click.option("--hub-log", type=click.Choice(["file", "terminal"]), default="file", show_default=True)
@click.pass_context
def up_cmd(ctx: click.Context, hub_config, reset_organizer_password, build, hub_log, **flags) -> None:
    """Bring the platform up on this machine: open data, JupyterHub, submission service, leaderboard.

    Ctrl-C stops every process it started; a restart keeps accounts, teams, submissions and
    scores. Settings come from config/hub.toml, CONTESTHUB_* variables and these flags.
    """
    from hub.accounts import prepare_organizer
    from hub.launcher import HubError, HubProcess
    from hub.runtime import ensure_dir
    from hub.services import hub_services

    settings = HubSettings.load(flags, config_file=hub_config)
    _demo_schedule(ctx, settings)
    if build and not _build(ctx, settings):
        ctx.exit(1)
    _check_can_start(settings)
    _demo_warning(settings)
    runtime = ensure_dir(settings.runtime_dir)
    password = None
    if not settings.demo_open_login and settings.auth == "local":  # with OAuth the provider names organizers
        password = prepare_organizer(settings.db_url, settings.organizer, reset=reset_organizer_password)
    services = [s["name"] for s in hub_services(settings)[0]]
    log = runtime / "jupyterhub.log" if hub_log == "file" else None
    hub = HubProcess(
        settings, log=log, extra_env={"CONTESTHUB_HUB_CONFIG": str(Path(hub_config).resolve())} if hub_config else None
    )

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, _frame):
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        click.echo(f"starting JupyterHub on {settings.public_url} ...")
        hub.start()
        try:
            hub.wait_ready(timeout=180, cancel=stop)
        except HubError as exc:
            if password:  # the account exists now: do not lose its password
                click.echo(f"organizer account {settings.organizer}, password {password} (shown once)")
            raise UpError(f"JupyterHub did not start: {exc}", f"JupyterHub 未能启动：{exc}") from None
        if not stop.is_set():
            click.echo(_banner(settings, services, password, log))
        while not stop.is_set():
            if hub.poll() is not None:
                raise UpError(
                    f"JupyterHub exited unexpectedly (code {hub.poll()}); see {log or 'the output above'}",
                    f"JupyterHub 意外退出（代码 {hub.poll()}）；请查看 {log or '上面的输出'}",
                )
            hub.refresh()
            clock.wait(stop, 1.0)
        click.echo(f"stopping ({signal.Signals(received[0]).name}) ... / 正在停止 ...")
    finally:
        t0 = time.monotonic()
        hub.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if hub.proc is not None:
            click.echo(f"stopped in {time.monotonic() - t0:.1f} s; state kept in {settings.private_root}")
