"""GeoTIFF reading and writing with rasterio (imported inside the functions)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class TileMeta:
    """What a tile file says about itself."""

    polarizations: list[str]  # band descriptions, e.g. ["VV", "VH"]
    crs: str | None  # e.g. "EPSG:32651"; None when the file has no CRS
    transform: object  # affine.Affine pixel -> CRS coordinates
    width: int  # full raster width in pixels
    height: int  # full raster height in pixels
    tags: dict[str, str]  # dataset tags (PLATFORM, BAND, RESOLUTION_M, ...)
    dtype: str  # on-disk data type of band 1


def write_tile(path: str | os.PathLike, bands: dict[str, np.ndarray], crs: str, transform, tags: dict[str, object]) -> Path:
    """Write sigma0 dB bands (float32, NaN nodata, one band per polarization, described by name)."""
    import rasterio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first = next(iter(bands.values()))
    profile = dict(driver="GTiff", width=first.shape[1], height=first.shape[0], count=len(bands), dtype="float32",
                   crs=crs, transform=transform, nodata=float("nan"))
    with rasterio.open(path, "w", **profile) as dst:
        for i, (pol, band) in enumerate(bands.items(), start=1):
            dst.write(band.astype(np.float32), i)
            dst.set_band_description(i, pol)
        dst.update_tags(**{k: str(v) for k, v in tags.items()})
    return path


def write_mask(path: str | os.PathLike, mask: np.ndarray, crs: str | None, transform, nodata: int | None) -> Path:
    """Write a single-band integer label raster (deflate-compressed) on the tile's grid."""
    import rasterio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1, dtype=mask.dtype.name,
                   crs=crs, transform=transform, nodata=nodata, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(mask, 1)
    return path


def read_meta(path: str | os.PathLike) -> TileMeta:
    """Read a raster's header only."""
    import rasterio

    with rasterio.open(path) as src:
        return _meta(src)


def _meta(src) -> TileMeta:
    pols = [d or f"B{i}" for i, d in enumerate(src.descriptions, start=1)]
    crs = src.crs.to_string() if src.crs else None
    return TileMeta(pols, crs, src.transform, src.width, src.height, dict(src.tags()), src.dtypes[0])


def read_tile(path: str | os.PathLike, window: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, TileMeta]:
    """Read bands as float32 [C, H, W] with NaN where the file has nodata.

    `window` = (col_off, row_off, width, height) reads only that part of a large raster."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(path) as src:
        win = Window(*window) if window else None
        data = src.read(window=win, masked=True).astype(np.float32)
        return np.ma.filled(data, np.nan), _meta(src)
