"""The services the hub starts and supervises, and the roles that give each its scopes.

=================  ======================================  =================================
service            what                                    public URL
=================  ======================================  =================================
``submit``         the submission service,                 ``/services/submit/``
                   ``python -m hub.submit_service``
``leaderboard``    the public Streamlit leaderboard,       ``/services/leaderboard/``
                   ``streamlit run leaderboard/app.py``
``idle-culler``    jupyterhub-idle-culler                  (none)
=================  ======================================  =================================

``submit`` and ``leaderboard`` are included only when their code exists (``hub/submit_service.py``,
``leaderboard/app.py``), so the hub starts while they are being written.

What a managed service receives (JupyterHub sets the JUPYTERHUB_* variables): ``JUPYTERHUB_API_TOKEN``
(its own token, persisted under the runtime dir), ``JUPYTERHUB_API_URL``, ``JUPYTERHUB_BASE_URL``,
``JUPYTERHUB_SERVICE_NAME``, ``JUPYTERHUB_SERVICE_URL`` (``http://127.0.0.1:<port>``: where to
listen), ``JUPYTERHUB_SERVICE_PREFIX`` (``/services/<name>/``: the path prefix of every request
the proxy forwards), ``JUPYTERHUB_CLIENT_ID`` and ``JUPYTERHUB_OAUTH_CALLBACK_URL``; from us
``CONTESTHUB_DATA_ROOT``, ``CONTESTHUB_PRIVATE_ROOT``, ``CONTESTHUB_PORT`` (the port to listen on),
``CONTESTHUB_PUBLIC_URL`` and, when set in the hub's environment, ``CONTESTHUB_DB_URL``,
``CONTESTHUB_CONTEST``, ``CONTESTHUB_HOME`` and ``CONTESTHUB_LANG``. Their working folder is the
checkout.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from hub.runtime import service_token
from hub.settings import HubSettings
from sandbox.settings import PROJECT_ROOT

LEADERBOARD_APP = PROJECT_ROOT / "leaderboard" / "app.py"

# What the submission service may do with its own token: teams live in the contest store and
# are mirrored as JupyterHub groups ``team-<name>`` (hub/groups.py lists users and groups,
# creates groups and sets their members). It identifies a caller from the caller's own token,
# which needs no scope of its own. Note: the ``groups`` scope cannot be limited to a name
# prefix, so this service could also change the ``organizers`` group: it is trusted code.
SUBMIT_SCOPES = [
    "list:users",
    "read:users:name",
    "read:users:groups",
    "list:groups",
    "read:groups",
    "admin:groups",
    "groups",
]
# What jupyterhub-idle-culler needs to find idle servers and stop them (its documented role).
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
# Organizers: the members of this group hold JupyterHub's admin role (the submission service
# recognises organizers by it too).
ORGANIZER_GROUP = "organizers"
# Passed on from the hub's environment to the services when set.
PASSED_ON = (
    "CONTESTHUB_DB_URL",
    "CONTESTHUB_CONTEST",
    "CONTESTHUB_HOME",
    "CONTESTHUB_LANG",
    "CONTESTHUB_TEAM_GROUP_PREFIX",
    "CONTESTHUB_SCORERS",
)


def submit_service_available() -> bool:
    return importlib.util.find_spec("hub.submit_service") is not None


def leaderboard_available(app: Path = LEADERBOARD_APP) -> bool:
    return app.exists()


def _environment(settings: HubSettings, port: int | None) -> dict[str, str]:
    env = {
        "CONTESTHUB_DATA_ROOT": str(settings.data_root),
        "CONTESTHUB_PRIVATE_ROOT": str(settings.private_root),
        "CONTESTHUB_PUBLIC_URL": settings.public_url,
        "CONTESTHUB_ORGANIZER_GROUP": ORGANIZER_GROUP,
    }
    if port is not None:
        env["CONTESTHUB_PORT"] = str(port)
    env.update({k: os.environ[k] for k in PASSED_ON if os.environ.get(k)})
    return env


def hub_services(
    settings: HubSettings, *, include_submit: bool | None = None, include_leaderboard: bool | None = None
) -> tuple[list[dict], list[dict]]:
    """``(c.JupyterHub.services, c.JupyterHub.load_roles)`` for the hub-managed services.

    ``include_*`` default to the ``services`` setting: with "auto", whether the service's code exists.
    """
    runtime = settings.runtime_dir
    wanted = settings.service_names
    if include_submit is None:
        include_submit = submit_service_available() if wanted is None else "submit" in wanted
    if include_leaderboard is None:
        include_leaderboard = leaderboard_available() if wanted is None else "leaderboard" in wanted
    services: list[dict] = []
    roles: list[dict] = []
    if include_submit:
        services.append(
            {
                "name": "submit",
                "url": f"http://127.0.0.1:{settings.submit_port}",
                "command": [sys.executable, "-m", "hub.submit_service"],
                "api_token": service_token(runtime, "submit"),
                "environment": _environment(settings, settings.submit_port),
                "cwd": str(PROJECT_ROOT),
                "oauth_no_confirm": True,
                "display": False,
            }
        )
        roles.append(
            {
                "name": "contesthub-submit",
                "description": "The submission service: read users' teams (JupyterHub groups)",
                "scopes": SUBMIT_SCOPES,
                "services": ["submit"],
            }
        )
    if include_leaderboard:
        port = settings.leaderboard_port
        services.append(
            {
                "name": "leaderboard",
                "url": f"http://127.0.0.1:{port}",
                "command": [
                    sys.executable,
                    "-m",
                    "streamlit",
                    "run",
                    str(LEADERBOARD_APP),
                    "--server.port",
                    str(port),
                    "--server.address",
                    "127.0.0.1",
                    "--server.baseUrlPath",
                    "/services/leaderboard/",
                    "--server.headless",
                    "true",
                    "--browser.gatherUsageStats",
                    "false",
                    "--client.toolbarMode",
                    "viewer",
                ],
                # Public: the proxy forwards anyone; the app reads the contest store read-only.
                "api_token": service_token(runtime, "leaderboard"),
                "environment": _environment(settings, port),
                "cwd": str(PROJECT_ROOT),
            }
        )
    if settings.idle_timeout > 0:
        services.append(
            {
                "name": "idle-culler",
                "command": [
                    sys.executable,
                    "-m",
                    "jupyterhub_idle_culler",
                    f"--timeout={settings.idle_timeout}",
                    f"--cull-every={max(60, min(600, settings.idle_timeout // 6))}",
                ],
                "api_token": service_token(runtime, "idle-culler"),
                "display": False,
            }
        )
        roles.append(
            {
                "name": "contesthub-idle-culler",
                "description": "Stop servers idle for longer than the idle timeout",
                "scopes": CULLER_SCOPES,
                "services": ["idle-culler"],
            }
        )
    return services, roles
