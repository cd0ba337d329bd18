"""What the image itself shows, by classical SAR methods in numpy/scipy: water by thresholding dB (Otsu per
polarization with a bimodality check, else a fixed open-water threshold), bright targets by cell-averaging CFAR
(ships only on water), their size from the pixel spacing, and built-up areas from the density of strong scatterers.

Every function takes dB arrays (NaN = nodata) and a KnowledgeConfig; none reads files.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..vocab import LANDCOVER_INDEX, LANDCOVER_NODATA, SHIP_CLASSES, grid_cell
from .config import KnowledgeConfig

CO_POLS = ("VV", "HH")


def _filled(db: np.ndarray) -> np.ndarray:
    """NaNs replaced by the median (so filters do not spread them)."""
    finite = np.isfinite(db)
    return np.where(finite, db, np.nanmedian(db) if finite.any() else 0.0)


def smooth_db(db: np.ndarray, size: int) -> np.ndarray:
    """Boxcar mean of linear power, back in dB (a speckle filter); NaN stays NaN."""
    if size <= 1:
        return db
    lin = ndimage.uniform_filter(10 ** (_filled(db) / 10), size)
    return np.where(np.isfinite(db), 10 * np.log10(np.maximum(lin, 1e-12)), np.nan)


def otsu_threshold(values: np.ndarray, bins: int = 256, value_range: tuple[float, float] | None = None) -> float:
    """Otsu's threshold: the histogram split that maximises the between-class variance."""
    v = values[np.isfinite(values)]
    hist, edges = np.histogram(v, bins=bins, range=value_range or (float(v.min()), float(v.max())))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def valley_ratio(values: np.ndarray, threshold: float, value_range: tuple[float, float], bins: int) -> float:
    """The smoothed histogram's lowest point between the peaks either side of `threshold`, over the lower of the
    two peaks: near 0 for two separate modes, 1 when the threshold sits on a single peak."""
    hist, edges = np.histogram(values[np.isfinite(values)], bins=bins, range=value_range)
    hist = ndimage.gaussian_filter1d(hist.astype(float), 2)
    i = int(np.clip(np.searchsorted((edges[:-1] + edges[1:]) / 2, threshold), 1, bins - 1))
    left, right = int(np.argmax(hist[:i])), i + int(np.argmax(hist[i:]))
    peak = min(hist[left], hist[right])
    return float(hist[left:right + 1].min() / peak) if peak > 0 else 1.0


def bimodality(values: np.ndarray, threshold: float, value_range: tuple[float, float] | None = None,
               bins: int = 200) -> tuple[float, float, float]:
    """(Ashman's D of the two classes a threshold splits, the smaller class's share, the histogram's valley ratio)."""
    v = values[np.isfinite(values)]
    lo, hi = v[v < threshold], v[v >= threshold]
    if len(lo) < 2 or len(hi) < 2:
        return 0.0, 0.0, 1.0
    d = math.sqrt(2) * abs(hi.mean() - lo.mean()) / math.sqrt(lo.var() + hi.var() + 1e-12)
    ratio = valley_ratio(v, threshold, value_range or (float(v.min()), float(v.max())), bins)
    return float(d), min(len(lo), len(hi)) / len(v), ratio


def is_bimodal(values: np.ndarray, threshold: float, value_range, cfg: KnowledgeConfig) -> bool:
    d, share, valley = bimodality(values, threshold, value_range)
    return d >= cfg.bimodal_min_ashman_d and share >= cfg.bimodal_min_fraction and valley <= cfg.bimodal_max_valley


def water_threshold(db: np.ndarray, pol: str, calibrated: bool, cfg: KnowledgeConfig) -> tuple[float | None, str]:
    """The dB below which a pixel of this polarization is water, and how it was chosen (None: no threshold).

    Split-based (Martinis et al. 2009): Otsu on the pixels of the blocks whose own histograms are bimodal (land
    and water both in them); else Otsu on the whole tile if it is bimodal; else a fixed open-water threshold
    (calibrated sigma0 only)."""
    rng = cfg.otsu_range_db if calibrated else (float(np.nanmin(db)), float(np.nanmax(db)))
    b = cfg.split_block_px
    blocks = [db[r:r + b, c:c + b] for r in range(0, db.shape[0] - b + 1, b) for c in range(0, db.shape[1] - b + 1, b)]
    chosen = [blk for blk in blocks if np.isfinite(blk).mean() > 0.9
              and is_bimodal(blk, otsu_threshold(blk, cfg.otsu_bins, rng), rng, cfg)]
    if chosen:
        t = otsu_threshold(np.concatenate([c.ravel() for c in chosen]), cfg.otsu_bins, rng)
        return t, f"split-based Otsu {t:.1f} dB ({len(chosen)} of {len(blocks)} blocks bimodal)"
    t = otsu_threshold(db, cfg.otsu_bins, rng)
    d, share, valley = bimodality(db, t, rng)
    stats = f"Ashman D {d:.1f}, smaller class {share:.0%}, valley {valley:.2f}"
    if is_bimodal(db, t, rng, cfg):
        return t, f"Otsu {t:.1f} dB (tile bimodal: {stats})"
    if calibrated and pol in cfg.fixed_water_db:
        t = cfg.fixed_water_db[pol]
        return t, f"fixed {t:.1f} dB (no bimodal histogram: {stats})"
    return None, f"none (uncalibrated, no bimodal histogram: {stats})"


def water_mask(bands: dict[str, np.ndarray], calibrated: bool, cfg: KnowledgeConfig) -> tuple[np.ndarray | None, dict]:
    """Water where every polarization with a threshold is below it (speckle-filtered, small specks removed).

    Returns (mask or None when no polarization gives a threshold, {pol: how its threshold was chosen})."""
    masks, how = [], {}
    for pol, db in bands.items():
        sm = smooth_db(db, cfg.smooth_px)
        t, how[pol] = water_threshold(sm, pol, calibrated, cfg)
        if t is not None:
            masks.append(sm < t)
    if not masks:
        return None, how
    mask = np.logical_and.reduce(masks)
    lab, n = ndimage.label(mask)
    if n:
        sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
        mask = np.isin(lab, 1 + np.flatnonzero(sizes >= cfg.min_water_px))
    return mask, how


def co_pol(bands: dict[str, np.ndarray]) -> np.ndarray:
    """The co-polarized band (VV or HH), else the first."""
    return next((bands[p] for p in CO_POLS if p in bands), next(iter(bands.values())))


def cfar_alpha(n_train: int, pfa: float) -> float:
    """Cell-averaging CFAR factor for exponential clutter: alpha = N (Pfa^(-1/N) - 1)."""
    return n_train * (pfa ** (-1.0 / n_train) - 1.0)


def cfar_detect(db: np.ndarray, cfg: KnowledgeConfig) -> np.ndarray:
    """Pixels brighter than alpha times the mean of their background ring (cell-averaging CFAR on intensity)."""
    lin = 10 ** (_filled(db) / 10)
    if cfg.cfar_smooth_px > 1:
        lin = ndimage.uniform_filter(lin, cfg.cfar_smooth_px)
    t, g = 2 * cfg.cfar_train_px + 1, 2 * cfg.cfar_guard_px + 1
    n = t * t - g * g
    ring = (ndimage.uniform_filter(lin, t) * t * t - ndimage.uniform_filter(lin, g) * g * g) / n
    factor = max(cfar_alpha(n, cfg.cfar_pfa), 10 ** (cfg.cfar_min_contrast_db / 10))
    return (lin > factor * ring) & np.isfinite(db)


def ship_type(length_m: float) -> str:
    """The ship length class (vocab.SHIP_CLASSES) a length falls in, or the nearest one."""
    return min(SHIP_CLASSES, key=lambda c: 0 if SHIP_CLASSES[c][0] <= length_m <= SHIP_CLASSES[c][1]
               else min(abs(length_m - SHIP_CLASSES[c][0]), abs(length_m - SHIP_CLASSES[c][1])))


def _shape(ys: np.ndarray, xs: np.ndarray) -> tuple[float, float, float]:
    """(length, width in pixels along the principal axes, heading in degrees from north, clockwise)."""
    if len(xs) < 2:
        return 1.0, 1.0, 0.0
    pts = np.stack([xs - xs.mean(), ys - ys.mean()])
    vals, vecs = np.linalg.eigh(np.cov(pts))
    major = vecs[:, 1]
    along, across = major @ pts, vecs[:, 0] @ pts
    heading = math.degrees(math.atan2(major[0], -major[1])) % 180
    return float(np.ptp(along) + 1), float(np.ptp(across) + 1), heading


def find_targets(bands: dict[str, np.ndarray], water: np.ndarray | None, res_m: float | None,
                 builtup: np.ndarray | None, cfg: KnowledgeConfig) -> tuple[list[dict], str]:
    """Bright targets: CFAR detections grouped into objects; ships where their surroundings are water, aircraft
    on land of the right size where there is little built-up area around them (the target's own strong
    scatterers left out); returns (targets, note)."""
    db = co_pol(bands)
    h, w = db.shape
    det = cfar_detect(db, cfg)
    merge = max(cfg.merge_px, round(cfg.merge_m / 2 / res_m) if res_m else 0)  # dilating both by half the gap
    grouped = ndimage.binary_dilation(det, np.ones((2 * merge + 1,) * 2)) if merge else det
    lab, n = ndimage.label(grouped)
    lab[~det] = 0
    water = water if water is not None else np.zeros_like(det)
    targets = []
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        ys, xs = np.nonzero(lab[sl] == k)
        if len(xs) < cfg.min_target_px:
            continue
        ys, xs = ys + sl[0].start, xs + sl[1].start
        pad = cfg.cfar_guard_px
        y0, y1, x0, x1 = max(0, sl[0].start - pad), min(h, sl[0].stop + pad), max(0, sl[1].start - pad), min(w, sl[1].stop + pad)
        ring = ~det[y0:y1, x0:x1]
        on_water = ring.any() and water[y0:y1, x0:x1][ring].mean() >= cfg.ship_on_water_fraction
        length_px, width_px, heading = _shape(ys, xs)
        length_m = length_px * res_m if res_m else None
        if on_water:
            lo, hi = cfg.ship_length_m
            if length_m is not None and not lo <= length_m <= hi:
                continue
            cls, typ = "ship", ship_type(length_m) if length_m is not None else "ship of unknown length"
        else:
            lo, hi = cfg.aircraft_length_m
            if length_m is not None and not lo <= length_m <= hi:
                continue
            if builtup is not None:
                m = cfg.builtup_window_px
                around = builtup.copy()
                around[max(0, y0 - m):y1 + m, max(0, x0 - m):x1 + m] = False
                if around.mean() >= cfg.aircraft_max_builtup:
                    continue
            cls, typ = "aircraft", "unidentified aircraft"
        cx, cy = float(xs.mean()), float(ys.mean())
        targets.append({"class": cls, "type": typ, "length_m": round(length_m, 1) if length_m is not None else None,
                        "width_m": round(width_px * res_m, 1) if res_m else None, "heading_deg": round(heading, 1),
                        "bbox": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                        "center": [round(cx, 1), round(cy, 1)], "grid_cell": grid_cell(cx, cy, w, h),
                        "pixels": int(len(xs))})
    if len(targets) > cfg.max_targets:
        return [], f"{len(targets)} CFAR objects: clutter, not reported as targets"
    for i, t in enumerate(targets):
        t["id"] = i
    return targets, f"{len(targets)} CFAR objects (Pfa {cfg.cfar_pfa:g}, guard {cfg.cfar_guard_px} px, train {cfg.cfar_train_px} px)"


def strong_scatterers(bands: dict[str, np.ndarray], calibrated: bool, cfg: KnowledgeConfig) -> np.ndarray:
    """Co-pol pixels brighter than the strong-scatterer level (absolute when calibrated, else above the median)."""
    db = co_pol(bands)
    level = cfg.strong_scatterer_db if calibrated else float(np.nanmedian(db)) + cfg.strong_scatterer_relative_db
    return np.isfinite(db) & (_filled(db) > level)


def builtup_mask(bands: dict[str, np.ndarray], water: np.ndarray | None, calibrated: bool,
                 cfg: KnowledgeConfig) -> np.ndarray:
    """Land where the local density of strong scatterers reaches cfg.builtup_min_density."""
    density = ndimage.uniform_filter(strong_scatterers(bands, calibrated, cfg).astype(np.float32), cfg.builtup_window_px)
    mask = density >= cfg.builtup_min_density
    return mask & ~water if water is not None else mask


def landcover_map(valid: np.ndarray, water: np.ndarray | None, builtup: np.ndarray) -> np.ndarray:
    """uint8 classes (vocab.LANDCOVER_CLASSES): water, urban (built-up), the remaining land as farmland
    (inferred: open land the image methods cannot split further), nodata where the tile has no data."""
    lc = np.full(valid.shape, LANDCOVER_INDEX["farmland"], np.uint8)
    lc[builtup] = LANDCOVER_INDEX["urban"]
    if water is not None:
        lc[water] = LANDCOVER_INDEX["water"]
    lc[~valid] = LANDCOVER_NODATA
    return lc
