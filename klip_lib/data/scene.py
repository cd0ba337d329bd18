"""Scene layout: a synthetic DEM, a terrain class and the land-cover map of one simulated scene.

Everything is laid out in metres and rasterised at the platform's pixel spacing, so a river is as
wide at 1 m as at 10 m and a 10 m scene simply shows more of the city.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..vocab import LANDCOVER_INDEX as LC
from .gazetteer import City

# terrain class: (DEM standard deviation in metres, correlation length in metres)
TERRAIN_RELIEF: dict[str, tuple[float, float]] = {"plain": (2.0, 500.0), "hilly": (30.0, 400.0), "mountain": (200.0, 600.0)}
# mean slope (degrees) separating plain / hilly / mountain tiles
TERRAIN_SLOPE_LIMITS = (2.0, 8.0)
WATER_KINDS = ("river", "coast", "lake", "port basin")  # water_kind codes 1..4 (0: not water)
SCENE_KINDS = ("urban", "rural", "port", "airport")


@dataclass
class Layout:
    """One scene's ground truth before imaging."""

    landcover: np.ndarray  # uint8 [H, W] class index per vocab.LANDCOVER_CLASSES
    water_kind: np.ndarray  # uint8 [H, W]: 0 not water, else 1 + index in WATER_KINDS
    dem: np.ndarray  # float32 [H, W] terrain height in metres
    texture_db: np.ndarray  # float32 [H, W] dB offset on the class mean (crop parcels, canopy)
    res: float  # pixel spacing in metres
    kind: str  # one of SCENE_KINDS
    buildings: list[tuple[int, int, int, int, float]] = field(default_factory=list)  # (y0, y1, x0, x1, height_m)
    apron: tuple[float, float, float, float, float] | None = None  # (u0, u1, v0, v1, angle_rad) in metres, airport


def smooth_noise(shape: tuple[int, int], res: float, corr_m: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian random field of unit variance and correlation length `corr_m` metres, sampled every `res` m.

    Drawn on a coarse grid in metres (with margins) and interpolated, so its statistics do not depend
    on the pixel spacing or on the scene being smaller than the correlation length."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    step = max(corr_m / 4.0, res)
    sigma = corr_m / step
    pad = int(np.ceil(3 * sigma)) + 2
    ny, nx = (int(np.ceil(n * res / step)) + 2 * pad + 1 for n in shape)
    grid = gaussian_filter(rng.standard_normal((ny, nx)), sigma, mode="wrap") * (2.0 * np.sqrt(np.pi) * sigma)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    coords = [(yy + 0.5) * res / step + pad, (xx + 0.5) * res / step + pad]
    return map_coordinates(grid, coords, order=1).astype(np.float32)


def slope_deg(dem: np.ndarray, res: float) -> np.ndarray:
    """Terrain slope in degrees."""
    gy, gx = np.gradient(dem, res)
    return np.degrees(np.arctan(np.hypot(gx, gy))).astype(np.float32)


def terrain_class(dem: np.ndarray, res: float) -> str:
    """plain / hilly / mountain from the mean slope of a DEM."""
    mean_slope = float(slope_deg(dem, res).mean())
    return "plain" if mean_slope < TERRAIN_SLOPE_LIMITS[0] else "hilly" if mean_slope < TERRAIN_SLOPE_LIMITS[1] else "mountain"


def _frame(shape, res, angle, rng):
    """Metric coordinates (u, v) of pixel centres rotated by `angle` about the scene centre."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = (x + 0.5) * res - w * res / 2, (y + 0.5) * res - h * res / 2
    c, s = np.cos(angle), np.sin(angle)
    return x * c + y * s, -x * s + y * c


def _band(coord: np.ndarray, centre: float, width: float, res: float) -> np.ndarray:
    """Pixels within a strip of `width` metres (at least one pixel wide) around coord == centre."""
    return np.abs(coord - centre) < max(width / 2.0, 0.55 * res)


def _natural(shape, res, dem, rng):
    """Farmland parcels, forest and bare soil, with slope deciding where fields give way to woods."""
    slope = slope_deg(dem, res)
    veg = smooth_noise(shape, res, 250.0, rng)
    lc = np.full(shape, LC["farmland"], np.uint8)
    lc[veg > 0.4] = LC["forest"]
    lc[veg < -1.3] = LC["bare"]
    lc[slope > 12] = LC["forest"]
    lc[slope > 30] = LC["bare"]
    u, v = _frame(shape, res, rng.uniform(0, np.pi), rng)
    size = rng.uniform(80.0, 300.0)
    parcel = (np.floor(u / size) * 7919 + np.floor(v / (size * rng.uniform(0.4, 1.0)))).astype(np.int64)
    crop_db = np.random.default_rng(int(rng.integers(1 << 31))).uniform(-3.0, 3.0, 4096).astype(np.float32)
    texture = np.where(lc == LC["farmland"], crop_db[parcel % 4096], 0.0).astype(np.float32)
    texture += np.where(lc == LC["forest"], 0.8 * smooth_noise(shape, res, 30.0, rng), 0.0)
    return lc, texture


def _urban(lc, shape, res, fraction, rng, slope):
    """Urban blob (with industrial estates inside it) covering about `fraction` of the scene."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    radial = 1.0 - np.hypot(y - cy, x - cx) / max(h, w)
    field_ = 0.6 * smooth_noise(shape, res, 0.25 * w * res, rng) + 2.0 * radial
    urban = (field_ > np.quantile(field_, 1.0 - fraction)) & (slope < 25)
    industrial = urban & (smooth_noise(shape, res, 0.15 * w * res, rng) > 0.7)
    lc[urban] = LC["urban"]
    lc[industrial] = LC["industrial"]
    return urban


def _streets_and_buildings(lc, shape, res, urban, rng):
    """Axis-aligned street grid through built-up areas and one building per block cell."""
    h, w = shape
    spacing = rng.uniform(120.0, 250.0)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    width = rng.uniform(10.0, 20.0)
    street = (_band((x + 0.5) * res % spacing, width / 2, width, res)) | (_band((y + 0.5) * res % spacing, width / 2, width, res))
    lc[street & urban] = LC["road"]
    buildings = []
    for cls, cell_m, heights in ((LC["urban"], 40.0, (6.0, 30.0)), (LC["industrial"], 100.0, (8.0, 15.0))):
        cell = max(2, int(round(cell_m / res)))
        for y0 in range(0, h - cell + 1, cell):
            for x0 in range(0, w - cell + 1, cell):
                if lc[y0 + cell // 2, x0 + cell // 2] != cls:
                    continue
                m = max(1, cell // 5)
                by0, bx0 = y0 + int(rng.integers(0, m + 1)), x0 + int(rng.integers(0, m + 1))
                by1, bx1 = y0 + cell - int(rng.integers(1, m + 1)), x0 + cell - int(rng.integers(1, m + 1))
                if by1 > by0 and bx1 > bx0:
                    buildings.append((by0, by1, bx0, bx1, float(rng.uniform(*heights))))
    return buildings


def _road(lc, u, res, rng, extent):
    """One arterial road across the scene."""
    lc[_band(u, rng.uniform(-0.4, 0.4) * extent, rng.uniform(12.0, 25.0), res)] = LC["road"]


def make_layout(city: City, kind: str, terrain: str, shape: tuple[int, int], res: float, rng: np.random.Generator) -> Layout:
    """Lay out one scene of `kind` near `city` over a DEM of the `terrain` class."""
    extent = shape[1] * res
    std, corr = TERRAIN_RELIEF[terrain]
    dem = (std * smooth_noise(shape, res, corr, rng) + rng.uniform(0, 3 * std)).astype(np.float32)
    slope = slope_deg(dem, res)
    lc, texture = _natural(shape, res, dem, rng)
    water_kind = np.zeros(shape, np.uint8)
    layout = Layout(lc, water_kind, dem, texture, res, kind)
    urban_fraction = {"urban": 0.6, "rural": 0.05, "port": 0.25, "airport": 0.15}[kind]
    urban = _urban(lc, shape, res, urban_fraction, rng, slope)
    for _ in range(int(rng.integers(1, 3))):
        _road(lc, _frame(shape, res, rng.uniform(0, np.pi), rng)[0], res, rng, extent)
    layout.buildings = _streets_and_buildings(lc, shape, res, urban, rng)
    if kind == "airport":
        _airport(layout, shape, res, rng, extent)
    coast = kind == "port" and (city.coastal or not city.river) or (city.coastal and rng.random() < 0.5)
    if coast:
        _coast(layout, shape, res, rng, extent, port=kind == "port")
    if city.river and (not coast or rng.random() < 0.3) and kind != "airport":
        _river(layout, shape, res, rng, extent, port=kind == "port" and not coast)
    if terrain == "plain" and kind in ("rural", "urban") and rng.random() < 0.2:
        lake = (dem < np.quantile(dem, 0.05)) & (lc != LC["urban"])
        lc[lake], water_kind[lake] = LC["water"], 1 + WATER_KINDS.index("lake")
    return layout


def _coast(layout, shape, res, rng, extent, port):
    """Sea on one side of the scene; with `port`, quays along the shore cut by rectangular basins."""
    u, v = _frame(shape, res, rng.choice([0.0, 0.5, 1.0, 1.5]) * np.pi, rng)
    shore = -extent * rng.uniform(0.1, 0.25) + (0.0 if port else 0.05 * extent * smooth_noise(shape, res, extent / 3, rng))
    inland = u - shore
    lc, wk = layout.landcover, layout.water_kind
    if port:
        depth = extent * rng.uniform(0.15, 0.25)
        quay = (inland >= 0) & (inland < depth)
        lc[quay] = LC["port"]
        layout.buildings = [b for b in layout.buildings if not quay[(b[0] + b[1]) // 2, (b[2] + b[3]) // 2]]
        basin_w = float(np.clip(extent * 0.12, 30.0, 300.0))
        for c in np.arange(-extent / 2 + basin_w, extent / 2 - basin_w, 2.5 * basin_w):
            basin = (inland >= 0) & (inland < 0.75 * depth) & (np.abs(v - c) < basin_w / 2)
            lc[basin], wk[basin] = LC["water"], 1 + WATER_KINDS.index("port basin")
    sea = inland < 0
    lc[sea], wk[sea] = LC["water"], 1 + WATER_KINDS.index("coast")


def _river(layout, shape, res, rng, extent, port):
    """A meandering river across the scene (with quays on its banks when `port`)."""
    u, v = _frame(shape, res, rng.uniform(0, np.pi), rng)
    width = float(np.clip(extent * rng.uniform(0.04, 0.1), 30.0, 400.0))
    wavelength = extent * rng.uniform(0.6, 1.5)
    centre = rng.uniform(-0.2, 0.2) * extent + 0.08 * extent * np.sin(2 * np.pi * v / wavelength + rng.uniform(0, 6.3))
    lc, wk = layout.landcover, layout.water_kind
    if port:
        lc[np.abs(u - centre) < width / 2 + extent * 0.1] = LC["port"]
    river = np.abs(u - centre) < max(width / 2, 0.55 * res)
    lc[river], wk[river] = LC["water"], 1 + WATER_KINDS.index("river")


def _airport(layout, shape, res, rng, extent):
    """Runway, parallel taxiway and an apron (where aircraft park), with grass in between."""
    angle = rng.uniform(0, np.pi)
    u, v = _frame(shape, res, angle, rng)
    lc = layout.landcover
    runway_u = -extent * rng.uniform(0.15, 0.3)
    taxi_u = runway_u + min(180.0, extent * 0.25)
    depth, length = float(np.clip(extent * 0.3, 80.0, 400.0)), float(np.clip(extent * 0.6, 150.0, 1500.0))
    zone = (u > runway_u - 60.0) & (u < taxi_u + depth + 40.0)
    lc[zone] = LC["bare"]
    lc[_band(u, runway_u, 45.0, res) | _band(u, taxi_u, 23.0, res)] = LC["airport"]
    apron = (u > taxi_u + 15.0) & (u < taxi_u + 15.0 + depth) & (np.abs(v) < length / 2)
    lc[apron] = LC["airport"]
    terminal = (u >= taxi_u + 15.0 + depth) & (u < taxi_u + 40.0 + depth) & (np.abs(v) < length / 2)
    lc[terminal] = LC["industrial"]
    layout.buildings = [b for b in layout.buildings if not zone[(b[0] + b[1]) // 2, (b[2] + b[3]) // 2]]
    layout.apron = (taxi_u + 15.0, taxi_u + 15.0 + depth, -length / 2, length / 2, angle)
