"""The facts record (docs/contracts.md) of a real tile, from offline geography (L1), inference (L2), the sensor
metadata (L3) and the image (L4 and the landform dimensions). Every fact has an entry in `provenance`:
{"source": where it comes from, "confidence": 0..1, "level": "L1".."L4", "inferred": true for L2 guesses};
a fact no source knows is "unknown" (strings) or null (numbers, yes/no), never made up.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..vocab import GRID_CELLS, LANDCOVER_CLASSES, LANDCOVER_NODATA, TARGET_CLASSES
from . import image
from .config import KnowledgeConfig
from .geo import UNKNOWN, Fact

FACT_MIN_FRACTION = 0.05  # as the simulator: a class is present from this share of the tile on
NOT_MEASURED = ["industrial", "forest", "bare", "road", "airport", "port"]


@dataclass
class TileInfo:
    """What the index and the file's tags say about a tile (L3)."""

    tile_id: str
    scene_id: str = ""
    lon: float | None = None  # footprint centre; None for chips without georeference
    lat: float | None = None
    platform: str = ""
    band: str = ""
    polarizations: list[str] = field(default_factory=list)
    resolution_m: float | None = None
    incidence_deg: float | None = None
    looks: float | None = None
    orbit_direction: str = ""
    calibrated: bool = True  # sigma0 dB (False: relative dB from digital numbers)
    label: str = ""  # a class the source names (an OpenSARShip patch's ship class), else ""


def _num(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _fractions(lc: np.ndarray) -> dict[str, float]:
    valid = lc[lc != LANDCOVER_NODATA]
    counts = np.bincount(valid.ravel(), minlength=len(LANDCOVER_CLASSES))
    return {c: round(float(n) / max(1, valid.size), 4) for c, n in zip(LANDCOVER_CLASSES, counts)}


def _regional(lc: np.ndarray) -> dict[str, str]:
    h, w = lc.shape
    out = {}
    for i, cell in enumerate(GRID_CELLS):
        r, c = divmod(i, 3)
        part = lc[r * h // 3:(r + 1) * h // 3, c * w // 3:(c + 1) * w // 3]
        part = part[part != LANDCOVER_NODATA]
        out[cell] = LANDCOVER_CLASSES[int(np.bincount(part.ravel(), minlength=len(LANDCOVER_CLASSES)).argmax())] \
            if part.size else UNKNOWN
    return out


def geography(lon: float | None, lat: float | None, cfg: KnowledgeConfig) -> dict[str, Fact]:
    """L1 facts of a point (all unknown without coordinates)."""
    from . import geo

    if lon is None or lat is None:
        why = geo.unknown("no georeference (image chip): no geographic source applies")
        return {k: why for k in ("city", "country", "continent", "climate", "climate_code", "land_or_sea",
                                 "distance_to_coast_km", "coastal")}
    city, country, continent = geo.nearest_place(lon, lat, cfg.min_city_population)
    code, words = geo.climate(lon, lat)
    place, coast = geo.land_sea(lon, lat, cfg.coast_search_km)
    if place.value == UNKNOWN:
        coastal = geo.unknown(place.source)
    else:
        near = place.value == "sea" or (coast.value is not None and coast.value <= cfg.coastal_km)
        coastal = Fact(near, f"{coast.source}: coast {'within' if near else 'farther than'} {cfg.coastal_km:g} km",
                       coast.confidence)
    return {"city": city, "country": country, "continent": continent, "climate": words, "climate_code": code,
            "land_or_sea": place, "distance_to_coast_km": coast, "coastal": coastal}


def analyse_image(bands: dict[str, np.ndarray], res_m: float | None, calibrated: bool,
                  cfg: KnowledgeConfig) -> dict:
    """The image's own facts (L4 and landform dimensions) with a note per method."""
    valid = np.logical_and.reduce([np.isfinite(b) for b in bands.values()])
    water, how = image.water_mask(bands, calibrated, cfg)
    builtup = image.builtup_mask(bands, water, calibrated, cfg)
    lc = image.landcover_map(valid, water, builtup)
    fr = _fractions(lc)
    targets, cfar_note = image.find_targets(bands, water, res_m, builtup, cfg)
    return {"landcover": lc, "fractions": fr, "water_known": water is not None, "water_how": how,
            "targets": targets, "cfar_note": cfar_note}


def build_facts(bands: dict[str, np.ndarray], meta: TileInfo, cfg: KnowledgeConfig | None = None) -> dict:
    """The facts record of one real tile from its dB bands (NaN nodata) and metadata."""
    cfg = cfg or KnowledgeConfig()
    res = _num(meta.resolution_m)
    h, w = next(iter(bands.values())).shape
    l1 = geography(meta.lon, meta.lat, cfg)
    img = analyse_image(bands, res, meta.calibrated, cfg)
    fr, targets = img["fractions"], img["targets"]
    water_present = fr["water"] >= cfg.min_water_fraction if img["water_known"] else None
    counts = {c: sum(t["class"] == c for t in targets) for c in TARGET_CLASSES}
    builtup = fr["urban"] >= FACT_MIN_FRACTION
    has_port = True if counts["ship"] and water_present and builtup and l1["coastal"].value is True else None
    has_airport = True if counts["aircraft"] else None
    coastal = l1["coastal"].value if l1["coastal"].value != UNKNOWN else None
    present = sorted((c for c, f in fr.items() if f >= FACT_MIN_FRACTION), key=lambda c: -fr[c])
    units = "sigma0 dB" if meta.calibrated else "relative dB (uncalibrated digital numbers)"
    water_src = f"image: water by {'; '.join(f'{p} {t}' for p, t in img['water_how'].items())} on {units}"
    facts = {
        "tile_id": meta.tile_id, "scene_id": meta.scene_id or meta.tile_id,
        "city": l1["city"].value, "country": l1["country"].value, "continent": l1["continent"].value,
        "lon": round(meta.lon, 4) if meta.lon is not None else None,
        "lat": round(meta.lat, 4) if meta.lat is not None else None,
        "climate": l1["climate"].value, "climate_code": l1["climate_code"].value, "coastal": coastal,
        "land_or_sea": l1["land_or_sea"].value, "distance_to_coast_km": l1["distance_to_coast_km"].value,
        "river": None, "has_port": has_port, "has_airport": has_airport,
        "platform": meta.platform or UNKNOWN, "band": meta.band or UNKNOWN, "polarizations": list(bands),
        "resolution_m": res, "incidence_deg": _num(meta.incidence_deg), "looks": _num(meta.looks),
        "orbit_direction": meta.orbit_direction or UNKNOWN, "width": w, "height": h,
        "terrain": UNKNOWN,
        "landcover_fractions": fr,
        "main_landform": max(fr, key=fr.get),
        "landforms_present": present,
        "regional_landform": _regional(img["landcover"]),
        "water_present": water_present,
        "water_kinds": ["coast"] if water_present and coastal else [],
        "counts": counts,
        "targets": targets,
        "not_measured": NOT_MEASURED,  # land-cover classes the image methods cannot see: their 0.0 means unknown
    }
    img_src = (f"image: {water_src}; built-up = co-pol strong-scatterer density >= {cfg.builtup_min_density:g} "
               f"in {cfg.builtup_window_px} px windows; other land assumed farmland/open land (inferred)")
    prov = {k: _p(f, "L1") for k, f in l1.items()}
    prov.update({
        "lon": _p(Fact(facts["lon"], "footprint centre (index geometry)" if meta.lon is not None else
                       "no georeference", 1.0 if meta.lon is not None else 0.0), "L1"),
        "river": _p(Fact(None, "no offline river data source", 0.0), "L1"),
        "terrain": _p(Fact(UNKNOWN, "no offline elevation model: terrain not estimated", 0.0), "L1"),
        "has_port": _p(Fact(has_port, "inferred: ships on water next to built-up land on a coastal tile (else unknown)",
                            0.5 if has_port else 0.0), "L2", inferred=True),
        "has_airport": _p(Fact(has_airport, "inferred: aircraft-sized targets on open land (else unknown)",
                               0.4 if has_airport else 0.0), "L2", inferred=True),
        "landcover_fractions": _p(Fact(None, img_src, 0.6 if meta.calibrated else 0.4), "L4", inferred=True),
        "water_present": _p(Fact(water_present, water_src, 0.0 if water_present is None else
                                 0.8 if meta.calibrated else 0.5), "L4"),
        "water_kinds": _p(Fact(facts["water_kinds"], "coast when the L1 land mask says the tile is coastal", 0.5), "L2",
                          inferred=True),
        "targets": _p(Fact(None, f"image: {img['cfar_note']}; ships where the ring around them is water, aircraft "
                                 "on open land by size; ship type from length (vocab.SHIP_CLASSES)", 0.5), "L4"),
    })
    for k in ("platform", "band", "resolution_m", "incidence_deg", "looks", "orbit_direction"):
        known = facts[k] not in (None, UNKNOWN)
        prov[k] = _p(Fact(facts[k], "sensor metadata (file tags / index)" if known else "not in the file's metadata",
                          1.0 if known else 0.0), "L3")
    prov["polarizations"] = _p(Fact(facts["polarizations"], "band descriptions of the file", 1.0), "L3")
    if meta.label:
        facts["label"] = meta.label
        prov["label"] = _p(Fact(meta.label, "the file name (dataset's own label)", 1.0), "L4")
    facts["provenance"] = prov
    facts["knowledge_source"] = "klip_lib.knowledge (real tile)"
    return facts


def _p(f: Fact, level: str, inferred: bool = False) -> dict:
    out = {"source": f.source, "confidence": round(float(f.confidence), 2), "level": level}
    return {**out, "inferred": True} if inferred else out


def tile_facts_from_file(path: str | Path, meta: TileInfo, cfg: KnowledgeConfig | None = None) -> dict:
    """Read a workbench tile (float32 dB GeoTIFF, bands named by polarization) and build its facts record."""
    from ..data.geotiff import read_tile

    data, info = read_tile(path)
    pols = meta.polarizations or [f"B{i}" for i in range(len(data))]
    return build_facts(dict(zip(pols, data)), meta, cfg)


def write_facts(facts: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(facts, indent=1, default=_json_default))
    return path


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


__all__ = ["TileInfo", "analyse_image", "build_facts", "geography", "tile_facts_from_file", "write_facts"]
