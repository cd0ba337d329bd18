"""The shared vocabulary of ground truth: land-cover classes, target types, the 3x3 grid.

The simulator writes facts in these words, HCoT realises and checks captions in them, and the
downstream tasks (classification labels, VQA answers, segmentation classes) score against them.
Plain data only: importable everywhere, including the GPU machine without the geo stack.
"""

from __future__ import annotations

# Land-cover mask values (uint8 GeoTIFF). 255 is nodata.
LANDCOVER_CLASSES: tuple[str, ...] = (
    "water",  # 0 rivers, lakes, sea, port basins' open water
    "urban",  # 1 residential / commercial blocks
    "industrial",  # 2 large-roof industrial estates, storage
    "farmland",  # 3 cultivated parcels
    "forest",  # 4 woodland
    "bare",  # 5 bare soil, rock, sand
    "road",  # 6 roads and highways
    "airport",  # 7 runways, taxiways, aprons
    "port",  # 8 quays, docks and container yards (the land side of a port)
)
LANDCOVER_NODATA = 255
LANDCOVER_INDEX = {name: i for i, name in enumerate(LANDCOVER_CLASSES)}

TERRAIN_CLASSES: tuple[str, ...] = ("plain", "hilly", "mountain")

# Target classes and, within each, the types the simulator draws (with real dimensions in metres).
AIRCRAFT_TYPES: dict[str, tuple[float, float]] = {
    # type: (length_m, wingspan_m) from the manufacturers' published figures
    "A220": (35.0, 35.1),
    "A320/321": (41.8, 35.8),  # A321 length 44.5, A320 37.6; SAR-ACD groups them
    "A330": (63.7, 60.3),
    "ARJ21": (33.5, 27.3),
    "Boeing737": (39.5, 35.8),  # 737-800
    "Boeing787": (56.7, 60.1),  # 787-8
}
SHIP_CLASSES: dict[str, tuple[float, float]] = {
    # length class: (min_length_m, max_length_m); width is about length / 6.5
    "small boat": (10.0, 30.0),
    "fishing vessel": (30.0, 60.0),
    "cargo ship": (100.0, 200.0),
    "tanker": (200.0, 330.0),
}
TARGET_CLASSES: tuple[str, ...] = ("ship", "aircraft", "storage tank", "vehicle")

# 3x3 grid positions, row-major from the top-left (north-up image).
GRID_CELLS: tuple[str, ...] = (
    "top-left", "top", "top-right",
    "left", "center", "right",
    "bottom-left", "bottom", "bottom-right",
)


def grid_cell(x: float, y: float, width: int, height: int) -> str:
    """Name the 3x3 grid cell that pixel (x, y) falls in, for an image of width x height."""
    col = min(2, max(0, int(3 * x / width)))
    row = min(2, max(0, int(3 * y / height)))
    return GRID_CELLS[3 * row + col]


# The 16 caption dimensions (FUSAR-GEOVL): eight landform, eight target-centred.
LANDFORM_DIMENSIONS: tuple[str, ...] = (
    "Terrain", "Functionality", "Distribution", "Layout", "Boundary", "Buildings", "Roads", "Water",
)
TARGET_DIMENSIONS: tuple[str, ...] = (
    "Count", "Location", "Feature", "Size", "Category", "TargetDistribution", "Region", "Environment",
)
CAPTION_DIMENSIONS: tuple[str, ...] = LANDFORM_DIMENSIONS + TARGET_DIMENSIONS
