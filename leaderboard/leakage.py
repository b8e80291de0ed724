"""Do a challenge's hidden answers leak through the open data? Checked by ``contesthub contest validate``.

A holdout hides a table's answers, but the other tables of the dataset may still carry them:
visit records sampled from the same visits, counted per hospital and day, give the daily
visits back. So for every challenge this module builds the simple predictors anyone could
build from the public tables alone, and scores them on the hidden answers:

* keys: the challenge's id columns and its time column (one of the ids, else the test table's
  date), all together, the time alone, and the other ids alone;
* for every other table of the dataset (its published rows and its test table together) that
  has those keys (the same column name; for the time, any date column, both brought to the
  coarser of their units: day, week, month, quarter, year), the number of rows and the sum of
  every numeric column per key;
* each such feature is fitted by least squares (one-vs-rest for labels) on the challenge's
  public training rows, together with the naive baseline: per entity (the ids but the time),
  the mean of the last stretch of training as long as the holdout, or the rate, or the most
  frequent label; overall where an entity is new. Hidden rows the feature has no value for
  get the reference's prediction.

The reference is the baseline alone, fitted the same way. A predictor that closes more than
the challenge's ``leakage_margin`` of the gap between the reference's score and a perfect
score leaks: ``validate`` refuses the challenge and names the predictor (table, feature,
keys). The cure is in the dataset: withhold the holdout's period or entities from that table
(``holdout.related`` in dataset.yaml), or publish it coarser.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from leaderboard.contest import Challenge, Contest
from leaderboard.scoring import solution_for
from sandbox import catalog
from sandbox.errors import ContesthubError, NotFound
from sandbox.privacy import DATE_RULES
from sandbox.quoting import lit, q
from sandbox.settings import Paths

#: Time units and the SQL turning a date ``{c}`` into each.
UNITS = {
    "date": "CAST({c} AS DATE)",
    **{rule: sql for rule, (sql, _) in DATE_RULES.items()},
    "year": "CAST(year({c}) AS INTEGER)",
}
_FORMAT_UNITS = {fmt: rule for rule, (_, fmt) in DATE_RULES.items()}
#: A feature needs this many training rows with a value before it is fitted.
MIN_ROWS = 30


class HoldoutLeak(ContesthubError):
    """A predictor built from public tables alone scores too well on a challenge's hidden answers."""

    code = "holdout-leak"


@dataclass
class Predictor:
    table: str  # where the feature comes from (its published rows and its test table together)
    feature: str  # "count" or "sum(<column>)"
    keys: list[str]  # "date = visit_date (quarter)", "hospital_id"
    score: float
    gain: float  # the share of the gap between the reference and a perfect score it closes

    def describe(self) -> str:
        return f"{self.feature} of {self.table} per ({', '.join(self.keys)})"


@dataclass
class LeakageReport:
    challenge: str
    metric: str
    margin: float
    baseline: str = ""
    baseline_score: float | None = None
    predictors: list[Predictor] = field(default_factory=list)  # best first
    skipped: str | None = None  # why nothing was checked (the data is not built yet)

    @property
    def leak(self) -> Predictor | None:
        best = self.predictors[0] if self.predictors else None
        return best if best and best.gain > self.margin else None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["predictors"] = out["predictors"][:5]
        out["leaks"] = self.leak is not None
        return out


@dataclass(frozen=True)
class _Column:
    name: str
    unit: str | None  # a time unit, or None for any other column
    numeric: bool


@dataclass(frozen=True)
class _Key:
    """One join key between the challenge's rows (alias ``r``) and another table, both as text."""

    ours: str
    theirs: str
    text: str  # for the report


def _columns(table_doc: dict) -> dict[str, _Column]:
    out = {}
    for f in table_doc["schema"]["fields"]:
        unit = None
        if f["type"] in ("date", "datetime"):
            unit = "date"
        elif f["type"] == "year":
            unit = "year"
        elif f["type"] == "string" and f.get("format") in _FORMAT_UNITS:
            unit = _FORMAT_UNITS[f["format"]]
        out[f["name"]] = _Column(f["name"], unit, f["type"] in ("integer", "number"))
    return out


def _files(data_root: Path, entry: dict, name: str) -> str:
    folder = data_root / entry["id"] / f"v{entry['version']}"
    files = [str(folder / f["path"]) for f in entry["tables"][name]["files"]]
    hive = bool(entry["tables"][name].get("partition_by"))
    return f"read_parquet([{', '.join(lit(f) for f in files)}], hive_partitioning = {lit(hive)})"


def _public(data_root: Path, entry: dict, name: str) -> str:
    """A table's published rows and its test table's, as one relation (missing columns are NULL)."""
    rel = f"SELECT * FROM {_files(data_root, entry, name)}"
    test = (entry["tables"][name].get("holdout") or {}).get("test_table")
    if test and test in entry["tables"]:
        rel += f" UNION ALL BY NAME SELECT * FROM {_files(data_root, entry, test)}"
    return rel


def _to_unit(column: str, source: str, target: str) -> str | None:
    """SQL bringing time ``column`` of unit ``source`` to unit ``target``, as text; None when it cannot."""
    if source == target:
        return f"CAST({column} AS VARCHAR)"
    if source == "date":
        return f"CAST({UNITS[target].format(c=column)} AS VARCHAR)"
    return None


def check(challenge: Challenge, paths: Paths) -> LeakageReport:
    """Build and score the public-table predictors of one challenge (see the module's docstring)."""
    report = LeakageReport(challenge.id, challenge.metric, challenge.leakage_margin)
    try:
        entry = catalog.entry(paths.data_root, challenge.dataset)
        solution, _ = solution_for(challenge, paths)
    except NotFound:
        report.skipped = f"{challenge.dataset} is not built yet"
        return report
    if challenge.test_table not in entry["tables"]:
        report.skipped = f"{challenge.dataset}.{challenge.table} has no published test table"
        return report
    con = duckdb.connect()
    try:
        return _check(con, challenge, paths, entry, solution, report)
    finally:
        con.close()


def _check(con, ch: Challenge, paths: Paths, entry: dict, solution: Path, report: LeakageReport) -> LeakageReport:
    tables = entry["tables"]
    mine = _columns(tables[ch.test_table])
    time = next((c for c in ch.id_columns if c in mine and mine[c].unit), None)
    if time is None:  # no time among the ids (a visit id): the test table's date, if it has one
        time = next((n for n, c in mine.items() if c.unit), None)
    entities = [c for c in ch.id_columns if c != time]
    y = f"CAST({q(ch.target)} = {lit(ch.positive)} AS INTEGER)" if ch.positive is not None else q(ch.target)
    keep = ", ".join(q(c) for c in dict.fromkeys([*ch.id_columns, *([time] if time else [])]))
    con.execute(
        f"CREATE TABLE rows AS SELECT row_number() OVER () AS __i, * FROM ("
        f"SELECT 'train' AS __set, {keep}, {y} AS __y FROM {_files(paths.data_root, entry, ch.table)} "
        f"WHERE {q(ch.target)} IS NOT NULL "
        f"UNION ALL SELECT 'test', {keep}, {y} FROM read_parquet({lit(str(solution))}))"
    ).fetchall()
    report.baseline = _baseline(con, ch, time, entities, mine)
    fitted = _Fitted.load(con, ch)
    report.baseline_score = round(_score(ch, fitted, fitted.predict(None, None)), 6)
    key_sets: list[list[str]] = []
    for keys in ([*entities, time], [time], entities):
        if keys and all(keys) and keys not in key_sets:
            key_sets.append(keys)
    found: list[Predictor] = []
    for keys in key_sets:
        for name, doc in tables.items():
            if name == ch.table or "test_of" in doc:  # the challenge's own columns are its inputs, not a leak
                continue
            for matching in _matchings(keys, time, mine, _columns(doc)):
                found += _predictors(con, ch, paths, entry, name, doc, matching, fitted, report.baseline_score)
    report.predictors = sorted(found, key=lambda p: -p.gain)
    return report


def _baseline(con, ch: Challenge, time: str | None, entities: list[str], mine: dict[str, _Column]) -> str:
    """Give every row the naive baseline ``__b`` (table ``base``); returns what it is, for the report."""
    recent, span_text = "TRUE", "all training rows"
    if time and mine[time].unit == "date":
        (span,) = con.execute(
            f"SELECT datediff('day', min({q(time)}), max({q(time)})) + 1 FROM rows WHERE __set = 'test'"
        ).fetchall()[0]
        if span:
            recent = f"{q(time)} > (SELECT max({q(time)}) FROM rows WHERE __set = 'train') - INTERVAL {int(span)} DAY"
            span_text = f"the last {int(span)} days of training"
    if ch.scorer.input == "label":
        agg, what = "mode(__y)", "most frequent label"
    else:
        agg, what = "avg(__y)", "mean" if ch.positive is None else "rate"
    overall = f"(SELECT {agg} FROM rows WHERE __set = 'train' AND {recent})"
    if not entities:
        con.execute(f"CREATE TABLE base AS SELECT __i, {overall} AS __b FROM rows").fetchall()
        return f"overall {what} over {span_text}"
    by = ", ".join(q(c) for c in entities)
    on = " AND ".join(f"r.{q(c)} IS NOT DISTINCT FROM e.{q(c)}" for c in entities)
    con.execute(
        f"CREATE TABLE base AS SELECT r.__i, coalesce(e.__b, {overall}) AS __b FROM rows r LEFT JOIN "
        f"(SELECT {by}, {agg} AS __b FROM rows WHERE __set = 'train' AND {recent} GROUP BY ALL) e ON {on}"
    ).fetchall()
    return f"{what} per {', '.join(entities)} over {span_text}"


def _matchings(keys: list[str], time: str | None, mine: dict[str, _Column], theirs: dict[str, _Column]):
    """Every way to join ``keys`` to a table with columns ``theirs``: ids by name, the time by unit."""
    fixed: dict[str, _Key] = {}
    for k in keys:
        if k == time:
            continue
        other = theirs.get(k)
        if other is None or other.unit:
            return []
        fixed[k] = _Key(f"CAST(r.{q(k)} AS VARCHAR)", f"CAST({q(k)} AS VARCHAR)", k)
    if time not in keys:
        return [fixed]
    unit = mine[time].unit
    out = []
    for c in theirs.values():
        if not c.unit:
            continue
        coarse = c.unit if unit == "date" else unit
        ours, their = _to_unit(f"r.{q(time)}", unit, coarse), _to_unit(q(c.name), c.unit, coarse)
        if ours and their:
            out.append({**fixed, time: _Key(ours, their, f"{time} = {c.name} ({coarse})")})
    return out


@dataclass
class _Fitted:
    """The challenge's rows as arrays: training and hidden targets, and the baseline of each.

    Labels are coded as column numbers (one-vs-rest); the fits are least squares on the normal
    equations, a handful of columns over the training rows.
    """

    ch: Challenge
    y_train: np.ndarray
    y_test: np.ndarray
    base_train: np.ndarray
    base_test: np.ndarray
    classes: np.ndarray | None = None
    groups: np.ndarray | None = None  # a ranking challenge: the hidden rows' groups and items
    items: np.ndarray | None = None

    @classmethod
    def load(cls, con, ch: Challenge) -> _Fitted:
        def part(name: str) -> dict:
            return con.execute(
                f"SELECT r.__y, b.__b FROM rows r JOIN base b USING (__i) WHERE __set = {lit(name)} ORDER BY __i"
            ).fetchnumpy()

        train, test = part("train"), part("test")
        y_train, y_test = _array(train["__y"]), _array(test["__y"])
        b_train, b_test = _array(train["__b"]), _array(test["__b"])
        if ch.group is not None:
            ids = con.execute(
                f"SELECT CAST({q(ch.group)} AS VARCHAR) AS g, CAST({q(ch.item)} AS VARCHAR) AS i "
                "FROM rows WHERE __set = 'test' ORDER BY __i"
            ).fetchnumpy()
            return cls(
                ch,
                y_train.astype(float),
                y_test,
                b_train.astype(float),
                b_test.astype(float),
                groups=_array(ids["g"]),
                items=_array(ids["i"]),
            )
        if ch.scorer.input != "label":
            return cls(ch, y_train.astype(float), y_test, b_train.astype(float), b_test.astype(float))
        classes, codes = np.unique(y_train.astype(str), return_inverse=True)

        def code(values: np.ndarray) -> np.ndarray:  # -1 for a label the training rows never had
            text = values.astype(str)
            at = np.clip(np.searchsorted(classes, text), 0, len(classes) - 1)
            return np.where(classes[at] == text, at, -1)

        return cls(ch, codes, y_test, code(b_train), code(b_test), classes)

    def predict(self, x_train: np.ndarray | None, x_test: np.ndarray | None) -> np.ndarray:
        """Fit on the training rows (with the feature where it has a value) and predict the hidden ones."""
        label = self.classes is not None
        target = np.eye(len(self.classes))[self.y_train] if label else self.y_train

        def design(base: np.ndarray, x: np.ndarray | None) -> np.ndarray:
            parts = [np.ones(len(base))]
            if label:
                parts += list(np.eye(len(self.classes))[np.clip(base, 0, None)].T * (base >= 0))
            else:
                parts.append(base)
            if x is not None:
                x = np.nan_to_num(x)
                parts.append(x)
                if not label:  # a feature may scale each entity's level (visits = level x daily share)
                    parts.append(base * x)
            return np.column_stack(parts)

        def coef(rows: np.ndarray, x: np.ndarray | None) -> np.ndarray:
            a = design(self.base_train[rows], x)
            return np.linalg.lstsq(a.T @ a, a.T @ target[rows], rcond=None)[0]

        everyone = np.ones(len(self.y_train), dtype=bool)
        pred = design(self.base_test, None) @ coef(everyone, None)
        if x_train is not None:
            seen, has = ~np.isnan(x_train), ~np.isnan(x_test)
            pred[has] = (design(self.base_test, x_test) @ coef(seen, x_train[seen]))[has]
        if label:
            return self.classes[np.argmax(pred, axis=1)]
        return np.clip(pred, 0, 1) if self.ch.scorer.input == "probability" else pred


def _array(values) -> np.ndarray:
    """A fetched column as a plain array (NULLs, which DuckDB hands over masked, as NaN or None)."""
    if isinstance(values, np.ma.MaskedArray):
        if values.dtype.kind in "iuf":
            return values.astype(float).filled(np.nan)
        return values.filled(None)
    return np.asarray(values)


def _predictors(con, ch, paths, entry, name, doc, matching: dict[str, _Key], fitted: _Fitted, reference: float):
    keyed = {k.theirs for k in matching.values()}
    sums = [c.name for c in _columns(doc).values() if c.numeric and f"CAST({q(c.name)} AS VARCHAR)" not in keyed]
    features = {"count": "count(*)", **{f"sum({c})": f"sum({q(c)})" for c in sums}}
    their = ", ".join(f"{k.theirs} AS __k{i}" for i, k in enumerate(matching.values()))
    on = " AND ".join(f"{k.ours} = a.__k{i}" for i, k in enumerate(matching.values()))
    aggs = ", ".join(f"CAST({sql} AS DOUBLE) AS {q(label)}" for label, sql in features.items())
    drop = ", ".join(f"__k{i}" for i in range(len(matching)))
    rel = con.execute(
        f"SELECT r.__set, a.* EXCLUDE ({drop}) FROM rows r LEFT JOIN "
        f"(SELECT {their}, {aggs} FROM ({_public(paths.data_root, entry, name)}) GROUP BY ALL) a ON {on} "
        "ORDER BY r.__i"
    ).fetchnumpy()
    is_train = _array(rel["__set"]) == "train"
    out = []
    for label in features:
        x = _array(rel[label]).astype(float)
        x_train, x_test = x[is_train], x[~is_train]
        if (~np.isnan(x_train)).sum() < MIN_ROWS or np.nanstd(x_train) == 0 or np.isnan(x_test).all():
            continue  # nothing to learn from, or nothing known about the hidden rows
        score = _score(ch, fitted, fitted.predict(x_train, x_test))
        keys = [k.text for k in matching.values()]
        out.append(Predictor(name, label, keys, round(score, 6), round(_gain(ch, reference, score), 4)))
    return out


def _score(ch: Challenge, fitted: _Fitted, pred: np.ndarray) -> float:
    """The challenge's metric of predictions for the hidden rows (a ranking ranks them per group)."""
    return float(ch.evaluate(fitted.y_test, pred, fitted.groups, fitted.items))


def _gain(ch: Challenge, reference: float, score: float) -> float:
    """The share of the gap between the reference and a perfect score (1, or 0 for an error) that ``score`` closes."""
    gap = (1.0 if ch.higher_is_better else 0.0) - reference
    return 0.0 if abs(gap) < 1e-12 else (score - reference) / gap


def check_all(contest: Contest, paths: Paths) -> list[LeakageReport]:
    return [check(ch, paths) for ch in contest.challenges]


def refuse_leaks(contest: Contest, reports: list[LeakageReport]) -> None:
    """Raise :class:`HoldoutLeak` naming every challenge a public-table predictor beats the baseline of by more than
    its margin."""
    leaks = [(r, r.leak) for r in reports if r.leak]
    if not leaks:
        return
    en, zh = [], []
    for r, p in leaks:
        en.append(
            f"challenge {r.challenge!r}: its hidden answers leak through public tables: {p.describe()} scores "
            f"{r.metric} {p.score:.4g} against {r.baseline_score:.4g} for the baseline ({r.baseline}), closing "
            f"{p.gain:.0%} of the gap to a perfect score (leakage_margin {r.margin:.0%})"
        )
        zh.append(
            f"赛题 {r.challenge!r} 的隐藏答案可由公开表推出：{p.describe()} 的 {r.metric} 为 {p.score:.4g}，"
            f"基线（{r.baseline}）为 {r.baseline_score:.4g}，缩小了与满分差距的 {p.gain:.0%}"
            f"（leakage_margin 为 {r.margin:.0%}）"
        )
    raise HoldoutLeak(
        f"{contest.path.name}: "
        + "; ".join(en)
        + ". Withhold the holdout's period or entities from that table (holdout.related in its dataset.yaml) "
        "or publish it coarser, then build the dataset again",
        f"{contest.path.name}："
        + "；".join(zh)
        + "。请在该表中扣留测试集的时段或对象（dataset.yaml 的 holdout.related），"
        "或以更粗的粒度发布，然后重新构建数据集",
        details=[r.to_dict() for r, _ in leaks],
    )
