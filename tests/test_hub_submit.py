"""Submitting from a notebook, end to end: a real hub, proxy, kernel, submission service and leaderboard.

Two teams are made by the organizer through the service's API (and mirrored as hub groups).
A contestant's kernel builds predictions with ``sandbox.sql`` and sends them with
``sandbox.submit``; the submission is recorded for the right team with the score the offline
scorer gives the same file; the other team cannot see it; a broken file costs nothing and
says what is wrong; the public leaderboard, opened in Chromium through the proxy, shows it.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
import threading
import time
from pathlib import Path

import pytest
import requests
from hub_fixtures import ARTIFACTS, chromium_page, kernel_run

from leaderboard import contest, results, teams
from leaderboard import store as store_mod
from leaderboard.models import SubmissionProvenance
from leaderboard.scoring import score_file
from sandbox import clock
from sandbox.settings import PROJECT_ROOT, Paths

CH = "outpatient_forecast"

SUBMIT = """
import json, sandbox
test = sandbox.sql("SELECT date, hospital_id FROM hospital_outpatient.daily_visits_test").df()
history = sandbox.sql(
    "SELECT hospital_id, avg(outpatient_visits) AS outpatient_visits FROM hospital_outpatient.daily_visits GROUP BY 1"
).df()
predictions = test.merge(history, on="hospital_id")
r = sandbox.submit("outpatient_forecast", predictions)
print(json.dumps({"id": r.id, "status": r.status, "score": r.public_score, "file": r.file, "text": str(r)}))
"""

BROKEN = """
import json, sandbox
test = sandbox.sql("SELECT date, hospital_id FROM hospital_outpatient.daily_visits_test").df()
test["visits"] = 1.0  # the wrong column name
r = sandbox.submit("outpatient_forecast", test)
print(json.dumps({"id": r.id, "status": r.status, "errors": r.errors, "text": str(r)}))
"""


@pytest.fixture(scope="module")
def race(hub):
    if "submit" not in hub.services:
        pytest.skip("the submission service is not running in this hub (see the hub's output)")
    org = hub.new_token(hub.organizer, session=hub.organizer_session())
    people = {}
    for team in ("alpha", "beta"):
        name, _, session = hub.account()
        token = hub.new_token(name, session=session)
        r = service(hub, "POST", "admin/teams", org, json={"name": team, "members": [name]})
        assert r.status_code == 201, r.text
        people[team] = (name, token)
    hub.spawn(*people["alpha"])
    return org, people


def service(hub, method: str, path: str, token: str | None, **kw) -> requests.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.request(method, f"{hub.url}/services/submit/api/{path}", headers=headers, timeout=120, **kw)


def test_teams_made_by_the_organizer_become_hub_groups(hub, race):
    org, people = race
    deadline = time.monotonic() + 30
    while True:
        r = hub.api("GET", "/groups/team-alpha", token=org)
        if (r.status_code == 200 and people["alpha"][0] in r.json()["users"]) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.status_code == 200 and r.json()["users"] == [people["alpha"][0]], r.text


def test_a_notebook_submits_and_gets_the_score_of_its_file(hub, race, demo):
    _org, people = race
    name, token = people["alpha"]
    out = kernel_run(hub, name, token, SUBMIT, timeout=300)
    assert out["error"] is None, out["error"]
    result = json.loads(out["stdout"].strip().splitlines()[-1])
    assert result["status"] == "scored", result["text"]
    assert "公开榜得分" in result["text"] and "public score" in result["text"]

    kept = Path(hub.settings.home_root) / name / result["file"].split(f"/{name}/", 1)[1]
    # Scored offline against the same contest: its private root holds the secret split salt.
    hubs = Paths(demo.data_root, Path(hub.settings.private_root), PROJECT_ROOT / "datasets")
    offline = score_file(contest.load().challenge(CH), kept, hubs)
    assert result["score"] == pytest.approx(offline.public_score)

    mine = service(hub, "GET", "submissions", token)
    assert mine.status_code == 200
    (row,) = mine.json()
    assert row["id"] == result["id"] and row["team"] == "alpha" and row["user"] == name
    assert row["provenance"]["client"] == "sandbox.submit"
    # Sealed: the private score appears in no response, under any name.
    for body in (mine.text, service(hub, "GET", f"submissions/{row['id']}", token).text):
        assert "private" not in body and f"{offline.private_score:.6g}"[:6] not in body

    other = people["beta"][1]
    assert service(hub, "GET", f"submissions/{row['id']}", other).status_code == 404
    assert service(hub, "GET", "submissions", other).json() == []
    quota = service(hub, "GET", "me", token).json()["quotas"]
    assert next(q for q in quota if q["challenge"] == CH)["used"] == 1


def test_a_broken_file_says_what_is_wrong_and_costs_nothing(hub, race):
    _, people = race
    name, token = people["alpha"]
    out = kernel_run(hub, name, token, BROKEN, timeout=300)
    assert out["error"] is None, out["error"]
    result = json.loads(out["stdout"].strip().splitlines()[-1])
    assert result["status"] == "invalid"
    codes = {e["code"] for e in result["errors"]}
    assert {"missing-column", "extra-column"} <= codes, codes
    assert "outpatient_visits" in result["text"] and "不计入提交次数" in result["text"]
    quota = service(hub, "GET", "me", token).json()["quotas"]
    assert next(q for q in quota if q["challenge"] == CH)["used"] == 1  # unchanged by the broken file


def test_the_service_refuses_what_a_caller_may_not_do(hub, race):
    org, people = race
    token = people["alpha"][1]
    assert service(hub, "GET", "me", None).status_code == 401
    bad = service(hub, "GET", "me", "not-a-token")
    assert bad.status_code == 401 and bad.json()["code"] == "bad-token" and bad.json()["message_zh"]
    for method, path in (("GET", "admin/submissions"), ("POST", f"admin/challenges/{CH}/reveal")):
        r = service(hub, method, path, token)
        assert r.status_code == 403 and r.json()["code"] == "organizers-only", r.text
    early = service(hub, "POST", f"admin/challenges/{CH}/reveal", org)
    assert early.status_code == 400 and early.json()["code"] == "reveal-too-early"
    everything = service(hub, "GET", "admin/submissions", org)
    assert everything.status_code == 200 and len(everything.json()) == 2
    spec = service(hub, "GET", "openapi.json", None)
    assert spec.status_code == 200 and "/api/challenges/{challenge}/submissions" in spec.json()["paths"]


def test_a_notebooks_submission_keeps_its_notebook_packages_and_tables_read(hub, race):
    """Issue 19: the notebook (hash and a copy), the package list (and its hash) and the tables the
    kernel read through the sandbox API, sent by sandbox.submit and found in the hub's store."""
    _org, people = race
    name, token = people["alpha"]
    notebook = {
        "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": SUBMIT}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    put = requests.put(
        f"{hub.url}/user/{name}/api/contents/provenance-demo.ipynb",
        json={"type": "notebook", "format": "json", "content": notebook},
        headers={"Authorization": f"token {token}"},
        timeout=60,
    )
    assert put.status_code in (200, 201), put.text
    out = kernel_run(hub, name, token, SUBMIT, timeout=300, notebook="provenance-demo.ipynb")
    assert out["error"] is None, out["error"]
    result = json.loads(out["stdout"].strip().splitlines()[-1])
    assert result["status"] == "scored", result["text"]
    saved = (Path(hub.settings.home_root) / name / "provenance-demo.ipynb").read_bytes()

    again = service(hub, "POST", f"submissions/{result['id']}/provenance", token, json={"packages": []})
    assert again.status_code == 400 and again.json()["code"] == "bad-provenance"  # checked before anything else
    other = people["beta"][1]
    body = {"packages": [], "packages_sha256": "0" * 64}
    assert service(hub, "POST", f"submissions/{result['id']}/provenance", other, json=body).status_code == 404

    paths = Paths(hub.settings.data_root, hub.settings.private_root, PROJECT_ROOT / "datasets")
    store = store_mod.connect(paths, migrate=False, readonly=True)
    try:
        with store.session() as s:
            row = s.get(SubmissionProvenance, result["id"])
            assert row is not None
            assert row.notebook_name == "provenance-demo.ipynb"
            assert row.notebook_sha256 == hashlib.sha256(saved).hexdigest() and row.notebook_size == len(saved)
            assert store.files.path(row.notebook_stored).read_bytes() == saved  # the copy, content-addressed
            assert row.packages_sha256 == hashlib.sha256("\n".join(row.packages).encode()).hexdigest()
            assert any(p.lower().startswith("duckdb==") for p in row.packages)
            read = {(r["dataset"], r["table"]) for r in row.reads}
            assert read == {("hospital_outpatient", "daily_visits_test"), ("hospital_outpatient", "daily_visits")}
            assert all(isinstance(r["version"], int) and r["version"] >= 1 for r in row.reads)
        # The service published its commitments when it started (leaderboard/results.py).
        with store.session() as s:
            committed = {c["challenge"] for c in results.commitments(s)}
        assert committed == {c.id for c in contest.load().challenges}
    finally:
        store.dispose()
    dup = service(hub, "POST", f"submissions/{result['id']}/provenance", token, json=body)
    assert dup.status_code == 409 and dup.json()["code"] == "provenance-recorded"


def test_the_public_leaderboard_shows_the_team_in_a_browser_through_the_proxy(hub, race):
    if "leaderboard" not in hub.services:
        pytest.skip("the leaderboard service is not running in this hub")
    with chromium_page(1400, 900) as page:
        page.goto(f"{hub.url}/services/leaderboard/leaderboard?challenge={CH}")
        try:
            page.wait_for_selector("[data-testid='stDataFrame'], [data-testid='stTable']", timeout=120_000)
            page.wait_for_function("document.body.textContent.includes('alpha')", timeout=60_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / "leaderboard-through-hub.png"), full_page=True)
        text = page.text_content("body")
    assert "alpha" in text and "排行榜" in text


def test_a_roster_import_makes_accounts_that_log_in_and_teams_the_service_knows(hub, race, run_cli, demo, tmp_path):
    roster = tmp_path / "名单.csv"
    roster.write_bytes("队伍,成员,邮箱\n数据先锋,ann01,ann@example.org\n数据先锋,bob02,bob@example.org\n".encode("gbk"))
    root = Paths(demo.data_root, hub.settings.private_root, PROJECT_ROOT / "datasets")
    out = tmp_path / "passwords.csv"
    result = run_cli("teams", "import", str(roster), "--passwords-out", str(out), "--by", "org", root=root)
    assert result.exit_code == 0, result.output
    assert (out.stat().st_mode & 0o777) == 0o600
    rows = list(csv.DictReader(io.StringIO(out.read_text("utf-8-sig"))))
    assert [(r["team"], r["member"]) for r in rows] == [("数据先锋", "ann01"), ("数据先锋", "bob02")]
    session = hub.login("ann01", rows[0]["password"])  # approved already: no waiting for an organizer
    token = hub.new_token("ann01", session=session)
    me = service(hub, "GET", "me", token).json()
    assert me["team"]["name"] == "数据先锋" and me["team"]["members"] == ["ann01", "bob02"]
    again = run_cli("teams", "import", str(roster), root=root)  # the same roster twice changes nothing
    assert (
        again.exit_code == 0
        and "existing account, unchanged" in again.output
        and rows[0]["password"] not in again.output
    )


def test_a_roster_with_mistakes_is_refused_whole_with_every_row_named(run_cli, paths, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "team,member,email\nalpha,Ann Smith,ann@example.org\n,bob,bob-at-example\nbeta,bob,bob@x.org\n", "utf-8"
    )
    root = Paths(paths.data_root, paths.private_root, PROJECT_ROOT / "datasets")
    result = run_cli("teams", "import", str(roster), root=root)
    assert result.exit_code == 1
    for expected in ("row 2, column member", "row 3, column team", "row 3, column email", "row 4, column member"):
        assert expected in result.output, result.output
    assert (
        not (paths.private_root / "contest.sqlite").exists()
        or "alpha" not in run_cli("teams", "list", root=root).output
    )


# --- the service in this process: the event loop never waits for the database ---------------


class AnyUserAuth:
    """The part of HubAuth the service uses: every token is the user of that name, with access."""

    access_scopes = frozenset({"access:services!service=submit"})

    async def user_for_token(self, token: str, sync: bool = True) -> dict:
        return {"kind": "user", "name": token, "groups": []}

    def check_scopes(self, required, model: dict) -> set:
        return set(required)


def test_reads_are_answered_while_a_writer_holds_the_store(store, demo, demo_contest, predictions):
    """A writer holds the store (on SQLite: the write lock, BEGIN IMMEDIATE) while an upload
    waits for it: the leaderboard, the team's submissions, ``me`` and ``health`` are answered
    at once all the same, and the upload is accepted once the writer is done."""
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port

    from hub import submit_service

    with store.session() as s:
        teams.create(s, demo_contest, "alpha", actor="org", members=("ann",))
    body = predictions(CH).read_bytes()
    ctx = submit_service.Context(demo, demo_contest, store, AnyUserAuth())
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with store.session() as s:
            teams.create(s, demo_contest, "beta", actor="org")
            s.flush()
            holding.set()
            release.wait(60)

    async def scenario() -> None:
        sock, port = bind_unused_port()
        server = HTTPServer(submit_service.make_app(ctx, "/services/submit/"), max_body_size=1 << 26)
        server.add_sockets([sock])
        client = AsyncHTTPClient(force_instance=True)
        base = f"http://127.0.0.1:{port}/services/submit/api"

        def call(path: str, method: str = "GET", data: bytes | None = None):
            request = HTTPRequest(
                base + path, method=method, body=data, headers={"Authorization": "token ann"}, request_timeout=60
            )
            return client.fetch(request, raise_error=False)

        held = threading.Thread(target=writer)
        held.start()
        try:
            assert await asyncio.get_running_loop().run_in_executor(None, holding.wait, 30)
            upload = asyncio.ensure_future(call(f"/challenges/{CH}/submissions?file_name=p.csv", "POST", body))
            await asyncio.sleep(0.5)
            if store.engine.dialect.name == "sqlite":
                assert not upload.done()  # waiting for the write lock, in a writer thread
            started = time.monotonic()
            for path in (f"/challenges/{CH}/leaderboard", "/submissions", "/me", "/health"):
                r = await call(path)
                assert r.code == 200, (path, r.code, r.body)
            assert time.monotonic() - started < 5
            release.set()
            r = await upload
            assert r.code == 202, r.body
            doc = json.loads(r.body)
            assert doc["team"] == "alpha" and doc["charged"]
            me = json.loads((await call("/me")).body)
            assert next(q for q in me["quotas"] if q["challenge"] == CH)["used"] == 1
        finally:
            release.set()
            held.join(60)
            client.close()
            server.stop()
            await server.close_all_connections()

    try:
        asyncio.run(scenario())
    finally:
        ctx.shutdown()


def _open_now(contest, **limits):
    """The demo contest with every challenge open now (these tests take the service's own clock)
    and other ``[limits]``."""
    now = clock.now()
    challenges = tuple(
        dataclasses.replace(c, opens=now - dt.timedelta(days=1), closes=now + dt.timedelta(days=1))
        for c in contest.challenges
    )
    return dataclasses.replace(contest, challenges=challenges, limits=dataclasses.replace(contest.limits, **limits))


async def _serve(ctx):
    """The service's app in this process on a free port: ``call(path, method, data, user)`` and a closer."""
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port

    from hub import submit_service

    sock, port = bind_unused_port()
    server = HTTPServer(submit_service.make_app(ctx, "/services/submit/"), max_body_size=1 << 26)
    server.add_sockets([sock])
    client = AsyncHTTPClient(force_instance=True)
    base = f"http://127.0.0.1:{port}/services/submit/api"

    def call(path: str, method: str = "GET", data: bytes | None = None, user: str = "ann"):
        request = HTTPRequest(
            base + path, method=method, body=data, headers={"Authorization": f"token {user}"}, request_timeout=60
        )
        return client.fetch(request, raise_error=False)

    async def close() -> None:
        client.close()
        server.stop()
        await server.close_all_connections()

    return call, close


def test_an_upload_beyond_the_teams_rate_is_refused_with_retry_after(store, demo, demo_contest, predictions):
    """The attack: invalid files, one after the other, cost nothing. Now a team stores at most
    ``uploads_per_minute`` files a minute (here 2, invalid ones included): the next upload is a
    429 in zh and en with Retry-After, and leaves nothing behind."""
    from hub import submit_service

    contest = _open_now(demo_contest, uploads_per_minute=2)
    with store.session() as s:
        teams.create(s, contest, "alpha", actor="org", members=("ann",))
    broken = predictions(CH, edit=lambda df: df.rename(columns={"outpatient_visits": "visits"})).read_bytes()
    ctx = submit_service.Context(demo, contest, store, AnyUserAuth())

    async def scenario() -> None:
        call, close = await _serve(ctx)
        try:
            url = f"/challenges/{CH}/submissions?file_name=p.csv"
            for _ in range(2):
                assert (await call(url, "POST", broken)).code == 202
            r = await call(url, "POST", broken)
            assert r.code == 429, r.body
            doc = json.loads(r.body)
            assert doc["code"] == "rate-limited" and doc["status"] == 429
            assert 1 <= int(r.headers["Retry-After"]) <= 60 and doc["retry_after"] == int(r.headers["Retry-After"])
            assert "in the last minute" in doc["message_en"] and "秒后再试" in doc["message_zh"]
            listing = json.loads((await call("/submissions")).body)
            assert len(listing) == 2
        finally:
            await close()

    try:
        asyncio.run(scenario())
    finally:
        ctx.shutdown()
    assert not list(store.files.incoming.iterdir())


def test_polls_of_a_pending_submission_cost_no_store_transaction(store, demo, demo_contest, predictions):
    """A waiting client asks every half second. While its submission is pending the service
    answers from what one refresh read for every pending submission; the store is read for it
    again only once it is scored. Another team's poll is never answered from there."""
    from sqlalchemy import event
    from tornado import ioloop

    from hub import scorer, submit_service

    contest = _open_now(demo_contest)
    with store.session() as s:
        teams.create(s, contest, "alpha", actor="org", members=("ann",))
        teams.create(s, contest, "beta", actor="org", members=("bob",))
    body = predictions(CH, noise=0.1).read_bytes()
    ctx = submit_service.Context(demo, contest, store, AnyUserAuth())
    statements: list[str] = []

    def seen(_conn, _cursor, sql, *_args) -> None:
        statements.append(sql)

    # SQLite reads through an engine of their own; PostgreSQL's read engine shares the writer's events.
    engines = [store.engine] + ([store.read_engine] if store.read_engine.pool is not store.engine.pool else [])
    for engine in engines:
        event.listen(engine, "before_cursor_execute", seen)

    def team_reads() -> int:  # the read a poll makes without the watch (submissions.one_for_team)
        return sum("FROM submissions LEFT OUTER JOIN scores" in q and "submissions.id = " in q for q in statements)

    async def scenario() -> None:
        refresh = ioloop.PeriodicCallback(ctx.refresh_pending, submit_service.WATCH_EVERY * 1000)
        refresh.start()
        call, close = await _serve(ctx)
        try:
            r = await call(f"/challenges/{CH}/submissions?file_name=p.csv", "POST", body)
            assert r.code == 202
            sid = json.loads(r.body)["id"]
            statements.clear()
            started = time.monotonic()
            for _ in range(12):
                r = await call(f"/submissions/{sid}")
                assert r.code == 200 and json.loads(r.body)["status"] == "received"
                await asyncio.sleep(0.1)
            refreshes = sum("WHERE submissions.id IN" in q for q in statements)
            assert team_reads() == 0  # twelve polls, no read of their own
            assert 1 <= refreshes <= (time.monotonic() - started) / submit_service.WATCH_EVERY + 2
            assert (await call(f"/submissions/{sid}", user="bob")).code == 404  # not beta's: asked of the store
            assert team_reads() == 1
            worker = scorer.Worker(store, contest, demo, scorer.Limits())
            assert await asyncio.get_running_loop().run_in_executor(None, worker.drain) == 1
            deadline = time.monotonic() + 5
            while (doc := json.loads((await call(f"/submissions/{sid}")).body))["status"] != "scored":
                assert time.monotonic() < deadline, doc
                await asyncio.sleep(0.1)
            assert doc["public_score"] is not None and doc["charged"]
        finally:
            refresh.stop()
            await close()

    try:
        asyncio.run(scenario())
    finally:
        ctx.shutdown()
        for engine in engines:
            event.remove(engine, "before_cursor_execute", seen)


def test_a_long_poll_is_answered_as_soon_as_the_submission_is_scored(store, demo, demo_contest, predictions):
    """``GET submissions/{id}?wait=20`` (what sandbox.submit sends) holds the request while the
    submission is pending and answers within a refresh of its being scored; a wait beyond 30 s
    is refused, a pending one past its wait is answered as pending."""
    from tornado import ioloop

    from hub import scorer, submit_service

    contest = _open_now(demo_contest)
    with store.session() as s:
        teams.create(s, contest, "alpha", actor="org", members=("ann",))
    ctx = submit_service.Context(demo, contest, store, AnyUserAuth())

    async def scenario() -> None:
        refresh = ioloop.PeriodicCallback(ctx.refresh_pending, submit_service.WATCH_EVERY * 1000)
        refresh.start()
        call, close = await _serve(ctx)
        try:
            r = await call(f"/challenges/{CH}/submissions?file_name=p.csv", "POST", predictions(CH).read_bytes())
            sid = json.loads(r.body)["id"]
            bad = await call(f"/submissions/{sid}?wait=31")
            assert bad.code == 400 and json.loads(bad.body)["code"] == "bad-query"
            started = time.monotonic()
            short = json.loads((await call(f"/submissions/{sid}?wait=1")).body)
            assert short["status"] == "received" and 0.9 < time.monotonic() - started < 3
            poll = asyncio.ensure_future(call(f"/submissions/{sid}?wait=20"))
            await asyncio.sleep(1)
            assert not poll.done()  # held while it is pending
            worker = scorer.Worker(store, contest, demo, scorer.Limits())
            assert await asyncio.get_running_loop().run_in_executor(None, worker.drain) == 1
            scored = time.monotonic()
            doc = json.loads((await poll).body)
            assert doc["status"] == "scored" and doc["public_score"] is not None
            assert time.monotonic() - scored < 2  # a refresh (0.25 s) after it was scored, not the 20 s
        finally:
            refresh.stop()
            await close()

    try:
        asyncio.run(scenario())
    finally:
        ctx.shutdown()
