"""Test helpers for klip_lib.hcot: facts records that follow docs/contracts.md, a small index on disk,
and a fake OpenAI-compatible chat-completions server whose failures a test can script."""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from klip_lib.vocab import AIRCRAFT_TYPES, GRID_CELLS, LANDCOVER_CLASSES, SHIP_CLASSES, grid_cell

CITIES = [("Rotterdam", "Netherlands", "Europe", 4.48, 51.92, "temperate oceanic", True),
          ("Wuhan", "China", "Asia", 114.3, 30.59, "humid subtropical", False),
          ("Denver", "United States", "North America", -104.99, 39.74, "semi-arid", False)]


def rotterdam_facts() -> dict:
    """The contract's example tile: a port on a river with three ships."""
    fr = {c: 0.0 for c in LANDCOVER_CLASSES}
    fr.update(water=0.21, urban=0.30, road=0.08, industrial=0.12, port=0.20, farmland=0.09)
    ships = [("cargo ship", 152.0, 23.0, (200, 40)), ("tanker", 250.0, 38.0, (150, 120)),
             ("fishing vessel", 40.0, 7.0, (210, 60))]
    targets = [{"id": i, "class": "ship", "type": t, "length_m": length, "width_m": w, "heading_deg": 35.0,
                "bbox": [x - 5, y - 3, x + 5, y + 3], "center": [x, y], "grid_cell": grid_cell(x, y, 256, 256)}
               for i, (t, length, w, (x, y)) in enumerate(ships)]
    return {
        "tile_id": "sim_000012", "scene_id": "sim_scene_0003", "city": "Rotterdam", "country": "Netherlands",
        "continent": "Europe", "lon": 4.48, "lat": 51.92, "climate": "temperate oceanic", "coastal": True,
        "river": True, "has_port": True, "has_airport": True, "platform": "sentinel1", "band": "C",
        "polarizations": ["VV", "VH"], "resolution_m": 10.0, "incidence_deg": 37.5, "looks": 5,
        "width": 256, "height": 256, "terrain": "plain", "landcover_fractions": fr, "main_landform": "urban",
        "landforms_present": ["urban", "water", "port", "industrial", "farmland", "road"],
        "regional_landform": {"top-left": "urban", "top": "urban", "top-right": "water", "left": "industrial",
                              "center": "water", "right": "port", "bottom-left": "farmland",
                              "bottom": "urban", "bottom-right": "road"},
        "water_present": True, "water_kinds": ["river", "port basin"],
        "counts": {"ship": 3, "aircraft": 0, "storage tank": 0, "vehicle": 0}, "targets": targets,
    }


def random_facts(seed: int, size: int = 128) -> dict:
    """A random but consistent facts record (fractions, cells, counts and targets agree with each other)."""
    rng = random.Random(seed)
    city, country, continent, lon, lat, climate, coastal = rng.choice(CITIES)
    k = rng.randint(1, 5)
    classes = rng.sample(LANDCOVER_CLASSES, k)
    weights = [rng.random() + 0.05 for _ in classes]
    fr = {c: 0.0 for c in LANDCOVER_CLASSES}
    fr.update({c: w / sum(weights) for c, w in zip(classes, weights)})
    present = sorted((c for c in LANDCOVER_CLASSES if fr[c] >= 0.05), key=lambda c: -fr[c])
    regional = {cell: rng.choice(present) for cell in GRID_CELLS}
    targets = []
    for cls in rng.sample(["ship", "aircraft", "storage tank", "vehicle"], rng.randint(0, 2)):
        for _ in range(rng.randint(1, 4)):
            if cls == "ship":
                kind = rng.choice(list(SHIP_CLASSES))
                length = rng.uniform(*SHIP_CLASSES[kind])
            elif cls == "aircraft":
                kind = rng.choice(list(AIRCRAFT_TYPES))
                length = AIRCRAFT_TYPES[kind][0]
            elif cls == "storage tank":
                kind, length = "oil tank", rng.uniform(20, 80)
            else:
                kind, length = "car", rng.uniform(4, 6)
            x, y = rng.uniform(5, size - 5), rng.uniform(5, size - 5)
            targets.append({"id": len(targets), "class": cls, "type": kind, "length_m": round(length, 1),
                            "width_m": round(length / 6.5, 1), "heading_deg": rng.uniform(0, 180),
                            "bbox": [int(x) - 2, int(y) - 2, int(x) + 3, int(y) + 3], "center": [x, y],
                            "grid_cell": grid_cell(x, y, size, size)})
    counts = {c: sum(t["class"] == c for t in targets) for c in ("ship", "aircraft", "storage tank", "vehicle")}
    kinds = [k for k in ("river", "coast", "lake", "port basin") if rng.random() < 0.4] if fr["water"] else []
    return {
        "tile_id": f"sim_{seed:06d}", "scene_id": f"sim_scene_{seed // 4:04d}", "city": city, "country": country,
        "continent": continent, "lon": lon, "lat": lat, "climate": climate, "coastal": coastal,
        "river": "river" in kinds, "has_port": rng.random() < 0.5, "has_airport": rng.random() < 0.5,
        "platform": "sentinel1", "band": "C", "polarizations": ["VV", "VH"], "resolution_m": 10.0,
        "incidence_deg": rng.uniform(30, 45), "looks": 5, "width": size, "height": size,
        "terrain": rng.choice(["plain", "hilly", "mountain"]), "landcover_fractions": fr,
        "main_landform": present[0], "landforms_present": present, "regional_landform": regional,
        "water_present": fr["water"] > 0, "water_kinds": kinds, "counts": counts, "targets": targets,
    }


def write_dataset(folder: Path, n: int, with_unlabelled: bool = False) -> Path:
    """A dataset folder with `n` facts records and an index.parquet as in docs/contracts.md; returns the index."""
    import pandas as pd
    from shapely.geometry import box

    (folder / "labels").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        facts = random_facts(i)
        (folder / "labels" / f"{facts['tile_id']}.json").write_text(json.dumps(facts))
        rows.append(_row(facts["tile_id"], f"labels/{facts['tile_id']}.json", facts))
    if with_unlabelled:
        rows.append(_row("geotiff_0001", "", {"city": "", "country": "", "lon": 0.0, "lat": 0.0}))
    df = pd.DataFrame(rows)
    df["geometry"] = [box(r["lon"] - 0.01, r["lat"] - 0.01, r["lon"] + 0.01, r["lat"] + 0.01).wkb for r in rows]
    index = folder / "index.parquet"
    df.drop(columns=["lon", "lat"]).to_parquet(index)
    return index


def _row(tile_id: str, facts_path: str, facts: dict) -> dict:
    return {"tile_id": tile_id, "path": f"tiles/{tile_id}.tif", "crs": "EPSG:32631", "city": facts["city"],
            "country": facts["country"], "platform": "sentinel1", "band": "C", "polarizations": "VV,VH",
            "resolution_m": 10.0, "incidence_deg": 37.0, "width": 128, "height": 128, "split": "train",
            "scene_id": "s0", "landcover_path": "", "facts_path": facts_path,
            "source": "simulated" if facts_path else "geotiff", "note": "", "lon": facts["lon"], "lat": facts["lat"]}


class FakeChatServer:
    """A local OpenAI-compatible /v1/chat/completions server.

    `script` is a list of behaviours taken one per request (then `default` forever): "ok" (answer with
    `answer(prompt)`), "500", "401" (an OpenAI-style error), "timeout" (sleep past the client's timeout), "badjson" (a body that is not
    JSON), "drop" (close the connection without a response), "garbage" (valid response whose message is not
    a caption JSON). Every answer waits `latency_s` first. Every request's headers and body are kept in
    `requests`.
    """

    def __init__(self, answer, script=(), default="ok", delay_s: float = 2.0, latency_s: float = 0.0):
        self.answer, self.script, self.default, self.delay_s = answer, list(script), default, delay_s
        self.latency_s = latency_s
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    action = server.script.pop(0) if server.script else server.default
                if action == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                time.sleep(server.delay_s if action == "timeout" else server.latency_s)
                if action == "500":
                    return self._send(500, b'{"error": {"message": "internal error"}}')
                if action == "401":
                    return self._send(401, b'{"error": {"message": "invalid api key"}}')
                if action == "badjson":
                    return self._send(200, b'{"choices": [ this is not json')
                content = "Sure! here is a caption" if action == "garbage" else \
                    server.answer(body["messages"][-1]["content"])
                reply = {"id": "x", "object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}]}
                self._send(200, json.dumps(reply).encode())

            def _send(self, code, payload):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
