"""What contestants may know about the contest, published next to the open data.

``<data root>/contest.json`` holds, per challenge, exactly what a submission must look like
(id columns, prediction column, kind of value, allowed labels, size limits before and after
decompressing) and the public facts (title, metric, times, quota). It is what
``sandbox.validate`` checks a file against inside a sandbox, where the contest engine and the
hidden solutions are out of reach.
Nothing in it comes from the hidden targets except the set of labels, which the training
data shows anyway. Written atomically by ``contesthub up`` and ``contesthub contest publish``.
"""

from __future__ import annotations

import json
import os
import tempfile

import duckdb

from leaderboard.contest import Challenge, Contest
from leaderboard.scoring import expect_for, solution_for
from sandbox.settings import Paths

FILE = "contest.json"


def public_challenge(ch: Challenge) -> dict:
    """What anyone may know of a challenge from the contest file alone: the one public view,
    served by the submission service (``api/challenges``), printed by ``contest validate`` and
    extended here with what the built data says (:func:`public_spec`). Nothing about the
    hidden answers or the split."""
    return {
        "id": ch.id,
        "title": ch.title,
        "description": ch.description,
        "metric": ch.metric,
        "metric_title": ch.scorer.title,
        "higher_is_better": ch.higher_is_better,
        "test_table": ch.test_relation,
        "id_columns": list(ch.id_columns),
        "prediction": ch.prediction,
        "daily_quota": ch.daily_quota,
        "final_selections": ch.final_selections,
        "opens": ch.opens.isoformat(),
        "closes": ch.closes.isoformat(),
        "reveal": ch.reveal.isoformat(),
    }


def public_spec(contest: Contest, paths: Paths) -> dict:
    con = duckdb.connect()
    challenges = []
    for ch in contest.challenges:
        solution, version = solution_for(ch, paths)
        expect = expect_for(ch, con, solution)
        challenges.append(
            public_challenge(ch)
            | {
                "dataset_version": version,
                "id_columns": list(expect.id_columns),
                "prediction_columns": list(expect.prediction_columns),
                "input": expect.input,
                "group": ch.group,
                "labels": list(expect.labels),
                "max_bytes": expect.max_bytes,
                "max_uncompressed_bytes": expect.max_uncompressed_bytes,
                "round": getattr(contest.round_of(ch.id), "id", None),
            }
        )
    con.close()
    from leaderboard import results  # the contest's key is made here, at set-up, if missing

    return {
        "title": contest.title,
        "timezone": str(contest.timezone),
        "challenges": challenges,
        # Checks the signed results bundles (leaderboard/results.py); also on the contest home page.
        "results_public_key": results.public_key_hex(results.signing_key(paths)),
    }


def write(contest: Contest, paths: Paths) -> dict:
    doc = public_spec(contest, paths)
    fd, tmp = tempfile.mkstemp(dir=paths.data_root, prefix=".contest-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, paths.data_root / FILE)
    return doc
