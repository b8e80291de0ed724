"""Fixtures for the contest store: one test body, two databases.

=================  =========  ===============================================================
fixture            scope      what it gives
=================  =========  ===============================================================
``db_url``         function   a fresh, empty database: SQLite in ``tmp_path``, or a new
                              PostgreSQL database on 127.0.0.1:5432 (dropped afterwards;
                              skipped with the reason when the server is not reachable)
``store``          function   :func:`leaderboard.store.connect` on ``db_url`` (migrated),
                              with its submission files in ``tmp_path``
``demo_contest``   session    ``config/contest.toml`` loaded
``predictions``    function   writes a submission file for a demo challenge from its hidden
                              solution: perfect, noisy, or broken on purpose
``submit``         function   streams a file into the store and accepts it (as the service does)
=================  =========  ===============================================================
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from leaderboard import contest, submissions
from leaderboard import store as store_mod
from leaderboard.scoring import solution_for
from sandbox.settings import PROJECT_ROOT, Paths

PG_ADMIN = os.environ.get("CONTESTHUB_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
# A moment inside every demo challenge's submission window (contest time): the demo's
# schedule is anchored on its day (``demo_contest``), so NOW never depends on today's date.
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
# Debian's faketime package (`python3 dev.py test` installs it), for this machine's architecture:
# it moves the clock of whole process trees (a hub, its services and its sandboxes).
LIBFAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), Path("/usr/lib/faketime/libfaketime.so.1"))


def moved_clock(env: dict[str, str], to: dt.datetime) -> dict[str, str]:
    """``env`` with every clock of the processes it starts moved to ``to`` (and running): what
    the ``faketime`` command sets, without its wrapper process, which would not pass on Ctrl-C."""
    return {**env, "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"+{int(to.timestamp() - time.time())}"}


def _pg_admin():
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN!r}: {exc}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'contest.sqlite'}"
        return
    name = f"contesthub_test_{uuid.uuid4().hex[:10]}"
    with _pg_admin() as con:
        con.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with _pg_admin() as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def store(db_url: str, tmp_path: Path):
    s = store_mod.connect(Paths(tmp_path / "data", tmp_path / "private", tmp_path), db_url)
    yield s
    s.dispose()


@pytest.fixture(scope="session")
def demo_contest() -> contest.Contest:
    """The demo contest with its schedule anchored on NOW's day, whatever the date today."""
    return contest.load(PROJECT_ROOT / "config" / "contest.toml", anchor_day=NOW.date())


def prediction_frame(demo: Paths, ch: contest.Challenge, noise: float, seed: int) -> pd.DataFrame:
    """Predictions for every test id of ``ch``: its hidden solution plus ``noise`` (0: exact).

    Probabilities move towards a coin flip, values get Gaussian noise of ``noise`` standard
    deviations, and a ``noise`` share of labels is drawn at random.
    """
    path, _ = solution_for(ch, demo)
    df = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").df()
    rng = np.random.default_rng(seed)
    out = df[list(ch.id_columns)].copy()
    truth = df[ch.target]
    if ch.positive is not None:
        y = (truth == ch.positive).astype(float)
        out[ch.prediction] = np.clip(y * (1 - noise) + rng.random(len(y)) * noise, 0, 1)
    elif ch.scorer.input == "value":
        out[ch.prediction] = truth.astype(float) + rng.normal(0, noise * truth.std() + 1e-9, len(truth))
    else:
        labels = np.sort(truth.unique())
        wrong = rng.random(len(truth)) < noise
        out[ch.prediction] = np.where(wrong, rng.choice(labels, len(truth)), truth)
    return out


@pytest.fixture
def predictions(demo: Paths, demo_contest: contest.Contest, tmp_path: Path):
    """``predictions(challenge_id, noise=0.0, seed=0, name=None, edit=None)`` → path of a CSV.

    Values come from the hidden solution plus noise, so a test knows which file should
    rank higher; ``edit`` may change the DataFrame (to break it) before it is written.
    """

    def make(challenge_id: str, noise: float = 0.0, seed: int = 0, name: str | None = None, edit=None) -> Path:
        out = prediction_frame(demo, demo_contest.challenge(challenge_id), noise, seed)
        if edit is not None:
            out = edit(out)
        file = tmp_path / (name or f"{challenge_id}-{noise}-{seed}.csv")
        out.to_csv(file, index=False)
        return file

    return make


@pytest.fixture
def submit(demo_contest: contest.Contest):
    """``submit(store, user, challenge_id, path, now=NOW)`` → the accepted Submission."""

    def run(st: store_mod.Store, user: str, challenge_id: str, path: Path, now: dt.datetime = NOW, **kw):
        with open(path, "rb") as f:
            upload = st.files.receive(f, demo_contest.upload_limit)
        return submissions.accept(
            st, demo_contest, user=user, challenge_id=challenge_id, upload=upload, file_name=path.name, now=now, **kw
        )

    return run
