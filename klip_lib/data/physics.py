"""Radiometry: sigma0 per land-cover class, band, polarization and incidence; speckle; point-target PSF.

Typical values follow the published C-band tables (Ulaby & Dobson, *Handbook of Radar Scattering
Statistics for Terrain*; ESA Sentinel-1 land-cover backscatter surveys): calm water is darkest and
falls steeply with incidence, cross-pol sits several dB below co-pol, built-up areas are brightest.
Unit conversions (dB / linear power / amplitude) live here too.
"""

from __future__ import annotations

import numpy as np

from ..vocab import LANDCOVER_CLASSES

# class: (co-pol VV sigma0 at 35 deg in dB, slope in dB per degree of incidence, HH minus VV in dB,
#         cross-pol minus co-pol in dB)
SIGMA0_C_BAND: dict[str, tuple[float, float, float, float]] = {
    "water": (-22.0, -0.45, -2.0, -8.0),
    "urban": (-5.0, -0.10, 1.0, -8.0),
    "industrial": (-3.0, -0.10, 1.0, -9.0),
    "farmland": (-11.0, -0.15, -0.5, -7.0),
    "forest": (-7.5, -0.08, 0.0, -5.5),
    "bare": (-13.0, -0.20, -1.0, -9.0),
    "road": (-17.0, -0.30, -1.0, -8.0),
    "airport": (-19.0, -0.30, -1.0, -8.0),
    "port": (-6.0, -0.10, 1.0, -8.0),
}
# X band minus C band, dB: shorter waves see rougher water and less canopy penetration.
X_BAND_OFFSET: dict[str, float] = {"water": 1.0, "farmland": 0.5, "forest": -0.5, "bare": 0.5}
CROSS_POLS = ("VH", "HV")


def sigma0_db(cls: str, band: str, pol: str, incidence_deg: np.ndarray | float) -> np.ndarray:
    """Mean sigma0 in dB of land-cover class `cls` for a band, polarization and (local) incidence."""
    vv35, slope, hh_minus_vv, cross = SIGMA0_C_BAND[cls]
    value = vv35 + slope * (np.asarray(incidence_deg, dtype=np.float32) - 35.0)
    if band == "X":
        value = value + X_BAND_OFFSET.get(cls, 0.0)
    if pol.startswith("H"):
        value = value + hh_minus_vv
    if pol in CROSS_POLS:
        value = value + cross
    return value


def class_sigma0_table(band: str, pol: str, incidence_deg: float) -> np.ndarray:
    """sigma0 dB of every vocab class (in LANDCOVER_CLASSES order) at one incidence angle."""
    return np.array([float(sigma0_db(c, band, pol, incidence_deg)) for c in LANDCOVER_CLASSES], np.float32)


def speckle(shape: tuple[int, ...], looks: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative intensity speckle of an L-look image: Gamma(shape=L, scale=1/L), mean 1."""
    return rng.gamma(looks, 1.0 / looks, size=shape).astype(np.float32)


def psf_kernel(half_width: int = 8, oversampling: float = 1.25) -> np.ndarray:
    """1-D sinc-squared impulse response sampled at pixel spacing = resolution / oversampling.

    SAR products are oversampled (pixel spacing finer than resolution), so the sidelobes land on
    pixels: the first at about -13 dB, as in a real focused image."""
    n = np.arange(-half_width, half_width + 1, dtype=np.float64)
    return (np.sinc(n / oversampling) ** 2).astype(np.float32)


def spread_points(points: np.ndarray) -> np.ndarray:
    """Convolve an image of point scatterers (linear intensity) with the separable sinc^2 PSF."""
    from scipy.ndimage import convolve1d

    k = psf_kernel()
    return convolve1d(convolve1d(points, k, axis=0, mode="constant"), k, axis=1, mode="constant")


def db_to_linear(db: np.ndarray) -> np.ndarray:
    """sigma0 dB -> linear power."""
    return np.power(10.0, np.asarray(db, dtype=np.float32) / 10.0)


def linear_to_db(linear: np.ndarray, floor: float = 1e-10) -> np.ndarray:
    """Linear power -> dB; values at or below 0 are clipped to `floor` first."""
    return 10.0 * np.log10(np.maximum(np.asarray(linear, dtype=np.float32), floor))


def amplitude_to_db(amplitude: np.ndarray, floor: float = 1e-5) -> np.ndarray:
    """Amplitude (square root of power) -> dB."""
    return 20.0 * np.log10(np.maximum(np.asarray(amplitude, dtype=np.float32), floor))


def db_to_amplitude(db: np.ndarray) -> np.ndarray:
    """dB -> amplitude (square root of power)."""
    return np.power(10.0, np.asarray(db, dtype=np.float32) / 20.0)
