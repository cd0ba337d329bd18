"""Map layer builders (klip_lib.maps) and the explorer widget: features, bounds, overlay CRS, chips, HTML export."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from klip_lib import maps


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """A small simulated dataset: (index path, index GeoDataFrame)."""
    from klip_lib.data import SimConfig, read_index, simulate_dataset

    index_path = simulate_dataset(tmp_path_factory.mktemp("sim"), SimConfig(n_tiles=8, tile_size=64, seed=3), progress=False)
    return index_path, read_index(index_path)


@pytest.fixture(scope="module")
def with_chip(tmp_path_factory):
    """An imported folder of one georeferenced GeoTIFF (UTM 33N) and one PNG chip without georeference."""
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    from klip_lib.data import import_folder, read_index

    root = tmp_path_factory.mktemp("chips")
    src = root / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    with rasterio.open(src / "scene.tif", "w", driver="GTiff", width=32, height=32, count=2, dtype="float32",
                       crs="EPSG:32633", transform=from_origin(500000, 4600000, 10, 10)) as dst:
        dst.write(rng.uniform(-25, 0, (2, 32, 32)).astype(np.float32))
    Image.fromarray(rng.integers(1, 255, (40, 40), dtype=np.uint8)).save(src / "chip.png")
    index_path, _ = import_folder(src, root / "out")
    return index_path, read_index(index_path)


def _png(url: str):
    from PIL import Image

    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_footprints_one_feature_per_tile_coloured_by_column(sim):
    _, index = sim
    fp = maps.footprints(index, by="platform")
    feats = fp.geojson["features"]
    assert len(feats) == len(index) == 8 and fp.not_on_map == []
    assert [f["id"] for f in feats] == list(index["tile_id"])
    for f, platform in zip(feats, index["platform"]):
        assert f["properties"]["style"]["color"] == fp.colors[platform]
        assert f["properties"]["style"]["className"] == maps.FOOTPRINT_CLASS
        assert set(maps.POPUP_FIELDS) <= set(f["properties"])
    by_split = maps.footprints(index, by="split")
    assert set(by_split.colors) == set(index["split"])
    json.dumps(fp.geojson, allow_nan=False)  # valid GeoJSON for the browser: no NaN anywhere
    with pytest.raises(KeyError, match="no such column"):
        maps.footprints(index, by="colour")


def test_footprint_bounds_cover_every_tile(sim):
    _, index = sim
    (s, w), (n, e) = maps.footprints(index).bounds
    x0, y0, x1, y1 = index.total_bounds
    assert (w, s, e, n) == pytest.approx((x0, y0, x1, y1))


def test_popup_previews_the_first_caption(sim, tmp_path):
    from klip_lib.data import load_captions

    _, index = sim
    tid = index["tile_id"].iloc[1]
    path = tmp_path / "captions.jsonl"
    rows = [{"tile_id": tid, "text": "A long caption. " * 20, "status": "ok"},
            {"tile_id": tid, "text": "second", "status": "ok"}, {"tile_id": tid, "text": "bad", "status": "failed"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    props = {f["id"]: f["properties"] for f in maps.footprints(index, captions=load_captions(path)).geojson["features"]}
    assert props[tid]["caption"] == ("A long caption. " * 20)[: maps.CAPTION_PREVIEW] + "..."
    assert props[index["tile_id"].iloc[0]]["caption"] == "none"
    assert "A long caption." in maps.popup_html(props[tid]) and "<th" in maps.popup_html(props[tid])


def test_tile_overlay_in_true_place_and_in_epsg4326(sim):
    index_path, index = sim
    row = index.iloc[0]
    sar, landcover = maps.tile_overlays(index_path, row)
    assert sar.crs == landcover.crs == "EPSG:4326"
    assert sar.source_crs == row.crs and row.crs.startswith("EPSG:326")  # UTM north
    (s, w), (n, e) = sar.bounds
    x0, y0, x1, y1 = row.geometry.bounds
    deg_per_px = (x1 - x0) / row.width
    half = deg_per_px / 2  # the footprint joins 4 corners; the warp follows the curved UTM edges
    assert s <= y0 + half and n >= y1 - half and w <= x0 + half and e >= x1 - half  # covers the footprint
    assert (w, s, e, n) == pytest.approx((x0, y0, x1, y1), abs=2 * deg_per_px)  # and hardly more
    assert landcover.bounds == sar.bounds
    img = _png(sar.url)
    assert img.mode == "RGBA" and img.size[::-1] == sar.shape
    alpha = np.asarray(img)[..., 3]
    assert 0.9 < (alpha == 255).mean() <= 1.0  # the tile is opaque, only the warped corners are transparent


def test_overlay_is_capped_at_max_px(sim):
    index_path, index = sim
    ov = maps.tile_overlays(index_path, index.iloc[0], max_px=32)[0]
    assert max(ov.shape) <= 32 and max(_png(ov.url).size) <= 32


def test_targets_layer_one_outline_per_target(sim):
    from klip_lib.data import load_facts

    index_path, index = sim
    found = 0
    for _, row in index.iterrows():
        facts = load_facts(index_path, row.facts_path)
        gj = maps.targets_geojson(index_path, row, facts)
        feats = gj["features"]
        assert len(feats) <= len(facts["targets"])
        assert all(f["properties"]["style"]["className"] == maps.TARGET_CLASS for f in feats)
        x0, y0, x1, y1 = row.geometry.bounds
        for f in feats:
            lon, lat = np.array(f["geometry"]["coordinates"][0]).mean(axis=0) if f["geometry"]["type"] == "Polygon" \
                else np.array(f["geometry"]["coordinates"][0][0]).mean(axis=0)
            assert x0 - 1e-3 <= lon <= x1 + 1e-3 and y0 - 1e-3 <= lat <= y1 + 1e-3
        found += len(feats)
    assert found > 0, "no targets drawn in 8 simulated tiles"


def test_chips_are_listed_not_on_the_map(with_chip):
    index_path, index = with_chip
    fp = maps.footprints(index)
    assert len(index) == 2 and len(fp.geojson["features"]) == 1
    assert len(fp.not_on_map) == 1 and fp.not_on_map[0].startswith("chip_chip:") and "georeference" in fp.not_on_map[0]
    chip = index[index["source"] == "chip"].iloc[0]
    assert maps.tile_overlays(index_path, chip) == []
    scene = index[index["source"] == "geotiff"].iloc[0]
    (s, w), (n, e) = maps.tile_overlays(index_path, scene)[0].bounds
    assert 14.9 < w < e < 15.1 and 41.5 < s < n < 41.6  # UTM 33N easting 500 km = 15 deg E, northing 4600 km


def test_view_zooms_to_a_tile_and_out_to_the_world():
    center, zoom = maps.view(((41.0, 2.0), (41.01, 2.01)))
    assert center == pytest.approx((41.005, 2.005)) and 15 <= zoom <= 17
    assert maps.view(((-40.0, -100.0), (50.0, 120.0)))[1] <= 2


def test_explorer_filters_picks_and_exports(with_chip, sim, tmp_path):
    from klip_lib.map_explorer import MapExplorer

    index_path, index = with_chip
    ex = MapExplorer(index_path)
    assert "not on the map" in ex.not_on_map.value and "chip_chip" in ex.not_on_map.value
    ex.picker.value = "chip_chip"
    assert "chip_chip" in ex.title.value and "not on the map" in ex.title.value and ex.overlays == []
    assert bytes(ex.sar_image.value).startswith(b"\x89PNG")
    ex.picker.value = "geotiff_scene"
    assert len(ex.overlays) == 1 and "geotiff_scene" in ex.title.value

    sim_path, sim_index = sim
    ex = MapExplorer(sim_path, tile=sim_index["tile_id"].iloc[2])
    assert ex.picker.value == sim_index["tile_id"].iloc[2] and len(ex.overlays) == 2
    first_url = ex.overlays[0].url
    ex.picker.value = sim_index["tile_id"].iloc[3]
    assert ex.overlays[0].url != first_url and sim_index["tile_id"].iloc[3] in ex.title.value
    from ipyleaflet import Popup

    feature = ex.footprint_layer.data["features"][0]
    for _ in range(2):  # a second click replaces the first popup
        ex.footprint_layer._handle_mouse_events(None, {"event": "click", "feature": feature, "coordinates": [0, 0]}, None)
    popups = [layer for layer in ex.map.layers if isinstance(layer, Popup)]
    assert len(popups) == 1 and feature["properties"]["city"] in popups[0].child.value
    layers_before = len(ex.map.layers) - 1
    ex.picker.value = sim_index["tile_id"].iloc[4]
    assert len(ex.map.layers) == layers_before  # the previous tile's layers are replaced, not stacked
    split = sim_index["split"].iloc[0]
    ex.filters["split"].value = split
    assert len(ex.footprint_layer.data["features"]) == (sim_index["split"] == split).sum()
    assert {t for _, t in ex.picker.options} == set(sim_index.loc[sim_index["split"] == split, "tile_id"])
    html = ex.export_html(tmp_path / "map.html").read_text()
    # SAR and land cover embedded (Leaflet's own control images, inlined into its CSS, are url(data:...))
    assert html.count("data:image/png;base64,") - html.count("url(data:image/png;base64,") == 2
    assert html.count(maps.FOOTPRINT_CLASS) >= 1 and "leaflet" in html


@pytest.mark.real_data
@pytest.mark.parametrize("name, lon, lat", [
    ("sen1floods11", (-9.5, 3.5), (36.0, 43.8)),  # mainland Spain
    ("sen12ms_s1", (-78.0, -72.0), (38.0, 42.0)),  # UTM zone 18N (78-72 W) on the US east coast
])
def test_real_sentinel1_samples_land_where_they_belong(real_data_dir, tmp_path, name, lon, lat):
    from klip_lib.data import import_folder, read_index

    index_path, _ = import_folder(real_data_dir / name, tmp_path / name)
    index = read_index(index_path)
    overlays = [ov for _, row in index.iterrows() for ov in maps.tile_overlays(index_path, row)]
    assert len(overlays) == 1 and overlays[0].crs == "EPSG:4326"
    (s, w), (n, e) = overlays[0].bounds
    assert lon[0] < w < e < lon[1] and lat[0] < s < n < lat[1], f"{name} overlay at lon {w}..{e}, lat {s}..{n}"
    assert overlays[0].source_crs == ("EPSG:4326" if name == "sen1floods11" else "EPSG:32618")
