"""Issue 17, items 2 and 4: requests for conditional data, decisions, expiry, the access log.

Two teams and the demo's conditional dataset (``employment_histories``); every step is
checked in the hash-chained audit log, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import functools
import json

import pytest
from contest_fixtures import NOW
from sqlalchemy import select

from leaderboard import access, audit, teams
from leaderboard.models import AuditEntry
from sandbox import clock
from sandbox.descriptor import load_all
from sandbox.settings import PROJECT_ROOT, Paths

DS = load_all(PROJECT_ROOT / "datasets", ["employment_histories"])[0]
OPEN = load_all(PROJECT_ROOT / "datasets", ["metro_ridership"])[0]
T0 = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)


def _two_teams(s, demo_contest):
    teams.create(s, demo_contest, "alpha", actor="org", members=("ann",), now=NOW)
    teams.create(s, demo_contest, "beta", actor="org", members=("bob",), now=NOW)


def test_request_decide_expire_revoke_each_in_the_audit_log(store, demo_contest):
    with clock.pinned(T0):
        with store.session() as s:
            _two_teams(s, demo_contest)
            with pytest.raises(access.AccessError) as err:
                access.request(s, DS, "ann", purpose="x", serves="y", agreement_version="0")
            assert err.value.code == "agreement-version" and "version 2026-1" in err.value.en
            assert "2026-1 版" in err.value.zh
            with pytest.raises(access.AccessError) as err:
                access.request(s, OPEN, "ann", purpose="x", serves="y", agreement_version="1")
            assert err.value.code == "not-conditional"
            with pytest.raises(access.AccessError) as err:
                access.request(s, DS, "nobody", purpose="x", serves="y", agreement_version="2026-1")
            assert err.value.code == "no-team"
            with pytest.raises(access.AccessError) as err:
                access.request(s, DS, "ann", purpose="x" * 2001, serves="y", agreement_version="2026-1")
            assert err.value.code == "access-field-too-long"
            a = access.request(
                s, DS, "ann", purpose="研究裁员与工资", serves="employment_trend", agreement_version="2026-1"
            ).id
            b = access.request(s, DS, "bob", purpose="turnover", serves="an app", agreement_version="2026-1").id
            with pytest.raises(access.AccessError) as err:
                access.request(s, DS, "ann", purpose="again", serves="y", agreement_version="2026-1")
            assert err.value.code == "access-request-exists"
            assert access.active_grants(s) == {}
        with store.session() as s:
            with pytest.raises(access.AccessError) as err:
                access.approve(s, DS, a, "org", expires_at=T0 + dt.timedelta(days=181))
            assert "at most 180 days" in err.value.en
            access.approve(s, DS, a, "org", expires_at=T0 + dt.timedelta(days=30))
            access.reject(s, b, "reviewer", reason="purpose too vague / 用途不明确")
            assert access.active_grants(s) == {"employment_histories": {"alpha"}}
            assert access.readable_datasets(s, "ann") == ["employment_histories"]
            assert access.readable_datasets(s, "bob") == []
            seen = {r["team"]: r for r in access.listing(s)}
            assert seen["alpha"]["state"] == "approved" and seen["beta"]["state"] == "rejected"
            assert seen["beta"]["reason"] == "purpose too vague / 用途不明确"
    # Thirty days later the grant is over, even before the sync marks it.
    with clock.pinned(T0 + dt.timedelta(days=30, seconds=1)):
        with store.session() as s:
            assert access.active_grants(s) == {}
            assert access.listing(s, team="alpha")[0]["state"] == "expired"
            assert [r.id for r in access.expire_due(s)] == [a]
            assert access.expire_due(s) == []
            c = access.request(s, DS, "ann", purpose="second round", serves="x", agreement_version="2026-1").id
            access.approve(s, DS, c, "org", expires_at=T0 + dt.timedelta(days=60))
            assert access.readable_datasets(s, "ann") == ["employment_histories"]
            access.revoke(s, c, "org", reason="shared the data outside the team")
            assert access.readable_datasets(s, "ann") == []
            with pytest.raises(access.AccessError):
                access.revoke(s, c, "org", reason="twice")
        with store.session() as s:
            actions = [
                (e.action, e.subject)
                for e in s.execute(select(AuditEntry).where(AuditEntry.action.like("access.%"))).scalars()
            ]
            assert actions == [
                ("access.request", "employment_histories/alpha"),
                ("access.request", "employment_histories/beta"),
                ("access.approve", "employment_histories/alpha"),
                ("access.reject", "employment_histories/beta"),
                ("access.expire", "employment_histories/alpha"),
                ("access.request", "employment_histories/alpha"),
                ("access.approve", "employment_histories/alpha"),
                ("access.revoke", "employment_histories/alpha"),
            ]
            assert audit.verify(s).ok
            # The organizers' log names teams; the public sees counts only.
            log = access.events(s, dataset="employment_histories")
            assert [(e["kind"], e["team"]) for e in log] == [("grant", "alpha"), ("grant", "alpha")]
            counts = access.public_counts(s)
            assert counts == {"employment_histories": {"grant": 2}}
            assert "alpha" not in json.dumps(counts)


def test_reviewers_of_the_publishing_body_decide_only_its_datasets():
    assert access.may_decide(DS.reviewers, organizer=False, groups={"reviewers-hrss"})
    assert not access.may_decide(DS.reviewers, organizer=False, groups={"team-alpha"})
    assert not access.may_decide(None, organizer=False, groups={"reviewers-hrss"})
    assert access.may_decide(DS.reviewers, organizer=True)


def test_the_access_commands(run_cli, paths, monkeypatch):
    monkeypatch.delenv("CONTESTHUB_DB_URL", raising=False)
    root = Paths(paths.data_root, paths.private_root, PROJECT_ROOT / "datasets")
    run_cli = functools.partial(run_cli, root=root)
    assert run_cli("teams", "create", "alpha", "ann", "--by", "org").exit_code == 0
    assert run_cli("teams", "create", "beta", "bob", "--by", "org").exit_code == 0
    shown = run_cli("access", "agreement", "employment_histories")
    assert "version 2026-1" in shown.output and "不尝试识别任何个人" in shown.output
    asked = run_cli(
        "access",
        "request",
        "employment_histories",
        "--purpose",
        "wages after lay-offs",
        "--serves",
        "employment_trend",
        "--accept",
        "2026-1",
        "--as",
        "ann",
    )
    assert asked.exit_code == 0, asked.output
    assert "request 1: alpha → employment_histories, pending" in asked.output
    wrong = run_cli(
        "access", "request", "employment_histories", "--purpose", "p", "--serves", "s", "--accept", "1", "--as", "bob"
    )
    assert wrong.exit_code == 1 and "agreement" in wrong.output and "Traceback" not in wrong.output
    approved = run_cli("access", "approve", "1", "--days", "30", "--by", "org")
    assert approved.exit_code == 0, approved.output
    assert "alpha may read employment_histories until" in approved.output
    listed = json.loads(run_cli("access", "list", "--team", "alpha", "--json").output)
    assert [(r["id"], r["state"], r["agreement_version"]) for r in listed] == [(1, "approved", "2026-1")]
    revoked = run_cli("access", "revoke", "1", "--reason", "breach", "--by", "org")
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    log = json.loads(run_cli("access", "log", "--json").output)
    assert [(e["kind"], e["team"], e["user"]) for e in log] == [("grant", "alpha", "org")]
    ok = run_cli("audit", "verify", "--json")
    assert ok.exit_code == 0 and json.loads(ok.output)["ok"]
