"""Artifacts know what made them: changing a preset value, the seed, the captions or the code of a step rebuilds
exactly the artifacts that depend on it; the rest is reused as it is (klip_lib.artifacts)."""

from __future__ import annotations

import json

import pytest
from klip_tiny import TINY_MODEL

from klip_lib import artifacts, presets
from klip_lib.train import read_result

TINY_PRESET = {
    "data": {"n_tiles": 8, "tile_size": 64, "image_size": 32},
    "model": {**TINY_MODEL, "max_text_len": 32},
    "train": {"steps": 2, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1, "checkpoint_every": 2},
}


@pytest.fixture
def tiny(monkeypatch):
    """A preset small enough to simulate, caption, shard and pretrain in seconds."""
    monkeypatch.setitem(presets.PRESETS, "tiny", json.loads(json.dumps(TINY_PRESET)))
    return presets.PRESETS["tiny"]


def stamps(run):
    """Modification times of each artifact's manifest: what was (re)built changes them."""
    return {m.relative_to(run).as_posix(): m.stat().st_mtime_ns for m in run.rglob(f"*{artifacts.MANIFEST}")}


def changed(before, after):
    return sorted(k for k in after if before.get(k) != after[k])


def test_reused_when_nothing_changed_and_rebuilt_downstream_of_a_seed_change(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    artifacts.ensure_shards(run, "tiny", 0)
    artifacts.ensure_captions(run, "tiny", 0)
    first = stamps(run)
    assert sorted(first) == ["captions.manifest.json", "data/manifest.json", "shards/tiny-32px/manifest.json"]
    capsys.readouterr()
    artifacts.ensure_shards(run, "tiny", 0)
    artifacts.ensure_captions(run, "tiny", 0)
    assert changed(first, stamps(run)) == [] and "rebuilding" not in capsys.readouterr().out

    artifacts.ensure_shards(run, "tiny", 1)
    out = capsys.readouterr().out
    assert "rebuilding" in out and "seed 0 -> 1" in out
    assert changed(first, stamps(run)) == ["data/manifest.json", "shards/tiny-32px/manifest.json"]
    artifacts.ensure_captions(run, "tiny", 1)  # made from the old dataset: rebuilt too
    assert "input dataset changed" in capsys.readouterr().out


def test_a_preset_value_rebuilds_the_dataset_and_what_is_made_from_it(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    artifacts.ensure_captions(run, "tiny", 0)
    first = stamps(run)
    tiny["data"]["n_tiles"] = 12
    artifacts.ensure_captions(run, "tiny", 0)
    assert "n_tiles 8 -> 12" in capsys.readouterr().out
    assert changed(first, stamps(run)) == ["captions.manifest.json", "data/manifest.json"]
    assert len(artifacts.list_artifacts(run)) == 2


def test_a_code_change_rebuilds_only_that_step(tiny, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    artifacts.ensure_shards(run, "tiny", 0)
    artifacts.ensure_captions(run, "tiny", 0)
    first = stamps(run)
    real = artifacts.code_digest
    monkeypatch.setattr(artifacts, "code_digest", lambda step: real(step) + ("edited" if step == "shards" else ""))
    artifacts.ensure_shards(run, "tiny", 0)
    artifacts.ensure_captions(run, "tiny", 0)
    assert "its code changed" in capsys.readouterr().out
    assert changed(first, stamps(run)) == ["shards/tiny-32px/manifest.json"]


def test_code_digest_follows_the_source_files(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    source = tmp_path / "data" / "dataset.py"
    source.write_text("A = 1\n")
    monkeypatch.setattr(artifacts, "PACKAGE", tmp_path)
    before = artifacts.code_digest("shards")
    assert artifacts.code_digest("shards") == before
    source.write_text("A = 2\n")
    assert artifacts.code_digest("shards") != before


@pytest.mark.slow
def test_pretrained_model_follows_train_values_and_captions(tiny, tmp_path, capsys):
    from klip_lib.hcot.generate import CaptionConfig

    run = tmp_path / "run"
    model = artifacts.ensure_pretrained(run, "itc", "tiny", 0)
    assert read_result(model.parent).steps == 2
    first = stamps(run)
    assert artifacts.ensure_pretrained(run, "itc", "tiny", 0) == model and changed(first, stamps(run)) == []

    artifacts.ensure_pretrained(run, "itc", "tiny", 0, steps=3)  # a training value
    assert read_result(model.parent).steps == 3
    assert changed(first, stamps(run)) == ["pretrain/itc/manifest.json"]

    second = stamps(run)
    artifacts.caption_dataset(run, CaptionConfig(seed=5), "tiny", 0)  # other captions (as notebook 03 makes)
    artifacts.ensure_pretrained(run, "itc", "tiny", 0, steps=3)
    assert "input captions changed" in capsys.readouterr().out
    assert changed(second, stamps(run)) == ["captions.manifest.json", "pretrain/itc/manifest.json"]


def test_an_interrupted_build_with_the_same_key_resumes(tmp_path):
    calls = []
    wanted = artifacts.Manifest.wanted("shards", {"image_size": 32})

    def fail(resume):
        calls.append(resume)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        artifacts.build(tmp_path / "a", wanted, fail)
    assert artifacts.read_manifest(tmp_path / "a").complete is False
    artifacts.build(tmp_path / "a", wanted, lambda resume: calls.append(resume))
    assert calls == [False, True] and artifacts.read_manifest(tmp_path / "a").complete


def test_an_artifact_without_manifest_is_refused_with_its_path(tiny, tmp_path):
    (tmp_path / "run" / "data").mkdir(parents=True)
    (tmp_path / "run" / "data" / "index.parquet").write_text("made by hand")
    with pytest.raises(artifacts.ArtifactError, match=r"run/data: no manifest.json .*delete it"):
        artifacts.ensure_dataset(tmp_path / "run", "tiny", 0)
    assert (tmp_path / "run" / "data" / "index.parquet").read_text() == "made by hand"


def test_an_imported_dataset_is_the_runs_dataset(tiny, tmp_path, capsys):
    source = artifacts.ensure_dataset(tmp_path / "sim", "tiny", 0).parent / "tiles"
    run = tmp_path / "run"
    index, report = artifacts.import_dataset(run, source)
    capsys.readouterr()
    assert artifacts.ensure_dataset(run, "tiny", 3) == index  # never replaced by a simulated one
    assert "simulating" not in capsys.readouterr().out
    assert artifacts.read_manifest(index.parent).step == "import"
    assert artifacts.import_dataset(run, source)[0] == index
    with pytest.raises(artifacts.ArtifactError, match="nowhere: no such file"):
        artifacts.import_dataset(run, tmp_path / "nowhere")


def test_klip_artifacts_lists_a_run(tiny, tmp_path, capsys):
    from klip_lib import cli

    artifacts.ensure_dataset(tmp_path / "run", "tiny", 0)
    assert cli.main(["artifacts", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "data" in out and "dataset" in out and "complete" in out
    assert cli.main(["artifacts", str(tmp_path / "absent")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_tests_run_notebooks_in_the_sessions_fresh_folder():
    """nbval kernels inherit $KLIP_SCRATCH, so the notebooks' default run folder is a new one, not reports/."""
    import os
    from pathlib import Path

    from klip_lib import paths

    fresh = Path(os.environ[paths.SCRATCH_ENV])
    assert paths.resolve(paths.SCRATCH) == fresh.resolve() and paths.REPORTS not in fresh.resolve().parents
    assert paths.run_path("reports/scratch", "metrics", create=False).parent == fresh.resolve()
