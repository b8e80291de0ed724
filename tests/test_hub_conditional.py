"""Issue 17, item 5: two teams and one conditional dataset on a real hub (demo mode here;
secure mode in tests/test_hub_secure.py::test_conditional_data_in_secure_mode).

Before approval ``sandbox.sql`` over ``employment_histories`` fails for both teams; after
approval it works for the approved team only; after expiry and after revocation it fails
again; each step is in the audit log, which verifies. In demo mode a kernel runs as the hub's
own account, so a raw ``duckdb`` read or ``open()`` of the conditional root is NOT prevented:
this test records that limitation (the README says so) instead of pretending otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from hub_fixtures import kernel_run
from sqlalchemy import select

from leaderboard import access, audit
from leaderboard import store as store_mod
from leaderboard.models import AccessRequest, AuditEntry
from sandbox import clock
from sandbox.descriptor import load_all
from sandbox.settings import PROJECT_ROOT, Paths

DS = load_all(PROJECT_ROOT / "datasets", ["employment_histories"])[0]

PROBE = """
import json, duckdb, sandbox
root = {root!r}  # the dataset's own root: <conditional root>/<dataset>
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
    open(f"{{root}}/employment_histories/latest/catalog.json").read(10)
    out["open"] = "read"
except Exception as e:
    out["open"] = f"{{type(e).__name__}}: {{e}}"[:300]
print(json.dumps(out))
"""


APPLY = """
import json, sandbox
r = sandbox.request_access("employment_histories", purpose="turnover", serves="an app", accept="2026-1")
print(json.dumps({"team": r["team"], "state": r["state"]}))
"""


def probe(hub, person, root) -> dict:
    out = kernel_run(hub, *person, PROBE.format(root=str(root)), timeout=300)
    assert out["error"] is None, out
    return json.loads(out["stdout"].strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_teams(hub):
    if "submit" not in hub.services:
        pytest.skip("the submission service is not running in this hub (see the hub's output)")
    org = hub.new_token(hub.organizer, session=hub.organizer_session())
    people = {}
    for team in ("cond_a", "cond_b"):
        name, _, session = hub.account()
        token = hub.new_token(name, session=session)
        r = hub.service("POST", "admin/teams", org, json={"name": team, "members": [name]})
        assert r.status_code == 201, r.text
        people[team] = (name, token)
        hub.spawn(name, token)
    return people


def test_conditional_data_in_demo_mode(hub, two_teams, demo, monkeypatch):
    monkeypatch.delenv("CONTESTHUB_DB_URL", raising=False)
    a, b = two_teams["cond_a"], two_teams["cond_b"]
    root = hub.settings.conditional_root / "employment_histories"
    assert root == demo.conditional_root / "employment_histories"
    rows = sum(
        t["rows"]
        for t in json.loads((root / "catalog.json").read_text())["datasets"]["employment_histories"]["entry"][
            "tables"
        ].values()
    )
    st = store_mod.connect(Paths(hub.settings.data_root, hub.settings.private_root, PROJECT_ROOT / "datasets"))

    def sql_of(person):
        return probe(hub, person, root)["sql"]

    # Before any approval: no team reads it through the sandbox API.
    for person in (a, b):
        assert "employment_histories" in sql_of(person) and "NotFound" in sql_of(person)

    # Team A applies through the service (as a notebook would), team B too; A is approved.
    asked = hub.service(
        "POST",
        "access/requests",
        a[1],
        json={
            "dataset": DS.id,
            "purpose": "wages after lay-offs",
            "serves": "a job-search app",
            "agreement_version": "2026-1",
        },
    )
    assert asked.status_code == 201, asked.text
    # Team B applies from a notebook, and sees its state there.
    applied = kernel_run(hub, *b, APPLY, timeout=300)
    assert applied["error"] is None, applied
    assert json.loads(applied["stdout"].strip().splitlines()[-1]) == {"team": "cond_b", "state": "pending"}
    with st.session() as s:
        a_req, b_req = (r["id"] for r in access.listing(s, dataset=DS.id) if r["team"] in ("cond_a", "cond_b"))
        access.approve(s, DS, a_req, "organizer", expires_at=clock.now() + dt.timedelta(seconds=40))
        access.reject(s, b_req, "organizer", reason="purpose too vague")
    until = clock.now() + dt.timedelta(seconds=40)
    assert sql_of(a) == rows
    assert "NotFound" in sql_of(b)
    seen = kernel_run(hub, *b, "import sandbox; print(sandbox.access_requests()[['state', 'reason']].to_json())")
    assert json.loads(seen["stdout"]) == {"state": {"0": "rejected"}, "reason": {"0": "purpose too vague"}}
    # Demo mode cannot stop a raw read of the files: the kernel runs as the hub's own account.
    raw = probe(hub, b, root)
    assert raw["raw"] == rows and raw["open"] == "read"

    # After the expiry: refused again (the service checks the time at every query).
    time.sleep(max(0.0, (until - clock.now()).total_seconds()) + 1)
    assert "NotFound" in sql_of(a)
    with st.session() as s:
        access.expire_due(s)  # unless the service's own minute round recorded the expiry first
        assert s.get(AccessRequest, a_req).status == "expired"

    # Approved again, then revoked: refused at once.
    with st.session() as s:
        again = access.request(s, DS, a[0], purpose="second round", serves="x", agreement_version="2026-1").id
        access.approve(s, DS, again, "organizer", expires_at=clock.now() + dt.timedelta(days=7))
    assert sql_of(a) == rows
    with st.session() as s:
        access.revoke(s, again, "organizer", reason="shared outside the team")
    assert "NotFound" in sql_of(a)

    with st.session() as s:
        steps = [
            (e.action, e.subject)
            for e in s.execute(select(AuditEntry).where(AuditEntry.action.like("access.%"))).scalars()
        ]
        assert audit.verify(s).ok
        log = access.events(s, dataset=DS.id)
    assert steps == [
        ("access.request", "employment_histories/cond_a"),
        ("access.request", "employment_histories/cond_b"),
        ("access.approve", "employment_histories/cond_a"),
        ("access.reject", "employment_histories/cond_b"),
        ("access.expire", "employment_histories/cond_a"),
        ("access.request", "employment_histories/cond_a"),
        ("access.approve", "employment_histories/cond_a"),
        ("access.revoke", "employment_histories/cond_a"),
    ]
    kinds = [(e["kind"], e["team"]) for e in reversed(log)]
    assert kinds.count(("grant", "cond_a")) == 2 and kinds.count(("query", "cond_a")) == 2
    assert all(team == "cond_a" for _, team in kinds)
    st.dispose()
