"""Conditional data in a sandbox: only what the platform grants, and every read reported.

The sandbox API never decides who may read conditional data (有条件开放): when a session
starts it asks the platform (the submission service, with the notebook's own JupyterHub
token) which conditional datasets the team may read now, and makes views only for those whose
root it can read (in secure mode the file system must agree: ``hub/conditional_acl.py``).
Before a query that names one of them it reports the query to the platform, which checks the
grant again at that moment (so an expiry or a revocation holds at once for the API) and logs
the read in the store; a refusal ends the session's views. Without a platform (no hub) there is
no conditional data at all.

In demo mode this is all there is: the kernel runs as the hub's own account and can read any
file, so it is bookkeeping, not enforcement (README, Deployment modes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sandbox import catalog as _catalog
from sandbox.settings import Paths

#: Seconds a session start or a query waits for the platform's answer on conditional data.
PLATFORM_TIMEOUT = 15


def _platform() -> tuple[str, str] | None:
    url, token = os.environ.get("CONTESTHUB_SUBMIT_URL"), os.environ.get("JUPYTERHUB_API_TOKEN")
    return (url.rstrip("/") + "/api", token) if url and token else None


def granted() -> list[str]:
    """The conditional datasets the platform says the team may read now (none without one)."""
    from sandbox.submit import SubmitError, _request

    platform = _platform()
    if platform is None:
        return []
    api, token = platform
    try:
        doc = _request("GET", f"{api}/access/grants", token, timeout=PLATFORM_TIMEOUT)
    except (SubmitError, OSError):  # the platform cannot say (or timed out): no conditional data (fail closed)
        return []
    return [d["dataset"] for d in doc.get("datasets", []) if isinstance(d, dict) and isinstance(d.get("dataset"), str)]


def readable() -> Iterator[tuple[str, Path, dict]]:
    """``(dataset, its root, its catalog record)`` for each granted dataset this process can read."""
    base = Paths.from_env().conditional_root
    for ds_id in granted():
        root = base / ds_id
        try:
            d = _catalog.load(root)["datasets"].get(ds_id)
        except OSError:  # secure mode: this server started before the team's group was let in
            continue
        if d is not None:
            yield ds_id, root, d


def named(session: Any, text: str) -> list[str]:
    """The session's conditional datasets that ``text`` (a query, a table name) names."""
    return sorted(
        d for d in session.conditional if re.search(rf"(?<![A-Za-z0-9_]){re.escape(d)}(?![A-Za-z0-9_])", text)
    )


def report(session: Any, text: str, api: str) -> None:
    """Tell the platform about a read of conditional data before it happens; refuse if it says no."""
    from sandbox.api import SandboxError, refresh
    from sandbox.submit import SubmitError, _request

    names = named(session, text)
    if not names:
        return
    platform = _platform()
    if platform is None:  # cannot happen with views (they come from the platform); fail closed
        raise SandboxError("conditional data is read only through the platform", "有条件开放数据只能通过平台读取")
    api_url, token = platform
    body = {"datasets": names, "sql_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "api": api}
    try:
        _request(
            "POST",
            f"{api_url}/access/queries",
            token,
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            timeout=PLATFORM_TIMEOUT,
        )
    except SubmitError as exc:
        refresh()  # the next query starts a session with what the platform grants now
        raise SandboxError(exc.en, exc.zh, code="access-denied") from None
    except OSError as exc:  # no answer in time: the read is not logged, so it does not happen
        raise SandboxError(
            f"the platform did not confirm access to {', '.join(names)} ({exc}); try again in a minute",
            f"平台未能确认对 {', '.join(names)} 的访问权限（{exc}）；请稍后再试",
            code="access-unconfirmed",
        ) from None


# --- applying from a sandbox ---------------------------------------------------------------


def _call(method: str, path: str, body: dict | None = None) -> dict:
    from sandbox.submit import SubmitError, _request

    platform = _platform()
    if platform is None:
        raise SubmitError(
            "no platform here: apply from a JupyterLab started by the contest hub, or ask an organizer",
            "当前环境没有连接比赛平台：请在比赛平台启动的 JupyterLab 中申请，或联系组织方",
            code="no-service",
        )
    api, token = platform
    data = json.dumps(body).encode("utf-8") if body is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else None
    return _request(method, f"{api}/{path}", token, data=data, headers=headers)


def request_access(dataset: str, *, purpose: str, serves: str, accept: str) -> dict:
    """Apply for a conditional dataset on behalf of your team.

    ``accept`` is the version of the dataset's data-use agreement you read and accept
    (``sandbox.describe(dataset)`` shows the dataset; ``contesthub access agreement`` the text).
    """
    body = {"dataset": dataset, "purpose": purpose, "serves": serves, "agreement_version": accept}
    return _call("POST", "access/requests", body)


def access_requests() -> Any:
    """Your team's requests for conditional data and their state (a DataFrame)."""
    import pandas as pd

    return pd.DataFrame(_call("GET", "access/requests")["requests"])


# --- data requests and error reports ---------------------------------------------------------


def send_report(kind: str, **fields) -> dict:
    """Send a data request or an error report to the platform as the signed-in user."""
    body = {"kind": kind, **{k: v for k, v in fields.items() if v is not None}}
    return _call("POST", "reports", body)


def request_dataset(dataset: str, description: str) -> dict:
    """Ask for a dataset that is not in the catalog (the public status page follows it)."""
    return send_report("request", dataset=dataset, description=description)


def report_error(
    dataset: str,
    description: str,
    *,
    version: int | None = None,
    table: str | None = None,
    row_key: str | None = None,
    field: str | None = None,
) -> dict:
    """Report an error in a published dataset: which version, table, row (its key) and field."""
    return send_report(
        "error", dataset=dataset, description=description, version=version, table=table, row_key=row_key, field=field
    )
