"""Teams in the contest store, mirrored as JupyterHub groups named ``team-<name>``.

The store is where team rules are enforced (size, freeze, merge, audit), so team changes go
through the contest engine first; this module then makes the hub's groups agree, so an
organizer sees teams on the hub's admin page and group-based permissions work. It runs in
the submission service after each organizer change and every minute (changes made with the
CLI appear within a minute).

Who owns the ``team-*`` groups decides what reconciling removes:

* **local accounts** (the default): the store alone. A member the store no longer lists
  (``contesthub teams remove``, a merge, a hand-made group on the admin page) is taken out
  of the group, so a removal sticks and nothing brings the user back but an organizer.
* **an identity provider** (``provider_owns_groups``, OAuth mode): it sets the user's groups
  at every login and the store follows it (a user joins their group's team on first contact,
  see ``hub.submit_service``). Only members the store puts in *another* team are taken out;
  group members who have not used the service yet are left alone.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import requests
from sqlalchemy import select

from leaderboard.models import Member, Team
from leaderboard.roles import TEAM_GROUP_PREFIX
from leaderboard.store import Store

log = logging.getLogger("contesthub.groups")


def group_name(team: str, prefix: str) -> str:
    return f"{prefix}{team}"


def wanted(store: Store, prefix: str) -> dict[str, set[str]]:
    with store.read_session() as s:
        rows = s.execute(
            select(Team.name, Member.user)
            .outerjoin(Member, Member.team_id == Team.id)
            .where(Team.merged_into_id.is_(None))
        ).all()
    out: dict[str, set[str]] = {}
    for team, user in rows:
        out.setdefault(group_name(team, prefix), set())
        if user:
            out[group_name(team, prefix)].add(user)
    return out


def reconcile(
    store: Store, api_url: str, token: str, prefix: str = TEAM_GROUP_PREFIX, *, provider_owns_groups: bool = False
) -> dict[str, int]:
    """Make the hub's ``team-*`` groups match the store's teams; returns what changed."""
    http = requests.Session()
    http.headers["Authorization"] = f"token {token}"
    api = api_url.rstrip("/")

    def call(method: str, path: str, **kw) -> requests.Response:
        return http.request(method, f"{api}{path}", timeout=30, **kw)

    hub_groups: dict[str, set[str]] = {}
    offset = 0
    while True:
        page = call("GET", f"/groups?offset={offset}&limit=200")
        page.raise_for_status()
        items = page.json()
        hub_groups.update({g["name"]: set(g.get("users", [])) for g in items})
        if len(items) < 200:
            break
        offset += 200
    users = set()
    offset = 0
    while True:
        page = call("GET", f"/users?offset={offset}&limit=200")
        page.raise_for_status()
        items = page.json()
        users |= {u["name"] for u in items}
        if len(items) < 200:
            break
        offset += 200

    changes = {"created": 0, "added": 0, "removed": 0}
    want = wanted(store, prefix)
    member_of = {u: g for g, us in want.items() for u in us}
    for group, members in want.items():
        path = f"/groups/{quote(group, safe='')}"
        if group not in hub_groups:
            call("POST", path).raise_for_status()
            hub_groups[group] = set()
            changes["created"] += 1
        add = sorted((members - hub_groups[group]) & users)
        if add:
            call("POST", f"{path}/users", json={"users": add}).raise_for_status()
            changes["added"] += len(add)
    for group, have in hub_groups.items():
        if not group.startswith(prefix):
            continue
        if provider_owns_groups:
            # Someone the store puts in another team (or a team the store retired in a merge).
            drop = sorted(u for u in have if u in member_of and member_of[u] != group)
        else:  # the store is the only source: whoever it does not list here goes
            drop = sorted(have - want.get(group, set()))
        if drop:
            call("DELETE", f"/groups/{quote(group, safe='')}/users", json={"users": drop}).raise_for_status()
            changes["removed"] += len(drop)
    if any(changes.values()):
        log.info("hub groups reconciled with the store: %s", changes)
    return changes
