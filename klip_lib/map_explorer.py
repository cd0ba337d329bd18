"""An ipywidgets explorer of a SAR index: footprint map, filters, a tile picker and the picked tile beside the map.

The map is a leafmap (ipyleaflet) widget built from `klip_lib.maps`; `export_html` writes the same view
as a self-contained folium page (no CDN: `klip_lib.offline`). ipywidgets and leafmap are imported inside.
"""

from __future__ import annotations

import io
import os
import warnings
from html import escape
from pathlib import Path

import numpy as np

from . import maps
from .data.dataset import load_captions, load_facts
from .data.geotiff import read_tile
from .data.index import read_index, tile_path
from .viz import sar_rgb

FILTERS = ("city", "platform", "split")  # index columns with a dropdown each
ALL = "all"  # the dropdown value that keeps every tile
PANEL_PX = 256  # width of the tile images beside the map
MAX_CAPTIONS = 3  # captions shown per tile
MAX_LISTED = 20  # tiles named in the "not on the map" line (the rest are counted)


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def ground_truth_rgba(index_path: Path, row, facts: dict | None) -> np.ndarray | None:
    """Land-cover colours with the target instances painted in their class colour; None without ground truth."""
    import rasterio
    from matplotlib.colors import to_rgba

    if not row.get("landcover_path"):
        return None
    with rasterio.open(tile_path(index_path, row.landcover_path)) as src:
        rgba = maps.landcover_rgba(src.read(1))
    targets = tile_path(index_path, row.landcover_path).with_name(f"{row.tile_id}_targets.tif")
    if targets.is_file() and facts:
        with rasterio.open(targets) as src:
            inst = src.read(1).astype(np.int64) - 1
        for t in facts.get("targets", []):
            rgba[inst == t["id"]] = np.array(to_rgba(maps.TARGET_COLORS.get(t["class"], "#ffffff"))) * 255
    return rgba


def facts_html(row, facts: dict | None) -> str:
    """The tile's metadata and, for simulated tiles, its facts record in a few lines of HTML."""
    lines = [f"{escape(row.city or 'no city')} ({escape(row.country or '-')}), {escape(row.platform or 'unknown platform')} "
             f"{escape(row.band or '')}-band {escape(row.polarizations)}, {maps.fmt(row.resolution_m)} m, "
             f"incidence {maps.fmt(row.incidence_deg)} deg, split {escape(row.split)}"]
    if row.get("note"):
        lines.append(f"<i>{escape(row.note)}</i>")
    if facts:
        counts = ", ".join(f"{n} {c}" for c, n in facts["counts"].items() if n) or "no targets"
        lines += [f"terrain {facts['terrain']}, mostly {facts['main_landform']}; present: {', '.join(facts['landforms_present'])}",
                  f"water: {', '.join(facts['water_kinds']) or 'none'}; targets: {counts}"]
    return "<br>".join(lines)


class MapExplorer:
    """Footprints of an index on a leafmap map, dropdowns to filter by city/platform/split and to pick a tile,
    and the picked tile (SAR image, ground truth, facts, captions) beside the map. Show `explorer.widget`."""

    def __init__(self, index_path: str | os.PathLike, captions: str | os.PathLike | None = None,
                 by: str = "platform", tile: str = "", max_px: int = 512):
        import ipywidgets as w

        self.index_path, self.max_px = Path(index_path), max_px
        self.index = read_index(self.index_path)
        self.captions = load_captions(captions) if captions and Path(captions).is_file() else {}
        self.all_fp = maps.footprints(self.index, by, self.captions)
        self.fp = self.all_fp
        self.map = maps.new_map(self.fp.bounds)
        self.footprint_layer = maps.add_footprints(self.map, self.fp)
        maps.add_legends(self.map, self.fp)
        self.tile_layers: list = []  # overlays and targets of the picked tile, replaced on each pick
        self.overlays: list[maps.Overlay] = []  # the picked tile's overlays (for the HTML export)
        self.targets: dict | None = None  # the picked tile's target outlines (for the HTML export)
        self.extra: list[tuple[maps.Footprints, list[maps.Overlay]]] = []  # other indexes shown (real samples)
        self.filters = {c: w.Dropdown(options=[ALL, *sorted(set(self.index[c]) - {""})], description=c) for c in FILTERS}
        self.picker = w.Dropdown(description="tile", layout=w.Layout(width="380px"))
        self.picker.add_class("klip-tile-picker")
        self.title, self.facts, self.caption_box = w.HTML(), w.HTML(), w.HTML()
        size = w.Layout(width=f"{PANEL_PX}px")
        self.sar_image, self.gt_image = w.Image(format="png", layout=size), w.Image(format="png", layout=size)
        missing = self.all_fp.not_on_map
        more = f"; and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        self.not_on_map = w.HTML(f"<b>{len(missing)} tiles not on the map</b> (no georeference): "
                                 f"{escape('; '.join(missing[:MAX_LISTED]) + more)}" if missing else "")
        panel = w.VBox([self.title, w.HBox([self.sar_image, self.gt_image]), self.facts, self.caption_box],
                       layout=w.Layout(width=f"{2 * PANEL_PX + 20}px"))
        self.map.layout.width = "60%"
        self.widget = w.VBox([w.HBox(list(self.filters.values()) + [self.picker]), w.HBox([self.map, panel]), self.not_on_map])
        for dd in self.filters.values():
            dd.observe(lambda _: self.refilter(), names="value")
        self.picker.observe(self._picked, names="value")
        self.refilter(tile)

    def _picked(self, change):
        self.show(change["new"])

    def filtered(self):
        """The index rows that pass the dropdown filters."""
        keep = np.ones(len(self.index), dtype=bool)
        for col, dd in self.filters.items():
            if dd.value != ALL:
                keep &= (self.index[col] == dd.value).to_numpy()
        return self.index[keep]

    def refilter(self, tile: str = ""):
        """Redraw the footprints and the picker's choices for the current filters; keep the picked tile if it passes."""
        rows = self.filtered()
        self.fp = maps.footprints(rows, self.all_fp.by, self.captions, self.all_fp.colors)
        self.footprint_layer.data = self.fp.geojson
        labels = [(f"{r.tile_id} | {r.city or 'no city'} | {r.platform or 'unknown'}"
                   + ("" if r.geometry is not None and not r.geometry.is_empty else " (not on the map)"), r.tile_id)
                  for r in rows.itertuples()]
        keep, ids = tile or self.picker.value, [t for _, t in labels]
        self.picker.unobserve(self._picked, names="value")  # one redraw below, not one per option change
        self.picker.options = labels
        self.picker.value = keep if keep in ids else (ids[0] if ids else None)
        self.picker.observe(self._picked, names="value")
        self.show(self.picker.value)

    def show(self, tile_id: str | None):
        """Show one tile: its overlays and targets on the map (centred on it) and its panel beside the map."""
        from rasterio.errors import NotGeoreferencedWarning

        maps.close_popups(self.map)
        for layer in self.tile_layers:
            self.map.remove(layer)
        self.tile_layers, self.overlays, self.targets = [], [], None
        if tile_id is None:
            return
        row = self.index[self.index["tile_id"] == tile_id].iloc[0]
        facts = load_facts(self.index_path, row.facts_path)
        self.overlays = maps.tile_overlays(self.index_path, row, self.max_px)
        self.tile_layers = [maps.add_overlay(self.map, ov, maps.LANDCOVER_OPACITY if ov.name.startswith("land cover") else 1.0)
                            for ov in self.overlays]
        self.targets = maps.targets_geojson(self.index_path, row, facts)
        if self.targets:
            self.tile_layers.append(maps.add_targets(self.map, self.targets))
        if self.overlays:
            center, zoom = maps.view(self.overlays[0].bounds)
            self.map.center, self.map.zoom = list(center), zoom - 1
        on_map = "" if self.overlays else " <i>(not on the map: no georeference)</i>"
        self.title.value = f"<b class='klip-tile-title'>{escape(tile_id)}</b>{on_map}"
        with warnings.catch_warnings():  # chips have no georeference on purpose
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            bands = read_tile(tile_path(self.index_path, row.path))[0]
        self.sar_image.value = _png((sar_rgb(bands) * 255).astype(np.uint8))
        gt = ground_truth_rgba(self.index_path, row, facts)
        self.gt_image.value = _png(gt) if gt is not None else b""
        self.gt_image.layout.display = None if gt is not None else "none"
        self.facts.value = facts_html(row, facts)
        texts = self.captions.get(tile_id, [])[:MAX_CAPTIONS]
        self.caption_box.value = "".join(f"<p style='font-size:12px'>{escape(t)}</p>" for t in texts) or "<i>no captions</i>"

    def add_index(self, index_path: str | os.PathLike, name: str) -> list[maps.Overlay]:
        """Add another index (e.g. imported real samples): its footprints and every tile's SAR overlay."""
        index = read_index(index_path)
        fp = maps.footprints(index, self.all_fp.by)
        maps.add_footprints(self.map, fp, name=f"{name} footprints")
        overlays = [ov for _, row in index.iterrows() for ov in maps.tile_overlays(index_path, row, self.max_px)]
        for ov in overlays:
            ov.name = f"{name}: {ov.name}"
            maps.add_overlay(self.map, ov)
        self.extra.append((fp, overlays))
        return overlays

    def export_html(self, path: str | os.PathLike) -> Path:
        """The current view as one self-contained HTML file (folium): footprints, the picked tile's overlays and
        targets, and added indexes, rasters embedded as data URLs, Leaflet's JS and CSS inlined
        (`klip_lib.offline`). Only the basemap tiles need a network; without one the page says so."""
        from .offline import offline_map_html
        from .vendor import VendorMissing

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        m = maps.new_map(self.overlays[0].bounds if self.overlays else self.fp.bounds, backend="folium")
        maps.add_footprints(m, self.fp)
        maps.add_legends(m, self.fp)
        for ov in self.overlays:
            maps.add_overlay(m, ov, maps.LANDCOVER_OPACITY if ov.name.startswith("land cover") else 1.0)
        if self.targets:
            maps.add_targets(m, self.targets)
        for i, (fp, overlays) in enumerate(self.extra):
            maps.add_footprints(m, fp, name=f"added footprints {i + 1}")
            for ov in overlays:
                maps.add_overlay(m, ov)
        m.to_html(str(path))
        try:
            path.write_text(offline_map_html(path.read_text()))
        except VendorMissing as e:  # keep folium's page (Leaflet from its CDN) rather than no page
            warnings.warn(f"{path.name} loads Leaflet from the internet: {e}", stacklevel=2)
        return path
