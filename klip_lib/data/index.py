"""The GeoParquet index: a row per tile, written atomically (never a partial file)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import InputError

INDEX_COLUMNS: tuple[str, ...] = (
    "tile_id", "path", "geometry", "crs", "city", "country", "platform", "band", "polarizations",
    "resolution_m", "incidence_deg", "width", "height", "split", "scene_id", "landcover_path", "facts_path",
    "source", "note",
)


def write_index(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write `rows` (dicts with INDEX_COLUMNS; geometry a shapely polygon in EPSG:4326 or None) as GeoParquet.

    The table goes to a temporary file in the same folder and is renamed over `path`, so readers see
    either the old index or the complete new one."""
    import geopandas as gpd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    missing = [c for row in rows[:1] for c in INDEX_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"index rows for {path} lack columns {missing}")
    gdf = gpd.GeoDataFrame([{c: r[c] for c in INDEX_COLUMNS} for r in rows], columns=list(INDEX_COLUMNS),
                           geometry="geometry", crs="EPSG:4326")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        gdf.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_index(path: str | os.PathLike, columns: list[str] | None = None):
    """Read an index as a GeoDataFrame (geometry in EPSG:4326; empty footprints are None); with `columns`, only
    those, as a pandas DataFrame (no geo stack needed). A missing or unreadable file raises naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such index; run `klip simulate --out {path.parent}` or import a folder first")
    try:
        if columns is not None:
            import pandas as pd

            return pd.read_parquet(path, columns=columns)
        import geopandas as gpd

        return gpd.read_parquet(path)
    except Exception as e:  # pyarrow's errors do not name the file
        raise InputError(f"{path}: not a readable index ({type(e).__name__}: {e}); give the index.parquet that "
                         "`klip simulate` or the importer wrote") from None


def tile_path(index_path: str | os.PathLike, relative: str) -> Path:
    """Absolute path of a file named in the index (paths are stored relative to the index's folder)."""
    return (Path(index_path).parent / relative).resolve()
