"""The application track's engine (leaderboard/applications.py): 6 entries, 5 jurors.

Entries with versions (the last before the deadline counts), files checked by their bytes, a
blind jury (no team names or members in what a juror sees), conflicts (a conflicted juror is
never assigned and cannot open the entry by its code), at least 3 jurors per entry assigned
evenly, and published results equal to the trimmed means the test computes itself.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
from sqlalchemy import select
from test_leaderboard_app import app_env, open_app, table  # noqa: F401 (a fixture)

from leaderboard import applications as apps
from leaderboard import backup, contest, teams
from leaderboard.applications import ApplicationError, File
from leaderboard.models import Application, AuditEntry
from sandbox import clock
from sandbox.settings import PROJECT_ROOT, Paths

CST = dt.timezone(dt.timedelta(hours=8))
OPEN = dt.datetime(2026, 12, 1, 10, tzinfo=CST)
JUDGING = dt.datetime(2027, 1, 5, 10, tzinfo=CST)
AFTER = dt.datetime(2027, 1, 20, 10, tzinfo=CST)

CONTEST = """title = { zh = "应用赛", en = "Application contest" }
timezone = "Asia/Shanghai"

[application_track]
title = { zh = "应用创新赛道", en = "Application innovation track" }
opens = 2026-11-01T00:00:00+08:00
closes = 2026-12-31T23:59:59+08:00
reveal = 2027-01-15T10:00:00+08:00
writeup_mb = 1
jurors_per_entry = 3
trim = 1
criteria = [
  { id = "innovation", title = { zh = "创新性", en = "Innovation" }, weight = 0.3 },
  { id = "value", title = { zh = "应用价值", en = "Value" }, weight = 0.3 },
  { id = "technique", title = { zh = "技术实现", en = "Technique" }, weight = 0.2 },
  { id = "data", title = { zh = "数据使用", en = "Use of data" }, weight = 0.2 },
]
awards = [
  { id = "first", title = { zh = "一等奖", en = "First prize" }, count = 1 },
  { id = "second", title = { zh = "二等奖", en = "Second prize" }, count = 1 },
  { id = "third", title = { zh = "三等奖", en = "Third prize" }, count = 2 },
  { id = "merit", title = { zh = "优秀奖", en = "Honourable mention" }, share = 0.2 },
]

[[challenges]]
id = "outpatient_forecast"
title = { zh = "门诊量预测", en = "Outpatient visit forecast" }
description = { zh = "预测", en = "forecast" }
dataset = "hospital_outpatient"
table = "daily_visits"
id_columns = ["date", "hospital_id"]
target = "outpatient_visits"
metric = "rmse"
public_fraction = 0.3
daily_quota = 5
max_team_size = 5
opens = 2026-11-01T00:00:00+08:00
closes = 2027-01-31T23:59:59+08:00
reveal = 2027-02-03T10:00:00+08:00
"""
TEAMS = [
    f"队伍{n}-{name}"
    for n, name in zip("甲乙丙丁戊己", ("Alpha", "Beta", "Gamma", "Delta", "Eps", "Zeta"), strict=True)
]
JURORS = ["j1", "j2", "j3", "j4", "j5"]
BASE = [9, 8, 7, 6, 5, 4]  # how good each team's entry is
BIAS = {"j1": 1, "j2": 0, "j3": -1, "j4": 2, "j5": -2}  # how generous each juror is
WEIGHTS = {"innovation": 0.3, "value": 0.3, "technique": 0.2, "data": 0.2}


def given(team: int, juror: str, criterion: str) -> int:
    shift = {"innovation": 0, "value": 1, "technique": -1, "data": 0}[criterion]
    return int(np.clip(BASE[team] + BIAS[juror] + shift, 1, 10))


@pytest.fixture
def track(tmp_path, store):
    path = tmp_path / "contest.toml"
    path.write_text(CONTEST, "utf-8")
    c = contest.load(path)
    with store.session() as s:
        for i, name in enumerate(TEAMS):
            teams.create(s, c, name, actor="org", members=(f"member-{i}",), now=OPEN)
    return c


def write(tmp_path, name: str, data: bytes | str):
    path = tmp_path / name
    (path.write_bytes if isinstance(data, bytes) else lambda d: path.write_text(d, "utf-8"))(data)
    return path


@pytest.mark.usefixtures("app_env")
def test_five_jurors_six_entries_blind_conflicts_even_assignment_and_trimmed_means(store, track, tmp_path, monkeypatch):
    c = track
    pdf = write(tmp_path, "report.pdf", b"%PDF-1.4\n% an application\n")
    png = write(tmp_path, "screen.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    nb = write(tmp_path, "analysis.ipynb", json.dumps({"cells": [], "nbformat": 4}))
    for i in range(6):
        md = write(tmp_path, f"writeup-{i}.md", f"# 作品 {i}\n\n用开放数据做的应用。\n")
        files = [File("writeup", pdf if i == 2 else md)] + (
            [File("notebook", nb), File("screenshot", png)] if i == 0 else []
        )
        apps.submit(store, c, user=f"member-{i}", title=f"作品 {i}", files=files, link="https://example.org", now=OPEN)
    # A second version of team 0 counts; one after the deadline is refused.
    apps.submit(store, c, user="member-0", title="作品 0（第二版）", files=[File("writeup", pdf)], now=OPEN)
    with pytest.raises(ApplicationError) as late:
        apps.submit(store, c, user="member-0", title="too late", files=[File("writeup", pdf)], now=JUDGING)
    assert late.value.code == "track-closed"
    for files, code in (
        ([File("writeup", png)], "wrong-file-kind"),
        ([File("writeup", write(tmp_path, "big.md", "x" * (1 << 20 | 1)))], "file-too-large"),
        ([File("notebook", nb)], "writeup-missing"),
    ):
        with pytest.raises(ApplicationError) as bad:
            apps.submit(store, c, user="member-1", title="bad", files=files, now=OPEN)
        assert bad.value.code == code and bad.value.zh != bad.value.en

    with store.session() as s:
        codes = {a.team_id: a.code for a in apps.entries(s, c).values()}
        ids = {t.name: t.id for t in (teams.get(s, n) for n in TEAMS)}
        assert apps.entries(s, c)[ids[TEAMS[0]]].version == 2  # the last before the deadline
        assert len(s.execute(select(Application)).scalars().all()) == 7  # every version kept
        apps.declare_conflict(s, "j1", TEAMS[0])
        apps.declare_conflict(s, "j2", TEAMS[1])
        assigned = apps.assign(s, c, JURORS, by="org")
    assert all(len(js) == 3 for js in assigned.values()) and set(assigned) == set(TEAMS)
    assert "j1" not in assigned[TEAMS[0]] and "j2" not in assigned[TEAMS[1]]
    loads = [sum(j in js for js in assigned.values()) for j in JURORS]
    assert sum(loads) == 18 and max(loads) - min(loads) <= 1

    with store.session() as s:
        # Blind: what a juror sees names no team and no member.
        for j in JURORS:
            seen = json.dumps(apps.juror_view(s, c, j), ensure_ascii=False)
            assert not any(name in seen for name in TEAMS) and "member-" not in seen
        # A conflicted juror cannot open the entry, even knowing its code.
        with pytest.raises(ApplicationError) as refused:
            apps.open_entry(s, c, "j1", codes[ids[TEAMS[0]]])
        assert refused.value.code == "juror-conflict" and "利益冲突" in refused.value.zh
        with pytest.raises(ApplicationError) as refused:
            apps.score(s, c, "j1", codes[ids[TEAMS[0]]], dict.fromkeys(WEIGHTS, 5))
        assert refused.value.code == "juror-conflict"
        with pytest.raises(ApplicationError) as out_of_range:
            some = assigned[TEAMS[3]][0]
            apps.score(s, c, some, codes[ids[TEAMS[3]]], {**dict.fromkeys(WEIGHTS, 5), "data": 11})
        assert out_of_range.value.code == "score-range"
        for i, name in enumerate(TEAMS):
            for j in assigned[name]:
                apps.score(s, c, j, codes[ids[name]], {k: given(i, j, k) for k in WEIGHTS})

    with store.session() as s:
        with pytest.raises(ApplicationError) as early:
            apps.reveal(s, c, by="org", now=JUDGING)
        assert early.value.code == "reveal-too-early"
        assert apps.finalists(s) is None
    monkeypatch.setenv("CONTESTHUB_CONTEST", str(c.path))
    monkeypatch.setenv("CONTESTHUB_DB_URL", store.url)
    at = open_app("finalists", now=JUDGING)
    assert "评审进行中" in at.info[0].value and not at.dataframe  # nothing of the scores before the reveal
    with store.session() as s:
        report = apps.reveal(s, c, by="org", now=AFTER)

    # The test's own trimmed means: three scores, one dropped at each end, is the middle one.
    expected = {}
    for i, name in enumerate(TEAMS):
        means = {k: sorted(given(i, j, k) for j in assigned[name])[1] for k in WEIGHTS}
        expected[name] = sum(WEIGHTS[k] * means[k] for k in WEIGHTS) / sum(WEIGHTS.values())
    got = {r["team"]: r["score"] for r in report["entries"]}
    assert got == pytest.approx(expected, abs=1e-12)
    order = sorted(TEAMS, key=lambda n: (-expected[n], codes[ids[n]]))  # equal scores: by code
    assert [r["team"] for r in report["entries"]] == order
    merit = math.ceil(0.2 * 6)
    assert [r["award"] for r in report["entries"]] == ["first", "second", "third", "third"] + ["merit"] * merit
    assert -1 <= report["icc1"] <= 1
    with store.session() as s:
        public = apps.finalists(s)
        (entry,) = s.execute(select(AuditEntry).where(AuditEntry.action == "application.reveal")).scalars()
    assert [p["display_name"] for p in public] == order[: len(public)]  # names shown once published
    assert "first" in entry.payload
    # A backup keeps the entries' files with the submissions'.
    with store.session() as s:
        shas = {f["sha256"] for a in s.execute(select(Application)).scalars() for f in a.files}
    manifest = backup.backup(store, Paths(tmp_path / "data", tmp_path / "private", tmp_path), c.path, tmp_path / "bk")
    assert {f"submissions/{h[:2]}/{h}" for h in shas} <= set(manifest["files"])
    at = open_app("finalists", now=AFTER)
    shown = table(at)
    assert list(shown["队伍"]) == order and list(shown["奖项"])[:2] == ["一等奖", "二等奖"]
    assert list(shown["评审得分"]) == [round(expected[n], 2) for n in order]


def test_icc1_is_shrout_and_fleiss_example():
    """Shrout & Fleiss (1979), Table 2: six targets rated by four judges, ICC(1,1) = .17."""
    ratings = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    assert apps.icc1(ratings) == pytest.approx(0.17, abs=0.005)
    assert apps.trimmed_mean([1, 5, 9], 1) == 5 and apps.trimmed_mean([3, 4], 1) == 3.5


def test_the_track_from_the_command_line(tmp_path, run_cli, paths, monkeypatch):
    monkeypatch.delenv("CONTESTHUB_DB_URL", raising=False)
    path = tmp_path / "contest.toml"
    path.write_text(CONTEST, "utf-8")
    md = write(tmp_path, "writeup.md", "# 我们的应用\n")
    root = Paths(paths.data_root, paths.private_root, PROJECT_ROOT / "datasets")

    def cli(*args):
        result = run_cli("applications", "--contest", str(path), *args, root=root)
        assert result.exit_code == 0, result.output
        return result.output

    with clock.pinned(OPEN):
        for i, name in enumerate(TEAMS[:3]):
            created = run_cli("teams", "--contest", str(path), "create", name, f"member-{i}", "--by", "org", root=root)
            assert created.exit_code == 0, created.output
            assert "version 1 kept" in cli("submit", f"member-{i}", "--title", f"作品 {i}", "--writeup", str(md))
    with clock.pinned(JUDGING):
        cli("conflict", "j1", TEAMS[0])
        cli("assign", *[a for j in ("j1", "j2", "j3", "j4") for a in ("--juror", j)], "--by", "org")
        for j in ("j1", "j2", "j3", "j4"):
            mine = json.loads(cli("mine", j, "--json"))
            assert not any(name in json.dumps(mine, ensure_ascii=False) for name in TEAMS)
            for entry in mine:
                cli("score", j, entry["code"], *[f"{k}=7" for k in WEIGHTS])
        report = json.loads(cli("results", "--json"))
    assert [r["score"] for r in report["entries"]] == pytest.approx([7.0] * 3) and all(
        r["jurors"] == 3 for r in report["entries"]
    )
    with clock.pinned(AFTER):
        assert "published" in cli("reveal", "--by", "org")
        public = json.loads(cli("finalists"))
    assert {p["display_name"] for p in public} == set(TEAMS[:3])
