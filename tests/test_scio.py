"""SCIO: clause splitting, screening on a constructed case, reconstruction, the error-injection harness."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from klip_tiny import tiny_model

from klip_lib import scio
from klip_lib.hcot.schema import caption_text
from klip_lib.scio import Clause, Item, Screener, clause_features, reconstruct, split_clauses, token_spans
from klip_lib.scio_inject import inject_errors, screening_metrics, wrong_labels

DIMS = {
    "Terrain": "The terrain is a flat plain",
    "Distribution": "Distribution: water covers the top-left and left; urban occupies the center",
    "Water": "Water presence: a river visible as dark, smooth areas",
    "Count": "There are 3 ships in the tile",
    "Location": "Location: ships: top-left",
}
FACTS = {
    "tile_id": "t0", "terrain": "plain", "water_present": True, "water_kinds": ["river"],
    "regional_landform": {c: "urban" for c in
                          ("top", "top-right", "right", "bottom-left", "bottom", "bottom-right", "center")}
    | {"top-left": "water", "left": "water"},
    "landforms_present": ["urban", "water"], "main_landform": "urban", "resolution_m": 10.0,
    "counts": {"ship": 3, "aircraft": 0, "storage tank": 0, "vehicle": 0}, "width": 128, "height": 128,
    "targets": [{"class": "ship", "type": "cargo ship", "length_m": 120.0, "grid_cell": "top-left",
                 "center": [10 + 5 * i, 10]} for i in range(3)],
}


def _item(dims=DIMS) -> Item:
    clauses = split_clauses(caption_text(dims), dims)
    return Item("t0", 0, clauses, None, [None] * len(clauses), [False] * len(clauses))


def test_split_round_trips_and_token_spans_partition():
    text = caption_text(DIMS)
    clauses = split_clauses(text, DIMS)
    assert "".join(c.piece for c in clauses) == text
    assert [c.dim for c in clauses] == ["Terrain", "Distribution", "Distribution", "Water", "Count", "Location"]
    assert clauses[2].body == "urban occupies the center"
    model = tiny_model()
    spans = token_spans(model.tokenizer, clauses)
    n = len(model.tokenizer(text)["input_ids"])
    assert spans[0][0] == 1 and spans[-1][1] == n - 1  # [CLS] ... [SEP]
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, disjoint
    ids = model.tokenizer(text)["input_ids"]
    per_clause = [ids[a:b] for a, b in spans]
    assert [t for p in per_clause for t in p] == ids[1:-1]  # every token in exactly one clause
    assert per_clause[4] == model.tokenizer(clauses[4].piece, add_special_tokens=False)["input_ids"]


def test_split_without_dimensions_cuts_sentences_and_semicolons():
    clauses = split_clauses("A river; a port. Three ships.")
    assert [c.body for c in clauses] == ["A river", "a port", "Three ships"]
    assert "".join(c.piece for c in clauses) == "A river; a port. Three ships."


def _truth_agreement(facts):
    """A stand-in for a model that has learned the truth: agreement falls with each false statement."""
    wrong_bodies = {"The terrain is a mountainous area", "Water presence: none visible"}

    def agreement(model, images, rows, texts, batch_size=128):
        bad = np.array([sum(b in t for b in wrong_bodies) for t in texts], dtype=float)
        good = np.array([sum(c.body in t for c in _item().clauses) for t in texts], dtype=float)
        itm = 1 / (1 + np.exp(-(0.5 * good - 2.0 * bad)))
        return 0.1 * good - 0.3 * bad, itm
    return agreement


def test_removing_a_planted_wrong_clause_raises_agreement(monkeypatch):
    monkeypatch.setattr(scio.screening, "agreement", _truth_agreement(FACTS))
    monkeypatch.setattr(scio.screening, "slot_surprise", lambda model, images, items: [np.zeros(len(i.clauses)) for i in items])
    planted = _item({**DIMS, "Terrain": "The terrain is a mountainous area"})
    feats = clause_features(None, None, [planted])[0]
    assert feats["itm_gain"][0] > 0 and feats["itc_gain"][0] > 0  # the wrong clause: removal raises agreement
    assert (feats["itm_gain"][1:] < 0).all()  # removing a true clause lowers it
    corpus = [planted] + [_item()] * 3  # screening standardises each dimension over a corpus
    feats = clause_features(None, None, corpus)
    wrong = [[True] + [False] * 5] + [[False] * 6] * 3
    screener = Screener.calibrate(corpus, feats, wrong)
    assert screener.flag(screener.scores(corpus, feats)) == wrong


def test_reconstruction_never_edits_unflagged_clauses():
    model = tiny_model().eval()
    item = dataclasses.replace(_item(), flagged=[True, False, False, True, True, False])
    images = torch.randn(1, model.config.in_chans, model.config.image_size, model.config.image_size)
    feats = clause_features(model, images, [item])
    screener = Screener({"itm_gain": 1.0}, 0.0)
    scores = screener.scores([item], feats)
    fixed = reconstruct(model, images, [item], screener, feats, scores, top_k=3, margin=-1e9)  # accept any candidate
    changed = [a.body != b.body for a, b in zip(item.clauses, fixed[0].clauses)]
    assert any(changed)
    assert not any(c and not f for c, f in zip(changed, item.flagged))
    assert item.clauses[0].body == DIMS["Terrain"]  # the input is left as it was


def test_injected_errors_are_false_and_keep_the_truth():
    items = inject_errors([_item()] * 20, {"t0": FACTS}, rate=1.0, seed=0)
    wrong = wrong_labels(items, {"t0": FACTS})
    kinds = {k for it in items for k in it.kinds if k}
    assert kinds == {"count", "position", "water", "terrain"}  # no Category clause in this caption
    for it, w in zip(items, wrong):
        assert [k is not None for k in it.kinds] == w
        assert [t.body for t in it.truth] == [c.body for c in _item().clauses]
    perfect = screening_metrics(items, wrong, wrong)
    assert perfect["all"]["f1"] == 1.0 and perfect["water"]["recall"] == 1.0


def test_clause_dataclass_piece():
    assert Clause("Count", "3 ships", ". ").piece == "3 ships. "


# Screening against random flagging and CapFilt, with intervals, is measured by notebooks/05_scio.ipynb (nbval in
# `make test`) and `klip bench scio` over seeds; the harness's pieces are tested in test_scio_harness.py and the
# released strategy's rules in test_scio_released.py.


def test_features_without_weight_are_not_computed(monkeypatch):
    def no_agreement(*args, **kwargs):
        raise AssertionError("agreement computed although no ITC/ITM feature has weight")

    monkeypatch.setattr(scio.screening, "agreement", no_agreement)
    monkeypatch.setattr(scio.screening, "slot_surprise", lambda model, images, items, **kw: [np.ones(len(i.clauses)) for i in items])
    item = _item()
    feats = clause_features(None, None, [item], features=("surprise",))[0]
    assert list(feats["surprise"]) == [1.0] * len(item.clauses) and not feats["itm_gain"].any()
    screener = Screener({f: 0.0 for f in scio.FEATURES} | {"surprise": 1.0}, 0.5)
    assert screener.used() == ("surprise",)


def test_calibrated_threshold_can_cap_the_share_of_true_heldout_clauses_flagged():
    rng = np.random.default_rng(0)
    n = 200
    wrong = rng.random(n) < 0.5  # many errors: the F1-optimal threshold alone would flag most clauses
    clauses = [Clause("Count", f"c{i}", ". ") for i in range(n)]
    item = Item("t0", 0, clauses, None, [None] * n, [False] * n)
    feats = {f: np.zeros(n) for f in scio.FEATURES}
    feats["surprise"] = wrong + rng.normal(0, 1.5, n)  # weakly informative
    screener = Screener.calibrate([item], [feats], [list(wrong)], max_false_flags=0.1)
    flags = np.array(screener.flag(screener.scores([item], [feats], restandardise=False))[0])
    assert 0 < flags[~wrong].mean() <= 0.1 + 0.01
    assert flags[wrong].mean() > flags[~wrong].mean()


def test_agreement_encodes_only_the_images_it_scores():
    model = tiny_model().eval()
    c = model.config
    images = torch.randn(6, c.in_chans, c.image_size, c.image_size, generator=torch.Generator().manual_seed(0))
    texts = ["there are 3 ships in the tile", "the terrain is a flat plain", "no water bodies visible"]
    itc, itm = scio.agreement(model, images, [4, 1, 4], texts, batch_size=2)
    poisoned = images.clone()
    poisoned[[0, 2, 3, 5]] = float("nan")  # rows no text refers to
    itc_p, itm_p = scio.agreement(model, poisoned, [4, 1, 4], texts, batch_size=2)
    assert np.isfinite(itc_p).all() and np.allclose(itc, itc_p, atol=1e-6) and np.allclose(itm, itm_p, atol=1e-6)
    assert scio.agreement(model, images, [], [])[0].shape == (0,)


def test_rounds_train_screen_and_log_on_tiny_shards(tmp_path):
    """p0/p1/p2 end to end at the tiny scale: every round trains, is logged, and the model comes back."""
    from klip_tiny import TINY_MODEL, tiny_config

    from klip_lib.data import SimConfig, build_shards, simulate_dataset
    from klip_lib.data.dataset import ShardDataset
    from klip_lib.hcot.backends import make_backend
    from klip_lib.hcot.generate import caption_batch
    from klip_lib.train import TrainConfig

    index = simulate_dataset(tmp_path / "data", SimConfig(n_tiles=24, tile_size=64, seed=0))
    shard_dir = build_shards(index, tmp_path / "shards", image_size=TINY_MODEL["image_size"], channels=2).parent
    facts = [t["facts"] for t in ShardDataset(shard_dir).tiles if t["facts"]]
    records = caption_batch(facts, make_backend("template"))
    config = tiny_config()
    cfg = scio.ScioConfig(steps=(2, 1, 1), calibration_copies=1)
    data = scio.load_scio_data(shard_dir, records, config, cfg, seed=0)
    assert data.train and data.heldout
    train_cfg = TrainConfig(steps=4, batch_size=4, warmup_steps=1, checkpoint_every=100, lr=1e-3)
    model, log = scio.run_rounds(data, tmp_path / "klip", config, train_cfg, cfg)
    assert [row["round"] for row in log] == ["p0", "p1", "p2"] and [row["steps"] for row in log] == [2, 3, 4]
    assert all(0 <= row["flag_rate"] <= 1 for row in log)
    assert (tmp_path / "klip" / "scio_rounds.json").exists() and (tmp_path / "klip" / "p2_captions.jsonl").exists()


def test_views_keep_a_dimensions_clauses_together():
    """A dimension whose clauses would straddle a view boundary moves whole to the next view (its fact-check reads
    them together); a dimension longer than a view is still split, clause by clause."""

    class Words:  # one token per word
        def tokenize(self, text):
            return text.split()

    clauses = [Clause("Terrain", "a b c", ". "), Clause("Size", "d e", "; "), Clause("Size", "f g", ". "),
               Clause("Water", "h", ". ")]
    assert scio.pack_views(clauses, Words(), max_tokens=2 + 6) == [[0], [1, 2, 3]]
    assert scio.pack_views(clauses, Words(), max_tokens=2 + 3) == [[0], [1], [2, 3]]  # Size (4 words) cannot fit
