"""Caption accuracy per backend on real labels: labelled tiles found by file pattern and cut into tiles with their
labels, claims read back from captions, the per-dimension table with intervals, its metrics blocks and chart, and
one line naming the file for every bad labelled input."""

import json

import numpy as np
import pytest

from klip_lib.hcot.backends import make_backend
from klip_lib.hcot.label_accuracy import (
    KNOWLEDGE_ROW,
    MAJORITY_ROW,
    caption_claims,
    evaluate,
    format_table,
    plot,
    task_blocks,
)
from klip_lib.knowledge.labels import find_labelled, score, windows


def _sen1floods11_pair(folder, size=64, label_shape=None):
    """A Spanish Sen1Floods11-like pair: top half open water (-25 dB), bottom half land (-8 dB), speckled."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    db = np.where(np.arange(size)[:, None] < size // 2, -25.0, -8.0) * np.ones((1, size))
    lin = 10 ** (db / 10) * rng.exponential(1.0, (2, size, size))
    data = (10 * np.log10(lin)).astype(np.float32)
    tr = from_origin(-0.7, 38.1, 0.0001, 0.0001)  # near Valencia, ~10 m pixels
    prof = dict(driver="GTiff", width=size, height=size, crs="EPSG:4326", transform=tr)
    with rasterio.open(folder / "Spain_1_S1Hand.tif", "w", count=2, dtype="float32", **prof) as dst:
        dst.write(data)
    lh, lw = label_shape or (size, size)
    label = (np.arange(lh)[:, None] < lh // 2).astype(np.int16) * np.ones((1, lw), np.int16)
    with rasterio.open(folder / "Spain_1_LabelHand.tif", "w", count=1, dtype="int16",
                       **{**prof, "width": lw, "height": lh}) as dst:
        dst.write(label[None])


def _hrsid_pair(folder, name="P0001"):
    """A dark sea scene with two bright ships (top-left and bottom-right) and their instance mask."""
    from PIL import Image

    img = np.full((90, 90), 20, np.uint8)
    mask = np.zeros((90, 90, 3), np.uint8)
    for (r, c), colour in (((10, 10), (255, 0, 0)), ((70, 72), (0, 255, 0))):
        img[r:r + 5, c:c + 12] = 250
        mask[r:r + 5, c:c + 12] = colour
    Image.fromarray(img).save(folder / f"{name}.png")
    Image.fromarray(mask).save(folder / f"{name}_instance_id_RGB.png")


def test_windows_cover_whole_tiles_only():
    assert windows(100, 60, 128) == [(0, 0, 100, 60)]
    assert windows(300, 260, 128) == [(0, 0, 128, 128), (0, 128, 128, 128), (128, 0, 128, 128), (128, 128, 128, 128)]


def test_a_missing_or_unknown_claim_counts_as_wrong():
    truth = {"water_present": True, "ship_count": 1, "ship_cells": ["top"]}
    assert score(truth, {}) == {"water present": [0], "ship count (exact)": [0], "ships in 3x3 cell": [0] * 9}
    marks = score(truth, {"water_present": True, "ship_count": 1, "ship_cells": {"top", "center"}})
    assert marks["water present"] == [1] and marks["ship count (exact)"] == [1]
    assert sum(marks["ships in 3x3 cell"]) == 8  # 'center' claimed where no ship is


def test_caption_claims_are_read_back_from_the_text():
    record = {"Water": "Water presence: no water body", "Count": "Count: 2 ships and one aircraft",
              "Location": "the ships lie in the top-left and bottom-right cells",
              "text": "... Environment: near Valencia, Spain."}
    claims = caption_claims(record, {"country": "Spain"})
    assert claims == {"water_present": False, "country": "Spain", "ship_count": 2,
                      "ship_cells": {"top-left", "bottom-right"}, "aircraft_present": True}
    empty = caption_claims({"text": "a caption naming no place"}, {"country": "Spain"})
    assert empty["water_present"] is None and empty["ship_count"] is None and empty["country"] is None


def test_synthetic_pairs_are_tiled_with_their_labels_and_scored(tmp_path):
    _sen1floods11_pair(tmp_path)
    _hrsid_pair(tmp_path)
    items, problems = find_labelled(tmp_path, tile_px=32)
    assert problems == []
    s1 = [i for i in items if i.dataset == "sen1floods11"]
    assert len(s1) == 4 and [i.truth["water_present"] for i in s1] == [True, True, False, False]
    assert all(i.truth["country"] == "Spain" and i.info.resolution_m < 12 for i in s1)
    ships = [i for i in items if i.dataset == "hrsid"]
    assert len(ships) == 4  # 90 px cut into 32 px tiles: 2 x 2 whole tiles, the rest left out
    assert [i.truth["ship_count"] for i in ships] == [1, 0, 0, 0]  # the second ship lies in the cut-off strip
    whole, _ = find_labelled(tmp_path, tile_px=0)
    (scene,) = [i for i in whole if i.dataset == "hrsid"]
    assert scene.truth == {"ship_count": 2, "ship_cells": ["top-left", "bottom-right"]}
    rows = evaluate(s1, {"template": make_backend("template")}, progress=False)
    by = {(r["row"], r["dimension"]): r for r in rows}
    assert by[(KNOWLEDGE_ROW, "water present")]["accuracy"] == 1.0  # open water vs land: Otsu / fixed threshold
    assert by[(KNOWLEDGE_ROW, "location: country")]["correct"] == 4
    assert by[(MAJORITY_ROW, "water present")]["accuracy"] == 0.5  # two water tiles, two land tiles
    assert by[("template", "water present")]["n"] == 4 and by[("template", "water present")]["accuracy"] == 1.0
    assert "plumbing check (n < 200)" in format_table(rows)


def test_blocks_and_chart_for_the_report(tmp_path):
    rows = [{"row": KNOWLEDGE_ROW, "dimension": "water present", "dataset": "sen1floods11", "n": 16, "tiles": 16,
             "correct": 12, "accuracy": 0.75, "ci": [0.5, 0.94]},
            {"row": "template", "dimension": "water present", "dataset": "sen1floods11", "n": 10, "tiles": 10,
             "correct": 7, "accuracy": 0.7, "ci": [0.4, 0.9]}]
    blocks = task_blocks(rows)
    block = blocks["caption_accuracy_real/water present"]
    assert block["n_test"] == 10 and block["compares"] == "methods" and block["ci"]["template"] == [0.4, 0.9]
    from klip_lib.report import task_blocks as report_blocks

    assert set(report_blocks({"03_hcot_captions": {"tasks": json.loads(json.dumps(blocks))}})) == set(blocks)
    plot(rows, tmp_path / "acc.png")
    assert (tmp_path / "acc.png").stat().st_size > 1000


def test_bad_labelled_inputs_are_one_line_naming_the_file(tmp_path):
    _sen1floods11_pair(tmp_path, label_shape=(60, 64))
    (tmp_path / "A330").mkdir()
    (tmp_path / "A330" / "001.jpg").write_bytes(b"not a jpeg")
    _hrsid_pair(tmp_path)
    items, problems = find_labelled(tmp_path, tile_px=0)
    assert [i.dataset for i in items] == ["hrsid"]  # the good pair is still used
    assert len(problems) == 2 and all("\n" not in p for p in problems)
    assert any(p.startswith(str(tmp_path / "Spain_1_LabelHand.tif")) and "does not match" in p for p in problems)
    assert any(p.startswith(str(tmp_path / "A330" / "001.jpg")) for p in problems)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_labelled(tmp_path / "nowhere")


@pytest.mark.real_data
def test_real_labelled_tiles_and_template_rows(real_data_dir):
    items, problems = find_labelled(real_data_dir, tile_px=128)
    counts = {d: sum(i.dataset == d for i in items) for d in ("sen1floods11", "hrsid", "sar_acd")}
    assert problems == [] and counts == {"sen1floods11": 16, "hrsid": 108, "sar_acd": 2413}
    sub = [i for i in items if i.dataset != "sar_acd"][:20] + [i for i in items if i.dataset == "sar_acd"][:5]
    rows = evaluate(sub, {"template": make_backend("template")}, progress=False)
    by = {(r["row"], r["dimension"]): r for r in rows}
    # the template realises the facts, so its water and ship counts are the knowledge layer's
    assert by[("template", "water present")]["correct"] == by[(KNOWLEDGE_ROW, "water present")]["correct"]
    assert by[("template", "ship count (exact)")]["n"] == 4
    assert by[(KNOWLEDGE_ROW, "ships in 3x3 cell")]["n"] == 36
    assert all(r["ci"][0] <= r["accuracy"] <= r["ci"][1] for r in rows)


def test_command_prints_the_table(tmp_path, capsys):
    from klip_lib.hcot.label_accuracy import main

    _sen1floods11_pair(tmp_path)
    main([str(tmp_path), "--tile-px", "32"])
    out = capsys.readouterr().out
    assert f"| {KNOWLEDGE_ROW} | water present | sen1floods11 | 4 | 4 | 4 | 1.000" in out
    assert "| template | location: country |" in out
