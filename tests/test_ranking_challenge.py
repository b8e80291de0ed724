"""A ranking challenge (MAP@K / NDCG@K): the demo's ``mode_ranking``.

Each of 60 travellers has 4 modes; a submission scores every (traveller, mode) test row and the
scorer ranks each traveller's modes by score, the chosen mode being the relevant item. The test
recomputes MAP@3 itself from the hidden answers, checks that a traveller is public or private as
a whole, and that tied scores, missing rows and non-numbers are refused with zh/en messages.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

import sandbox
from leaderboard import contest
from leaderboard.contest import ContestConfigError
from leaderboard.scoring import aligned, score_file, solution_for
from sandbox.settings import PROJECT_ROOT

CH = "mode_ranking"


def answers(demo, ch) -> pd.DataFrame:
    path, _ = solution_for(ch, demo)
    return duckdb.sql(f"SELECT individual, mode, choice, gc FROM read_parquet('{path}')").df()


def map3(frame: pd.DataFrame) -> float:
    """MAP@3 written out: the chosen mode at place r (by score, ties never happen here) gives 1/r."""
    out = []
    for _, g in frame.groupby("individual"):
        order = list(g.sort_values("score", ascending=False)["mode"])
        chosen = int(g.loc[g["choice"] == 1, "mode"].iloc[0])
        r = order.index(chosen) + 1
        out.append(1 / r if r <= 3 else 0.0)
    return float(np.mean(out))


@pytest.fixture(scope="module")
def ch(demo):
    return contest.load(PROJECT_ROOT / "config" / "contest.toml", demo.datasets_dir).challenge(CH)


def test_a_ranking_challenge_scores_a_file_as_map_at_3_per_traveller(demo, ch, tmp_path):
    truth = answers(demo, ch)
    assert len(truth) == 240 and truth.groupby("individual")["choice"].sum().eq(1).all()
    perfect = truth.assign(score=truth["choice"] + truth["mode"] / 10)[["individual", "mode", "score"]]
    perfect.to_csv(tmp_path / "perfect.csv", index=False)
    got = score_file(ch, tmp_path / "perfect.csv", demo)
    assert got.valid and got.public_score == 1.0 and got.private_score == 1.0 and got.rows == 240

    # The cheapest mode first: a real ranking, recomputed here on each split.
    cheap = truth.assign(score=-truth["gc"] + truth["mode"] / 1000)
    cheap[["individual", "mode", "score"]].to_csv(tmp_path / "cheap.csv", index=False)
    got = score_file(ch, tmp_path / "cheap.csv", demo)
    assert got.valid, got.errors
    public = aligned(ch, tmp_path / "cheap.csv", demo)["public"]  # in the solution's row order
    split = truth.assign(public=public, score=cheap["score"])
    assert split.groupby("individual")["public"].nunique().eq(1).all()  # a traveller is on one side only
    assert 0 < split["public"].mean() < 1
    assert got.public_score == pytest.approx(map3(split[split.public]), rel=1e-12)
    assert got.private_score == pytest.approx(map3(split[~split.public]), rel=1e-12)
    assert got.private_score < 1


@pytest.mark.parametrize(
    ("edit", "code", "en", "zh"),
    [
        (
            lambda f: f.assign(score=np.where(f["individual"] == 151, 0.5, f["score"])),
            "ranking-tie",
            "same score",
            "得分相同",
        ),
        (lambda f: f[f["individual"] != 160], "missing-id", "have no prediction", "没有预测"),
        (
            lambda f: f.assign(score=f["score"].astype(object).where(f["mode"] != 2, "high")),
            "not-a-number",
            "not numbers",
            "不是数字",
        ),
    ],
    ids=["tie", "missing-traveller", "not-a-number"],
)
def test_bad_ranking_files_are_refused_saying_what_to_fix(demo, ch, tmp_path, edit, code, en, zh):
    truth = answers(demo, ch)
    good = truth.assign(score=truth["choice"] + truth["mode"] / 10)[["individual", "mode", "score"]]
    edit(good).to_csv(tmp_path / "bad.csv", index=False)
    got = score_file(ch, tmp_path / "bad.csv", demo)
    assert not got.valid and got.public_score is None
    (error,) = [e for e in got.errors if e["code"] == code]
    assert en in error["message_en"] and zh in error["message_zh"]


def test_sandbox_validate_refuses_tied_scores_before_anything_is_sent(contestant, demo, ch):
    test = sandbox.sql("SELECT individual, mode FROM travel_mode_choice.alternatives_test").df()
    fine = sandbox.validate(CH, test.assign(score=test["mode"] * 1.0))
    assert fine.ok, fine
    tied = sandbox.validate(CH, test.assign(score=1.0))
    assert not tied.ok and [e["code"] for e in tied.errors] == ["ranking-tie"]


@pytest.mark.parametrize(
    ("old", "new", "key", "what"),
    [
        ('group = "individual"\n', "", "group", "ranks the items of each group"),
        ('positive = "1"\n', "", "positive", "say which target value marks a relevant one"),
        ('id_columns = ["individual", "mode"]', 'id_columns = ["individual"]', "group", "a group and an item"),
    ],
    ids=["no-group", "no-positive", "no-item"],
)
def test_a_ranking_challenge_needs_its_group_item_and_relevant_value(tmp_path, old, new, key, what):
    text = (PROJECT_ROOT / "config" / "contest.toml").read_text("utf-8")
    start = text.index('id = "mode_ranking"')
    assert old in text[start:]
    path = tmp_path / "contest.toml"
    path.write_text(text[:start] + text[start:].replace(old, new, 1), "utf-8")
    with pytest.raises(ContestConfigError) as err:
        contest.load(path)
    assert any(p.path.endswith(f".{key}") and what in p.what for p in err.value.problems), err.value.problems
