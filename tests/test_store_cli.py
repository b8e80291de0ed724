"""The organizer's store commands: teams, grants, submissions, audit verification."""

from __future__ import annotations

import functools
import json
import sqlite3

from contest_fixtures import NOW

from sandbox.settings import PROJECT_ROOT, Paths


def test_team_commands_grant_and_audit_verify(run_cli, paths, monkeypatch):
    monkeypatch.delenv("CONTESTHUB_DB_URL", raising=False)
    root = Paths(paths.data_root, paths.private_root, PROJECT_ROOT / "datasets")  # the demo contest's datasets
    run_cli = functools.partial(run_cli, root=root)
    created = run_cli("teams", "create", "数据先锋", "ann", "bob", "--display-name", "Data Pioneers", "--by", "org")
    assert created.exit_code == 0, created.output
    assert run_cli("teams", "create", "beta", "carl", "--by", "org").exit_code == 0
    taken = run_cli("teams", "add", "beta", "ann", "--by", "org")
    assert taken.exit_code == 1 and "already in team '数据先锋'" in taken.output
    listed = json.loads(run_cli("teams", "list", "--json").output)
    assert {t["name"]: t["members"] for t in listed} == {"beta": ["carl"], "数据先锋": ["ann", "bob"]}
    day = NOW.date().isoformat()
    granted = run_cli("grant", "beta", "outpatient_forecast", "2", "--reason", "outage", "--day", day, "--by", "org")
    assert granted.exit_code == 0 and "+2" in granted.output
    no_reason = run_cli("grant", "beta", "outpatient_forecast", "2")
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output

    ok = run_cli("audit", "verify", "--json")
    assert ok.exit_code == 0 and json.loads(ok.output) == {"ok": True, "entries": 6, "problems": []}
    with sqlite3.connect(paths.private_root / "contest.sqlite") as db:
        db.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 4")
    broken = run_cli("audit", "verify")
    assert broken.exit_code == 1 and "entry 4" in broken.output and "changed" in broken.output
