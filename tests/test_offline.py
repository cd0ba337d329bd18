"""Self-contained exports (issue 22): the map export and the notebook HTML load no script or style from a CDN.

The unit tests check the HTML text; the browser test runs notebook 02 through the runner (as `klip run` does) into
a temporary run folder, then opens the exported map and the notebook's HTML page in headless Chromium with every
request that is not a file or localhost aborted, and counts the footprints drawn.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from klip_lib import maps, offline, paths, vendor

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
CDN_TAG = re.compile(r"<(script|link)\b[^>]*(src|href)=[\"']https?://(?!localhost|127\.0\.0\.1)", re.I)
needs_vendor = pytest.mark.skipif(bool(vendor.missing()), reason="vendored JS missing: python -m klip_lib.vendor")

FOLIUM_HEAD = """<!DOCTYPE html><html><head>
<script src="https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js"></script>
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css"/>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@6.2.0/css/all.min.css"/>
</head><body><div id="map"></div><script>L.tileLayer("https://tile.openstreetmap.org/{z}/{x}/{y}.png")</script>
</body></html>"""


@needs_vendor
def test_map_html_inlines_leaflet_and_drops_other_cdn_assets():
    out = offline.offline_map_html(FOLIUM_HEAD)
    assert not CDN_TAG.search(out) and offline.external_refs(out) == []
    assert "Leaflet" in out and ".leaflet-container" in out  # the library and its stylesheet, inlined
    assert "url(data:image/png;base64," in out  # the layer control's icon travels with the page
    assert offline.NOTE_CLASS in out  # the basemap note
    assert "tile.openstreetmap.org" in out  # only the basemap is left to the network


def test_unknown_cdn_asset_is_an_error():
    html = '<html><head><script src="https://unpkg.com/some-plugin@1/x.js"></script></head><body></body></html>'
    with pytest.raises(offline.UnknownAsset, match="unpkg.com/some-plugin"):
        offline.offline_map_html(html)


def test_external_refs_finds_scripts_styles_and_imports():
    html = ('<script src="https://cdnjs.cloudflare.com/a.js"></script><link rel="stylesheet" href="http://x.org/b.css">'
            '<script src="../assets/require.js"></script><img src="http://localhost:8888/c.png">'
            '<script type="module">import m from "https://unpkg.com/m.mjs"</script>')
    assert offline.external_refs(html) == ["https://cdnjs.cloudflare.com/a.js", "http://x.org/b.css",
                                           "https://unpkg.com/m.mjs"]


@needs_vendor
def test_notebook_html_has_no_cdn_script(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# T\nmath $x^2$"), nbformat.v4.new_code_cell("1 + 1")]
    src = tmp_path / "t.ipynb"
    nbformat.write(nb, src)
    out = offline.render_notebook_html(src, tmp_path / "run" / "html" / "t.html", tmp_path / "run" / "assets")
    text = out.read_text()
    assert not CDN_TAG.search(text), CDN_TAG.search(text).group(0)
    assert offline.external_refs(text) == []
    assert not re.search(r"<script[^>]*src=[\"']\s*[\"']", text)  # MathJax's tag with its url emptied is gone too
    assert "require.config" not in text  # no widgets: no widget modules set up


# ---- the browser test ----


def _footprints(run_dir: Path) -> list[int]:
    """Tiles with a footprint per index the notebook put on the map: the simulated one first, then real samples."""
    from klip_lib.data import read_index

    counts = []
    for index_path in [run_dir / "data" / "index.parquet", *sorted((run_dir / "real").glob("*/index.parquet"))]:
        index = read_index(index_path)
        counts.append(int((index.geometry.notna() & ~index.geometry.is_empty).sum()))
    return counts


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Notebook 02 executed by the runner into a fresh run folder (smoke dataset, about a minute)."""
    from klip_lib import runner

    run = tmp_path_factory.mktemp("offline") / "run"
    run.mkdir()
    result = runner.execute(paths.NOTEBOOKS / "02_explore_map.ipynb", run, "smoke", 0, runner.KERNEL_NAME)
    assert result.status == "ok", result.error
    assert result.html == "html/02_explore_map.html"
    return run


def _offline_page(browser, blocked: list):
    """A page in a context where every request that is not file:, data: or localhost is aborted and recorded."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})

    def route(r):
        url = r.request.url
        if re.match(r"(file|data|blob):|https?://(localhost|127\.0\.0\.1)[:/]", url):
            r.continue_()
        else:
            blocked.append((r.request.resource_type, url))
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(60_000)
    return page


def _needed(blocked: list) -> list:
    """Blocked requests other than basemap tile images: scripts, styles, fonts, anything a page needed."""
    return [(kind, url) for kind, url in blocked if not (kind == "image" and "tile.openstreetmap.org" in url)]


@pytest.mark.browser
@pytest.mark.slow
@needs_vendor
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: run .ci/browser-deps.sh as root")
def test_map_and_notebook_pages_work_offline(run_dir):
    from playwright.sync_api import expect, sync_playwright

    counts = _footprints(run_dir)
    expected = sum(counts)
    assert counts[0] >= 48
    map_html, nb_html = run_dir / "maps" / "02_explore_map.html", run_dir / "html" / "02_explore_map.html"
    for page_file in (map_html, nb_html):
        assert not CDN_TAG.search(page_file.read_text()), f"{page_file.name}: {CDN_TAG.search(page_file.read_text())}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            blocked: list = []
            page = _offline_page(browser, blocked)
            page.goto(map_html.as_uri())
            leaflet = page.locator(".leaflet-container").first
            expect(leaflet.locator(f"path.{maps.FOOTPRINT_CLASS}")).to_have_count(expected)
            assert leaflet.locator(".leaflet-image-layer").count() >= 1  # the SAR / land-cover overlays
            expect(page.locator(f".{offline.NOTE_CLASS}")).to_be_visible()  # the tiles were blocked: it says so
            leaflet.locator(f"path.{maps.FOOTPRINT_CLASS}").first.click(force=True)
            expect(leaflet.locator(".leaflet-popup-content")).to_contain_text("polarizations")
            control = leaflet.locator(".leaflet-control-layers")
            control.hover()
            control.locator("label").filter(has_text=re.compile(r"^\s*footprints\s*$")).locator("input").uncheck()
            expect(leaflet.locator(f"path.{maps.FOOTPRINT_CLASS}")).to_have_count(expected - counts[0])
            assert not _needed(blocked), f"the map needed the network for {_needed(blocked)[:5]}"

            blocked.clear()
            page = _offline_page(browser, blocked)
            page.goto(nb_html.as_uri())
            nb_map = page.locator(".jp-OutputArea .leaflet-container").first
            expect(nb_map.locator(f"path.{maps.FOOTPRINT_CLASS}")).to_have_count(expected)
            assert nb_map.locator(".leaflet-image-layer").count() >= 1
            assert not _needed(blocked), f"the notebook page needed the network for {_needed(blocked)[:5]}"
        finally:
            browser.close()
