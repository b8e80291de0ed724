"""The demo contest's moving schedule and the contest file's date checks.

Every test takes "now" from ``sandbox.clock`` (pinned): the demo must be open on the day it is
first brought up whatever that day is, closable to "ready to reveal", and a real contest's
dates must never move.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil

import pytest
from contest_fixtures import NOW
from sqlalchemy import select

from leaderboard import audit, contest, publish, ranking, schedule, submissions, teams
from leaderboard import store as store_mod
from leaderboard.contest import ContestConfigError
from leaderboard.models import AuditEntry
from leaderboard.submissions import SubmissionRefused
from sandbox import clock
from sandbox.settings import PROJECT_ROOT, Paths

DEMO = PROJECT_ROOT / "config" / "contest.toml"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
CH = "outpatient_forecast"
# Leap days, the turn of a year, a Shanghai day that starts while it is still yesterday in UTC.
MOMENTS = [
    dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC),
    dt.datetime(2027, 2, 1, 0, 0, tzinfo=SHANGHAI),
    dt.datetime(2027, 12, 31, 23, 59, tzinfo=SHANGHAI),
    dt.datetime(2028, 2, 29, 23, 30, tzinfo=dt.UTC),
    dt.datetime(2029, 7, 15, 16, 5, tzinfo=dt.UTC),
    dt.datetime(2031, 6, 1, 3, 0, tzinfo=dt.UTC),
]


def open_at(c: contest.Contest, moment: dt.datetime) -> list[str]:
    return [ch.id for ch in c.challenges if ch.opens <= moment < ch.closes]


@pytest.mark.parametrize("moment", MOMENTS, ids=lambda m: m.isoformat()[:16])
def test_the_demo_is_open_on_the_day_it_is_first_brought_up(moment, tmp_path):
    with clock.pinned(moment):
        recorded = schedule.start(contest.load(DEMO, private_root=tmp_path), tmp_path)
        c = contest.load(DEMO, private_root=tmp_path)
    assert recorded.day == moment.astimezone(c.timezone).date() == c.anchor_day
    assert open_at(c, moment) == [ch.id for ch in c.challenges]
    assert not c.teams_frozen(moment)
    assert [p.id for p in c.phases if p.start <= moment <= p.end] == ["open"]
    # The shape is kept: a month open before the day, the reveal at 10:00 contest time.
    ch = c.challenge(CH)
    assert (c.anchor_day - ch.opens.date()).days == 30
    assert ch.reveal.astimezone(c.timezone).time() == dt.time(10, 0)
    assert ch.closes.astimezone(c.timezone).time() == dt.time(23, 59, 59)


def test_a_recorded_anchor_keeps_one_schedule_across_restarts_and_days(tmp_path):
    with clock.pinned(NOW):
        schedule.start(contest.load(DEMO, private_root=tmp_path), tmp_path)
        first = contest.load(DEMO, private_root=tmp_path)
    later = NOW + dt.timedelta(days=40)
    with clock.pinned(later):
        again = schedule.start(contest.load(DEMO, private_root=tmp_path), tmp_path)
        c = contest.load(DEMO, private_root=tmp_path)
    assert again.day == NOW.date() and c.challenges == first.challenges
    assert open_at(c, later) == [ch.id for ch in c.challenges]


def test_an_open_demo_found_over_is_rolled_forward_but_a_closed_one_stays_closed(tmp_path):
    with clock.pinned(NOW):
        schedule.start(contest.load(DEMO, private_root=tmp_path), tmp_path)
    months_later = NOW + dt.timedelta(days=200)  # the demo closed long ago and nobody closed it on purpose
    with clock.pinned(months_later):
        rolled = schedule.start(contest.load(DEMO, private_root=tmp_path), tmp_path)
        c = contest.load(DEMO, private_root=tmp_path)
        assert rolled.day == months_later.date() and rolled.state == schedule.OPEN
        assert open_at(c, months_later) == [ch.id for ch in c.challenges]

        closed = schedule.close(c, tmp_path, by="org")
        kept = schedule.start(contest.load(DEMO, private_root=tmp_path), tmp_path)
        assert kept == closed and kept.state == schedule.CLOSED
        assert open_at(contest.load(DEMO, private_root=tmp_path), months_later) == []


def test_close_makes_the_demo_ready_to_reveal_and_open_brings_it_back(store, demo, predictions, tmp_path):
    private = tmp_path / "schedule"
    moment = dt.datetime(2029, 7, 15, 16, 5, tzinfo=dt.UTC)
    with clock.pinned(moment):
        schedule.start(contest.load(DEMO, private_root=private), private)
        c = contest.load(DEMO, private_root=private)
        with store.session() as s:
            teams.create(s, c, "alpha", actor="org", members=("ann",))
        path = predictions(CH)
        with open(path, "rb") as f:
            upload = store.files.receive(f, c.upload_limit)
        sub = submissions.accept(store, c, user="ann", challenge_id=CH, upload=upload, file_name=path.name)
        submissions.score(store, c, demo, sub.id)

        anchor = schedule.close(c, private, by="org")
        closed = contest.load(DEMO, private_root=private)
    assert anchor.state == schedule.CLOSED and anchor.by == "org"
    yesterday = moment.astimezone(closed.timezone).date() - dt.timedelta(days=1)
    assert closed.last_close.astimezone(closed.timezone).date() == yesterday
    assert open_at(closed, moment) == []
    assert [p.id for p in closed.phases if p.start <= moment <= p.end] == ["review"]
    assert closed.challenge(CH).opens <= sub.created_at  # what was submitted still counts
    with clock.pinned(moment), open(path, "rb") as f:
        upload = store.files.receive(f, closed.upload_limit)
        with pytest.raises(SubmissionRefused) as refused:
            submissions.accept(store, closed, user="ann", challenge_id=CH, upload=upload, file_name=path.name)
        assert refused.value.code == "challenge-closed"
        with store.session() as s:
            ranking.reveal(s, closed, CH, by="org")  # ready to reveal: no error
        with store.session() as s:
            (row,) = ranking.private_standings(s, closed.challenge(CH))
        assert row["team"] == "alpha"

        schedule.open_today(closed, private, by="org")
        reopened = contest.load(DEMO, private_root=private)
    assert open_at(reopened, moment) == [ch.id for ch in reopened.challenges]


def test_a_real_contest_keeps_its_dates_and_refuses_the_demo_commands(tmp_path):
    real = tmp_path / "real.toml"
    real.write_text(re.sub(r"(?m)^demo = .*$", "", DEMO.read_text("utf-8")), "utf-8")
    with clock.pinned(dt.datetime(2031, 6, 1, 3, 0, tzinfo=dt.UTC)):
        c = contest.load(real, private_root=tmp_path)
        assert schedule.start(c, tmp_path) is None and not schedule.path(tmp_path).exists()
        assert c.challenge(CH).closes == dt.datetime(2027, 1, 31, 23, 59, 59, tzinfo=SHANGHAI)
        with pytest.raises(schedule.DemoScheduleError, match="fixed dates"):
            schedule.close(c, tmp_path, by="org")


def write_variant(tmp_path, *edits: tuple[str, str]):
    text = DEMO.read_text("utf-8")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    out = tmp_path / "contest.toml"
    out.write_text(text, "utf-8")
    return out


@pytest.mark.parametrize(
    ("edits", "key", "what"),
    [
        (
            [("demo = { day = 2026-12-01 }", "demo = { day = 2027-03-01 }")],
            "challenges[0].opens",
            "is not open on the demo's day 2027-03-01",
        ),
        (
            [("team_freeze = 2027-01-24T23:59:59+08:00", "team_freeze = 2027-02-24T23:59:59+08:00")],
            "team_freeze",
            "teams freeze after every challenge has closed",
        ),
        (
            [("reveal = 2027-02-03T10:00:00+08:00", "reveal = 2027-01-03T10:00:00+08:00")],
            "challenges[0].opens",
            "out of order",
        ),
    ],
    ids=["demo-day-outside-window", "freeze-after-close", "reveal-before-close"],
)
def test_inconsistent_dates_are_refused_with_file_and_key(tmp_path, edits, key, what):
    with pytest.raises(ContestConfigError) as err:
        contest.load(write_variant(tmp_path, *edits), anchor_day=NOW.date())
    assert any(p.path == key and what in p.what for p in err.value.problems), err.value.problems


@pytest.fixture
def demo_copy(demo, tmp_path) -> Paths:
    """A private copy of the built demo (4 MB): its published rules may be rewritten."""
    copy = Paths(tmp_path / "copy" / "data", tmp_path / "copy" / "private", PROJECT_ROOT / "datasets")
    shutil.copytree(demo.data_root, copy.data_root, symlinks=True)
    shutil.copytree(demo.private_root / "solutions", copy.private_root / "solutions")
    return copy.ensure()


def test_the_cli_closes_and_reopens_the_demo_records_it_and_republishes_the_rules(run_cli, demo_copy):
    moment = dt.datetime(2030, 4, 10, 8, 0, tzinfo=dt.UTC)
    rules = demo_copy.data_root / publish.FILE
    with clock.pinned(moment):
        opened = run_cli("contest", "demo", "open", "--by", "org", "--json", root=demo_copy)
        assert opened.exit_code == 0, opened.output
        assert json.loads(opened.output)["anchor_day"] == "2030-04-10"
        closed = run_cli("contest", "demo", "close", "--by", "org", "--json", root=demo_copy)
        assert closed.exit_code == 0, closed.output
        doc = json.loads(closed.output)
        assert doc["state"] == "closed"
        assert all(dt.datetime.fromisoformat(ch["closes"]) < moment for ch in doc["challenges"])
        assert json.loads(run_cli("contest", "demo", "--json", root=demo_copy).output) == doc
    # What sandboxes read (sandbox.validate) carries the dates in force.
    published = {ch["id"]: ch["closes"] for ch in json.loads(rules.read_text("utf-8"))["challenges"]}
    assert published == {ch["id"]: ch["closes"] for ch in doc["challenges"]}
    st = store_mod.connect(demo_copy)
    try:
        with st.read_session() as s:
            entries = s.execute(select(AuditEntry.action, AuditEntry.actor).order_by(AuditEntry.seq)).all()
            assert audit.verify(s).ok
    finally:
        st.dispose()
    assert [tuple(e) for e in entries] == [("demo.open", "org"), ("demo.close", "org")]


def test_the_demo_commands_say_what_to_do_for_a_real_contest(run_cli, demo_copy, tmp_path):
    real = tmp_path / "real.toml"
    real.write_text(re.sub(r"(?m)^demo = .*$", "", DEMO.read_text("utf-8")), "utf-8")
    r = run_cli("contest", "demo", "close", "--contest", str(real), root=demo_copy)
    assert r.exit_code == 1 and "fixed dates" in r.output and "Traceback" not in r.output
