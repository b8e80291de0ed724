"""The service's application and process: the routes of every handler module, and ``main``
(``python -m hub.submit_service``), which the hub starts as a managed service."""

from __future__ import annotations

import logging
import os
import sys

from jupyterhub.services.auth import HubAuth
from tornado import httpserver, ioloop, web

from hub.die_with_parent import die_with_parent
from hub.submit_service import access, base, contestants, organizers, upload
from hub.submit_service.base import NotFoundHandler
from hub.submit_service.context import WATCH_EVERY, Context
from leaderboard import contest as contest_config
from leaderboard import results
from leaderboard import store as store_mod
from leaderboard.service_env import ServiceEnv
from sandbox import clock
from sandbox.errors import ContesthubError

log = logging.getLogger("contesthub.submit")
HANDLER_MODULES = (base, contestants, upload, organizers, access)


def make_app(ctx: Context, prefix: str) -> web.Application:
    """The service's tornado application: every module's ``default_handlers`` under ``<prefix>api``."""
    p = prefix.rstrip("/") + "/api"
    routes = [(p + path, handler) for module in HANDLER_MODULES for path, handler in module.default_handlers]
    return web.Application(
        [(r, h, {"ctx": ctx}) for r, h in routes],
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx},
    )


def commit_results(ctx: Context) -> None:
    """(the jobs thread) Before any challenge opens: the commitments to its solution and scoring code."""
    try:
        with ctx.store.session() as s:
            made = results.commit(s, ctx.contest, ctx.paths, by="submit-service")
        log.info("commitments published: %d new", len(made))
    except (ContesthubError, OSError) as exc:
        log.warning("commitments not published: %s", exc)


def die_with_the_hub() -> None:
    """End this process when the hub that started it dies (Linux).

    The hub starts its managed services in sessions of their own, so nothing ends them when
    the hub is killed (SIGKILL, the OOM killer); a hub started again then starts another
    service that cannot bind the port, and restarts it every 30 s for ever, while the orphan
    answers unsupervised. Uploads cut short this way are swept by the next service's start;
    submissions accepted wait in the store for the scorers.
    """
    if not os.environ.get("JUPYTERHUB_API_URL"):
        return  # not started by a hub (tests, a developer's terminal)
    try:
        alive = die_with_parent()
    except OSError as exc:
        log.warning("cannot ask to be ended with the hub (%s)", exc)
        return
    if not alive:  # the hub died before we asked
        sys.exit("the hub that started this service is gone")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s submit] %(message)s")
    die_with_the_hub()
    env = ServiceEnv.from_environ(name="submit")  # what the hub (or a Deployment) set: one contract
    paths = env.paths
    contest = contest_config.Watched(paths)
    started = clock.now()
    store = store_mod.connect(paths)
    # Uploads a killed service left half-written were never accepted: nothing names them.
    store.files.sweep_incoming(before=started.timestamp())
    hub_auth = HubAuth(allow_token_in_url=False, cache_max_age=60)
    ctx = Context(paths, contest, store, hub_auth, teams_from_groups=env.teams_from_groups)
    port, prefix = env.listen_port, env.prefix
    app = make_app(ctx, prefix)
    server = httpserver.HTTPServer(app, max_body_size=ctx.contest.upload_limit + 1, max_buffer_size=1 << 20)
    server.listen(port, env.listen_host)
    ioloop.PeriodicCallback(ctx.refresh_pending, WATCH_EVERY * 1000).start()
    ioloop.PeriodicCallback(ctx.sync_groups_later, 60_000).start()
    ctx.sync_groups_later()
    log.info("submission service listening on %s:%s%s", env.listen_host, port, prefix)
    ctx.jobs.submit(commit_results, ctx)  # hashing the solutions takes a while: not before listening
    try:
        ioloop.IOLoop.current().start()
    except KeyboardInterrupt:  # the hub stopping its services (Ctrl-C on `contesthub up`): not an error
        log.info("submission service stopped")
