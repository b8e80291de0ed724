"""Dask scale-out: dask-gateway as a hub service, with per-team limits, used from a notebook.

A real hub of its own (demo mode, the gateway on, the other optional services off) starts
dask-gateway with config/dask_gateway_config.py. A contestant of team ``alpha`` (the JupyterHub
group ``team-alpha``, whose limit is one worker while the default is two) runs
``sandbox.dask_client()`` in a kernel: the cluster comes from the gateway through the hub's
proxy, with the notebook's own token, sums a column to the same total as DuckDB, is cut to one
worker when asked for three (the user sees the gateway's warning), and is shut down afterwards.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

import pytest
import requests
from hub_fixtures import RunningHub, hub_settings, kernel_run, running_hub

from hub.services import (
    GATEWAY_CONFIG,
    GATEWAY_SCOPE,
    gateway_available,
    gateway_client_environment,
    gateway_spec,
    hub_services,
)
from hub.settings import HubSettings, SettingsError

TEAM_LIMITS = {"alpha": {"max_workers": 1}}
GATEWAY = {
    "services": "none",  # neither the submission service nor the leaderboard is needed here
    "gateway": True,
    "gateway_worker_memory": "1G",
    "gateway_max_workers": 2,
    "gateway_max_cores": 3,
    "gateway_max_memory": "3G",
    "gateway_teams": TEAM_LIMITS,
    "gateway_max_clusters_per_user": 1,
    "gateway_max_clusters_per_team": 2,
}

needs_gateway = pytest.mark.skipif(not gateway_available(), reason="dask-gateway-server is not installed")


# --- settings and configuration, without processes -------------------------------------------


def test_team_limits_in_settings(tmp_path):
    base = {"private_root": tmp_path / "p", "data_root": tmp_path / "d"}
    s = HubSettings.load({**base, **GATEWAY}, environ={})
    gib = 2**30
    assert s.gateway_limits == {
        "": {"cluster_max_cores": 3.0, "cluster_max_memory": 3 * gib, "cluster_max_workers": 2},
        "alpha": {"cluster_max_cores": 3.0, "cluster_max_memory": 3 * gib, "cluster_max_workers": 1},
    }
    # From the environment (CONTESTHUB_GATEWAY_TEAMS is JSON), and back.
    assert HubSettings.load(environ=s.to_env()) == s
    # Cores and memory bound the workers too: 4 cores, 1 for the scheduler, 1 per worker -> 3.
    roomy = HubSettings.load(
        {**base, **GATEWAY, "gateway_teams": {"beta": {"max_workers": 9, "max_cores": 4, "max_memory": "9G"}}},
        environ={},
    )
    assert roomy.gateway_limits["beta"]["cluster_max_workers"] == 3
    with pytest.raises(SettingsError, match="leave no room for one worker"):
        HubSettings.load({**base, **GATEWAY, "gateway_teams": {"tiny": {"max_memory": "1G"}}}, environ={})
    with pytest.raises(SettingsError, match="expected a table of max_workers"):
        HubSettings.load({**base, **GATEWAY, "gateway_teams": {"alpha": {"workers": 3}}}, environ={})
    with pytest.raises(SettingsError, match="two settings use the same port"):
        HubSettings.load({**base, "gateway_port": 8000}, environ={})


def test_the_gateway_service_and_its_limits_by_group(tmp_path, monkeypatch):
    from dask_gateway_server.models import User
    from traitlets.config.loader import PyFileConfigLoader

    base = {"private_root": tmp_path / "p", "data_root": tmp_path / "d", "mode": "demo"}
    s = HubSettings.load({**base, **GATEWAY}, environ={})
    services, roles = hub_services(s, include_gateway=True)
    (gw,) = [x for x in services if x["name"] == "dask-gateway"]
    assert gw["url"] == f"http://127.0.0.1:{s.gateway_port}"
    # Run through hub.die_with_parent, so that it ends with the hub (see hub/services.py).
    assert gw["command"][: gw["command"].index("--")] == [
        sys.executable,
        "-m",
        "hub.die_with_parent",
        "--parent",
        str(os.getpid()),
    ]
    assert gw["command"][gw["command"].index("--") + 1 :] == [
        sys.executable,
        "-m",
        "dask_gateway_server",
        "-f",
        str(GATEWAY_CONFIG),
    ]
    assert gw["api_token"] == (s.runtime_dir / "service-dask-gateway.token").read_text().strip()
    assert set(gw["environment"]) == {"CONTESTHUB_GATEWAY"}  # no private root, no database URL
    assert not any("dask-gateway" in r["services"] for r in roles)  # its own token needs no scope
    # Left out when off, and in secure mode (the local backend runs clusters as the hub's account).
    assert "dask-gateway" not in [
        x["name"] for x in hub_services(s.load({**base, **GATEWAY, "gateway": False}, environ={}))[0]
    ]
    secure = HubSettings.load({**base, **GATEWAY, "mode": "secure"}, environ={})
    assert "dask-gateway" not in [x["name"] for x in hub_services(secure)[0]]

    # config/dask_gateway_config.py as the gateway reads it, with what the hub gives the service.
    monkeypatch.setenv("CONTESTHUB_GATEWAY", gw["environment"]["CONTESTHUB_GATEWAY"])
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", gw["api_token"])
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{s.hub_port}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "dask-gateway")
    c = PyFileConfigLoader(GATEWAY_CONFIG.name, path=str(GATEWAY_CONFIG.parent)).load_config()
    assert c.DaskGateway.backend_class == "hub.gateway_backend.CappedLocalBackend"
    assert (c.CappedLocalBackend.max_clusters_per_user, c.CappedLocalBackend.max_clusters_per_team) == (1, 2)
    assert c.CappedLocalBackend.team_group_prefix == "team-"
    assert c.DaskGateway.authenticator_class.endswith("JupyterHubAuthenticator")
    assert c.JupyterHubAuthenticator.use_service_access_scopes is True
    assert c.Proxy.address == f"127.0.0.1:{s.gateway_port}" and c.Proxy.prefix == "/services/dask-gateway"
    assert c.ClusterConfig.scheduler_cmd[-1] == "scheduler" and c.ClusterConfig.worker_cmd[-1] == "worker"
    assert c.ClusterConfig.worker_memory == 2**30
    options = c.Backend.cluster_options

    def limits(*groups: str) -> dict:
        return options.get_configuration(options.parse_options({}), User("ann", groups=groups))

    assert limits("team-alpha")["cluster_max_workers"] == 1
    assert limits("team-beta")["cluster_max_workers"] == 2  # a team with no limits of its own
    assert limits()["cluster_max_workers"] == 2
    assert limits("organizers", "team-alpha").items() >= s.gateway_limits["alpha"].items()
    # What the backend makes of them: the sizes are those of the settings, not dask-gateway's defaults.
    from dask_gateway_server.backends.local import LocalClusterConfig

    config = LocalClusterConfig(**limits("team-alpha"))
    assert (config.cluster_max_workers, config.worker_memory, config.scheduler_memory) == (1, 2**30, 2**30)
    assert LocalClusterConfig(**limits()).cluster_max_workers == 2


def test_notebooks_get_the_gateway_address_and_scope(tmp_path, monkeypatch, capsys):
    from traitlets.config.loader import PyFileConfigLoader

    from hub.launcher import CONFIG

    values = {"private_root": tmp_path / "p", "data_root": tmp_path / "d", "home_root": tmp_path / "h", **GATEWAY}
    s = HubSettings.load(values, environ={})
    for key, value in s.to_env().items():
        monkeypatch.setenv(key, value)
    c = PyFileConfigLoader(CONFIG.name, path=str(CONFIG.parent)).load_config()
    if not gateway_available():
        assert "not installed" in capsys.readouterr().err
        return
    env = c.Spawner.environment
    assert env["DASK_GATEWAY__ADDRESS"] == f"{s.public_url}/services/dask-gateway"
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == f"gateway://127.0.0.1:{s.gateway_port}"
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    assert gateway_client_environment(s).items() <= env.items()
    assert (
        GATEWAY_SCOPE in c.Spawner.server_token_scopes
        and "access:services!service=submit" in c.Spawner.server_token_scopes
    )
    assert c.JupyterHub.extra_user_scopes == {"access:services!service=submit", GATEWAY_SCOPE}
    assert gateway_spec(s)["limits"]["team-alpha"]["cluster_max_workers"] == 1


# --- a real hub, a real gateway, a contestant's kernel -------------------------------------


@pytest.fixture(scope="module")
def gateway_hub(demo, tmp_path_factory) -> RunningHub:
    if not gateway_available():
        pytest.skip("dask-gateway-server is not installed")
    root = tmp_path_factory.mktemp("dask-hub")
    settings = hub_settings(root, demo.data_root, **GATEWAY)
    with running_hub(settings, root / "jupyterhub.log") as running:
        running.wait_for(f"{settings.public_url}/services/dask-gateway/api/health", 60)
        yield running


NOTEBOOK = """
import json, time, warnings
import sandbox

out = {}
client = sandbox.dask_client(workers=1)
cluster = client.cluster
try:
    client.wait_for_workers(1, timeout=90)
    visits = sandbox.dask("hospital_outpatient.daily_visits", columns=["hospital_id", "outpatient_visits"])
    out["dask"] = int(visits.outpatient_visits.sum().compute())
    total = sandbox.sql("SELECT sum(outpatient_visits) FROM hospital_outpatient.daily_visits")
    out["duckdb"] = int(total.fetchall()[0][0])
    out["cluster"] = cluster.name
    out["kind"] = type(cluster).__name__
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cluster.scale(3)  # beyond team alpha's one worker
    out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    time.sleep(2)  # time enough for a worker the gateway would (wrongly) start
    out["workers"] = len(client.scheduler_info()["workers"])
finally:
    client.close()
    cluster.close()  # shutdown_on_close: the gateway stops the scheduler and workers
print(json.dumps(out))
"""


def gateway_api(hub: RunningHub, path: str, token: str) -> requests.Response:
    return requests.get(
        f"{hub.url}/services/dask-gateway/api/v1/{path}", headers={"Authorization": f"jupyterhub {token}"}, timeout=30
    )


@needs_gateway
def test_a_notebook_computes_on_a_gateway_cluster_within_its_team_limit(gateway_hub):
    hub = gateway_hub
    org = hub.new_token(hub.organizer, session=hub.organizer_session())
    name, _, session = hub.account()
    r = hub.api("POST", "/groups/team-alpha", token=org, json={"users": [name]})
    assert r.status_code == 201, r.text
    token = hub.new_token(name, session=session)
    hub.spawn(name, token)

    started = time.monotonic()
    result = kernel_run(hub, name, token, NOTEBOOK, timeout=180)
    assert result["error"] is None, result["error"] + "\n" + hub.process.log_tail(60)
    out = json.loads(result["stdout"].strip().splitlines()[-1])
    print(f"kernel: {time.monotonic() - started:.1f} s", out)
    assert out["kind"] == "GatewayCluster"
    assert out["dask"] == out["duckdb"] > 0
    # Team alpha may have one worker: asked for three, the user is told and gets one.
    assert out["warnings"] == [
        "GatewayWarning: Scale request of 3 workers would exceed resource limit of 1 workers. Scaling to 1 instead."
    ]
    assert out["workers"] == 1

    # Shut down: the gateway no longer lists it, and its working folder is gone.
    assert gateway_api(hub, "clusters/", token).json() == {}
    folder = hub.settings.runtime_dir / "dask-gateway" / out["cluster"]
    deadline = time.monotonic() + 20
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not folder.exists()


@needs_gateway
def test_the_gateway_wants_a_token_with_access_to_it(gateway_hub):
    hub = gateway_hub
    name, _, session = hub.account()
    r = hub.api(
        "POST",
        f"/users/{name}/tokens",
        session=session,
        json={"note": "no gateway", "scopes": ["read:users:name!user"]},
    )
    assert r.status_code == 201, r.text
    assert gateway_api(hub, "clusters/", r.json()["token"]).status_code == 401
    # A token the hub does not know: the hub answers 403, which dask-gateway passes on as a 500
    # ("Permission failure verifying user's JupyterHub API token"); refused either way.
    assert gateway_api(hub, "clusters/", "not-a-token").status_code in (401, 500)
    assert gateway_api(hub, "clusters/", hub.new_token(name, session=session)).status_code == 200


def gateway_call(hub: RunningHub, method: str, path: str, token: str, **kw) -> requests.Response:
    return requests.request(
        method,
        f"{hub.url}/services/dask-gateway/api/v1/{path}",
        headers={"Authorization": f"jupyterhub {token}"},
        timeout=60,
        **kw,
    )


REFUSED_IN_A_NOTEBOOK = """
import sandbox
sandbox.dask_client()
"""


@needs_gateway
def test_clusters_are_capped_per_user_and_per_team(gateway_hub):
    """The attack: one contestant (or one team) starting cluster after cluster until the machine is theirs."""
    hub = gateway_hub
    org = hub.new_token(hub.organizer, session=hub.organizer_session())
    team = f"gamma{uuid.uuid4().hex[:6]}"
    people = {}
    for who in ("g1", "g2", "g3", "solo"):
        name, _, session = hub.account()
        people[who] = (name, hub.new_token(name, session=session))
    members = [people[w][0] for w in ("g1", "g2", "g3")]
    r = hub.api("POST", f"/groups/team-{team}", token=org, json={"users": members})
    assert r.status_code == 201, r.text
    started: list[tuple[str, str]] = []

    def new_cluster(who: str) -> requests.Response:
        r = gateway_call(hub, "POST", "clusters/", people[who][1], json={"cluster_options": {}})
        if r.status_code == 201:
            started.append((who, r.json()["name"]))
        return r

    try:
        assert new_cluster("g1").status_code == 201
        second = new_cluster("g1")  # beyond one per person
        assert second.status_code == 422, second.text
        assert second.json()["error"] == (
            "你已有 1 个 Dask 集群在运行，每人最多 1 个：请先关闭一个（cluster.close()），或重启启动它的内核。 | "
            "You already have 1 Dask cluster(s) running, the most one person may have: close one first "
            "(cluster.close()), or restart the kernel that started it."
        )
        assert new_cluster("g2").status_code == 201
        third = new_cluster("g3")  # beyond two per team
        assert third.status_code == 422, third.text
        assert third.json()["error"].startswith(f"队伍 {team} 已有 2 个 Dask 集群在运行，每队最多 2 个")
        assert f"Team {team} already has 2 Dask clusters running" in third.json()["error"]
        assert new_cluster("solo").status_code == 201  # someone else's caps are not theirs
        # What a contestant sees in a notebook when at the cap: the reason, not a traceback.
        hub.spawn(*people["g1"])
        out = kernel_run(hub, *people["g1"], REFUSED_IN_A_NOTEBOOK, timeout=180)
        assert out["error"] is None, out["error"]
        assert "你已有 1 个 Dask 集群在运行" in out["stdout"] and "You already have 1 Dask cluster(s)" in out["stdout"]
        assert "[dask-cluster-refused]" in out["stdout"]
        # One closed: a teammate may start one.
        g1_cluster = next(name for who, name in started if who == "g1")
        assert gateway_call(hub, "DELETE", f"clusters/{g1_cluster}", people["g1"][1]).status_code == 204
        assert new_cluster("g3").status_code == 201
        listed = {who: set(gateway_call(hub, "GET", "clusters/", token).json()) for who, (_, token) in people.items()}
        assert listed == {"g1": set(), **{w: {n for x, n in started if x == w} for w in ("g2", "g3", "solo")}}
    finally:
        for who, name in started:
            gateway_call(hub, "DELETE", f"clusters/{name}", people[who][1])
