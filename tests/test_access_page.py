"""Issue 17: the leaderboard's conditional-data page (leaderboard/views/access.py).

The public sees each conditional dataset with its agreement and counts only; the publishing
body's reviewers (their hub group, named in the descriptor) and organizers see the requests,
decide them (each decision in the audit log) and read the access log per dataset and team.
"""

from __future__ import annotations

import datetime as dt

import pytest
from contest_fixtures import NOW
from sqlalchemy import select
from test_leaderboard_app import app_env, open_app, rendered, table  # noqa: F401

from leaderboard import access, audit, teams
from leaderboard.models import AuditEntry
from sandbox.descriptor import load_all
from sandbox.settings import PROJECT_ROOT

DS = load_all(PROJECT_ROOT / "datasets", ["employment_histories"])[0]
REVIEWER = {"name": "rev", "admin": False, "groups": ["reviewers-hrss"]}
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def requests_made(app_env, store, demo, demo_contest):  # noqa: F811
    app_env.setenv("CONTESTHUB_DATA_ROOT", str(demo.data_root))
    app_env.setenv("CONTESTHUB_DB_URL", store.url)
    with store.session() as s:
        teams.create(s, demo_contest, "secret_team_a", actor="org", members=("ann",), now=NOW)
        teams.create(s, demo_contest, "secret_team_b", actor="org", members=("bob",), now=NOW)
        a = access.request(s, DS, "ann", purpose="工资轨迹研究", serves="a job app", agreement_version="2026-1").id
        b = access.request(s, DS, "bob", purpose="turnover", serves="x", agreement_version="2026-1").id
        access.approve(s, DS, a, "org", expires_at=NOW + dt.timedelta(days=30))
        team_a = teams.get(s, "secret_team_a")
        access.log_event(s, DS.id, team_a, "ann", "query", {"api": "sql"})
    return store, a, b


@sqlite_only
def test_the_public_sees_the_agreement_and_counts_only(requests_made):
    at = open_app("access", lang="en")
    assert at.title[0].value == "Conditional data"
    shown = table(at, 0)
    assert list(shown["Dataset"]) == ["Individual employment histories (synthetic, conditional) (employment_histories)"]
    assert list(shown["Teams approved now"]) == [1] and list(shown["Queries through the sandbox API"]) == [1]
    strings, _ = rendered(at)
    text = " ".join(strings)
    assert "identify any person" in text and "version 2026-1" in text
    for private in ("secret_team_a", "secret_team_b", "ann", "工资轨迹研究"):
        assert private not in text
    assert len(at.dataframe) == 1  # no requests, no log


@sqlite_only
def test_the_sharing_list_names_not_open_data_with_its_reason(app_env, store, paths, make_dataset, build):  # noqa: F811
    from factories import field
    from factories import table as table_spec

    app_env.setenv("CONTESTHUB_DATA_ROOT", str(paths.data_root))
    app_env.setenv("CONTESTHUB_DB_URL", store.url)
    ds = make_dataset(
        {"t": table_spec([field("a")])},
        {"data.csv": "a\n1\n"},
        open_tier="not-open",
        access={"reason": {"zh": "涉及国家秘密", "en": "Involves state secrets"}},
    )
    assert build(ds).status == "not-open"
    at = open_app("access", lang="en")
    shown = table(at, 0)
    assert list(shown["Dataset"]) == [f"Test data ({ds.id})"]
    assert list(shown["Reason"]) == ["Involves state secrets"]
    assert at.info[0].value == "There is no conditional dataset at the moment."


@sqlite_only
def test_a_reviewer_decides_and_reads_the_log(requests_made):
    store, a, b = requests_made
    at = open_app("access", lang="en", user=REVIEWER)
    requests = table(at, 1)
    assert list(requests["Team"]) == ["secret_team_a", "secret_team_b"]
    assert list(requests["State"]) == ["approved", "pending"]
    at.text_input(key="why-employment_histories").set_value("purpose too vague")
    next(b_ for b_ in at.button if b_.label == "Reject").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"Request {b} decided" in at.success[0].value
    at.text_input(key="revoke-why-employment_histories").set_value("breach of the agreement")
    next(b_ for b_ in at.button if b_.label == "Revoke").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with store.session() as s:
        decisions = [
            (e.actor, e.action)
            for e in s.execute(select(AuditEntry).where(AuditEntry.action.like("access.%"))).scalars()
        ]
        assert audit.verify(s).ok
        states = {r["id"]: r["state"] for r in access.listing(s)}
    assert decisions[-2:] == [("rev", "access.reject"), ("rev", "access.revoke")]
    assert states == {a: "revoked", b: "rejected"}
    log = table(at, len(at.dataframe) - 1)
    assert ("secret_team_a", "ann", "query") in set(zip(log["Team"], log["User"], log["Kind"], strict=True))


@sqlite_only
def test_someone_outside_the_reviewers_sees_no_request(requests_made):
    at = open_app("access", user={"name": "eve", "admin": False, "groups": ["reviewers-other"]})
    assert len(at.dataframe) == 1
    strings, _ = rendered(at)
    assert "secret_team_a" not in " ".join(strings)
