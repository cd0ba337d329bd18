"""Intervals of the headline metrics: the bootstrap helpers, the tasks' per-item scores (whose means or sums must
give back the aggregate metric each task reports), the small-test-set flag, the report table and error bars."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from klip_tiny import tiny_model

from klip_lib import evidence, report, viz
from klip_lib.tasks import caption_scores, classification, detection, retrieval, segmentation, vqa
from klip_lib.tasks.protocol import verdict


# the interval code ---------------------------------------------------------------------------------
def test_all_correct_and_all_wrong_give_a_point_interval():
    assert evidence.mean_interval(np.ones(50)) == (1.0, 1.0)
    assert evidence.mean_interval(np.zeros(50), groups=np.arange(50) // 5) == (0.0, 0.0)


def test_bernoulli_interval_covers_the_mean_and_shrinks_as_one_over_root_n():
    rng = np.random.default_rng(1)
    widths = {}
    for n in (100, 1600):
        x = (rng.random(n) < 0.3).astype(float)
        low, high = evidence.mean_interval(x)
        assert low < x.mean() < high
        assert high - low == pytest.approx(2 * 1.96 * np.sqrt(x.mean() * (1 - x.mean()) / n), rel=0.2)
        widths[n] = high - low
    assert widths[100] / widths[1600] == pytest.approx(4.0, rel=0.25)  # sqrt(1600 / 100)


def test_interval_is_reproducible_and_fewer_than_two_items_give_nan():
    x = np.random.default_rng(0).random(40)
    assert evidence.mean_interval(x) == evidence.mean_interval(x)
    assert evidence.mean_interval(x, seed=1) != evidence.mean_interval(x)
    assert all(np.isnan(evidence.mean_interval([0.5, 1.0], groups=[0, 0])))
    assert all(np.isnan(evidence.metric_interval(1, lambda idx: 0.0)))


def test_grouped_items_resample_whole_groups():
    """Ten tiles of twenty identical answers each are ten items, not 200: the interval is much wider."""
    tile_hits = (np.random.default_rng(3).random(10) < 0.5).astype(float)
    items, groups = np.repeat(tile_hits, 20), np.repeat(np.arange(10), 20)
    low, high = evidence.mean_interval(items, groups)
    naive = evidence.mean_interval(items)
    assert low <= items.mean() <= high
    assert (high - low) > 3 * (naive[1] - naive[0])


def test_metric_interval_of_a_mean_matches_the_mean_interval():
    x = (np.random.default_rng(2).random(300) < 0.6).astype(float)
    low, high = evidence.metric_interval(len(x), lambda idx: x[idx].mean())
    ref = evidence.mean_interval(x)
    assert low == pytest.approx(ref[0], abs=0.02) and high == pytest.approx(ref[1], abs=0.02)


def test_seed_spread_and_over_seeds():
    s = evidence.seed_spread([0.5, 0.7, None])
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert s["n_seeds"] == 2 and evidence.seed_spread([0.4])["std"] == 0.0
    blocks = [{"headline": "acc", "models": {"klip": {"acc": a}, "random": {"acc": 0.1}}} for a in (0.6, 0.8)]
    out = evidence.over_seeds(blocks)
    assert out["klip"]["mean"] == pytest.approx(0.7) and out["random"]["std"] == 0.0


def test_small_test_set_flag():
    assert evidence.small_test_set({"n_test": 8}) == \
        "plumbing check, n=8 < 200: the test set is too small for its numbers to be evidence"
    assert evidence.small_test_set({"n_test": 200}) is None
    assert "no test-set size" in evidence.small_test_set({})
    line = evidence.describe("vqa/sim", {"headline": "accuracy", "n_test": 8, "ci": {"klip": [0.4, 0.9]},
                                         "models": {"klip": {"accuracy": 0.625}},
                                         "baseline": {"name": "majority", "accuracy": 0.5}})
    assert "klip 0.625 [0.400, 0.900]; majority (baseline) 0.500" in line and "plumbing check, n=8 < 200" in line
    line = evidence.describe("detection/sim", {"headline": "map_50", "n_test": 64, "ci": {"m": [None, None]},
                                               "models": {"m": {"map_50": 0.0}}})
    assert "m 0.000 [no interval: undefined in some resamples]" in line


# per-item scores agree with each task's aggregate ----------------------------------------------------
def test_retrieval_per_query_hits_give_the_recalls():
    rng = np.random.default_rng(0)
    text_image = [i // 3 for i in range(30)] + [9]  # ten images, 3 captions each, one with 4
    scores = rng.random((10, 31))
    ranks = retrieval.query_ranks(scores, text_image)
    recalls = retrieval.recall_at_k(scores, text_image)
    for k in retrieval.KS:
        assert np.mean(ranks["i2t"] < k) == recalls[f"i2t_r{k}"] and np.mean(ranks["t2i"] < k) == recalls[f"t2i_r{k}"]
    metric = retrieval.recall_statistic(ranks, text_image)
    assert metric(np.arange(10)) == pytest.approx(recalls)
    cis = retrieval.recall_intervals(ranks, text_image)
    assert all(cis[k][0] <= recalls[k] <= cis[k][1] for k in retrieval.RECALL_KEYS)
    assert cis["r_mean"][1] - cis["r_mean"][0] > 0.05  # ten images: a wide interval


def test_vqa_per_question_correctness_gives_the_accuracy():
    qs = [vqa.Question(i // 3, "count" if i % 2 else "main_landform", "?", str(i % 4)) for i in range(30)]
    preds = [str((i * 7) % 4) for i in range(30)]
    assert vqa.correct(qs, preds).mean() == vqa.accuracy(qs, preds)["accuracy"]
    block = vqa.task_block(qs, {"klip": preds, "majority": ["0"] * 30}, {"majority": "majority answer per kind"})
    assert block["n_test"] == block["questions"] == 30 and block["n_tiles"] == 10 and set(block["ci"]) == {"klip", "majority answer per kind"}
    assert set(block["baselines"]) == {"majority answer per kind"} and set(block["models"]) == {"klip"}
    assert evidence.headline_rows(block) == {"klip": block["models"]["klip"]["accuracy"],
                                             "majority answer per kind": vqa.accuracy(qs, ["0"] * 30)["accuracy"]}
    low, high = block["ci"]["klip"]
    assert low <= block["models"]["klip"]["accuracy"] <= high


def test_per_caption_cider_averages_to_the_corpus_cider():
    refs = [["the terrain is a flat plain with a river"], ["two ships lie in the top-left near the port"],
            ["a river crosses the tile from north to south"], ["dense urban blocks and roads fill the center"]]
    data = retrieval.SplitData(images=torch.zeros(4, 2, 8, 8), tile_ids=list("abcd"), facts=[{}] * 4,
                               records=[[{"text": r[0]}] for r in refs])
    caps = [{"text": "the terrain is a plain"}, {"text": "ships in the top-left"}, {"text": "a lake"},
            {"text": "urban blocks and roads"}]
    items = caption_scores.cider_items(caps, data)
    assert items.shape == (4,)
    assert items.mean() == pytest.approx(caption_scores.ngram_scores([c["text"] for c in caps], refs)["cider"])


def test_classification_items_average_to_each_accuracy():
    model = tiny_model()
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(24) % 2
    chips = classification.Chips(torch.randn(24, 2, 32, 32, generator=gen) + labels[:, None, None, None],
                                 labels, ["train"] * 16 + ["test"] * 8, ["small boat", "A320321"],
                                 [str(i) for i in range(24)])
    out = classification.evaluate_classification({"tiny": model}, chips, (0, 1), classification.ProbeConfig(max_epochs=5),
                                                 classification.FinetuneConfig(max_epochs=1))
    r = out["tiny"]
    for key in ("linear_probe_accuracy", "finetune_accuracy", "zero_shot_accuracy"):
        assert r["items"][key].mean() == pytest.approx(r[key])
    block = classification.task_block(out, chips, (0, 1))
    assert block["n_test"] == 8 and "items" not in block["models"]["tiny"]
    assert block["ci"]["tiny"][0] <= r["linear_probe_accuracy"] <= block["ci"]["tiny"][1]


def test_tile_confusions_give_the_miou():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (6, 16, 16), generator=gen)
    target[:, :3] = segmentation.IGNORE
    target[target == 3] = 2  # class 3 never in the ground truth ...
    preds = torch.randint(0, 3, (6, 16, 16), generator=gen)  # ... nor predicted: left out of the mean
    classes = ("a", "b", "c", "d")
    cm = segmentation.tile_confusions(preds, target, len(classes))
    assert cm.sum() == (target != segmentation.IGNORE).sum()
    assert segmentation.miou_of(cm) == pytest.approx(segmentation.segmentation_metrics(preds, target, classes)["miou"])
    assert segmentation.miou_of(cm, np.array([1, 1, 4])) == pytest.approx(
        segmentation.segmentation_metrics(preds[[1, 1, 4]], target[[1, 1, 4]], classes)["miou"])


def _fake_detections(n: int, seed: int = 0):
    """Ground-truth boxes of two classes and noisy detections of them (some shifted off, some spurious)."""
    rng = np.random.default_rng(seed)
    boxes, labels, preds = [], [], []
    for _ in range(n):
        k = rng.integers(0, 4)
        xy = rng.uniform(0, 50, (k, 2))
        b = np.concatenate([xy, xy + rng.uniform(4, 14, (k, 2))], 1)
        lab = rng.integers(1, 3, k)
        shift = rng.normal(0, rng.choice([0.5, 4.0]), (k, 2))
        jitter = np.concatenate([b[:, :2] + shift, b[:, 2:] + shift * rng.uniform(0.5, 1.5, (k, 2))], 1)
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)  # valid boxes (x1 > x0)
        extra = rng.uniform(0, 50, (rng.integers(0, 3), 2))
        d = np.concatenate([jitter, np.concatenate([extra, extra + 8], 1)])
        boxes.append(torch.tensor(b, dtype=torch.float32).reshape(-1, 4))
        labels.append(torch.tensor(lab, dtype=torch.long))
        preds.append({"boxes": torch.tensor(d, dtype=torch.float32).reshape(-1, 4),
                      "scores": torch.tensor(rng.random(len(d)), dtype=torch.float32),
                      "labels": torch.tensor(np.concatenate([lab, rng.integers(1, 3, len(extra))]), dtype=torch.long)})
    return preds, boxes, labels


def test_matched_detections_give_cocos_map50():
    preds, boxes, labels = _fake_detections(12)
    matches = detection.match_detections(preds, boxes, labels, 2)
    expected = detection.detection_metrics(preds, boxes, labels)["map_50"]
    assert 0.05 < expected < 0.95
    assert detection.ap_of(matches) == pytest.approx(expected, abs=1e-6)
    idx = np.array([0, 0, 3, 5, 5, 5, 7, 11, 2, 9, 9, 1])  # a resample: repeats count as copies
    assert detection.ap_of(matches, idx) == pytest.approx(
        detection.detection_metrics([preds[i] for i in idx], [boxes[i] for i in idx], [labels[i] for i in idx])["map_50"],
        abs=1e-6)


def test_detection_block_carries_intervals_and_test_size():
    preds, boxes, labels = _fake_detections(10, seed=1)
    data = detection.DetectionSet(torch.zeros(10, 2, 8, 8), boxes, labels, ["test"] * 10, ("ship", "aircraft"),
                                  list("abcdefghij"))
    block = detection.task_block({"m": detection.detection_metrics(preds, boxes, labels)}, data,
                                 detection.DetectorConfig(), predictions={"m": preds})
    low, high = block["ci"]["m"]
    assert block["n_test"] == 10 and low <= block["models"]["m"]["map_50"] <= high and high - low > 0.05


# the report and the bars -----------------------------------------------------------------------------
METRICS = {"09_eval_retrieval": {"tasks": {"retrieval/sim": {
    "task": "retrieval", "headline": "r_mean", "models": {"klip": {"r_mean": 0.6}, "random": {"r_mean": 0.5}},
    "ci": {"klip": [0.41, 0.72]}, "n_test": 8}}},
    "06_eval_classification": {"tasks": {"classification/sim": {
        "task": "classification", "headline": "acc", "models": {"klip": {"acc": 0.9}}, "ci": {"klip": [0.85, 0.94]},
        "n_test": 400}}}}


def test_report_shows_intervals_and_flags_small_test_sets():
    low, high = report.interval_tables(METRICS)
    assert low.loc["klip", "retrieval/sim r_mean"] == 0.41 and np.isnan(high.loc["random", "retrieval/sim r_mean"])
    shown = report.display_table(METRICS)
    assert shown.loc["klip", "retrieval/sim r_mean"] == "0.600 [0.410, 0.720]"
    assert shown.loc["random", "retrieval/sim r_mean"] == "0.500"  # no interval: the value alone
    assert shown.loc["random", "classification/sim acc"] == "n/a"
    assert shown.loc["n_test"].tolist() == ["400", "8"]
    assert report.small_test_sets(METRICS) == {
        "retrieval/sim": "plumbing check, n=8 < 200: the test set is too small for its numbers to be evidence"}


def test_grouped_bars_draw_error_bars_where_intervals_are_given():
    fig = viz.grouped_bars({"a": {"x": 0.5, "y": 0.7}, "b": {"x": 0.2, "y": None}}, categories=["x", "y"],
                           intervals={"a": {"x": (0.4, 0.6), "y": (0.6, 0.9)}})
    from matplotlib.container import BarContainer

    bars = [c for c in fig.axes[0].containers if isinstance(c, BarContainer)]
    assert bars[0].errorbar is not None and bars[1].errorbar is None
    segments = bars[0].errorbar.lines[2][0].get_segments()
    assert [tuple(np.round(s[:, 1], 6)) for s in segments] == [(0.4, 0.6), (0.6, 0.9)]
    assert viz.error_bars([0.5, None], [(0.4, 0.7), None]).tolist()[0][0] == pytest.approx(0.1)


def test_headline_bars_show_each_blocks_interval_and_test_size():
    from matplotlib.container import BarContainer

    blocks = {name: b for m in METRICS.values() for name, b in m["tasks"].items()}
    fig = viz.headline_bars(blocks)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["retrieval/sim\nr_mean (n=8)", "classification/sim\nacc (n=400)"]
    bars = {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}
    assert bars["klip"].errorbar is not None and bars["random"].errorbar is None


def test_retrieval_ranks_without_a_matching_head():
    """ITC-only models (external CLIP-style checkpoints): both ways ranked from the [images, texts] similarity."""
    model = tiny_model().eval()
    model.has_itm = False
    data = retrieval.SplitData(images=torch.randn(3, 2, 32, 32), tile_ids=list("abc"), facts=[{}] * 3,
                               records=[[{"text": f"{i} ships"}, {"text": f"{i} tanks"}] for i in range(3)])
    out = retrieval.evaluate_retrieval(model, data)
    assert out["scores"].shape == (3, 6) and len(out["ranks"]["i2t"]) == 3 and len(out["ranks"]["t2i"]) == 6
    assert out["metrics"]["i2t_r5"] == out["metrics"]["t2i_r5"] == 1.0  # 3 images, 6 captions: all within 5


def test_compare_intervals_and_the_verdict_built_on_it():
    assert evidence.compare_intervals((0.5, 0.6), (0.2, 0.4)) == "better"
    assert evidence.compare_intervals((0.1, 0.3), (0.2, 0.4)) == "overlap"
    assert evidence.compare_intervals((0.5, 0.6), (0.2, 0.4), higher_is_better=False) == "worse"
    assert evidence.compare_intervals((0.1, 0.2), None) == "n/a"
    assert evidence.compare_intervals((float("nan"), 0.2), (0.3, 0.4)) == "worse"  # the finite end decides
    block = {"headline": "m", "models": {"klip": {"m": 0.55}, "random": {"m": 0.3}},
             "baselines": {"chance": {"m": 0.1}}, "ci": {"klip": [0.5, 0.6], "random": [0.2, 0.4]}}
    assert verdict(block, "klip", "random") == "klip 0.550 [0.500, 0.600] above random 0.300 [0.200, 0.400]"
    assert verdict(block, "random", "klip") == "random 0.300 [0.200, 0.400] below klip 0.550 [0.500, 0.600]"
    assert verdict(block, "klip", "chance") == "klip 0.550 [0.500, 0.600] indistinguishable from chance 0.100"
