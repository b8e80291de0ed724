"""The metric registry: what a challenge can be scored with.

Each metric has a name, a version (bumped whenever its result can change, so a rescore
after a fix is visible and old scores stay explainable), the kind of target it reads,
whether higher is better, and a defined answer for degenerate inputs. Every metric is
checked against scikit-learn (or, where scikit-learn has none, against the cited formula)
in ``tests/test_metrics.py``.

Inputs are numpy arrays already aligned by id: ``y_true`` from the hidden solution,
``y_pred`` from the submission. Probabilistic metrics take a 2-D ``y_pred`` (one column per
class, in ``classes`` order) for multi-class targets. Ranking metrics take, per row, the
relevant items and the predicted ranking as lists. A metric whose value depends only on the
(y_true, y_pred) pairs, not on their order (all but the ranking metrics, whose rows are lists), can also
be given the distinct pairs with how often each occurs (:meth:`Metric.from_counts`): that is
how the scorer hands over a million rows of labels or yes/no targets as a few thousand counts.

Degenerate cases, decided per metric (an organizer sees :class:`MetricUndefined` with the
reason; a contestant never does, because challenges are validated against their solution):

=====================  =====================================================================
roc_auc, gini          one class only in y_true: undefined (gini: ties get their average)
r2                     constant y_true: 1.0 for a perfect prediction, else 0.0 (scikit-learn)
mcc                    constant y_true or y_pred: 0.0 (scikit-learn)
qwk                    y_true and y_pred both a single identical value: 1.0; otherwise as
                       scikit-learn (0.0 when the expected disagreement is 0)
balanced_accuracy      classes absent from y_true are ignored (scikit-learn)
f1 (binary)            no positive in y_true or y_pred: 0.0 (scikit-learn, zero_division=0)
mape                   y_true = 0 anywhere: undefined (use smape or mae)
rmsle                  a negative value: undefined
log_loss               probabilities clipped to [1e-15, 1 - 1e-15], rows renormalised
=====================  =====================================================================
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from sandbox.errors import ContesthubError

EPS = 1e-15


class MetricUndefined(ContesthubError):
    """The metric has no value for these targets (organizer-facing)."""

    code = "metric-undefined"


@dataclass(frozen=True)
class Metric:
    name: str
    version: int
    kind: str  # regression | binary | multiclass | ranking
    input: str  # value | label | probability | ranking
    higher_is_better: bool
    title: dict[str, str]
    fn: Callable[..., float]
    order_free: bool = True  # the value depends on the (y_true, y_pred) pairs, not on their order
    counts_fn: Callable[..., float] | None = None  # (y_true, y_pred, counts, **params), see from_counts

    def _finite(self, value: float) -> float:
        if not np.isfinite(value):
            raise MetricUndefined(f"{self.name} is not finite for these inputs", f"{self.name} 对这些输入没有有限值")
        return value

    def __call__(self, y_true, y_pred, **params) -> float:
        return self._finite(float(self.fn(y_true, y_pred, **params)))

    def from_counts(self, y_true, y_pred, counts, **params) -> float:
        """The value on ``counts[i]`` rows of the pair (``y_true[i]``, ``y_pred[i]``), for each i.

        The same as calling the metric on those rows (in any order); pairs may repeat."""
        if not self.order_free:
            raise ValueError(f"{self.name} depends on the order of the rows; give it the rows")
        if self.counts_fn is not None:
            return self._finite(float(self.counts_fn(y_true, y_pred, counts, **params)))
        return self(np.repeat(y_true, counts), np.repeat(y_pred, counts), **params)


REGISTRY: dict[str, Metric] = {}


def metric(
    name: str,
    version: int,
    kind: str,
    input: str,
    higher_is_better: bool,
    zh: str,
    en: str,
    *,
    order_free: bool = True,
):
    def register(fn: Callable[..., float]) -> Callable[..., float]:
        REGISTRY[name] = Metric(name, version, kind, input, higher_is_better, {"zh": zh, "en": en}, fn, order_free)
        return fn

    return register


def from_counts(name: str):
    """Register a faster :meth:`Metric.from_counts` for the metric ``name`` (defined above it)."""

    def register(fn: Callable[..., float]) -> Callable[..., float]:
        REGISTRY[name] = replace(REGISTRY[name], counts_fn=fn)
        return fn

    return register


def get(name: str) -> Metric:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ContesthubError(
            f"unknown metric {name!r}; known: {', '.join(sorted(REGISTRY))}",
            f"未知的评价指标 {name!r}；可用：{', '.join(sorted(REGISTRY))}",
            code="unknown-metric",
        ) from None


def _f(a) -> np.ndarray:
    return np.asarray(a, dtype=float)


def _undefined(name: str, en: str, zh: str) -> MetricUndefined:
    return MetricUndefined(f"{name}: {en}", f"{name}：{zh}")


# --- regression ----------------------------------------------------------------------------


@metric("rmse", 1, "regression", "value", False, "均方根误差", "Root mean squared error")
def rmse(y_true, y_pred) -> float:
    return float(np.sqrt(np.mean((_f(y_true) - _f(y_pred)) ** 2)))


@metric("mae", 1, "regression", "value", False, "平均绝对误差", "Mean absolute error")
def mae(y_true, y_pred) -> float:
    return float(np.mean(np.abs(_f(y_true) - _f(y_pred))))


@metric("rmsle", 1, "regression", "value", False, "均方根对数误差", "Root mean squared logarithmic error")
def rmsle(y_true, y_pred) -> float:
    t, p = _f(y_true), _f(y_pred)
    if (t < 0).any() or (p < 0).any():
        raise _undefined("rmsle", "values must be 0 or more", "取值必须大于等于 0")
    return float(np.sqrt(np.mean((np.log1p(t) - np.log1p(p)) ** 2)))


@metric("mape", 2, "regression", "value", False, "平均绝对百分比误差", "Mean absolute percentage error")
def mape(y_true, y_pred) -> float:
    """scikit-learn's: a true value smaller than machine epsilon divides by epsilon (version 2;
    version 1 divided by the value itself)."""
    t, p = _f(y_true), _f(y_pred)
    if (t == 0).any():
        raise _undefined("mape", "a true value is 0; use smape or mae", "存在真实值为 0；请改用 smape 或 mae")
    return float(np.mean(np.abs(p - t) / np.maximum(np.abs(t), np.finfo(np.float64).eps)))


@metric("smape", 1, "regression", "value", False, "对称平均绝对百分比误差", "Symmetric mean absolute percentage error")
def smape(y_true, y_pred) -> float:
    """Kaggle's definition: mean of 2|p - t| / (|t| + |p|), with 0/0 counted as 0, in percent."""
    t, p = _f(y_true), _f(y_pred)
    den = np.abs(t) + np.abs(p)
    ratio = np.divide(2 * np.abs(p - t), den, out=np.zeros_like(den), where=den != 0)
    return float(100 * np.mean(ratio))


@metric("r2", 1, "regression", "value", True, "决定系数 R²", "Coefficient of determination (R²)")
def r2(y_true, y_pred) -> float:
    t, p = _f(y_true), _f(y_pred)
    ss_res = np.sum((t - p) ** 2)
    ss_tot = np.sum((t - t.mean()) ** 2)
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return float(1 - ss_res / ss_tot)


# --- classification ------------------------------------------------------------------------


def _labels(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    classes, inv = np.unique(np.concatenate([t, p]), return_inverse=True)
    return inv[: len(t)], inv[len(t) :], classes


def _confusion(y_true, y_pred, counts=None) -> tuple[np.ndarray, np.ndarray]:
    """The confusion matrix (rows: true, columns: predicted) over the sorted labels seen in
    either input, and those labels; with ``counts``, the pair i stands for ``counts[i]`` rows."""
    ti, pi, classes = _labels(y_true, y_pred)
    k = len(classes)
    weights = None if counts is None else np.asarray(counts, dtype=float)
    return np.bincount(ti * k + pi, weights=weights, minlength=k * k).reshape(k, k).astype(float), classes


def label_metric(name: str, version: int, kind: str, higher_is_better: bool, zh: str, en: str):
    """A metric of labels written on the confusion matrix: given rows, or (pair, count) groups."""

    def register(on_confusion: Callable[..., float]) -> Callable[..., float]:
        def fn(y_true, y_pred, **params) -> float:
            return on_confusion(*_confusion(y_true, y_pred), **params)

        def counts_fn(y_true, y_pred, counts, **params) -> float:
            return on_confusion(*_confusion(y_true, y_pred, counts), **params)

        fn.__name__, fn.__doc__ = on_confusion.__name__, on_confusion.__doc__
        REGISTRY[name] = Metric(
            name, version, kind, "label", higher_is_better, {"zh": zh, "en": en}, fn, True, counts_fn
        )
        return fn

    return register


@label_metric("accuracy", 1, "multiclass", True, "准确率", "Accuracy")
def accuracy(cm: np.ndarray, classes: np.ndarray) -> float:
    return float(np.trace(cm) / cm.sum())


@label_metric("balanced_accuracy", 1, "multiclass", True, "平衡准确率", "Balanced accuracy")
def balanced_accuracy(cm: np.ndarray, classes: np.ndarray) -> float:
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def _f1_per_class(cm: np.ndarray) -> np.ndarray:
    tp = np.diag(cm)
    denom = 2 * tp + (cm.sum(axis=0) - tp) + (cm.sum(axis=1) - tp)
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


@label_metric("f1", 1, "binary", True, "F1 分数（二分类）", "F1 score (binary, positive class 1)")
def f1(cm: np.ndarray, classes: np.ndarray, positive=1) -> float:
    at = np.flatnonzero(classes == positive)
    if not len(at):
        return 0.0  # the positive class is in neither input
    i = at[0]
    tp = cm[i, i]
    denom = 2 * tp + (cm[:, i].sum() - tp) + (cm[i].sum() - tp)
    return float(2 * tp / denom) if denom else 0.0


@label_metric("f1_macro", 1, "multiclass", True, "宏平均 F1", "F1 score, macro average")
def f1_macro(cm: np.ndarray, classes: np.ndarray) -> float:
    return float(np.mean(_f1_per_class(cm)))


@label_metric("f1_micro", 1, "multiclass", True, "微平均 F1", "F1 score, micro average")
def f1_micro(cm: np.ndarray, classes: np.ndarray) -> float:
    return float(np.trace(cm) / cm.sum())  # for single-label multi-class data, micro F1 equals accuracy


@label_metric("mcc", 1, "multiclass", True, "马修斯相关系数", "Matthews correlation coefficient")
def mcc(cm: np.ndarray, classes: np.ndarray) -> float:
    t_sum, p_sum = cm.sum(axis=1), cm.sum(axis=0)
    n, correct = cm.sum(), np.trace(cm)
    cov_ytyp = correct * n - t_sum @ p_sum
    cov_ypyp = n * n - p_sum @ p_sum
    cov_ytyt = n * n - t_sum @ t_sum
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))


@label_metric("qwk", 1, "multiclass", True, "二次加权 Kappa", "Quadratic weighted kappa")
def qwk(cm: np.ndarray, classes: np.ndarray) -> float:
    """Cohen's kappa with quadratic weights over the ordered labels seen in either input."""
    k = len(classes)
    if k == 1:
        return 1.0
    w = (np.subtract.outer(np.arange(k), np.arange(k)) ** 2).astype(float)
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / cm.sum()
    denom = np.sum(w * expected)
    return float(1 - np.sum(w * cm) / denom) if denom else 0.0


def _auc_of_groups(scores: np.ndarray, n: np.ndarray, pos: np.ndarray) -> float:
    """Mann-Whitney U with average ranks for ties, in exact integer arithmetic, from groups of rows:
    ``n[i]`` rows score ``scores[i]``, ``pos[i]`` of them positive (a score may occur in several groups)."""
    order = np.argsort(scores, kind="stable")
    scores, n, pos = scores[order], np.asarray(n, dtype=np.int64)[order], np.asarray(pos, dtype=np.int64)[order]
    if len(scores):
        starts = np.r_[0, np.flatnonzero(scores[1:] != scores[:-1]) + 1]  # one group per distinct score
        n, pos = np.add.reduceat(n, starts), np.add.reduceat(pos, starts)
    n_pos = int(pos.sum())
    n_neg = int(n.sum()) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise _undefined("roc_auc", "y_true has only one class", "真实标签只有一个类别")
    below = np.cumsum(n) - n  # rows scoring less than the group: its ranks are below + 1 ... below + n
    twice_rank_sum = int((pos * (2 * below + n + 1)).sum())  # 2 x the sum of the positives' average ranks
    return (twice_rank_sum - n_pos * (n_pos + 1)) / (2 * n_pos * n_neg)


def _binary_auc(t: np.ndarray, s: np.ndarray) -> float:
    scores, inv = np.unique(s, return_inverse=True)
    inv = inv.reshape(-1)
    return _auc_of_groups(
        scores, np.bincount(inv, minlength=len(scores)), np.bincount(inv[t.astype(bool)], minlength=len(scores))
    )


@metric("roc_auc", 1, "binary", "probability", True, "ROC 曲线下面积", "Area under the ROC curve")
def roc_auc(y_true, y_pred, classes: Sequence | None = None) -> float:
    """Binary: ``y_pred`` is the score of class 1. Multi-class: a matrix, macro one-vs-rest."""
    t, s = np.asarray(y_true), _f(y_pred)
    if s.ndim == 1:
        return _binary_auc(t.astype(int), s)
    classes = list(classes) if classes is not None else list(range(s.shape[1]))
    return float(np.mean([_binary_auc((t == c).astype(int), s[:, i]) for i, c in enumerate(classes)]))


@from_counts("roc_auc")
def _roc_auc_counts(y_true, y_pred, counts) -> float:
    """Binary only: the counts of (0/1 target, score) pairs."""
    n = np.asarray(counts, dtype=np.int64)
    return _auc_of_groups(_f(y_pred), n, np.where(np.asarray(y_true).astype(bool), n, 0))


@metric("log_loss", 1, "multiclass", "probability", False, "对数损失", "Log loss (cross-entropy)")
def log_loss(y_true, y_pred, classes: Sequence | None = None) -> float:
    """Binary: ``y_pred`` is P(class 1). Multi-class: a matrix with columns in ``classes`` order."""
    t, p = np.asarray(y_true), _f(y_pred)
    if p.ndim == 1:
        p = np.column_stack([1 - p, p])
        classes = [0, 1]
    classes = list(classes) if classes is not None else list(range(p.shape[1]))
    p = np.clip(p, EPS, 1 - EPS)
    p = p / p.sum(axis=1, keepdims=True)
    index = {c: i for i, c in enumerate(classes)}
    cols = np.array([index[v] for v in t.tolist()])
    return float(-np.mean(np.log(p[np.arange(len(t)), cols])))


@metric("gini", 2, "binary", "probability", True, "归一化基尼系数", "Normalized Gini coefficient")
def normalized_gini(y_true, y_pred) -> float:
    """Kaggle's normalized Gini (Porto Seguro): gini(t, s) / gini(t, t), tied predictions given their average.

    Version 2. Version 1 broke ties by row order, so its value with tied predictions depended on the
    hidden solution's row order, which no contestant controls or sees. Kaggle's Gini is linear in the
    targets taken in prediction order, so averaging over every order of a tie is the same as giving
    each row of the tie the tie's mean target. For 0/1 targets the result is exactly 2·AUC − 1 (with
    the average ranks of :func:`roc_auc`)."""
    t, s = _f(y_true), _f(y_pred)
    if t.sum() == 0:
        raise _undefined("gini", "y_true has no positive value", "真实值中没有正值")

    def gini(actual: np.ndarray, score: np.ndarray) -> float:
        order = np.argsort(-score, kind="stable")
        a, sc = actual[order], score[order]
        starts = np.r_[0, np.flatnonzero(sc[1:] != sc[:-1]) + 1]  # one group per distinct prediction
        sizes = np.diff(np.r_[starts, len(sc)])
        a = np.repeat(np.add.reduceat(a, starts) / sizes, sizes)  # each tie gets its mean target
        cum = np.cumsum(a) / a.sum()
        return float(cum.sum() / len(a) - (len(a) + 1) / (2 * len(a)))

    best = gini(t, t)
    if best == 0:
        raise _undefined("gini", "y_true is constant", "真实值为常数")
    return gini(t, s) / best


# --- ranking -------------------------------------------------------------------------------


def as_rankings(relevant, score, groups, items) -> tuple[list[list], list[list]]:
    """Row-level answers of a ranking challenge as the ranking metrics read them.

    One row per (group, item): ``relevant`` 1 for an item the group chose (the hidden answer),
    ``score`` the submission's score (higher ranks first; equal scores rank by item, so the
    order is never left to chance). Returns, group by group in a fixed order, the relevant
    items and the items best first."""
    g, i = np.asarray(groups).astype(str), np.asarray(items).astype(str)
    r, sc = np.asarray(relevant, dtype=float), np.asarray(score, dtype=float)
    order = np.lexsort((i, -sc, g))  # by group, then score descending, then item
    g, i, r = g[order], i[order], r[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1, len(g)] if len(g) else np.array([0])
    truth, ranked = [], []
    for a, b in itertools.pairwise(starts):
        truth.append(list(i[a:b][r[a:b] > 0]))
        ranked.append(list(i[a:b]))
    return truth, ranked


def _relevant_lists(y_true, y_pred) -> list[tuple[set, list]]:
    return [(set(a), list(p)) for a, p in zip(y_true, y_pred, strict=True)]


@metric(
    "map_at_k",
    1,
    "ranking",
    "ranking",
    True,
    "前 K 项平均准确率均值 MAP@K",
    "Mean average precision at K",
    order_free=False,
)
def map_at_k(y_true, y_pred, k: int = 10) -> float:
    """Kaggle's MAP@K: per row, sum of precision@i at each hit in the first k, / min(|actual|, k)."""
    scores = []
    for actual, predicted in _relevant_lists(y_true, y_pred):
        if not actual:
            scores.append(0.0)
            continue
        hits, total, seen = 0, 0.0, set()
        for i, item in enumerate(predicted[:k], start=1):
            if item in actual and item not in seen:
                hits += 1
                total += hits / i
            seen.add(item)
        scores.append(total / min(len(actual), k))
    return float(np.mean(scores))


@metric(
    "ndcg_at_k",
    1,
    "ranking",
    "ranking",
    True,
    "前 K 项归一化折损累计增益 NDCG@K",
    "Normalized discounted cumulative gain at K",
    order_free=False,
)
def ndcg_at_k(y_true, y_pred, k: int = 10) -> float:
    """Binary relevance (an item is relevant if listed in the row's answer), log2 discounts."""
    scores = []
    for actual, predicted in _relevant_lists(y_true, y_pred):
        gains = [1.0 if item in actual else 0.0 for item in dict.fromkeys(predicted[:k])]
        dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
        ideal = sum(1 / np.log2(i + 2) for i in range(min(len(actual), k)))
        scores.append(dcg / ideal if ideal else 0.0)
    return float(np.mean(scores))
