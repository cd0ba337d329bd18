"""Map layers of a SAR dataset: footprints, tiles in their true place, ground truth, for leafmap maps.

Builders turn an index (GeoParquet, docs/contracts.md) into plain layer data: GeoJSON feature
collections with a style and popup fields per feature, and `Overlay`s (a PNG data URL and its
EPSG:4326 bounds). Adapters put them on a leafmap map of either backend: ipyleaflet (`leafmap.Map`,
live in JupyterLab) or folium (`leafmap.foliumap.Map`, static HTML export). Everything is embedded,
so a map needs no tile server: offline, only the basemap is missing. rasterio, shapely, PIL,
matplotlib, leafmap, ipyleaflet and folium are imported inside the functions.
"""

from __future__ import annotations

import base64
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.index import tile_path
from .viz import sar_rgb
from .vocab import LANDCOVER_CLASSES, LANDCOVER_NODATA

MERCATOR = "EPSG:3857"  # what Leaflet displays: overlays are warped to it, so a plain rectangle fits exactly
LANDCOVER_COLORS: dict[str, str] = {
    "water": "#1f78b4", "urban": "#e31a1c", "industrial": "#6a3d9a", "farmland": "#b2df8a", "forest": "#33a02c",
    "bare": "#d9b77e", "road": "#636363", "airport": "#fb9a99", "port": "#ff7f00",
}
TARGET_COLORS: dict[str, str] = {"ship": "#00ffff", "aircraft": "#ffff00", "storage tank": "#ff00ff", "vehicle": "#ffffff"}
POPUP_FIELDS: dict[str, str] = {  # index column (or caption) -> label in the popup
    "tile_id": "tile", "city": "city", "platform": "platform", "polarizations": "polarizations",
    "resolution_m": "resolution (m)", "incidence_deg": "incidence (deg)", "split": "split", "caption": "caption",
}
LANDCOVER_OPACITY = 0.4  # land cover drawn over its SAR tile, which stays visible beneath
CAPTION_PREVIEW = 160  # characters of the first caption shown in a popup
FOOTPRINT_CLASS = "klip-footprint"  # CSS class on every footprint path (the browser test counts them)
TARGET_CLASS = "klip-target"  # CSS class on every target outline


@dataclass
class Overlay:
    """A raster shown as an image in its true place."""

    name: str  # layer name on the map
    url: str  # "data:image/png;base64,..." (embedded: the map needs no file beside it)
    bounds: tuple[tuple[float, float], tuple[float, float]]  # ((south, west), (north, east)) in `crs`
    source_crs: str  # CRS of the raster it was made from
    shape: tuple[int, int]  # (height, width) of the PNG after warping to Web Mercator
    crs: str = "EPSG:4326"  # CRS of `bounds` (Leaflet's lat/lon)


@dataclass
class Footprints:
    """Tile footprints as one vector layer, plus the tiles that cannot be drawn."""

    geojson: dict  # FeatureCollection, a feature per tile with a footprint, style and popup fields in properties
    by: str  # index column the colours stand for
    colors: dict[str, str]  # value of `by` -> colour
    not_on_map: list[str] = field(default_factory=list)  # "tile_id: why" for tiles without georeference (chips)

    @property
    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """((south, west), (north, east)) around all footprints, None when there are none."""
        xy = np.array([p for f in self.geojson["features"] for ring in _rings(f["geometry"]) for p in ring])
        return None if not len(xy) else ((xy[:, 1].min(), xy[:, 0].min()), (xy[:, 1].max(), xy[:, 0].max()))


def _rings(geom: dict):
    return geom["coordinates"] if geom["type"] == "Polygon" else [r for poly in geom["coordinates"] for r in poly]


def fmt(value) -> str:
    """A popup value: numbers rounded, NaN/None as 'n/a' (GeoJSON must not carry NaN)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:g}" if isinstance(value, float) else str(value)


def palette(values) -> dict[str, str]:
    """A colour (matplotlib's tab10, cycled) per distinct value, in sorted order."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10"]
    return {v: to_hex(cmap(i % cmap.N)) for i, v in enumerate(sorted({str(v) for v in values}))}


def footprints(index, by: str = "platform", captions: dict[str, list[str]] | None = None,
               colors: dict[str, str] | None = None) -> Footprints:
    """The footprint layer of an index (GeoDataFrame from `read_index`), coloured by column `by`.

    `captions` is tile_id -> texts (`klip_lib.data.load_captions`); the first one is previewed in the
    popup. Tiles without a footprint are left out and listed in `not_on_map`."""
    if by not in index.columns:
        raise KeyError(f"cannot colour footprints by {by!r}: the index has no such column (try platform or split)")
    captions = captions or {}
    colors = colors or palette(index[by])
    features, missing = [], []
    for _, row in index.iterrows():
        geom = row.geometry
        if geom is None or geom.is_empty:
            missing.append(f"{row.tile_id}: {row.get('note') or 'no footprint'}")
            continue
        caption = (captions.get(row.tile_id) or [""])[0]
        props = {k: fmt(row.get(k)) for k in POPUP_FIELDS if k != "caption"}
        props["caption"] = caption[:CAPTION_PREVIEW] + ("..." if len(caption) > CAPTION_PREVIEW else "") or "none"
        color = colors.get(str(row[by]), "#999999")
        props["style"] = {"color": color, "fillColor": color, "weight": 2, "fillOpacity": 0.1, "className": FOOTPRINT_CLASS}
        features.append({"type": "Feature", "id": row.tile_id, "geometry": geom.__geo_interface__, "properties": props})
    return Footprints({"type": "FeatureCollection", "features": features}, by, colors, missing)


def popup_html(props: dict) -> str:
    """The popup of one footprint feature: a small table of POPUP_FIELDS."""
    from html import escape

    rows = "".join(f"<tr><th style='text-align:left;padding-right:6px'>{escape(label)}</th><td>{escape(str(props[k]))}</td></tr>"
                   for k, label in POPUP_FIELDS.items() if k in props)
    return f"<table style='font-size:12px'>{rows}</table>"


def png_data_url(rgba: np.ndarray) -> str:
    """A PNG data URL of an [H, W, 3|4] uint8 image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _warp(path: Path, nearest: bool, max_px: int):
    """Read a raster and warp it to Web Mercator: ([C, H, W] float32 with NaN outside, EPSG:4326 bounds, CRS)."""
    import rasterio
    from rasterio.transform import array_bounds
    from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds

    with rasterio.open(path) as src:
        if src.crs is None:
            raise ValueError(f"{path} has no CRS: it cannot be placed on a map (listed as not on the map)")
        data = np.ma.filled(src.read(masked=True).astype(np.float32), np.nan)
        crs, transform, bounds = src.crs, src.transform, src.bounds
        dst_tf, w, h = calculate_default_transform(crs, MERCATOR, src.width, src.height, *bounds)
    scale = max(w, h) / max_px
    if scale > 1:
        dst_tf, w, h = dst_tf @ dst_tf.scale(scale), math.ceil(w / scale), math.ceil(h / scale)
    out = np.full((len(data), h, w), np.nan, dtype=np.float32)
    for band, dst in zip(data, out):
        reproject(band, dst, src_transform=transform, src_crs=crs, dst_transform=dst_tf, dst_crs=MERCATOR,
                  src_nodata=np.nan, dst_nodata=np.nan,
                  resampling=Resampling.nearest if nearest else Resampling.bilinear)
    west, south, east, north = transform_bounds(MERCATOR, "EPSG:4326", *array_bounds(h, w, dst_tf))
    return out, ((south, west), (north, east)), crs.to_string()


def raster_overlay(path: str | os.PathLike, name: str, max_px: int = 512) -> Overlay:
    """A SAR tile (sigma0 dB GeoTIFF) as an overlay: warped to Web Mercator, 2-98 % dB stretch,
    dual pol in false colour (R co, G cross, B co - cross), transparent outside the tile."""
    data, bounds, crs = _warp(Path(path), nearest=False, max_px=max_px)
    rgb = (sar_rgb(data) * 255).astype(np.uint8)
    alpha = np.where(np.isfinite(data).all(axis=0), 255, 0).astype(np.uint8)
    return Overlay(name, png_data_url(np.dstack([rgb, alpha])), bounds, crs, alpha.shape)


def landcover_rgba(mask: np.ndarray) -> np.ndarray:
    """[H, W, 4] uint8 colours of a land-cover mask (LANDCOVER_COLORS; nodata transparent)."""
    from matplotlib.colors import to_rgba

    lut = np.zeros((256, 4), dtype=np.uint8)
    for i, name in enumerate(LANDCOVER_CLASSES):
        lut[i] = np.array(to_rgba(LANDCOVER_COLORS[name])) * 255
    lut[LANDCOVER_NODATA] = 0
    return lut[mask]


def landcover_overlay(path: str | os.PathLike, name: str, max_px: int = 512) -> Overlay:
    """A land-cover mask (uint8 GeoTIFF) as a colour overlay in its true place."""
    data, bounds, crs = _warp(Path(path), nearest=True, max_px=max_px)
    mask = np.where(np.isfinite(data[0]), data[0], LANDCOVER_NODATA).astype(np.uint8)
    return Overlay(name, png_data_url(landcover_rgba(mask)), bounds, crs, mask.shape)


def tile_overlays(index_path: str | os.PathLike, row, max_px: int = 512) -> list[Overlay]:
    """The SAR overlay of an index row, and its land-cover overlay when it has ground truth; [] for chips."""
    if row.geometry is None or row.geometry.is_empty:
        return []
    out = [raster_overlay(tile_path(index_path, row.path), f"SAR {row.tile_id}", max_px)]
    if row.get("landcover_path"):
        out.append(landcover_overlay(tile_path(index_path, row.landcover_path), f"land cover {row.tile_id}", max_px))
    return out


def targets_geojson(index_path: str | os.PathLike, row, facts: dict | None) -> dict | None:
    """Target outlines of a simulated tile from its instance mask (labels/<tile_id>_targets.tif) in
    EPSG:4326, a feature per target with class, type, size and heading; None without ground truth."""
    import rasterio
    from rasterio.features import shapes
    from rasterio.warp import transform_geom
    from shapely.geometry import mapping, shape
    from shapely.ops import unary_union

    if not facts or not row.get("landcover_path"):
        return None
    path = tile_path(index_path, row.landcover_path).with_name(f"{row.tile_id}_targets.tif")
    if not path.is_file():
        return None
    with rasterio.open(path) as src:
        mask, transform, crs = src.read(1), src.transform, src.crs
    parts: dict[int, list] = {}
    for geom, value in shapes(mask.astype(np.int32), mask=mask > 0, transform=transform):
        parts.setdefault(int(value) - 1, []).append(shape(geom))
    by_id = {t["id"]: t for t in facts.get("targets", [])}
    features = []
    for tid, polys in sorted(parts.items()):
        t = by_id.get(tid, {"class": "target", "type": "unknown"})
        color = TARGET_COLORS.get(t["class"], "#ffffff")
        props = {"class": t["class"], "type": t["type"], "length_m": fmt(t.get("length_m")),
                 "width_m": fmt(t.get("width_m")), "heading_deg": fmt(t.get("heading_deg")),
                 "style": {"color": color, "weight": 2, "fillOpacity": 0.3, "className": TARGET_CLASS}}
        geom = transform_geom(crs, "EPSG:4326", mapping(unary_union(polys)))
        features.append({"type": "Feature", "id": f"{row.tile_id}/{tid}", "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": features}


def view(bounds, width_px: int = 700, height_px: int = 500, max_zoom: int = 17) -> tuple[tuple[float, float], int]:
    """(center, zoom) that shows `bounds` ((south, west), (north, east)) in a map of the given size
    (computed here, because ipyleaflet's fit_bounds needs a live browser)."""
    (s, w), (n, e) = bounds

    def merc_y(lat):
        return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))

    zx = math.log2(width_px * 360 / (256 * max(e - w, 1e-9)))
    zy = math.log2(height_px * 2 * math.pi / (256 * max(merc_y(n) - merc_y(s), 1e-9)))
    return ((s + n) / 2, (w + e) / 2), int(max(1, min(max_zoom, math.floor(min(zx, zy)))))


# ---- adapters: the same layers on a leafmap map of either backend ----


def _is_folium(m) -> bool:
    import folium

    return isinstance(m, folium.Map)


def new_map(bounds=None, backend: str = "ipyleaflet", height: str = "500px"):
    """A leafmap map ("ipyleaflet": live widget; "folium": static HTML) showing `bounds`, with a layer
    switcher. Its OpenStreetMap basemap stays grey offline; every layer added here is embedded."""
    center, zoom = view(bounds) if bounds else ((20.0, 0.0), 2)
    if backend == "folium":
        import leafmap.foliumap as leafmap

        return leafmap.Map(center=list(center), zoom=zoom, height=height, draw_control=False,
                           measure_control=False, fullscreen_control=False, locate_control=False,
                           minimap_control=False, search_control=False, layers_control=True)
    import leafmap

    return leafmap.Map(center=list(center), zoom=zoom, height=height, draw_control=False, measure_control=False,
                       fullscreen_control=False, toolbar_control=False, search_control=False, layers_control=True)


def add_footprints(m, fp: Footprints, name: str = "footprints"):
    """Add the footprint layer with a popup per tile; returns the layer (ipyleaflet GeoJSON or folium GeoJson)."""
    if _is_folium(m):
        import folium

        layer = folium.GeoJson(fp.geojson, name=name, style_function=lambda f: f["properties"]["style"],
                               popup=folium.GeoJsonPopup(fields=list(POPUP_FIELDS), aliases=list(POPUP_FIELDS.values())))
        layer.add_to(m)
    else:
        from ipyleaflet import GeoJSON, Popup
        from ipywidgets import HTML

        layer = GeoJSON(data=fp.geojson, name=name, hover_style={"weight": 4, "fillOpacity": 0.3})

        def show(event=None, feature=None, coordinates=None, **_):
            close_popups(m)
            m.add(Popup(location=coordinates, child=HTML(popup_html(feature["properties"])), max_width=360))

        layer.on_click(show)
        m.add(layer)
    return layer


def close_popups(m):
    """Remove the footprint popups from an ipyleaflet map (a closed popup would reopen when layers change)."""
    from ipyleaflet import Popup

    for popup in [layer for layer in m.layers if isinstance(layer, Popup)]:
        m.remove(popup)


def add_overlay(m, ov: Overlay, opacity: float = 1.0):
    """Add an Overlay as an image layer (Leaflet's leaflet-image-layer); returns the layer."""
    bounds = [list(ov.bounds[0]), list(ov.bounds[1])]
    if _is_folium(m):
        import folium

        layer = folium.raster_layers.ImageOverlay(image=ov.url, bounds=bounds, name=ov.name, opacity=opacity)
        layer.add_to(m)
    else:
        from ipyleaflet import ImageOverlay

        layer = ImageOverlay(url=ov.url, bounds=bounds, name=ov.name, opacity=opacity)
        m.add(layer)
    return layer


def add_targets(m, geojson: dict, name: str = "targets"):
    """Add target outlines (from `targets_geojson`) as a vector layer; returns the layer."""
    if _is_folium(m):
        import folium

        layer = folium.GeoJson(geojson, name=name, style_function=lambda f: f["properties"]["style"],
                               tooltip=folium.GeoJsonTooltip(fields=["class", "type", "length_m", "heading_deg"]))
        layer.add_to(m)
    else:
        from ipyleaflet import GeoJSON

        layer = GeoJSON(data=geojson, name=name)
        m.add(layer)
    return layer


def add_legends(m, fp: Footprints):
    """Legends for the footprint colours and the land-cover classes (leafmap's legend control)."""
    kw = {"draggable": False} if _is_folium(m) else {}
    m.add_legend(title=f"footprints by {fp.by}", legend_dict=fp.colors, position="bottomleft", **kw)
    m.add_legend(title="land cover", legend_dict=LANDCOVER_COLORS, position="bottomright", **kw)
