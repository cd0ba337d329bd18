"""Pretraining engine: exact resume, schedules, bad input, the benchmark and a 2-process torchrun."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from klip_tiny import TINY_MODEL, tiny_config

from klip_lib import train
from klip_lib.data import SimConfig, build_shards, simulate_dataset

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """24 simulated tiles packed at the tiny model's image size."""
    root = tmp_path_factory.mktemp("train")
    index = simulate_dataset(root / "data", SimConfig(n_tiles=24, tile_size=64, seed=0))
    return build_shards(index, root / "shards", image_size=TINY_MODEL["image_size"], channels=2).parent


def tiny_train(**changes) -> train.TrainConfig:
    return train.TrainConfig(**{"steps": 6, "batch_size": 4, "warmup_steps": 2, "checkpoint_every": 2, "lr": 1e-3,
                                **changes})


def state(out_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(out_dir / train.CHECKPOINT, weights_only=True)["model"]


def test_interrupted_and_resumed_run_ends_bit_for_bit_equal(shards, tmp_path):
    config = tiny_config(text_dropout=0.1)  # dropout on: the RNG states must be restored too
    whole = train.pretrain(shards, tmp_path / "whole", config, tiny_train(), progress=False)
    train.pretrain(shards, tmp_path / "cut", config, tiny_train(), stop_after=3, progress=False)
    resumed = train.pretrain(shards, tmp_path / "cut", config, tiny_train(), progress=False)
    assert whole.steps == resumed.steps == 6
    a, b = state(tmp_path / "whole"), state(tmp_path / "cut")
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"resumed weights differ in {differing[:5]}"
    rows = train.read_csv(tmp_path / "cut" / train.METRICS_CSV)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "whole" / "model" / "model.safetensors").exists()


def test_batches_are_a_function_of_seed_and_step():
    a = list(train.StepBatches(10, 4, seed=1, start=0, stop=5))
    b = list(train.StepBatches(10, 4, seed=1, start=3, stop=5))
    assert a[3:] == b
    epoch0 = [i for batch in a[:2] for i, _ in batch] + [i for i, _ in a[2][:2]]
    assert sorted(epoch0) == list(range(10))  # each epoch is a permutation
    ranks = [list(train.StepBatches(10, 2, seed=1, start=0, stop=1, rank=r, world=2))[0] for r in (0, 1)]
    assert ranks[0] + ranks[1] == a[0]  # two ranks split the combined batch


def test_warmup_then_cosine_schedule():
    cfg = train.TrainConfig(steps=10, warmup_steps=2, min_lr_ratio=0.1)
    factors = [train.lr_factor(s, cfg) for s in range(11)]
    assert factors[0] == pytest.approx(0.5) and factors[1] == pytest.approx(1.0)
    assert factors[2] == pytest.approx(1.0) and factors[10] == pytest.approx(0.1)
    assert all(x >= y for x, y in zip(factors[1:], factors[2:]))


def test_weight_decay_groups_leave_norms_and_biases_alone():
    from klip_lib.model import KlipModel

    model = KlipModel(tiny_config())
    decay, no_decay = train.param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim >= 2 for p in decay["params"])
    assert any(names[id(p)].endswith("temp") for p in no_decay["params"])
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0


def test_losses_fall_on_the_fixed_batch(shards, tmp_path):
    result = train.pretrain(shards, tmp_path / "fall", tiny_config(), tiny_train(steps=25, checkpoint_every=25),
                            progress=False)
    assert result.after["itc"] < result.before["itc"]
    assert result.after["mlm"] < result.before["mlm"]


def test_empty_or_foreign_shards_are_refused(shards, tmp_path):
    with pytest.raises(train.TrainError, match="no shard manifest"):
        train.pretrain(tmp_path, tmp_path / "o", tiny_config(), tiny_train(), progress=False)
    with pytest.raises(train.TrainError, match=r"shards are 2 x 32 px but the model wants 2 x 64 px"):
        train.pretrain(shards, tmp_path / "o", tiny_config(image_size=64), tiny_train(), progress=False)


def test_checkpoint_with_another_config_names_the_fields(shards, tmp_path):
    train.pretrain(shards, tmp_path / "run", tiny_config(), tiny_train(steps=2), progress=False)
    with pytest.raises(train.TrainError, match=r"model config does not match.*embed_dim: checkpoint 16 vs now 32"):
        train.pretrain(shards, tmp_path / "run", tiny_config(embed_dim=32), tiny_train(steps=4), progress=False)


def test_full_disk_keeps_the_previous_checkpoint(shards, tmp_path, monkeypatch):
    out = tmp_path / "disk"
    train.pretrain(shards, out, tiny_config(), tiny_train(steps=2), progress=False)
    before = state(out)
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(train.TrainError, match="No space left on device; the previous checkpoint is intact"):
        train.pretrain(shards, out, tiny_config(), tiny_train(steps=4), progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    after = state(out)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not list(out.glob(".*.tmp"))


def test_precision_is_chosen_at_run_time_from_the_chip(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)
    assert train.autocast_dtype(cpu) is torch.bfloat16 and train.autocast_dtype(cpu, "fp32") is None
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)  # emulated bf16 is slower than fp32: fp32
    assert train.autocast_dtype(cpu) is None and train.autocast_dtype(cpu, "bf16") is torch.bfloat16
    with pytest.raises(train.TrainError, match="unknown precision 'fp16'"):
        tiny_train(precision="fp16")


def test_the_result_records_the_precision_and_bf16_stays_near_fp32(shards, tmp_path):
    """Same seed, same batches: bf16 autocast's first-step loss within 5% of fp32's (bf16 keeps 8 mantissa bits:
    0.4% per rounding, compounded over the layers), and each result says what it ran in."""
    runs = {p: train.pretrain(shards, tmp_path / p, tiny_config(), tiny_train(steps=2, precision=p), progress=False)
            for p in ("fp32", "bf16")}
    assert runs["fp32"].precision == "fp32" and runs["bf16"].precision == "bf16 autocast"
    assert train.read_result(tmp_path / "bf16").precision == "bf16 autocast"
    for name in ("itc", "itm", "mlm"):
        assert runs["bf16"].first[name] == pytest.approx(runs["fp32"].first[name], rel=0.05), name


def test_unknown_objective():
    with pytest.raises(train.TrainError, match="unknown objective 'mae'"):
        train.TrainConfig(objective="mae")


def test_bench_pretrain_runs_on_cpu(capsys):
    from klip_lib.cli import main

    assert main(["bench", "pretrain", "--preset", "smoke", "--device", "cpu", "--image-size", "32",
                 "--batch-size", "2", "--steps", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "FLOPs/step" in out and "MFU" in out and "per core" in out
    assert "precision" in out and "peak memory" in out and "CPU time/step" in out and "load average" in out
    assert "median of 2 steps" in out and "slowest" in out  # a recompile inside the timed steps is one outlier
    flops = float(out.split("FLOPs/step")[1].split("TFLOP")[0])
    assert flops > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes_train(shards, tmp_path):
    out = tmp_path / "ddp"
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_MODEL))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), "-m", "klip_lib.train", "--shards", str(shards), "--out", str(out),
               "--steps", "3", "--batch-size", "2", "--checkpoint-every", "3", "--model-config", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 3
    rows = train.read_csv(out / train.METRICS_CSV)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0]["images_per_s"] > 0
    assert (out / "model" / "model.safetensors").exists()


DETERMINISM_SCRIPT = """
import hashlib, sys, torch
from klip_lib import determinism, train
determinism.configure()  # KLIP_DETERMINISTIC=1: deterministic algorithms
torch.set_num_threads(2)
config, cfg = train.configs_for("smoke", steps=3, checkpoint_every=3)  # the tiny model is too small to show it
result = train.pretrain(sys.argv[1], sys.argv[2], config, cfg, captions=sys.argv[3], resume=False, progress=False)
state = torch.load(result.out_dir / train.CHECKPOINT, weights_only=True)["model"]
print(hashlib.sha256(b"".join(v.numpy().tobytes() for _, v in sorted(state.items()))).hexdigest())
"""


def test_two_processes_with_two_threads_train_identical_weights(tmp_path):
    """Same seed, separate processes, 2 threads, KLIP_DETERMINISTIC=1: bit-identical weights (without torch's
    deterministic algorithms some CPU kernels reduce in a varying order and the weights differed in every process)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "OMP_NUM_THREADS": "2"}
    env["KLIP_DETERMINISTIC"] = "1"
    index = simulate_dataset(tmp_path / "data", SimConfig(n_tiles=16, tile_size=64, seed=0), progress=False)
    shards = build_shards(index, tmp_path / "shards", image_size=64, channels=2).parent
    captions = tmp_path / "captions.jsonl"  # captions as long as the text window, as HCoT writes them
    tiles = json.loads((shards / "shards.json").read_text())["tiles"]
    words = "the terrain is a flat plain with water in the top-left and three cargo ships near the port".split()
    captions.write_text("".join(json.dumps({"tile_id": t["tile_id"], "status": "ok",
                                            "text": " ".join(words[(k + i) % len(words)] for k in range(90))}) + "\n"
                                for i, t in enumerate(tiles)))
    digests = [subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT, str(shards), str(tmp_path / f"run{i}"),
                               str(captions)],
                              env=env, capture_output=True, text=True, check=True).stdout.split()[-1]
               for i in range(2)]
    assert digests[0] == digests[1]


@pytest.mark.parametrize("value, expected", [(None, "True False"), ("0", "False True"), ("1", "True False")])
def test_deterministic_mode_is_the_cpu_default_without_the_nan_fill(value, expected):
    if value is None and torch.cuda.is_available():
        pytest.skip("the default is off where CUDA is available")
    env = {k: v for k, v in os.environ.items() if k != "KLIP_DETERMINISTIC"} | ({"KLIP_DETERMINISTIC": value}
                                                                                if value else {})
    out = subprocess.run([sys.executable, "-c", "from klip_lib import determinism; import torch; determinism.configure(); "
                          "print(torch.are_deterministic_algorithms_enabled(), "
                          "torch.utils.deterministic.fill_uninitialized_memory)"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == expected


IMPORT_ALL = """
import importlib, pkgutil, torch
import klip_lib
before = (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory,
          torch.get_num_threads(), torch.get_default_dtype())
for m in pkgutil.walk_packages(klip_lib.__path__, "klip_lib."):
    importlib.import_module(m.name)
after = (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory,
         torch.get_num_threads(), torch.get_default_dtype())
print(before == after, after)
"""


def test_importing_the_package_leaves_torch_settings_untouched():
    env = {k: v for k, v in os.environ.items() if k != "KLIP_DETERMINISTIC"}
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("True (False, True,"), out.stdout + out.stderr[-2000:]


def test_determinism_rejects_an_unknown_mode():
    from klip_lib import determinism

    with pytest.raises(ValueError, match="KLIP_DETERMINISTIC='yes'"):
        determinism.configure("yes")
