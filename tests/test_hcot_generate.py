"""Resumable caption generation: skip what is done, survive kill -9 and torn lines, the CLI and the benchmark."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from hcot_fakes import FakeChatServer, write_dataset

from klip_lib.hcot import bench, commands
from klip_lib.hcot.backends import TemplateBackend
from klip_lib.hcot.generate import CaptionConfig, caption_batch, generate_captions, read_captions
from klip_lib.paths import ROOT


def test_generate_skips_done_tiles_and_tiles_without_facts(tmp_path):
    index = write_dataset(tmp_path / "ds", 5, with_unlabelled=True)
    out = tmp_path / "c.jsonl"
    first = generate_captions(index, out, progress=False)
    assert first == {"path": str(out), "tiles": 5, "already_done": 0, "written": 5, "ok": 5, "failed": 0,
                     "without_facts": 1}
    assert generate_captions(index, out, progress=False)["written"] == 0
    generate_captions(index, out, CaptionConfig(level="L4"), progress=False)
    records = read_captions(out)
    assert len(records) == 10 and sorted(r["level"] for r in records) == ["L4"] * 5 + ["L5"] * 5
    assert all(r["status"] == "ok" and all(v is not False for v in r["factcheck"].values()) for r in records)


def test_generate_captions_only_the_splits_asked_for(tmp_path):
    """`klip caption --split train`: an LLM's drafts of the training tiles only (the SCIO harness's LLM noise)."""
    import pandas as pd

    index = write_dataset(tmp_path / "ds", 4)
    df = pd.read_parquet(index)
    df["split"] = ["train", "val", "train", "test"]
    df.to_parquet(index)
    out = tmp_path / "c.jsonl"
    summary = generate_captions(index, out, CaptionConfig(level="L4"), progress=False, splits=("train",))
    assert summary["tiles"] == 2 and [r["tile_id"] for r in read_captions(out)] == ["sim_000000", "sim_000002"]
    assert generate_captions(index, out, CaptionConfig(level="L4"), progress=False)["written"] == 2  # the rest


def test_torn_last_line_is_cut_and_redone(tmp_path):
    index = write_dataset(tmp_path / "ds", 4)
    out = tmp_path / "c.jsonl"
    generate_captions(index, out, progress=False)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:37])
    assert len(read_captions(out, repair=False)) == 2 and out.read_text().endswith(lines[2][:37])
    assert generate_captions(index, out, progress=False)["written"] == 2
    records = read_captions(out)
    assert sorted(r["tile_id"] for r in records) == [f"sim_{i:06d}" for i in range(4)]
    assert out.read_text().count("\n") == 4


def test_lost_newline_and_broken_middle_line(tmp_path):
    out = tmp_path / "c.jsonl"
    out.write_text('{"a": 1}\n{"a": 2}')
    assert read_captions(out) == [{"a": 1}, {"a": 2}] and out.read_text().endswith("}\n")
    out.write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_captions(out)


@pytest.mark.slow
def test_kill_9_midway_then_rerun_captions_every_tile_once(tmp_path):
    n = 40
    index = write_dataset(tmp_path / "ds", n)
    out = tmp_path / "c.jsonl"
    answer = json.dumps({"Terrain": "The terrain is classified as plain"})
    with FakeChatServer(lambda prompt: answer, latency_s=0.05) as server:
        cmd = [sys.executable, "-m", "klip_lib.cli", "caption", "--index", str(index), "--out", str(out),
               "--backend", "openai", "--base-url", server.base_url, "--model", "fake", "--batch-size", "1",
               "--concurrency", "1", "--no-progress"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 5):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = len(read_captions(out, repair=False))
        assert 5 <= killed_at < n
        rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    tiles = [r["tile_id"] for r in read_captions(out)]
    assert sorted(tiles) == [f"sim_{i:06d}" for i in range(n)]
    assert json.loads(rerun.stdout)["already_done"] == killed_at


def test_cli_template(tmp_path, capsys):
    index = write_dataset(tmp_path / "ds", 3)
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    args = parser.parse_args(["--index", str(index), "--out", str(tmp_path / "c.jsonl"), "--no-progress"])
    assert commands.main(args) == 0
    assert json.loads(capsys.readouterr().out)["ok"] == 3
    args = parser.parse_args(["--index", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "c.jsonl")])
    with pytest.raises(FileNotFoundError, match="nope.parquet: no such index"):
        commands.main(args)


def test_template_refuses_low_levels():
    with pytest.raises(ValueError, match="runs at L4 or L5, not L0"):
        caption_batch([], TemplateBackend(), "L0")


def test_bench_prints_captions_per_second(tmp_path, capsys):
    index = write_dataset(tmp_path / "ds", 10)
    parser = argparse.ArgumentParser()
    bench.add_bench_arguments(parser)
    assert bench.bench(parser.parse_args(["--index", str(index), "--captions", "50"])) == 0
    line = capsys.readouterr().out
    assert line.startswith("caption: 50 template captions at L5") and "captions/s" in line
    assert "fully fact-checked: 10/10" in line


def test_ensure_captions_on_simulated_tiles_is_fully_accurate(tmp_path):
    from klip_lib.artifacts import ensure_captions
    from klip_lib.hcot.factcheck import accuracy

    path = ensure_captions(tmp_path / "run")
    records = read_captions(path)
    assert path == tmp_path / "run" / "captions.jsonl" and len(records) > 0
    assert all(a in (1.0, None) for a in accuracy(records).values())
    assert accuracy(records)["Terrain"] == 1.0 and accuracy(records)["Count"] == 1.0
    assert ensure_captions(tmp_path / "run") == path and len(read_captions(path)) == len(records)
