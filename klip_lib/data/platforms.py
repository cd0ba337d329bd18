"""SAR platform profiles: the sensors the simulator imitates.

Modelled on Gaofen-3 (the paper's main source), Sentinel-1 IW GRD (the common public one) and a
TerraSAR-X-like high-resolution X-band spotlight mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class Platform:
    name: str  # profile key used in the index and facts
    label: str  # human-readable sensor name
    band: str  # radar band letter ("C", "X")
    polarizations: tuple[str, ...]  # co-pol first, then cross-pol
    resolutions_m: tuple[float, ...]  # pixel spacings of its imaging modes, metres
    looks: tuple[float, ...]  # equivalent number of looks of each mode (same order as resolutions_m)
    incidence_deg: tuple[float, float]  # near and far incidence angle of the swath, degrees
    nesz_db: float  # noise-equivalent sigma zero (thermal noise floor), typical published value, dB


PLATFORMS: dict[str, Platform] = {
    "gf3": Platform("gf3", "Gaofen-3", "C", ("HH", "HV"), (1.0, 3.0, 5.0, 10.0), (1.0, 1.0, 2.0, 4.0), (20.0, 50.0), -22.0),
    "sentinel1": Platform("sentinel1", "Sentinel-1 IW GRD", "C", ("VV", "VH"), (10.0,), (4.4,), (29.1, 46.0), -25.0),
    "xband": Platform("xband", "X-band spotlight", "X", ("HH",), (1.0,), (1.0,), (20.0, 45.0), -21.0),
}

CO_POLS = ("VV", "HH")
CROSS_POLS = ("VH", "HV")


def get_platform(name: str) -> Platform:
    """The profile called `name`; an unknown name raises with the known ones."""
    if name not in PLATFORMS:
        raise InputError(f"unknown platform {name!r}: choose from {', '.join(PLATFORMS)}")
    return PLATFORMS[name]
