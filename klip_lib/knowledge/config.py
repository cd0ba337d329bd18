"""Every parameter of the knowledge layer for real tiles, in one dataclass (the defaults are documented choices,
made before looking at any real label, not tuned on them)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class KnowledgeConfig:
    # --- water / land (image, classical thresholding of calibrated dB) ---
    smooth_px: int = 5  # boxcar on linear power before thresholding (speckle)
    otsu_range_db: tuple[float, float] = (-40.0, 10.0)  # dB values Otsu's histogram spans
    otsu_bins: int = 256  # histogram bins for Otsu
    bimodal_min_ashman_d: float = 2.0  # Ashman's D of the two Otsu classes above which the histogram is bimodal
    bimodal_min_fraction: float = 0.1  # the smaller Otsu class must hold at least this share of pixels
    bimodal_max_valley: float = 0.7  # the histogram between the two peaks must dip to this share of the lower one
    split_block_px: int = 64  # blocks of the split-based threshold (Martinis et al. 2009)
    fixed_water_db: dict[str, float] = field(default_factory=lambda: {"VV": -18.0, "HH": -18.0, "VH": -24.0,
                                                                       "HV": -24.0})
    # ^ fallback thresholds (sigma0 dB) when a calibrated histogram is not bimodal (open-water literature values)
    min_water_fraction: float = 0.01  # water is "present" from this share of the tile on
    min_water_px: int = 50  # water components smaller than this are dropped (dark shadows, speckle)
    # --- bright targets (cell-averaging CFAR on linear intensity) ---
    cfar_guard_px: int = 8  # half side of the guard window: half the longest expected target (160 m at 10 m)
    cfar_train_px: int = 20  # half side of the training window (background ring = train minus guard)
    merge_px: int = 2  # detections this close are one target (fragments and sidelobes of one scatterer)
    merge_m: float = 10.0  # ... and this close in metres where the pixel spacing is known: the scattering centres
    # of one ship or aircraft (hull, superstructure, engines, wing edges) lie within about this of each other
    cfar_smooth_px: int = 3  # boxcar on intensity before CFAR (multilooking: single-pixel clutter spikes vanish)
    cfar_pfa: float = 1e-6  # false-alarm probability per pixel (exponential clutter)
    cfar_min_contrast_db: float = 6.0  # a detection must also exceed its background by this much
    min_target_px: int = 4  # smaller detections are noise
    ship_on_water_fraction: float = 0.6  # a target is on water when this share of its surrounding ring is water
    ship_length_m: tuple[float, float] = (8.0, 400.0)  # lengths a ship can have
    aircraft_length_m: tuple[float, float] = (20.0, 80.0)  # lengths an aircraft can have
    aircraft_max_builtup: float = 0.05  # aircraft are looked for on land only where built-up density is below this
    max_targets: int = 200  # more detections than this on one tile are clutter, not targets (none are reported)
    # --- built-up density (strong scatterers) ---
    strong_scatterer_db: float = 0.0  # calibrated co-pol sigma0 above this is a strong (double-bounce) scatterer
    strong_scatterer_relative_db: float = 12.0  # uncalibrated: this far above the tile's median
    builtup_window_px: int = 15  # window over which the strong-scatterer density is measured
    builtup_min_density: float = 0.05  # a window with this share of strong scatterers is built-up
    # --- geography (L1) ---
    min_city_population: int = 15000  # nearest GeoNames place with at least this population
    coastal_km: float = 10.0  # a tile within this distance of the coast is coastal
    coast_search_km: float = 60.0  # the coastline is searched this far from the tile centre
