"""The holdout leakage check of ``contesthub contest validate``, on a dataset made to leak.

A clinic dataset: daily visits per site (the challenge's table, its last 20 days held out)
and visit records sampled from the same visits. Counted per day, the records give the daily
visits back unless the holdout withholds that period from them too (``holdout.related``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from factories import field, table

from leaderboard import contest, leakage
from leaderboard.contest import Challenge
from sandbox.descriptor import load_all

DAYS, SITES = 120, ("S1", "S2", "S3", "S4")
HOLDOUT = "date >= DATE '2024-04-10'"  # the last 20 of the 120 days from 1 January 2024


def _clinic_files(seed: int = 5) -> dict[str, str]:
    """Visits per site and day: the site's level times a day's shock shared by every site; one record per ~8 visits."""
    rng = np.random.default_rng(seed)
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-01") + DAYS)
    shock = rng.lognormal(0, 0.3, DAYS)
    daily, records, rid = ["date,site,visits"], ["record_id,date,site,fee"], 0
    for d, day in enumerate(days):
        for s, site in enumerate(SITES):
            visits = rng.poisson(100 * (s + 1) * shock[d])
            daily.append(f"{day},{site},{visits}")
            for _ in range(rng.poisson(visits / 8)):
                rid += 1
                records.append(f"{rid},{day},{site},{rng.integers(50, 500)}")
    return {"daily.csv": "\n".join(daily) + "\n", "records.csv": "\n".join(records) + "\n"}


def _clinic(make_dataset, related: dict | None = None):
    holdout = {"where": HOLDOUT, "hidden": ["visits"], **({"related": related} if related else {})}
    tables = {
        "daily": table(
            [field("date", "date"), field("site"), field("visits", "integer")],
            "daily.csv",
            primaryKey=["date", "site"],
            holdout=holdout,
        ),
        "records": table(
            [field("record_id", "integer"), field("date", "date"), field("site"), field("fee", "number")],
            "records.csv",
            primaryKey=["record_id"],
        ),
    }
    return make_dataset(tables, _clinic_files())


CONTEST = """
title = {{ zh = "测试赛", en = "Test contest" }}
timezone = "Asia/Shanghai"

[[challenges]]
id = "visits_forecast"
title = {{ zh = "就诊量", en = "Visits" }}
description = {{ zh = "预测每天的就诊量", en = "Forecast daily visits" }}
dataset = "{dataset}"
table = "daily"
id_columns = ["date", "site"]
target = "visits"
metric = "rmse"
public_fraction = 0.3
daily_quota = 5
max_team_size = 3
opens = 2026-11-01T00:00:00+08:00
closes = 2027-01-31T23:59:59+08:00
reveal = 2027-02-03T10:00:00+08:00
{extra}
"""


def _contest(tmp_path, ds_id: str, extra: str = ""):
    path = tmp_path / "contest.toml"
    path.write_text(CONTEST.format(dataset=ds_id, extra=extra), "utf-8")
    return path


def test_a_leaking_holdout_is_refused_naming_the_predictor(make_dataset, build, paths, run_cli, tmp_path):
    ds = _clinic(make_dataset)
    assert build(ds).status == "built"
    file = _contest(tmp_path, ds.id)
    result = run_cli("contest", "validate", "--contest", str(file))
    assert result.exit_code == 1
    line = result.output.strip()
    assert line.startswith("Error: contest.toml: challenge 'visits_forecast': its hidden answers leak through public")
    # The records counted per day (the shock every site shares) more than halve the baseline's error.
    assert (
        "count of records per (date = date (date)) scores rmse 37.24 against 85.33 for the baseline (mean per site "
        "over the last 20 days of training), closing 56% of the gap to a perfect score (leakage_margin 5%)" in line
    )
    assert "holdout.related" in line and "Traceback" not in result.output
    zh = run_cli("contest", "validate", "--contest", str(file), lang="zh")
    assert zh.exit_code == 1 and "赛题 'visits_forecast' 的隐藏答案可由公开表推出" in zh.output

    report = leakage.check(contest.load(file, paths.datasets_dir).challenge("visits_forecast"), paths)
    best = report.leak
    assert best is not None and best.table == "records" and best.gain > 0.5
    assert best.score < report.baseline_score / 2  # the records halve the baseline's error at least
    assert report.baseline == "mean per site over the last 20 days of training"


def test_withholding_the_period_from_the_related_table_passes(make_dataset, build, paths, run_cli, tmp_path):
    ds = _clinic(make_dataset, related={"records": {"where": HOLDOUT}})
    result = build(ds)
    assert result.status == "built", result.error and result.error.en
    from sandbox.catalog import entry

    records = entry(paths.data_root, ds.id)["tables"]["records"]
    assert records["withheld"]["by"] == ["daily"] and records["withheld"]["rows"] > 0
    counts = records["quality"]["rows"]
    assert counts["read"] == counts["published"] + counts["withheld"]
    check = run_cli("contest", "validate", "--contest", str(_contest(tmp_path, ds.id)), "--json")
    assert check.exit_code == 0, check.output
    (doc,) = json.loads(check.output)["challenges"]
    assert doc["leakage"]["leaks"] is False and doc["leakage"]["skipped"] is None
    assert all(p["gain"] <= 0.05 for p in doc["leakage"]["predictors"])


def test_the_margin_is_set_in_the_contest_file(make_dataset, build, paths, run_cli, tmp_path):
    ds = _clinic(make_dataset)
    assert build(ds).status == "built"
    file = _contest(tmp_path, ds.id, extra="leakage_margin = 0.99")
    ch: Challenge = contest.load(file, paths.datasets_dir).challenge("visits_forecast")
    assert ch.leakage_margin == 0.99
    result = run_cli("contest", "validate", "--contest", str(file), "--json")
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.output)["challenges"]
    assert doc["leakage"]["predictors"][0]["gain"] > 0.5 and doc["leakage"]["leaks"] is False


def test_a_challenge_whose_data_is_not_built_is_not_checked(make_dataset, paths, run_cli, tmp_path):
    ds = _clinic(make_dataset)
    result = run_cli("contest", "validate", "--contest", str(_contest(tmp_path, ds.id)), "--json")
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.output)["challenges"]
    assert doc["leakage"]["skipped"] == f"{ds.id} is not built yet"


@pytest.mark.parametrize(
    "challenge_id",
    [
        "outpatient_forecast",
        "emergency_visit",
        "department_triage",
        "claims_forecast",
        "primary_entrants",
        "scenic_visitors_forecast",
        "mode_ranking",
    ],
)
def test_the_demo_challenges_do_not_leak(demo, challenge_id):
    ch = contest.load(None, demo.datasets_dir).challenge(challenge_id)
    report = leakage.check(ch, demo)
    assert report.skipped is None, report
    # Every other table of the dataset is tried; a dataset of one table has none to leak through.
    (ds,) = [d for d in load_all(demo.datasets_dir) if d.id == ch.dataset]
    assert bool(report.predictors) == (len(ds.tables) > 1), report
    assert report.leak is None, report.predictors[0]
