"""Targets with real dimensions: ships on water, aircraft on aprons, storage tanks, vehicles.

Each target is a shape in metres (hull, cross-shaped airframe, tank ring, car box) rasterised at the
pixel spacing into an instance mask and an image of strong point scatterers; the renderer spreads the
scatterers with the sinc^2 PSF so they show the sidelobe cross of a real focused image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..vocab import AIRCRAFT_TYPES, SHIP_CLASSES
from ..vocab import LANDCOVER_INDEX as LC
from .scene import Layout

VEHICLE_SIZE_M = (4.5, 1.8)  # length, width of a passenger car
TANK_DIAMETERS_M = (15.0, 60.0)  # range of storage-tank diameters
VEHICLE_MAX_RES_M = 1.5  # vehicles are drawn only at this pixel spacing or finer
# per-pixel co-pol sigma0 of target parts, dB (metal structures, dihedrals): hull/fuselage, strong points
TARGET_DB = {"body": 8.0, "strong": 22.0}


@dataclass
class Target:
    cls: str  # one of vocab.TARGET_CLASSES
    type: str  # ship length class, aircraft type, "storage tank" or "vehicle"
    length_m: float  # length (aircraft: fuselage length; tank: diameter)
    width_m: float  # width (aircraft: wingspan; tank: diameter)
    heading_deg: float  # bow / nose direction, degrees clockwise from north (image up)
    cx: float  # centre column, pixels (scene grid)
    cy: float  # centre row, pixels (scene grid)


def _frame(t: Target, res: float, shape: tuple[int, int]):
    """Pixel window around a target and its pixels' along/across coordinates in metres."""
    r = 0.5 * max(t.length_m, t.width_m) / res + 2
    y0, y1 = max(0, int(t.cy - r)), min(shape[0], int(np.ceil(t.cy + r)) + 1)
    x0, x1 = max(0, int(t.cx - r)), min(shape[1], int(np.ceil(t.cx + r)) + 1)
    y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = (x + 0.5 - t.cx) * res, (y + 0.5 - t.cy) * res
    h = np.radians(t.heading_deg)
    along = dx * np.sin(h) - dy * np.cos(h)
    across = dx * np.cos(h) + dy * np.sin(h)
    return (slice(y0, y1), slice(x0, x1)), along, across


def shape_mask(t: Target, res: float, shape: tuple[int, int]):
    """(window, mask, strong) of a target: its footprint and where its strongest scatterers are."""
    win, a, c = _frame(t, res, shape)
    half = 0.5 * res  # keep thin parts at least one pixel wide
    L, W = t.length_m, t.width_m
    if t.cls == "aircraft":
        chord = 0.12 * L
        fuselage = (np.abs(a) <= L / 2) & (np.abs(c) <= max(0.05 * L, half))
        wing = (np.abs(c) <= W / 2) & (np.abs(a - 0.05 * L) <= max(chord / 2, half))
        tail = (np.abs(c) <= 0.18 * W) & (np.abs(a + 0.42 * L) <= max(chord / 4, half))
        mask = fuselage | wing | tail
        engines = (np.abs(np.abs(c) - 0.3 * W / 2) <= max(1.5, half)) & (np.abs(a - 0.1 * L) <= max(1.5, half))
        strong = engines | (np.abs(a - L / 2) <= half) & fuselage
    elif t.cls == "storage tank":
        r = np.hypot(a, c)
        mask = r <= L / 2
        strong = mask & (r >= L / 2 - max(1.0, res))
    else:  # ship, vehicle: a box, ships with a tapered bow and a bright superstructure
        taper = np.clip((L / 2 - a) / (0.15 * L), 0.0, 1.0) if t.cls == "ship" else 1.0
        mask = (np.abs(a) <= L / 2) & (np.abs(c) <= np.maximum(W / 2 * taper, half))
        strong = mask & (np.abs(a + 0.3 * L) <= max(0.05 * L, half)) if t.cls == "ship" else mask
    return win, mask, strong


class _Placer:
    """Puts targets on allowed classes, never overlapping and never across a tile boundary."""

    def __init__(self, layout: Layout, tile: int):
        self.layout, self.tile = layout, tile
        self.instances = np.zeros(layout.landcover.shape, np.int32)
        self.points = np.zeros(layout.landcover.shape, np.float32)
        self.targets: list[Target] = []

    def try_add(self, t: Target, allowed: tuple[int, ...]) -> bool:
        lc, res = self.layout.landcover, self.layout.res
        r = 0.5 * max(t.length_m, t.width_m) / res + 1
        if t.cx - r < 0 or t.cy - r < 0 or t.cx + r >= lc.shape[1] or t.cy + r >= lc.shape[0]:
            return False
        win, mask, strong = shape_mask(t, res, lc.shape)
        ys, xs = np.nonzero(mask)
        ys, xs = ys + win[0].start, xs + win[1].start
        one_tile = ys.min() // self.tile == ys.max() // self.tile and xs.min() // self.tile == xs.max() // self.tile
        if not one_tile or self.instances[ys, xs].any() or not np.isin(lc[ys, xs], allowed).all():
            return False
        self.targets.append(t)
        self.instances[ys, xs] = len(self.targets)
        body, peak = 10 ** (TARGET_DB["body"] / 10), 10 ** (TARGET_DB["strong"] / 10)
        self.points[win] += np.where(strong, peak, np.where(mask, body, 0.0)).astype(np.float32)
        return True

    def random_pixel(self, allowed: tuple[int, ...], rng) -> tuple[float, float] | None:
        ys, xs = np.nonzero(np.isin(self.layout.landcover, allowed))
        if len(ys) == 0:
            return None
        i = int(rng.integers(len(ys)))
        return float(xs[i]) + 0.5, float(ys[i]) + 0.5


def _ships(p: _Placer, rng):
    kinds = list(SHIP_CLASSES)
    wanted = int(rng.integers(2, 7)) if p.layout.kind == "port" else int(rng.integers(0, 3))
    for _ in range(wanted):
        for kind in reversed(kinds[: int(rng.integers(1, len(kinds) + 1))]):  # fall back to smaller classes
            lo, hi = SHIP_CLASSES[kind]
            length = float(rng.uniform(lo, hi))
            for _ in range(15):
                at = p.random_pixel((LC["water"],), rng)
                if at and p.try_add(Target("ship", kind, length, round(length / 6.5, 1), float(rng.uniform(0, 360)), *at), (LC["water"],)):
                    break
            else:
                continue
            break


def _aircraft(p: _Placer, rng):
    if p.layout.apron is None:
        return
    u0, u1, v0, v1, angle = p.layout.apron
    res, (h, w) = p.layout.res, p.layout.landcover.shape
    c, s = np.cos(angle), np.sin(angle)
    heading = float(np.degrees(np.arctan2(-c, s)) % 360)  # nose towards the taxiway (-u)
    spacing = max(span for _, span in AIRCRAFT_TYPES.values()) + 15.0
    u = (u0 + u1) / 2
    for v in np.arange(v0 + spacing / 2, v1 - spacing / 2 + 1e-6, spacing):
        if rng.random() > 0.75:
            continue
        kind = str(rng.choice(list(AIRCRAFT_TYPES)))
        length, span = AIRCRAFT_TYPES[kind]
        x, y = (u * c - v * s + w * res / 2) / res, (u * s + v * c + h * res / 2) / res
        p.try_add(Target("aircraft", kind, length, span, heading, x, y), (LC["airport"],))


def _tanks(p: _Placer, rng):
    at = p.random_pixel((LC["industrial"], LC["port"]), rng) if rng.random() < 0.6 else None
    if at is None:
        return
    d = float(rng.uniform(*TANK_DIAMETERS_M))
    n = int(rng.integers(2, 4))
    for i in range(n):
        for j in range(n):
            x, y = at[0] + i * 1.4 * d / p.layout.res, at[1] + j * 1.4 * d / p.layout.res
            p.try_add(Target("storage tank", "storage tank", d, d, 0.0, x, y), (LC["industrial"], LC["port"]))


def _vehicles(p: _Placer, rng):
    if p.layout.res > VEHICLE_MAX_RES_M:
        return
    for _ in range(int(rng.integers(0, 10))):
        at = p.random_pixel((LC["road"], LC["airport"]), rng)
        if at:
            p.try_add(Target("vehicle", "vehicle", *VEHICLE_SIZE_M, float(rng.choice([0, 90, 180, 270])), *at), (LC["road"], LC["airport"]))


def place_targets(layout: Layout, tile: int, rng: np.random.Generator):
    """Place ships, aircraft, tanks and vehicles; return (targets, instance map (id + 1), point image)."""
    p = _Placer(layout, tile)
    for place in (_aircraft, _ships, _tanks, _vehicles):
        place(p, rng)
    return p.targets, p.instances, p.points
