"""dask-gateway's local backend with a cap on the number of clusters, per user and per team.

dask-gateway caps each cluster (``cluster_max_workers``, ``cluster_max_cores``,
``cluster_max_memory``), not how many clusters one user starts: without more, a contestant's
loop of ``GatewayCluster()`` takes every core of the machine. dask-gateway 0.7 had
``c.UserLimits.max_clusters``; its rewrite dropped per-user limits on purpose (dask-gateway
#249 and #313: they are hard to keep atomic across several API servers; on Kubernetes a
``ResourceQuota`` on ``DaskCluster`` objects in a namespace per user is the suggested way).
The gateway this platform runs in demo mode is one process with its database in memory, so
the count can be exact: :meth:`CappedLocalBackend.start_cluster` counts the active clusters and
creates the new one with no ``await`` in between, so no other request can slip in.

A team is the user's first JupyterHub group named ``<team_group_prefix><team>`` (the groups
hub/groups.py keeps); a user in no team is capped only as a user. A refused request gets HTTP
422 with the reason, in Chinese, then `` | `` (:data:`SEPARATOR`; aiohttp refuses a line break in
a reason), then English, which the dask-gateway client raises as ``ValueError`` and
``sandbox.dask_client`` shows as a contestant's error.
"""

from __future__ import annotations

from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.local import UnsafeLocalBackend
from traitlets import Dict, Integer, Unicode

from leaderboard.roles import TEAM_GROUP_PREFIX

SEPARATOR = " | "  # between the Chinese and the English reason (sandbox.api.dask_client splits on it)


class CappedLocalBackend(UnsafeLocalBackend):
    """``UnsafeLocalBackend`` that refuses a new cluster beyond the user's or the team's cap."""

    max_clusters_per_user = Integer(
        1, config=True, help="Clusters one user may have running (or starting) at once; 0: no cap."
    )
    max_clusters_per_team = Integer(
        2, config=True, help="Clusters the members of one team may have running (or starting) at once; 0: no cap."
    )
    team_group_prefix = Unicode(
        TEAM_GROUP_PREFIX, config=True, help="JupyterHub groups named <prefix><team> are teams."
    )
    # Each active cluster's team when it started (the database is in memory: only this process's clusters).
    _teams = Dict()

    def team_of(self, user) -> str | None:
        teams = sorted(g for g in user.groups if g.startswith(self.team_group_prefix))
        return teams[0] if teams else None

    def refusal(self, user, team: str | None) -> str | None:
        """Why ``user`` may not start another cluster now (zh | en); None when they may."""
        active = list(self.db.active_clusters())
        for gone in set(self._teams) - {c.name for c in active}:
            del self._teams[gone]
        mine = sum(c.username == user.name for c in active)
        if self.max_clusters_per_user and mine >= self.max_clusters_per_user:
            return (
                f"你已有 {mine} 个 Dask 集群在运行，每人最多 {self.max_clusters_per_user} 个："
                "请先关闭一个（cluster.close()），或重启启动它的内核。"
                f"{SEPARATOR}"
                f"You already have {mine} Dask cluster(s) running, the most one person may have: close one "
                "first (cluster.close()), or restart the kernel that started it."
            )
        if team is not None and self.max_clusters_per_team:
            ours = sum(self._teams.get(c.name) == team for c in active)
            if ours >= self.max_clusters_per_team:
                name = team.removeprefix(self.team_group_prefix)
                return (
                    f"队伍 {name} 已有 {ours} 个 Dask 集群在运行，每队最多 {self.max_clusters_per_team} 个："
                    "请队友先关闭一个。"
                    f"{SEPARATOR}"
                    f"Team {name} already has {ours} Dask clusters running, the most one team may have: "
                    "ask a teammate to close one first."
                )
        return None

    async def start_cluster(self, user, cluster_options):
        options, config = await self.process_cluster_options(user, cluster_options)
        # From here to create_cluster nothing awaits: no other request runs in between.
        team = self.team_of(user)
        why = self.refusal(user, team)
        if why is not None:
            self.log.info("Refused a new cluster for user %s (team %s): at the cap", user.name, team)
            raise PublicException(why)
        cluster = self.db.create_cluster(user.name, options, config.to_dict())
        self._teams[cluster.name] = team
        self.log.info("Created cluster %s for user %s (team %s)", cluster.name, user.name, team)
        self.queue.put(cluster)
        return cluster.name
