"""The services the hub starts and supervises, and the roles that give each its scopes.

=================  ======================================  =================================
service            what                                    public URL
=================  ======================================  =================================
``submit``         the submission service,                 ``/services/submit/``
                   ``python -m hub.submit_service``
``scorer``         the scorer pool, ``python -m            (none)
                   hub.scorer --workers N`` (runs with
                   ``submit``: it scores what that accepts)
``leaderboard``    the public Streamlit leaderboard,       ``/services/leaderboard/``
                   ``streamlit run leaderboard/app.py``
``data``           the public data service (open data for  ``/services/data/``
                   anyone, no login), ``python -m
                   hub.data_service`` (hub/data_service.py)
``dask-gateway``   dask-gateway-server with                ``/services/dask-gateway/``
                   config/dask_gateway_config.py
``idle-culler``    jupyterhub-idle-culler                  (none)
=================  ======================================  =================================

Every managed service ends when the hub dies, however it dies (a clean stop ends them anyway):
JupyterHub starts them in sessions of their own, so a killed hub (SIGKILL, the OOM killer)
would leave them running, holding their ports, and the next hub could not start its own. The
submission service asks the kernel for SIGTERM on the hub's death itself
(``die_with_the_hub`` in hub/submit_service/); the others are started through
``python -m hub.die_with_parent --parent <hub pid> -- <command>``, which makes the same request
and then execs the command (same pid, environment and output; see hub/die_with_parent.py).
Contestants' servers are not services: they survive a killed hub, and the next hub finds them.

``submit`` and ``leaderboard`` are included only when their code exists (``hub/submit_service/``,
``leaderboard/app.py``), so the hub starts while they are being written.

``dask-gateway`` runs when the ``gateway`` setting is on, the mode is demo and
``dask_gateway_server`` imports (:func:`gateway_left_out` says why not otherwise). Its proxy
listens on ``gateway_port``: the hub's proxy forwards ``/services/dask-gateway/`` there (the
REST API), and Dask clients reach their schedulers there directly as
``gateway://127.0.0.1:<gateway_port>``. It authenticates every caller with the caller's own
JupyterHub token (``GET /hub/api/user``, which always shows a token its owner's name and
groups) and accepts only tokens with ``access:services!service=dask-gateway``; its own token
needs no scope, so it gets no role. The notebook side (:func:`gateway_client_environment`,
:data:`GATEWAY_SCOPE`) is set in config/jupyterhub_config.py. Besides the JUPYTERHUB_*
variables, it receives only ``CONTESTHUB_GATEWAY`` (JSON: addresses, the clusters' folder,
worker and scheduler sizes, per-cluster limits by team, the caps on clusters per user and per team;
read by config/dask_gateway_config.py).

What a managed service receives (JupyterHub sets the JUPYTERHUB_* variables, :func:`_environment`
the CONTESTHUB_* ones) is the one contract of leaderboard/service_env.py, which the services
read it with. Their working folder is the checkout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from hub.runtime import service_token
from hub.settings import HubSettings
from leaderboard import service_env
from leaderboard.roles import ORGANIZER_GROUP, ORGANIZER_GROUP_ENV, team_group_prefix
from sandbox.settings import PROJECT_ROOT

LEADERBOARD_APP = PROJECT_ROOT / "leaderboard" / "app.py"
GATEWAY_CONFIG = PROJECT_ROOT / "config" / "dask_gateway_config.py"
GATEWAY_SERVICE = "dask-gateway"
# What a notebook's token needs to use the gateway (server_token_scopes and extra_user_scopes).
GATEWAY_SCOPE = f"access:services!service={GATEWAY_SERVICE}"

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
# A hub whose clock was moved with libfaketime (the suite's date-bomb guard: `faketime DATE
# contesthub up`) moves its services' and sandboxes' clocks with it, so that every process of
# the platform agrees on "now". Unset in production, where they pass nothing.
CLOCK_VARIABLES = ("LD_PRELOAD", "FAKETIME", "FAKETIME_SHARED", "DONT_FAKE_MONOTONIC")
# Passed on from the hub's environment to the services when set (leaderboard/service_env.py).
PASSED_ON = (*service_env.PASSED_ON, *CLOCK_VARIABLES)


def submit_service_available() -> bool:
    return importlib.util.find_spec("hub.submit_service") is not None


def leaderboard_available(app: Path = LEADERBOARD_APP) -> bool:
    return app.exists()


def data_service_available() -> bool:
    return importlib.util.find_spec("hub.data_service") is not None


def data_service(settings: HubSettings) -> dict:
    from hub.data_usage import data_cache_dir

    """The public data service: anyone through the proxy, reading the data root only.

    It is not given the private root (nor the store): nothing it could be tricked into
    reading there. Its exports are cached under the runtime folder.
    """
    env = {k: v for k, v in _environment(settings, settings.data_port).items() if k != "CONTESTHUB_PRIVATE_ROOT"}
    env["CONTESTHUB_DATA_CACHE"] = str(data_cache_dir(settings.private_root))
    env["CONTESTHUB_TRUSTED_PROXIES"] = settings.trusted_proxies
    return {
        "name": "data",
        "url": f"http://127.0.0.1:{settings.data_port}",
        "command": _dies_with_the_hub([sys.executable, "-m", "hub.data_service"]),
        "api_token": service_token(settings.runtime_dir, "data"),
        "environment": env,
        "cwd": str(PROJECT_ROOT),
    }


def gateway_available() -> bool:
    return importlib.util.find_spec("dask_gateway_server") is not None


def gateway_left_out(settings: HubSettings) -> str | None:
    """Why the dask-gateway service does not run although ``gateway`` is on; None when it runs (or is off)."""
    if not settings.gateway:
        return None
    if settings.mode != "demo":
        return (
            f"gateway = true is ignored in mode {settings.mode}: the local dask-gateway runs every cluster as "
            "the hub's own account (demo only); in cluster mode use the dask-gateway Helm chart"
        )
    if not gateway_available():
        return "gateway = true, but dask_gateway_server is not installed: the dask-gateway service is left out"
    return None


def gateway_client_environment(settings: HubSettings) -> dict[str, str]:
    """What a notebook's dask-gateway client reads (dask config ``gateway.*``), for c.Spawner.environment."""
    address = f"{settings.public_url}/services/{GATEWAY_SERVICE}"
    return {
        "DASK_GATEWAY__ADDRESS": address,  # the REST API, through the hub's proxy
        "DASK_GATEWAY__PUBLIC_ADDRESS": address,  # dashboard links
        "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://127.0.0.1:{settings.gateway_port}",  # the schedulers
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",  # sends the notebook's JUPYTERHUB_API_TOKEN
    }


def gateway_spec(settings: HubSettings) -> dict:
    """What config/dask_gateway_config.py reads from ``CONTESTHUB_GATEWAY``."""
    from hub.settings import GATEWAY_SCHEDULER_CORES, GATEWAY_SCHEDULER_MEMORY

    prefix = team_group_prefix()
    limits = settings.gateway_limits
    return {
        "proxy_address": f"127.0.0.1:{settings.gateway_port}",
        "api_address": f"127.0.0.1:{settings.gateway_api_port}",
        "prefix": f"/services/{GATEWAY_SERVICE}",
        "clusters_directory": str(settings.runtime_dir / "dask-gateway"),
        "worker_cores": settings.gateway_worker_cores,
        "worker_memory": settings.gateway_worker_memory_bytes,
        "scheduler_cores": GATEWAY_SCHEDULER_CORES,
        "scheduler_memory": GATEWAY_SCHEDULER_MEMORY,
        "idle_timeout": settings.idle_timeout,
        # Workers read the open data (paths resolved in the notebook); nothing else of ours.
        "environment": {"CONTESTHUB_DATA_ROOT": str(settings.data_root)},
        # By JupyterHub group (team-<name>); "" for users in no listed team.
        "limits": {(f"{prefix}{team}" if team else ""): value for team, value in limits.items()},
        # How many clusters at once (hub/gateway_backend.py); teams are the groups <prefix><team>.
        "max_clusters_per_user": settings.gateway_max_clusters_per_user,
        "max_clusters_per_team": settings.gateway_max_clusters_per_team,
        "team_group_prefix": prefix,
    }


def _dies_with_the_hub(command: list[str]) -> list[str]:
    """``command`` started so that it ends when the hub dies (hub/die_with_parent.py).

    The hub's pid is this process's: config/jupyterhub_config.py runs inside the hub.
    """
    return [sys.executable, "-m", "hub.die_with_parent", "--parent", str(os.getpid()), "--", *command]


def _environment(settings: HubSettings, port: int | None) -> dict[str, str]:
    """What a service reads (the contract of leaderboard/service_env.py)."""
    env = {
        service_env.DATA_ROOT: str(settings.data_root),
        service_env.PRIVATE_ROOT: str(settings.private_root),
        service_env.CONDITIONAL_ROOT: str(settings.conditional_root),
        # Secure mode: the service opens conditional roots to approved teams' groups (hub/conditional_acl.py).
        service_env.MODE: settings.mode,
        service_env.SYSTEM_USER_PREFIX: settings.system_user_prefix,
        service_env.PUBLIC_URL: settings.public_url,
        # Organizers: the members of this group hold the hub's admin role (leaderboard/roles.py).
        ORGANIZER_GROUP_ENV: ORGANIZER_GROUP,
        # Whether an identity provider owns the team-* groups (hub/groups.py, hub/submit_service/).
        service_env.TEAMS_FROM_GROUPS: "1" if settings.auth != "local" else "0",
    }
    if port is not None:
        env[service_env.PORT] = str(port)
    env.update({k: os.environ[k] for k in PASSED_ON if os.environ.get(k)})
    return env


def hub_services(
    settings: HubSettings,
    *,
    include_submit: bool | None = None,
    include_leaderboard: bool | None = None,
    include_gateway: bool | None = None,
    include_data: bool | None = None,
) -> tuple[list[dict], list[dict]]:
    """``(c.JupyterHub.services, c.JupyterHub.load_roles)`` for the hub-managed services.

    ``include_*`` default to the ``services`` setting: with "auto", whether the service's code exists;
    ``include_gateway`` to the ``gateway`` setting (demo mode, dask_gateway_server installed).
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
        # What the submission service accepts, the scorer pool scores: it needs no URL (it talks
        # to the store only) and no scope; the hub starts it again should it die.
        services.append(
            {
                "name": "scorer",
                "command": _dies_with_the_hub(
                    [sys.executable, "-m", "hub.scorer", "--workers", str(settings.scorer_workers)]
                ),
                "api_token": service_token(runtime, "scorer"),
                "environment": {
                    **_environment(settings, None),
                    "CONTESTHUB_SCORER_MEMORY": settings.scorer_memory,
                    "CONTESTHUB_SCORER_SECONDS": f"{settings.scorer_seconds:g}",
                },
                "cwd": str(PROJECT_ROOT),
                "display": False,
            }
        )
    if include_leaderboard:
        port = settings.leaderboard_port
        services.append(
            {
                "name": "leaderboard",
                "url": f"http://127.0.0.1:{port}",
                "command": _dies_with_the_hub(
                    [
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
                    ]
                ),
                # Public: the proxy forwards anyone; the app reads the contest store read-only.
                "api_token": service_token(runtime, "leaderboard"),
                "environment": _environment(settings, port),
                "cwd": str(PROJECT_ROOT),
            }
        )
    if include_data is None:
        include_data = data_service_available() if wanted is None else "data" in wanted
    if include_data:
        services.append(data_service(settings))
    if include_gateway is None:
        include_gateway = settings.gateway and gateway_left_out(settings) is None
    if include_gateway:
        services.append(
            {
                "name": GATEWAY_SERVICE,
                "url": f"http://127.0.0.1:{settings.gateway_port}",
                "command": _dies_with_the_hub([sys.executable, "-m", "dask_gateway_server", "-f", str(GATEWAY_CONFIG)]),
                "api_token": service_token(runtime, GATEWAY_SERVICE),
                "environment": {"CONTESTHUB_GATEWAY": json.dumps(gateway_spec(settings), ensure_ascii=False)},
                "cwd": str(PROJECT_ROOT),
                "display": False,
            }
        )
    if settings.idle_timeout > 0:
        services.append(
            {
                "name": "idle-culler",
                "command": _dies_with_the_hub(
                    [
                        sys.executable,
                        "-m",
                        "jupyterhub_idle_culler",
                        f"--timeout={settings.idle_timeout}",
                        f"--cull-every={max(60, min(600, settings.idle_timeout // 6))}",
                    ]
                ),
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
