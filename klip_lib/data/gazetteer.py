"""Real cities the simulator places scenes in: the geography HCoT's L1 level reasons about.

Coordinates are the city centres (WGS84). `port` / `airport` say whether the city has a major
seaport / a commercial airport; `terrain` is the relief most of its surroundings have.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class City:
    name: str  # city name as written in captions
    country: str  # country name
    continent: str  # continent name
    lat: float  # latitude of the centre, degrees north
    lon: float  # longitude of the centre, degrees east
    climate: str  # climate zone in words (Koppen group)
    coastal: bool  # on a sea coast
    river: bool  # on a major river
    port: bool  # has a major seaport
    airport: bool  # has a commercial airport
    terrain: str  # usual relief around it, one of vocab.TERRAIN_CLASSES


CITIES: tuple[City, ...] = (
    City("Shanghai", "China", "Asia", 31.23, 121.47, "humid subtropical", True, True, True, True, "plain"),
    City("Beijing", "China", "Asia", 39.90, 116.40, "humid continental", False, False, False, True, "plain"),
    City("Wuhan", "China", "Asia", 30.59, 114.31, "humid subtropical", False, True, True, True, "plain"),
    City("Chongqing", "China", "Asia", 29.56, 106.55, "humid subtropical", False, True, True, True, "mountain"),
    City("Guangzhou", "China", "Asia", 23.13, 113.26, "humid subtropical", True, True, True, True, "hilly"),
    City("Qingdao", "China", "Asia", 36.07, 120.38, "humid continental", True, False, True, True, "hilly"),
    City("Tianjin", "China", "Asia", 39.34, 117.36, "humid continental", True, True, True, True, "plain"),
    City("Kunming", "China", "Asia", 25.04, 102.71, "subtropical highland", False, False, False, True, "mountain"),
    City("Tokyo", "Japan", "Asia", 35.68, 139.69, "humid subtropical", True, True, True, True, "plain"),
    City("Singapore", "Singapore", "Asia", 1.35, 103.82, "tropical rainforest", True, False, True, True, "plain"),
    City("Mumbai", "India", "Asia", 19.08, 72.88, "tropical wet and dry", True, False, True, True, "plain"),
    City("Dubai", "United Arab Emirates", "Asia", 25.20, 55.27, "hot desert", True, False, True, True, "plain"),
    City("Rotterdam", "Netherlands", "Europe", 51.92, 4.48, "temperate oceanic", True, True, True, True, "plain"),
    City("Hamburg", "Germany", "Europe", 53.55, 9.99, "temperate oceanic", False, True, True, True, "plain"),
    City("Paris", "France", "Europe", 48.86, 2.35, "temperate oceanic", False, True, False, True, "plain"),
    City("Madrid", "Spain", "Europe", 40.42, -3.70, "hot-summer mediterranean", False, False, False, True, "hilly"),
    City("Valencia", "Spain", "Europe", 39.47, -0.38, "hot semi-arid", True, True, True, True, "plain"),
    City("Marseille", "France", "Europe", 43.30, 5.37, "hot-summer mediterranean", True, False, True, True, "hilly"),
    City("Zurich", "Switzerland", "Europe", 47.38, 8.54, "temperate oceanic", False, True, False, True, "mountain"),
    City("Istanbul", "Turkey", "Europe", 41.01, 28.98, "hot-summer mediterranean", True, False, True, True, "hilly"),
    City("Cairo", "Egypt", "Africa", 30.04, 31.24, "hot desert", False, True, False, True, "plain"),
    City("Lagos", "Nigeria", "Africa", 6.52, 3.38, "tropical wet and dry", True, False, True, True, "plain"),
    City("Cape Town", "South Africa", "Africa", -33.92, 18.42, "warm-summer mediterranean", True, False, True, True, "mountain"),
    City("Nairobi", "Kenya", "Africa", -1.29, 36.82, "subtropical highland", False, False, False, True, "hilly"),
    City("New York", "United States", "North America", 40.71, -74.01, "humid subtropical", True, True, True, True, "plain"),
    City("Los Angeles", "United States", "North America", 34.05, -118.24, "hot-summer mediterranean", True, False, True, True, "hilly"),
    City("Chicago", "United States", "North America", 41.88, -87.63, "humid continental", False, True, True, True, "plain"),
    City("Seattle", "United States", "North America", 47.61, -122.33, "warm-summer mediterranean", True, False, True, True, "hilly"),
    City("Denver", "United States", "North America", 39.74, -104.99, "cold semi-arid", False, False, False, True, "mountain"),
    City("Vancouver", "Canada", "North America", 49.28, -123.12, "temperate oceanic", True, True, True, True, "mountain"),
    City("Mexico City", "Mexico", "North America", 19.43, -99.13, "subtropical highland", False, False, False, True, "mountain"),
    City("Sao Paulo", "Brazil", "South America", -23.55, -46.63, "humid subtropical", False, False, False, True, "hilly"),
    City("Rio de Janeiro", "Brazil", "South America", -22.91, -43.17, "tropical wet and dry", True, False, True, True, "mountain"),
    City("Buenos Aires", "Argentina", "South America", -34.60, -58.38, "humid subtropical", True, True, True, True, "plain"),
    City("Manaus", "Brazil", "South America", -3.12, -60.02, "tropical rainforest", False, True, True, True, "plain"),
    City("Sydney", "Australia", "Oceania", -33.87, 151.21, "humid subtropical", True, False, True, True, "hilly"),
    City("Perth", "Australia", "Oceania", -31.95, 115.86, "hot-summer mediterranean", True, True, True, True, "plain"),
)

CITY_BY_NAME: dict[str, City] = {c.name.lower(): c for c in CITIES}

# Default geographic hold-out: whole cities go to val or test, so no scene straddles two splits.
VAL_CITIES: tuple[str, ...] = ("Hamburg", "Qingdao", "Sydney", "Cairo", "Denver")
TEST_CITIES: tuple[str, ...] = ("Rotterdam", "Chongqing", "Seattle", "Lagos", "Rio de Janeiro")


def get_city(name: str) -> City:
    """The city called `name` (case-insensitive); an unknown name raises with the known ones."""
    try:
        return CITY_BY_NAME[name.strip().lower()]
    except KeyError:
        known = ", ".join(c.name for c in CITIES)
        raise InputError(f"unknown city {name!r}: choose from {known}") from None


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone containing (lon, lat)."""
    zone = min(60, int((lon + 180.0) // 6.0) + 1)
    return (32600 if lat >= 0 else 32700) + zone


def split_of_cities(names: list[str]) -> dict[str, str]:
    """Map each city name to "train"/"val"/"test" (held-out cities).

    The default held-out lists are used where they meet `names`; when `names` has at least three
    cities and a split would be empty, the last train city (alphabetically) moves into it.
    """
    split = {n: "val" if n in VAL_CITIES else "test" if n in TEST_CITIES else "train" for n in names}
    for wanted in ("test", "val"):
        train = sorted(n for n, s in split.items() if s == "train")
        if len(names) >= 3 and wanted not in split.values() and len(train) > 1:
            split[train[-1]] = wanted
    return split


def nearest_city(lon: float, lat: float, max_km: float = 100.0) -> City | None:
    """The gazetteer city nearest to (lon, lat) within `max_km` (great-circle), else None."""
    import math

    best, best_km = None, max_km
    for c in CITIES:
        p1, p2 = math.radians(lat), math.radians(c.lat)
        dl = math.radians(c.lon - lon)
        h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
        km = 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))
        if km <= best_km:
            best, best_km = c, km
    return best
