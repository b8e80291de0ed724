"""Issue 17, cluster mode: KubeSpawner mounts a conditional dataset's volume only for approved teams.

No cluster here (README, Deployment modes): the hook in ``config/kubernetes/z2jh-values.yaml``
(``hub.extraConfig.contesthub-conditional``) is run as the hub would run it, against a
stand-in for KubeSpawner (a plain object with its traits) and a stand-in for the in-cluster
submission service (a local HTTP server answering ``access/grants`` per token, as the real
one does: tests/test_hub_conditional.py). The values themselves are validated against the
chart's schema by tests/test_cluster_config.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import ClassVar

import pytest
import yaml
from traitlets.config import Config

from sandbox.settings import PROJECT_ROOT

VALUES = PROJECT_ROOT / "config" / "kubernetes" / "z2jh-values.yaml"
BUILD_JOB = PROJECT_ROOT / "config" / "kubernetes" / "datasets-build-job.yaml"
GRANTS = {"token-approved": ["employment_histories"], "token-other": []}


class _Service(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self):
        token = self.headers.get("Authorization", "").removeprefix("token ")
        self.seen.append(self.path)
        if token not in GRANTS:
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps({"datasets": [{"dataset": d, "expires_at": None} for d in GRANTS[token]]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def hook(service):
    code = yaml.safe_load(VALUES.read_text("utf-8"))["hub"]["extraConfig"]["contesthub-conditional"]
    c = Config()
    namespace = {"c": c}
    exec(compile(code, "hub.extraConfig.contesthub-conditional", "exec"), namespace)  # as z2jh's hub does
    assert c.KubeSpawner.pre_spawn_hook is namespace["contesthub_pre_spawn"]
    assert namespace["CONTESTHUB_GRANTS_URL"].startswith("http://contesthub-submit:8010/services/submit/api/")
    namespace["CONTESTHUB_GRANTS_URL"] = f"{service}/services/submit/api/access/grants?server_start=1"
    return namespace["contesthub_pre_spawn"]


def spawner(token: str):
    """What the hook touches of a KubeSpawner: its token, volumes, mounts, environment, log."""
    data = {"name": "contesthub-data", "persistentVolumeClaim": {"claimName": "contesthub-data", "readOnly": True}}
    mount = {"name": "contesthub-data", "mountPath": "/srv/contesthub/data", "readOnly": True}
    return SimpleNamespace(
        api_token=token,
        volumes={"contesthub-data": data},  # z2jh hands extraVolumes over as a dict
        volume_mounts=[mount],
        environment={"CONTESTHUB_DATA_ROOT": "/srv/contesthub/data"},
        log=logging.getLogger("test.kubespawner"),
        user=SimpleNamespace(name="ann"),
    )


def test_only_an_approved_teams_pod_mounts_the_dataset_read_only(hook):
    approved, other, unknown = spawner("token-approved"), spawner("token-other"), spawner("token-bad")
    for s in (approved, other, unknown):
        asyncio.run(hook(s))
    claim = "contesthub-conditional-employment-histories"
    assert [v["name"] for v in approved.volumes] == ["contesthub-data", claim]
    assert approved.volumes[1]["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    assert approved.volume_mounts[1] == {
        "name": claim,
        "mountPath": "/srv/contesthub/conditional/employment_histories",
        "readOnly": True,
    }
    assert approved.environment["CONTESTHUB_CONDITIONAL_ROOT"] == "/srv/contesthub/conditional"
    # Another team, and a start the service cannot vouch for (fail closed): nothing conditional.
    for s in (other, unknown):
        assert [v["name"] for v in s.volumes] == ["contesthub-data"]
        assert all("conditional" not in m["mountPath"] for m in s.volume_mounts)
    assert all(path.endswith("server_start=1") for path in _Service.seen)  # each start is logged by the service


def test_the_build_job_fills_the_conditional_volume_and_no_sandbox_mounts_it_by_default():
    job = yaml.safe_load(BUILD_JOB.read_text("utf-8"))
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CONTESTHUB_CONDITIONAL_ROOT"] == "/srv/contesthub/conditional"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/srv/contesthub/conditional/employment_histories" in mounts
    values = yaml.safe_load(VALUES.read_text("utf-8"))
    assert "conditional" not in yaml.safe_dump(values["singleuser"]["storage"])
