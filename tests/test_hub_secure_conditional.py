"""Issue 17, item 5 in secure mode: conditional data on a real hub with real Unix accounts.

Two teams, each contestant with their own Unix account (tests/test_hub_secure.py's set-up),
and the demo's conditional dataset copied with its modes: the conditional root 0711, the
dataset's root 0700. Code in each kernel tries ``sandbox.sql``, a raw
``duckdb.connect().sql("... read_parquet('<conditional root>/...')")`` and ``open()``:

* before approval all three fail for both teams;
* after approval (the server started again: a running process keeps the groups it started
  with) all three work for the approved team only;
* at expiry the submission service's minute round removes the team's ACL entry: all three
  fail in the running server, without a restart;
* approved again with ``contesthub access approve`` (ACL back at once, the running server
  reads again), then ``contesthub access revoke``: all three fail at once;
* each step is in the audit log and ``contesthub audit verify`` passes.
"""

from __future__ import annotations

import datetime as dt
import grp
import json
import os
import shutil
import subprocess
import time

import pytest
from click.testing import CliRunner
from hub_fixtures import hub_settings, kernel_run, running_hub
from sqlalchemy import select
from test_hub_secure import PREFIX, made_accounts, open_root, remove_accounts, stop_server  # noqa: F401

from hub import conditional_acl
from hub.unix_accounts import useradd_command
from leaderboard import access
from leaderboard import store as store_mod
from leaderboard.models import AuditEntry
from sandbox import clock
from sandbox.descriptor import load_all
from sandbox.settings import PROJECT_ROOT, Paths

DS = load_all(PROJECT_ROOT / "datasets", ["employment_histories"])[0]
TEAMS = ("cond_sa", "cond_sb")

PROBE = """
import json, duckdb, sandbox
root = {root!r}
out = {{}}
try:
    out["sql"] = sandbox.sql("SELECT count(*) FROM employment_histories.job_spells").fetchall()[0][0]
except Exception as e:
    out["sql"] = f"{{type(e).__name__}}: {{e}}"[:300]
try:
    out["raw"] = duckdb.connect().sql(
        f"SELECT count(*) FROM read_parquet('{{root}}/employment_histories/latest/job_spells.parquet')"
    ).fetchall()[0][0]
except Exception as e:
    out["raw"] = f"{{type(e).__name__}}: {{e}}"[:300]
try:
    out["open"] = len(open(f"{{root}}/employment_histories/latest/job_spells.parquet", "rb").read(4))
except Exception as e:
    out["open"] = f"{{type(e).__name__}}: {{e}}"[:300]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hub(demo, open_root):  # noqa: F811
    if os.geteuid() != 0 or useradd_command() is None:
        pytest.skip("secure mode needs root and useradd (the hub creates a Unix account per contestant)")
    assert not remove_accounts(made_accounts())
    shutil.copytree(demo.data_root, open_root / "data", symlinks=True)
    shutil.copytree(demo.conditional_root, open_root / "conditional", symlinks=True)  # modes kept
    settings = hub_settings(open_root, open_root / "data", mode="secure", system_user_prefix=PREFIX, mem_limit="1G")
    assert settings.conditional_root == open_root / "conditional"
    settings.private_root.mkdir(mode=0o700)
    try:
        with running_hub(settings, settings.private_root / "jupyterhub.log") as running:
            yield running
    finally:
        left = remove_accounts(made_accounts())
        for team in TEAMS:
            subprocess.run(["groupdel", conditional_acl.team_group(team)], capture_output=True)
        assert not left, f"test accounts left behind: {left}"


def probe(hub, person) -> dict:
    root = str(hub.settings.conditional_root / DS.id)
    out = kernel_run(hub, *person, PROBE.format(root=root), timeout=300)
    assert out["error"] is None, out
    return json.loads(out["stdout"].strip().splitlines()[-1])


def refused(result: dict) -> bool:
    return (
        "NotFound" in str(result["sql"])
        and ("Permission denied" in str(result["raw"]) or "No files found" in str(result["raw"]))
        and "PermissionError" in str(result["open"])
    )


def test_conditional_data_in_secure_mode(hub, monkeypatch):
    if "submit" not in hub.services:
        pytest.skip("the submission service is not running in this hub (see the hub's output)")
    monkeypatch.delenv("CONTESTHUB_DB_URL", raising=False)
    for key, value in hub.settings.to_env().items():  # what `contesthub` on the hub's machine reads
        monkeypatch.setenv(key, value)
    paths = Paths(hub.settings.data_root, hub.settings.private_root, PROJECT_ROOT / "datasets")
    st = store_mod.connect(paths)
    org = hub.new_token(hub.organizer, session=hub.organizer_session())
    people = {}
    for team in TEAMS:
        name, _, session = hub.account()
        token = hub.new_token(name, session=session)
        assert hub.service("POST", "admin/teams", org, json={"name": team, "members": [name]}).status_code == 201
        people[team] = (name, token)
        hub.spawn(name, token, timeout=240)
    a, b = people[TEAMS[0]], people[TEAMS[1]]
    rows = None

    def cli(*args):
        from hub.cli import cli as root_cli

        result = CliRunner().invoke(root_cli, ["--lang", "en", *args])
        assert result.exit_code == 0, result.output
        return result.output

    # Before approval: every path fails for both teams.
    for person in (a, b):
        assert refused(probe(hub, person)), probe(hub, person)

    # A applies and is approved for 90 seconds; A's server starts again and reads, B does not.
    asked = hub.service(
        "POST",
        "access/requests",
        a[1],
        json={"dataset": DS.id, "purpose": "wage paths", "serves": "a job-search app", "agreement_version": "2026-1"},
    )
    assert asked.status_code == 201, asked.text
    with st.session() as s:
        access.approve(s, DS, asked.json()["id"], "organizer", expires_at=clock.now() + dt.timedelta(seconds=90))
    until = clock.now() + dt.timedelta(seconds=90)
    stop_server(hub, *a)
    hub.spawn(*a, timeout=240)
    got = probe(hub, a)
    rows = got["sql"]
    assert isinstance(rows, int) and rows > 0 and got["raw"] == rows and got["open"] == 4, got
    assert refused(probe(hub, b))
    gid = grp.getgrnam(conditional_acl.team_group(TEAMS[0])).gr_gid
    assert conditional_acl.groups_with_access(hub.settings.conditional_root / DS.id) == {gid}

    # Expiry: the service's minute round takes the team's ACL entry away; the running server fails.
    deadline = time.monotonic() + max(0.0, (until - clock.now()).total_seconds()) + 150
    while conditional_acl.groups_with_access(hub.settings.conditional_root / DS.id) and time.monotonic() < deadline:
        time.sleep(2)
    assert conditional_acl.groups_with_access(hub.settings.conditional_root / DS.id) == set()
    assert refused(probe(hub, a))

    # Approved again with the CLI (the ACL at once: the running server reads), then revoked.
    asked = hub.service(
        "POST",
        "access/requests",
        a[1],
        json={"dataset": DS.id, "purpose": "second round", "serves": "the app", "agreement_version": "2026-1"},
    )
    assert asked.status_code == 201, asked.text
    out = cli("access", "approve", str(asked.json()["id"]), "--days", "7", "--by", "organizer")
    assert f"{TEAMS[0]} may read {DS.id}" in out
    got = probe(hub, a)
    assert got["sql"] == rows and got["raw"] == rows and got["open"] == 4, got
    assert refused(probe(hub, b))
    cli("access", "revoke", str(asked.json()["id"]), "--reason", "shared outside the team", "--by", "organizer")
    assert refused(probe(hub, a))

    with st.session() as s:
        steps = [e.action for e in s.execute(select(AuditEntry).where(AuditEntry.action.like("access.%"))).scalars()]
        kinds = [(e["kind"], e["team"]) for e in access.events(s, dataset=DS.id)]
    assert steps == [
        "access.request",
        "access.approve",
        "access.expire",
        "access.request",
        "access.approve",
        "access.revoke",
    ]
    assert ("server-start", TEAMS[0]) in kinds and ("query", TEAMS[0]) in kinds
    assert all(team == TEAMS[0] for _, team in kinds)
    assert json.loads(cli("audit", "verify", "--json"))["ok"]
    st.dispose()
