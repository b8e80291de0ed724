"""A synthetic demo race for the leaderboard: DEMO DATA, never real results.

:func:`seed` writes a believable contest history into a store: teams with Chinese and
English names and their members, submissions spread over the days a challenge has been
open with scores that improve as teams learn (each team at its own pace), some files
refused with the submission checks' error codes, a few final selections, and a quota grant.
The tests of the app and the ranking use it, and the leaderboard benchmark seeds its 1,000
teams and 100,000 submissions with it (rows go in with bulk INSERTs and explicit ids, not one
ORM object at a time; under a minute, cached in ``var/bench/``); ``contesthub up`` does not.

Keep it apart from real data: demo teams are named ``demo-NNNN`` (their display names are
free text, as a real team's are), demo files have made-up digests that no stored file has,
and :func:`seed_if_empty` refuses a store that already has a team. Synthetic history writes
no audit entries; the quota grant, which organizers see, goes through
:func:`leaderboard.submissions.grant` and is audited like a real one.

    python -m leaderboard.demo --teams 40 --submissions 1500     # into the default store
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from leaderboard import submissions as submissions_mod
from leaderboard.contest import Challenge, Contest
from leaderboard.models import Member, Quota, Score, Submission, Team
from leaderboard.store import Store
from sandbox import clock, statuses

PREFIX = "demo-"
DEMO_ACTOR = "demo-organizer"

_ZH_A = ["数据", "星河", "长江", "昆仑", "青松", "蓝鲸", "赤兔", "白鹭", "金桂", "云帆", "晨曦", "北斗", "松鼠", "熊猫"]
_ZH_B = ["先锋队", "探索者", "预测组", "实验室", "小分队", "联盟", "工作室", "研究社", "突击队", "梦之队"]
_EN_A = ["Blue", "Quiet", "Rapid", "Golden", "Silver", "Northern", "Curious", "Lucky", "Brave", "Clever"]
_EN_B = ["Heron", "Panda", "Forecasters", "Gradient", "Lanterns", "Owls", "Tigers", "Analytics", "Kites", "Pandas"]
_GIVEN = ["wei", "fang", "min", "jing", "lei", "yan", "tao", "hui", "alice", "bob", "chen", "ling", "qiang", "xin"]
_FAMILY = ["li", "wang", "zhang", "liu", "chen", "yang", "zhao", "huang", "zhou", "wu", "smith", "garcia"]
_FILES = ["submission.csv", "预测结果.csv", "xgb_v{n}.csv", "lgbm-fold{n}.parquet", "final_{n}.csv.gz", "baseline.csv"]
# (code, zh, en) as the submission checks word them (sandbox.submission_checks)
_ERRORS = [
    ("missing-column", "缺少必需的列", "a required column is missing"),
    ("duplicate-id", "编号重复出现", "an id appears more than once"),
    ("unknown-id", "出现了测试集中没有的编号", "an id that is not in the test set"),
    ("missing-id", "测试集中有编号没有预测值", "an id of the test set has no prediction"),
    ("not-a-number", "预测值不是数字", "a prediction is not a number"),
    ("not-finite", "预测值为 NaN 或无穷大", "a prediction is NaN or infinite"),
    ("probability-range", "概率不在 0 到 1 之间", "a probability is below 0 or above 1"),
    ("unknown-label", "出现了不允许的类别", "a label outside the allowed set"),
]
_ERROR_WEIGHTS = np.array([5, 4, 3, 3, 3, 2, 2, 2], dtype=float)


@dataclass(frozen=True)
class DemoRace:
    """What :func:`seed` wrote."""

    teams: int
    members: int
    submissions: int
    scored: int
    invalid: int
    grants: int


def _team_names(n: int, rng: np.random.Generator) -> list[str]:
    """Unique display names, about half Chinese, half English."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        if rng.random() < 0.5:
            name = str(rng.choice(_ZH_A)) + str(rng.choice(_ZH_B))
        else:
            name = f"{rng.choice(_EN_A)} {rng.choice(_EN_B)}"
        if name in seen:
            name = f"{name} {len(names) + 1}"
        seen.add(name)
        names.append(name)
    return names


def _score_curve(ch: Challenge, skill: np.ndarray, progress: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Public scores that improve with time (``progress`` 0..1) and with the team's skill."""
    learned = (0.35 + 0.55 * skill) * (1 - np.exp(-3.0 * progress))
    noise = rng.normal(0.0, 0.025, len(skill))
    quality = np.clip(learned + noise, 0.0, 0.98)  # 0 = a naive baseline, 1 = perfect
    if ch.higher_is_better:
        low, high = (0.5, 1.0) if ch.scorer.input == "probability" else (0.2, 1.0)
        return low + (high - low) * quality
    return 90.0 - 70.0 * quality  # an error metric such as RMSE: 90 for a naive guess, 20 at best


def _test_rows(ch: Challenge) -> int:
    return 5520 if ch.table == "daily_visits" else 59_800


def seed(
    store: Store,
    contest: Contest,
    *,
    teams: int = 40,
    submissions: int = 1500,
    now: dt.datetime | None = None,
    challenges: list[str] | None = None,
    seed: int = 20261128,
    invalid_share: float = 0.07,
    grant: bool = True,
) -> DemoRace:
    """Write a demo race (see the module docstring); returns what was written.

    Submissions fall between each challenge's opening and ``now`` (clipped to its closing),
    never more than the daily quota per team, challenge and contest day; a request for more
    than fit is trimmed. ``challenges`` limits the race to some challenges (all by default).
    """
    now = now or clock.now()
    rng = np.random.default_rng(seed)
    chosen = [contest.challenge(c) for c in challenges] if challenges else list(contest.challenges)
    with store.session() as s:
        first_team = (s.execute(select(func.max(Team.id))).scalar() or 0) + 1
        first_sub = (s.execute(select(func.max(Submission.id))).scalar() or 0) + 1
        first_score = (s.execute(select(func.max(Score.id))).scalar() or 0) + 1

    # Teams and members.
    display = _team_names(teams, rng)
    team_rows, member_rows = [], []
    for i in range(teams):
        team_id = first_team + i
        created = now - dt.timedelta(days=float(rng.uniform(20, 40)))
        team_rows.append(
            {"id": team_id, "name": f"{PREFIX}{team_id:04d}", "display_name": display[i], "created_at": created}
        )
        for j in range(int(rng.integers(1, 5))):
            user = f"{PREFIX}{rng.choice(_FAMILY)}.{rng.choice(_GIVEN)}{team_id}{'abcd'[j]}"
            member_rows.append({"user": user, "team_id": team_id, "joined_at": created + dt.timedelta(hours=j)})

    # How many submissions each team makes on each challenge: a few teams are very busy, most
    # are not, and each leans towards some challenges. No team goes over a daily quota: a
    # (team, challenge) pair has ``days open x daily quota`` slots, and what does not fit
    # goes to teams with room left.
    windows = [(ch, ch.opens, min(now, ch.closes)) for ch in chosen]
    windows = [(ch, start, end) for ch, start, end in windows if end > start]
    days = [(contest.day(end) - contest.day(start)).days + 1 for _ch, start, end in windows]
    cap = np.array([[d * ch.daily_quota for (ch, _s, _e), d in zip(windows, days, strict=True)]] * teams)
    weights = (rng.pareto(1.5, teams) + 0.2)[:, None] * rng.dirichlet(np.full(max(1, len(windows)), 1.5), teams)
    alloc = np.zeros_like(cap) if windows else np.zeros((teams, 0), dtype=int)
    for _ in range(50):
        remaining = min(submissions, int(cap.sum())) - int(alloc.sum()) if windows else 0
        room = np.where(cap > alloc, weights, 0.0)
        if remaining <= 0 or room.sum() == 0:
            break
        add = np.minimum(cap - alloc, np.floor(room / room.sum() * remaining).astype(int))
        if add.sum() == 0:  # the last few: one each to the pairs with the most weight and room
            order = np.argsort(-room, axis=None)[:remaining]
            add = np.zeros_like(alloc)
            add.flat[order] = 1
        alloc += add
    skill = rng.beta(2.0, 2.5, teams)

    subs: list[dict] = []
    for c, (ch, start, end) in enumerate(windows):
        first_day = contest.day(start)
        for i in range(teams):
            k = int(alloc[i, c])
            if k <= 0:
                continue
            picked = np.sort(rng.choice(int(cap[i, c]), size=k, replace=False)) // ch.daily_quota
            for day_index in picked:
                midnight = dt.datetime.combine(
                    first_day + dt.timedelta(days=int(day_index)), dt.time(), contest.timezone
                )
                lo = max(midnight, start).timestamp()
                hi = min(midnight + dt.timedelta(days=1), end).timestamp()
                at = dt.datetime.fromtimestamp(float(rng.uniform(lo, hi)), dt.UTC)
                subs.append({"team_index": i, "challenge": ch, "created_at": at})
    subs.sort(key=lambda r: r["created_at"])

    n = len(subs)
    invalid = rng.random(n) < invalid_share
    # How far into its challenge's window each submission came (0 at the opening, 1 now).
    span = {ch.id: (start.timestamp(), (end - start).total_seconds()) for ch, start, end in windows}
    progress = np.array(
        [(r["created_at"].timestamp() - span[r["challenge"].id][0]) / span[r["challenge"].id][1] for r in subs]
    )
    team_index = np.array([r["team_index"] for r in subs], dtype=int)
    public = np.empty(n)
    private = np.empty(n)
    for ch, _start, _end in windows:
        mask = np.array([r["challenge"].id == ch.id for r in subs], dtype=bool)
        if not mask.any():
            continue
        public[mask] = _score_curve(ch, skill[team_index[mask]], progress[mask], rng)
        spread = 0.004 if ch.higher_is_better else 0.9
        # The private part of the test set disagrees a little, more for teams that tuned on
        # the public board with many submissions (they overfit it).
        overfit = np.log1p(alloc.sum(axis=1)[team_index[mask]]) * spread * 0.3
        shifted = public[mask] + rng.normal(0.0, spread, mask.sum())
        private[mask] = shifted - overfit if ch.higher_is_better else shifted + overfit

    users_of: dict[int, list[str]] = {}
    for m in member_rows:
        users_of.setdefault(m["team_id"], []).append(m["user"])
    # Per-row randomness drawn at once (a loop of generator calls is the slow part at 100k rows).
    codes = rng.choice(len(_ERRORS), size=n, p=_ERROR_WEIGHTS / _ERROR_WEIGHTS.sum())
    file_kind = rng.integers(0, len(_FILES), n)
    file_n = rng.integers(1, 30, n)
    sizes = rng.integers(20_000, 3_000_000, n)
    delay = rng.uniform(2, 40, n)
    who = rng.integers(0, 1 << 30, n)
    error_row = rng.integers(2, 500, n)
    error_count = rng.integers(1, 40, n)
    digests = rng.bytes(32 * n).hex()
    sub_rows, score_rows = [], []
    for k, r in enumerate(subs):
        ch: Challenge = r["challenge"]
        sid = first_sub + k
        tid = first_team + int(r["team_index"])
        members = users_of[tid]
        bad = bool(invalid[k])
        finished = r["created_at"] + dt.timedelta(seconds=float(delay[k]))
        errors = []
        if bad:
            code, zh, en = _ERRORS[int(codes[k])]
            errors = [
                {
                    "code": code,
                    "message": zh,
                    "message_zh": zh,
                    "message_en": en,
                    "column": None,
                    "rows": [int(error_row[k])],
                    "count": int(error_count[k]),
                }
            ]
        else:
            score_rows.append(
                {
                    "id": first_score + len(score_rows),
                    "submission_id": sid,
                    "public_score": float(public[k]),
                    "sealed_private_score": float(private[k]),
                    "rows": _test_rows(ch),
                    "metric": ch.metric,
                    "metric_version": ch.scorer.version,
                    "dataset_version": 1,
                    "created_at": finished,
                    "active": True,
                    "rescore_id": None,
                }
            )
        sub_rows.append(
            {
                "id": sid,
                "team_id": tid,
                "user": members[int(who[k]) % len(members)],
                "challenge": ch.id,
                "created_at": r["created_at"],
                "quota_day": contest.day(r["created_at"]),
                "file_name": _FILES[int(file_kind[k])].format(n=int(file_n[k])),
                "size": int(sizes[k]),
                "sha256": digests[64 * k : 64 * (k + 1)],
                "status": statuses.INVALID if bad else statuses.SCORED,
                "charged": not bad,
                "errors": errors,
                "provenance": {"client": "contesthub demo"},
                "selected": False,
                "attempts": 1,
                "finished_at": finished,
            }
        )

    # A third of the teams choose their final submissions (two good recent ones).
    by_team_ch: dict[tuple[int, str], list[dict]] = {}
    for row in sub_rows:
        if row["status"] == statuses.SCORED:
            by_team_ch.setdefault((row["team_id"], row["challenge"]), []).append(row)
    for (_tid, ch_id), rows in by_team_ch.items():
        if rng.random() < 0.33:
            limit = contest.challenge(ch_id).final_selections
            for row in rows[-limit:]:
                row["selected"] = True

    used = Counter((r["team_id"], r["challenge"], r["quota_day"]) for r in sub_rows if r["charged"])
    quota_rows = [{"team_id": t, "challenge": c, "day": d, "used": u, "granted": 0} for (t, c, d), u in used.items()]

    with store.session() as s:
        _bulk(s, Team, team_rows)
        _bulk(s, Member, member_rows)
        _bulk(s, Submission, sub_rows)
        _bulk(s, Score, score_rows)
        _bulk(s, Quota, quota_rows)
        _advance_sequences(s)
    with store.session() as s:
        # Fresh statistics, as after any bulk load: without them PostgreSQL plans the
        # standings query for a handful of rows (a nested loop) until autovacuum catches up.
        s.execute(text("ANALYZE"))
    grants = 0
    if grant and team_rows and windows:
        # The organizers compensate one team for a (made-up) scoring outage: a real grant,
        # through the domain function, audited like any other.
        with store.session() as s:
            submissions_mod.grant(
                s,
                contest,
                team_rows[0]["name"],
                windows[0][0].id,
                2,
                reason="演示：评测服务故障补偿 / demo: compensation for a scoring outage",
                by=DEMO_ACTOR,
                day=contest.day(now),
            )
        grants = 1
    return DemoRace(
        teams=len(team_rows),
        members=len(member_rows),
        submissions=len(sub_rows),
        scored=len(score_rows),
        invalid=int(invalid.sum()),
        grants=grants,
    )


def _bulk(session: Session, model, rows: list[dict]) -> None:
    """Insert many rows fast, inside the session's transaction.

    The ORM (and even Core) spends most of its time turning each row's values into
    parameters; here each column is converted once, by hand, to what its type stores (UTC
    times without a zone, JSON text), and the rows go to the driver in one go: ``COPY`` on
    PostgreSQL, ``executemany`` on SQLite.
    """
    if not rows:
        return
    cols = list(rows[0])
    conn = session.connection()
    sqlite = conn.dialect.name != "postgresql"
    quote = conn.dialect.identifier_preparer.quote
    columns = []
    for c in cols:
        values = [r[c] for r in rows]
        convert = _converter(next((v for v in values if v is not None), None), sqlite=sqlite)
        columns.append([None if v is None else convert(v) for v in values] if convert else values)
    data = list(zip(*columns, strict=True))
    raw = conn.connection.driver_connection
    table, names = quote(model.__table__.name), ", ".join(quote(c) for c in cols)
    if not sqlite:
        with raw.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
        return
    cur = raw.cursor()
    try:
        cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in cols)})", data)
    finally:
        cur.close()


def _converter(sample, *, sqlite: bool):
    """How a column's values are stored (see models.UTCDateTime and SQLAlchemy's SQLite types)."""
    if isinstance(sample, dt.datetime):
        if sqlite:
            return lambda v: v.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return lambda v: v.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(sample, dt.date):
        return dt.date.isoformat if sqlite else None
    if isinstance(sample, dict | list):
        return json.dumps
    if isinstance(sample, bool) and sqlite:
        return int
    return None


def _advance_sequences(session: Session) -> None:
    """Explicit ids do not move PostgreSQL's sequences: move them past the rows just written."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for table in ("teams", "submissions", "scores"):
        session.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
            )
        )


def seed_if_empty(store: Store, contest: Contest, **kw) -> DemoRace | None:
    """Seed a demo race only into a store without any team (never next to real teams)."""
    with store.session() as s:
        if s.execute(select(func.count()).select_from(Team)).scalar_one():
            return None
    return seed(store, contest, **kw)


def main(argv: list[str] | None = None) -> None:
    from leaderboard import contest as contest_mod
    from leaderboard.store import connect
    from sandbox.settings import Paths

    ap = argparse.ArgumentParser(description="Seed a DEMO race into an empty contest store.")
    ap.add_argument("--teams", type=int, default=40)
    ap.add_argument("--submissions", type=int, default=1500)
    ap.add_argument("--db-url", default=None, help="default: CONTESTHUB_DB_URL, else SQLite under the private root")
    args = ap.parse_args(argv)
    paths = Paths.from_env().ensure()
    store = connect(paths, args.db_url)
    try:
        race = seed_if_empty(store, contest_mod.load(), teams=args.teams, submissions=args.submissions)
    finally:
        store.dispose()
    if race is None:
        raise SystemExit("the store already has teams; the demo race is only seeded into an empty store")
    print(f"demo race: {race.teams} teams, {race.submissions} submissions ({race.invalid} invalid)")


if __name__ == "__main__":
    main()
