"""The Kubernetes ("cluster" mode) configuration in ``config/kubernetes/``, checked without a cluster.

No Kubernetes cluster and no ``helm`` binary are needed. The Zero to JupyterHub values are
merged over the chart's own defaults the way Helm merges values files (maps key by key,
lists and scalars replaced, ``null`` deleting a key) and the result is validated against the
chart's JSON schema, as ``helm install`` would do before rendering anything. The chart's
``values.yaml`` and ``values.schema.yaml`` are read from the shared reference folder
(``CONTESTHUB_Z2JH_REFERENCE``, else ``../shared/reference/z2jh`` beside the checkout); they
are not part of this repository, and the schema tests are skipped, naming the folder, where
it is absent.

Then the promises the files make are checked as a reader would check them: read-only open
data and no private volume in sandboxes, no internet from sandboxes, culling, PostgreSQL,
OpenID Connect with teams from groups, token scopes, the submission service's role (kept
equal to ``hub/services.py``), the contest services' manifests and the dask-gateway values,
including a run of the dask-gateway limits code against dask-gateway-server's own classes.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml
from sqlalchemy import text

from hub.services import SUBMIT_SCOPES
from leaderboard.models import Team
from sandbox.settings import PROJECT_ROOT, Paths

K8S = PROJECT_ROOT / "config" / "kubernetes"
Z2JH_VALUES = K8S / "z2jh-values.yaml"
DASK_VALUES = K8S / "dask-gateway-values.yaml"
SERVICES = K8S / "contest-services.yaml"
BUILD_JOB = K8S / "datasets-build-job.yaml"

DATA_CLAIM, PRIVATE_CLAIM = "contesthub-data", "contesthub-private"
DATA_ROOT = "/srv/contesthub/data"
# Workloads allowed to mount the private volume: the submission service, the scorers, the dataset build.
PRIVATE_MOUNTERS = {
    ("Deployment", "contesthub-submit"),
    ("Deployment", "contesthub-scorer"),
    ("Job", "contesthub-datasets-build-"),
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}


def _reference_dir() -> Path:
    if os.environ.get("CONTESTHUB_Z2JH_REFERENCE"):
        return Path(os.environ["CONTESTHUB_Z2JH_REFERENCE"])
    for candidate in (PROJECT_ROOT.parent / "shared" / "reference" / "z2jh", Path("/work/shared/reference/z2jh")):
        if candidate.is_dir():
            return candidate
    return PROJECT_ROOT.parent / "shared" / "reference" / "z2jh"


REFERENCE = _reference_dir()


def _load(path: Path):
    return yaml.safe_load(path.read_text("utf-8"))


def helm_merge(defaults: dict, override: dict) -> dict:
    """``override`` over ``defaults`` as Helm coalesces a values file over a chart's values.

    Maps merge key by key (recursively); any other value (lists included) replaces the
    default; a ``null`` in ``override`` deletes the key. Nulls among the chart's own defaults
    stay (the chart's schema allows them).
    """
    out = copy.deepcopy(defaults)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            base = out.get(key)
            out[key] = helm_merge(base if isinstance(base, dict) else {}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart() -> tuple[dict, dict]:
    values, schema = REFERENCE / "values.yaml", REFERENCE / "values.schema.yaml"
    missing = [str(p) for p in (values, schema) if not p.is_file()]
    if missing:
        pytest.skip(
            f"Zero to JupyterHub chart reference not found: {', '.join(missing)} "
            "(set CONTESTHUB_Z2JH_REFERENCE to the folder holding values.yaml and values.schema.yaml)"
        )
    return _load(values), _load(schema)


@pytest.fixture(scope="module")
def ours() -> dict:
    return _load(Z2JH_VALUES)


@pytest.fixture(scope="module")
def merged(chart, ours) -> dict:
    return helm_merge(chart[0], ours)


@pytest.fixture(scope="module")
def validator(chart):
    schema = chart[1]
    cls = jsonschema.validators.validator_for(schema)
    # The chart's schema says draft-07; validate with exactly that draft.
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert cls is jsonschema.Draft7Validator
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    docs = []
    for path in (SERVICES, BUILD_JOB):
        docs += [d for d in yaml.safe_load_all(path.read_text("utf-8")) if d is not None]
    return docs


@pytest.fixture(scope="module")
def dask_values() -> dict:
    return _load(DASK_VALUES)


def _errors(validator, doc) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in validator.iter_errors(doc)]


def _named(manifests, kind, name) -> dict:
    found = [m for m in manifests if m["kind"] == kind and _name(m) == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _name(manifest: dict) -> str:
    meta = manifest["metadata"]
    return meta.get("name") or meta["generateName"]


def _pod_spec(manifest: dict) -> dict:
    spec = manifest["spec"]
    if manifest["kind"] == "Pod":
        return spec
    if manifest["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec["template"]["spec"]


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# --- Helm merge, schema ------------------------------------------------------------------------


def test_helm_merge_follows_helm_rules():
    defaults = {"a": {"b": 1, "c": [1, 2], "d": {"e": 1}}, "keep": None, "gone": 1}
    override = {"a": {"c": [3], "d": {"f": 2}}, "gone": None, "new": {"y": 1}}
    assert helm_merge(defaults, override) == {
        "a": {"b": 1, "c": [3], "d": {"e": 1, "f": 2}},
        "keep": None,
        "new": {"y": 1},
    }
    assert defaults["a"]["c"] == [1, 2]  # the inputs are left alone


def test_z2jh_values_validate_against_the_chart_schema(validator, merged):
    assert _errors(validator, merged) == []


@pytest.mark.parametrize(
    "breakage",
    [
        {"singleuser": {"cpu": {"limit": "lots"}}},
        {"singelser": {"defaultUrl": "/lab"}},  # a misspelt top-level key
        {"hub": {"db": {"type": "oracle"}}},
        {"singleuser": {"networkPolicy": {"egressAllowRules": {"internet": False}}}},
    ],
    ids=["cpu-limit-not-a-number", "unknown-top-level-key", "unknown-db-type", "unknown-egress-rule"],
)
def test_the_schema_check_bites(validator, chart, ours, breakage):
    broken = helm_merge(chart[0], helm_merge(ours, breakage))
    assert _errors(validator, broken), f"{breakage} was accepted by the schema"


# --- what the z2jh values promise ------------------------------------------------------------


def test_sandboxes_get_the_open_data_read_only_and_never_the_private_root(merged):
    su = merged["singleuser"]
    volumes, mounts = su["storage"]["extraVolumes"], su["storage"]["extraVolumeMounts"]
    volumes = list(volumes.values()) if isinstance(volumes, dict) else volumes
    mounts = list(mounts.values()) if isinstance(mounts, dict) else mounts
    claims = {v["name"]: v.get("persistentVolumeClaim", {}) for v in volumes}
    assert claims[DATA_CLAIM] == {"claimName": DATA_CLAIM, "readOnly": True}
    data_mounts = [m for m in mounts if m["name"] == DATA_CLAIM]
    assert data_mounts == [{"name": DATA_CLAIM, "mountPath": DATA_ROOT, "readOnly": True}]
    assert su["extraEnv"]["CONTESTHUB_DATA_ROOT"] == DATA_ROOT
    # Nothing private: no claim, no path, no variable.
    assert PRIVATE_CLAIM not in yaml.safe_dump(su)
    assert all(c.get("claimName") != PRIVATE_CLAIM for c in claims.values())
    assert not any("PRIVATE" in name for name in su["extraEnv"])
    assert all(m.get("readOnly") for m in mounts), "every extra mount in a sandbox is read-only"


def test_sandbox_limits_reach_the_sandbox_api(merged, monkeypatch):
    """KubeSpawner exports the limits as CPU_LIMIT / MEM_LIMIT; sandbox/api.py sizes DuckDB from them."""
    from sandbox.api import Limits
    from sandbox.sizes import parse_size

    su = merged["singleuser"]
    assert su["cpu"]["limit"] >= su["cpu"]["guarantee"] > 0
    assert parse_size(str(su["memory"]["limit"])) == parse_size(str(su["memory"]["guarantee"]))
    # Not set by hand: the spawner's CPU_LIMIT / MEM_LIMIT are the one source.
    assert "CONTESTHUB_THREADS" not in su["extraEnv"]
    assert "CONTESTHUB_MEMORY_LIMIT" not in su["extraEnv"]
    for name in ("CONTESTHUB_THREADS", "CONTESTHUB_MEMORY_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    # What JupyterHub's Spawner.get_env puts there: str(float) cores, bytes.
    monkeypatch.setenv("CPU_LIMIT", str(float(su["cpu"]["limit"])))
    monkeypatch.setenv("MEM_LIMIT", str(parse_size(str(su["memory"]["limit"]))))
    limits = Limits.from_env()
    assert limits.threads == int(su["cpu"]["limit"])
    assert limits.memory_bytes == parse_size(str(su["memory"]["limit"])) // 2


def test_sandboxes_reach_only_the_hub_proxy_submit_and_dask(merged, manifests):
    policy = merged["singleuser"]["networkPolicy"]
    assert policy["enabled"] is True
    rules = policy["egressAllowRules"]
    assert rules["nonPrivateIPs"] is False, "sandboxes must not reach the internet"
    assert rules["privateIPs"] is False, "sandboxes must not reach the rest of the cluster"
    assert rules["cloudMetadataServer"] is False
    assert merged["singleuser"]["cloudMetadata"]["blockWithIptables"] is True
    # Extra egress: pods picked by label only (no address ranges), each on one port.
    targets = set()
    for rule in policy["egress"]:
        assert all(set(to) == {"podSelector"} for to in rule["to"]), rule
        assert len(rule["ports"]) == 1
        for to in rule["to"]:
            labels = to["podSelector"]["matchLabels"]
            app, component = labels["app.kubernetes.io/name"], labels["app.kubernetes.io/component"]
            targets.add((app, component, rule["ports"][0]["port"]))
    assert targets == {("contesthub", "submit", 8010), ("dask-gateway", "traefik", 8000)}
    # The submit rule matches the pods and port of the Deployment it is meant for.
    submit = _named(manifests, "Deployment", "contesthub-submit")
    pod_labels = submit["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/name"] == "contesthub"
    assert pod_labels["app.kubernetes.io/component"] == "submit"
    assert submit["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 8010


def test_idle_servers_are_culled(merged):
    cull = merged["cull"]
    assert cull["enabled"] is True
    assert 0 < cull["timeout"] <= 4 * 3600
    assert 0 < cull["every"] <= cull["timeout"]


def test_hub_database_is_postgres_without_a_password_in_the_values(merged):
    db = merged["hub"]["db"]
    assert db["type"] == "postgres"
    url = urlparse(db["url"])
    assert url.scheme.startswith("postgresql")
    assert url.password is None, "the hub's database password comes from a Secret, not the values"
    assert db.get("password") is None
    pg = merged["hub"]["extraEnv"]["PGPASSWORD"]
    assert pg["valueFrom"]["secretKeyRef"]["name"] == "contesthub-secrets"


def test_openid_connect_with_teams_from_groups(merged):
    config = merged["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "generic-oauth"
    auth = config["GenericOAuthenticator"]
    assert auth["manage_groups"] is True
    assert auth["auth_state_groups_key"]
    assert auth["admin_groups"] == ["organizers"]
    # An explicit decision on who may log in: group membership, not everyone at the provider.
    assert auth["allow_all"] is False
    assert set(auth["allowed_groups"]) >= {"organizers"}
    assert "load_groups" not in config["JupyterHub"], "JupyterHub refuses load_groups with manage_groups"
    assert all(url.startswith("https://") for k, url in auth.items() if k.endswith("_url"))
    # The client credentials are not in the values; they come from the Secret.
    assert "client_id" not in auth and "client_secret" not in auth
    env = merged["hub"]["extraEnv"]
    for name in ("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "contesthub-secrets"


def test_tokens_and_roles(merged):
    scopes = merged["hub"]["config"]["Spawner"]["server_token_scopes"]
    # JupyterHub's defaults for a server's token, plus the two services a notebook calls.
    assert {"access:servers!server", "users:activity!user"} <= set(scopes)
    assert "access:services!service=submit" in scopes
    assert "access:services!service=dask-gateway" in scopes
    roles = merged["hub"]["loadRoles"]
    # A token cannot exceed its owner: users hold the access scopes as well, and keep `self`.
    user = set(roles["user"]["scopes"])
    assert {"self", "access:services!service=submit", "access:services!service=dask-gateway"} <= user
    submit = roles["contesthub-submit"]
    assert submit["services"] == ["submit"]
    assert sorted(submit["scopes"]) == sorted(SUBMIT_SCOPES), "keep equal to hub/services.py SUBMIT_SCOPES"
    for role in roles.values():
        if "submit" in role.get("services", []):
            forbidden = {s for s in role["scopes"] if s.split("!")[0] in {"admin:users", "admin:servers", "admin"}}
            assert not forbidden, f"the submission service must not hold {forbidden}"


def test_jupyterlab_image_and_starter_notebooks(merged):
    su = merged["singleuser"]
    assert su["defaultUrl"] == "/lab"
    assert su["image"]["name"].startswith("registry.example.org/")  # a placeholder, documented
    command = " ".join(su["lifecycleHooks"]["postStart"]["exec"]["command"])
    assert "-m hub.starters" in command  # hub/starters.py: as the pod's user, refusing links
    assert su["storage"]["homeMountPath"] in command
    assert "||" in command, "a failed copy must not kill the server's container"


def test_https_is_on(merged):
    https = merged["proxy"]["https"]
    assert https["enabled"] is True
    assert https["type"] in {"letsencrypt", "manual", "secret", "offload"}
    if https["type"] == "letsencrypt":
        assert https["hosts"] and https["letsencrypt"]["contactEmail"]


# --- the contest services ----------------------------------------------------------------------


def test_contest_services_manifests(manifests, merged):
    kinds = {(m["kind"], _name(m)) for m in manifests}
    for expected in [
        ("Deployment", "contesthub-submit"),
        ("Service", "contesthub-submit"),
        ("Deployment", "contesthub-leaderboard"),
        ("Service", "contesthub-leaderboard"),
        ("PersistentVolumeClaim", DATA_CLAIM),
        ("PersistentVolumeClaim", PRIVATE_CLAIM),
    ]:
        assert expected in kinds
    # Every hub service with an in-cluster URL points at a Service defined here (or dask-gateway's).
    services = {_name(m): m for m in manifests if m["kind"] == "Service"}
    for name in ("submit", "leaderboard"):
        url = urlparse(merged["hub"]["services"][name]["url"])
        assert url.hostname in services, url
        assert url.port in [p["port"] for p in services[url.hostname]["spec"]["ports"]]
    # The notebook's submission URL is that same Service, at the service's prefix.
    submit_url = urlparse(merged["singleuser"]["extraEnv"]["CONTESTHUB_SUBMIT_URL"])
    assert (submit_url.hostname, submit_url.port) == ("contesthub-submit", 8010)
    assert submit_url.path == "/services/submit/"


def test_only_submit_and_the_build_mount_the_private_volume(manifests):
    mounting = set()
    for m in manifests:
        if m["kind"] not in WORKLOADS:
            continue
        pod = _pod_spec(m)
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod.get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        if PRIVATE_CLAIM in claims.values():
            mounting.add((m["kind"], _name(m)))
        # The open data is read-only everywhere except in the build.
        for container in pod["containers"]:
            for mount in container.get("volumeMounts", []):
                if claims.get(mount["name"]) == DATA_CLAIM and m["kind"] != "Job":
                    assert mount.get("readOnly") is True, (_name(m), mount)
    assert mounting <= PRIVATE_MOUNTERS, f"unexpected pods with the private volume: {mounting - PRIVATE_MOUNTERS}"
    assert ("Deployment", "contesthub-submit") in mounting  # the check is not vacuous
    assert ("Deployment", "contesthub-leaderboard") not in mounting  # it reads the store through PostgreSQL


def test_the_scorers_are_a_deployment_of_their_own_that_scales_with_the_queue(manifests, tmp_path):
    """The scorer pool: a Deployment running ``python -m hub.scorer`` (one worker a pod, as many
    cores as workers), with the store and the private volume and no way in; KEDA's ScaledObject
    scales it with a query that is checked here against a real migrated store."""
    scorer = _named(manifests, "Deployment", "contesthub-scorer")
    pod = _pod_spec(scorer)
    (container,) = pod["containers"]
    assert container["command"][:3] == ["python", "-m", "hub.scorer"]
    workers = int(container["command"][container["command"].index("--workers") + 1])
    assert workers == int(container["resources"]["limits"]["cpu"]) == 1  # a core per worker
    env = _env(container)
    assert env["CONTESTHUB_DB_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "contesthub-secrets",
        "key": "contest-db-url",
    }
    assert env["CONTESTHUB_PRIVATE_ROOT"]["value"].startswith(
        next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "contesthub-private")
    )
    limits = scorer_limits(env)
    assert pod["terminationGracePeriodSeconds"] > limits.seconds  # a scale-down lets a scoring end
    assert not container.get("ports") and "contesthub-scorer" not in {
        _name(m) for m in manifests if m["kind"] == "Service"
    }
    assert pod["securityContext"]["runAsUser"] != 1000 and not pod["automountServiceAccountToken"]
    policy = _named(manifests, "NetworkPolicy", "contesthub-scorer")
    assert policy["spec"]["policyTypes"] == ["Ingress"] and policy["spec"]["ingress"] == []
    assert policy["spec"]["podSelector"]["matchLabels"] == scorer["spec"]["selector"]["matchLabels"]

    scaled = _named(manifests, "ScaledObject", "contesthub-scorer")
    assert (
        scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["spec"]["scaleTargetRef"]["name"] == "contesthub-scorer"
    )
    assert 1 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql" and float(trigger["metadata"]["targetQueryValue"]) > 0
    assert trigger["metadata"]["connectionFromEnv"] in env  # KEDA reads it from the scaled container

    # The query counts exactly the submissions waiting for a scorer, in the store's own schema.
    from leaderboard import store as store_mod
    from leaderboard.models import Submission

    url = f"sqlite:///{tmp_path / 'queue.sqlite'}"
    store_mod.upgrade(url)
    store = store_mod.connect(Paths(tmp_path, tmp_path, tmp_path), url, migrate=False)
    try:
        with store.session() as s:
            s.add(Team(name="t", display_name="t"))
            s.flush()
            for i, status in enumerate(["received", "validating", "scored", "invalid", "error", "received"]):
                s.add(
                    Submission(
                        team_id=1,
                        user="u",
                        challenge="c",
                        quota_day=dt.date(2026, 12, 1),
                        file_name="f",
                        size=1,
                        sha256=f"{i:064d}",
                        status=status,
                    )
                )
        with store.read_session() as s:
            assert s.execute(text(trigger["metadata"]["query"])).scalar_one() == 3
    finally:
        store.dispose()


def scorer_limits(env: dict):
    from hub.scorer import Limits

    return Limits.from_env({k: v["value"] for k, v in env.items() if "value" in v})


def test_services_are_wired_to_the_hub(manifests):
    submit = _named(manifests, "Deployment", "contesthub-submit")["spec"]["template"]
    leaderboard = _named(manifests, "Deployment", "contesthub-leaderboard")["spec"]["template"]
    for template, name in ((submit, "submit"), (leaderboard, "leaderboard")):
        env = _env(template["spec"]["containers"][0])
        # From the service name the hub's auth requires access:services!service=<name> on callers.
        assert env["JUPYTERHUB_SERVICE_NAME"]["value"] == name
        assert env["JUPYTERHUB_SERVICE_PREFIX"]["value"] == f"/services/{name}/"
        token = env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert token == {"name": "hub", "key": f"hub.services.{name}.apiToken"}
        db = env["CONTESTHUB_DB_URL"]["valueFrom"]["secretKeyRef"]
        assert db["name"] == "contesthub-secrets"
        assert template["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
        assert template["spec"]["securityContext"]["runAsUser"] != 1000, "not the contestants' uid"
    # The leaderboard reads through a read-only role, not the submission service's.
    db_keys = [
        _env(t["spec"]["containers"][0])["CONTESTHUB_DB_URL"]["valueFrom"]["secretKeyRef"]["key"]
        for t in (submit, leaderboard)
    ]
    assert db_keys == ["contest-db-url", "leaderboard-db-url"]
    # Teams come from the identity provider's groups here (OIDC): users join them on first contact.
    assert _env(submit["spec"]["containers"][0])["CONTESTHUB_TEAMS_FROM_GROUPS"]["value"] == "1"


def test_one_image_everywhere(manifests, merged, dask_values):
    image = f"{merged['singleuser']['image']['name']}:{merged['singleuser']['image']['tag']}"
    backend = dask_values["gateway"]["backend"]["image"]
    assert f"{backend['name']}:{backend['tag']}" == image
    for m in manifests:
        if m["kind"] in WORKLOADS:
            assert {c["image"] for c in _pod_spec(m)["containers"]} == {image}, _name(m)


# --- dask-gateway ------------------------------------------------------------------------------


def test_dask_gateway_uses_jupyterhub_auth(dask_values, merged):
    auth = dask_values["gateway"]["auth"]
    assert auth["type"] == "jupyterhub"
    hub_auth = auth["jupyterhub"]
    assert not hub_auth.get("apiToken"), "no token in the values file"
    assert hub_auth["apiTokenFromSecretName"] == "hub"
    assert hub_auth["apiTokenFromSecretKey"] == "hub.services.dask-gateway.apiToken"
    assert urlparse(hub_auth["apiUrl"]).hostname == "hub"
    # The service the token belongs to exists in the hub, and the gateway checks its scope.
    assert hub_auth["jupyterhubServiceName"] == "dask-gateway"
    assert "dask-gateway" in merged["hub"]["services"]
    assert dask_values["traefik"]["service"]["type"] == "ClusterIP"
    env = merged["singleuser"]["extraEnv"]
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    assert urlparse(env["DASK_GATEWAY__ADDRESS"]).path == dask_values["gateway"]["prefix"]


def test_dask_workers_see_the_open_data_read_only_and_nothing_private(dask_values):
    backend = dask_values["gateway"]["backend"]
    assert PRIVATE_CLAIM not in yaml.safe_dump(backend)
    worker = backend["worker"]
    volumes = {v["name"]: v["persistentVolumeClaim"] for v in worker["extraPodConfig"]["volumes"]}
    assert volumes == {DATA_CLAIM: {"claimName": DATA_CLAIM, "readOnly": True}}
    assert worker["extraContainerConfig"]["volumeMounts"] == [
        {"name": DATA_CLAIM, "mountPath": DATA_ROOT, "readOnly": True}
    ]
    assert backend["environment"]["CONTESTHUB_DATA_ROOT"] == DATA_ROOT


def test_dask_gateway_limits_per_member(dask_values):
    """Run the extraConfig code with dask-gateway-server's own option and config classes."""
    pytest.importorskip("dask_gateway_server")
    from dask_gateway_server.backends.base import ClusterConfig
    from dask_gateway_server.models import User
    from traitlets.config import Config

    c = Config()
    for _key, code in sorted(dask_values["gateway"]["extraConfig"].items()):
        exec(compile(code, f"{DASK_VALUES.name}:gateway.extraConfig", "exec"), {"c": c})

    def configure(user, request):
        options = c.Backend.cluster_options(user)
        overrides = options.get_configuration(options.parse_options(request), user)
        return ClusterConfig(config=c, **overrides)

    contestant = User("alice", groups={"contestants", "team-blue"})
    organizer = User("olga", groups={"organizers"})
    cfg = configure(contestant, {})
    assert (cfg.worker_cores, cfg.worker_memory) == (1, 4 * 2**30)
    assert (cfg.cluster_max_cores, cfg.cluster_max_memory, cfg.cluster_max_workers) == (8, 32 * 2**30, 4)
    with pytest.raises(ValueError):
        configure(contestant, {"worker_cores": 3})
    with pytest.raises(ValueError):
        configure(contestant, {"worker_memory": 9})
    big = configure(organizer, {"worker_cores": 4, "worker_memory": 16})
    assert (big.worker_cores, big.cluster_max_cores) == (4, 32)
    # dask-gateway lowers the worker cap to what fits beside the scheduler in the core cap.
    assert 1 <= big.cluster_max_workers <= 16
    assert big.cluster_max_workers * big.worker_cores + big.scheduler_cores <= big.cluster_max_cores
    assert c.ClusterConfig.idle_timeout > 0
    # Without the options, a cluster still gets the contestants' caps.
    assert ClusterConfig(config=c).cluster_max_cores == 8
