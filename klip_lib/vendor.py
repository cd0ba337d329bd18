"""JavaScript that the offline exports need and that no installed Python package ships as a usable file, vendored at
build time from the npm registry into klip_lib/static/vendor/ (ignored by git): `python -m klip_lib.vendor`.

- Leaflet (standalone leaflet.js/leaflet.css for the folium map export; the copy inside jupyter-leaflet's
  bundle is wired to the widget manager and cannot be loaded alone),
- @jupyter-widgets/html-manager's embed-amd.js (renders the saved widget state of a notebook's HTML; ipywidgets,
  jupyterlab_widgets and widgetsnbextension ship only the JupyterLab/Notebook managers),
- require.js (the AMD loader embed-amd.js needs).

Widget modules themselves (jupyter-leaflet, ...) come from the installed packages' nbextension folders. Run by
`make` (a no-op when present); `klip run` and the exports say how to get them when they are missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).with_name("static") / "vendor"
PACKAGES: dict[str, tuple[str, str, dict[str, str]]] = {  # folder -> (npm package, version, {file: path in tarball})
    "leaflet": ("leaflet", "1.9.4", {
        "leaflet.js": "package/dist/leaflet.js", "leaflet.css": "package/dist/leaflet.css",
        **{f"images/{n}": f"package/dist/images/{n}" for n in
           ("layers.png", "layers-2x.png", "marker-icon.png", "marker-icon-2x.png", "marker-shadow.png")},
        "LICENSE": "package/LICENSE"}),
    "html-manager": ("@jupyter-widgets/html-manager", "1.0.15", {
        "embed-amd.js": "package/dist/embed-amd.js", "package.json": "package/package.json"}),  # BSD-3 (package.json)
    "requirejs": ("requirejs", "2.3.8", {"require.js": "package/require.js", "package.json": "package/package.json"}),
}


class VendorMissing(RuntimeError):
    """A vendored file is not there: the message says how to fetch it."""


def path(folder: str, file: str) -> Path:
    """A vendored file; raises VendorMissing naming the command that fetches it."""
    p = VENDOR / folder / file
    if not p.is_file():
        raise VendorMissing(f"{p} is missing: run `python -m klip_lib.vendor` (or `make venv`) once with access to "
                            f"the npm registry; it fetches {', '.join(f'{n}@{v}' for n, v, _ in PACKAGES.values())}")
    return p


def missing() -> list[str]:
    """The vendored files not present."""
    return [f"{folder}/{f}" for folder, (_, _, files) in PACKAGES.items() for f in files
            if not (VENDOR / folder / f).is_file()]


def fetch(force: bool = False) -> list[str]:
    """`npm pack` each package at its pinned version and keep the listed files; returns the folders fetched."""
    npm = shutil.which("npm")
    done = []
    for folder, (package, version, files) in PACKAGES.items():
        if not force and all((VENDOR / folder / f).is_file() for f in files):
            continue
        if npm is None:
            raise VendorMissing(f"npm is not installed: cannot fetch {package}@{version} (apt-get install npm)")
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([npm, "pack", f"{package}@{version}", "--silent"], cwd=tmp, capture_output=True,
                                 text=True, timeout=300)
            if out.returncode:
                raise VendorMissing(f"npm pack {package}@{version} failed: {out.stderr.strip()[-500:]}")
            with tarfile.open(Path(tmp) / out.stdout.strip().splitlines()[-1]) as tar:
                for dest, member in files.items():
                    target = VENDOR / folder / dest
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(member).read())
        (VENDOR / folder / "VERSION").write_text(f"{package}@{version}\n")
        done.append(f"{package}@{version}")
    return done


def main() -> int:
    try:
        done = fetch(force="--force" in sys.argv)
    except VendorMissing as e:
        print(f"klip_lib.vendor: {e}", file=sys.stderr)
        return 1
    print(f"vendored into {VENDOR}: {', '.join(done)}" if done else f"vendored files present in {VENDOR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
