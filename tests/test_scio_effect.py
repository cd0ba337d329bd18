"""SCIO's downstream effect (klip_lib.scio_effect): paired differences, and the arms end to end at the tiny scale."""

from __future__ import annotations

import json

import numpy as np
import pytest

from klip_lib.evidence import compare_intervals, difference_verdict, mean_interval, paired_difference
from klip_lib.scio_effect import ARMS, EffectConfig


def test_paired_difference_shows_a_shift_that_overlapping_intervals_hide():
    rng = np.random.default_rng(0)
    hard = rng.uniform(0, 1, 300)  # items differ far more from each other than the two conditions do
    better = hard + 0.02
    assert compare_intervals(mean_interval(better), mean_interval(hard)) == "overlap"
    d = paired_difference(better, hard)
    assert d["verdict"] == "higher" and d["ci"][0] > 0 and d["difference"] == pytest.approx(0.02)
    assert paired_difference(hard, better)["verdict"] == "lower"
    same = paired_difference(hard, hard.copy())
    assert same["verdict"] == "no difference shown" and same["ci"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="300 and 299"):
        paired_difference(hard, hard[:-1])


def test_paired_difference_resamples_whole_groups():
    """Differences that all come from one tile's questions are one piece of evidence, not forty."""
    d = np.zeros(200)
    d[:40] = 1.0
    tiles = np.repeat(np.arange(5), 40)  # 5 tiles of 40 questions; only the first differs
    items = paired_difference(d, np.zeros(200))
    grouped = paired_difference(d, np.zeros(200), tiles)
    assert items["verdict"] == "higher"
    assert grouped["ci"][1] - grouped["ci"][0] > 2 * (items["ci"][1] - items["ci"][0])


def test_verdict_ignores_float_noise():
    assert difference_verdict(1e-17, [1e-17, 2e-17])["verdict"] == "no difference shown"
    assert difference_verdict(0.1, [0.01, 0.2])["verdict"] == "higher"


def test_effect_config_names_unknown_arms_and_needs_the_reference():
    with pytest.raises(ValueError, match="'capfilt'"):
        EffectConfig(arms=("noisy", "capfilt"))
    with pytest.raises(ValueError, match="'noisy'"):
        EffectConfig(arms=("clean", "released"))


def test_arms_differ_only_in_captions_and_are_scored_downstream(tmp_path):
    """Four arms at the tiny scale: same init and steps; clean and noisy captions differ by planted errors only;
    SCIO arms log their rounds; every task block scores every arm with an interval; each arm but the reference
    gets a paired difference; a second call loads the arms and scores the same."""
    from klip_tiny import TINY_MODEL, tiny_config

    from klip_lib.data import SimConfig, build_shards, simulate_dataset
    from klip_lib.data.dataset import ShardDataset
    from klip_lib.hcot.backends import make_backend
    from klip_lib.hcot.generate import caption_batch
    from klip_lib.scio_effect import scio_effect
    from klip_lib.tasks.retrieval import load_split
    from klip_lib.train import TrainConfig

    index = simulate_dataset(tmp_path / "data", SimConfig(n_tiles=24, tile_size=64, seed=0))
    shard_dir = build_shards(index, tmp_path / "shards", image_size=TINY_MODEL["image_size"], channels=2).parent
    facts = [t["facts"] for t in ShardDataset(shard_dir).tiles if t["facts"]]
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps(r) + "\n" for r in caption_batch(facts, make_backend("template"))))
    train, test = load_split(shard_dir, captions, "train"), load_split(shard_dir, captions, "test")
    configs = (tiny_config(), TrainConfig(steps=3, batch_size=4, warmup_steps=1, checkpoint_every=100, lr=1e-3))
    cfg = EffectConfig(noise="stress", caption_steps=2, vqa_steps=2)
    out = tmp_path / "effect"
    result = scio_effect(shard_dir, captions, train, test, out, seed=0, cfg=cfg, configs=configs)

    clean = (out / "clean_captions.jsonl").read_text().splitlines()
    noisy = (out / "noisy_captions.jsonl").read_text().splitlines()
    assert len(clean) == len(noisy) and clean != noisy
    assert [json.loads(x)["tile_id"] for x in clean] == [json.loads(x)["tile_id"] for x in noisy]
    assert all(result["arms"][a]["steps"] == 3 for a in ARMS)
    assert [r["round"] for r in result["arms"]["released"]["rounds"]] == ["p0", "p1", "p2"]
    assert result["arms"]["clean"]["rounds"] == [] and result["noise"]["count"] == 0.5
    control = result["arms"]["no-screening"]["rounds"]  # the released rounds' schedule, nothing flagged or rewritten
    assert [r["steps"] for r in control] == [r["steps"] for r in result["arms"]["released"]["rounds"]]
    assert all(r["flag_rate"] == 0 and r["edited"] == 0 for r in control)
    for task in ("retrieval", "captioning", "vqa"):
        block = result["tasks"][task]
        assert set(block["models"]) == set(ARMS) and block["compares"] == "methods"
        assert all(a in block["ci"] for a in ARMS)
        diffs = result["differences"][task]
        assert set(diffs["noisy"]) == set(ARMS) - {"noisy"} and set(diffs["no-screening"]) == {"released", "calibrated"}
        assert all(d["verdict"] in ("higher", "lower", "no difference shown") and d["ci"][0] <= d["ci"][1]
                   for by_arm in diffs.values() for d in by_arm.values())
    again = scio_effect(shard_dir, captions, train, test, out, seed=0,
                        cfg=EffectConfig(noise="stress", tasks=("retrieval",)), configs=configs)
    assert all(again["arms"][a]["loaded"] for a in ARMS)
    assert again["tasks"]["retrieval"]["models"] == result["tasks"]["retrieval"]["models"]
