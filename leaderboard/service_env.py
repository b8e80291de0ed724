"""What a contest service reads from its environment: the one contract.

The hub starts the submission service, the scorer pool and the leaderboard as managed
services (hub/services.py writes these variables); in cluster mode the Deployments of
config/kubernetes/contest-services.yaml set the same ones. Each service reads them here, when
it starts (:meth:`ServiceEnv.from_environ`), never at import time.

==================================  =================================================  ==========================
variable                            meaning                                            set by
==================================  =================================================  ==========================
``CONTESTHUB_DATA_ROOT``            published open data (read-only)                    hub/services.py
``CONTESTHUB_PRIVATE_ROOT``         organizer-only files: solutions, the store         hub/services.py
``CONTESTHUB_CONDITIONAL_ROOT``     conditional data, one root per dataset             hub/services.py
``CONTESTHUB_MODE``                 demo | secure | cluster (hub/conditional_acl.py)   hub/services.py
``CONTESTHUB_SYSTEM_USER_PREFIX``   Unix account prefix of contestants (secure mode)   hub/services.py
``CONTESTHUB_DATA_CACHE``           the data service's export and page cache           hub/services.py (data)
``CONTESTHUB_TRUSTED_PROXIES``      proxies whose X-Forwarded-For names the client     hub/services.py (data)
``CONTESTHUB_HOME``                 base of both roots when they are not given         passed on when set
``CONTESTHUB_DATASETS``             folder of dataset descriptors                      passed on when set
``CONTESTHUB_DB_URL``               the contest store (else SQLite, private root)      passed on when set
``CONTESTHUB_CONTEST``              the contest file (else config/contest.toml)        passed on when set
``CONTESTHUB_LANG``                 the leaderboard's first language (zh or en)        passed on when set
``CONTESTHUB_PUBLIC_URL``           where people reach the platform                    hub/services.py
``CONTESTHUB_PORT``                 the port this service listens on                   hub/services.py
``CONTESTHUB_TEAMS_FROM_GROUPS``    1: an identity provider owns the team groups       hub/services.py
``CONTESTHUB_TEAM_GROUP_PREFIX``    prefix of the hub groups that are teams (team-)    passed on when set
``CONTESTHUB_ORGANIZER_GROUP``      the organizers' hub group (organizers)             hub/services.py
``CONTESTHUB_SCORERS``              scorer worker processes (0: one per core)          the operator (cluster)
``CONTESTHUB_SCORER_MEMORY``        address space of one scoring                       hub/services.py (scorer)
``CONTESTHUB_SCORER_SECONDS``       wall-clock limit of one scoring                    hub/services.py (scorer)
``JUPYTERHUB_API_URL``              the hub's REST API                                 JupyterHub
``JUPYTERHUB_API_TOKEN``            this service's own token                           JupyterHub
``JUPYTERHUB_SERVICE_NAME``         this service's name                                JupyterHub
``JUPYTERHUB_SERVICE_URL``          where to listen (``http://127.0.0.1:<port>``)      JupyterHub
``JUPYTERHUB_SERVICE_PREFIX``       the path prefix of every request (/services/x/)    JupyterHub
==================================  =================================================  ==========================

``CONTESTHUB_PORT`` here is the service's own port; ``contesthub up`` reads a variable of the
same name for the platform's public port (hub/settings.py), in the hub's environment only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from leaderboard import roles
from sandbox.settings import Paths

DATA_ROOT, PRIVATE_ROOT = "CONTESTHUB_DATA_ROOT", "CONTESTHUB_PRIVATE_ROOT"
PUBLIC_URL, PORT = "CONTESTHUB_PUBLIC_URL", "CONTESTHUB_PORT"
TEAMS_FROM_GROUPS = "CONTESTHUB_TEAMS_FROM_GROUPS"
CONDITIONAL_ROOT, MODE = "CONTESTHUB_CONDITIONAL_ROOT", "CONTESTHUB_MODE"
SYSTEM_USER_PREFIX = "CONTESTHUB_SYSTEM_USER_PREFIX"
# Passed on from the hub's environment to the services when set there.
PASSED_ON = (
    "CONTESTHUB_DB_URL",
    "CONTESTHUB_CONTEST",
    "CONTESTHUB_HOME",
    "CONTESTHUB_LANG",
    roles.TEAM_PREFIX_ENV,
)


@dataclass(frozen=True)
class ServiceEnv:
    """The contract above, read once."""

    paths: Paths
    teams_from_groups: bool
    team_group_prefix: str
    organizer_group: str
    listen_host: str
    listen_port: int
    prefix: str
    service_name: str
    api_url: str | None
    api_token: str | None

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, *, name: str = "submit", default_port: int = 10101
    ) -> ServiceEnv:
        env = os.environ if environ is None else environ
        url = urlparse(env.get("JUPYTERHUB_SERVICE_URL") or f"http://127.0.0.1:{default_port}")
        return cls(
            paths=Paths.from_env(env.get(DATA_ROOT), env.get(PRIVATE_ROOT)),
            teams_from_groups=env.get(TEAMS_FROM_GROUPS) == "1",
            team_group_prefix=roles.team_group_prefix(env),
            organizer_group=roles.organizer_group(env),
            listen_host=url.hostname or "127.0.0.1",
            listen_port=int(env.get(PORT) or url.port or default_port),
            prefix=env.get("JUPYTERHUB_SERVICE_PREFIX") or f"/services/{name}/",
            service_name=env.get("JUPYTERHUB_SERVICE_NAME") or name,
            api_url=env.get("JUPYTERHUB_API_URL") or None,
            api_token=env.get("JUPYTERHUB_API_TOKEN") or None,
        )

    @property
    def under_hub(self) -> bool:
        """Started by a hub (tests and a developer's terminal start services without one)."""
        return bool(self.api_url)
