"""Benchmark: the leaderboard page at national scale, against loading everything into pandas.

Seeds a store with the demo race (:mod:`leaderboard.demo`) of 1,000 teams and 100,000
submissions, all on one challenge (the worst case for its page), once, cached in
``var/bench/``. Then, in one run, alternating sides, each in a fresh process with imports
and a first page run excluded:

(a) cold: the leaderboard page's script run (``AppTest``) right after every cache was
    emptied (``st.cache_data``, ``st.cache_resource``: the store's engine and the contest
    definition are opened again, the standings computed again);
(b) warm: the same run with the caches filled (what nearly every visitor gets: answers live
    for 10 s and are refreshed in the background);
(c) the naive baseline: a page that, on every run, loads every submission and its public
    score into pandas with ``read_sql``, ranks the teams (best score, earlier submission
    first, movement against 24 hours ago) and shows the first 50, also timed with ``AppTest``.

Each process times several runs of its side and reports their median; the figures are the
medians over the rounds. Targets (issue 6): (a) <= 1.5 s, (b) <= 0.2 s.

    python3 dev.py bench leaderboard_page [--runs 3] [--per-process 5] [--db-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure

from sandbox.settings import PROJECT_ROOT

SCRIPT = Path(__file__).resolve()
HOME = PROJECT_ROOT / "var" / "bench" / "leaderboard"
TEAMS, SUBMISSIONS = 1000, 100_000
CHALLENGE = "outpatient_forecast"
APP = PROJECT_ROOT / "leaderboard" / "app.py"

NAIVE_PAGE = f"""
import datetime as dt
import pandas as pd
import sqlalchemy as sa
import streamlit as st
from sandbox import clock


engine = sa.create_engine({{url!r}})
# Every submission of the challenge with its public score, all columns, on every run.
df = pd.read_sql(
    "SELECT s.*, c.public_score FROM submissions s JOIN scores c ON c.submission_id = s.id AND c.active "
    "WHERE s.challenge = '{CHALLENGE}' AND s.status = 'scored' AND c.public_score IS NOT NULL",
    engine,
)
engine.dispose()
df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
now = clock.now()

def ranked(frame):
    best = frame.sort_values(["public_score", "created_at", "id"]).drop_duplicates("team_id")
    return best.assign(rank=range(1, len(best) + 1)).set_index("team_id")

board = ranked(df)
before = ranked(df[df["created_at"] <= now - dt.timedelta(hours=24)])
board["entries"] = df.groupby("team_id").size()
board["last"] = df.groupby("team_id")["created_at"].max()
board["movement"] = before["rank"].reindex(board.index) - board["rank"]
st.dataframe(board.head(50)[["rank", "public_score", "entries", "last", "movement"]])
"""


def _paths(private: Path):
    from sandbox.settings import Paths

    return Paths(HOME / "data", private, PROJECT_ROOT / "datasets")


def prepare(db_url: str | None) -> tuple[str, float | None]:
    """The seeded store's URL (seeded now unless an earlier run left it); seconds spent seeding."""
    from sqlalchemy import func, select

    from leaderboard import contest, demo, store
    from leaderboard.models import Submission

    HOME.mkdir(parents=True, exist_ok=True)
    url = db_url or f"sqlite:///{HOME / f'store-{TEAMS}x{SUBMISSIONS}.sqlite'}"
    st_ = store.connect(_paths(HOME / "private"), url)
    try:
        with st_.session() as s:
            have = s.execute(select(func.count()).select_from(Submission)).scalar_one()
        if have == SUBMISSIONS:
            return url, None
        if have:
            raise SystemExit(f"{url} holds {have} submissions, not {SUBMISSIONS}: use an empty database")
        started = time.perf_counter()
        demo.seed(st_, contest.load(), teams=TEAMS, submissions=SUBMISSIONS, challenges=[CHALLENGE])
        return url, time.perf_counter() - started
    finally:
        st_.dispose()


def _env(url: str) -> None:
    os.environ["CONTESTHUB_DB_URL"] = url
    os.environ["CONTESTHUB_DATA_ROOT"] = str(HOME / "data")
    os.environ["CONTESTHUB_PRIVATE_ROOT"] = str(HOME / "private")


def w_page(url: str, mode: str, runs: str):
    """The real page, cold (caches emptied before each run) or warm."""
    _env(url)
    from streamlit.testing.v1 import AppTest

    from leaderboard import queries

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()  # imports and the home page: not part of the measurement
    at.switch_page("views/board.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe[0].value) == 50

    def work() -> dict:
        times = []
        for _ in range(int(runs)):
            if mode == "cold":
                queries.reset()
            started = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - started)
            assert not at.exception and len(at.dataframe[0].value) == 50
        teams = at.caption[-1].value
        return {"median_run": statistics.median(times), "runs": times, "caption": teams}

    return work


def w_naive(url: str, runs: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(NAIVE_PAGE.replace("{url!r}", repr(url)), default_timeout=120)
    at.run()  # imports
    assert not at.exception, [e.value for e in at.exception]

    def work() -> dict:
        times = []
        for _ in range(int(runs)):
            started = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - started)
            assert not at.exception and len(at.dataframe[0].value) == 50
        return {"median_run": statistics.median(times), "runs": times}

    return work


WORKERS = {"page": w_page, "naive": w_naive}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="rounds (fresh processes per side)")
    ap.add_argument("--per-process", type=int, default=5, help="page runs timed in each process")
    ap.add_argument("--db-url", default=None, help="an empty PostgreSQL database to seed (default: SQLite)")
    args = ap.parse_args()
    print(f"machine: {_measure.machine()}")
    url, seeded = prepare(args.db_url)
    backend = url.split(":", 1)[0]
    print(
        f"store: {backend}, {TEAMS:,} teams, {SUBMISSIONS:,} submissions on {CHALLENGE}"
        + (f" (seeded in {seeded:.1f} s)" if seeded else " (seeded earlier)")
    )
    n = str(args.per_process)
    sides = {
        "(a) page, cold cache": ("page", url, "cold", n),
        "(b) page, warm cache": ("page", url, "warm", n),
        "(c) naive pandas page": ("naive", url, n),
    }
    res = {label: [] for label in sides}
    for i in range(args.runs):
        for label, (name, *rest) in sides.items():
            r = _measure.measure(SCRIPT, name, *rest)
            res[label].append(r)
            print(
                f"  round {i + 1}/{args.runs} {label:<24} median {r['median_run']:7.3f} s  "
                f"(runs {', '.join(f'{x:.3f}' for x in r['runs'])})  {r['peak_mib']:5.0f} MiB",
                flush=True,
            )
    cold, warm, naive = (_measure.median(res[k], "median_run") for k in sides)
    print(f"  page shows: {res['(a) page, cold cache'][0]['caption']}")
    print(f"  medians: (a) cold {cold:.3f} s   (b) warm {warm:.3f} s   (c) naive {naive:.3f} s")
    print(f"  (a) cold  {cold:6.3f} s   target <= 1.5 s   {'met' if cold <= 1.5 else 'NOT met'}")
    print(f"  (b) warm  {warm:6.3f} s   target <= 0.2 s   {'met' if warm <= 0.2 else 'NOT met'}")
    print(f"  (c)/(a) {naive / cold:6.1f}x   (c)/(b) {naive / warm:6.1f}x")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        _measure.worker_main(WORKERS)
    else:
        main()
