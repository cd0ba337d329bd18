"""Vision tasks: metrics on known cases, data cutting, bad input, frozen backbones and the task heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from klip_tiny import tiny_model
from PIL import Image

from klip_lib.tasks import classification as cls
from klip_lib.tasks import detection as det
from klip_lib.tasks import real_data as rd
from klip_lib.tasks import segmentation as seg
from klip_lib.tasks.backbone import FrozenEncoder, SimpleFeaturePyramid, pooled_features, token_maps


# metrics on known cases -------------------------------------------------------------------------
def test_classification_metrics_perfect_and_known_confusion():
    y = torch.tensor([0, 1, 1, 1])
    assert cls.classification_metrics(y, y, 2)["accuracy"] == 1.0
    m = cls.classification_metrics(torch.tensor([0, 0, 1, 1]), y, 3)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx((1 + 2 / 3) / 2)  # class 2 absent: not averaged
    assert m["confusion"] == [[1, 0, 0], [1, 2, 0], [0, 0, 0]]


def test_detection_metrics_perfect_and_half_recall():
    boxes = [torch.tensor([[2.0, 2, 12, 8], [20, 20, 30, 40]])]
    labels = [torch.tensor([1, 1])]
    perfect = [{"boxes": boxes[0], "scores": torch.tensor([0.9, 0.8]), "labels": labels[0]}]
    assert det.detection_metrics(perfect, boxes, labels) == {"map": 1.0, "map_50": 1.0}
    # one of two ships found exactly, one false alarm scored lower: precision 1 up to recall 0.5, so COCO's
    # 101-point interpolation gives 51/101 at every IoU threshold
    half = [{"boxes": torch.tensor([[2.0, 2, 12, 8], [40, 0, 50, 5]]), "scores": torch.tensor([0.9, 0.1]),
             "labels": torch.tensor([1, 1])}]
    m = det.detection_metrics(half, boxes, labels)
    assert m["map"] == pytest.approx(51 / 101, abs=1e-4) and m["map_50"] == pytest.approx(51 / 101, abs=1e-4)
    with pytest.raises(ValueError, match="no ground-truth boxes"):
        det.detection_metrics(half, [torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)])


def test_segmentation_metrics_perfect_and_by_hand():
    target = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, seg.IGNORE]]])
    perfect = seg.segmentation_metrics(target.clamp(max=1), target, ("land", "water", "cloud"))
    assert perfect["miou"] == 1.0 and perfect["per_class_iou"] == {"land": 1.0, "water": 1.0, "cloud": None}
    preds = torch.tensor([[[0, 1, 1, 1], [0, 0, 1, 0]]])  # the ignored pixel's prediction does not count
    m = seg.segmentation_metrics(preds, target, ("land", "water", "cloud"))
    assert m["per_class_iou"]["land"] == pytest.approx(3 / 4) and m["per_class_iou"]["water"] == pytest.approx(3 / 4)
    assert m["miou"] == pytest.approx(3 / 4)


# boxes and windows -----------------------------------------------------------------------------
def test_boxes_from_instance_mask_cover_every_pixel():
    mask = np.zeros((20, 30, 3), np.uint8)
    mask[2:5, 3:9] = (255, 0, 0)
    mask[10:18, 20:22] = (0, 128, 7)
    mask[11, 25] = (0, 128, 7)  # same colour, same instance
    assert rd.boxes_from_instance_mask(mask).tolist() == [[3, 2, 9, 5], [20, 10, 26, 18]]
    assert rd.boxes_from_instance_mask(np.zeros((4, 4, 3), np.uint8)).shape == (0, 4)


def test_crop_boxes_clips_and_drops_mostly_outside():
    boxes = np.array([[10, 10, 20, 20], [60, 0, 70, 10], [0, 0, 4, 4]], np.float32)
    b, lab = det.crop_boxes(boxes, np.array([1, 2, 1]), (8, 0, 56, 56))
    assert b.tolist() == [[2, 10, 12, 20]] and lab.tolist() == [1]  # box 2 is 20% inside, box 3 outside


def test_chip_window_centres_the_target_and_pads_with_nan():
    bands = np.arange(2 * 40 * 40, dtype=np.float32).reshape(2, 40, 40)
    w = cls.chip_window(bands, [0, 0, 4, 2], context=3.0, min_side=8)
    assert w.shape == (2, 12, 12)
    assert np.isnan(w[:, 0, 0]).all() and w[0, 6, 6] == bands[0, 1, 2]


def test_fixed_scale_pads_small_and_crops_large_chips_at_their_own_spacing():
    small = np.ones((1, 3, 5), np.float32)
    out = rd.fixed_scale(small, 7)
    assert out.shape == (1, 7, 7) and np.nansum(out) == 15 and np.isnan(out[0, 0]).all()
    assert out[0, 2:5, 1:6].tolist() == small[0].tolist()  # centred, pixels untouched
    large = np.arange(100, dtype=np.float32).reshape(1, 10, 10)
    assert rd.fixed_scale(large, 4)[0].tolist() == large[0, 3:7, 3:7].tolist()
    assert rd.fixed_scale(large, 0) is large


def test_fixed_scale_keeps_size_as_a_cue_that_resizing_removes(tmp_path):
    """Two classes that differ only in the size of a bright square: resized whole, every chip is the same image;
    at one scale the larger square covers more of the model image."""
    for name, side in (("small", 8), ("large", 16)):
        (tmp_path / name).mkdir()
        for i in range(3):
            a = np.full((side * 3 // 2, side * 3 // 2), 20, np.uint8)  # the square and a border of a quarter
            a[side // 4:-(side // 4), side // 4:-(side // 4)] = 200
            Image.fromarray(a).save(tmp_path / name / f"{i}.png")
    split = rd.stratified_split(tmp_path, tmp_path / "split.json")
    stretched = rd.load_class_chips(tmp_path, split, image_size=16)
    scaled = rd.load_class_chips(tmp_path, split, image_size=16, chip_side=24)
    from klip_lib.data.dataset import DB_MEAN, DB_STD

    mid = (36.0 - DB_MEAN) / DB_STD  # between the border (20 log10 20 = 26 dB) and the square (46 dB)
    bright = lambda c, k: int((c.images[c.labels == k, 0][0] > mid).sum())  # noqa: E731  (classes: large, small)
    assert bright(stretched, 0) == bright(stretched, 1)
    assert bright(scaled, 0) > 3 * bright(scaled, 1)
    with pytest.raises(rd.RealDataError, match="chip_side must be 0"):
        rd.load_class_chips(tmp_path, split, image_size=16, chip_side=-1)


# bad input ---------------------------------------------------------------------------------------
def _chip_folder(root, classes=("A", "B"), n=4):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((20, 24), 40 + 10 * i, np.uint8)).save(root / c / f"{i:03d}.jpg")
    return root


def test_stratified_split_is_fixed_and_written(tmp_path):
    folder = _chip_folder(tmp_path / "acd", n=10)
    out = tmp_path / "run" / "splits" / "acd.json"
    first = rd.stratified_split(folder, out)
    assert out.is_file() and {c: len(v) for c, v in first["test"].items()} == {"A": 3, "B": 3}
    assert rd.stratified_split(folder, out) == first
    (folder / "A" / first["test"]["A"][0].split("/")[1]).unlink()
    with pytest.raises(rd.RealDataError, match="does not match"):
        rd.stratified_split(folder, out)


def test_empty_class_folder_raises_naming_it(tmp_path):
    folder = _chip_folder(tmp_path / "acd")
    (folder / "C").mkdir()
    with pytest.raises(rd.RealDataError, match=r"class folder .*C has no images"):
        rd.stratified_split(folder, tmp_path / "split.json")


def test_unreadable_image_is_skipped_with_its_reason(tmp_path):
    folder = _chip_folder(tmp_path / "acd", n=6)
    split = rd.stratified_split(folder, tmp_path / "split.json")
    broken = folder / split["train"]["B"][0]
    broken.write_bytes(b"not a jpeg")
    chips = rd.load_class_chips(folder, split, image_size=16)
    assert chips.images.shape == (11, 2, 16, 16) and chips.classes == ["A", "B"]
    assert chips.skipped == [(str(broken), chips.skipped[0][1])] and "cannot read the image" in chips.skipped[0][1]


def test_hrsid_mask_of_other_size_raises(tmp_path):
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "P1.png")
    Image.fromarray(np.zeros((30, 32, 3), np.uint8)).save(tmp_path / "P1_instance_id_RGB.png")
    with pytest.raises(rd.RealDataError, match=r"P1_instance_id_RGB.png: mask is 32x30 px but its image P1.png is 32x32"):
        rd.load_hrsid(tmp_path)


def test_landcover_mask_of_other_size_raises(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from rasterio.transform import from_origin

    from klip_lib.data.geotiff import write_mask, write_tile

    t = from_origin(0, 0, 10, 10)
    write_tile(tmp_path / "tiles" / "t0.tif", {"VV": np.zeros((16, 16), np.float32)}, "EPSG:32631", t, {})
    write_mask(tmp_path / "labels" / "t0_landcover.tif", np.zeros((12, 16), np.uint8), "EPSG:32631", t, 255)
    pq.write_table(pa.table({"tile_id": ["t0"], "path": ["tiles/t0.tif"], "split": ["test"],
                             "landcover_path": ["labels/t0_landcover.tif"]}), tmp_path / "index.parquet")
    with pytest.raises(ValueError, match=r"t0_landcover.tif: land-cover mask is 16x12 px but its tile t0.tif is 16x16"):
        seg.sim_segmentation_set(tmp_path / "index.parquet", 8)


def test_simulated_blocks_use_ground_truth_tiles_only(tmp_path):
    """A real tile's facts (inferred by the knowledge layer, `knowledge_source`) are not labels: its CFAR
    targets never become classification chips or detection boxes, and an imported dataset has no simulated tile."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from rasterio.transform import from_origin

    from klip_lib.data.geotiff import write_tile
    from klip_lib.data.truth import dataset_kind, is_ground_truth, no_ground_truth, simulated_tiles

    ship = {"id": 0, "class": "ship", "type": "tanker", "length_m": 200.0, "bbox": [20, 20, 30, 26],
            "center": [25.0, 23.0], "grid_cell": "center"}
    rows = []
    for name, split, extra in (("sim", "train", {}), ("real", "test", {"knowledge_source": "klip_lib.knowledge"})):
        write_tile(tmp_path / "tiles" / f"{name}.tif", {"VV": np.zeros((64, 64), np.float32)}, "EPSG:32631",
                   from_origin(0, 0, 10, 10), {})
        (tmp_path / "labels").mkdir(exist_ok=True)
        (tmp_path / "labels" / f"{name}.json").write_text(json.dumps({"tile_id": name, "targets": [ship], **extra}))
        rows.append({"tile_id": name, "path": f"tiles/{name}.tif", "split": split, "facts_path": f"labels/{name}.json"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "index.parquet")
    assert simulated_tiles(tmp_path / "index.parquet") == 1
    assert no_ground_truth(tmp_path / "index.parquet", "simulated detection") is None
    assert not is_ground_truth(None) and is_ground_truth({"targets": []})
    real = {"knowledge_source": "klip_lib.knowledge"}
    sim = {"targets": []}
    assert [dataset_kind(f) for f in ([sim, sim], [real], [sim, real])] == ["sim", "imported", "mixed"]
    chips = cls.sim_target_chips(tmp_path / "index.parquet", 16)
    assert chips.names == ["sim#0"] and chips.split == ["train"]
    boxes = det.sim_detection_set(tmp_path / "index.parquet", 32)
    assert {n.split("@")[0] for n in boxes.names} == {"sim"} and boxes.n_boxes() == {"train": 1, "test": 0}
    zoomed = det.sim_detection_set(tmp_path / "index.parquet", 32, zoom=2)  # 16 px windows upsampled twice
    assert len(zoomed.names) == 4 * len(boxes.names) and zoomed.images.shape[-1] == 32
    assert zoomed.boxes[zoomed.names.index("sim@16,16")].tolist() == [[8.0, 8.0, 28.0, 20.0]]
    with pytest.raises(ValueError, match="whole divisor"):
        det.sim_detection_set(tmp_path / "index.parquet", 32, zoom=3)
    pq.write_table(pa.Table.from_pylist(rows[1:]), tmp_path / "index.parquet")
    assert simulated_tiles(tmp_path / "index.parquet") == 0
    assert no_ground_truth(tmp_path / "index.parquet", "simulated detection").endswith(
        "not labels): simulated detection skipped")
    with pytest.raises(ValueError, match="no simulated ship or aircraft targets"):
        cls.sim_target_chips(tmp_path / "index.parquet", 16)


def test_sen1floods11_split_is_spatial_and_nodata_ignored():
    bands = np.random.default_rng(0).normal(-15, 3, (2, 64, 48)).astype(np.float32)
    label = np.zeros((64, 48), np.int64)
    label[:, :5] = -1
    data = seg.sen1floods11_set(bands, ["VV", "VH"], label, size=16)
    rows = {s: {int(n.split(",")[1]) for n, p in zip(data.names, data.split) if p == s} for s in ("train", "test")}
    assert rows == {"train": {0, 16}, "test": {32, 48}}
    assert (data.masks == seg.IGNORE).sum() == 5 * 64 and data.images.shape == (12, 2, 16, 16)  # full cover
    with pytest.raises(ValueError, match="label is 40x64 px but the image is 48x64"):
        seg.sen1floods11_set(bands, ["VV", "VH"], label[:, :40], size=16)


# backbone and heads ------------------------------------------------------------------------------
def test_frozen_features_and_pyramid_shapes():
    visual = tiny_model().visual  # 32 px images, 8 px patches, width 48
    images = torch.randn(3, 2, 32, 32)
    assert pooled_features(visual, images).shape == (3, 48)
    assert token_maps(visual, images).shape == (3, 48, 4, 4)
    fpn = SimpleFeaturePyramid(visual, out_channels=16)
    fpn.train()
    assert not fpn.encoder.visual.training and not any(p.requires_grad for p in fpn.encoder.parameters())
    assert [tuple(v.shape) for v in fpn(images).values()] == [(3, 16, 8, 8), (3, 16, 4, 4), (3, 16, 2, 2), (3, 16, 1, 1)]
    assert isinstance(fpn.encoder, FrozenEncoder)


def test_linear_probe_separates_separable_features():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 8, generator=gen) * 0.1 + torch.nn.functional.one_hot(y, 8).float() * 3
    preds, curve = cls.linear_probe(x[:45], y[:45], x[45:], 3, cls.ProbeConfig(), seed=0)
    assert cls.classification_metrics(preds, y[45:], 3)["accuracy"] == 1.0
    assert curve["best_val"] == 1.0 and curve["val"][curve["best_epoch"] - 1] == 1.0


def test_zero_shot_and_finetune_return_one_class_per_image():
    model = tiny_model()
    images = torch.randn(5, 2, 32, 32)
    prompts = cls.class_prompts(["small boat", "A320321"])
    assert prompts == ["Category: ships: small boat", "Category: aircraft: A320/321"]
    assert cls.zero_shot(model, images, prompts).shape == (5,)
    before = {k: v.clone() for k, v in model.visual.state_dict().items()}
    preds, curve = cls.finetune(model.visual, (images, torch.tensor([0, 1, 0, 1, 0])), images, 2,
                                cls.FinetuneConfig(max_epochs=2, batch_size=4, val_fraction=0.4), seed=0)
    assert curve["epoch"] == [1, 2] and len(curve["val"]) == 2
    assert preds.shape == (5,) and preds.max() <= 1
    assert all(torch.equal(before[k], v) for k, v in model.visual.state_dict().items())


def test_detector_trains_and_predicts_on_the_frozen_encoder():
    model = tiny_model()
    images = torch.randn(4, 2, 32, 32)
    boxes = [torch.tensor([[4.0, 4, 12, 10]]), torch.zeros(0, 4), torch.tensor([[20.0, 8, 28, 30]]), torch.zeros(0, 4)]
    labels = [torch.ones(len(b), dtype=torch.long) for b in boxes]
    names = [f"t{k // 2}@{32 * (k % 2)},0" for k in range(8)]  # every tile holds a box: so does validation
    data = det.DetectionSet(torch.cat([images, images]), boxes * 2, labels * 2, ["train"] * 6 + ["test"] * 2,
                            ("ship",), names)
    assert det.window_groups(data) == ["t0", "t0", "t1", "t1", "t2", "t2", "t3", "t3"]
    assert det.window_groups(data, scene_rows=True)[:2] == ["t0@0", "t0@0"]
    cfg = det.DetectorConfig(channels=16, representation=32, max_epochs=2, batch_size=2, val_fraction=0.5)
    frozen = {k: v.clone() for k, v in model.visual.state_dict().items()}
    scores, preds = det.evaluate_detection({"tiny": model}, data, cfg)
    assert set(scores["tiny"]) == {"map", "map_50", "best_epoch", "curve"} and 0 <= scores["tiny"]["map_50"] <= 1
    assert len(scores["tiny"]["curve"]["val"]) <= 2
    assert len(preds["tiny"]) == 2 and preds["tiny"][0]["boxes"].shape[1] == 4
    assert all(torch.equal(frozen[k], v) for k, v in model.visual.state_dict().items())
    base, base_preds = det.detection_baselines(data, model.visual, cfg)
    assert set(base) == {"random boxes", "supervised (scratch)"} and len(base_preds["random boxes"]) == 2
    assert all(torch.equal(frozen[k], v) for k, v in model.visual.state_dict().items())  # trained a copy
    block = det.task_block(scores, data, cfg, preds, baselines=base, baseline_predictions=base_preds)
    assert set(block["ci"]) == {"tiny", "random boxes", "supervised (scratch)"}
    assert block["chance"] == base["random boxes"]["map_50"] and "curve" not in block["baselines"]["supervised (scratch)"]


def test_segmentation_head_learns_a_trivial_mask():
    model = tiny_model()
    images = torch.randn(8, 2, 32, 32)
    masks = (images[:, 0] > 0).long() * 0  # one class everywhere: any trained decoder gets it right
    data = seg.SegmentationSet(images, masks, ["train"] * 6 + ["test"] * 2, ("land", "water"), list("abcdefgh"))
    scores, preds = seg.evaluate_segmentation({"tiny": model}, data, seg.SegmenterConfig(max_epochs=10, patience=10))
    assert scores["tiny"]["per_class_iou"]["land"] == 1.0 and scores["tiny"]["per_class_iou"]["water"] is None
    assert preds["tiny"].shape == (2, 32, 32)


# protocols and baselines -------------------------------------------------------------------------
from klip_lib.tasks import protocol  # noqa: E402


def test_validation_split_keeps_groups_whole_and_stratifies():
    labels = np.arange(100) % 2
    groups = np.arange(100) // 4  # 25 groups of 4 chips, both classes in each
    train, val = protocol.validation_split(100, 0.2, seed=0, labels=labels, groups=groups)
    assert not set(groups[train]) & set(groups[val]) and len(train) + len(val) == 100
    assert 16 <= len(val) <= 24 and abs(labels[val].mean() - 0.5) < 0.1
    again = protocol.validation_split(100, 0.2, seed=0, labels=labels, groups=groups)
    assert (again[0] == train).all()
    with pytest.raises(ValueError, match="at least two training groups"):
        protocol.validation_split(4, 0.5, 0, groups=["a"] * 4)


def test_fit_stops_on_patience_and_restores_the_best_epoch():
    layer = torch.nn.Linear(1, 1)
    scores, seen = iter([0.1, 0.5, 0.5, 0.3, 0.2, 0.9]), []

    def validate():
        seen.append(layer.weight.detach().clone())
        return next(scores)

    step = lambda idx: (layer(torch.ones(len(idx), 1)) - 5).pow(2).mean()  # noqa: E731
    curve = protocol.fit(layer, layer.parameters(), step, 8, 4, validate, protocol.EpochConfig(10, patience=2),
                         lr=0.1, weight_decay=0.0, seed=0)
    assert curve["epoch"] == [1, 2, 3, 4, 5] and curve["best_epoch"] == 3 and curve["stopped_early"]  # tie: later
    assert torch.equal(layer.weight, seen[2]) and not torch.equal(layer.weight, seen[4])


def test_learning_rate_schedule_warms_up_then_decays_to_zero():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = protocol.learning_rate_schedule(opt, protocol.EpochConfig(4, warmup_epochs=1, cosine=True), 5)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[5] == pytest.approx(1.0)  # warm-up: 1% to full over 5 steps
    assert all(a < b for a, b in zip(lrs[:5], lrs[1:6])) and all(a > b for a, b in zip(lrs[5:], lrs[6:]))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)  # cosine ends at 0 after max_epochs
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched = protocol.learning_rate_schedule(opt, protocol.EpochConfig(4), 5)  # the default: constant
    for _ in range(20):
        assert opt.param_groups[0]["lr"] == 0.5
        opt.step()
        sched.step()


@pytest.mark.parametrize("kind", protocol.AUGMENTATIONS)
def test_augmentations_move_masks_with_images(kind):
    gen = torch.Generator().manual_seed(3)
    masks = torch.randint(0, 4, (2, 16, 16))
    images = torch.stack([masks.float(), -masks.float()], 1)
    for _ in range(4):
        x, y = protocol.augment(images, kind, gen, masks)
        assert x.shape == images.shape and torch.equal(x[:, 0], y.float()) and torch.equal(x[:, 1], -y.float())
    assert torch.equal(protocol.augment(images, "none", gen), images)
    with pytest.raises(ValueError, match="unknown augmentation 'rot45'"):
        protocol.augment(images, "rot45", gen)


def test_choose_augmentation_keeps_none_on_a_tie():
    run = lambda kind: {"best_val": {"none": 0.7, "flips": 0.7, "crop": 0.6}[kind]}  # noqa: E731
    assert protocol.choose_augmentation(run, ("none", "flips", "crop"))[0] == "none"
    run = lambda kind: {"best_val": {"none": 0.7, "flips": 0.8}[kind]}  # noqa: E731
    choice, record = protocol.choose_augmentation(run, ("none", "flips"))
    assert choice == "flips" and record["validation"] == {"none": 0.7, "flips": 0.8}


def _separable_chips(n=60, size=32):
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = torch.randn(n, 2, size, size, generator=gen) * 0.3 + (2 * labels - 1)[:, None, None, None] * 1.0
    split = ["train"] * (n - 20) + ["test"] * 20
    return cls.Chips(images, labels, split, ["small boat", "A320321"], [f"t{i // 2}#{i}" for i in range(n)])


def test_classification_baselines_and_blocks(tmp_path):
    chips = _separable_chips()
    model = tiny_model()
    probe, tune = cls.ProbeConfig(max_epochs=20), cls.FinetuneConfig(max_epochs=2, batch_size=8)
    base, aug = cls.classification_baselines(chips, model.visual, (0, 1), probe, tune)
    assert base["chance"]["accuracy"] == 0.5 and base["majority class"]["accuracy"] == 0.5
    assert base["raw-pixel probe"]["accuracy"] == 1.0  # the classes differ by their mean level
    assert aug["choice"] in ("none", "flips") and set(aug["validation"]) == {"none", "flips"}
    results = cls.evaluate_classification({"random": model, "tiny": model}, chips, (0, 1), probe, tune)
    assert results["random"]["finetune_accuracy"] is None and results["tiny"]["finetune_accuracy"] is not None
    probe_block = cls.task_block(results, chips, (0, 1), baselines=base)
    assert set(probe_block["baselines"]) == {"chance", "majority class", "raw-pixel probe"}
    assert probe_block["baselines"]["raw-pixel probe"]["linear_probe_accuracy"] == 1.0
    assert probe_block["ci"]["raw-pixel probe"] == [1.0, 1.0] and "chance" not in probe_block["ci"]
    tuned = cls.finetune_block(results, base, chips, aug, tune)
    assert list(tuned["models"]) == ["tiny"] and "supervised (scratch)" in tuned["baselines"]
    cnn = base["supervised CNN (scratch)"]  # the protocol's own check, trained like the ViT reference
    assert cnn["architecture"] == cls.REFERENCE_CNN and cnn["augment"] == aug["choice"]
    assert len(cnn["items"]) == chips.split.count("test") and cnn["curve"]["epoch"] == [1, 2]
    assert len(tuned["ci"]["supervised CNN (scratch)"]) == 2
    assert "supervised CNN (scratch)" not in cls.classification_baselines(chips, model.visual, (0,), probe, tune,
                                                                        ("none",), cnn=None)[0]
    assert tuned["augmentation"]["choice"] == aug["choice"] and tuned["headline"] == "finetune_accuracy"
    check = cls.checks(probe_block, "raw-pixel probe")
    assert check["beats_chance"] and "plumbing check, n=20" in check["small_test_set"]
    path = cls.save_classification_curves(results, base, aug, tmp_path / "curves" / "acd")
    assert path.is_file() and path.with_suffix(".png").is_file()
    import json
    assert {"supervised (scratch, none)", "supervised CNN (scratch)"} <= set(json.loads(path.read_text()))


def test_segmentation_baselines_pixel_linear_learns_dark_water():
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(24, 2, 32, 32, generator=gen)
    masks = (images[:, 0] < -0.3).long()  # water is dark: a threshold on the co-pol band
    data = seg.SegmentationSet(images, masks, ["train"] * 16 + ["test"] * 8, ("land", "water"),
                               [f"chip@{32 * (i % 4)},{32 * (i // 4)}" for i in range(24)])
    assert seg.image_groups(data)[:5] == ["0", "0", "0", "0", "32"]
    cfg = seg.SegmenterConfig(max_epochs=15, patience=15)
    scores, preds, aug = seg.segmentation_baselines(data, tiny_model().visual, cfg)
    land = (masks[16:] == 0).float().mean().item()
    assert scores["majority class"]["per_class_iou"] == {"land": pytest.approx(land), "water": 0.0}
    assert scores["pixel linear (raw dB)"]["miou"] > 0.9 and preds["supervised (scratch)"].shape == (8, 32, 32)
    block = seg.task_block({}, data, cfg, {}, baselines=scores, baseline_predictions=preds, augmentation=aug)
    assert block["chance"] == pytest.approx(land / 2) and block["ci"]["pixel linear (raw dB)"][0] > block["chance"]
