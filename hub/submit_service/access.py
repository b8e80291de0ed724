"""Conditional data (issue 17): grants, reads, requests; and data requests and error reports.

The platform side of ``sandbox.sql``/``sandbox.dask`` over conditional data: a sandbox asks
which conditional datasets its team may read now (``GET access/grants``) and reports each query
that names one before running it (``POST access/queries``). The service checks the grant at
that moment (an expiry or a revocation holds at once for the sandbox API) and records the read
in the store's access log with the caller's JupyterHub identity, which the kernel cannot forge
or erase. A team member applies and sees the team's requests at ``access/requests``.
"""

from __future__ import annotations

import re

from hub.submit_service.base import Base, Refusal, is_int, text_field
from leaderboard import access, teams
from sandbox.descriptor import load_all
from sandbox.errors import NotFound
from sandbox.settings import Paths

DATASET = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
MAX_DATASETS = 20
SHA256 = re.compile(r"^[0-9a-f]{64}$")
APIS = ("sql", "dask", "table")


class GrantsHandler(Base):
    """The conditional datasets the caller's team may read now, and until when."""

    async def get(self) -> None:
        user = self.user
        # Cluster mode: KubeSpawner's hook asks with the starting server's token before it
        # mounts the datasets' volumes (config/kubernetes/z2jh-values.yaml); the start is logged.
        server_start = self.get_query_argument("server_start", "") == "1"

        def grants() -> dict:
            with self.ctx.store.session() if server_start else self.ctx.store.read_session() as s:
                team = teams.team_of(s, user)
                rows = [r for r in access.listing(s, team=team.name) if r["state"] == "approved"] if team else []
                if server_start:
                    for r in rows:
                        access.log_event(s, r["dataset"], team, user, "server-start", {"via": "kubespawner"})
            return {
                "team": team.name if team else None,
                "datasets": [{"dataset": r["dataset"], "expires_at": r["expires_at"]} for r in rows],
            }

        self.send(await (self.ctx.write(grants) if server_start else self.ctx.read(grants)))


class QueriesHandler(Base):
    """Before a query that names conditional datasets: refused unless granted now; logged."""

    async def post(self) -> None:
        doc = self.body_json()
        names = doc.get("datasets")
        digest = text_field(doc, "sql_sha256", "access-query-invalid", required=False)
        api = doc.get("api", "sql")
        if (
            not isinstance(names, list)
            or not 1 <= len(names) <= MAX_DATASETS
            or not all(isinstance(n, str) and DATASET.match(n) for n in names)
            or (digest is not None and not SHA256.match(digest))
            or api not in APIS
        ):
            raise Refusal(
                400,
                "access-query-invalid",
                f'send {{"datasets": [1–{MAX_DATASETS} dataset ids], "sql_sha256": "<64 hex>" (optional), '
                f'"api": "sql" | "dask" | "table"}}',
                f'请发送 {{"datasets": [1–{MAX_DATASETS} 个数据集编号], "sql_sha256": "<64 位十六进制>"（可选）, '
                f'"api": "sql" | "dask" | "table"}}',
            )
        user = self.user

        def log() -> dict:
            with self.ctx.store.session() as s:
                team = teams.team_of(s, user)
                granted = access.active_grants(s)
                denied = sorted({n for n in names if team is None or team.name not in granted.get(n, set())})
                if denied:
                    raise Refusal(
                        403,
                        "access-not-granted",
                        f"your team has no access in force to {', '.join(denied)} (conditional data: apply with "
                        "`contesthub access request`, and read it while the approval lasts)",
                        f"你的队伍当前无权访问 {', '.join(denied)}（有条件开放数据：请用 `contesthub access request` "
                        "申请，并在批准有效期内使用）",
                    )
                for n in sorted(set(names)):
                    access.log_event(s, n, team, user, "query", {"api": api, "sql_sha256": digest})
            return {"logged": len(set(names))}

        self.send(await self.ctx.write(log), 201)


class RequestsHandler(Base):
    """A team member: the team's requests (GET), or apply for a conditional dataset (POST)."""

    async def get(self) -> None:
        user = self.user

        def mine() -> dict:
            with self.ctx.store.read_session() as s:
                team = teams.team_of(s, user)
                return {
                    "team": team.name if team else None,
                    "requests": access.listing(s, team=team.name) if team else [],
                }

        self.send(await self.ctx.read(mine))

    async def post(self) -> None:
        doc = self.body_json()
        dataset = text_field(doc, "dataset", "access-request-invalid")
        purpose = text_field(doc, "purpose", "access-request-invalid")
        serves = text_field(doc, "serves", "access-request-invalid")
        version = text_field(doc, "agreement_version", "access-request-invalid")
        if not DATASET.match(dataset):
            raise NotFound(f"no dataset {dataset[:100]!r}", f"没有数据集 {dataset[:100]!r}")
        ds = load_all(Paths.from_env().datasets_dir, [dataset])[0]
        user = self.user

        def apply() -> dict:
            with self.ctx.store.session() as s:
                req = access.request(s, ds, user, purpose=purpose, serves=serves, agreement_version=version)
                return {"id": req.id, "dataset": req.dataset, "team": req.team.name, "state": req.status}

        self.send(await self.ctx.write(apply), 201)


class ReportsHandler(Base):
    """Data requests and error reports: anyone signed in sends one (POST); the list (GET)
    is the public status page's, without who sent what (leaderboard/reports.py)."""

    async def get(self) -> None:
        from leaderboard import reports

        def listing() -> list[dict]:
            with self.ctx.store.read_session() as s:
                return reports.public_listing(s)

        self.send(await self.ctx.read(listing))

    async def post(self) -> None:
        from leaderboard import reports

        doc = self.body_json()
        kind = text_field(doc, "kind", "report-invalid")
        dataset = text_field(doc, "dataset", "report-invalid")
        description = text_field(doc, "description", "report-invalid")
        optional = {k: text_field(doc, k, "report-invalid", required=False) for k in ("table", "row_key", "field")}
        version = doc.get("version")
        if version is not None and not is_int(version, 1, 2**31 - 1):
            raise Refusal(400, "report-invalid", "version must be a positive integer", "version 必须是正整数")
        user = self.user

        def send() -> dict:
            with self.ctx.store.session() as s:
                r = reports.submit(
                    s,
                    Paths.from_env().data_root,
                    user,
                    kind,
                    dataset=dataset,
                    description=description,
                    version=version,
                    **{"table": optional["table"], "row_key": optional["row_key"], "field": optional["field"]},
                )
                return {"id": r.id, "kind": r.kind, "status": r.status}

        self.send(await self.ctx.write(send), 201)


default_handlers = [
    (r"/access/grants", GrantsHandler),
    (r"/access/queries", QueriesHandler),
    (r"/access/requests", RequestsHandler),
    (r"/reports", ReportsHandler),
]
