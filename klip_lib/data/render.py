"""Imaging: turn a scene layout and its targets into sigma0 images, one per polarization.

The sensor looks from the left (west) of the image, so range grows to the right: slopes facing
left are brighter, buildings throw layover to the left and shadow to the right.
"""

from __future__ import annotations

import numpy as np

from ..vocab import LANDCOVER_CLASSES
from ..vocab import LANDCOVER_INDEX as LC
from .physics import CROSS_POLS, class_sigma0_table, linear_to_db, speckle, spread_points
from .platforms import Platform
from .scene import Layout

# dB added by building structure: (co-pol, cross-pol)
DOUBLE_BOUNCE_DB = (12.0, 3.0)  # wall-ground dihedral at the sensor-facing foot of a wall
LAYOVER_DB = (4.0, 4.0)  # wall return folded onto the ground in front of the building
TARGET_CROSS_POL_DB = -8.0  # targets' cross-pol relative to co-pol


def local_incidence(dem: np.ndarray, res: float, incidence_deg: float) -> np.ndarray:
    """Local incidence angle (degrees) with the ground slope along range (sensor to the left)."""
    slope_range = np.degrees(np.arctan(np.gradient(dem, res, axis=1)))
    return (incidence_deg - slope_range).astype(np.float32)


def _building_effects(layout: Layout, incidence_deg: float):
    """Per-pixel dB boosts (co, cross) and the shadow mask from the buildings."""
    shape, res = layout.landcover.shape, layout.res
    boost = np.zeros((2,) + shape, np.float32)
    shadow = np.zeros(shape, bool)
    t = np.tan(np.radians(incidence_deg))
    for y0, y1, x0, x1, height in layout.buildings:
        lay = max(1, int(round(height / t / res)))
        shade = int(round(height * t / res))
        for i, (db, ldb) in enumerate(zip(DOUBLE_BOUNCE_DB, LAYOVER_DB)):
            boost[i, y0:y1, max(0, x0 - lay) : x0] += ldb
            boost[i, y0:y1, x0] += db
        shadow[y0:y1, x1 : x1 + shade] = True
    return boost, shadow


def render(layout: Layout, points: np.ndarray, platform: Platform, looks: float, incidence_deg: float,
           rng: np.random.Generator) -> dict[str, np.ndarray]:
    """sigma0 in dB per polarization: class means at the local incidence, terrain and building effects,
    speckle Gamma(L, 1/L) on clutter plus thermal noise, and targets spread by the sinc^2 PSF."""
    lc, res = layout.landcover, layout.res
    theta = local_incidence(layout.dem, res, incidence_deg)
    theta_c = np.clip(theta, 1.0, 89.0)
    # terrain facing the sensor collects more energy per pixel (sin(theta) / sin(theta_local))
    gain_db = 10 * np.log10(np.sin(np.radians(incidence_deg)) / np.sin(np.radians(theta_c)))
    terrain_shadow = theta >= 90.0
    boost, shadow = _building_effects(layout, incidence_deg)
    shadow |= terrain_shadow
    shadow &= lc != LC["water"]
    spread = spread_points(points)
    nesz = 10 ** (platform.nesz_db / 10)
    out = {}
    for pol in platform.polarizations:
        cross = pol in CROSS_POLS
        # class means at the scene incidence plus the class slope times the local-incidence change
        base = class_sigma0_table(platform.band, pol, incidence_deg)[lc]
        slope = (class_sigma0_table(platform.band, pol, incidence_deg + 1.0) - class_sigma0_table(platform.band, pol, incidence_deg))[lc]
        db = base + slope * (theta_c - incidence_deg) + gain_db + layout.texture_db + boost[int(cross)]
        clutter = np.where(shadow, 0.0, 10 ** (db / 10)).astype(np.float32)
        intensity = (clutter + nesz) * speckle(lc.shape, looks, rng)
        intensity += spread * (10 ** (TARGET_CROSS_POL_DB / 10) if cross else 1.0)
        out[pol] = linear_to_db(intensity).astype(np.float32)
    return out


def class_medians(images: dict[str, np.ndarray], landcover: np.ndarray) -> dict[str, dict[str, float]]:
    """Median dB per polarization and land-cover class (classes absent from the mask are left out)."""
    return {pol: {c: float(np.median(img[landcover == i])) for i, c in enumerate(LANDCOVER_CLASSES) if (landcover == i).any()}
            for pol, img in images.items()}
