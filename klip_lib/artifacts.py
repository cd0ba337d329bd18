"""The run's artifacts, each built once and stored with a manifest of what made it.

The orchestration layer above data, captions, models, training, SCIO and tasks: notebooks and the `klip`
command ask it for the run's dataset, captions, shards and pretrained models, and it builds what is missing.
Every artifact carries a manifest: the step, its parameters (preset values, seed), the keys of its inputs'
manifests and a digest of the source files of the step (what decides the artifact), plus the package version,
git commit and time (recorded, not compared). An artifact whose manifest does not match what is asked is rebuilt,
with a line saying why, and so is everything made from it (its inputs' keys change). A run folder holds one
dataset: an imported one is never replaced by a simulated one; an artifact without a manifest is refused.

`klip artifacts RUN_DIR` lists a run's artifacts and their provenance.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .files import write_json_atomic
from .paths import ROOT, resolve, run_path

MANIFEST = "manifest.json"
PACKAGE = Path(__file__).resolve().parent

# step -> the package's source files (globs) that decide its artifact
CODE: dict[str, tuple[str, ...]] = {
    "dataset": ("data/simulate.py", "data/scene.py", "data/render.py", "data/physics.py", "data/targets.py",
                "data/gazetteer.py", "data/platforms.py", "data/geotiff.py", "data/index.py", "vocab.py"),
    "import": ("data/importer.py", "data/geotiff.py", "data/index.py", "data/physics.py", "data/gazetteer.py",
               "data/safe.py", "data/merge.py", "knowledge/*.py"),
    "captions": ("hcot/generate.py", "hcot/backends.py", "hcot/chain.py", "hcot/realise.py", "hcot/knowledge.py",
                 "hcot/prompts.py", "hcot/schema.py", "hcot/factcheck.py", "vocab.py"),
    "shards": ("data/dataset.py", "data/geotiff.py", "data/__init__.py"),
    "pretrained": ("model.py", "model_config.py", "attention.py", "encoders.py", "losses.py", "train.py", "dist.py",
                   "vocab.py"),
    "klip": ("model.py", "model_config.py", "attention.py", "encoders.py", "losses.py", "train.py", "dist.py",
             "vocab.py", "scio/*.py", "hcot/factcheck.py", "hcot/realise.py"),
}


class ArtifactError(UserError, RuntimeError):
    """An artifact that cannot be used or rebuilt as asked (the message says which file and what to do)."""


def code_digest(step: str) -> str:
    """sha256 of the source files that decide the step's artifact."""
    h = hashlib.sha256()
    for pattern in CODE[step]:
        for path in sorted(PACKAGE.glob(pattern)):
            h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def git_commit() -> str:
    """The checkout's commit (with '+dirty' when it has changes), or 'unknown' outside a git checkout."""
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True,  # noqa: E731
                                        timeout=10, check=True).stdout.strip()
        return run("rev-parse", "HEAD") + ("+dirty" if run("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("klip_lib")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class Manifest:
    """What made an artifact. `key` covers step, params, inputs and code; the rest is recorded only."""

    step: str
    params: dict
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> that artifact's key
    code: str = ""
    complete: bool = False
    package: str = ""
    commit: str = ""
    created: str = ""
    seconds: float | None = None

    @classmethod
    def wanted(cls, step: str, params: dict, inputs: dict[str, str] | None = None, code_step: str | None = None):
        return cls(step, json.loads(json.dumps(params, sort_keys=True, default=str)), dict(inputs or {}),
                   code_digest(code_step or step))

    @property
    def key(self) -> str:
        fields = {"step": self.step, "params": self.params, "inputs": self.inputs, "code": self.code}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def differences(self, other: Manifest) -> list[str]:
        """What differs from `other` (the one asked for), in words; empty when the keys match."""
        out = [f"step {self.step} != {other.step}"] if self.step != other.step else []
        for k in sorted(self.params.keys() | other.params.keys()):
            if self.params.get(k) != other.params.get(k):
                out.append(f"{k} {json.dumps(self.params.get(k))} -> {json.dumps(other.params.get(k))}")
        out += [f"input {k} changed" for k in sorted(self.inputs.keys() | other.inputs.keys())
                if self.inputs.get(k) != other.inputs.get(k)]
        return out + (["its code changed"] if self.code != other.code else [])


def manifest_path(artifact: Path) -> Path:
    """A folder's manifest lies inside it; a file's beside it (captions.jsonl -> captions.manifest.json)."""
    return artifact / MANIFEST if artifact.suffix == "" else artifact.with_name(f"{artifact.stem}.{MANIFEST}")


def read_manifest(artifact: Path) -> Manifest | None:
    p = manifest_path(artifact)
    if not p.is_file():
        return None
    try:
        values = json.loads(p.read_text())
        return Manifest(**{f.name: values[f.name] for f in dataclasses.fields(Manifest) if f.name in values})
    except (ValueError, TypeError, KeyError) as e:
        raise ArtifactError(f"{p}: unreadable manifest ({e}); delete {artifact} to rebuild it") from e


def write_manifest(artifact: Path, manifest: Manifest) -> None:
    write_json_atomic(manifest_path(artifact), dataclasses.asdict(manifest))


def remove(artifact: Path) -> None:
    if artifact.is_dir():
        shutil.rmtree(artifact)
    else:
        artifact.unlink(missing_ok=True)
    manifest_path(artifact).unlink(missing_ok=True)


def build(artifact: Path, wanted: Manifest, make, exists=None) -> Path:
    """`artifact` as `wanted` says: reused when its manifest matches and it is complete, continued by `make(resume=
    True)` when it matches but is incomplete, else removed and made anew by `make(resume=False)`; the manifest is
    completed after `make` returns. Something at `artifact` without a manifest is refused, never overwritten."""
    have = read_manifest(artifact)
    present = exists(artifact) if exists else artifact.exists()
    if have is None and present:
        raise ArtifactError(f"{artifact}: no {manifest_path(artifact).name} says what made it (made by an older "
                            "version or by hand); delete it, or use a new run folder")
    resume = have is not None and have.key == wanted.key
    if resume and have.complete:
        return artifact
    if have is not None and not resume:
        print(f"rebuilding {artifact}: {'; '.join(have.differences(wanted))}")
        remove(artifact)
    wanted = dataclasses.replace(wanted, complete=False, package=package_version(), commit=git_commit(),
                                 created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if artifact.suffix == "":
        artifact.mkdir(parents=True, exist_ok=True)
    write_manifest(artifact, wanted)
    t0 = time.perf_counter()
    make(resume=resume)
    write_manifest(artifact, dataclasses.replace(wanted, complete=True, seconds=round(time.perf_counter() - t0, 1)))
    return artifact


def key_of(artifact: Path) -> str:
    """The key of a complete artifact (what the artifacts made from it record as their input)."""
    have = read_manifest(artifact)
    if have is None or not have.complete:
        raise ArtifactError(f"{artifact}: not built yet (no complete manifest)")
    return have.key


# the steps ------------------------------------------------------------------------------------------
def dataset_dir(run_dir) -> Path:
    return run_path(run_dir, "data")


def ensure_dataset(run_dir, preset: str = "smoke", seed: int = 0) -> Path:
    """The index of the run's dataset: an imported one as it is; else simulated at `preset` (and said so),
    again when the preset's data values or the seed differ from what made it."""
    from .data import SimConfig, simulate_dataset
    from .presets import section

    folder = dataset_dir(run_dir)
    have = read_manifest(folder)
    if have is not None and have.step == "import" and have.complete:
        return folder / "index.parquet"
    cfg = SimConfig(**section(preset, "data"), seed=seed)

    def make(resume: bool):
        print(f"no dataset in {folder} for preset {preset!r}, seed {seed}: simulating {cfg.n_tiles} tiles "
              f"of {cfg.tile_size} px")
        simulate_dataset(folder, cfg, progress=False)

    build(folder, Manifest.wanted("dataset", dataclasses.asdict(cfg)), make,
          exists=lambda f: (f / "index.parquet").exists())
    return folder / "index.parquet"


def import_dataset(run_dir, source, dn: str = "auto", add_simulated: bool = False, preset: str = "smoke",
                   seed: int = 0) -> tuple[Path, str]:
    """The files under `source` imported as the run's dataset (replacing another dataset, reused when the same
    files were imported already), each tile with its facts record (klip_lib.knowledge: offline geography, sensor
    metadata, classical SAR methods); with `add_simulated`, the tiles `preset` simulates (seed `seed`) join them in
    the same dataset (real and simulated mixed). Returns the index and the import report (one line per skipped
    file)."""
    from .data import SimConfig, import_folder, simulate_dataset
    from .data.merge import add_tiles
    from .knowledge.annotate import add_facts
    from .presets import section

    sim = SimConfig(**section(preset, "data"), seed=seed) if add_simulated else None

    src = resolve(source)
    if not src.exists():
        raise ArtifactError(f"{src}: no such file or folder to import; give a folder of GeoTIFFs or image chips")
    files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
    listing = hashlib.sha256("".join(f"{p}\0{p.stat().st_size}\0{p.stat().st_mtime_ns}\n" for p in files).encode())
    folder = dataset_dir(run_dir)

    def make(resume: bool):
        for old in folder.iterdir():
            if old.name != MANIFEST:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        index, _ = import_folder(src, folder, encoding=dn)
        _, problems = add_facts(index)
        if problems:
            with open(folder / "import_report.txt", "a") as f:
                f.write("".join(line + "\n" for line in problems))
        if sim is not None:
            staging = folder.parent / f"{folder.name}_simulated.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            simulate_dataset(staging, sim, progress=False)
            print(f"{add_tiles(folder, staging)} simulated tiles ({preset} preset, seed {seed}) added to the imported ones")
            shutil.rmtree(staging)

    wanted = Manifest.wanted("import", {"source": str(src), "files": listing.hexdigest(), "dn": dn,
                                        **({"simulated": dataclasses.asdict(sim)} if sim else {})})
    build(folder, wanted, make, exists=lambda f: (f / "index.parquet").exists())
    report = folder / "import_report.txt"
    return folder / "index.parquet", report.read_text() if report.exists() else ""


def captions_path(run_dir) -> Path:
    return run_path(run_dir, "captions.jsonl")


def caption_dataset(run_dir, cfg, preset: str = "smoke", seed: int = 0, progress: bool = False) -> dict:
    """Caption the run's dataset with `cfg` (klip_lib.hcot.generate.CaptionConfig) into run_dir/captions.jsonl;
    an interrupted run with the same settings resumes, other settings start anew. Returns the summary."""
    from .hcot.generate import generate_captions

    index = ensure_dataset(run_dir, preset, seed)
    out, summary = captions_path(run_dir), {}
    params = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("api_key", "concurrency", "timeout_s")}

    def make(resume: bool):
        summary.update(generate_captions(index, out, cfg, progress=progress))

    build(out, Manifest.wanted("captions", params, {"dataset": key_of(index.parent)}), make)
    return summary or {"path": str(out), "written": 0, "reused": True}


def ensure_captions(run_dir, preset: str = "smoke", seed: int = 0) -> Path:
    """The run's captions: those made from the run's current dataset (notebook 03, any backend and settings;
    template ones also by the current caption code), else template captions (made, and said so)."""
    from .hcot.generate import CaptionConfig

    index = ensure_dataset(run_dir, preset, seed)
    out = captions_path(run_dir)
    have = read_manifest(out)
    if (have is not None and have.complete and have.inputs.get("dataset") == key_of(index.parent)
            and (have.params.get("backend") != "template" or have.code == code_digest("captions"))):
        return out
    summary = caption_dataset(run_dir, CaptionConfig(seed=seed), preset, seed)
    if summary.get("written"):
        print(f"made {summary['written']} template captions in {out}")
    return out


def ensure_shards(run_dir, preset: str = "smoke", seed: int = 0) -> Path:
    """Shards of the run's dataset at the preset's image size."""
    from .data import build_shards
    from .train import configs_for

    model_config, _ = configs_for(preset)
    index = ensure_dataset(run_dir, preset, seed)
    folder = run_path(run_dir, "shards", f"{preset}-{model_config.image_size}px")

    def make(resume: bool):
        print(f"building shards of {index} at {model_config.image_size} px into {folder}")
        build_shards(index, folder, image_size=model_config.image_size, channels=model_config.in_chans)

    params = {"image_size": model_config.image_size, "channels": model_config.in_chans}
    return build(folder, Manifest.wanted("shards", params, {"dataset": key_of(index.parent)}), make,
                 exists=lambda f: any(f.iterdir()) if f.is_dir() else False)


def ensure_pretrained(run_dir, objective: str, preset: str = "smoke", seed: int = 0, steps: int = 0,
                      fresh: bool = False, scio_strategy: str = "released") -> Path:
    """The model folder of the run's model pretrained with `objective` ('itc', 'itc+itm+mlm' or 'klip'), trained at
    the preset (`steps` > 0 overrides its step count) on the run's shards and captions; an interrupted training
    with the same settings resumes, unless `fresh`. 'klip' runs SCIO with `scio_strategy` ('released' or
    'calibrated', klip_lib.scio.strategies), recorded in the manifest."""
    from .train import configs_for, pretrain, pretrain_dir

    model_config, cfg = configs_for(preset, objective=objective, seed=seed, **({"steps": steps} if steps else {}))
    shards, captions = ensure_shards(run_dir, preset, seed), ensure_captions(run_dir, preset, seed)
    out = pretrain_dir(run_dir, objective)
    if fresh:
        remove(out)

    def make(resume: bool):
        print(f"{'resuming' if resume else 'pretraining'} {objective} in {out} at the {preset} preset")
        if objective == "klip":
            from .hcot.generate import read_captions
            from .scio import pretrain_klip

            pretrain_klip(shards, out, model_config, cfg, read_captions(captions), seed=seed, cfg=scio_cfg)
        else:
            pretrain(shards, out, model_config, cfg, captions=captions, resume=resume)

    params = {"model": dataclasses.asdict(model_config), "train": dataclasses.asdict(cfg)}
    scio_cfg = None
    if objective == "klip":  # the manifest records the SCIO strategy and its settings
        from .scio import ScioConfig, default_steps

        scio_cfg = ScioConfig(strategy=scio_strategy, steps=default_steps(cfg.steps, scio_strategy))
        params["scio"] = dataclasses.asdict(scio_cfg)
    inputs = {"shards": key_of(shards), "captions": key_of(captions)}
    code_step = "klip" if objective == "klip" else "pretrained"
    build(out, Manifest.wanted(f"pretrain {objective}", params, inputs, code_step), make,
          exists=lambda f: (f / "model" / "config.json").exists())
    return out / "model"


def load_models(run_dir, names=None, preset: str = "smoke", seed: int = 0, external: str = ""):
    """The named models (klip_lib.tasks.models.MODELS; pretrained in the run when missing) and the `external` ones."""
    from .tasks import models as task_models

    names = task_models.parse_names(names or task_models.DEFAULT_MODELS)
    dirs = {n: (ensure_pretrained(run_dir, task_models.MODELS[n], preset, seed) if task_models.MODELS[n] else None)
            for n in names}
    return task_models.load_models(dirs, preset, seed, external=external)


def load_split(run_dir, split: str = "test", preset: str = "smoke", seed: int = 0):
    """The tiles of one split with facts and captions (klip_lib.tasks.retrieval.SplitData)."""
    from .tasks.retrieval import load_split as split_data

    return split_data(ensure_shards(run_dir, preset, seed), ensure_captions(run_dir, preset, seed), split)


# listing ----------------------------------------------------------------------------------------------
def list_artifacts(run_dir) -> list[dict]:
    """One row per artifact of a run folder: path, step, whether complete, key, what made it."""
    root = resolve(run_dir)
    rows = []
    for p in sorted(root.rglob(f"*{MANIFEST}")):
        artifact = p.parent if p.name == MANIFEST else p.with_name(p.name.replace(f".{MANIFEST}", ".jsonl"))
        m = read_manifest(artifact)
        if m is None:
            continue
        rows.append({"artifact": str(artifact.relative_to(root)), "step": m.step, "complete": m.complete,
                     "key": m.key[:12], "inputs": ", ".join(f"{k}={v[:12]}" for k, v in m.inputs.items()),
                     "commit": m.commit[:12] + ("+dirty" if m.commit.endswith("+dirty") else ""),
                     "package": m.package, "created": m.created, "seconds": m.seconds,
                     "params": json.dumps(m.params, sort_keys=True)[:200]})
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder, e.g. reports/latest")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")


def main(args: argparse.Namespace) -> int:
    folder = resolve(args.run_dir)
    if not folder.is_dir():
        print(f"klip artifacts: {folder}: no such run folder", file=sys.stderr)
        return 2
    rows = list_artifacts(folder)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"{folder}: no artifacts with a manifest")
    for r in rows:
        print(f"{r['artifact']:<40} {r['step']:<22} {'complete' if r['complete'] else 'INCOMPLETE':<10} "
              f"key {r['key']}  commit {r['commit'] or '?'}  {r['created']}"
              + (f"\n{'':<40} inputs {r['inputs']}" if r["inputs"] else ""))
    return 0


__all__ = ["ArtifactError", "Manifest", "build", "caption_dataset", "ensure_captions", "ensure_dataset",
           "ensure_pretrained", "ensure_shards", "import_dataset", "list_artifacts", "load_models", "load_split"]
