"""The contest definition: ``config/contest.toml``.

One file says what the contest is: its title, time zone, rounds and challenges. A
challenge names its data (a dataset table whose ``holdout`` is the test set), the id
columns, the hidden target (and, for a yes/no question, which value counts as yes), the
metric, the public share of the test rows, quotas and team sizes, and when it opens,
closes and is revealed. :func:`load` checks the file against
``schemas/contest.schema.json`` and against the dataset descriptors, and reports every
problem with file and key.

Rounds (初赛 / 复赛 / 决赛, ``[[rounds]]``) group challenges; a round after the first admits
only the teams the previous round advanced (leaderboard/rounds.py). The phases are derived from
the rounds' dates, and each is enforced: *open* (the round's challenges take submissions and
final selections) and *review* (closed; final rankings sealed until the organizers reveal them).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema

from leaderboard import metrics, schedule
from sandbox.descriptor import Dataset, load_all, test_table_name
from sandbox.errors import NotFound, Problem, ProblemsError
from sandbox.settings import PROJECT_ROOT, Paths

SCHEMA = Path(__file__).with_name("schemas") / "contest.schema.json"
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "contest.toml"


def config_path(explicit: str | os.PathLike | None = None) -> Path:
    """``--contest``, else ``CONTESTHUB_CONTEST``, else ``config/contest.toml`` in the checkout."""
    return Path(explicit or os.environ.get("CONTESTHUB_CONTEST", DEFAULT_CONFIG))


class ContestConfigError(ProblemsError):
    code = "contest-invalid"
    what_en, what_zh = "the contest definition", "比赛定义"


@dataclass(frozen=True)
class Challenge:
    id: str
    title: dict[str, str]
    description: dict[str, str]
    dataset: str
    table: str
    id_columns: tuple[str, ...]
    target: str
    positive: str | None
    prediction: str
    metric: str
    metric_params: dict
    public_fraction: float
    daily_quota: int
    max_team_size: int
    final_selections: int
    opens: dt.datetime
    closes: dt.datetime
    reveal: dt.datetime
    upload_limit_mb: int = 50  # the contest's, copied here so that whatever scores a challenge applies it
    # How much better than the naive baseline a predictor from public tables alone may score (the
    # share of the gap to a perfect score it closes) before `contest validate` calls it a leak.
    leakage_margin: float = 0.05
    # How far a finalist notebook's re-run predictions may be from the submitted ones and still
    # count as reproduced (absolute, per row; labels must be equal): for non-deterministic models.
    rerun_tolerance: float = 0.0
    # A ranking challenge: the id column whose rows are ranked together (the other id is the item).
    group: str | None = None

    @property
    def item(self) -> str | None:
        """A ranking challenge's item column: the id that is not the group."""
        return next((c for c in self.id_columns if c != self.group), None) if self.group else None

    def evaluate(self, y, p, groups=None, items=None) -> float:
        """The metric of row-level answers ``y`` and predictions ``p``. A ranking challenge also
        needs each row's group and item: its rows are ranked within their group by score."""
        if self.group is None:
            return self.scorer(y, p, **self.metric_params)
        truth, ranked = metrics.as_rankings(y, p, groups, items)
        return self.scorer(truth, ranked, **self.metric_params)

    @property
    def upload_limit(self) -> int:
        """The largest submission file, in bytes, before and after decompressing."""
        return self.upload_limit_mb << 20

    @property
    def scorer(self) -> metrics.Metric:
        return metrics.get(self.metric)

    @property
    def test_table(self) -> str:
        """The name of the published table of the rows to predict, within its dataset."""
        return test_table_name(self.table)

    @property
    def test_relation(self) -> str:
        """``<dataset>.<table>_test``: what a contestant queries (``sandbox.sql``) for the rows to predict."""
        return f"{self.dataset}.{self.test_table}"

    @property
    def higher_is_better(self) -> bool:
        return self.scorer.higher_is_better


@dataclass(frozen=True)
class Limits:
    """What a team's uploads may cost the platform (``[limits]`` in the contest file).

    The quota bounds a team's valid submissions; these bound everything else: how fast it may
    upload (invalid files included), how many invalid files a day are free (later ones keep
    their quota unit), how many bytes of files it may have kept, and how long the bytes of an
    invalid file are kept (its digest, size and errors stay for ever)."""

    uploads_per_minute: int = 10
    free_invalid_per_day: int = 10
    team_storage_mb: int = 1024
    invalid_retention_days: int = 7
    # A finalist's notebook re-run (``contesthub verify-run``): wall-clock seconds and memory.
    rerun_seconds: int = 1800
    rerun_memory_mb: int = 4096

    @property
    def team_storage(self) -> int:
        return self.team_storage_mb << 20


@dataclass(frozen=True)
class Phase:
    """A stretch of a round during which the engine does one thing (see :attr:`Contest.phases`)."""

    id: str
    title: dict[str, str]
    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class Advance:
    """Who enters the next round: the ``top`` teams of each challenge's final ranking
    (``by="challenge"``) or by the sum of their final ranks over the round (``"rank_sum"``),
    within each team region when ``per_region``."""

    top: int
    by: str = "challenge"
    per_region: bool = False


@dataclass(frozen=True)
class Round:
    id: str
    title: dict[str, str]
    challenges: tuple[str, ...]
    opens: dt.datetime
    closes: dt.datetime
    reveal: dt.datetime
    advance: Advance | None = None


@dataclass(frozen=True)
class Criterion:
    id: str
    title: dict[str, str]
    weight: float
    low: int = 1
    high: int = 10


@dataclass(frozen=True)
class Award:
    """一等奖, 二等奖, ...: the next ``count`` entries, or the next ``share`` of all entries (rounded up)."""

    id: str
    title: dict[str, str]
    count: int | None = None
    share: float | None = None


@dataclass(frozen=True)
class ApplicationTrack:
    """应用创新赛道 (``[application_track]``): write-ups scored by jurors (leaderboard/applications.py)."""

    title: dict[str, str]
    opens: dt.datetime
    closes: dt.datetime
    reveal: dt.datetime
    criteria: tuple[Criterion, ...]
    awards: tuple[Award, ...]
    writeup_mb: int = 10
    jurors_per_entry: int = 3
    trim: int = 1


# The phases of a round; a contest without [[rounds]] is one round, whose phases keep these ids.
PHASES = {
    "open": {"zh": "开放提交", "en": "Open for submissions"},
    "review": {"zh": "评审与公布", "en": "Review and reveal"},
}


@dataclass(frozen=True)
class Contest:
    title: dict[str, str]
    timezone: ZoneInfo
    challenges: tuple[Challenge, ...]
    path: Path
    team_freeze: dt.datetime | None = None
    upload_limit_mb: int = 50
    # A demo's dates move with its anchor day (leaderboard/schedule.py); None: fixed dates.
    demo_day: dt.date | None = None
    anchor_day: dt.date | None = None
    limits: Limits = Limits()
    rounds: tuple[Round, ...] = ()
    application_track: ApplicationTrack | None = None

    @property
    def upload_limit(self) -> int:
        return self.upload_limit_mb << 20

    @property
    def phases(self) -> tuple[Phase, ...]:
        """Each round's *open* phase (submissions, final selections) and *review* phase (closed,
        sealed until revealed), from its challenges' dates: nothing here is only a label."""
        rounds = self.rounds or (
            Round(
                "",
                {"zh": "", "en": ""},
                tuple(c.id for c in self.challenges),
                min(c.opens for c in self.challenges),
                self.last_close,
                max(c.reveal for c in self.challenges),
            ),
        )
        out = []
        for r in rounds:
            for kind, start, end in (("open", r.opens, r.closes), ("review", r.closes, r.reveal)):
                title = PHASES[kind]
                if r.id:
                    title = {"zh": f"{r.title['zh']}·{title['zh']}", "en": f"{r.title['en']}: {title['en']}"}
                out.append(Phase(f"{r.id}.{kind}" if r.id else kind, title, start, end))
        return tuple(out)

    def round_of(self, challenge_id: str) -> Round | None:
        """The round a challenge belongs to (None: a contest without rounds)."""
        return next((r for r in self.rounds if challenge_id in r.challenges), None)

    def round(self, round_id: str) -> Round:
        for r in self.rounds:
            if r.id == round_id:
                return r
        raise NotFound(
            f"no round {round_id!r} (rounds: {', '.join(r.id for r in self.rounds) or 'none'})",
            f"没有轮次 {round_id!r}（现有轮次：{', '.join(r.id for r in self.rounds) or '无'}）",
        )

    def next_round(self, round_id: str) -> Round | None:
        ids = [r.id for r in self.rounds]
        i = ids.index(round_id)
        return self.rounds[i + 1] if i + 1 < len(ids) else None

    def previous_round(self, round_id: str) -> Round | None:
        ids = [r.id for r in self.rounds]
        i = ids.index(round_id)
        return self.rounds[i - 1] if i else None

    @property
    def last_close(self) -> dt.datetime:
        """When the last challenge stops taking submissions."""
        return max(c.closes for c in self.challenges)

    @property
    def max_team_size(self) -> int:
        """A team plays every challenge, so the smallest limit of any challenge applies."""
        return min(c.max_team_size for c in self.challenges)

    def day(self, moment: dt.datetime) -> dt.date:
        """The contest day of a moment: quotas reset at midnight in the contest's time zone."""
        return moment.astimezone(self.timezone).date()

    def teams_frozen(self, now: dt.datetime) -> bool:
        return self.team_freeze is not None and now >= self.team_freeze

    def challenge(self, challenge_id: str) -> Challenge:
        for c in self.challenges:
            if c.id == challenge_id:
                return c
        raise NotFound(
            f"no challenge {challenge_id!r} (challenges: {', '.join(c.id for c in self.challenges)})",
            f"没有赛题 {challenge_id!r}（现有赛题：{', '.join(c.id for c in self.challenges)}）",
        )


def _jsonable(value):
    """TOML dates and times as ISO text, so the JSON Schema can check them."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        json.loads(SCHEMA.read_text("utf-8")), format_checker=jsonschema.FormatChecker()
    )


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _time(raw, tz: ZoneInfo, days: int = 0) -> dt.datetime:
    value = raw if isinstance(raw, dt.datetime) else dt.datetime.fromisoformat(str(raw))
    return schedule.shift(value if value.tzinfo else value.replace(tzinfo=tz), days, tz)


def load(
    path: Path | None = None,
    datasets_dir: Path | None = None,
    *,
    private_root: Path | None = None,
    anchor_day: dt.date | None = None,
) -> Contest:
    """Read and check the contest definition; raise one ContestConfigError listing every problem.

    A demo file (``[demo] day = ...``) has its dates moved to its anchor day: ``anchor_day``
    when given (tests), else the one recorded under ``private_root`` (default: the
    environment's), else today (see leaderboard/schedule.py).
    """
    path = config_path(path)
    file = str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ContestConfigError(
            [Problem(file, "", "does not exist", "a contest definition (config/contest.toml)")]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ContestConfigError([Problem(file, "", f"is not valid TOML ({exc})", "TOML")]) from None
    problems = [
        Problem(file, _path(e.absolute_path), e.message, "")
        for e in sorted(_validator().iter_errors(_jsonable(doc)), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if problems:
        raise ContestConfigError(problems)
    try:
        tz = ZoneInfo(doc["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise ContestConfigError(
            [
                Problem(
                    file,
                    "timezone",
                    f"{doc['timezone']!r} is not a known time zone",
                    "an IANA name such as Asia/Shanghai",
                )
            ]
        ) from None
    demo_day = dt.date.fromisoformat(str(doc["demo"]["day"])) if "demo" in doc else None
    if demo_day is not None and anchor_day is None:
        anchor_day = schedule.anchor_day(private_root or Paths.from_env().private_root, tz)
    days = (anchor_day - demo_day).days if demo_day is not None else 0
    datasets = {d.id: d for d in load_all(datasets_dir or PROJECT_ROOT / "datasets")}
    upload_limit_mb = doc.get("upload_limit_mb", 50)
    raw_rounds = doc.get("rounds", [])
    round_of = {cid: r for r in raw_rounds for cid in r["challenges"]}
    challenges, seen = [], set()
    for i, c in enumerate(doc["challenges"]):
        key = f"challenges[{i}]"
        when = {}
        for k in ("opens", "closes", "reveal"):
            raw = c.get(k, round_of.get(c["id"], {}).get(k))
            if raw is None:
                problems.append(
                    Problem(file, f"{key}.{k}", f"{c['id']} has no {k} and its round gives none", f"{k} = <time>")
                )
                raw = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
            when[k] = _time(raw, tz, days)
        if c["id"] in seen:
            problems.append(Problem(file, f"{key}.id", f"challenge {c['id']!r} is defined twice", "unique ids"))
        seen.add(c["id"])
        problems += _check_challenge(file, key, c, datasets)
        challenges.append(
            Challenge(
                id=c["id"],
                title=c["title"],
                description=c["description"],
                dataset=c["dataset"],
                table=c["table"],
                id_columns=tuple(c["id_columns"]),
                target=c["target"],
                positive=c.get("positive"),
                prediction=c.get("prediction", c["target"]),
                metric=c["metric"],
                metric_params=c.get("metric_params", {}),
                public_fraction=float(c["public_fraction"]),
                daily_quota=c["daily_quota"],
                max_team_size=c["max_team_size"],
                final_selections=c.get("final_selections", 2),
                opens=when["opens"],
                closes=when["closes"],
                reveal=when["reveal"],
                upload_limit_mb=upload_limit_mb,
                leakage_margin=float(c.get("leakage_margin", 0.05)),
                rerun_tolerance=float(c.get("rerun_tolerance", 0.0)),
                group=c.get("group"),
            )
        )
        ch = challenges[-1]
        if not ch.opens < ch.closes <= ch.reveal:
            problems.append(Problem(file, f"{key}.opens", "the times are out of order", "opens < closes <= reveal"))
    rounds = _rounds(file, raw_rounds, challenges, problems)
    team_freeze = _time(doc["team_freeze"], tz, days) if "team_freeze" in doc else None
    if team_freeze and challenges and not team_freeze <= max(c.closes for c in challenges):
        problems.append(
            Problem(file, "team_freeze", "teams freeze after every challenge has closed", "team_freeze <= closes")
        )
    if demo_day is not None:
        midday = schedule.shift(dt.datetime.combine(demo_day, dt.time(12), tz), days, tz)
        first = set(rounds[0].challenges) if rounds else {ch.id for ch in challenges}
        for i, ch in enumerate(challenges):
            if ch.id in first and not ch.opens <= midday < ch.closes:
                problems.append(
                    Problem(
                        file,
                        f"challenges[{i}].opens",
                        f"{ch.id} is not open on the demo's day {demo_day}, so the demo would start closed",
                        "opens <= demo.day < closes",
                    )
                )
    track = _track(file, doc.get("application_track"), tz, days, problems)
    if problems:
        raise ContestConfigError(problems)
    return Contest(
        title=doc["title"],
        timezone=tz,
        challenges=tuple(challenges),
        path=path,
        team_freeze=team_freeze,
        upload_limit_mb=upload_limit_mb,
        demo_day=demo_day,
        anchor_day=anchor_day if demo_day is not None else None,
        limits=Limits(**doc.get("limits", {})),
        rounds=rounds,
        application_track=track,
    )


def _track(file: str, raw: dict | None, tz: ZoneInfo, days: int, problems: list[Problem]) -> ApplicationTrack | None:
    if raw is None:
        return None
    track = ApplicationTrack(
        title=raw["title"],
        opens=_time(raw["opens"], tz, days),
        closes=_time(raw["closes"], tz, days),
        reveal=_time(raw["reveal"], tz, days),
        criteria=tuple(
            Criterion(c["id"], c["title"], float(c["weight"]), c.get("min", 1), c.get("max", 10))
            for c in raw["criteria"]
        ),
        awards=tuple(Award(a["id"], a["title"], a.get("count"), a.get("share")) for a in raw["awards"]),
        writeup_mb=raw.get("writeup_mb", 10),
        jurors_per_entry=raw.get("jurors_per_entry", 3),
        trim=raw.get("trim", 1),
    )
    if not track.opens < track.closes <= track.reveal:
        problems.append(
            Problem(file, "application_track.opens", "the times are out of order", "opens < closes <= reveal")
        )
    for i, c in enumerate(track.criteria):
        if c.low >= c.high:
            problems.append(Problem(file, f"application_track.criteria[{i}].min", "min must be below max", "min < max"))
    if len({c.id for c in track.criteria}) != len(track.criteria):
        problems.append(Problem(file, "application_track.criteria", "a criterion is defined twice", "unique ids"))
    return track


def _rounds(file: str, raw: list[dict], challenges: list[Challenge], problems: list[Problem]) -> tuple[Round, ...]:
    """The rounds, in order, each spanning its challenges' dates; appends what is wrong to ``problems``.

    Every challenge belongs to exactly one round when there are rounds (a challenge outside them
    would admit everybody); every round but the last says who advances; a round opens only after
    the previous one closed (its teams are not known before)."""
    by_id = {c.id: c for c in challenges}
    out: list[Round] = []
    placed: dict[str, str] = {}
    for i, r in enumerate(raw):
        key = f"rounds[{i}]"
        if any(o.id == r["id"] for o in out):
            problems.append(Problem(file, f"{key}.id", f"round {r['id']!r} is defined twice", "unique ids"))
        for cid in r["challenges"]:
            if cid not in by_id:
                problems.append(
                    Problem(file, f"{key}.challenges", f"unknown challenge {cid!r}", "one of " + ", ".join(by_id))
                )
            elif cid in placed:
                problems.append(
                    Problem(
                        file,
                        f"{key}.challenges",
                        f"{cid} is already in round {placed[cid]!r}",
                        "each challenge in one round (give the next round its own challenge id)",
                    )
                )
            placed.setdefault(cid, r["id"])
        chs = [by_id[c] for c in r["challenges"] if c in by_id]
        if not chs:
            continue
        adv = r.get("advance")
        out.append(
            Round(
                id=r["id"],
                title=r["title"],
                challenges=tuple(c.id for c in chs),
                opens=min(c.opens for c in chs),
                closes=max(c.closes for c in chs),
                reveal=max(c.reveal for c in chs),
                advance=Advance(adv["top"], adv.get("by", "challenge"), bool(adv.get("per_region", False)))
                if adv
                else None,
            )
        )
        last = i == len(raw) - 1
        if adv and last:
            problems.append(
                Problem(file, f"{key}.advance", "the last round has no next round to advance to", "no advance")
            )
        if not adv and not last:
            problems.append(
                Problem(
                    file,
                    f"{key}.advance",
                    f"round {r['id']!r} does not say who enters round {raw[i + 1]['id']!r}",
                    "advance = { top = N }",
                )
            )
        if len(out) > 1 and out[-1].opens < out[-2].closes:
            problems.append(
                Problem(
                    file,
                    f"{key}.challenges",
                    f"round {out[-1].id!r} opens before round {out[-2].id!r} closes",
                    "rounds in order, without overlap",
                )
            )
    if raw:
        for i, c in enumerate(challenges):
            if c.id not in placed:
                problems.append(
                    Problem(
                        file,
                        f"challenges[{i}].id",
                        f"{c.id} is in no round, so nothing would gate it",
                        "list it in one [[rounds]] challenges",
                    )
                )
    return tuple(out)


def load_for(paths: Paths, contest_file: str | os.PathLike | None = None) -> Contest:
    """The contest as a command or service over ``paths`` sees it: ``contest_file``, else
    CONTESTHUB_CONTEST, else config/contest.toml; a demo's schedule from ``paths.private_root``."""
    return load(config_path(contest_file), paths.datasets_dir, private_root=paths.private_root)


class Watched:
    """The contest of a long-running service: read again when its file or the demo's schedule
    changes (``contesthub contest demo close`` takes effect without a restart). Two ``stat``
    calls per use; a file that became invalid keeps the last good contest and is logged."""

    def __init__(self, paths: Paths, contest_file: str | os.PathLike | None = None):
        self.paths, self.file = paths, config_path(contest_file)
        self._stamp = self._stat()
        self._contest = load_for(paths, self.file)

    def _stat(self) -> tuple:
        files = (self.file, schedule.path(self.paths.private_root))
        return tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in files)

    def get(self) -> Contest:
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._contest = load_for(self.paths, self.file)
            except ContestConfigError as exc:
                logging.getLogger(__name__).error("kept the previous contest definition: %s", exc)
        return self._contest


def _check_challenge(file: str, key: str, c: dict, datasets: dict[str, Dataset]) -> list[Problem]:
    out = []
    if c["metric"] not in metrics.REGISTRY:
        out.append(
            Problem(
                file,
                f"{key}.metric",
                f"unknown metric {c['metric']!r}",
                "one of " + ", ".join(sorted(metrics.REGISTRY)),
            )
        )
        return out
    m = metrics.REGISTRY[c["metric"]]
    if m.kind == "binary" and "positive" not in c:
        out.append(
            Problem(
                file,
                f"{key}.positive",
                f"{c['metric']} scores a yes/no question",
                "positive = the target value that counts as yes",
            )
        )
    if m.kind == "ranking":
        if "positive" not in c:
            out.append(
                Problem(
                    file,
                    f"{key}.positive",
                    f"{c['metric']} ranks items; say which target value marks a relevant one",
                    "positive = the target value of a chosen item",
                )
            )
        if c.get("group") not in c["id_columns"] or len(c["id_columns"]) != 2:
            out.append(
                Problem(
                    file,
                    f"{key}.group",
                    f"{c['metric']} ranks the items of each group: the ids must be a group and an item",
                    'id_columns = ["<group>", "<item>"], group = "<group>"',
                )
            )
    elif "group" in c:
        out.append(Problem(file, f"{key}.group", "only a ranking challenge has groups", "no group"))
    ds = datasets.get(c["dataset"])
    if ds is None:
        out.append(
            Problem(
                file, f"{key}.dataset", f"unknown dataset {c['dataset']!r}", "one of " + ", ".join(sorted(datasets))
            )
        )
        return out
    table = next((t for t in ds.tables if t.name == c["table"]), None)
    if table is None:
        out.append(
            Problem(
                file,
                f"{key}.table",
                f"dataset {ds.id!r} has no table {c['table']!r}",
                "one of " + ", ".join(t.name for t in ds.tables),
            )
        )
        return out
    if not table.holdout:
        out.append(
            Problem(
                file,
                f"{key}.table",
                f"{ds.id}.{table.name} has no holdout, so there is no hidden test set",
                f"holdout: {{where, hidden}} on table {table.name} in {ds.path.name}",
            )
        )
        return out
    if c["target"] not in table.holdout["hidden"]:
        out.append(
            Problem(
                file,
                f"{key}.target",
                f"{c['target']!r} is not hidden in the holdout of {table.name}",
                "one of " + ", ".join(table.holdout["hidden"]),
            )
        )
    published = {f.name for f in table.fields if f.published} - set(table.holdout["hidden"])
    for col in c["id_columns"]:
        if col not in published:
            out.append(
                Problem(
                    file,
                    f"{key}.id_columns",
                    f"{col!r} is not a column of {table.test_table}",
                    "one of " + ", ".join(sorted(published)),
                )
            )
    return out
