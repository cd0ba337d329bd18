"""External model adapters: tiny random checkpoints in the OpenCLIP, timm and Hugging Face BLIP formats, built
in tmp_path, loaded through klip_lib.tasks.external and compared with their source models."""

from __future__ import annotations

import copy
import json

import open_clip
import pytest
import torch
import torch.nn.functional as F

from klip_lib.tasks.backbone import SimpleFeaturePyramid, pooled_features, token_map
from klip_lib.tasks.external import load_external, parse_external, sar_to_rgb

SAR = 16  # side of the SAR test images
OPENCLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TIMM_ARGS = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
TEXTS = ["three ships near the port", "farmland and a river"]


def sar_images(n: int = 2, size: int = SAR) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(n, 2, size, size)


@pytest.fixture(scope="module")
def openclip_dir(tmp_path_factory):
    """A tiny random OpenCLIP model in open_clip's folder layout (config JSON + safetensors)."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.CLIP(**OPENCLIP_CFG).eval()
    folder = tmp_path_factory.mktemp("openclip")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": OPENCLIP_CFG, "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")
    return folder, model


@pytest.fixture(scope="module")
def timm_dir(tmp_path_factory):
    """A tiny random timm ViT (with a 5-class head) saved by timm's save_for_hf as safetensors."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=5, **TIMM_ARGS).eval()
    folder = tmp_path_factory.mktemp("timm")
    save_for_hf(model, str(folder), model_args=TIMM_ARGS, safe_serialization=True)
    return folder, model


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    """A tiny random BlipForImageTextRetrieval with the MiniLM tokenizer, via save_pretrained."""
    from transformers import AutoTokenizer, BlipConfig, BlipForImageTextRetrieval

    from klip_lib.encoders import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    config = BlipConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 64, "max_position_embeddings": 64},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        image_text_hidden_size=16)
    torch.manual_seed(0)
    model = BlipForImageTextRetrieval(config).eval()
    folder = tmp_path_factory.mktemp("blip")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


def test_parse_external_entries_and_errors():
    specs = parse_external("rc=openclip:ViT-B-32@/m/RemoteCLIP.pt, mae=timm:/m/mae ,")
    assert [(s.name, s.kind, s.arch, s.path) for s in specs] == [
        ("rc", "openclip", "ViT-B-32", "/m/RemoteCLIP.pt"), ("mae", "timm", "", "/m/mae")]
    with pytest.raises(ValueError, match="write name=kind:path"):
        parse_external("mae=/m/mae")
    with pytest.raises(ValueError, match="unique"):
        parse_external("a=timm:/x,a=timm:/y")


def test_sar_to_rgb_maps_co_cross_mean_and_resizes():
    x = sar_images()
    rgb = sar_to_rgb(x, (SAR, SAR))
    assert torch.equal(rgb[:, :2], x) and torch.allclose(rgb[:, 2], x.mean(1))
    assert sar_to_rgb(x, (32, 32)).shape == (2, 3, 32, 32)


def test_openclip_adapter_matches_source(openclip_dir):
    folder, source = openclip_dir
    models, missing = load_external(f"tiny=openclip:{folder}", SAR)
    assert missing == {}
    model, x = models["tiny"], sar_images()
    assert model.has_text and not model.has_itm
    visual = model.visual
    assert visual.patch_embed.grid_size == (4, 4) and visual.patch_embed.patch_size == (4, 4)
    assert visual.forward_features(x).shape == (2, 1 + 16, 32) and visual.num_prefix_tokens == 1
    assert pooled_features(visual, x).shape == (2, visual.num_features)
    assert token_map(visual, x).shape == (2, 32, 4, 4)
    # the detection pyramid's strides are in SAR pixels: 64 px over the 4 x 4 grid -> 16 px patches -> 4..32
    wide = load_external(f"tiny=openclip:{folder}", 64)[0]["tiny"].visual
    assert wide.patch_embed.patch_size == (16, 16)
    assert [v.shape[-1] for v in SimpleFeaturePyramid(wide, 8)(sar_images(1, 64)).values()] == [16, 8, 4, 2]
    assert copy.deepcopy(visual)(x).shape == (2, 32)
    with torch.no_grad():
        rgb = sar_to_rgb(x, (32, 32))
        assert torch.allclose(model.encode_image(x), source.encode_image(rgb, normalize=True), atol=1e-5)
        tokens = model.tokenize(TEXTS)
        assert tokens["input_ids"].shape == (2, 16)
        expected = source.encode_text(open_clip.get_tokenizer(f"local-dir:{folder}")(TEXTS), normalize=True)
        assert torch.allclose(model.encode_text(**tokens), expected, atol=1e-5)


def test_openclip_arch_at_file(openclip_dir, tmp_path):
    folder, source = openclip_dir
    config = tmp_path / "klip-test-tiny-clip.json"
    config.write_text(json.dumps(OPENCLIP_CFG))
    open_clip.add_model_config(config)
    models, missing = load_external(f"tiny=openclip:klip-test-tiny-clip@{folder / 'open_clip_model.safetensors'}", SAR)
    assert missing == {}
    with torch.no_grad():
        x = sar_images()
        assert torch.allclose(models["tiny"].encode_image(x), source.encode_image(sar_to_rgb(x, (32, 32)), normalize=True),
                              atol=1e-5)


def test_timm_adapter_two_channels_at_sar_size(timm_dir):
    folder, source = timm_dir
    models, missing = load_external(f"ssl=timm:{folder}", SAR)
    assert missing == {}
    model = models["ssl"]
    assert model.has_text is False and not hasattr(model, "encode_text")
    visual, x = model.visual, sar_images()
    assert visual.patch_embed.grid_size == (2, 2) and visual.num_features == 32
    assert visual.forward_features(x).shape == (2, 1 + 4, 32)
    assert pooled_features(visual, x).shape == (2, 32)
    src_conv = source.patch_embed.proj.weight
    assert torch.allclose(visual.patch_embed.proj.weight, src_conv[:, :2] * 1.5)  # timm's adapt_input_conv
    assert torch.equal(visual.blocks[0].mlp.fc1.weight, source.blocks[0].mlp.fc1.weight)


def test_timm_adapter_matches_source_on_same_input(timm_dir):
    folder, source = timm_dir
    models, _ = load_external(f"ssl=timm:{folder}", 32, in_chans=3)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(models["ssl"].visual.forward_features(x), source.forward_features(x), atol=1e-6)


def test_timm_arch_at_file_moco_layout(tmp_path):
    """A MoCo-v3-like .pth (state_dict under module.base_encoder., momentum encoder beside it) via ARCH@FILE."""
    import timm

    torch.manual_seed(0)
    source = timm.create_model("test_vit").eval()
    wrapped = {f"module.{enc}.{k}": v for enc in ("base_encoder", "momentum_encoder")
               for k, v in source.state_dict().items()}
    torch.save({"state_dict": wrapped, "epoch": 3}, tmp_path / "moco.pth")
    models, missing = load_external(f"moco=timm:test_vit@{tmp_path / 'moco.pth'}", 32)
    assert missing == {}
    visual = models["moco"].visual
    assert torch.equal(visual.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert SimpleFeaturePyramid(visual, 8)(sar_images(1, 32))["0"].shape[1] == 8


def test_blip_adapter_matches_source(blip_dir):
    folder, source, tokenizer = blip_dir
    models, missing = load_external(f"blip=hf-blip:{folder}", SAR)
    assert missing == {}
    model, x = models["blip"], sar_images()
    assert model.has_text and model.has_itm
    visual = model.visual
    assert visual.patch_embed.grid_size == (4, 4) and visual.patch_embed.proj.in_channels == 2
    assert visual.forward_features(x).shape == (2, 17, 32)
    assert token_map(visual, x).shape == (2, 32, 4, 4)
    tokens = model.tokenize(TEXTS)
    rgb = sar_to_rgb(x, (32, 32))
    with torch.no_grad():
        sim = source(input_ids=tokens["input_ids"], pixel_values=rgb, attention_mask=tokens["attention_mask"],
                     use_itm_head=False).itm_score
        assert torch.allclose(model.encode_image(x) @ model.encode_text(**tokens).T, sim, atol=1e-5)
        logits = source(input_ids=tokens["input_ids"], pixel_values=rgb, attention_mask=tokens["attention_mask"]).itm_score
        itm = model.itm_score(x, tokens["input_ids"], tokens["attention_mask"])
    assert itm.shape == (2,) and torch.allclose(itm, F.softmax(logits, 1)[:, 1], atol=1e-5)


def test_not_provided_reasons(tmp_path, openclip_dir, timm_dir):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224"}))
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    text = ",".join([f"gone=timm:{tmp_path / 'nowhere'}", f"wrong=hf-blip:{timm_dir[0]}",
                     f"clip_as_timm=timm:{openclip_dir[0]}", f"odd=onnx:{tmp_path}", f"bad=timm:{corrupt}",
                     f"shape=timm:test_vit@{timm_dir[0] / 'model.safetensors'}",
                     f"noarch=openclip:{openclip_dir[0] / 'open_clip_model.safetensors'}",
                     f"ok=openclip:{openclip_dir[0]}"])
    with pytest.warns(UserWarning, match="not provided"):
        models, missing = load_external(text, SAR)
    assert list(models) == ["ok"]
    assert "does not exist" in missing["gone"]
    assert "model_type None, not 'blip'" in missing["wrong"]
    assert "no config.json" in missing["clip_as_timm"]
    assert "unknown kind 'onnx'" in missing["odd"]
    assert "SafetensorError" in missing["bad"]
    assert "Error(s) in loading state_dict" in missing["shape"]
    assert "is a file" in missing["noarch"]


def test_blip_without_itm_head_is_not_provided(blip_dir, tmp_path):
    from transformers import BlipModel

    folder, source, tokenizer = blip_dir
    BlipModel(source.config).save_pretrained(tmp_path)
    models, missing = load_external(f"plain=hf-blip:{tmp_path}", SAR)
    assert models == {} and "lacks" in missing["plain"] and "itm" in missing["plain"]


def test_load_models_adds_external_and_lists_not_provided(timm_dir, tmp_path):
    from klip_lib.artifacts import load_models

    models = load_models(tmp_path, "random", "smoke", 0, external=f"ssl=timm:{timm_dir[0]}, gone=timm:{tmp_path / 'x'}")
    assert list(models) == ["random", "ssl"] and "does not exist" in models.not_provided["gone"]
    assert models["ssl"].visual.patch_embed.grid_size == models["random"].visual.patch_embed.grid_size
    assert load_models(tmp_path, "random").not_provided == {}
    with pytest.raises(ValueError, match="built-in"):
        load_models(tmp_path, "random", external=f"klip=timm:{timm_dir[0]}")


def test_unreadable_path_is_not_provided(timm_dir, monkeypatch):
    """Permissions cannot be taken away from root in CI, so os.access reports the folder unreadable."""
    monkeypatch.setattr("klip_lib.tasks.external.os.access", lambda path, mode: False)
    models, missing = load_external(f"locked=timm:{timm_dir[0]}", SAR)
    assert models == {} and "not readable" in missing["locked"]
