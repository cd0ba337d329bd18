"""Import a folder of the user's rasters (GeoTIFFs in any CRS, JPEG/PNG/uint16 chips) into the index format.

Every readable raster is converted to float32 sigma0 dB tiles under `out/tiles/` (large rasters are cut
into windows); every unusable file is skipped with a one-line reason in the report. The index is written
once at the end, atomically, so a failure never leaves a partial index.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .gazetteer import nearest_city
from .physics import amplitude_to_db, linear_to_db

POL_NAMES = {"VV", "VH", "HH", "HV"}
ASSUMED_POLS = {1: ["VV"], 2: ["VV", "VH"], 4: ["HH", "HV", "VH", "VV"]}  # when the file does not name its bands
CHIP_SUFFIXES = {".jpg", ".jpeg", ".png"}
MAX_LABEL_VALUES = 3  # an integer raster with this few distinct values is a class mask, not an image
POL_FILE = re.compile(r"^(?P<scene>.+?)[_.-](?P<pol>HH|HV|VH|VV)$", re.IGNORECASE)
"""A single-polarization file of a scene: `1_HH.tiff`, `scene-vv.tif` (grouped with its scene's other files)."""
RASTER_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg"}
SHIP_CLASS = re.compile(r"(?:^|[_\-\s])(bulk[_\- ]?carrier|container[_\- ]?ship|general[_\- ]?cargo|cargo|tanker|fishing|"
                        r"passenger|tug|dredging|search|sailing|pleasure|high[_\- ]?speed|other)(?=$|[_\-\s\d])",
                        re.IGNORECASE)
"""OpenSARShip's ship classes, read from a patch's file name (the class becomes the tile's label)."""
GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
              "int32": "Int32", "float32": "Float32", "float64": "Float64"}


class SkipFile(Exception):
    """Raised with the reason a file cannot be imported."""


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)  # tile ids written
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def lines(self) -> list[str]:
        """One line per skipped file, then a summary line."""
        out = [f"skipped {f}: {why}" for f, why in self.skipped]
        return out + [f"imported {len(self.imported)} tiles, skipped {len(self.skipped)} files"]


def _split_for(key: str) -> str:
    """Deterministic 70/15/15 split of a city or scene name (whole groups, never single tiles)."""
    h = int(hashlib.sha1(key.encode()).hexdigest(), 16) % 100
    return "train" if h < 70 else "val" if h < 85 else "test"


def guess_encoding(sample: np.ndarray, dtype: str) -> str:
    """How a file stores its values, from a sample of the whole file: integers are amplitude (digital numbers);
    floats with negative values are dB, non-negative floats linear power."""
    if dtype.startswith(("uint", "int")):
        return "amplitude"
    return "db" if (sample[np.isfinite(sample)] < 0).any() else "linear"


def _file_sample(path: Path, max_px: int = 512) -> np.ndarray:
    """The whole raster read at most `max_px` on a side (decimated): what the per-file decisions look at."""
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as src:
            scale = max(1, -(-max(src.width, src.height) // max_px))
            shape = (src.count, max(1, src.height // scale), max(1, src.width // scale))
            return np.ma.filled(src.read(out_shape=shape, masked=True).astype(np.float32), np.nan)


def _to_db(data: np.ndarray, dtype: str, encoding: str) -> tuple[np.ndarray, str]:
    """Convert raw values to dB as `encoding` ("db", "linear" or "amplitude", decided per file) says; returns the
    array and a note on what was done."""
    if encoding == "db":
        return data, "sigma0 dB as stored"
    if encoding == "linear":
        return linear_to_db(np.where(data > 0, data, np.nan)), "linear power converted to dB"
    note = "amplitude converted to dB (20 log10)" + (", uncalibrated digital numbers: relative dB" if dtype.startswith(("uint", "int")) else "")
    return amplitude_to_db(np.where(data > 0, data, np.nan)), note


def _windows(width: int, height: int, tile: int, max_size: int):
    """Whole raster when it is at most max_size; else tile x tile windows (col, row, w, h)."""
    if width <= max_size and height <= max_size:
        return [(0, 0, width, height)]
    return [(c, r, min(tile, width - c), min(tile, height - r)) for r in range(0, height, tile) for c in range(0, width, tile)]


def _inspect(path: Path):
    """Open and check one file; return (rasterio dataset profile info, polarizations, notes, is_chip)."""
    import rasterio

    if path.stat().st_size == 0:
        raise SkipFile("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            src = rasterio.open(path)
    except Exception as e:  # rasterio raises RasterioIOError / CPLE errors for non-rasters and broken headers
        raise SkipFile(f"not a readable raster: corrupt, truncated or not an image ({str(e).splitlines()[0][:120]})") from None
    with src:
        dtype, count, crs = src.dtypes[0], src.count, src.crs
        is_chip = path.suffix.lower() in CHIP_SUFFIXES or (crs is None and dtype.startswith("uint"))
        if crs is None and not is_chip:
            raise SkipFile("no CRS: a float GeoTIFF without georeference; set its CRS (e.g. gdal_edit.py -a_srs) and re-import")
        if is_chip and count == 3:
            count = 1  # a greyscale chip stored as RGB: checked to have equal channels when read
        if count not in ASSUMED_POLS:
            raise SkipFile(f"wrong band count: {src.count} bands; expected 1 (single pol), 2 (dual pol) or 4 (quad pol)")
        descs = [d.upper() if d else "" for d in src.descriptions][:count]
        if all(d in POL_NAMES for d in descs):
            pols, note = descs, ""
        else:
            pols, note = ASSUMED_POLS[count], f"polarizations not named in the file: assumed {','.join(ASSUMED_POLS[count])}"
        return dict(dtype=dtype, count=src.count, width=src.width, height=src.height), pols, note, is_chip


def _read(path: Path, window, is_chip: bool, count: int) -> np.ndarray:
    from .geotiff import read_tile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, _ = read_tile(path, window)
    except Exception as e:
        raise SkipFile(f"unreadable pixels, file corrupt or truncated ({str(e).splitlines()[0][:120]})") from None
    if is_chip and count == 3:
        if np.nanmax(np.abs(data[0] - data[1:])) > 0:
            raise SkipFile("colour chip (3 different channels): not a SAR intensity image")
        data = data[:1]
    return data


def _read_sample(path: Path) -> np.ndarray:
    try:
        return _file_sample(path)
    except Exception as e:
        raise SkipFile(f"unreadable pixels, file corrupt or truncated ({str(e).splitlines()[0][:120]})") from None


def convert_safe_products(files: list[Path], dest: Path, safe_notes: dict) -> tuple[list[Path], list[tuple[str, str]]]:
    """Sentinel-1 SAFE products among the files (a .SAFE folder, or a zip holding one) converted to one GeoTIFF
    each under `dest` (klip_lib.data.safe); their files leave the list. `safe_notes` gets {tif: note}."""
    import zipfile

    from .safe import convert_safe

    out, problems, done = [], [], set()
    for f in files:
        safe_dir = next((p for p in f.parents if (p / "manifest.safe").exists()), None)
        if safe_dir is not None:
            if safe_dir not in done:
                done.add(safe_dir)
                _convert_one(safe_dir, safe_dir, dest, safe_notes, out, problems, convert_safe)
            continue
        if f.suffix.lower() == ".zip" and zipfile.is_zipfile(f):
            with zipfile.ZipFile(f) as zf:
                if any(n.endswith("manifest.safe") for n in zf.namelist()):
                    unpacked = dest / "unpacked" / f.stem
                    zf.extractall(unpacked, [n for n in zf.namelist() if ".." not in n])
                    safe = next((p.parent for p in sorted(unpacked.rglob("manifest.safe"))), unpacked)
                    _convert_one(f, safe, dest, safe_notes, out, problems, convert_safe)
                    continue
        out.append(f)
    return out, problems


def _convert_one(name: Path, safe: Path, dest: Path, safe_notes: dict, out: list, problems: list, convert) -> None:
    try:
        tif, note = convert(safe, dest / f"{safe.name.removesuffix('.SAFE')}.tif")
    except Exception as e:  # one product's failure never loses the others
        problems.append((str(name), f"Sentinel-1 SAFE product not readable: {str(e).splitlines()[0][:160]}"))
        return
    safe_notes[tif] = note
    out.append(tif)


def extract_archives(files: list[Path], dest: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Zip archives of patches (OpenSARShip: `Patch/*.tif`, `Patch_Cal/*.tif`, a metadata XML) unpacked under
    `dest/<archive>/`: their rasters replace the archive in the file list; only the calibrated patches where an
    archive has both. Returns (files, [(archive, reason)] for archives that cannot be read)."""
    import zipfile

    out, problems = [], []
    for f in files:
        if f.suffix.lower() != ".zip":
            out.append(f)
            continue
        try:
            with zipfile.ZipFile(f) as zf:
                names = [n for n in zf.namelist() if Path(n).suffix.lower() in RASTER_SUFFIXES and ".." not in n]
                if any("patch_cal/" in n.lower() for n in names):
                    names = [n for n in names if "patch_cal/" in n.lower()]
                if not names:
                    raise SkipFile("zip archive without GeoTIFF or image patches")
                for n in names:
                    target = dest / f.stem / n
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(n))
                    out.append(target)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            problems.append((str(f), f"not a readable zip archive: corrupt or truncated ({str(e)[:100]})"))
        except SkipFile as e:
            problems.append((str(f), str(e)))
    return out, problems


def ship_class(path: Path) -> str:
    """The OpenSARShip ship class named in a patch's file name, or ''."""
    m = SHIP_CLASS.search(path.stem)
    return re.sub(r"[_\- ]+", " ", m.group(1)).title() if m else ""


def group_polarizations(files: list[Path], vrt_dir: Path) -> tuple[list[Path], dict[Path, list[Path]], list]:
    """Single-band GeoTIFFs of one scene (same folder, same stem before _HH/_HV/_VH/_VV) as one multi-band
    raster: a VRT in `vrt_dir` whose bands are named by polarization. Returns (the files to import, those VRTs
    among them -> their member files, [(file, reason)] for groups that could not be stacked: their files are
    then imported one by one)."""
    groups: dict[tuple[Path, str], dict[str, Path]] = {}
    for f in files:
        m = POL_FILE.match(f.stem)
        if m and f.suffix.lower() in (".tif", ".tiff"):
            groups.setdefault((f.parent, m["scene"]), {})[m["pol"].upper()] = f
    out, members, problems = list(files), {}, []
    for (folder, scene), pols in sorted(groups.items()):
        if len(pols) < 2:
            continue
        try:
            vrt = _stack_vrt(pols, vrt_dir / f"{re.sub(r'[^A-Za-z0-9_-]+', '_', scene)}.vrt")
        except SkipFile as e:
            problems.append((str(folder / scene), f"not grouped into one tile: {e}; its files are imported one by one"))
            continue
        for f in pols.values():
            out.remove(f)
        out.append(vrt)
        members[vrt] = [pols[p] for p in sorted(pols)]
    return out, members, problems


def _stack_vrt(pols: dict[str, Path], vrt: Path) -> Path:
    """A GDAL VRT stacking single-band files (checked to share size, CRS and transform) in HH, HV, VH, VV order."""
    from xml.sax.saxutils import escape

    import rasterio

    heads = {}
    for pol, f in pols.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with rasterio.open(f) as src:
                    heads[pol] = (src.count, src.width, src.height, src.crs, src.transform, src.dtypes[0], src.nodata,
                                  src.tags())
        except Exception as e:
            raise SkipFile(f"{f.name} is not a readable raster ({str(e).splitlines()[0][:100]})") from None
    first = next(iter(heads.values()))
    for pol, h in heads.items():
        if h[0] != 1:
            raise SkipFile(f"{pols[pol].name} has {h[0]} bands, not 1")
        if h[1:5] != first[1:5]:
            raise SkipFile(f"{pols[pol].name} differs in size, CRS or transform from {next(iter(pols.values())).name}")
    _, w, h, crs, t, dtype, nodata, tags = first
    if dtype not in GDAL_TYPES:
        raise SkipFile(f"unsupported data type {dtype}")
    meta = "".join(f'<MDI key="{escape(k)}">{escape(str(v))}</MDI>' for k, v in tags.items())
    bands = []
    for i, pol in enumerate(sorted(pols), start=1):
        nd = f"<NoDataValue>{nodata}</NoDataValue>" if nodata is not None else ""
        bands.append(f'<VRTRasterBand dataType="{GDAL_TYPES[dtype]}" band="{i}"><Description>{pol}</Description>{nd}'
                     f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(str(pols[pol].resolve()))}'
                     f'</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>')
    srs = f"<SRS>{escape(crs.to_wkt())}</SRS>" if crs else ""
    gt = f"<GeoTransform>{t.c}, {t.a}, {t.b}, {t.f}, {t.d}, {t.e}</GeoTransform>" if crs else ""
    vrt.parent.mkdir(parents=True, exist_ok=True)
    vrt.write_text(f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">{srs}{gt}<Metadata>{meta}</Metadata>'
                   + "".join(bands) + "</VRTDataset>\n")
    return vrt


def _footprint(crs, transform, w, h):
    from rasterio.warp import transform_geom
    from shapely.geometry import box, shape

    x0, y1 = transform @ (0, 0)
    x1, y0 = transform @ (w, h)
    return shape(transform_geom(crs, "EPSG:4326", box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)).__geo_interface__))


def import_folder(src: str | os.PathLike, out: str | os.PathLike, tile_size: int = 256, max_size: int = 1024,
                  encoding: str = "auto") -> tuple[Path, ImportReport]:
    """Import every file under `src` into `out` (tiles/, index.parquet, import_report.txt).

    `encoding` is "auto" (decided per file: negative floats dB, non-negative floats linear power, integers
    amplitude), or "db", "linear", "amplitude" to force one. Returns (index path, report)."""
    from rasterio.errors import NotGeoreferencedWarning
    from tqdm.auto import tqdm

    from .geotiff import read_meta, write_tile
    from .index import write_index

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"import folder {src} does not exist")
    report, rows = ImportReport(), []
    safe_notes: dict[Path, str] = {}
    files, problems = convert_safe_products(sorted(p for p in src.rglob("*") if p.is_file()), out / "safe", safe_notes)
    files, more = extract_archives(files, out / "extracted")
    problems += more
    files, grouped, more = group_polarizations(files, out / "grouped")
    report.skipped += problems + more
    for path in tqdm(files, desc="import", unit="file"):
        try:
            info, pols, pol_note, is_chip = _inspect(path)
            meta = read_meta(path)
            base = next(b for b in (out / "grouped", out / "extracted", out / "safe", src) if path.is_relative_to(b))
            name = path.relative_to(base).with_suffix("")
            stem = re.sub(r"[^A-Za-z0-9_-]+", "_", str(name))
            if path in safe_notes:
                pol_note = "; ".join(n for n in (pol_note, safe_notes[path]) if n)
            if ship_class(path):
                pol_note = "; ".join(n for n in (pol_note, f"label: {ship_class(path)} (ship class from the file name)") if n)
            if path in grouped:
                pol_note = "; ".join(n for n in (pol_note, "one tile from " + ", ".join(f.name for f in grouped[path])) if n)
            wins = _windows(info["width"], info["height"], tile_size, max_size)
            sample = _read_sample(path)  # units and masks are decided once per file, never per window
            if info["dtype"].startswith(("int", "uint")) and len(np.unique(sample[np.isfinite(sample)])) <= MAX_LABEL_VALUES:
                raise SkipFile(f"looks like a class mask ({MAX_LABEL_VALUES} or fewer distinct values), not a SAR image")
            file_encoding = guess_encoding(sample, info["dtype"]) if encoding == "auto" else encoding
            if "uncalibrated (no calibration annotation)" in safe_notes.get(path, ""):
                file_encoding = "amplitude"  # a SAFE product's DN, kept as amplitude
            written = []
            for k, win in enumerate(wins):
                data = _read(path, win, is_chip, info["count"])
                if not np.isfinite(data).any():
                    if len(wins) == 1:
                        raise SkipFile("all pixels are nodata/NaN")
                    continue
                db, conv = _to_db(data, info["dtype"], file_encoding)
                tile_id = f"{'chip' if is_chip else 'geotiff'}_{stem}" + (f"_{k:04d}" if len(wins) > 1 else "")
                transform = meta.transform @ meta.transform.translation(win[0], win[1]) if not is_chip else meta.transform
                with warnings.catch_warnings():  # chips have no geotransform on purpose
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    write_tile(out / "tiles" / f"{tile_id}.tif", dict(zip(pols, db)), meta.crs, transform, {"SOURCE_FILE": str(path)})
                written.append(_row(tile_id, path, meta, pols, win, transform, is_chip,
                                    "; ".join(n for n in (conv, pol_note) if n), stem))
            rows += written
            report.imported += [r["tile_id"] for r in written]
        except SkipFile as e:
            report.skipped.append((str(path), str(e)))
    if not rows:
        raise ValueError(f"nothing importable in {src}: " + "; ".join(report.lines()))
    index = write_index(rows, out / "index.parquet")
    (out / "import_report.txt").write_text("\n".join(report.lines()) + "\n")
    return index, report


def _row(tile_id, path, meta, pols, win, transform, is_chip, note, scene) -> dict:
    from rasterio.crs import CRS

    geometry, city = None, None
    if not is_chip:
        try:
            geometry = _footprint(meta.crs, transform, win[2], win[3])
        except Exception as e:  # a CRS or transform that cannot be projected to lon/lat: this file only
            raise SkipFile(f"footprint not computable from its CRS {meta.crs} ({str(e).splitlines()[0][:120]})") from None
        city = nearest_city(geometry.centroid.x, geometry.centroid.y)
    else:
        note = "; ".join(n for n in (note, "image chip without georeference: no footprint") if n)
    band = meta.tags.get("BAND", "C" if set(pols) & {"VV", "VH"} else "")
    res = abs(meta.transform.a) if meta.crs else float("nan")
    if meta.crs and CRS.from_user_input(meta.crs).is_geographic:  # degrees -> metres at the tile's latitude
        res = round(res * 111320.0 * np.cos(np.radians(geometry.centroid.y)), 2)
    return {"tile_id": tile_id, "path": f"tiles/{tile_id}.tif", "geometry": geometry, "crs": meta.crs or "",
            "city": city.name if city else "", "country": city.country if city else "",
            "platform": meta.tags.get("PLATFORM", ""), "band": band, "polarizations": ",".join(pols),
            "resolution_m": float(meta.tags.get("RESOLUTION_M", res)), "incidence_deg": float(meta.tags.get("INCIDENCE_DEG", "nan")),
            "width": win[2], "height": win[3], "split": _split_for(city.name if city else scene), "scene_id": scene,
            "landcover_path": "", "facts_path": "", "source": "chip" if is_chip else "geotiff", "note": note}
