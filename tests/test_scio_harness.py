"""The error-injection harness's pieces on hand-made cases: the noise profiles' realised rates, screening metrics
and their intervals, pooled random draws, clean-caption damage and the audit table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_scio import FACTS, _item

from klip_lib import scio_inject
from klip_lib.scio import Clause, Item
from klip_lib.scio_inject import (
    NOISE_PROFILES,
    audit_table,
    clean_damage,
    confusion,
    inject_errors,
    metrics_from_counts,
    noise_rates,
    screening_metrics,
    wrong_labels,
)


def test_expert_profile_plants_each_kind_at_its_own_rate():
    items = inject_errors([_item()] * 600, {"t0": FACTS}, noise_rates("expert"), seed=0)
    for kind in ("count", "position", "water", "terrain"):  # the test caption has no Category clause
        eligible = sum(c.dim == scio_inject.ERROR_KINDS[kind] for c in items[0].truth) * len(items)
        planted = sum(k == kind for it in items for k in it.kinds)
        assert planted / eligible == pytest.approx(NOISE_PROFILES["expert"][kind], abs=0.04), kind
    assert NOISE_PROFILES["expert"]["count"] > NOISE_PROFILES["expert"]["terrain"]  # counting least accurate
    assert 0.64 <= 1 - max(NOISE_PROFILES["expert"].values()) and 1 - min(NOISE_PROFILES["expert"].values()) <= 0.9


def test_a_kind_missing_from_a_profile_is_left_alone_and_an_unknown_profile_is_named():
    items = inject_errors([_item()] * 50, {"t0": FACTS}, {"count": 1.0}, seed=0)
    assert {k for it in items for k in it.kinds if k} == {"count"}
    with pytest.raises(ValueError, match="unknown noise profile 'typo'"):
        noise_rates("typo")


def _views(n=40, seed=0):
    rng = np.random.default_rng(seed)
    items, wrong, flags = [], [], []
    for k in range(n):
        dims = ["Count", "Terrain", "Water", "Location"]
        cl = [Clause(d, f"c{i}", ". ") for i, d in enumerate(dims)]
        items.append(Item(f"t{k}", k, cl, list(cl), [None] * 4, [False] * 4))
        w = list(rng.random(4) < 0.3)
        wrong.append(w)
        flags.append([bool(x) if rng.random() < 0.8 else not x for x in w])  # right 80% of the time
    return items, flags, wrong


def test_screening_metrics_count_per_kind_and_bracket_the_point_with_the_interval():
    items, flags, wrong = _views()
    m = screening_metrics(items, flags, wrong)
    f, w = np.array(flags), np.array(wrong)
    tp, fp, fn = (f & w).sum(), (f & ~w).sum(), (~f & w).sum()
    assert m["all"]["precision"] == pytest.approx(tp / (tp + fp)) and m["all"]["recall"] == pytest.approx(tp / (tp + fn))
    assert m["all"]["support"] == w.sum() == sum(m[k]["support"] for k in ("count", "terrain", "water", "position"))
    assert m["count"]["support"] == w[:, 0].sum() and m["target type"]["support"] == 0
    assert m["false_flags"] == pytest.approx(fp / (~w).sum())
    for kind in ("all", "count"):
        lo, hi = m[kind]["f1_ci"]
        assert lo <= m[kind]["f1"] <= hi and hi - lo > 0


def test_copies_of_one_tile_do_not_narrow_the_interval():
    """Corrupted copies of a tile's caption are resampled together: 10 copies of 40 views of 40 tiles give the
    interval of the 40 views (up to bootstrap noise), not one sqrt(10) times narrower."""
    items, flags, wrong = _views()
    once = screening_metrics(items, flags, wrong)["all"]["f1_ci"]
    copied = screening_metrics(items * 10, flags * 10, wrong * 10)["all"]["f1_ci"]
    as_views = [dataclasses.replace(it, tile_id=f"{it.tile_id}/{c}") for c in range(10) for it in items]
    naive = screening_metrics(as_views, flags * 10, wrong * 10)["all"]["f1_ci"]
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(copied) == pytest.approx(width(once), rel=0.25)
    assert width(naive) < 0.5 * width(once)


def test_pooled_random_draws_report_support_per_draw():
    items, flags, wrong = _views()
    counts = sum(confusion(items, flags, wrong) for _ in range(5))
    pooled, single = metrics_from_counts(counts, intervals=False, draws=5), screening_metrics(items, flags, wrong, False)
    assert pooled["all"]["support"] == single["all"]["support"]
    assert pooled["all"]["f1"] == pytest.approx(single["all"]["f1"])


def test_clean_damage_is_the_share_of_clauses_flagged():
    items, flags, _ = _views(10)
    flags = [[True, False, False, False]] * 5 + [[False] * 4] * 5
    d = clean_damage(items, flags)
    assert d["removed"] == pytest.approx(5 / 40) and d["clauses"] == 40
    assert d["removed_ci"][0] <= 5 / 40 <= d["removed_ci"][1]


def test_audit_table_reports_kept_and_reconstructed_per_clause():
    item = inject_errors([_item()], {"t0": FACTS}, 1.0, seed=0)[0]
    flagged = [k is not None for k in item.kinds]
    item = dataclasses.replace(item, flagged=flagged)
    fixed = dataclasses.replace(item, clauses=[dataclasses.replace(c) for c in item.clauses])
    first = flagged.index(True)
    fixed.clauses[first].body = "repaired"
    audit = [{"score": np.arange(len(item.clauses), dtype=float), "passed": np.array(flagged)}]
    rows = audit_table([item], [fixed], audit, wrong_labels([item], {"t0": FACTS}))
    assert [r["kept"] for r in rows] == [not f for f in flagged]
    assert [r["reconstructed"] for r in rows] == ["repaired" if i == first else "" for i in range(len(rows))]
    assert [r["score"] for r in rows] == list(range(len(rows))) and [r["passed"] for r in rows] == flagged
    assert all(r["wrong"] == (r["planted"] is not None) for r in rows)


# a noise source that is not ours: an LLM's drafts ----------------------------------------------------------
def test_a_caption_without_truth_is_labelled_by_its_dimensions_text():
    """An LLM's clause has no truth to compare with: the fact-check of its dimension's text labels it."""
    dims = {"Terrain": "The terrain is mountainous", "Water": "Water presence: a river visible as dark, smooth areas",
            "Count": "There are 3 ships in the tile; 2 aircraft"}
    item = _item(dims)
    labels = dict(zip([c.body for c in item.clauses], wrong_labels([item], {"t0": FACTS})[0]))
    assert labels["The terrain is mountainous"] and not labels["Water presence: a river visible as dark, smooth areas"]
    assert labels["There are 3 ships in the tile"] and labels["2 aircraft"]  # a refuted dimension: all its clauses


def test_merged_drafts_take_the_drafts_words_where_it_wrote_a_dimension():
    from klip_lib.hcot.schema import caption_text

    template = {"Terrain": "The terrain is a flat plain", "Water": "Water presence: a river visible as dark areas"}
    record = {"tile_id": "t0", "status": "ok", **template, "text": caption_text(template)}
    draft = {"tile_id": "t0", "status": "ok", "Terrain": None, "Water": "Water presence: none visible",
             "Count": "Count: 7 ships"}
    failed = {"tile_id": "t1", "status": "failed"}
    merged = scio_inject.merge_drafts([record, dict(record, tile_id="t1")], [draft, failed])
    assert [m["tile_id"] for m in merged] == ["t0"]  # a failed draft is not a caption
    m = merged[0]
    assert m["drafted"] == ["Water", "Count"] and m["Terrain"] == template["Terrain"]
    assert m["text"] == caption_text({"Terrain": template["Terrain"], "Water": "Water presence: none visible",
                                      "Count": "Count: 7 ships"})


def test_screening_study_on_llm_drafts_scores_the_drafts_own_errors(tmp_path):
    """End to end at the tiny scale, drafts written like an LLM's (a right Terrain, a wrong Water per tile): the
    drafted clauses are labelled, the errors counted are the refuted ones and nothing is planted; both strategies
    and the baselines are scored, the clean views carry no drafted text; without drafts it says what to give."""
    import json

    from klip_tiny import TINY_MODEL, tiny_config

    from klip_lib.data import SimConfig, build_shards, simulate_dataset
    from klip_lib.data.dataset import ShardDataset
    from klip_lib.errors import InputError
    from klip_lib.hcot.backends import make_backend
    from klip_lib.hcot.generate import caption_batch
    from klip_lib.scio import ScioConfig
    from klip_lib.train import TrainConfig

    index = simulate_dataset(tmp_path / "data", SimConfig(n_tiles=24, tile_size=64, seed=0))
    shard_dir = build_shards(index, tmp_path / "shards", image_size=TINY_MODEL["image_size"], channels=2).parent
    tiles = [t for t in ShardDataset(shard_dir).tiles if t["facts"]]
    records = caption_batch([t["facts"] for t in tiles], make_backend("template"))
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps(r) + "\n" for r in records))
    drafts = tmp_path / "drafts.jsonl"
    wrong_water = lambda f: "Water presence: none visible" if f["water_present"] else "Water presence: a lake"  # noqa: E731
    train = [t["facts"] for t in tiles if t["split"] == "train"]
    written = caption_batch(train, make_backend("template"), level="L4")  # the L4 records of these tiles' facts
    drafts.write_text("".join(json.dumps({**{k: r[k] for k in ("tile_id", "status", "level", "prompt_hash")},
                                          "Terrain": r["Terrain"], "Water": wrong_water(f)}) + "\n"
                              for r, f in zip(written, train)))
    configs = (tiny_config(), TrainConfig(steps=2, batch_size=4, warmup_steps=1, checkpoint_every=100, lr=1e-3))
    study = scio_inject.screening_study(shard_dir, captions, tmp_path / "study", seed=0, noise="llm",
                                        configs=configs, drafts=drafts)

    n_train = len(train)
    for name in ("released", "calibrated"):
        r = study[name]
        assert r["scio"]["water"]["support"] == n_train == r["scio"]["all"]["support"]  # one refuted Water each
        assert r["scio"]["terrain"]["support"] == 0  # the drafted Terrain is right
        assert r["noise"]["drafted"] == 2 * n_train and r["noise"]["refuted"] == n_train and r["copies"] == 1
        assert {"precision", "recall", "f1"} <= set(r["random"]["all"]) and "f1" in r["capfilt"]["all"]
        drafted_rows = [row for row in r["audit"] if row["planted"] == scio_inject.DRAFT_KIND]
        assert {row["dim"] for row in drafted_rows} == {"Terrain", "Water"}
        assert all(row["wrong"] == (row["dim"] == "Water") for row in r["audit"])
        assert r["clean"]["clauses"] > 0
    written = [json.loads(x)["text"] for x in (tmp_path / "study" / "noisy_captions.jsonl").read_text().splitlines()]
    assert sum("Water presence: none visible" in t or "Water presence: a lake" in t for t in written) == n_train

    undrafted = tmp_path / "half.jsonl"  # tiles without a parsed draft keep their template captions
    undrafted.write_text("".join(drafts.read_text().splitlines(keepends=True)[: n_train // 2]))
    corpus = scio_inject.draft_corpus(shard_dir, captions, undrafted, configs[0], ScioConfig(), 0)
    assert {it.tile_id for it in corpus.data.train} == {f["tile_id"] for f in train}
    assert len({it.tile_id for it in corpus.clean}) == n_train // 2  # the clean views: the drafted tiles as captioned
    as_captioned = {r["tile_id"]: r["text"] for r in records}
    assert all(it.text() in as_captioned[it.tile_id] and not any(it.kinds) for it in corpus.clean)
    with pytest.raises(InputError, match="drafts"):
        scio_inject.screening_study(shard_dir, captions, tmp_path / "again", seed=0, noise="llm", configs=configs)
    other = tmp_path / "other.jsonl"  # drafts of another dataset's tiles that carry the same ids
    other.write_text("".join(json.dumps({**json.loads(line), "prompt_hash": "0" * 16}) + "\n"
                             for line in drafts.read_text().splitlines()))
    with pytest.raises(InputError, match="written from other facts"):
        scio_inject.screening_study(shard_dir, captions, tmp_path / "again", seed=0, noise="llm", configs=configs,
                                    drafts=other)
    calibrated = tmp_path / "l5.jsonl"  # L5 captions are not drafts
    calibrated.write_text(captions.read_text())
    with pytest.raises(InputError, match="L5"):
        scio_inject.draft_corpus(shard_dir, captions, calibrated, configs[0], ScioConfig(), 0)


def test_screening_block_problems_and_lines():
    """The notebook's checks of a screening block: F1 in [0, 1] and inside its interval; a too-small n is said."""
    block = {"models": {"calibrated": {"f1": 0.3}, "random (calibrated rate)": {"f1": 0.1}, "capfilt": {"f1": 0.2}},
             "ci": {"calibrated": [0.2, 0.4], "random (calibrated rate)": [0.05, 0.15], "capfilt": [0.25, 0.3]},
             "n_test": 59}
    assert scio_inject.block_problems(block) == ["capfilt: F1 0.2 outside its interval [0.25, 0.3]"]
    lines = scio_inject.block_lines(block, "wrong drafted clauses")
    assert lines[0].startswith("calibrated: F1 0.300 [0.200, 0.400] vs random flagging at its rate 0.100")
    assert len(lines) == 2 and "n=59 < 200 wrong drafted clauses: not evidence" in lines[1]


def test_the_screening_bench_prints_json_alone_and_refuses_one_drafts_file_for_several_seeds(monkeypatch, capsys,
                                                                                            tmp_path):
    """What artifacts print while they are built goes to stderr, so `klip bench scio | jq` works."""
    import argparse
    import json

    from klip_lib import artifacts, scio_bench
    from klip_lib.errors import InputError

    items, flags, wrong = _views()
    metrics = screening_metrics(items, flags, wrong)

    def study(*args, **kwargs):
        print("made 328 template captions")
        return {"released": {"scio": metrics, "random": metrics, "capfilt": metrics, "noise": {"count": 0.36},
                             "clean": {"removed": 0.1, "removed_ci": [0.05, 0.15], "clauses": 160}}}

    monkeypatch.setattr(artifacts, "ensure_shards", lambda *a: print("building shards") or tmp_path)
    monkeypatch.setattr(artifacts, "ensure_captions", lambda *a: print("made captions") or tmp_path)
    monkeypatch.setattr(scio_inject, "screening_study", study)
    args = argparse.Namespace(preset="smoke", seeds=[0], run_dir=str(tmp_path), noise="expert", drafts="",
                              llm_model="", copies=2, steps=1, strategies=["released"])
    assert scio_bench.bench(args) == 0
    out = capsys.readouterr()
    printed = json.loads(out.out)
    assert printed["seeds"]["0"]["released"]["scio"]["f1"] == metrics["all"]["f1"]
    assert "made 328 template captions" in out.err and "building shards" in out.err
    with pytest.raises(InputError, match="one seed"):
        scio_bench.bench(argparse.Namespace(**{**vars(args), "noise": "llm", "drafts": "d.jsonl", "seeds": [0, 1]}))
