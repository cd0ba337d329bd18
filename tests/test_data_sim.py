"""Simulator: speckle statistics, backscatter ordering, target sizes, facts contract, splits, determinism."""

import json

import numpy as np
import pytest
from scipy import stats

from klip_lib.data.gazetteer import CITIES, get_city
from klip_lib.data.physics import amplitude_to_db, db_to_amplitude, db_to_linear, linear_to_db, speckle
from klip_lib.data.platforms import PLATFORMS
from klip_lib.data.render import render
from klip_lib.data.scene import Layout, make_layout
from klip_lib.data.simulate import SimConfig, simulate_dataset
from klip_lib.data.targets import Target, _Placer, shape_mask
from klip_lib.vocab import AIRCRAFT_TYPES, GRID_CELLS, LANDCOVER_CLASSES, LANDCOVER_INDEX, TARGET_CLASSES

FACT_KEYS = {"tile_id", "scene_id", "city", "country", "continent", "lon", "lat", "climate", "coastal", "river", "has_port",
             "has_airport", "platform", "band", "polarizations", "resolution_m", "incidence_deg", "looks", "width", "height",
             "terrain", "landcover_fractions", "main_landform", "landforms_present", "regional_landform", "water_present",
             "water_kinds", "counts", "targets"}
TARGET_KEYS = {"id", "class", "type", "length_m", "width_m", "heading_deg", "bbox", "center", "grid_cell"}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    return simulate_dataset(out, SimConfig(n_tiles=48, tile_size=128, seed=0), progress=False)


def _flat_layout(cls: str, n=256, res=10.0):
    lc = np.full((n, n), LANDCOVER_INDEX[cls], np.uint8)
    return Layout(lc, np.zeros_like(lc), np.zeros((n, n), np.float32), np.zeros((n, n), np.float32), res, "rural")


@pytest.mark.parametrize("looks", [1.0, 4.4])
def test_speckle_fits_gamma(looks):
    # a homogeneous bright area through the full renderer: intensity / mean ~ Gamma(L, 1/L)
    images = render(_flat_layout("forest"), np.zeros((256, 256), np.float32), PLATFORMS["sentinel1"], looks, 35.0,
                    np.random.default_rng(0))
    x = db_to_linear(images["VV"]).ravel()[::7]  # thin out to keep the KS test meaningful
    x = x / x.mean()
    assert stats.kstest(x, stats.gamma(looks, scale=1 / looks).cdf).pvalue > 0.01
    assert abs(x.mean() / x.var() - looks) / looks < 0.05  # mean/var (mean 1) = L, i.e. var within 5% of 1/L
    s = speckle((200_000,), looks, np.random.default_rng(1))
    assert abs(s.var() - 1 / looks) / (1 / looks) < 0.05


def test_water_darker_than_urban_and_forest_and_cross_below_co(sim):
    import rasterio

    by_class = {c: {"co": [], "cross": []} for c in ("water", "urban", "forest")}
    for tif in sorted((sim.parent / "tiles").glob("*.tif")):
        with rasterio.open(tif) as s, rasterio.open(sim.parent / "labels" / f"{tif.stem}_landcover.tif") as m:
            img, lc = s.read(), m.read(1)
        for c in by_class:
            by_class[c]["co"].append(img[0][lc == LANDCOVER_INDEX[c]])
            if len(img) > 1:
                by_class[c]["cross"].append(img[1][lc == LANDCOVER_INDEX[c]])
    med = {c: {k: float(np.median(np.concatenate(v))) for k, v in d.items()} for c, d in by_class.items()}
    print("median sigma0 dB by class:", med)
    assert med["water"]["co"] <= med["urban"]["co"] - 10
    assert med["water"]["co"] <= med["forest"]["co"] - 10
    for c in med:
        assert med[c]["cross"] < med[c]["co"]


@pytest.mark.parametrize("kind", list(AIRCRAFT_TYPES))
def test_aircraft_length_in_pixels(kind):
    length, span = AIRCRAFT_TYPES[kind]
    res = PLATFORMS["xband"].resolutions_m[0]
    for heading in (0.0, 90.0, 37.0):
        t = Target("aircraft", kind, length, span, heading, 64.0, 64.0)
        win, mask, _ = shape_mask(t, res, (128, 128))
        ys, xs = np.nonzero(mask)
        h = np.radians(heading)
        along = (xs + win[1].start + 0.5 - 64.0) * np.sin(h) - (ys + win[0].start + 0.5 - 64.0) * np.cos(h)
        measured = (along.max() - along.min()) + 1  # pixel extent along the fuselage
        assert abs(measured - length / res) / (length / res) < 0.10
        across = (xs + win[1].start + 0.5 - 64.0) * np.cos(h) + (ys + win[0].start + 0.5 - 64.0) * np.sin(h)
        assert abs(across.max() - across.min() + 1 - span / res) / (span / res) < 0.10


def test_point_target_has_sinc_sidelobes():
    p = _Placer(_flat_layout("airport", 128, 1.0), 128)
    assert p.try_add(Target("vehicle", "vehicle", 4.5, 1.8, 0.0, 64.0, 64.0), (LANDCOVER_INDEX["airport"],))
    img = render(p.layout, p.points, PLATFORMS["xband"], 1.0, 35.0, np.random.default_rng(0))["HH"]
    row = img[64, 64:80]
    assert row[0] > -5 and row[5] > -30  # bright target and sidelobes well above the clutter (~-20 dB)
    assert img[20, 20] < row[5]


def test_facts_follow_contract(sim):
    import geopandas as gpd

    index = gpd.read_parquet(sim)
    assert len(index) == 48 and index.crs.to_epsg() == 4326
    n_targets = 0
    for row in index.itertuples():
        facts = json.loads((sim.parent / row.facts_path).read_text())
        assert set(facts) == FACT_KEYS
        assert set(facts["landcover_fractions"]) == set(LANDCOVER_CLASSES)
        assert abs(sum(facts["landcover_fractions"].values()) - 1) < 1e-3
        assert set(facts["regional_landform"]) == set(GRID_CELLS) and set(facts["counts"]) == set(TARGET_CLASSES)
        assert facts["main_landform"] == max(facts["landcover_fractions"], key=facts["landcover_fractions"].get)
        assert row.crs.startswith("EPSG:326") or row.crs.startswith("EPSG:327")
        assert row.geometry.contains(row.geometry.centroid) and row.city == facts["city"]
        for t in facts["targets"]:
            assert set(t) == TARGET_KEYS
            x0, y0, x1, y1 = t["bbox"]
            assert 0 <= x0 < x1 <= facts["width"] and 0 <= y0 < y1 <= facts["height"]
        assert sum(facts["counts"].values()) == len(facts["targets"])
        n_targets += len(facts["targets"])
    assert n_targets > 0
    # geographic splits: a city (hence a scene) never sits on two sides, and all three splits are used
    assert index.groupby("city")["split"].nunique().max() == 1
    assert index.groupby("scene_id")["city"].nunique().max() == 1
    assert set(index["split"]) == {"train", "val", "test"}


def test_deterministic_for_a_seed(tmp_path):
    import rasterio

    cfg = SimConfig(n_tiles=4, tile_size=64, seed=3, platforms=("gf3",), cities=("Shanghai", "Paris", "Cairo"))
    a, b = simulate_dataset(tmp_path / "a", cfg, progress=False), simulate_dataset(tmp_path / "b", cfg, progress=False)
    for tif in (a.parent / "tiles").glob("*.tif"):
        with rasterio.open(tif) as x, rasterio.open(b.parent / "tiles" / tif.name) as y:
            assert np.array_equal(x.read(), y.read(), equal_nan=True)
            assert x.tags()["PLATFORM"] == "gf3" and x.descriptions == ("HH", "HV")


def test_gazetteer_and_conversions():
    assert len(CITIES) >= 30 and get_city("rotterdam").port
    with pytest.raises(ValueError, match="unknown city"):
        get_city("Atlantis")
    db = np.array([-20.0, 0.0, 3.0], np.float32)
    assert np.allclose(linear_to_db(db_to_linear(db)), db, atol=1e-4)
    assert np.allclose(amplitude_to_db(db_to_amplitude(db)), db, atol=1e-4)


def test_layout_has_water_kinds_for_a_port():
    lay = make_layout(get_city("Rotterdam"), "port", "plain", (256, 256), 10.0, np.random.default_rng(0))
    kinds = set(np.unique(lay.water_kind)) - {0}
    assert 2 in kinds and 4 in kinds  # coast and port basin
    assert (lay.landcover == LANDCOVER_INDEX["port"]).any()


def test_eval_tiles_lie_in_test_cities_and_leave_the_corpus_unchanged(tmp_path):
    from klip_lib.data.gazetteer import split_of_cities
    from klip_lib.data.simulate import plan_scenes

    base = SimConfig(n_tiles=16, tile_size=32, seed=5)
    more = SimConfig(n_tiles=16, tile_size=32, seed=5, eval_tiles=10)
    corpus, plans = plan_scenes(base), plan_scenes(more)
    assert [repr(p) for p in plans[:len(corpus)]] == [repr(p) for p in corpus]  # the corpus does not move
    extra = plans[len(corpus):]
    held_out = {c for c, s in split_of_cities([c.name for c in CITIES]).items() if s == "test"}
    assert len(extra) == 3 and {p.split for p in extra} == {"test"} and {p.city.name for p in extra} <= held_out
    import pyarrow.parquet as pq

    rows = pq.read_table(simulate_dataset(tmp_path, more, progress=False)).to_pylist()
    assert len(rows) == 26 and sum(r["split"] == "test" for r in rows) >= 10
    assert len({r["tile_id"] for r in rows}) == 26 and len({r["scene_id"] for r in rows}) == len(plans)
    with pytest.raises(ValueError, match="eval_tiles=4 needs test cities"):
        plan_scenes(SimConfig(n_tiles=4, eval_tiles=4, cities=("Shanghai", "Paris")))
