"""External foundation models loaded from local paths into the evaluation tasks: OpenCLIP checkpoints (the format
of RemoteCLIP, GeoRSCLIP, SkyCLIP, SARCLIP), timm ViT backbones (MAE, MoCo v3, DINO) and Hugging Face BLIP
retrieval checkpoints. Nothing is downloaded; a model that cannot be loaded is reported with the reason.

Weights load safely (klip_lib.weights): safetensors, or torch files (.pt, .pth, .bin) that torch.load reads with
weights_only=True. A torch file that needs full unpickling (it holds Python objects besides tensors, and
unpickling runs any code they carry) is not provided unless its entry says the file is trusted, with `+pickle`
after the kind: `moco=timm+pickle:vit_base_patch16_224@/m/moco.pth`; it then loads with a warning naming the file.

Every adapter exposes what the tasks use: `visual` (timm ViT interface: `patch_embed.grid_size`,
`patch_embed.patch_size`, `forward_features`, `num_prefix_tokens`, `forward_head`, `num_features`) taking the
tasks' [B, C, S, S] normalised-dB SAR images, and `has_text` / `has_itm` saying whether `encode_image`,
`encode_text`, `tokenize` / `itm_score` exist.

SAR input: timm backbones take it as it is (timm adapts the patch convolution to C channels and resamples the
position embeddings to S). OpenCLIP and BLIP towers are fixed-size RGB models: the adapter maps (co-pol,
cross-pol) to (co-pol, cross-pol, their mean), a single channel to three copies, and resizes bilinearly to the
model's input size. The channels are standardised dB already, so the RGB mean/std normalisation is not applied
again. Their `patch_embed.grid_size` is the model's own patch grid; `patch_embed.patch_size` is one patch's side
in the tasks' input pixels (S / grid, rounded), so pyramid strides stay in input pixels.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..weights import CheckpointError, pickle_files, weights_only_for

KINDS = ("openclip", "timm", "hf-blip")
OPENCLIP_CONFIG = "open_clip_config.json"
TIMM_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# prefixes of the encoder in self-supervised checkpoints, in order of preference (MoCo v3: the online encoder)
ENCODER_PREFIXES = ("base_encoder.", "backbone.", "encoder.")


class NotProvided(ValueError):
    """An external model that cannot be loaded: the message is the reason shown in the tables."""


@dataclass
class ExternalSpec:
    name: str  # display name in the tables
    kind: str  # one of KINDS
    path: str  # the folder or file as given
    arch: str = ""  # architecture named as ARCH@FILE (openclip, timm); empty when the folder names it
    allow_pickle: bool = False  # kind+pickle: the files are trusted, unpickle them if they need it

    def weights_only(self, files: Path | list[Path]) -> bool:
        """weights_only for the library that loads `files`; NotProvided when one needs unpickling without +pickle."""
        how = f"write its kind as {self.kind}+pickle ({self.name}={self.kind}+pickle:...)"
        try:
            return weights_only_for(files, self.allow_pickle, how)
        except CheckpointError as e:
            raise NotProvided(str(e)) from None


def parse_external(text: str) -> list[ExternalSpec]:
    """'remoteclip=openclip:ViT-B-32@/m/RemoteCLIP.pt, mae=timm:/m/mae' -> specs; a malformed entry raises.
    A kind written kind+pickle (timm+pickle:...) trusts the entry's files to be unpickled."""
    specs = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, eq, rest = entry.partition("=")
        kind, colon, location = rest.partition(":")
        if not (eq and colon and name.strip() and location.strip()):
            raise ValueError(f"external model entry {entry!r}: write name=kind:path with kind in {', '.join(KINDS)}"
                             " (timm and openclip also take name=kind:ARCH@FILE)")
        arch, at, path = location.strip().partition("@")
        arch, path = (arch, path) if at else ("", arch)
        kind, plus, trust = kind.strip().partition("+")
        if plus and trust != "pickle":
            raise ValueError(f"external model entry {entry!r}: the only kind suffix is +pickle (trust the files)")
        specs.append(ExternalSpec(name.strip(), kind, path.strip(), arch.strip(), bool(plus)))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"external model names must be unique: {names}")
    return specs


def sar_to_rgb(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, 2, S, S] (co, cross) -> [B, 3, H, W] (co, cross, mean); [B, 1, S, S] -> three copies; resized bilinearly."""
    if images.shape[1] == 2:
        images = torch.cat([images, images.mean(1, keepdim=True)], 1)
    elif images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    else:
        raise ValueError(f"SAR images have {images.shape[1]} channels: the RGB adapters take 1 or 2 (co, cross)")
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


class RgbTowerVisual(nn.Module):
    """timm ViT view of a fixed-size RGB vision tower fed SAR images (one class token; no classifier head)."""

    num_prefix_tokens = 1

    def __init__(self, tower: nn.Module, input_size: int, grid: tuple[int, int], width: int, sar_size: int,
                 in_chans: int):
        super().__init__()
        self.tower = tower
        self.input_size = (input_size, input_size)  # the tower's own input size in pixels
        self.num_features = width
        self.patch_embed = SimpleNamespace(grid_size=tuple(grid), patch_size=(max(1, round(sar_size / grid[0])),) * 2,
                                           proj=SimpleNamespace(in_channels=in_chans))

    def adapt(self, images: torch.Tensor) -> torch.Tensor:
        """The tower's RGB input for SAR images."""
        return sar_to_rgb(images, self.input_size)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        """The pooled feature (class token) [B, W]; there is no classifier, so pre_logits changes nothing."""
        return tokens[:, 0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))


class OpenClipVisual(RgbTowerVisual):
    """An open_clip VisionTransformer as a timm ViT."""

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens [B, 1 + N, W] after the tower's final LayerNorm (before it where the norm follows pooling)."""
        t = self.tower
        x = t.transformer(t._embeds(self.adapt(images)))
        return x if t.final_ln_after_pool else t.ln_post(x)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        """The tower's pooled feature before its projection [B, W] (class token or token mean)."""
        pooled = self.tower._global_pool(tokens)[0]
        return self.tower.ln_post(pooled) if self.tower.final_ln_after_pool else pooled


class BlipVisual(RgbTowerVisual):
    """A transformers BlipVisionModel as a timm ViT."""

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The tower's last hidden state [B, 1 + N, W] (after its post LayerNorm)."""
        return self.tower(pixel_values=self.adapt(images)).last_hidden_state


class OpenClipAdapter(nn.Module):
    """An OpenCLIP model: ITC image and text features, no image-text matching head."""

    has_text = True  # encode_text and tokenize exist
    has_itm = False  # no itm_score

    def __init__(self, model: nn.Module, tokenizer, sar_size: int, in_chans: int, source: str):
        super().__init__()
        tower = model.visual
        if type(tower).__name__ != "VisionTransformer" or tower.attn_pool is not None or tower.pool_type == "none":
            raise NotProvided(f"{source}: vision tower {type(tower).__name__} is not supported (ViT towers with "
                              "class-token or mean pooling only)")
        self.model, self.tokenizer, self.source = model, tokenizer, source
        self.visual = OpenClipVisual(tower, tower.image_size[0], tower.grid_size, tower.conv1.out_channels,
                                     sar_size, in_chans)

    def tokenize(self, texts: list[str], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """input_ids padded with 0 to the model's context length; attention_mask marks the non-padding ids."""
        ids = self.tokenizer(list(texts))
        return {"input_ids": ids.to(device), "attention_mask": (ids != 0).long().to(device)}

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised ITC image features [B, embed_dim]."""
        pooled = self.visual(images)
        proj = self.visual.tower.proj
        return F.normalize(pooled @ proj if proj is not None else pooled, dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised ITC text features [B, embed_dim] (OpenCLIP pools at the end-of-text token; no mask needed)."""
        return self.model.encode_text(input_ids, normalize=True)


class BlipAdapter(nn.Module):
    """A BlipForImageTextRetrieval model: ITC features and the ITM head."""

    has_text = True  # encode_text and tokenize exist
    has_itm = True  # itm_score exists

    def __init__(self, model: nn.Module, tokenizer, sar_size: int, in_chans: int, source: str):
        super().__init__()
        self.model, self.tokenizer, self.source = model, tokenizer, source
        v = model.config.vision_config
        grid = (v.image_size // v.patch_size,) * 2
        self.visual = BlipVisual(model.vision_model, v.image_size, grid, v.hidden_size, sar_size, in_chans)

    def tokenize(self, texts: list[str], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """input_ids and attention_mask padded to the longest, truncated at the text model's positions."""
        batch = self.tokenizer(list(texts), padding="longest", truncation=True, return_tensors="pt",
                               max_length=self.model.config.text_config.max_position_embeddings)
        return {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised ITC image features [B, image_text_hidden_size] (projected class token)."""
        return F.normalize(self.model.vision_proj(self.visual(images)), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised ITC text features [B, image_text_hidden_size] (projected [CLS] of the unimodal encoder)."""
        hidden = self.model.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return F.normalize(self.model.text_proj(hidden[:, 0]), dim=-1)

    def itm_score(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Probability [B] that caption i matches image i (BLIP's ITM head)."""
        out = self.model(input_ids=input_ids, pixel_values=self.visual.adapt(images), attention_mask=attention_mask,
                         use_itm_head=True)
        return F.softmax(out.itm_score.float(), dim=1)[:, 1]


class ImageBackbone(nn.Module):
    """An image-only timm ViT: `visual` for the vision tasks, no text side (text tasks report it n/a)."""

    has_text = False  # no encode_image/encode_text/tokenize: zero-shot, retrieval, captioning, VQA are n/a
    has_itm = False  # no itm_score

    def __init__(self, visual: nn.Module, source: str):
        super().__init__()
        self.visual, self.source = visual, source


def _checked_path(spec: ExternalSpec) -> Path:
    """The spec's path, which must exist and be readable."""
    path = Path(spec.path).expanduser()
    if not path.exists():
        raise NotProvided(f"path {path} does not exist")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise NotProvided(f"path {path} is not readable (permissions)")
    return path


def _need_file(path: Path, spec: ExternalSpec, folder_layout: str) -> None:
    """ARCH@FILE needs a file; a folder needs `folder_layout`."""
    if spec.arch and not path.is_file():
        raise NotProvided(f"{path} is not a file: ARCH@FILE names a weights file")
    if not spec.arch and not path.is_dir():
        raise NotProvided(f"{path} is a file: give {spec.kind}:ARCH@{path} or a folder with {folder_layout}")


def load_openclip(spec: ExternalSpec, sar_size: int, in_chans: int) -> OpenClipAdapter:
    """ARCH@FILE (an open_clip model name and its weights) or a folder with open_clip_config.json and weights."""
    import open_clip

    path = _checked_path(spec)
    _need_file(path, spec, f"{OPENCLIP_CONFIG} and weights (open_clip's Hugging Face layout)")
    if spec.arch:
        if spec.arch not in open_clip.list_models():
            raise NotProvided(f"unknown open_clip architecture {spec.arch!r}: see open_clip.list_models()")
        name, kwargs = spec.arch, {"pretrained": str(path)}
        weights_only = spec.weights_only(path)
    else:
        if not (path / OPENCLIP_CONFIG).is_file():
            raise NotProvided(f"folder {path} has no {OPENCLIP_CONFIG}: not an OpenCLIP checkpoint folder")
        if not [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pth")]:
            raise NotProvided(f"folder {path} has no weights file (.safetensors, .bin, .pth)")
        name, kwargs = f"local-dir:{path}", {}
        weights_only = spec.weights_only(pickle_files(path))
    model = open_clip.create_model(name, pretrained_text=False, weights_only=weights_only, **kwargs)
    return OpenClipAdapter(model, open_clip.get_tokenizer(name), sar_size, in_chans, str(path))


def _timm_source(spec: ExternalSpec, path: Path) -> tuple[str, dict, Path, str]:
    """(architecture, model kwargs, weights file, classifier name) of ARCH@FILE or of a timm folder."""
    from timm.models import get_pretrained_cfg

    if spec.arch:
        cfg = get_pretrained_cfg(spec.arch)
        if cfg is None:
            raise NotProvided(f"unknown timm architecture {spec.arch!r}: see timm.list_models()")
        return spec.arch, {}, path, cfg.classifier or ""
    config = path / "config.json"
    if not config.is_file():
        raise NotProvided(f"folder {path} has no config.json: not a timm folder (timm's Hugging Face layout)")
    cfg = json.loads(config.read_text())
    if "architecture" not in cfg:
        raise NotProvided(f"{config} has no 'architecture': not a timm folder")
    weights = [path / w for w in TIMM_WEIGHTS if (path / w).is_file()]
    if not weights:
        raise NotProvided(f"folder {path} has none of {', '.join(TIMM_WEIGHTS)}")
    classifier = cfg.get("pretrained_cfg", {}).get("classifier", "head")
    return cfg["architecture"], dict(cfg.get("model_args", {})), weights[0], classifier


def encoder_state(state: dict[str, torch.Tensor], classifier: str) -> dict[str, torch.Tensor]:
    """The ViT encoder's tensors in timm naming: a self-supervised wrapper's prefix removed (MoCo v3's online
    encoder first), the classifier dropped."""
    key = "patch_embed.proj.weight"
    if key not in state:
        found = [k[:-len(key)] for k in state if k.endswith(key)]
        prefix = next((p for p in ENCODER_PREFIXES if p in found), found[0] if len(found) == 1 else None)
        if prefix is None:
            raise NotProvided(f"no ViT encoder in timm naming (no '{key}'); encoders found under {found or 'none'}")
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in state.items() if not (classifier and k.split(".")[0] == classifier)}


def load_timm(spec: ExternalSpec, sar_size: int, in_chans: int) -> ImageBackbone:
    """ARCH@FILE or a timm folder (config.json + weights), built at the SAR size and channels: timm adapts the
    patch convolution and resamples the position embeddings; every encoder tensor must load (strict)."""
    import timm
    from timm.models import load_state_dict

    path = _checked_path(spec)
    _need_file(path, spec, "config.json and model.safetensors (timm's Hugging Face layout)")
    arch, kwargs, weights, classifier = _timm_source(spec, path)
    state = encoder_state(load_state_dict(str(weights), weights_only=spec.weights_only(weights)), classifier)
    kwargs.update(in_chans=in_chans, img_size=sar_size, num_classes=0)
    visual = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"state_dict": state, "num_classes": 0},
                               **kwargs)
    if not hasattr(visual, "patch_embed") or not hasattr(visual.patch_embed, "grid_size"):
        raise NotProvided(f"timm model {arch} is not a ViT (no patch_embed.grid_size): the tasks need patch tokens")
    return ImageBackbone(visual, str(path))


def load_hf_blip(spec: ExternalSpec, sar_size: int, in_chans: int) -> BlipAdapter:
    """A BlipForImageTextRetrieval save_pretrained folder with its tokenizer; every tensor must be in it."""
    from transformers import AutoTokenizer, BlipForImageTextRetrieval

    path = _checked_path(spec)
    if not path.is_dir():
        raise NotProvided(f"{path} is a file: hf-blip takes a save_pretrained folder")
    config = path / "config.json"
    if not config.is_file():
        raise NotProvided(f"folder {path} has no config.json: not a Hugging Face checkpoint folder")
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type != "blip":
        raise NotProvided(f"{config} has model_type {model_type!r}, not 'blip'")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model, info = BlipForImageTextRetrieval.from_pretrained(str(path), local_files_only=True, output_loading_info=True,
                                                            weights_only=spec.weights_only(pickle_files(path)))
    if info["missing_keys"]:
        raise NotProvided(f"{path} lacks {len(info['missing_keys'])} tensors of BlipForImageTextRetrieval "
                          f"(e.g. {sorted(info['missing_keys'])[:3]}): give an ITM checkpoint such as blip-itm-base-coco")
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return BlipAdapter(model, tokenizer, sar_size, in_chans, str(path))


LOADERS = {"openclip": load_openclip, "timm": load_timm, "hf-blip": load_hf_blip}


def load_external(text: str, sar_size: int, in_chans: int = 2) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """The external models of `text` (see parse_external) in eval mode, and {name: reason} for those not
    provided (also warned): path missing or unreadable, wrong format, unknown kind, weights that do not load."""
    models, not_provided = {}, {}
    for spec in parse_external(text):
        try:
            if spec.kind not in LOADERS:
                raise NotProvided(f"unknown kind {spec.kind!r}: choose {', '.join(KINDS)}")
            models[spec.name] = LOADERS[spec.kind](spec, sar_size, in_chans).eval()
        except Exception as e:  # any failure is the model's reason in the tables, never a silent drop
            reason = str(e) if isinstance(e, NotProvided) else f"{spec.kind} {spec.path}: {type(e).__name__}: {e}"
            not_provided[spec.name] = " ".join(reason.split())[:400]
            warnings.warn(f"external model {spec.name} not provided: {not_provided[spec.name]}", stacklevel=2)
    return models, not_provided
