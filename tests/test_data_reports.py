"""Issue 17, item 6: data requests and error reports, their triage and the public status page."""

from __future__ import annotations

import datetime as dt
import functools
import json

import pytest
from sqlalchemy import select
from test_leaderboard_app import app_env, open_app, rendered, table  # noqa: F401

from leaderboard import audit, reports
from leaderboard.models import AuditEntry
from sandbox.errors import NotFound
from sandbox.settings import PROJECT_ROOT, Paths

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _reports(store, demo) -> tuple[int, int]:
    with store.session() as s:
        with pytest.raises(NotFound) as err:
            reports.submit(s, demo.data_root, "ann", "error", dataset="nope", description="x")
        assert "ask for a missing dataset with a data request" in err.value.en
        with pytest.raises(NotFound) as err:
            reports.submit(
                s,
                demo.data_root,
                "ann",
                "error",
                dataset="metro_ridership",
                description="x",
                table="daily_entries",
                field="nope",
            )
        assert "has no field 'nope'" in err.value.en and "没有字段 'nope'" in err.value.zh
        with pytest.raises(NotFound):
            reports.submit(s, demo.data_root, "ann", "error", dataset="metro_ridership", description="x", version=99)
        with pytest.raises(reports.ReportError):
            reports.submit(s, demo.data_root, "ann", "request", dataset="x", description="y" * 4001)
        e = reports.submit(
            s,
            demo.data_root,
            "ann_secret_user",
            "error",
            dataset="metro_ridership",
            description="北京 2024-02-10 的进站量为负数",
            version=1,
            table="daily_entries",
            row_key="北京/2024-02-10",
            field="entries",
        ).id
        r = reports.submit(
            s, demo.data_root, "bob_secret_user", "request", dataset="公交刷卡数据", description="按线路的日客流"
        ).id
    return e, r


def test_report_triage_and_audit(store, demo):
    e, r = _reports(store, demo)
    with store.session() as s:
        with pytest.raises(reports.ReportError):
            reports.triage(s, r, "org", "rejected")  # a rejection needs a reason
        with pytest.raises(reports.ReportError):
            reports.triage(s, e, "org", "fixed")  # a fix needs its version
        reports.triage(s, r, "org", "planned", planned_for=dt.date(2027, 3, 1))
        reports.triage(s, e, "org", "fixed", fixed_in_version=2)
        assert reports.fixed_by(s, "metro_ridership", 2) == [e]
        listed = {x["id"]: x for x in reports.public_listing(s)}
        assert listed[r]["status"] == "planned" and listed[r]["planned_for"] == "2027-03-01"
        assert listed[e]["fixed_in_version"] == 2 and listed[e]["row_key"] == "北京/2024-02-10"
        assert "secret_user" not in json.dumps(listed, ensure_ascii=False)
        actions = [x.action for x in s.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()]
        assert actions == ["report.error", "report.request", "report.triage", "report.triage"]
        assert audit.verify(s).ok


def test_the_reports_commands(run_cli, paths, demo, monkeypatch):
    monkeypatch.delenv("CONTESTHUB_DB_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    root = Paths(demo.data_root, paths.private_root, PROJECT_ROOT / "datasets")
    cli = functools.partial(run_cli, root=root)
    sent = cli(
        "reports", "error", "metro_ridership", "--description", "negative", "--table", "daily_entries", "--as", "ann"
    )
    assert sent.exit_code == 0 and "report 1: kept" in sent.output, sent.output
    bad = cli("reports", "error", "metro_ridership", "--description", "x", "--table", "nope", "--as", "ann")
    assert bad.exit_code == 1 and "has no table 'nope'" in bad.output and "Traceback" not in bad.output
    done = cli("reports", "triage", "1", "--status", "rejected", "--reason", "not an error: refunds", "--by", "org")
    assert done.exit_code == 0, done.output
    listed = json.loads(cli("reports", "list", "--json").output)
    assert [(x["id"], x["status"], x["reason"]) for x in listed] == [(1, "rejected", "not an error: refunds")]


@sqlite_only
def test_the_public_status_page(app_env, store, demo):  # noqa: F811
    app_env.setenv("CONTESTHUB_DB_URL", store.url)
    e, r = _reports(store, demo)
    with store.session() as s:
        reports.triage(s, e, "org", "fixed", fixed_in_version=2)
        reports.triage(s, r, "org", "rejected", reason="<b>not held by any publisher</b>")
    at = open_app("reports", lang="en")
    assert at.title[0].value == "Data requests and errors"
    shown = table(at, 0)
    assert list(shown["State"]) == ["rejected: <b>not held by any publisher</b>", "fixed in version 2"]
    assert list(shown["Where"]) == ["", "v1 / daily_entries / entries / 北京/2024-02-10"]
    strings, _ = rendered(at)
    assert not [x for x in strings if "secret_user" in x]
