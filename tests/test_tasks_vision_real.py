"""Vision tasks on the real SAR samples (../shared/data/real; skipped with the reason when absent)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from klip_lib.tasks import real_data as rd
from klip_lib.tasks.detection import hrsid_detection_set
from klip_lib.tasks.segmentation import IGNORE, sen1floods11_set

pytestmark = pytest.mark.real_data


def test_hrsid_boxes_match_the_mask_pixels(real_data_dir):
    scenes = rd.load_hrsid(real_data_dir / "hrsid")
    assert len(scenes) == 3
    for scene in scenes:
        mask = np.asarray(Image.open(real_data_dir / "hrsid" / f"{scene.name}_instance_id_RGB.png").convert("RGB"))
        colours, first, counts = np.unique(mask.reshape(-1, 3), axis=0, return_index=True, return_counts=True)
        order = [i for i in np.argsort(first) if colours[i].any()]  # the boxes' order: first pixel, row-major
        assert len(scene.boxes) == len(order) > 0
        for (x0, y0, x1, y1), i in zip(scene.boxes.astype(int), order):
            own = (mask[y0:y1, x0:x1] == colours[i]).all(-1)
            assert own.sum() == counts[i]  # every pixel of the instance inside its box
            assert own[0].any() and own[-1].any() and own[:, 0].any() and own[:, -1].any()  # tight on all sides


def test_hrsid_windows_hold_out_whole_scenes(real_data_dir):
    data = hrsid_detection_set(rd.load_hrsid(real_data_dir / "hrsid"), size=64, scene_size=256)
    assert data.images.shape == (48, 2, 64, 64)
    scenes = {s: {n.split("@")[0] for n, p in zip(data.names, data.split) if p == s} for s in ("train", "test")}
    assert len(scenes["test"]) == 1 and not scenes["test"] & scenes["train"]
    assert data.n_boxes()["train"] > 100 and data.n_boxes()["test"] >= 5


def test_sar_acd_split_is_stratified_and_chips_load(real_data_dir, tmp_path):
    split = rd.stratified_split(real_data_dir / "sar_acd", tmp_path / "sar_acd.json")
    assert sorted(split["train"]) == ["A220", "A320321", "A330", "ARJ21", "Boeing737", "Boeing787"]
    for c, files in split["test"].items():
        n = len(files) + len(split["train"][c])
        assert abs(len(files) - 0.3 * n) <= 1 and not set(files) & set(split["train"][c])
    chips = rd.load_class_chips(real_data_dir / "sar_acd", split, image_size=32, max_per_class=3)
    assert chips.images.shape == (36, 2, 32, 32) and not chips.skipped
    assert (chips.images[:, 1] == 0).all()  # HH only: the cross-pol channel is empty


def test_sen1floods11_loads_on_one_grid(real_data_dir):
    bands, pols, label, name = rd.load_sen1floods11(real_data_dir / "sen1floods11")
    assert bands.shape == (2, 512, 512) and pols == ["VV", "VH"] and set(np.unique(label)) <= {-1, 0, 1}
    data = sen1floods11_set(bands, pols, label, size=64, name=name)
    assert data.split.count("train") == data.split.count("test") == 32
    water = [(data.masks[[s == p for s in data.split]] == 1).float().mean().item() for p in ("train", "test")]
    assert all(w > 0.05 for w in water) and (data.masks == IGNORE).sum() == (label == -1).sum()
