"""The KLIP model on a tiny config: losses, gradients, momentum, queues, encoders, checkpoints."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import timm
import torch
from klip_tiny import tiny_batch, tiny_config, tiny_model

from klip_lib.encoders import minilm_path
from klip_lib.model import CheckpointError, KlipConfig, KlipModel, scene_ids_tensor


def _forward(model, batch, seed=0, **kwargs):
    keys = ("images", "input_ids", "attention_mask", "scene_ids")
    g = torch.Generator().manual_seed(seed)
    return model(*(batch[k] for k in keys), generator=g, mlm_inputs=batch["mlm_inputs"], **kwargs)


def test_forward_returns_named_losses_and_their_sum():
    model = tiny_model()
    batch = tiny_batch(model)
    out = _forward(model, batch)
    for name in ("itc", "itc_i2t", "itc_t2i", "itm", "itm_acc", "mlm", "mlm_acc", "loss"):
        assert out[name].ndim == 0 and torch.isfinite(out[name]), name
    total = out["itc"] + out["itm"] + out["mlm"]
    assert float(out["loss"].detach()) == pytest.approx(float(total.detach()), rel=1e-6)
    clip_like = _forward(model, batch, objectives=("itc",))
    assert set(clip_like) == {"itc", "itc_i2t", "itc_t2i", "loss"}
    with pytest.raises(ValueError, match="choose from"):
        _forward(model, batch, objectives=("itc", "lm"))


def test_gradients_reach_both_encoders_and_never_the_momentum_copies():
    model = tiny_model()
    _forward(model, tiny_batch(model))["loss"].backward()
    reached = {
        "image encoder": model.visual.patch_embed.proj.weight,
        "text encoder": model.text_encoder.embeddings.word_embeddings.weight,
        "cross-attention": model.fusion.layer[0].crossattention.self.key.weight,
        "temperature": model.temp,
        "itm head": model.itm_head.weight,
    }
    for name, p in reached.items():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    for module in (model.visual_m, model.vision_proj_m, model.text_encoder_m, model.text_proj_m):
        for p in module.parameters():
            assert not p.requires_grad and p.grad is None


def test_momentum_weights_follow_the_ema_rule():
    model = tiny_model()
    with torch.no_grad():
        for p in model.visual.parameters():
            p.add_(0.5)  # as if an optimizer step moved the online encoder
    before_m = [p.clone() for p in model.visual_m.parameters()]
    online = [p.clone() for p in model.visual.parameters()]
    model.train()
    _forward(model, tiny_batch(model), objectives=("itc",))  # a training forward takes one EMA step
    m = model.config.momentum
    for p_m, old, p in zip(model.visual_m.parameters(), before_m, online, strict=True):
        torch.testing.assert_close(p_m, m * old + (1 - m) * p)
    assert not torch.equal(model.visual_m.patch_embed.proj.weight, model.visual.patch_embed.proj.weight)


def test_queue_fills_and_wraps_and_eval_leaves_it_alone():
    model = tiny_model()  # queue of 16, batches of 8
    batch = tiny_batch(model)
    model.eval()
    _forward(model, batch, objectives=("itc",))
    assert int(model.queue_filled) == 0
    model.train()
    _forward(model, batch, objectives=("itc",))
    assert int(model.queue_filled) == 8 and int(model.queue_ptr) == 8
    assert torch.equal(model.id_queue[:8], batch["scene_ids"])
    for _ in range(2):
        _forward(model, batch, objectives=("itc",))
    assert int(model.queue_filled) == 16 and int(model.queue_ptr) == 8
    torch.testing.assert_close(model.image_queue.norm(dim=1), torch.ones(16))


def test_training_step_runs_under_bf16_autocast():
    model = tiny_model().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _forward(model, tiny_batch(model))
    out["loss"].backward()
    assert torch.isfinite(out["loss"].detach()) and model.image_queue.dtype == torch.float32
    assert model.visual.patch_embed.proj.weight.grad is not None


def test_itm_uses_only_positives_when_every_pair_shares_one_scene():
    model = tiny_model().eval()
    b = tiny_batch(model, scenes=["one"] * 8)
    with torch.no_grad():
        out = _forward(model, b, objectives=("itm",))
        positives = -model.itm_score(b["images"], b["input_ids"], b["attention_mask"]).log().mean()
    torch.testing.assert_close(out["itm"], positives)  # no negative may come from the same scene


def test_encoders_scores_and_logits_have_the_documented_shapes():
    model = tiny_model().eval()
    b = tiny_batch(model, n=3)
    with torch.no_grad():
        img, txt = model.encode_image(b["images"]), model.encode_text(b["input_ids"], b["attention_mask"])
        score = model.itm_score(b["images"], b["input_ids"], b["attention_mask"])
        logits = model.mlm_logits(b["images"], b["input_ids"], b["attention_mask"])
    assert img.shape == txt.shape == (3, 16)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(3))
    assert score.shape == (3,) and bool(((score > 0) & (score < 1)).all())
    with torch.no_grad():  # tokens encoded beforehand (retrieval re-ranking encodes each image and text once)
        given = model.itm_score(None, b["input_ids"], b["attention_mask"],
                                image_embeds=model.image_tokens(b["images"])[0],
                                text_embeds=model.text_tokens(b["input_ids"], b["attention_mask"])[0])
    torch.testing.assert_close(given, score)
    assert logits.shape == (*b["input_ids"].shape, 30522)


def test_scene_ids_are_stable_int64():
    a = scene_ids_tensor(["sim_scene_0003", "sim_scene_0004", "sim_scene_0003"])
    assert a.dtype == torch.long and bool((a >= 0).all())
    assert a[0] == a[2] != a[1]
    assert torch.equal(a, scene_ids_tensor(["sim_scene_0003", "sim_scene_0004", "sim_scene_0003"]))


def test_save_and_load_round_trip_outputs_exactly(tmp_path):
    model = tiny_model()
    batch = tiny_batch(model)
    model.train()
    _forward(model, batch)  # fill the queue so that it is part of what must round-trip
    model.eval()
    with torch.no_grad():
        before = _forward(model, batch)
    model.save_pretrained(tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["embed_dim"] == 16
    loaded = KlipModel.from_pretrained(tmp_path / "ckpt").eval()
    with torch.no_grad():
        after = _forward(loaded, batch)
    for name in before:
        assert torch.equal(before[name], after[name]), name
    assert int(loaded.queue_filled) == 8


def test_torch_checkpoint_of_tensors_loads_without_unpickling(tmp_path, recwarn):
    """A .pt of tensors loads with weights_only=True (tests/test_safe_loading.py: one needing unpickling)."""
    model = tiny_model().eval()
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    loaded = KlipModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.vision_proj.weight, model.vision_proj.weight)
    assert not [w for w in recwarn if "unpickl" in str(w.message)]


def test_config_weights_mismatch_names_the_tensors(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "embed_dim": 8}))
    with pytest.raises(
        CheckpointError, match=r"shape \(file vs config\): .*vision_proj\.weight \(16, 48\) vs \(8, 48\)"
    ):
        KlipModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "fusion_layers": 2, "text_layers": 3}))
    with pytest.raises(CheckpointError, match=r"missing: .*fusion\.layer\.1\.crossattention"):
        KlipModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "colour": "red"}))
    with pytest.raises(ValueError, match=r"unknown KlipConfig fields \['colour'\]"):
        KlipModel.from_pretrained(tmp_path)


def test_text_encoder_initialises_from_bundled_minilm():
    torch.manual_seed(0)
    model = KlipModel(tiny_config(text_init="minilm", fusion_layers=2))
    c = model.config
    assert (c.text_hidden, c.text_layers, c.text_heads, c.text_positions) == (384, 6, 12, 512)
    state = safetensors.torch.load_file(str(minilm_path() / "model.safetensors"))
    assert torch.equal(
        model.text_encoder.embeddings.word_embeddings.weight, state["embeddings.word_embeddings.weight"]
    )
    assert torch.equal(
        model.fusion.layer[1].output.dense.weight, state["encoder.layer.5.output.dense.weight"]
    )
    assert torch.equal(
        model.text_encoder_m.layer[3].output.dense.weight, state["encoder.layer.3.output.dense.weight"]
    )
    assert any("crossattention" in k for k in model.text_init_missing)
    assert not any(".attention.self." in k for k in model.text_init_missing)


def test_image_encoder_loads_a_local_rgb_weights_file_for_two_channels(tmp_path):
    kwargs = tiny_config().image_encoder_kwargs
    rgb = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, in_chans=3, num_classes=5, **kwargs
    )
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in rgb.state_dict().items()}, str(tmp_path / "vit.safetensors")
    )
    torch.manual_seed(0)
    model = KlipModel(tiny_config(image_weights=str(tmp_path / "vit.safetensors")))
    assert model.visual.patch_embed.proj.weight.shape[1] == 2
    assert torch.equal(model.visual.blocks[0].attn.qkv.weight, rgb.blocks[0].attn.qkv.weight)
    torch.save({"state_dict": rgb.state_dict()}, tmp_path / "vit.pth")  # tensors: loads with weights_only=True
    model = KlipModel(tiny_config(image_weights=str(tmp_path / "vit.pth")))
    assert torch.equal(model.visual.blocks[0].attn.qkv.weight, rgb.blocks[0].attn.qkv.weight)


def test_presets_build_valid_configs():
    from klip_lib.presets import PRESETS, section

    for name in PRESETS:
        config = KlipConfig(**section(name, "model"))
        config.validate()
        assert config.in_chans == 2, name
    gpu = KlipConfig(**section("gpu", "model"))
    assert (gpu.image_encoder, gpu.image_size) == ("vit_base_patch16_224", 224)
    assert (gpu.text_hidden, gpu.text_layers) == (768, 12)
    with pytest.raises(ValueError, match="fusion_layers=7 must be between 1 and text_layers=6"):
        KlipConfig(fusion_layers=7).validate()
