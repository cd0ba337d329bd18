"""02_explore_map.ipynb in a real browser: JupyterLab from the venv, headless Debian Chromium driven by Playwright.

Runs every cell, then checks what a user sees: the Leaflet map with one footprint path per tile, the SAR
overlay, and the tile panel following the tile picker. Needs /usr/bin/chromium (`.ci/browser-deps.sh`).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from klip_lib import maps, paths

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = "02_explore_map.ipynb"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SERVER_START_S = 60  # JupyterLab start on a busy 2-core machine
RUN_ALL_S = 120  # all cells, kernel start included
UI_TIMEOUT_S = 60  # the page, kernel and widgets answering
LAB_SETTINGS = {  # render every cell (no windowing) and ask nothing about news or updates
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: run .ci/browser-deps.sh as root"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the notebook writing into tmp_path/run, on the `klip` kernel; returns (notebook dir, run dir)."""
    nb_dir, run_dir = tmp_path / "notebooks", tmp_path / "run"
    nb_dir.mkdir()
    nb = nbformat.read(paths.NOTEBOOKS / NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = params.source.replace('run_dir = "reports/scratch"', f"run_dir = {str(run_dir)!r}")
    assert str(run_dir) in params.source, "the parameters cell no longer sets run_dir = \"reports/scratch\""
    nb.metadata["kernelspec"] = {"name": "klip", "display_name": "Python (klip)", "language": "python"}
    nbformat.write(nb, nb_dir / NOTEBOOK)
    return nb_dir, run_dir


def _start_lab(tmp_path: Path, nb_dir: Path, port: int, token: str) -> subprocess.Popen:
    """JupyterLab of the venv on 127.0.0.1:port with its own config, data and runtime folders under tmp_path."""
    for plugin, values in LAB_SETTINGS.items():
        package, name = plugin.split(":")
        (tmp_path / "settings" / package).mkdir(parents=True, exist_ok=True)
        (tmp_path / "settings" / package / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
               JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"), JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"))
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={nb_dir}", "--MappingKernelManager.default_kernel_name=klip",
           "--allow-root", "--LabApp.extension_manager=readonly",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", f"--LabApp.user_settings_dir={tmp_path / 'settings'}"]
    proc = subprocess.Popen(cmd, env=env, stdout=open(tmp_path / "jupyterlab.log", "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    why = f"exited with code {proc.returncode}" if proc.poll() is not None else f"did not answer within {SERVER_START_S} s"
    proc.terminate()
    log = (tmp_path / "jupyterlab.log").read_text()[-2000:]
    raise RuntimeError(f"JupyterLab on port {port} {why}; its log ends:\n{log}")


def _expected_footprints(run_dir: Path) -> int:
    """Tiles with a footprint in every index the notebook put on the map (simulated + real samples)."""
    from klip_lib.data import read_index

    total = 0
    for index_path in [run_dir / "data" / "index.parquet", *sorted((run_dir / "real").glob("*/index.parquet"))]:
        index = read_index(index_path)
        total += int((index.geometry.notna() & ~index.geometry.is_empty).sum())
    return total


def _run_all(page, url: str, run_dir: Path):
    """Open the notebook, wait for its kernel, Run All Cells, and wait for the last cell's metrics file."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible()
    expect(page.get_by_text("Python (klip) | Idle")).to_be_visible()
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item:not(.lm-mod-hidden)", has_text="Run All Cells").first.click()
    metrics = run_dir / "metrics" / "02_explore_map.json"
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", has_text="Traceback")
    deadline = time.monotonic() + RUN_ALL_S
    while not metrics.is_file() and not errors.count() and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    assert not errors.count(), f"a cell failed in the browser:\n{errors.first.inner_text()[-2000:]}"
    assert metrics.is_file(), f"the notebook did not finish within {RUN_ALL_S} s (no {metrics})"


def _check_map(page, run_dir: Path):
    """One footprint path per tile, the SAR overlay, and a popup on a footprint click; returns the map locator."""
    from playwright.sync_api import expect

    leaflet = page.locator(".jp-OutputArea .leaflet-container").first
    expect(leaflet).to_be_visible()
    expected = _expected_footprints(run_dir)
    assert expected >= 48
    expect(leaflet.locator(f"path.{maps.FOOTPRINT_CLASS}")).to_have_count(expected)
    assert leaflet.locator(".leaflet-image-layer").count() >= 1
    leaflet.scroll_into_view_if_needed()
    leaflet.locator(f"path.{maps.FOOTPRINT_CLASS}").first.click()
    expect(leaflet.locator(".leaflet-popup-content")).to_contain_text("polarizations")
    leaflet.locator(".leaflet-popup-close-button").click()
    return leaflet


def _check_picker(page, leaflet) -> tuple[str, str]:
    """Choosing another tile in the picker changes the panel's tile and the overlay on the map."""
    from playwright.sync_api import expect

    title = page.locator(".klip-tile-title")
    first = title.inner_text()
    srcs = leaflet.locator(".leaflet-image-layer").evaluate_all("els => els.map(e => e.src)")
    page.locator(".klip-tile-picker select").select_option(index=1)
    expect(title).not_to_have_text(first)
    second = title.inner_text()
    assert second.startswith("sim_") and second != first
    page.wait_for_function(
        "old => [...document.querySelectorAll('.leaflet-image-layer')].some(e => !old.includes(e.src))", arg=srcs)
    return first, second


def test_explore_map_notebook_in_chromium(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    nb_dir, run_dir = _prepare(tmp_path)
    port, token = _free_port(), secrets.token_hex(16)
    lab = _start_lab(tmp_path, nb_dir, port, token)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
                args=CHROMIUM_FLAGS, viewport={"width": 1600, "height": 1000})
            page = browser.new_page()
            page.set_default_timeout(UI_TIMEOUT_S * 1000)
            expect.set_options(timeout=UI_TIMEOUT_S * 1000)
            shot = tmp_path / "02_explore_map.png"
            try:
                _run_all(page, f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK}?token={token}", run_dir)
                leaflet = _check_map(page, run_dir)
                first, second = _check_picker(page, leaflet)
                leaflet.scroll_into_view_if_needed()
            finally:
                page.screenshot(path=str(shot))
                print(f"screenshot: {shot}")
                browser.close()
            print(f"tile picker: {first} -> {second}")
    finally:
        lab.terminate()
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.kill()
