"""Every metric against scikit-learn (or the cited formula), on random inputs with ties and constants."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from leaderboard import metrics as m
from leaderboard.metrics import MetricUndefined

SETTINGS = settings(max_examples=60, deadline=None)

# Small value domains make ties, repeats and constant vectors common, which is where metrics differ.
values = st.lists(
    st.integers(-20, 20).map(float) | st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=2, max_size=60
)
labels = st.lists(st.integers(0, 4), min_size=2, max_size=80)


def pairs(elements, min_size=2, max_size=80):
    return st.integers(min_size, max_size).flatmap(
        lambda n: st.tuples(st.lists(elements, min_size=n, max_size=n), st.lists(elements, min_size=n, max_size=n))
    )


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def quiet(fn, *args, **kwargs):
    """scikit-learn warns on some degenerate inputs we test on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@SETTINGS
@given(pairs(st.integers(-20, 20).map(float) | st.floats(-1e3, 1e3, allow_nan=False, width=32)))
def test_regression_metrics_match_sklearn(pair):
    t, p = map(np.array, pair)
    assert close(m.rmse(t, p), math.sqrt(skm.mean_squared_error(t, p)))
    assert close(m.mae(t, p), skm.mean_absolute_error(t, p))
    assert close(m.r2(t, p), skm.r2_score(t, p))
    if (t != 0).all():
        assert close(m.mape(t, p), skm.mean_absolute_percentage_error(t, p))
    ta, pa = np.abs(t), np.abs(p)
    assert close(m.rmsle(ta, pa), math.sqrt(skm.mean_squared_log_error(ta, pa)))


@SETTINGS
@given(pairs(st.integers(-5, 5).map(float)))
def test_smape_matches_kaggles_formula(pair):
    t, p = pair
    expected = (
        100 / len(t) * sum(0 if a == b == 0 else 2 * abs(b - a) / (abs(a) + abs(b)) for a, b in zip(t, p, strict=True))
    )
    assert close(m.smape(t, p), expected)


@SETTINGS
@given(pairs(st.integers(0, 4)))
def test_label_metrics_match_sklearn(pair):
    t, p = map(np.array, pair)
    assert close(m.accuracy(t, p), skm.accuracy_score(t, p))
    assert close(m.balanced_accuracy(t, p), quiet(skm.balanced_accuracy_score, t, p))
    assert close(m.f1(t, p), skm.f1_score(t == 1, p == 1, zero_division=0))  # class 1 against the rest
    assert close(m.f1_macro(t, p), skm.f1_score(t, p, average="macro", zero_division=0))
    assert close(m.f1_micro(t, p), skm.f1_score(t, p, average="micro", zero_division=0))
    assert close(m.mcc(t, p), quiet(skm.matthews_corrcoef, t, p))
    if len(set(t) | set(p)) > 1:
        assert close(m.qwk(t, p), quiet(skm.cohen_kappa_score, t, p, weights="quadratic"))


@SETTINGS
@given(
    st.integers(4, 80).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 1), min_size=n, max_size=n),
            st.lists(st.integers(0, 10).map(lambda x: x / 10), min_size=n, max_size=n),
        )
    )
)
def test_binary_probability_metrics_match_sklearn(pair):
    t, s = np.array(pair[0]), np.array(pair[1])
    if len(set(t)) < 2:
        with pytest.raises(MetricUndefined, match="only one class"):
            m.roc_auc(t, s)
        return
    assert close(m.roc_auc(t, s), skm.roc_auc_score(t, s))  # ties in scores are common here
    clipped = np.clip(s, 0.05, 0.95)
    assert close(m.log_loss(t, clipped), skm.log_loss(t, clipped, labels=[0, 1]))


@SETTINGS
@given(
    st.integers(6, 60).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 2), min_size=n, max_size=n),
            st.lists(
                st.lists(st.integers(1, 20).map(lambda x: x / 20), min_size=3, max_size=3), min_size=n, max_size=n
            ),
        )
    )
)
def test_multiclass_probability_metrics_match_sklearn(pair):
    t = np.array(pair[0])
    probs = np.array(pair[1], dtype=float)
    probs = probs / probs.sum(axis=1, keepdims=True)
    assert close(m.log_loss(t, probs, classes=[0, 1, 2]), skm.log_loss(t, probs, labels=[0, 1, 2]))
    if len(set(t)) == 3:
        expected = skm.roc_auc_score(t, probs, multi_class="ovr", average="macro", labels=[0, 1, 2])
        assert close(m.roc_auc(t, probs, classes=[0, 1, 2]), expected)


def _grouped(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (t, p) pairs and how often each occurs, in a shuffled order, as the scorer gives them."""
    pairs, counts = np.unique(np.stack([t, p]).astype(float), axis=1, return_counts=True)
    order = np.random.default_rng(len(t)).permutation(len(counts))
    return pairs[0][order].astype(t.dtype), pairs[1][order].astype(p.dtype), counts[order]


@SETTINGS
@given(pairs(st.integers(0, 4)))
def test_label_metrics_from_counts_equal_the_rows(pair):
    t, p = map(np.array, pair)
    gt, gp, n = _grouped(t, p)
    for name in ("accuracy", "balanced_accuracy", "f1", "f1_macro", "f1_micro", "mcc", "qwk"):
        metric = m.get(name)
        assert metric.from_counts(gt, gp, n) == quiet(metric, t, p), name  # the same confusion matrix


@SETTINGS
@given(
    st.integers(4, 80).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 1), min_size=n, max_size=n),
            st.lists(st.integers(0, 10).map(lambda x: x / 10), min_size=n, max_size=n),
        )
    )
)
def test_probability_metrics_from_counts_match_sklearn(pair):
    t, s = np.array(pair[0]), np.array(pair[1])
    gt, gs, n = _grouped(t, s)
    if len(set(t)) < 2:
        with pytest.raises(MetricUndefined, match="only one class"):
            m.get("roc_auc").from_counts(gt, gs, n)
        return
    assert close(m.get("roc_auc").from_counts(gt, gs, n), skm.roc_auc_score(t, s))
    clipped = np.clip(gs, 0.05, 0.95)
    assert close(m.get("log_loss").from_counts(gt, clipped, n), skm.log_loss(t, np.clip(s, 0.05, 0.95), labels=[0, 1]))


def test_order_dependent_metrics_refuse_counts():
    assert not m.get("map_at_k").order_free and not m.get("ndcg_at_k").order_free
    with pytest.raises(ValueError, match="order"):
        m.get("map_at_k").from_counts(np.array([0, 1]), np.array([0.2, 0.4]), np.array([3, 4]))


def test_roc_auc_of_a_million_rows_is_exact():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 2, 1_000_000)
    s = np.round(rng.random(1_000_000), 3)  # heavy ties
    assert close(m.roc_auc(t, s), skm.roc_auc_score(t, s))
    gt, gs, n = _grouped(t, s)
    assert m.get("roc_auc").from_counts(gt, gs, n) == m.roc_auc(t, s)


@SETTINGS
@given(
    st.integers(4, 80).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 1), min_size=n, max_size=n),
            st.lists(st.integers(0, 5).map(lambda x: x / 5), min_size=n, max_size=n),  # many ties
        )
    )
)
def test_normalized_gini_equals_2auc_minus_1_with_ties(pair):
    t, s = np.array(pair[0]), np.array(pair[1])
    if len(set(t)) < 2:
        with pytest.raises(MetricUndefined):
            m.normalized_gini(t, s)
        return
    assert close(m.normalized_gini(t, s), 2 * skm.roc_auc_score(t, s) - 1)
    gt, gs, n = _grouped(t, s)
    assert close(m.get("gini").from_counts(gt, gs, n), 2 * skm.roc_auc_score(t, s) - 1)


def test_gini_version_2_gives_ties_their_average_whatever_the_solutions_row_order():
    """The issue's case: version 1 moved from 0.016 to 0.055 when only the hidden rows were reordered."""
    rng = np.random.default_rng(19)
    t = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 1)  # eleven distinct scores: heavy ties
    values = set()
    for seed in range(20):
        order = np.random.default_rng(seed).permutation(300)
        values.add(round(m.normalized_gini(t[order], s[order]), 12))
    assert len(values) == 1
    assert values.pop() == pytest.approx(2 * skm.roc_auc_score(t, s) - 1, abs=1e-12)
    assert m.get("gini").version == 2 and m.get("gini").order_free
    t = np.array([0, 0, 1, 1])
    assert m.normalized_gini(t, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(1.0)
    assert m.normalized_gini(t, np.array([0.9, 0.8, 0.2, 0.1])) == pytest.approx(-1.0)
    assert m.normalized_gini(t, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.0)


def _inputs_for(metric: m.Metric, data) -> tuple[list, list, dict]:
    """Inputs of the kind the metric reads, drawn by hypothesis with many ties."""
    n = data.draw(st.integers(3, 40), label="rows")
    rows = lambda el: st.lists(el, min_size=n, max_size=n)  # noqa: E731
    if metric.input == "ranking":
        actual = data.draw(rows(st.lists(st.integers(0, 9), min_size=1, max_size=4, unique=True)))
        predicted = data.draw(rows(st.permutations(list(range(10)))))
        return actual, [list(p) for p in predicted], {"k": data.draw(st.integers(1, 10), label="k")}
    if metric.input == "probability":
        t = data.draw(rows(st.integers(0, 1)))
        t[:2] = [0, 1]  # both classes, so every probability metric is defined
        return t, data.draw(rows(st.integers(1, 9).map(lambda x: x / 10))), {}
    if metric.input == "label":
        return data.draw(rows(st.integers(0, 3))), data.draw(rows(st.integers(0, 3))), {}
    values = st.integers(1, 30).map(float)  # positive: mape, rmsle are defined
    return data.draw(rows(values)), data.draw(rows(values)), {}


@pytest.mark.parametrize("name", sorted(m.REGISTRY))
@SETTINGS
@given(data=st.data())
def test_every_metric_is_independent_of_the_row_order(name, data):
    """No metric may depend on the hidden solution's row order, which no contestant controls or sees."""
    metric = m.get(name)
    t, p, params = _inputs_for(metric, data)
    order = data.draw(st.permutations(list(range(len(t)))), label="order")
    before = quiet(metric, t, p, **params)
    after = quiet(metric, [t[i] for i in order], [p[i] for i in order], **params)
    assert close(before, after), (name, before, after)


def _apk(actual, predicted, k):
    """The reference implementation of Kaggle's ml_metrics.average_precision.apk."""
    predicted = predicted[:k]
    score, hits = 0.0, 0.0
    for i, p in enumerate(predicted):
        if p in actual and p not in predicted[:i]:
            hits += 1.0
            score += hits / (i + 1.0)
    return score / min(len(actual), k) if actual else 0.0


@SETTINGS
@given(
    st.lists(
        st.tuples(st.lists(st.integers(0, 15), min_size=1, max_size=6, unique=True), st.permutations(list(range(16)))),
        min_size=1,
        max_size=20,
    ),
    st.integers(1, 12),
)
def test_ranking_metrics_match_references(rows, k):
    actual = [a for a, _ in rows]
    predicted = [list(p) for _, p in rows]
    assert close(m.map_at_k(actual, predicted, k=k), float(np.mean([_apk(a, p, k) for a, p in rows])))
    relevance = np.array([[1.0 if i in a else 0.0 for i in range(16)] for a in actual])
    scores = np.array([[16 - p.index(i) for i in range(16)] for p in predicted], dtype=float)
    assert close(m.ndcg_at_k(actual, predicted, k=k), skm.ndcg_score(relevance, scores, k=k))


@pytest.mark.parametrize(
    ("name", "t", "p", "expected"),
    [
        ("r2", [3, 3, 3], [3, 3, 3], 1.0),
        ("r2", [3, 3, 3], [1, 3, 3], 0.0),
        ("mcc", [1, 1, 1], [1, 0, 1], 0.0),
        ("qwk", [2, 2], [2, 2], 1.0),
        ("f1", [0, 0], [0, 0], 0.0),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_degenerate_cases_have_the_documented_value(name, t, p, expected):
    assert m.get(name)(np.array(t), np.array(p)) == expected


@pytest.mark.parametrize(
    ("name", "t", "p", "match"),
    [
        ("roc_auc", [1, 1], [0.2, 0.9], "only one class"),
        ("gini", [0, 0], [0.2, 0.9], "no positive"),
        ("mape", [0, 1], [1, 1], "use smape or mae"),
        ("rmsle", [-1, 1], [1, 1], "0 or more"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 12 else "",
)
def test_undefined_cases_raise_a_clear_organizer_error(name, t, p, match):
    with pytest.raises(MetricUndefined, match=match) as info:
        m.get(name)(np.array(t), np.array(p))
    assert info.value.zh and info.value.code == "metric-undefined"


def test_registry_lists_what_the_issue_asks_for():
    wanted = {
        "rmse",
        "mae",
        "rmsle",
        "mape",
        "smape",
        "r2",
        "accuracy",
        "balanced_accuracy",
        "log_loss",
        "roc_auc",
        "f1",
        "f1_macro",
        "f1_micro",
        "mcc",
        "qwk",
        "map_at_k",
        "ndcg_at_k",
        "gini",
    }
    assert wanted <= set(m.REGISTRY)
    for metric in m.REGISTRY.values():
        assert metric.version >= 1 and metric.title["zh"] and metric.title["en"]
    assert not m.get("rmse").higher_is_better and m.get("roc_auc").higher_is_better
    with pytest.raises(m.ContesthubError, match="unknown metric 'rsme'"):
        m.get("rsme")
