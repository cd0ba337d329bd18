"""The embedded default dataset: simulate scenes near real cities, cut them into tiles, write
GeoTIFFs, land-cover masks, target masks, facts records and the GeoParquet index (docs/contracts.md)."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..vocab import GRID_CELLS, LANDCOVER_CLASSES, LANDCOVER_NODATA, TARGET_CLASSES, grid_cell
from .gazetteer import CITIES, City, get_city, split_of_cities, utm_epsg
from .platforms import PLATFORMS, Platform, get_platform
from .render import render
from .scene import SCENE_KINDS, WATER_KINDS, Layout, make_layout, terrain_class
from .targets import Target, place_targets

FACT_MIN_FRACTION = 0.05  # a class is "present" in a tile from this fraction on
SPLIT_SHARES = {"train": 0.7, "val": 0.15, "test": 0.15}  # share of scenes drawn from each split's cities
EVAL_SCENES = 1_000_000  # scene numbers of the evaluation scenes start here (their random streams and ids)


@dataclass
class SimConfig:
    n_tiles: int = 48  # number of tiles to write
    tile_size: int = 128  # tile width and height in pixels
    image_size: int = 64  # side of the image the torch datasets resize tiles to
    platforms: tuple[str, ...] = tuple(PLATFORMS)  # platform profiles to draw from
    cities: tuple[str, ...] = field(default_factory=tuple)  # cities to draw from (empty: the whole gazetteer)
    scene_tiles: int = 2  # a scene is scene_tiles x scene_tiles neighbouring tiles
    seed: int = 0  # random seed: the same config and seed give the same dataset
    eval_tiles: int = 0  # more tiles, in the held-out test cities only (split "test"), for test sets sized for a
    # decision; drawn from their own random stream, so the n_tiles corpus is the same whatever this value


@dataclass
class ScenePlan:
    scene_id: str  # e.g. "sim_scene_0003"
    city: City  # where the scene lies
    split: str  # train / val / test (all tiles of a scene share it)
    platform: Platform  # imaging sensor
    res: float  # pixel spacing in metres
    looks: float  # equivalent number of looks
    incidence_deg: float  # incidence angle at the scene centre
    kind: str  # scene kind (urban, rural, port, airport)
    terrain: str  # terrain class the DEM is drawn for
    lon: float  # scene centre longitude
    lat: float  # scene centre latitude
    date: str  # acquisition date, ISO


def plan_scenes(cfg: SimConfig) -> list[ScenePlan]:
    """Draw the scenes: cities by geographic split, then platform, mode, kind, terrain and place; then the
    `eval_tiles` scenes, all in the test cities, from a random stream of their own."""
    rng = np.random.default_rng([cfg.seed, 0])
    cities = [get_city(c) for c in cfg.cities] if cfg.cities else list(CITIES)
    split = split_of_cities([c.name for c in cities])
    per_scene = cfg.scene_tiles**2
    n_scenes = -(-cfg.n_tiles // per_scene)
    pools = {s: [c for c in cities if split[c.name] == s] for s in SPLIT_SHARES}
    counts = {s: int(round(n_scenes * share)) if pools[s] else 0 for s, share in SPLIT_SHARES.items()}
    counts["train"] = n_scenes - counts["val"] - counts["test"]
    if not pools["train"]:
        counts["val" if pools["val"] else "test"] += counts.pop("train")
    splits = [s for s, n in counts.items() for _ in range(n)]
    plans = [_draw_scene(rng, f"sim_scene_{i:04d}", pools[s], s, cfg) for i, s in enumerate(splits)]
    if cfg.eval_tiles > 0:
        if not pools["test"]:
            raise ValueError(f"eval_tiles={cfg.eval_tiles} needs test cities, and none of {sorted(split)} is one: "
                             "add a held-out city (klip_lib.data.gazetteer.TEST_CITIES) or set eval_tiles=0")
        rng = np.random.default_rng([cfg.seed, 2])
        plans += [_draw_scene(rng, f"sim_scene_{EVAL_SCENES + j:07d}", pools["test"], "test", cfg)
                  for j in range(-(-cfg.eval_tiles // per_scene))]
    return plans


def _draw_scene(rng: np.random.Generator, scene_id: str, pool: list[City], split: str, cfg: SimConfig) -> ScenePlan:
    city = pool[int(rng.integers(len(pool)))]
    platform = get_platform(str(rng.choice(list(cfg.platforms))))
    mode = int(rng.integers(len(platform.resolutions_m)))
    kinds = [k for k in SCENE_KINDS if (k != "port" or city.port) and (k != "airport" or city.airport)]
    terrain = city.terrain if rng.random() < 0.6 else str(rng.choice(["plain", "hilly", "mountain"]))
    km = 15.0
    lat = city.lat + rng.uniform(-km, km) / 111.0
    lon = city.lon + rng.uniform(-km, km) / (111.0 * np.cos(np.radians(city.lat)))
    date = dt.date(2017, 1, 1) + dt.timedelta(days=int(rng.integers(0, 7 * 365)))
    return ScenePlan(scene_id, city, split, platform, platform.resolutions_m[mode], platform.looks[mode],
                     round(float(rng.uniform(*platform.incidence_deg)), 1), str(rng.choice(kinds)), terrain,
                     float(lon), float(lat), date.isoformat())


def _fractions(lc: np.ndarray) -> dict[str, float]:
    valid = lc[lc != LANDCOVER_NODATA]
    counts = np.bincount(valid.ravel(), minlength=len(LANDCOVER_CLASSES))
    return {c: round(float(n) / max(1, valid.size), 4) for c, n in zip(LANDCOVER_CLASSES, counts)}


def tile_facts(plan: ScenePlan, tile_id: str, lc, water_kind, dem, targets: list[tuple[Target, tuple]], x_off, y_off) -> dict:
    """The facts record of one tile (keys and meanings as in docs/contracts.md)."""
    h, w = lc.shape
    fr = _fractions(lc)
    present = sorted((c for c, f in fr.items() if f >= FACT_MIN_FRACTION), key=lambda c: -fr[c])
    regional = {}
    for i, cell in enumerate(GRID_CELLS):
        r, c = divmod(i, 3)
        part = lc[r * h // 3 : (r + 1) * h // 3, c * w // 3 : (c + 1) * w // 3]
        regional[cell] = LANDCOVER_CLASSES[int(np.bincount(part.ravel(), minlength=len(LANDCOVER_CLASSES)).argmax())]
    recs = []
    for i, (t, (x0, y0, x1, y1)) in enumerate(targets):
        cx, cy = t.cx - x_off, t.cy - y_off
        recs.append({"id": i, "class": t.cls, "type": t.type, "length_m": round(t.length_m, 1), "width_m": round(t.width_m, 1),
                     "heading_deg": round(t.heading_deg, 1), "bbox": [x0, y0, x1, y1], "center": [round(cx, 1), round(cy, 1)],
                     "grid_cell": grid_cell(cx, cy, w, h)})
    city = plan.city
    return {
        "tile_id": tile_id, "scene_id": plan.scene_id,
        "city": city.name, "country": city.country, "continent": city.continent,
        "lon": round(plan.lon, 4), "lat": round(plan.lat, 4), "climate": city.climate, "coastal": city.coastal,
        "river": city.river, "has_port": city.port, "has_airport": city.airport,
        "platform": plan.platform.name, "band": plan.platform.band, "polarizations": list(plan.platform.polarizations),
        "resolution_m": plan.res, "incidence_deg": plan.incidence_deg, "looks": plan.looks, "width": w, "height": h,
        "terrain": terrain_class(dem, plan.res),
        "landcover_fractions": fr,
        "main_landform": max(fr, key=fr.get),
        "landforms_present": present,
        "regional_landform": regional,
        "water_present": fr["water"] > 0,
        "water_kinds": [k for i, k in enumerate(WATER_KINDS, start=1) if (water_kind == i).any()],
        "counts": {c: sum(t.cls == c for t, _ in targets) for c in TARGET_CLASSES},
        "targets": recs,
    }


def simulate_scene(plan: ScenePlan, tile_size: int, scene_tiles: int, seed: int, index: int):
    """Lay out, place targets and image one scene; returns (layout, targets, instance map, images)."""
    rng = np.random.default_rng([seed, 1, index])
    side = tile_size * scene_tiles
    layout: Layout = make_layout(plan.city, plan.kind, plan.terrain, (side, side), plan.res, rng)
    targets, instances, points = place_targets(layout, tile_size, rng)
    images = render(layout, points, plan.platform, plan.looks, plan.incidence_deg, rng)
    return layout, targets, instances, images


def _write_scene(out: Path, plan: ScenePlan, cfg: SimConfig, index: int, first_tile: int, n: int) -> list[dict]:
    """Simulate one scene and write its first `n` tiles; return their index rows."""
    from pyproj import Transformer
    from rasterio.transform import from_origin
    from shapely.geometry import Polygon

    from .geotiff import write_mask, write_tile

    layout, targets, instances, images = simulate_scene(plan, cfg.tile_size, cfg.scene_tiles, cfg.seed, index)
    epsg = utm_epsg(plan.lon, plan.lat)
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    to_geo = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    e, nth = to_utm.transform(plan.lon, plan.lat)
    half = cfg.tile_size * cfg.scene_tiles * plan.res / 2
    west, north = round(e - half), round(nth + half)
    tags = {"PLATFORM": plan.platform.name, "BAND": plan.platform.band, "RESOLUTION_M": plan.res,
            "INCIDENCE_DEG": plan.incidence_deg, "ACQ_DATE": plan.date, "LOOKS": plan.looks}
    rows, T = [], cfg.tile_size
    for k in range(n):
        r, c = divmod(k, cfg.scene_tiles)
        tile_id = f"sim_{first_tile + k:06d}"
        win = (slice(r * T, (r + 1) * T), slice(c * T, (c + 1) * T))
        transform = from_origin(west + c * T * plan.res, north - r * T * plan.res, plan.res, plan.res)
        inst = instances[win]
        ids = [i for i in np.unique(inst) if i > 0]
        local = np.zeros(inst.shape, np.uint16)
        tile_targets = []
        for j, i in enumerate(ids):
            ys, xs = np.nonzero(inst == i)
            local[inst == i] = j + 1
            tile_targets.append((targets[i - 1], (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))
        crs = f"EPSG:{epsg}"
        write_tile(out / "tiles" / f"{tile_id}.tif", {p: img[win] for p, img in images.items()}, crs, transform, tags)
        write_mask(out / "labels" / f"{tile_id}_landcover.tif", layout.landcover[win], crs, transform, LANDCOVER_NODATA)
        write_mask(out / "labels" / f"{tile_id}_targets.tif", local, crs, transform, None)
        facts = tile_facts(plan, tile_id, layout.landcover[win], layout.water_kind[win], layout.dem[win],
                           tile_targets, c * T, r * T)
        (out / "labels" / f"{tile_id}.json").write_text(json.dumps(facts, indent=1))
        corners = [transform @ xy for xy in ((0, 0), (T, 0), (T, T), (0, T))]
        footprint = Polygon([to_geo.transform(x, y) for x, y in corners])
        rows.append({"tile_id": tile_id, "path": f"tiles/{tile_id}.tif", "geometry": footprint, "crs": crs,
                     "city": plan.city.name, "country": plan.city.country, "platform": plan.platform.name,
                     "band": plan.platform.band, "polarizations": ",".join(plan.platform.polarizations),
                     "resolution_m": plan.res, "incidence_deg": plan.incidence_deg, "width": T, "height": T,
                     "split": plan.split, "scene_id": plan.scene_id, "landcover_path": f"labels/{tile_id}_landcover.tif",
                     "facts_path": f"labels/{tile_id}.json", "source": "simulated", "note": ""})
    return rows


def simulate_dataset(out: str | os.PathLike, cfg: SimConfig, progress: bool = True) -> Path:
    """Simulate `cfg.n_tiles` tiles into folder `out` (tiles/, labels/, index.parquet); return the index path."""
    from tqdm.auto import tqdm

    from .index import write_index

    out = Path(out)
    per_scene, rows = cfg.scene_tiles**2, []
    plans = plan_scenes(cfg)  # bad cities fail here, before a progress bar or a file
    with tqdm(total=cfg.n_tiles + cfg.eval_tiles, desc="simulate", unit="tile", disable=not progress) as bar:
        for plan in plans:
            number = int(plan.scene_id.rsplit("_", 1)[1])
            left = (cfg.n_tiles - len(rows)) if number < EVAL_SCENES else (cfg.n_tiles + cfg.eval_tiles - len(rows))
            n = min(per_scene, left)
            rows += _write_scene(out, plan, cfg, number, len(rows), n)
            bar.update(n)
    return write_index(rows, out / "index.parquet")
