"""The screening AUC, the F1-optimal screening threshold and CapFilt's threshold pinned on fixed random inputs
(with tied scores): the values the hand-written sweeps gave, kept when torchmetrics computes them. torchmetrics
computes the ROC curve in float32, so AUCs, the weights 2 * AUC - 1 and the thresholds on the weighted scores
agree to about 1e-7 rather than exactly; the thresholds pick the same clauses."""

from __future__ import annotations

import numpy as np
import pytest

from klip_lib import scio_inject
from klip_lib.scio import Clause, Item, Screener, screening


def auc_cases():
    rng = np.random.default_rng(0)
    ties, ties_label = rng.integers(0, 5, 60).astype(float), rng.random(60) < 0.3
    normal, normal_label = rng.normal(size=50), rng.random(50) < 0.5
    return [(ties, ties_label), (normal, normal_label), (np.ones(10), np.arange(10) < 4),
            (normal[:5], np.zeros(5, bool))]


@pytest.mark.parametrize("case, expected", list(zip(range(4), [0.4658385093167702, 0.5587761674718197, 0.5, 0.5])))
def test_auc_counts_ties_half_and_is_half_without_both_classes(case, expected):
    score, label = auc_cases()[case]
    assert screening.auc(score, label) == pytest.approx(expected, abs=1e-7)


def corpus(seed: int, tie: bool = True, error_rate: float = 0.3, n_items: int = 12):
    """Items of 2-5 clauses in three dimensions, random features; itm_gain carries the errors (rounded: ties)."""
    rng = np.random.default_rng(seed)
    items, feats, wrong = [], [], []
    for k in range(n_items):
        n = int(rng.integers(2, 6))
        dims = rng.choice(["Count", "Terrain", "Water"], n)
        items.append(Item(f"t{k}", k, [Clause(str(d), f"c{i}", ". ") for i, d in enumerate(dims)], None))
        w = rng.random(n) < error_rate
        f = {name: rng.normal(size=n) for name in screening.FEATURES}
        f["itm_gain"] = w * 1.0 + (np.round(rng.normal(0, 1, n)) if tie else rng.normal(0, 1, n))
        feats.append(f)
        wrong.append(list(w))
    return items, feats, wrong


CALIBRATED = [  # seed, tied itm_gain, max_false_flags -> threshold, non-zero weights
    (0, True, None, 0.12959379883024208, {"itm_gain": 0.306451612903}),
    (1, False, None, 0.4650604282194855, {"itm_gain": 0.676767676768, "itm_alone": 0.325252525253}),
    (2, True, 0.2, 0.2035837711329035, {"itm_gain": 0.233333333333}),
    (3, True, None, 0.530281812920833, {"itm_gain": 0.579545454545, "itc_gain": 0.119318181818,
                                         "itm_alone": 0.227272727273, "surprise": 0.102272727273}),
]


@pytest.mark.parametrize("seed, tie, cap, threshold, weights", CALIBRATED)
def test_calibrated_threshold_and_weights_are_pinned(seed, tie, cap, threshold, weights):
    screener = Screener.calibrate(*corpus(seed, tie), max_false_flags=cap)
    assert screener.threshold == pytest.approx(threshold, abs=1e-6)
    assert {k: v for k, v in screener.weights.items() if v} == pytest.approx(weights, abs=1e-6)


def test_calibration_without_errors_screens_by_itm_and_flags_only_the_top_score():
    screener = Screener.calibrate(*corpus(4, error_rate=0.0))
    assert screener.weights == {"itm_gain": 1.0, "itc_gain": 0.0, "itm_alone": 0.0, "itc_alone": 0.0, "surprise": 0.0}
    assert screener.threshold == pytest.approx(1.8516384842609757, abs=1e-12)


def capfilt_case(seed: int):
    """30 one-to-four-clause items, a quarter of the clauses wrong, whole-view ITM rounded to 0.1 (ties)."""
    rng = np.random.default_rng(seed)
    items, wrong = [], []
    for k in range(30):
        n = int(rng.integers(1, 5))
        items.append(Item(f"t{k}", k, [Clause("Count", f"c{i}", ". ") for i in range(n)],
                          [Clause("Count", f"c{i}", ". ") for i in range(n)]))
        wrong.append(list(rng.random(n) < 0.25))
    return np.round(rng.random(30), 1), items, wrong


@pytest.mark.parametrize("seed, expected", [(0, 0.900000001), (1, 0.40000000100000005), (2, 1.000000001),
                                            (3, 0.900000001)])
def test_capfilt_threshold_is_pinned(seed, expected):
    assert scio_inject.capfilt_threshold(*capfilt_case(seed)) == pytest.approx(expected, abs=1e-12)


def test_tied_best_f1_calibration_keeps_the_fewest_flags_and_capfilt_the_most():
    """Clauses wrong, right, right, wrong: flagging the top one or all four both give F1 2/3."""
    wrong = [True, False, False, True]
    items = [Item("t0", 0, [Clause("Count", f"c{i}", ". ") for i in range(4)], None)]
    feats = [{f: np.zeros(4) for f in screening.FEATURES} | {"itm_gain": np.array([4.0, 3.0, 2.0, 1.0])}]
    screener = Screener.calibrate(items, feats, [wrong])
    assert screener.flag(screener.scores(items, feats, restandardise=False)) == [[True, False, False, False]]
    views = [Item(f"t{i}", i, [Clause("Count", "c", ". ")], [Clause("Count", "c", ". ")]) for i in range(4)]
    threshold = scio_inject.capfilt_threshold(np.array([0.1, 0.2, 0.3, 0.4]), views, [[w] for w in wrong])
    assert threshold == pytest.approx(0.4 + 1e-9, abs=1e-12)
