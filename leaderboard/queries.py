"""What the leaderboard app reads, and how long it may keep it.

Everything the Streamlit pages show comes through the functions here. They read the
contest store **read-only** (``connect(..., readonly=True, migrate=False)``: SQLite with
``query_only`` in WAL mode, where a reader never waits for the scorer, or a read-only
PostgreSQL transaction) and the published catalog, and they are cached with
``st.cache_data`` for :data:`TTL` seconds, refreshed in the background: a visitor gets the
last answer at once while the next one is computed, so a page never waits on the database
once it has been shown.

Sealing: the private ranking is read only through :func:`leaderboard.ranking.private_standings`
and only by :func:`final_board`, which first asks :func:`leaderboard.ranking.revealed` and
returns ``None`` for a sealed challenge; nothing else here touches private scores.

Every cached function takes the store URL (or the data root) as its first argument, so two
stores never share cache entries, and ``now`` (``None`` outside tests: the function takes
the current time itself, so the cache key does not change every second).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import streamlit as st
from sqlalchemy import and_, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from leaderboard import contest as contest_mod
from leaderboard import organizer, ranking, schedule
from leaderboard.models import Member, QuotaGrant, Reveal, Score, Submission, Team
from leaderboard.store import Store, connect, default_url
from sandbox import catalog as catalog_mod
from sandbox import clock, statuses
from sandbox.quoting import lit
from sandbox.settings import Paths

log = logging.getLogger("contesthub.leaderboard")

#: Seconds a query's answer is kept before it is refreshed (in the background).
TTL = 10
_CACHE = {"ttl": TTL, "show_spinner": False, "refresh_mode": "background"}


class StoreUnavailable(Exception):
    """The contest store does not exist yet or cannot be read."""


@dataclass(frozen=True)
class Source:
    """Where the app reads from; resolved from the environment on every run (cheap)."""

    db_url: str
    data_root: str
    private_root: str
    contest_file: str
    datasets_dir: str

    @classmethod
    def from_env(cls) -> Source:
        """``sandbox.settings.Paths.from_env()``, ``CONTESTHUB_DB_URL`` and ``CONTESTHUB_CONTEST``."""
        paths = Paths.from_env()
        return cls(
            db_url=default_url(paths),
            data_root=str(paths.data_root),
            private_root=str(paths.private_root),
            contest_file=str(contest_mod.config_path()),
            datasets_dir=str(paths.datasets_dir),
        )


# --- resources ---------------------------------------------------------------------------

_OPENED: list[Store] = []


@st.cache_resource(show_spinner=False)
def _store(db_url: str, data_root: str, private_root: str, datasets_dir: str) -> Store:
    paths = Paths(Path(data_root), Path(private_root), Path(datasets_dir))
    store = connect(paths, db_url, readonly=True, migrate=False)
    _OPENED.append(store)
    return store


def store(source: Source) -> Store:
    """The read-only store. A SQLite file that does not exist is not created."""
    if source.db_url.startswith("sqlite:///"):
        file = source.db_url.removeprefix("sqlite:///").split("?")[0]
        if file and file != ":memory:" and not Path(file).exists():
            raise StoreUnavailable(file)
    return _store(source.db_url, source.data_root, source.private_root, source.datasets_dir)


@st.cache_resource(show_spinner=False, ttl=300)
def _contest(
    contest_file: str, datasets_dir: str, private_root: str, stamp: tuple, today: dt.date
) -> contest_mod.Contest:
    return contest_mod.load(Path(contest_file), Path(datasets_dir), private_root=Path(private_root))


def contest(source: Source) -> contest_mod.Contest:
    """The contest definition, read again when its file or the demo's schedule changes (and, for
    a demo with no recorded schedule, when the day changes)."""
    files = (Path(source.contest_file), schedule.path(Path(source.private_root)))
    stamp = tuple(f.stat().st_mtime if f.exists() else 0.0 for f in files)
    return _contest(source.contest_file, source.datasets_dir, source.private_root, stamp, clock.now().date())


def results_public_key(source: Source) -> str | None:
    """The contest's public key for its signed results (hex), as published in ``contest.json``."""
    file = Path(source.data_root) / "contest.json"
    try:
        return json.loads(file.read_text("utf-8")).get("results_public_key")
    except (OSError, ValueError):
        return None


def reset() -> None:
    """Forget every cached answer and close the engines (tests, and the benchmark's cold runs)."""
    st.cache_data.clear()
    st.cache_resource.clear()
    while _OPENED:
        _OPENED.pop().dispose()


def _read(source: Source, fn, *args):
    """Run ``fn(session, *args)`` in a read-only transaction; a store error becomes StoreUnavailable."""
    try:
        with store(source).session() as s:
            return fn(s, *args)
    except SQLAlchemyError as exc:
        log.warning("the contest store could not be read: %s", exc)
        raise StoreUnavailable(str(exc).splitlines()[0]) from exc


# --- standings ---------------------------------------------------------------------------

BOARD_COLUMNS = [
    "rank",
    "tie_rank",
    "tied",
    "team",
    "display_name",
    "score",
    "entries",
    "last_submission",
    "movement_24h",
]


def public_board_rows(session: Session, ch: contest_mod.Challenge, now: dt.datetime) -> pd.DataFrame:
    """:func:`leaderboard.ranking.public_standings` as a frame: the one ranking, on every database."""
    df = pd.DataFrame(ranking.public_standings(session, ch, now=now), columns=BOARD_COLUMNS)
    df["movement_24h"] = df["movement_24h"].astype("Int64")
    return df


@st.cache_data(**_CACHE)
def public_board(source: Source, challenge_id: str, now: dt.datetime | None = None) -> pd.DataFrame:
    """The public leaderboard of a challenge (public scores only), one row per team."""
    ch = contest(source).challenge(challenge_id)
    return _read(source, public_board_rows, ch, now or clock.now())


@st.cache_data(**_CACHE)
def reveal_state(source: Source, challenge_id: str) -> dict | None:
    """``None`` while the challenge is sealed; else when, by whom, and the reveal's report."""

    def read(s: Session) -> dict | None:
        rec = ranking.revealed(s, challenge_id)
        if rec is None:
            return None
        return {"revealed_at": rec.revealed_at, "by": rec.by, "report": dict(rec.report or {})}

    return _read(source, read)


def finalists(source: Source) -> list[dict] | None:
    """The application track's awarded entries after their reveal; None before it (leaderboard/applications.py)."""
    from leaderboard import applications

    return _read(source, applications.finalists)


def round_admitted(source: Source, round_id: str) -> list[dict]:
    """The teams admitted to a round after the first (public: names, regions, no scores)."""
    from leaderboard import rounds

    return _read(
        source,
        lambda s: [
            {"team": a["team"], "display_name": a["display_name"], "region": a["region"]}
            for a in rounds.advanced(s, round_id)
        ],
    )


@st.cache_data(**_CACHE)
def final_board(source: Source, challenge_id: str) -> pd.DataFrame | None:
    """The private ranking after the reveal, with the public → private shift; ``None`` before it.

    The reveal is checked here, in the same transaction, before ``private_standings`` is
    called (which checks it again and raises ``Sealed``): a sealed challenge's private
    scores never leave the database for the app.
    """
    ch = contest(source).challenge(challenge_id)

    def read(s: Session) -> pd.DataFrame | None:
        rec = ranking.revealed(s, ch.id)
        if rec is None:
            return None
        rows = ranking.private_standings(s, ch)
        report = rec.report or {}
        intervals, groups = report.get("intervals") or {}, report.get("groups") or {}
        for r in rows:
            low_high = intervals.get(r["team"])
            r["low"], r["high"] = (low_high[0], low_high[1]) if low_high else (None, None)
            r["group"] = groups.get(r["team"])
        cols = ["rank", "tie_rank", "tied", "team", "display_name", "score", "public_rank", "shift"]
        return pd.DataFrame(rows, columns=[*cols, "low", "high", "group"])

    return _read(source, read)


@st.cache_data(**_CACHE)
def race(source: Source, challenge_id: str, teams: tuple[str, ...], now: dt.datetime | None = None) -> pd.DataFrame:
    """How the leaders got there: each team's best public score so far, at each of its submissions."""
    ch = contest(source).challenge(challenge_id)

    def read(s: Session) -> pd.DataFrame:
        rows = s.execute(
            select(Team.name, Submission.created_at, Score.public_score)
            .join(Submission, Submission.team_id == Team.id)
            .join(Score, and_(Score.submission_id == Submission.id, Score.active.is_(True)))
            .where(
                Team.name.in_(teams),
                Submission.challenge == ch.id,
                Submission.status == statuses.SCORED,
                Score.public_score.is_not(None),
                Submission.created_at <= (now or clock.now()),
            )
            .order_by(Submission.created_at)
        ).all()
        df = pd.DataFrame(rows, columns=["team", "at", "score"])
        if df.empty:
            return df.assign(best=pd.Series(dtype=float))
        grouped = df.groupby("team")["score"]
        df["best"] = grouped.cummax() if ch.higher_is_better else grouped.cummin()
        df["at"] = pd.to_datetime(df["at"], utc=True).dt.tz_convert(str(contest(source).timezone)).dt.tz_localize(None)
        return df

    return _read(source, read)


# --- contest home ------------------------------------------------------------------------


@st.cache_data(**_CACHE)
def challenge_counts(source: Source) -> dict[str, dict]:
    """Teams and submissions per challenge (:func:`leaderboard.ranking.challenge_summary`)."""
    c = contest(source)
    return _read(source, lambda s: {ch.id: ranking.challenge_summary(s, ch) for ch in c.challenges})


@st.cache_data(**_CACHE)
def submissions_per_day(source: Source) -> pd.DataFrame:
    """Submissions per contest day (the day the quota was charged to) and challenge."""

    def read(s: Session) -> pd.DataFrame:
        rows = s.execute(
            select(Submission.quota_day, Submission.challenge, func.count())
            .group_by(Submission.quota_day, Submission.challenge)
            .order_by(Submission.quota_day)
        ).all()
        return pd.DataFrame(rows, columns=["day", "challenge", "submissions"])

    return _read(source, read)


# --- teams -------------------------------------------------------------------------------


@st.cache_data(**_CACHE)
def teams(source: Source) -> pd.DataFrame:
    """Every team that still exists (merged teams are gone), by display name."""

    def read(s: Session) -> pd.DataFrame:
        rows = s.execute(
            select(Team.name, Team.display_name).where(Team.merged_into_id.is_(None)).order_by(Team.display_name)
        ).all()
        return pd.DataFrame(rows, columns=["team", "display_name"])

    return _read(source, read)


@st.cache_data(**_CACHE)
def team_detail(source: Source, team: str, now: dt.datetime | None = None) -> dict | None:
    """Members and every submission of a team (public scores only); ``None`` if no such team."""

    def read(s: Session) -> dict | None:
        t = s.execute(select(Team).where(Team.name == team, Team.merged_into_id.is_(None))).scalar_one_or_none()
        if t is None:
            return None
        members = pd.DataFrame(
            s.execute(select(Member.user, Member.joined_at).where(Member.team_id == t.id).order_by(Member.joined_at)),
            columns=["user", "joined_at"],
        )
        subs = pd.DataFrame(
            s.execute(
                select(
                    Submission.id,
                    Submission.challenge,
                    Submission.created_at,
                    Submission.status,
                    Score.public_score,
                    Submission.selected,
                )
                .outerjoin(Score, and_(Score.submission_id == Submission.id, Score.active.is_(True)))
                .where(Submission.team_id == t.id, Submission.created_at <= (now or clock.now()))
                .order_by(Submission.created_at, Submission.id)
            ),
            columns=["id", "challenge", "created_at", "status", "public_score", "selected"],
        )
        return {"team": t.name, "display_name": t.display_name, "members": members, "submissions": subs}

    return _read(source, read)


def team_provenance(source: Source, team: str) -> pd.DataFrame:
    """Where each of a team's submissions came from (leaderboard/provenance.py), newest first.

    Not public: the team page shows it to the team's members and to organizers only."""
    from leaderboard import provenance

    def read(s: Session) -> pd.DataFrame:
        ids = s.execute(
            select(Submission.id)
            .join(Team, Team.id == Submission.team_id)
            .where(Team.name == team)
            .order_by(Submission.id.desc())
        ).scalars()
        rows = provenance.of(s, list(ids))
        return pd.DataFrame(
            [rows[k] for k in sorted(rows, reverse=True)],
            columns=["submission_id", "notebook", "notebook_sha256", "packages_sha256", "packages", "python", "reads"],
        )

    return _read(source, read)


# --- organizers --------------------------------------------------------------------------


@st.cache_data(ttl=5, show_spinner=False)
def reruns(source: Source) -> pd.DataFrame:
    """The newest re-run verdict of each finalist's submission (organizers only, leaderboard/rerun.py)."""
    from leaderboard import rerun

    def read(s: Session) -> pd.DataFrame:
        return pd.DataFrame(
            rerun.latest(s),
            columns=["id", "challenge", "team", "submission_id", "verdict", "detail", "seconds", "by", "finished_at"],
        )

    return _read(source, read)


@st.cache_data(ttl=5, show_spinner=False)
def recent_submissions(source: Source, limit: int = 100) -> pd.DataFrame:
    """The newest submissions, whatever became of them (for the organizers' live stream)."""

    columns = ["id", "created_at", "team", "user", "challenge", "file_name", "size", "status", "score", "errors"]

    def read(s: Session) -> pd.DataFrame:
        rows = organizer.submission_listing(s, limit=limit)
        df = pd.DataFrame(
            [
                {**r, "team": r["team_display_name"], "score": r["public_score"], "created_at": r["created_at"]}
                for r in rows
            ],
            columns=columns,
        )
        df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
        df["errors"] = df["errors"].map(lambda es: ", ".join(sorted({e.get("code", "?") for e in es or []})))
        return df

    return _read(source, read)


@st.cache_data(**_CACHE)
def status_counts(source: Source) -> dict[str, int]:
    return _read(
        source, lambda s: dict(s.execute(select(Submission.status, func.count()).group_by(Submission.status)).all())
    )


@st.cache_data(**_CACHE)
def error_codes(source: Source) -> pd.DataFrame:
    """Refused submissions per validation error code and challenge (a file may have several codes)."""

    def read(s: Session) -> pd.DataFrame:
        counts: Counter = Counter()
        q = select(Submission.challenge, Submission.errors).where(Submission.status.in_(statuses.REFUSED))
        for challenge, errors in s.execute(q):
            if isinstance(errors, str):  # a driver that hands JSON back as text
                errors = json.loads(errors)
            for code in {e.get("code", "?") for e in errors or []}:
                counts[(code, challenge)] += 1
        rows = [(code, ch, n) for (code, ch), n in counts.items()]
        return pd.DataFrame(rows, columns=["code", "challenge", "submissions"]).sort_values(
            ["submissions", "code"], ascending=[False, True], ignore_index=True
        )

    return _read(source, read)


@st.cache_data(**_CACHE)
def quota_grants(source: Source) -> pd.DataFrame:
    def read(s: Session) -> pd.DataFrame:
        rows = s.execute(
            select(
                QuotaGrant.at,
                Team.display_name,
                QuotaGrant.challenge,
                QuotaGrant.day,
                QuotaGrant.extra,
                QuotaGrant.reason,
                QuotaGrant.by,
            )
            .join(Team, Team.id == QuotaGrant.team_id)
            .order_by(QuotaGrant.at.desc())
        ).all()
        return pd.DataFrame(rows, columns=["at", "team", "challenge", "day", "extra", "reason", "by"])

    return _read(source, read)


@st.cache_data(**_CACHE)
def reveals(source: Source) -> dict[str, dict]:
    def read(s: Session) -> dict[str, dict]:
        return {
            r.challenge: {"revealed_at": r.revealed_at, "by": r.by, "report": bool(r.report)}
            for r in s.execute(select(Reveal)).scalars()
        }

    return _read(source, read)


# --- the open-data catalog ---------------------------------------------------------------


@st.cache_data(ttl=60, show_spinner=False)
def catalog(data_root: str) -> dict:
    """``<data root>/catalog.json`` (written atomically by every build)."""
    return catalog_mod.load(Path(data_root))


@st.cache_data(ttl=60, show_spinner=False)
def catalog_search(data_root: str, query: str, theme: str | None, tier: str | None) -> list[dict]:
    return catalog_mod.search(Path(data_root), query, theme=theme, tier=tier)


@st.cache_data(ttl=600, show_spinner=False, max_entries=64)
def preview(data_root: str, dataset_id: str, version: int, table: str, limit: int = 20) -> pd.DataFrame:
    """The first rows of a published table, read from its Parquet with DuckDB."""
    entry = catalog_mod.entry(Path(data_root), dataset_id, version)
    t = entry["tables"][table]
    base = Path(data_root) / dataset_id / f"v{version}"
    if t.get("partition_by"):
        src = f"read_parquet({lit(str(base / table / '**' / '*.parquet'))}, hive_partitioning=true)"
    else:
        src = f"read_parquet({lit(str(base / (table + '.parquet')))})"
    # The build writes each table sorted by its key, so the first rows of the file are the
    # first rows of the table; no ORDER BY (that would read a 10-million-row table whole).
    con = duckdb.connect(config={"threads": 1})
    try:
        return con.execute(f"SELECT * FROM {src} LIMIT {int(limit)}").df()
    finally:
        con.close()


def environment_lang() -> str | None:
    """``CONTESTHUB_LANG`` when the hub passes one on (zh or en)."""
    value = os.environ.get("CONTESTHUB_LANG", "").strip().lower()[:2]
    return value if value in ("zh", "en") else None
