"""Uncertainty of the headline metrics: 95% bootstrap intervals over test items, spread over seeds, and the
small-test-set flag (DESIGN.md, "Evidence").

Two kinds of metric:

- a mean of per-item scores (accuracy, recall@k hit indicators, per-question VQA correctness, per-caption
  CIDEr): `mean_interval`, BCa through `scipy.stats.bootstrap` (vectorised, `N_RESAMPLES` resamples). Where
  the items come in clusters (the captions or questions of one tile), `groups` resamples whole clusters and
  the statistic is the mean over the items of the drawn clusters (percentile method above `BCA_MAX_ITEMS`
  items or clusters, where the jackknife gets slow and BCa's correction small);
- a metric that is not a mean of items (mIoU over tiles, mAP over images, r_mean over images and captions):
  `metric_interval` resamples item indices and recomputes the metric through a callback on them, percentile
  method (BCa's jackknife would cost n more evaluations), `N_RESAMPLES_METRIC` resamples.

Resampling is seeded (`seed`, default 0), so a run's intervals are reproducible. Below `MIN_TEST_ITEMS` test
items a headline is a plumbing check, not evidence (`small_test_set`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000  # resamples of a mean (vectorised: milliseconds for thousands of items)
N_RESAMPLES_METRIC = 500  # resamples of a recomputed metric (one callback per resample)
MIN_TEST_ITEMS = 200  # below this a test set is a plumbing check (DESIGN.md)
BCA_MAX_ITEMS = 5000  # BCa's jackknife costs n statistics of n items: above this, the percentile method


def _bootstrap(data: tuple, statistic, *, vectorized: bool, paired: bool, method: str, n_resamples: int,
               confidence: float, seed: int) -> tuple[float, float]:
    from scipy.stats import bootstrap

    # resamples (and BCa's jackknife samples) drawn `batch` at a time: at most ~4M values in memory
    batch = max(1, min(n_resamples, 4_000_000 // max(1, len(data[0]))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning: handled below by the percentile fallback
        res = bootstrap(data, statistic, n_resamples=n_resamples, confidence_level=confidence, method=method,
                        vectorized=vectorized, paired=paired, batch=batch, rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if method != "percentile" and not (np.isfinite(low) and np.isfinite(high)):
            res = bootstrap(data, statistic, n_resamples=n_resamples, confidence_level=confidence,
                            method="percentile", vectorized=vectorized, paired=paired, batch=batch,
                            rng=np.random.default_rng(seed))
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return low, high


def mean_interval(scores: Sequence[float] | np.ndarray, groups: Sequence | None = None, *,
                  confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0
                  ) -> tuple[float, float]:
    """(low, high) of a `confidence` bootstrap interval (BCa) of the mean of per-item `scores`.

    With `groups` (one label per item, e.g. the tile a question asks about) whole groups are resampled and the
    statistic is sum of the drawn groups' scores / their item count, so correlated items of one tile do not
    pass for independent evidence. All-equal scores give (v, v); fewer than two items (or groups) give NaNs.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if groups is None:
        sums, counts = scores, np.ones_like(scores)
    else:
        labels, inverse = np.unique(np.asarray(groups), return_inverse=True)
        sums = np.bincount(inverse, weights=scores, minlength=len(labels))
        counts = np.bincount(inverse, minlength=len(labels)).astype(np.float64)
    if len(scores) and np.all(scores == scores[0]):
        return float(scores[0]), float(scores[0])
    if len(sums) < 2:
        return float("nan"), float("nan")
    method = "BCa" if len(sums) <= BCA_MAX_ITEMS else "percentile"
    if groups is None:
        return _bootstrap((scores,), np.mean, vectorized=True, paired=False, method=method,
                          n_resamples=n_resamples, confidence=confidence, seed=seed)
    ratio = lambda s, c, axis=-1: s.sum(axis=axis) / c.sum(axis=axis)  # noqa: E731
    return _bootstrap((sums, counts), ratio, vectorized=True, paired=True, method=method,
                      n_resamples=n_resamples, confidence=confidence, seed=seed)


def metric_interval(n_items: int, metric: Callable[[np.ndarray], float], *, confidence: float = CONFIDENCE,
                    n_resamples: int = N_RESAMPLES_METRIC, seed: int = 0) -> tuple[float, float]:
    """(low, high) of a `confidence` bootstrap interval (percentile) of a metric that is not a mean of items.

    `metric(idx)` scores the items at the integer indices `idx` (repeats included: a resample draws
    `n_items` indices with replacement); it is called once per resample, so keep it to array sums and the like
    (per-item confusion matrices, per-image matched detections). Every item of the resample is paired: one
    index selects all of an item's arrays. Fewer than two items give NaNs.
    """
    if n_items < 2:
        return float("nan"), float("nan")
    stat = lambda idx: float(metric(np.asarray(idx, dtype=np.int64)))  # noqa: E731
    return _bootstrap((np.arange(n_items),), stat, vectorized=False, paired=False, method="percentile",
                      n_resamples=n_resamples, confidence=confidence, seed=seed)


def seed_spread(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (ddof 1; 0 for one run), min, max and count of a metric over seeds."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return {"mean": None, "std": None, "min": None, "max": None, "n_seeds": 0, "values": []}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n_seeds": len(v), "values": v.tolist()}


def over_seeds(blocks: Sequence[dict]) -> dict[str, dict]:
    """{model: seed_spread of its headline} over the same task block from several runs (one per seed)."""
    headline = blocks[0]["headline"]
    models = {m for b in blocks for m in b["models"]}
    return {m: seed_spread([b["models"].get(m, {}).get(headline) for b in blocks]) for m in sorted(models)}


def baselines(block: dict) -> dict[str, dict]:
    """A task block's baselines by name: `baselines` ({name: scores}) and the older single `baseline`
    ({"name": ..., metric: value})."""
    out = {name: scores for name, scores in (block.get("baselines") or {}).items() if isinstance(scores, dict)}
    single = block.get("baseline")
    if isinstance(single, dict):
        out.setdefault(single.get("name", "baseline"), {k: v for k, v in single.items() if k != "name"})
    return out


def headline_rows(block: dict) -> dict[str, float | None]:
    """{name: headline value} of a block's models, then its baselines."""
    key = block["headline"]
    rows = {m: s.get(key) if isinstance(s, dict) else None for m, s in block["models"].items()}
    rows.update({b: s.get(key) for b, s in baselines(block).items()})
    return rows


def small_test_set(block: dict, minimum: int = MIN_TEST_ITEMS) -> str | None:
    """The one-line warning for a task block whose test set is too small to be evidence, else None."""
    n = block.get("n_test")
    if n is None:
        return "no test-set size recorded: its numbers cannot be weighed"
    if n < minimum:
        return f"plumbing check, n={n} < {minimum}: the test set is too small for its numbers to be evidence"
    return None


def compare_intervals(a: Sequence[float] | None, b: Sequence[float] | None, higher_is_better: bool = True) -> str:
    """'better' where interval `a` lies wholly on the good side of `b`, 'worse' wholly on the bad side, 'overlap'
    otherwise, 'n/a' without both. Disjoint 95% intervals are a conservative test: a real difference can hide in
    overlapping ones, so 'overlap' means no difference shown, not none."""
    if a is None or b is None:
        return "n/a"
    if not higher_is_better:
        a, b = (-a[1], -a[0]), (-b[1], -b[0])
    return "better" if a[0] > b[1] else "worse" if a[1] < b[0] else "overlap"


def difference_verdict(difference: float, ci: Sequence[float]) -> dict:
    """{"difference", "ci", "verdict"}: 'higher' / 'lower' where the 95% interval of a difference excludes 0, else
    'no difference shown' (at this size; not 'no difference')."""
    low, high = (float(c) for c in ci)
    tol = 1e-9  # float noise of a difference of equal scores is no difference
    word = "higher" if low > tol else "lower" if high < -tol else "no difference shown"
    return {"difference": float(difference), "ci": [low, high], "verdict": word}


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, groups: Sequence | None = None,
                      *, seed: int = 0) -> dict:
    """The mean of per-item differences `a - b` (the same test items scored under two conditions) with its paired
    95% bootstrap interval (`mean_interval` of the differences; whole `groups` resampled where items cluster) and
    its `difference_verdict`. Pairing removes the items' own difficulty from the comparison, so it can show a
    difference that two overlapping intervals (`compare_intervals`) cannot."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if len(a) != len(b):
        raise ValueError(f"paired_difference: {len(a)} and {len(b)} scores cannot be paired item by item")
    d = a - b
    return difference_verdict(float(d.mean()), mean_interval(d, groups, seed=seed))


def format_interval(value: float | None, ci: Sequence[float] | None, digits: int = 3) -> str:
    """'0.583 [0.410, 0.720]' ('n/a' without a value; the value alone without an interval)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if ci is None or any(c is None or not np.isfinite(c) for c in ci):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def describe(name: str, block: dict) -> str:
    """One line per task block for a notebook: test size, each scored headline (models, then `baselines` marked
    '(baseline)') with its interval, and the small-test-set warning where it applies."""
    key, cis = block["headline"], block.get("ci", {})
    rows = {m: s.get(key) for m, s in block["models"].items()}
    rows.update({f"{b} (baseline)": s.get(key) for b, s in baselines(block).items() if s.get(key) is not None})
    cis = {**cis, **{f"{b} (baseline)": c for b, c in cis.items()}}
    undefined = lambda ci: ci is not None and not all(c is not None and np.isfinite(c) for c in ci)  # noqa: E731
    scored = "; ".join(f"{m} {format_interval(v, cis.get(m))}" + (" [no interval: undefined in some resamples]"
                                                                  if undefined(cis.get(m)) else "")
                       for m, v in rows.items())
    flag = small_test_set(block)
    return f"{name} {key} (n_test={block.get('n_test')}, 95% CI): {scored}" + (f"\n  {flag}" if flag else "")
