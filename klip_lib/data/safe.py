"""Sentinel-1 GRD SAFE products (a `.SAFE` folder, or a zip holding one) as one GeoTIFF the importer reads.

Each `measurement/*.tiff` is a polarization (named in the file, `s1a-iw-grd-vv-...`); its digital numbers are
calibrated to sigma0 = DN^2 / A^2 with the sigmaNought LUT of `annotation/calibration/calibration-<same>.xml`
where that file is there (else the product is marked uncalibrated and its DN kept as amplitude), and the image is
warped to lon/lat through the GCPs the measurement files carry (GDAL's GCP transformer). Large products are
multilooked first (block average of amplitude) to at most `max_px` on a side.
"""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

POL_IN_NAME = re.compile(r"-(hh|hv|vh|vv)-", re.IGNORECASE)


def find_safe(folder: Path) -> Path | None:
    """The .SAFE folder at or under `folder` (the one holding manifest.safe), or None."""
    hits = sorted(folder.rglob("manifest.safe"))
    return hits[0].parent if hits else None


def sigma0_lut(calibration_xml: Path, shape: tuple[int, int]) -> np.ndarray:
    """The sigmaNought calibration LUT interpolated over the image grid (bilinear between the vectors)."""
    from scipy.interpolate import RegularGridInterpolator

    root = ET.parse(calibration_xml).getroot()
    vectors = root.findall(".//calibrationVector")
    if not vectors:
        raise ValueError(f"{calibration_xml.name}: no calibrationVector")
    lines = np.array([float(v.findtext("line")) for v in vectors])
    pixels = np.array(vectors[0].findtext("pixel").split(), float)
    values = np.array([np.array(v.findtext("sigmaNought").split(), float) for v in vectors])
    interp = RegularGridInterpolator((lines, pixels), values, bounds_error=False, fill_value=None)
    rows = np.arange(shape[0], dtype=float)
    cols = np.arange(shape[1], dtype=float)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return interp(np.stack([rr.ravel(), cc.ravel()], axis=1)).reshape(shape)


def annotation_facts(safe: Path) -> dict[str, str]:
    """Orbit direction, mid-swath incidence and range pixel spacing from the product annotation, where present."""
    out = {}
    for xml in sorted((safe / "annotation").glob("*.xml")):
        root = ET.parse(xml).getroot()
        for tag, key in (("pass", "ORBIT_DIRECTION"), ("incidenceAngleMidSwath", "INCIDENCE_DEG"),
                         ("rangePixelSpacing", "PIXEL_SPACING_M")):
            value = root.findtext(f".//{tag}")
            if value and key not in out:
                out[key] = value.strip().lower() if key == "ORBIT_DIRECTION" else value.strip()
    return out


def convert_safe(safe: Path, out_tif: Path, max_px: int = 2048) -> tuple[Path, str]:
    """Write the SAFE product as a lon/lat GeoTIFF (float32; sigma0 linear power when calibrated, else the DN
    amplitude), bands named by polarization; returns (path, note)."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    measurements = sorted(p for p in (safe / "measurement").glob("*.tif*") if POL_IN_NAME.search(p.name))
    if not measurements:
        raise ValueError(f"{safe.name}: no measurement/*.tiff with a polarization in its name")
    bands, gcps, calibrated, scale = {}, None, True, 1
    for m in measurements:
        pol = POL_IN_NAME.search(m.name).group(1).upper()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(m) as src:
                scale = max(1, -(-max(src.width, src.height) // max_px))
                shape = (max(1, src.height // scale), max(1, src.width // scale))
                dn = src.read(1, out_shape=shape, resampling=Resampling.average).astype(np.float64)
                gcps, gcp_crs = src.gcps
                full = (src.height, src.width)
        if not gcps:
            raise ValueError(f"{m.name}: no GCPs, so no georeference")
        cal = safe / "annotation" / "calibration" / f"calibration-{m.stem}.xml"
        if cal.exists():
            lut = sigma0_lut(cal, full)[::scale, ::scale][: shape[0], : shape[1]]
            bands[pol] = (dn**2 / lut**2).astype(np.float32)
        else:
            calibrated = False
            bands[pol] = dn.astype(np.float32)
    h, w = next(iter(bands.values())).shape
    gcps = [type(g)(g.row / scale, g.col / scale, g.x, g.y, g.z) for g in gcps]
    crs = gcp_crs or CRS.from_epsg(4326)
    transform, width, height = calculate_default_transform(crs, "EPSG:4326", w, h, gcps=gcps)
    out_tif.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=width, height=height, count=len(bands), dtype="float32", crs="EPSG:4326",
                   transform=transform, nodata=float("nan"))
    with rasterio.open(out_tif, "w", **profile) as dst:
        for i, (pol, data) in enumerate(sorted(bands.items()), start=1):
            warped = np.full((height, width), np.nan, np.float32)
            reproject(data, warped, gcps=gcps, src_crs=crs, dst_transform=transform, dst_crs="EPSG:4326",
                      resampling=Resampling.bilinear, src_nodata=0, dst_nodata=np.nan)
            dst.write(warped, i)
            dst.set_band_description(i, pol)
        mission = safe.name[:3].upper()
        ann = annotation_facts(safe)
        extra = {"INCIDENCE_DEG": ann["INCIDENCE_DEG"]} if "INCIDENCE_DEG" in ann else {}
        if "PIXEL_SPACING_M" in ann:
            extra["RESOLUTION_M"] = str(float(ann["PIXEL_SPACING_M"]) * scale)
        dst.update_tags(PLATFORM="sentinel1", BAND="C", MISSION=mission, CALIBRATED=str(calibrated), **extra)
    note = (f"Sentinel-1 SAFE {safe.name}: " + ("sigma0 from the calibration LUT" if calibrated else
            "uncalibrated (no calibration annotation): DN amplitude, relative dB")
            + ", warped to lon/lat through its GCPs" + (f", multilooked {scale}x{scale}" if scale > 1 else "")
            + (f", orbit {ann['ORBIT_DIRECTION']}" if "ORBIT_DIRECTION" in ann else ""))
    return out_tif, note
