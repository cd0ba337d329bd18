"""A tiny KLIP model and batch for fast CPU tests (shared by test_model.py and the torchrun worker)."""

from __future__ import annotations

import torch

from klip_lib.losses import mask_tokens
from klip_lib.model import KlipConfig, KlipModel, scene_ids_tensor

TINY_MODEL = {
    "image_encoder": "vit_tiny_patch16_224",
    "image_size": 32,
    "patch_size": 8,
    "image_encoder_kwargs": {"depth": 1, "embed_dim": 48, "num_heads": 2},
    "text_hidden": 32,
    "text_layers": 2,
    "text_heads": 2,
    "text_intermediate": 64,
    "text_positions": 64,
    "fusion_layers": 1,
    "text_dropout": 0.0,
    "max_text_len": 48,
    "embed_dim": 16,
    "queue_size": 16,
}

CAPTIONS = [
    "3 cargo ships in the top-right near the river",
    "farmland covers the bottom-left, 2 storage tanks in the center",
    "an airport with 4 aircraft on the apron, urban blocks to the north",
    "hilly forest with a road running east to west",
    "port basin with 1 tanker of 250 m at the left edge",
    "industrial roofs and 12 vehicles on a road at the bottom",
    "plain farmland and a lake in the top-left corner",
    "dense urban area, no water, a highway along the right",
]


def tiny_config(**changes) -> KlipConfig:
    """KlipConfig of the tiny test model."""
    return KlipConfig(**{**TINY_MODEL, **changes})


def tiny_model(seed: int = 0, **changes) -> KlipModel:
    """A freshly initialised tiny model (same weights for the same seed)."""
    torch.manual_seed(seed)
    return KlipModel(tiny_config(**changes))


def tiny_batch(model: KlipModel, n: int = 8, seed: int = 0, scenes: list[str] | None = None) -> dict:
    """Images, tokens, scene ids and MLM inputs for `n` pairs, reproducible from `seed`."""
    g = torch.Generator().manual_seed(seed)
    c = model.config
    images = torch.randn(n, c.in_chans, c.image_size, c.image_size, generator=g)
    tokens = model.tokenize([CAPTIONS[i % len(CAPTIONS)] for i in range(n)])
    scenes = scenes or [f"scene_{i}" for i in range(n)]
    mlm = mask_tokens(tokens["input_ids"], model.tokenizer, 0.5, 0.15, g)
    return {"images": images, **tokens, "scene_ids": scene_ids_tensor(scenes), "mlm_inputs": mlm}
