"""GeoTIFF import (bad inputs, real Sentinel-1 chips), index, torch datasets and shards, CLI, light import."""

import json
import subprocess
import sys

import numpy as np
import pytest

from klip_lib.paths import real_data


def _geotiff(path, data, crs="EPSG:32633", descriptions=("VV", "VH")):
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype.name, crs=crs, transform=from_origin(500000, 4600000, 10, 10)) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions[: data.shape[0]], start=1):
            dst.set_band_description(i, d)
    return path


def test_importer_skips_bad_inputs_and_indexes_the_rest(tmp_path):
    from klip_lib.data import import_folder, read_index

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    good = _geotiff(src / "good.tif", rng.uniform(-25, 0, (2, 32, 32)).astype(np.float32))
    _geotiff(src / "linear.tif", rng.uniform(0.001, 0.5, (1, 32, 32)).astype(np.float32))
    (src / "truncated.tif").write_bytes(good.read_bytes()[:3000])
    (src / "corrupt.tif").write_bytes(b"II*\x00" + bytes(rng.integers(0, 255, 500, dtype=np.uint8)))
    (src / "empty.tif").write_bytes(b"")
    _geotiff(src / "nocrs.tif", rng.uniform(-25, 0, (2, 16, 16)).astype(np.float32), crs=None)
    _geotiff(src / "allnan.tif", np.full((2, 16, 16), np.nan, np.float32))
    _geotiff(src / "threeband.tif", rng.uniform(-25, 0, (3, 16, 16)).astype(np.float32))
    (src / "notes.txt").write_text("not a raster")
    index, report = import_folder(src, tmp_path / "out")
    reasons = dict(report.skipped)
    assert sorted(report.imported) == ["geotiff_good", "geotiff_linear"]
    expect = {"truncated.tif": "truncated", "corrupt.tif": "not a readable raster", "empty.tif": "0 bytes",
              "nocrs.tif": "no CRS", "allnan.tif": "NaN", "threeband.tif": "wrong band count", "notes.txt": "not a readable raster"}
    for name, words in expect.items():
        assert words in reasons[str(src / name)], (name, reasons[str(src / name)])
    table = read_index(index)
    assert list(table["tile_id"]) == ["geotiff_good", "geotiff_linear"]
    assert table.set_index("tile_id").loc["geotiff_linear", "note"].startswith("linear power converted to dB")
    assert len((tmp_path / "out" / "import_report.txt").read_text().splitlines()) == len(expect) + 1


def test_failed_import_leaves_old_index_intact(tmp_path, monkeypatch):
    from klip_lib.data import import_folder, importer

    src = tmp_path / "in"
    src.mkdir()
    _geotiff(src / "a.tif", np.full((2, 8, 8), -10.0, np.float32))
    index, _ = import_folder(src, tmp_path / "out")
    before = index.read_bytes()
    _geotiff(src / "b.tif", np.full((2, 8, 8), -12.0, np.float32))
    monkeypatch.setattr(importer, "_row", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk gone")))
    with pytest.raises(RuntimeError):
        import_folder(src, tmp_path / "out")
    assert index.read_bytes() == before and not list(index.parent.glob(".index.parquet.*"))


def test_chip_and_large_raster_windows(tmp_path):
    from PIL import Image

    from klip_lib.data import import_folder, read_index

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(1, 255, (40, 50), dtype=np.uint8)).save(src / "chip.png")
    _geotiff(src / "big.tif", np.full((1, 300, 200), -9.0, np.float32))
    index, report = import_folder(src, tmp_path / "out", tile_size=128, max_size=256)
    table = read_index(index).set_index("tile_id")
    assert table.loc["chip_chip", "geometry"] is None and "no footprint" in table.loc["chip_chip", "note"]
    assert len([t for t in table.index if t.startswith("geotiff_big_")]) == 6  # 3 rows x 2 columns of windows


@pytest.mark.real_data
@pytest.mark.parametrize("folder,epsg,lon,lat", [("sen1floods11", 4326, (-0.8, -0.7), (38.0, 38.2)),
                                                  ("sen12ms_s1", 32618, (-75.0, -72.0), (40.0, 41.5))])
def test_real_sentinel1_import(tmp_path, folder, epsg, lon, lat):
    from klip_lib.data import import_folder, read_index, read_tile

    root = real_data()
    if root is None:
        pytest.skip("real samples absent: ../shared/data/real not found")
    index, report = import_folder(root / folder, tmp_path / folder)
    table = read_index(index)
    tile = table[table["tile_id"].str.contains("S1Hand|winter")].iloc[0]
    assert tile["crs"] == f"EPSG:{epsg}" and tile["polarizations"] == "VV,VH"
    c = tile["geometry"].centroid
    assert lon[0] < c.x < lon[1] and lat[0] < c.y < lat[1]
    bands, _ = read_tile(index.parent / tile["path"])
    vv = bands[0]
    if folder == "sen1floods11":
        label, _ = read_tile(root / folder / "Spain_7370579_LabelHand.tif")
        water, land = np.nanmedian(vv[label[0] == 1]), np.nanmedian(vv[label[0] == 0])
    else:  # no labels: the common Sentinel-1 open-water threshold, VV below -18 dB
        water = np.nanmedian(vv[vv < -18]) if (vv < -18).any() else float("nan")
        land = np.nanmedian(vv[vv >= -18])
    print(f"{folder}: VV median water {water:.1f} dB, land {land:.1f} dB")
    assert -35 < land < 0 and not water >= land - 5


def test_datasets_and_shards_follow_contract(tmp_path):
    from klip_lib.artifacts import ensure_dataset
    from klip_lib.data import DB_MEAN, SarTileDataset, ShardDataset, build_shards

    index = ensure_dataset(tmp_path, "smoke", seed=1)
    ds = SarTileDataset(index, image_size=32, channels=2, split="train")
    s = ds[0]
    assert s["image"].shape == (2, 32, 32) and str(s["image"].dtype) == "torch.float32"
    assert isinstance(s["text"], str) and s["text"] and s["facts"]["tile_id"] == s["tile_id"]
    assert s["scene_id"].startswith("sim_scene_")
    manifest = build_shards(index, tmp_path / "shards", image_size=32)
    sd = ShardDataset(manifest.parent, split="train")
    assert len(sd) == len(ds)
    t = sd[0]
    assert t["tile_id"] == s["tile_id"] and t["image"].shape == (2, 32, 32)
    assert float((t["image"] - s["image"]).abs().max()) < 0.01  # float16 storage
    assert DB_MEAN < 0


def test_import_is_light():
    code = "import sys, klip_lib.data, klip_lib.data.dataset; bad = [m for m in ('rasterio', 'geopandas') if m in sys.modules]; print(bad)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_simulate_command(tmp_path):
    from klip_lib.cli import main
    from klip_lib.data import read_index

    assert main(["simulate", "--tiles", "5", "--out", str(tmp_path / "d"), "--platforms", "xband", "--size", "64"]) == 0
    table = read_index(tmp_path / "d" / "index.parquet")
    assert len(table) == 5 and set(table["platform"]) == {"xband"} and set(table["resolution_m"]) == {1.0}


def test_units_are_decided_per_file_not_per_window(tmp_path):
    """A dB raster whose windows happen to be all positive (bright urban) stays in dB in every window."""
    from klip_lib.data import import_folder, read_index, read_tile

    src = tmp_path / "in"
    src.mkdir()
    db = np.full((1, 256, 128), -15.0, np.float32)
    db[:, 128:, :] = 3.0  # the lower window is all positive dB values
    _geotiff(src / "scene.tif", db, descriptions=("VV",))
    index, _ = import_folder(src, tmp_path / "out", tile_size=128, max_size=128)
    table = read_index(index).sort_values("tile_id")
    assert list(table["note"].str.split(";").str[0]) == ["sigma0 dB as stored"] * 2
    lower = read_tile(index.parent / table["path"].iloc[1])[0]
    assert np.allclose(lower, 3.0)


def test_uint8_class_mask_is_recognised(tmp_path):
    from klip_lib.data import import_folder

    src = tmp_path / "in"
    src.mkdir()
    mask = np.zeros((1, 32, 32), np.uint8)
    mask[:, :16] = 1
    _geotiff(src / "labels.tif", mask, descriptions=("",))
    _geotiff(src / "good.tif", np.full((2, 8, 8), -10.0, np.float32))
    _, report = import_folder(src, tmp_path / "out")
    assert "class mask" in dict(report.skipped)[str(src / "labels.tif")]


def test_geographic_crs_other_than_4326_gives_metres(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    from klip_lib.data import import_folder, read_index

    src = tmp_path / "in"
    src.mkdir()
    with rasterio.open(src / "nad83.tif", "w", driver="GTiff", width=16, height=16, count=1, dtype="float32",
                       crs="EPSG:4269", transform=from_origin(-75.0, 40.0, 0.0001, 0.0001)) as dst:
        dst.write(np.full((1, 16, 16), -12.0, np.float32))
    index, _ = import_folder(src, tmp_path / "out")
    res = read_index(index)["resolution_m"].iloc[0]
    assert 8 < res < 9  # 0.0001 degree of longitude at 40 N is about 8.5 m


def test_a_footprint_error_skips_only_that_file(tmp_path, monkeypatch):
    from klip_lib.data import import_folder, importer

    src = tmp_path / "in"
    src.mkdir()
    _geotiff(src / "a.tif", np.full((2, 8, 8), -10.0, np.float32))
    _geotiff(src / "b.tif", np.full((2, 8, 8), -11.0, np.float32), crs="EPSG:32632")
    real = importer._footprint

    def broken(crs, *args):
        if crs == "EPSG:32632":
            raise ValueError("projection failed")
        return real(crs, *args)

    monkeypatch.setattr(importer, "_footprint", broken)
    _, report = import_folder(src, tmp_path / "out")
    assert report.imported == ["geotiff_a"]
    assert "footprint not computable" in dict(report.skipped)[str(src / "b.tif")]


@pytest.mark.parametrize("content, words", [("{not json", "not a JSON file"),
                                            ('[{"Terrain": "flat"}]', "caption object 0 has no image_id")])
def test_bad_caption_files_name_the_file(tmp_path, content, words):
    from klip_lib.hcot.real_captions import load_real_captions

    path = tmp_path / "captions.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=words) as err:
        load_real_captions(path)
    assert str(path) in str(err.value) and len(str(err.value).splitlines()) == 1


def test_single_polarization_files_of_a_scene_become_one_tile(tmp_path):
    """Gaofen-3 style 1_HH.tiff .. 1_VV.tiff -> one 4-band tile per scene; a group that does not stack is
    reported by name and its files imported one by one."""
    from klip_lib.data import import_folder, read_index, read_tile

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(3)
    levels = {"HH": 100, "HV": 20, "VH": 21, "VV": 90}
    for scene in ("1", "2"):
        for pol, level in levels.items():
            _geotiff(src / f"{scene}_{pol}.tiff", rng.integers(level, level + 5, (1, 16, 16)).astype(np.uint16),
                     descriptions=("",))
    _geotiff(src / "3_HH.tif", rng.integers(50, 60, (1, 16, 16)).astype(np.uint16), descriptions=("",))
    _geotiff(src / "3_HV.tif", rng.integers(50, 60, (1, 8, 8)).astype(np.uint16), descriptions=("",))
    index, report = import_folder(src, tmp_path / "out")
    table = read_index(index).set_index("tile_id")
    assert sorted(table.index) == ["geotiff_1", "geotiff_2", "geotiff_3_HH", "geotiff_3_HV"]
    assert table.loc["geotiff_1", "polarizations"] == "HH,HV,VH,VV"
    assert "one tile from 1_HH.tiff, 1_HV.tiff, 1_VH.tiff, 1_VV.tiff" in table.loc["geotiff_1", "note"]
    data, meta = read_tile(tmp_path / "out" / table.loc["geotiff_2", "path"])
    assert data.shape == (4, 16, 16) and meta.polarizations == ["HH", "HV", "VH", "VV"]
    means = dict(zip(meta.polarizations, data.reshape(4, -1).mean(1)))  # each band from its own file
    assert means["HH"] > means["VV"] > means["VH"] > means["HV"]
    (reason,) = [why for f, why in report.skipped if f.endswith("3")]
    assert "3_HV.tif differs in size" in reason and "imported one by one" in reason


def test_opensarship_zip_archives(tmp_path):
    """An OpenSARShip-style zip: calibrated patches imported (the uncalibrated twins left), the ship class of the
    file name kept as the label; a broken zip is one line naming it."""
    import zipfile

    from klip_lib.data import import_folder, read_index
    from klip_lib.knowledge.annotate import add_facts

    rng = np.random.default_rng(4)
    parts = tmp_path / "parts"
    parts.mkdir()
    _geotiff(parts / "dn.tif", rng.integers(10, 200, (1, 24, 24)).astype(np.uint16), descriptions=("VV",))
    _geotiff(parts / "cal.tif", rng.uniform(0.001, 0.3, (1, 24, 24)).astype(np.float32), descriptions=("VV",))
    src = tmp_path / "in"
    src.mkdir()
    with zipfile.ZipFile(src / "S1A_IW_GRDH_1SDV_20170101_54D0.zip", "w") as zf:
        zf.write(parts / "dn.tif", "Patch/VV_Cargo_x100_y200.tif")
        zf.write(parts / "cal.tif", "Patch_Cal/VV_Cargo_x100_y200.tif")
        zf.write(parts / "cal.tif", "Patch_Cal/VV_Tanker_x300_y50.tif")
        zf.writestr("Metedata.xml", "<metadata/>")
    (src / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    index, report = import_folder(src, tmp_path / "out")
    table = read_index(index).set_index("tile_id")
    assert len(table) == 2 and all("Patch_Cal" in t for t in table.index)
    notes = " | ".join(table["note"])
    assert "label: Cargo" in notes and "label: Tanker" in notes and "linear power converted to dB" in notes
    assert dict(report.skipped)[str(src / "broken.zip")].startswith("not a readable zip archive")
    add_facts(index)
    labels = sorted(json.loads((index.parent / p).read_text())["label"] for p in read_index(index)["facts_path"])
    assert labels == ["Cargo", "Tanker"]


def _safe(root, name, dn_level=400, calibration=True, gcps=True):
    """A small Sentinel-1 GRD SAFE-like product: manifest, VV and VH measurements with GCPs, calibration LUTs."""
    import rasterio
    from rasterio.control import GroundControlPoint

    safe = root / f"{name}.SAFE"
    (safe / "measurement").mkdir(parents=True)
    (safe / "annotation" / "calibration").mkdir(parents=True)
    (safe / "manifest.safe").write_text("<xfdu:XFDU/>")
    (safe / "annotation" / "s1a-iw-grd-vv-20200101t000000-001.xml").write_text(
        "<product><adsHeader><polarisation>VV</polarisation></adsHeader><generalAnnotation><productInformation>"
        "<pass>Ascending</pass><rangePixelSpacing>1.0e+01</rangePixelSpacing></productInformation>"
        "</generalAnnotation><imageAnnotation><imageInformation><incidenceAngleMidSwath>3.9e+01"
        "</incidenceAngleMidSwath></imageInformation></imageAnnotation></product>")
    h, w = 40, 60
    points = [GroundControlPoint(r, c, 4.0 + 0.2 * c / w, 52.1 - 0.1 * r / h) for r in (0, h) for c in (0, w)]
    for pol in ("vv", "vh"):
        stem = f"s1a-iw-grd-{pol}-20200101t000000-001"
        dn = np.full((h, w), dn_level if pol == "vv" else dn_level // 4, np.uint16)
        with rasterio.open(safe / "measurement" / f"{stem}.tiff", "w", driver="GTiff", width=w, height=h, count=1,
                           dtype="uint16") as dst:
            dst.write(dn, 1)
            if gcps:
                dst.gcps = (points, "EPSG:4326")
        if calibration:
            vectors = "".join(f"<calibrationVector><line>{line}</line><pixel count='2'>0 {w}</pixel>"
                              f"<sigmaNought count='2'>500 500</sigmaNought></calibrationVector>" for line in (0, h))
            (safe / "annotation" / "calibration" / f"calibration-{stem}.xml").write_text(
                f"<calibration><calibrationVectorList>{vectors}</calibrationVectorList></calibration>")
    return safe


def test_sentinel1_safe_products(tmp_path):
    """A SAFE folder is calibrated to sigma0 and warped through its GCPs; a zipped SAFE without calibration
    annotation is marked uncalibrated; a product without GCPs is one line naming it."""
    import shutil

    from klip_lib.data import import_folder, read_index, read_tile

    src = tmp_path / "in"
    _safe(src, "S1A_IW_GRDH_1SDV_CAL")
    nocal = _safe(tmp_path / "z", "S1A_IW_GRDH_1SDV_NOCAL", calibration=False)
    shutil.make_archive(str(src / "S1A_IW_GRDH_1SDV_NOCAL"), "zip", nocal.parent, nocal.name)
    _safe(src / "bad", "S1A_IW_GRDH_1SDV_NOGCP", gcps=False)
    index, report = import_folder(src, tmp_path / "out")
    table = read_index(index).set_index("tile_id")
    assert sorted(table.index) == ["geotiff_S1A_IW_GRDH_1SDV_CAL", "geotiff_S1A_IW_GRDH_1SDV_NOCAL"], report.lines()
    cal = table.loc["geotiff_S1A_IW_GRDH_1SDV_CAL"]
    assert "sigma0 from the calibration LUT" in cal["note"] and "GCPs" in cal["note"]
    assert cal["polarizations"] == "VH,VV" and cal["platform"] == "sentinel1" and "orbit ascending" in cal["note"]
    assert cal["incidence_deg"] == 39.0 and cal["resolution_m"] == 10.0
    centre = cal["geometry"].centroid
    assert abs(centre.x - 4.1) < 0.02 and abs(centre.y - 52.05) < 0.02
    data, meta = read_tile(tmp_path / "out" / cal["path"])
    vv = data[meta.polarizations.index("VV")]
    assert abs(np.nanmedian(vv) - 20 * np.log10(400 / 500)) < 0.1  # sigma0 = DN^2 / A^2
    assert "uncalibrated" in table.loc["geotiff_S1A_IW_GRDH_1SDV_NOCAL", "note"]
    from klip_lib.knowledge.annotate import add_facts

    add_facts(index)
    facts = json.loads((index.parent / read_index(index).set_index("tile_id").loc[cal.name, "facts_path"]).read_text())
    assert facts["orbit_direction"] == "ascending" and facts["incidence_deg"] == 39.0  # L3 from the annotation
    assert facts["country"] == "Netherlands" and facts["provenance"]["orbit_direction"]["confidence"] == 1.0
    (reason,) = [why for f, why in report.skipped if "NOGCP" in f]
    assert reason.startswith("Sentinel-1 SAFE product not readable") and "no GCPs" in reason
