"""No loader runs a pickle by default: a checkpoint whose unpickling would run code (here: create a marker file) is
planted under every file name a loader accepts; each loader refuses it naming the file and how to opt in, and the
marker stays absent. With the opt-in it loads, warning with the file's name."""

from __future__ import annotations

import dataclasses
import json

import pytest
import timm
import torch
from klip_tiny import tiny_config, tiny_model

from klip_lib import train
from klip_lib.encoders import create_image_encoder, text_checkpoint_state
from klip_lib.model import CheckpointError, KlipModel
from klip_lib.tasks.external import load_external

TIMM_ARGS = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


class RunsCode:
    """Unpickling this runs code: it creates the file `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def plant(path, content: dict):
    """`content` with the code-running object beside it, torch.save'd to `path`; the marker that object creates."""
    marker = path.parent / f"ran-{path.name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**content, "payload": RunsCode(marker)}, path)
    return marker


def refused(call, path, hint: str, error=CheckpointError):
    """`call()` raises `error` naming `path` and the `hint` on how to opt in."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert str(path) in message and "refusing to unpickle" in message and hint in message, message


def loads_with_warning(call, path):
    with pytest.warns(UserWarning, match=f"{path}: unpickling it"):
        return call()


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "model.bin"])
def test_klip_checkpoint(tmp_path, name):
    model = tiny_model().eval()
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    marker = plant(tmp_path / name, {"model": model.state_dict()})
    refused(lambda: KlipModel.from_pretrained(tmp_path), tmp_path / name, "allow_pickle=True")
    assert not marker.exists()
    loaded = loads_with_warning(lambda: KlipModel.from_pretrained(tmp_path, allow_pickle=True), tmp_path / name)
    assert marker.exists() and torch.equal(loaded.vision_proj.weight, model.vision_proj.weight)


def test_text_init_folder(tmp_path):
    weights = tmp_path / "pytorch_model.bin"
    marker = plant(weights, {"state_dict": {"bert.embeddings.word_embeddings.weight": torch.zeros(4, 2)}})
    refused(lambda: text_checkpoint_state(tmp_path, 1, allow_pickle=False), weights, "allow_pickle=True")
    assert not marker.exists()
    state = loads_with_warning(lambda: text_checkpoint_state(tmp_path, 1, allow_pickle=True), weights)
    assert marker.exists() and list(state) == ["text_encoder.embeddings.word_embeddings.weight"]


@pytest.mark.parametrize("name", ["vit.pt", "vit.pth", "vit.bin"])
def test_image_weights(tmp_path, name):
    source = timm.create_model("vit_tiny_patch16_224", num_classes=0, **TIMM_ARGS)
    marker = plant(tmp_path / name, {"state_dict": source.state_dict()})
    build = lambda allow: create_image_encoder("vit_tiny_patch16_224", TIMM_ARGS, str(tmp_path / name), allow)  # noqa: E731
    refused(lambda: build(False), tmp_path / name, "allow_pickle=True")
    assert not marker.exists()
    visual = loads_with_warning(lambda: build(True), tmp_path / name)
    assert marker.exists() and torch.equal(visual.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_training_checkpoint(tmp_path):
    config, cfg = tiny_config(), train.TrainConfig(steps=2)
    path = tmp_path / train.CHECKPOINT
    marker = plant(path, {"model_config": dataclasses.asdict(config), "train_config": dataclasses.asdict(cfg)})
    refused(lambda: train.load_checkpoint(path, config, cfg), path, "--allow-pickle", train.TrainError)
    refused(lambda: train.load_checkpoint(path, config, cfg), path, "or --fresh to start over", train.TrainError)
    assert not marker.exists()
    ckpt = loads_with_warning(lambda: train.load_checkpoint(path, config, cfg, allow_pickle=True), path)
    assert marker.exists() and ckpt["payload"] is None  # what the planted code returned


def external_files(tmp_path):
    """(entry's kind:location, the planted file) for each external layout that may hold a torch pickle."""
    source = timm.create_model("test_vit", num_classes=0)
    out = []
    for name in ("moco.pth", "vit.pt", "vit.bin"):
        out.append((f"timm:test_vit@{tmp_path / name}", tmp_path / name))
    folder = tmp_path / "timm_folder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architecture": "test_vit"}))
    out.append((f"timm:{folder}", folder / "pytorch_model.bin"))
    out.append((f"openclip:ViT-B-32@{tmp_path / 'clip.pt'}", tmp_path / "clip.pt"))
    clip = tmp_path / "clip_folder"
    clip.mkdir()
    (clip / "open_clip_config.json").write_text(json.dumps({"model_cfg": {}, "preprocess_cfg": {}}))
    out.append((f"openclip:{clip}", clip / "open_clip_pytorch_model.bin"))
    blip = tmp_path / "blip_folder"
    blip.mkdir()
    (blip / "config.json").write_text(json.dumps({"model_type": "blip"}))
    out.append((f"hf-blip:{blip}", blip / "pytorch_model.bin"))
    return out, source


def test_external_models(tmp_path):
    entries, source = external_files(tmp_path)
    markers = [plant(path, {"state_dict": source.state_dict()}) for _, path in entries]
    text = ",".join(f"m{i}={entry}" for i, (entry, _) in enumerate(entries))
    with pytest.warns(UserWarning, match="not provided"):
        models, missing = load_external(text, 32)
    assert models == {} and not any(m.exists() for m in markers)
    for i, (entry, path) in enumerate(entries):
        kind = entry.split(":")[0]
        reason = missing[f"m{i}"]
        assert str(path) in reason and "refusing to unpickle" in reason, reason
        assert f"{kind}+pickle (m{i}={kind}+pickle:...)" in reason, reason
    trusted = f"moco=timm+pickle:{entries[0][0].split(':', 1)[1]}"
    with pytest.warns(UserWarning, match=f"{entries[0][1]}: unpickling it"):
        models, missing = load_external(trusted, 32)
    assert missing == {} and markers[0].exists()
    assert torch.equal(models["moco"].visual.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
