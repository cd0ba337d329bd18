"""Plots: SAR display (dB stretch, dual-pol false colour) and tile grids. matplotlib is imported inside.

Interactive maps (leafmap layers, the ipywidgets explorer) are in `klip_lib.maps` and `klip_lib.map_explorer`."""

from __future__ import annotations

import numpy as np


def db_stretch(db: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Map dB values to [0, 1] between the `low` and `high` percentiles (NaN -> 0)."""
    lo, hi = np.nanpercentile(db, [low, high]) if np.isfinite(db).any() else (0.0, 1.0)
    return np.nan_to_num(np.clip((db - lo) / max(hi - lo, 1e-6), 0, 1))


def sar_rgb(bands: np.ndarray) -> np.ndarray:
    """[H, W, 3] display image from [C, H, W] dB bands: grey for one band; for dual pol the usual false
    colour R = co-pol, G = cross-pol, B = co - cross (each stretched)."""
    if len(bands) == 1:
        return np.repeat(db_stretch(bands[0])[..., None], 3, axis=-1)
    co, cross = bands[0], bands[1]
    return np.stack([db_stretch(co), db_stretch(cross), db_stretch(co - cross)], axis=-1)


def show_tiles(tiles: list[np.ndarray], titles: list[str] | None = None, cols: int = 4, size: float = 2.6):
    """A grid of SAR tiles ([C, H, W] dB each) through `sar_rgb`; returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(tiles) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, tile in enumerate(tiles):
        ax = axes.ravel()[i]
        ax.imshow(sar_rgb(tile))
        if titles:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig
