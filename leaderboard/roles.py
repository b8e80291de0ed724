"""Who is who, as the hub's groups say it: teams and organizers, one rule each.

The hub, its authenticators and every service (the submission service, the leaderboard, the
dask-gateway backend, the group mirror) read these names and this rule from here:

* a team ``<name>`` is the JupyterHub group ``<prefix><name>``; the prefix is ``team-`` unless
  ``CONTESTHUB_TEAM_GROUP_PREFIX`` says otherwise (hub/services.py passes it on to services);
* the organizers are the group ``organizers`` (``CONTESTHUB_ORGANIZER_GROUP`` in a service's
  environment), which the hub's config also gives the admin role;
* an organizer is a JupyterHub admin **or** a member of that group: a role does not set the user
  model's ``admin`` flag (a member of the group holding the admin role shows ``admin: false``),
  and an admin made by ``admin_users`` or an identity provider's ``admin_groups`` need not be in
  the group. Before this module the submission service asked for the group alone and the
  leaderboard for either, so an admin outside the group could see the organizer page and was
  refused by the service.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

TEAM_GROUP_PREFIX = "team-"
ORGANIZER_GROUP = "organizers"
TEAM_PREFIX_ENV = "CONTESTHUB_TEAM_GROUP_PREFIX"
ORGANIZER_GROUP_ENV = "CONTESTHUB_ORGANIZER_GROUP"


def team_group_prefix(environ: Mapping[str, str] | None = None) -> str:
    """The prefix of the hub groups that are teams (``team-`` unless the environment says otherwise)."""
    env = os.environ if environ is None else environ
    return env.get(TEAM_PREFIX_ENV) or TEAM_GROUP_PREFIX


def organizer_group(environ: Mapping[str, str] | None = None) -> str:
    """The hub group of the organizers."""
    env = os.environ if environ is None else environ
    return env.get(ORGANIZER_GROUP_ENV) or ORGANIZER_GROUP


def team_group(team: str, prefix: str | None = None) -> str:
    """The hub group of a team (``team-<name>``)."""
    return f"{team_group_prefix() if prefix is None else prefix}{team}"


def teams_of_groups(groups: Iterable[str], prefix: str | None = None) -> list[str]:
    """The teams a user's hub groups name, sorted (``team-alpha`` -> ``alpha``)."""
    prefix = team_group_prefix() if prefix is None else prefix
    return sorted(g.removeprefix(prefix) for g in groups if g.startswith(prefix) and len(g) > len(prefix))


def is_organizer(user: Mapping | None, environ: Mapping[str, str] | None = None) -> bool:
    """True for a JupyterHub admin or a member of the organizers' group (a hub user model)."""
    if not user:
        return False
    return bool(user.get("admin")) or organizer_group(environ) in (user.get("groups") or [])
