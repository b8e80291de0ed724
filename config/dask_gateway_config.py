"""dask-gateway as a JupyterHub-managed service: ``python -m dask_gateway_server -f config/dask_gateway_config.py``.

The hub starts it (hub/services.py) when the ``gateway`` setting is on, in demo mode, and hands
it ``CONTESTHUB_GATEWAY`` (JSON made by ``hub.services.gateway_spec``) besides JupyterHub's own
variables (``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_API_URL``, ``JUPYTERHUB_SERVICE_NAME``).

* **Authentication**: ``JupyterHubAuthenticator``. A client sends its JupyterHub token (a
  notebook's ``JUPYTERHUB_API_TOKEN``); the gateway asks the hub who owns it and accepts it only
  with ``access:services!service=dask-gateway`` (``use_service_access_scopes``).
* **Backend**: ``UnsafeLocalBackend`` (with caps, below): each cluster's scheduler and workers are local processes
  of the account that runs the hub, in ``<private root>/hub/dask-gateway/<cluster>/`` (removed
  when the cluster stops). No separation between contestants, like demo mode itself;
  ``LocalBackend`` would run each cluster as its user's Unix account, which this platform's
  secure mode names ``jupyter-<name>``, not ``<name>``.
* **Limits**: per cluster, by team. :func:`cluster_limits` looks at the user's JupyterHub groups
  (which the authenticator gets from the hub) and applies the limits of their team
  (``[gateway_teams.<team>]`` in config/hub.toml) or the default ones: dask-gateway's
  ``cluster_max_cores``, ``cluster_max_memory`` (scheduler included) and
  ``cluster_max_workers``. A request to scale beyond the limit is cut to it and the client
  warns ("Scale request of 3 workers would exceed resource limit of 1 workers. Scaling to 1
  instead.").
* **How many clusters**: ``CappedLocalBackend`` (hub/gateway_backend.py) refuses a new cluster
  beyond ``gateway_max_clusters_per_user`` clusters of one user or
  ``gateway_max_clusters_per_team`` of one team running at once (dask-gateway itself has no
  such option since its 0.9 rewrite), with a zh/en reason the client raises.
* **Idle clusters** stop after the hub's ``idle_timeout`` (0: never); all clusters stop with the
  gateway (its database is in memory).
"""

# ruff: noqa: F821 -- `c` is the config object traitlets defines when it runs this file
import json
import os
import sys
from pathlib import Path

from dask_gateway_server.options import Options

spec = json.loads(os.environ["CONTESTHUB_GATEWAY"])
LIMITS: dict[str, dict] = spec["limits"]  # by JupyterHub group; "" for everyone else
SIZES = {k: spec[k] for k in ("scheduler_cores", "scheduler_memory", "worker_cores", "worker_memory")}


def cluster_limits(options, user) -> dict:
    """The ClusterConfig limits for ``user``: their team's (the first listed team group) or the default.

    The sizes come along: ClusterConfig checks ``cluster_max_workers`` against the cores and
    memory left beside the scheduler as soon as these arguments are set, before it reads the
    sizes configured below, so without them it would count with its defaults (2G each).
    """
    team = next((g for g in sorted(user.groups) if g and g in LIMITS), "")
    return {**SIZES, **LIMITS[team]}


# --- where it listens ----------------------------------------------------------------------

# The proxy: HTTP (the REST API under the hub's /services/dask-gateway/, which it strips before
# passing on) and the schedulers' TLS connections (gateway://) on the same port.
c.Proxy.address = spec["proxy_address"]
c.Proxy.prefix = spec["prefix"]
c.DaskGateway.address = spec["api_address"]  # private API server, reached through the proxy only

# --- who may use it --------------------------------------------------------------------------

c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_token = os.environ["JUPYTERHUB_API_TOKEN"]
c.JupyterHubAuthenticator.jupyterhub_api_url = os.environ["JUPYTERHUB_API_URL"]
c.JupyterHubAuthenticator.jupyterhub_service_name = os.environ.get("JUPYTERHUB_SERVICE_NAME", "dask-gateway")
c.JupyterHubAuthenticator.use_service_access_scopes = True

# --- clusters --------------------------------------------------------------------------------

c.DaskGateway.backend_class = "hub.gateway_backend.CappedLocalBackend"  # UnsafeLocalBackend with cluster caps
c.UnsafeLocalBackend.clusters_directory = spec["clusters_directory"]
c.CappedLocalBackend.max_clusters_per_user = spec["max_clusters_per_user"]
c.CappedLocalBackend.max_clusters_per_team = spec["max_clusters_per_team"]
c.CappedLocalBackend.team_group_prefix = spec["team_group_prefix"]
# The current `distributed` has only the `dask` command (no dask-scheduler / dask-worker).
dask_cmd = str(Path(sys.executable).with_name("dask"))
c.ClusterConfig.scheduler_cmd = [dask_cmd, "scheduler"]
c.ClusterConfig.worker_cmd = [dask_cmd, "worker"]
for key, value in SIZES.items():
    setattr(c.ClusterConfig, key, value)
c.ClusterConfig.idle_timeout = float(spec["idle_timeout"])
c.ClusterConfig.environment = spec["environment"]
# No options for users to choose; the handler sets each new cluster's limits from the user's team.
c.Backend.cluster_options = Options(handler=cluster_limits)
