"""Self-contained HTML: the folium map export and the executed notebooks' HTML load no script or style from a CDN.

- The map (`offline_map_html`): Leaflet's JS and CSS are inlined (vendored, `klip_lib.vendor`), its control images
  as data URLs; the other CDN assets folium writes (jQuery, Bootstrap, Font Awesome, awesome-markers) are dropped,
  because no layer of ours uses them. An asset not known here is an error, so a new map element cannot bring a
  CDN back unnoticed.
- The notebooks' HTML (`render_notebook_html`): require.js and the widget embedder (html-manager's embed-amd.js)
  are copied into the run folder's `assets/`, with the widget modules the notebook's saved state uses
  (jupyter-leaflet, ...) from the installed packages' nbextension folders; MathJax and Mermaid (CDN-only in
  nbconvert's template) are left out.
- Both pages carry `BASEMAP_NOTE_JS`: when a basemap tile fails to load (no network) a visible note says so; the
  footprints and overlays stay drawn on the map's plain background.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

from . import vendor

ASSETS = "assets"  # folder of the run folder holding the shared scripts of the notebook pages
BASE_WIDGET_MODULES = {"@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output"}  # in embed-amd
NOTE_CLASS = "klip-offline-note"
BASEMAP_NOTE = ("Basemap tiles could not be loaded (no network?): footprints and overlays are drawn on a plain "
                "background.")
BASEMAP_NOTE_JS = """<script>
(function () {
  var shown = false;
  document.addEventListener('error', function (e) {
    var t = e.target;
    if (shown || !t || !t.classList || !t.classList.contains('leaflet-tile')) return;
    shown = true;
    var note = document.createElement('div');
    note.className = '%s';
    note.textContent = %s;
    note.style.cssText = 'position:fixed;top:8px;left:50%%;transform:translateX(-50%%);z-index:10000;background:#fff8c4;' +
      'border:1px solid #c9b458;padding:4px 10px;font:13px sans-serif;border-radius:3px';
    document.body.appendChild(note);
  }, true);
}());
</script>""" % (NOTE_CLASS, json.dumps(BASEMAP_NOTE))

# CDN assets folium/leafmap write, by a piece of their URL: inlined from the vendored copy, or dropped
INLINE = {"leaflet.js": ("leaflet", "leaflet.js"), "leaflet.css": ("leaflet", "leaflet.css")}
DROP = ("jquery", "bootstrap", "awesome-markers", "fontawesome", "font-awesome", "glyphicons", "awesome.rotate")
TAG_RE = re.compile(r"<script[^>]*\ssrc=[\"'](?P<js>https?://[^\"']+)[\"'][^>]*>\s*</script>"
                    r"|<link[^>]*\shref=[\"'](?P<css>https?://[^\"']+)[\"'][^>]*>", re.I)
EXTERNAL_RE = re.compile(r"<(?:script|link|img|iframe)\b[^>]*?\s(?:src|href)=[\"'](https?://[^\"']+)[\"']"
                         r"|\b(?:import|from)\s*\(?\s*[\"'](https?://[^\"']+)[\"']|@import\s+url\([\"']?(https?://[^\"')]+)", re.I)


class UnknownAsset(ValueError):
    """The HTML loads a script or style from the network that this module does not know how to replace."""


def external_refs(text: str) -> list[str]:
    """Scripts, styles, images, frames and ES imports the page loads from http(s) hosts other than localhost."""
    urls = [next(g for g in m.groups() if g) for m in EXTERNAL_RE.finditer(text)]
    return [u for u in urls if not re.match(r"https?://(localhost|127\.0\.0\.1)[:/]", u)]


def _data_url(path: Path) -> str:
    mime = {".png": "image/png", ".svg": "image/svg+xml"}.get(path.suffix, "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def leaflet_css() -> str:
    """Leaflet's stylesheet with its images (layer control, markers) as data URLs."""
    css_path = vendor.path("leaflet", "leaflet.css")
    return re.sub(r"url\((images/[\w.-]+)\)", lambda m: f"url({_data_url(css_path.parent / m.group(1))})",
                  css_path.read_text())


def _inline(url: str) -> str:
    for key, (folder, file) in INLINE.items():
        if url.split("?")[0].endswith(key):
            if file.endswith(".css"):
                return f"<style>{leaflet_css()}</style>"
            return f"<script>{vendor.path(folder, file).read_text()}</script>"
    if any(d in url.lower() for d in DROP):
        return ""
    raise UnknownAsset(f"the map loads {url} from the network: vendor it or add it to klip_lib.offline.DROP")


def offline_map_html(text: str) -> str:
    """A folium page made self-contained: CDN scripts/styles inlined or dropped, and the basemap note added."""
    text = TAG_RE.sub(lambda m: _inline(m.group("js") or m.group("css")), text)
    return text.replace("</body>", BASEMAP_NOTE_JS + "</body>", 1) if "</body>" in text else text + BASEMAP_NOTE_JS


def widget_modules(nb) -> set[str]:
    """The JS modules a notebook's saved widget state needs besides the base widgets."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    mods = {m.get(k) for m in state.values() for k in ("model_module", "view_module")}
    return {m for m in mods if m} - BASE_WIDGET_MODULES


def nbextension(module: str) -> Path | None:
    """The installed AMD build of a widget module (`<jupyter data>/nbextensions/<module>/index.js`)."""
    from jupyter_core.paths import jupyter_path

    for folder in jupyter_path("nbextensions"):
        if (p := Path(folder) / module / "index.js").is_file():
            return p
    return None


def copy_assets(assets: Path, modules: set[str]) -> dict[str, str]:
    """require.js, embed-amd.js and each widget module's nbextension folder into `assets`; returns the requirejs
    paths ({module: path relative to `assets`, without .js}). A module with no installed build is left to fail
    visibly (the widget shows its error) rather than fetched from a CDN."""
    assets.mkdir(parents=True, exist_ok=True)
    for folder, file in (("requirejs", "require.js"), ("html-manager", "embed-amd.js")):
        if not (assets / file).is_file():
            shutil.copyfile(vendor.path(folder, file), assets / file)
    paths = {}
    for module in sorted(modules):
        src = nbextension(module)
        if src is None:
            continue
        dest = assets / "widgets" / module
        if not dest.is_dir():
            shutil.copytree(src.parent, dest, ignore=shutil.ignore_patterns("*.map", "*.LICENSE.txt"))
        paths[module] = f"widgets/{module}/index"
    return paths


def render_notebook_html(executed: Path, out: Path, assets: Path) -> Path:
    """An executed notebook as HTML with no CDN script or style: scripts it needs for its widgets from `assets`
    (a folder of the run, referred to relatively), MathJax and Mermaid left out. A reference to the network that
    is still there (a new nbconvert template) is warned about, not fatal."""
    import os

    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    rel = Path(os.path.relpath(assets, out.parent)).as_posix()
    exporter = HTMLExporter(require_js_url=f"{rel}/require.js", widget_renderer_url=f"{rel}/embed-amd.js",
                            mathjax_url="", mermaid_js_url="", mermaid_layout_elk_js_url="")
    body, _ = exporter.from_notebook_node(nb)
    body = re.sub(r"<script[^>]*\ssrc=[\"']\s*[\"'][^>]*>\s*</script>", "", body)  # the empty MathJax tag
    body = re.sub(r"<script type=\"module\">\s*document\.addEventListener\(\"DOMContentLoaded\", async \(\) => \{"
                  r"\s*const diagrams.*?</script>", "", body, flags=re.S)  # Mermaid: CDN only, unused here
    if "widgets" in nb.metadata:
        paths = copy_assets(assets, widget_modules(nb))
        config = json.dumps({"paths": {m: f"{rel}/{p}" for m, p in paths.items()}})
        body = body.replace("</head>", f"<script>require.config({config});</script>\n</head>", 1)
    body = body.replace("</body>", BASEMAP_NOTE_JS + "</body>", 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)
    left = external_refs(body)
    if left:  # a page that needs the network beats no page; tests/test_offline.py fails on it
        import warnings

        warnings.warn(f"{out} still loads {left[:3]} from the network", stacklevel=2)
    return out
