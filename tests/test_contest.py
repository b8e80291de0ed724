"""The contest definition and offline scoring, checked against an independent split and scikit-learn."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import os

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

import sandbox
from leaderboard import contest
from leaderboard.contest import ContestConfigError
from leaderboard.scoring import aligned, score_file, solution_for, split_salt, split_salt_file
from sandbox.api import SandboxError
from sandbox.descriptor import load_all
from sandbox.settings import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "config" / "contest.toml"


@pytest.fixture(scope="module")
def demo_contest() -> contest.Contest:
    return contest.load(CONFIG)


def _solution(demo, ch) -> list[dict]:
    path, _ = solution_for(ch, demo)
    return duckdb.sql(f"SELECT * FROM read_parquet('{path}')").df().to_dict("records")


def _is_public(ch, row, salt: str = "") -> bool:
    """The split, computed independently of the scorer: md5 of 'salt:challenge:id', first 8 hex
    digits (no salt: the md5 of 'challenge:id' that anyone could compute, as before)."""
    ident = "|".join(str(row[c]) for c in ch.id_columns)
    text = f"{salt}:{ch.id}:{ident}" if salt else f"{ch.id}:{ident}"
    bucket = int(hashlib.md5(text.encode()).hexdigest()[:8], 16) % 1_000_000
    return bucket < ch.public_fraction * 1_000_000


def _write(tmp_path, rows: list[dict], name="sub.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_the_demo_contest_is_valid(demo, run_cli):
    result = run_cli("contest", "validate", "--json", root=demo)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    by_id = {c["id"]: c for c in doc["challenges"]}
    assert set(by_id) == {
        "outpatient_forecast",
        "emergency_visit",
        "department_triage",
        "claims_forecast",
        "primary_entrants",
        "scenic_visitors_forecast",
        "mode_ranking",
    }
    datasets = {d.id: d for d in load_all(PROJECT_ROOT / "datasets")}
    themes = {c["id"]: datasets[c["data"].split(".")[0]].meta["theme"] for c in doc["challenges"]}
    # The four livelihood themes, each with at least one challenge.
    assert set(themes.values()) == {"health", "social-security-employment", "education-culture", "transport-tourism"}
    assert by_id["outpatient_forecast"]["test_rows"] == 60 * 92  # 60 hospitals, 1 Oct - 31 Dec 2024
    assert by_id["emergency_visit"]["metric"] == "roc_auc" and by_id["emergency_visit"]["higher_is_better"]
    assert doc["timezone"] == "Asia/Shanghai"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (('metric = "rmse"', 'metric = "rsme"'), "challenges[0].metric: unknown metric 'rsme'"),
        (
            ('target = "outpatient_visits"', 'target = "hospital_id"'),
            "target: 'hospital_id' is not hidden",
        ),
        (
            ('table = "daily_visits"', 'table = "hospitals"'),
            "table: hospital_outpatient.hospitals has no",
        ),
        (('timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"'), "timezone: 'Mars/Olympus' is not a known"),
        (("public_fraction = 0.3", "public_fraction = 1.5"), "challenges[0].public_fraction"),
        (('id = "emergency_visit"', 'id = "outpatient_forecast"'), "challenges[1].id: challenge 'outpatient_forecast'"),
        (('positive = "急诊科"\n', ""), "challenges[1].positive: roc_auc scores a yes/no question"),
        (
            ("opens = 2026-11-01T00:00:00+08:00", "opens = 2027-06-01T00:00:00+08:00"),
            "challenges[0].opens: the times are out of order",
        ),
    ],
    ids=["metric", "target", "no-holdout", "timezone", "fraction", "duplicate", "positive", "times"],
)
def test_mistakes_in_the_contest_definition_name_file_and_key(tmp_path, edit, expected):
    text = CONFIG.read_text("utf-8")
    assert edit[0] in text
    path = tmp_path / "contest.toml"
    path.write_text(text.replace(edit[0], edit[1], 1), "utf-8")
    with pytest.raises(ContestConfigError) as info:
        contest.load(path)
    assert any(expected in str(p) for p in info.value.problems), [str(p) for p in info.value.problems]
    assert all(str(p).startswith(str(path)) for p in info.value.problems)


def test_a_perfect_submission_scores_perfectly(demo, demo_contest, tmp_path):
    ch = demo_contest.challenge("outpatient_forecast")
    rows = [
        {"date": r["date"], "hospital_id": r["hospital_id"], "outpatient_visits": r["outpatient_visits"]}
        for r in _solution(demo, ch)
    ]
    result = score_file(ch, _write(tmp_path, rows), demo)
    assert result.valid and result.rows == 5520
    assert result.public_score == 0.0 and result.private_score == 0.0
    assert (result.metric, result.metric_version, result.dataset_version) == ("rmse", 1, 1)


def test_scores_equal_scikit_learn_on_an_independent_split(demo, demo_contest, tmp_path):
    rng = np.random.default_rng(3)
    ch = demo_contest.challenge("emergency_visit")
    sol = _solution(demo, ch)
    truth = np.array([r["department"] == "急诊科" for r in sol], dtype=int)
    noisy = np.clip(truth * 0.3 + rng.random(len(sol)) * 0.8, 0, 1)
    path = _write(tmp_path, [{"visit_id": r["visit_id"], "p_emergency": p} for r, p in zip(sol, noisy, strict=True)])
    result = score_file(ch, path, demo)
    salt = split_salt(demo.private_root)
    public = np.array([_is_public(ch, r, salt) for r in sol])
    assert 0.25 < public.mean() < 0.35  # public_fraction = 0.3
    assert math.isclose(result.public_score, skm.roc_auc_score(truth[public], noisy[public]), rel_tol=1e-9)
    assert math.isclose(result.private_score, skm.roc_auc_score(truth[~public], noisy[~public]), rel_tol=1e-9)

    ch = demo_contest.challenge("department_triage")
    labels = sorted({r["department"] for r in sol})
    guess = [r["department"] if rng.random() < 0.5 else labels[0] for r in sol]
    path = _write(
        tmp_path, [{"visit_id": r["visit_id"], "department": g} for r, g in zip(sol, guess, strict=True)], "triage.csv"
    )
    result = score_file(ch, path, demo)
    public = np.array([_is_public(ch, r, salt) for r in sol])  # each challenge has its own split
    t, g = np.array([r["department"] for r in sol]), np.array(guess)
    assert math.isclose(result.public_score, skm.f1_score(t[public], g[public], average="macro"), rel_tol=1e-9)
    assert math.isclose(result.private_score, skm.f1_score(t[~public], g[~public], average="macro"), rel_tol=1e-9)


def test_the_public_split_cannot_be_computed_without_the_contests_secret_salt(demo, demo_contest, tmp_path):
    """The attack: before, the public rows were md5('challenge:id'), which any contestant could
    compute, and so tune predictions to the public board alone. Now a secret salt is in the hash:
    the md5 split agrees with the scorer's no better than chance, the salted one exactly."""
    ch = demo_contest.challenge("emergency_visit")
    sol = _solution(demo, ch)
    path = _write(tmp_path, [{"visit_id": r["visit_id"], "p_emergency": 0.5} for r in sol])
    scorers_split = aligned(ch, path, demo)["public"]  # the scorer's split, in solution order
    salt_file = split_salt_file(demo.private_root)
    assert salt_file.stat().st_mode & 0o777 == 0o600 and len(salt_file.read_text().strip()) == 64
    guessed = np.array([_is_public(ch, r) for r in sol])
    salted = np.array([_is_public(ch, r, split_salt(demo.private_root)) for r in sol])
    assert (scorers_split == salted).all()
    # Two independent 30 % splits agree on about 0.3² + 0.7² = 58 % of the rows.
    agree = (scorers_split == guessed).mean()
    assert 0.5 < agree < 0.66, agree
    assert ((scorers_split & guessed).sum() / guessed.sum()) < 0.4  # a guessed public row is public 30 % of the time


def test_an_invalid_file_is_not_scored_and_says_why(demo, demo_contest, tmp_path, run_cli):
    path = tmp_path / "bad.csv"
    path.write_text("visit_id,p_emergency\n1,0.5\n1,0.7\n2,1.5\n", "utf-8")
    result = score_file(demo_contest.challenge("emergency_visit"), path, demo)
    assert not result.valid and result.public_score is None and result.private_score is None
    codes = {e["code"]: e for e in result.errors}
    assert {"duplicate-id", "missing-id", "probability-range"} <= set(codes)
    assert codes["probability-range"]["row"] == 4
    cli = run_cli("score", "emergency_visit", str(path), root=demo, lang="zh")
    assert cli.exit_code == 1 and "probability-range" in cli.output and "Traceback" not in cli.output
    js = run_cli("score", "emergency_visit", str(path), "--json", root=demo)
    assert js.exit_code == 1 and json.loads(js.output)["valid"] is False


def test_contestants_cannot_read_the_solutions(contestant, demo, demo_contest):
    path, _ = solution_for(demo_contest.challenge("outpatient_forecast"), demo)
    with pytest.raises(SandboxError) as info:
        sandbox.sql(f"SELECT * FROM read_parquet('{path}')").fetchall()
    assert info.value.code == "access-denied"
    tables = set(
        sandbox.sql("SELECT table_name FROM duckdb_tables() UNION SELECT view_name FROM duckdb_views()").df().iloc[:, 0]
    )
    assert "daily_visits_test" in tables
    hidden = sandbox.sql("DESCRIBE hospital_outpatient.daily_visits_test").df()["column_name"].tolist()
    assert "outpatient_visits" not in hidden and "emergency_visits" not in hidden
    last = sandbox.sql("SELECT max(date) FROM hospital_outpatient.daily_visits").fetchall()[0][0]
    assert str(last) == "2024-09-30"  # the published training rows stop where the test set begins


def test_the_scorer_finds_the_solution_where_the_build_writes_it(demo, demo_contest):
    from sandbox.build import solution_file

    for ch in demo_contest.challenges:
        path, version = solution_for(ch, demo)
        assert path == solution_file(demo.private_root, ch.dataset, version, ch.table)


def _variants(tmp_path, frame: pd.DataFrame, stem: str) -> dict[str, tuple]:
    """The same predictions sent in different ways: (path, whether the fast path may take it)."""
    rng = np.random.default_rng(5)
    out = {"in order": (_write(tmp_path, frame.to_dict("records"), f"{stem}.csv"), True)}
    shuffled = frame.iloc[rng.permutation(len(frame))]
    out["shuffled"] = (_write(tmp_path, shuffled.to_dict("records"), f"{stem}-shuffled.csv"), True)
    gz = tmp_path / f"{stem}.csv.gz"
    gz.write_bytes(gzip.compress(out["in order"][0].read_bytes()))
    out["gzip"] = (gz, True)
    quoted = tmp_path / f"{stem}-quoted.csv"
    frame.to_csv(quoted, index=False, quoting=csv.QUOTE_ALL)  # a header DuckDB's typed pass does not take
    out["quoted"] = (quoted, False)
    parquet = tmp_path / f"{stem}.parquet"
    frame.to_parquet(parquet, index=False)
    out["parquet"] = (parquet, False)
    return out


@pytest.mark.parametrize("challenge_id", ["emergency_visit", "department_triage", "outpatient_forecast"])
def test_every_way_of_sending_a_file_gives_the_same_scores(demo, demo_contest, tmp_path, monkeypatch, challenge_id):
    import leaderboard.scoring as scoring

    ch = demo_contest.challenge(challenge_id)
    sol = [{k: v.date() if isinstance(v, pd.Timestamp) else v for k, v in r.items()} for r in _solution(demo, ch)]
    rng = np.random.default_rng(11)
    salt = split_salt(demo.private_root)
    public = np.array([_is_public(ch, r, salt) for r in sol])  # str() of a date is its text in SQL too
    if challenge_id == "emergency_visit":
        truth = np.array([r["department"] == "急诊科" for r in sol], dtype=int)
        pred = np.round(np.clip(truth * 0.3 + rng.random(len(sol)) * 0.8, 0, 1), 2)  # many ties
        expected = [skm.roc_auc_score(truth[m], pred[m]) for m in (public, ~public)]
    elif challenge_id == "department_triage":
        truth = np.array([r["department"] for r in sol])
        labels = sorted(set(truth))
        pred = np.array([t if rng.random() < 0.5 else labels[rng.integers(len(labels))] for t in truth])
        expected = [skm.f1_score(truth[m], pred[m], average="macro") for m in (public, ~public)]
    else:  # two id columns, one a date
        truth = np.array([r["outpatient_visits"] for r in sol], dtype=float)
        pred = np.round(truth + rng.normal(0, 30, len(sol)), 1)
        expected = [math.sqrt(skm.mean_squared_error(truth[m], pred[m])) for m in (public, ~public)]
    frame = pd.DataFrame({c: [r[c] for r in sol] for c in ch.id_columns} | {ch.prediction: pred})
    fast = []
    real = scoring._fast

    def spy(*args):
        pairs = real(*args)
        fast.append(pairs is not None)
        return pairs

    monkeypatch.setattr(scoring, "_fast", spy)
    for name, (path, may_be_fast) in _variants(tmp_path, frame, challenge_id).items():
        fast.clear()
        result = score_file(ch, path, demo)
        assert result.valid and result.rows == len(sol), (name, result.errors)
        assert fast == [may_be_fast], name
        assert math.isclose(result.public_score, expected[0], rel_tol=1e-9), name
        assert math.isclose(result.private_score, expected[1], rel_tol=1e-9), name


def test_ids_are_compared_as_text_on_the_fast_path_too(demo, demo_contest, tmp_path):
    ch = demo_contest.challenge("emergency_visit")
    sol = _solution(demo, ch)
    ids = [str(r["visit_id"]) for r in sol]
    lines = [f"{i},0.5" for i in ids]
    lines[2] = f"0{ids[2]}" + ",0.5"  # the same number, another id
    lines[4] = f"{ids[4]},NaN"
    path = tmp_path / "padded.csv"
    path.write_text("visit_id,p_emergency\n" + "\n".join(lines) + "\n", "utf-8")
    codes = {e["code"]: e for e in score_file(ch, path, demo).errors}
    assert codes["unknown-id"]["rows"] == [4] and codes["missing-id"]["count"] == 1
    assert codes["not-finite"]["rows"] == [6]


def test_the_solution_cache_is_made_once_and_follows_the_solution(demo, demo_contest, tmp_path):
    import shutil

    from sandbox.settings import Paths

    ch = demo_contest.challenge("emergency_visit")
    private = tmp_path / "private"
    shutil.copytree(demo.private_root / "solutions", private / "solutions")
    paths = Paths(data_root=demo.data_root, private_root=private, datasets_dir=demo.datasets_dir)
    sol = _solution(demo, ch)
    sub = _write(tmp_path, [{"visit_id": r["visit_id"], "p_emergency": (int(r["visit_id"], 16) % 7) / 7} for r in sol])
    first = score_file(ch, sub, paths)
    cache = private / "cache" / "scoring" / ch.id
    made = list(cache.glob("*.duckdb"))
    assert first.valid and len(made) == 1
    assert score_file(ch, sub, paths) == first and list(cache.glob("*.duckdb")) == made
    solution, _ = solution_for(ch, paths)
    os.utime(solution, ns=(solution.stat().st_atime_ns, solution.stat().st_mtime_ns + 10**9))
    assert score_file(ch, sub, paths) == first
    assert len(list(cache.glob("*.duckdb"))) == 1 and list(cache.glob("*.duckdb")) != made  # the old one is gone
    next(cache.glob("*.duckdb")).write_bytes(b"not a database")
    assert score_file(ch, sub, paths) == first  # a damaged cache is made again
    shutil.rmtree(private / "cache")
    (private / "cache").write_text("in the way")  # no cache can be written: scored from memory
    assert score_file(ch, sub, paths) == first


def test_scorer_threads_meeting_a_missing_cache_all_score(demo, demo_contest, tmp_path):
    """The submission service's scorer threads may all find the cache missing at once (a new
    solution, the first minutes of a rush): one builds it, every file is scored."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from sandbox.settings import Paths

    ch = demo_contest.challenge("emergency_visit")
    sol = _solution(demo, ch)
    sub = _write(tmp_path, [{"visit_id": r["visit_id"], "p_emergency": (int(r["visit_id"], 16) % 5) / 5} for r in sol])
    for attempt in range(3):
        private = tmp_path / f"private-{attempt}"
        shutil.copytree(demo.private_root / "solutions", private / "solutions")
        paths = Paths(data_root=demo.data_root, private_root=private, datasets_dir=demo.datasets_dir)
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(score_file, [ch] * 6, [sub] * 6, [paths] * 6))
        assert all(r.valid for r in results) and len({(r.public_score, r.private_score) for r in results}) == 1
        cache = private / "cache" / "scoring" / ch.id
        assert len(list(cache.glob("*.duckdb"))) == 1 and not list(cache.glob(".*.tmp*"))


def test_a_scorer_follows_a_rebuild_while_it_runs(tmp_path):
    # A scorer keeps the latest version it read until the root catalog is replaced, as a build
    # does (a new file renamed over the old one): then it reads the new version at once.
    from leaderboard.scoring import _latest_version
    from sandbox.errors import NotFound

    def publish(version: int) -> None:
        entry = {"latest": version, "versions": [], "entry": {"version": version}}
        doc = {"generated_at": None, "datasets": {"d": entry}}
        (tmp_path / "new.json").write_text(json.dumps(doc), "utf-8")
        os.replace(tmp_path / "new.json", tmp_path / "catalog.json")

    publish(1)
    assert _latest_version(tmp_path, "d") == 1
    publish(2)
    assert _latest_version(tmp_path, "d") == 2
    (tmp_path / "catalog.json").unlink()
    with pytest.raises(NotFound):  # nothing published: a clear error, not a stale version
        _latest_version(tmp_path, "d")


def test_a_scorer_child_keeps_no_unpacked_file_between_submissions(demo, demo_contest, tmp_path):
    # One database for one scoring after another, as a scorer's child keeps: a gzipped file is
    # unpacked into its work folder, scored, and the folder is empty before the next file.
    from leaderboard.scoring import Database, Resources

    ch = demo_contest.challenge("outpatient_forecast")
    rows = [
        {"date": r["date"], "hospital_id": r["hospital_id"], "outpatient_visits": r["outpatient_visits"]}
        for r in _solution(demo, ch)
    ]
    plain = _write(tmp_path, rows)
    packed = tmp_path / "sub.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    spill = tmp_path / "spill"
    database = Database(Resources(temp_directory=spill))
    try:
        for path in (packed, plain, packed):
            result = score_file(ch, path, demo, database=database)
            assert result.valid and result.public_score == 0.0 and result.private_score == 0.0
            assert list((spill / "work").iterdir()) == []
    finally:
        database.close()
