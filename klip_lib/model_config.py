"""The KLIP model's configuration and the small helpers around it: tokenizer, scene ids, text config, MLM slots."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import torch
from transformers import BertConfig

from .encoders import load_tokenizer_from, local_folder
from .errors import InputError
from .losses import IGNORE_INDEX


@dataclass
class KlipConfig:
    image_encoder: str = "vit_tiny_patch16_224"  # timm model name of the image encoder
    image_size: int = 64  # input image side in pixels
    in_chans: int = 2  # polarisation channels: co-pol then cross-pol
    patch_size: int | None = 8  # ViT patch side in pixels; None keeps the timm model's own
    image_encoder_kwargs: dict = field(
        default_factory=dict
    )  # extra timm.create_model arguments, e.g. {"depth": 4}
    image_weights: str | None = (
        None  # local timm weights file (.safetensors, or a torch file of tensors) for the image encoder; None: random
    )
    text_init: str = (
        "config"  # "config" (random, sizes below), "minilm" (bundled MiniLM-L6) or a local BERT folder
    )
    tokenizer: str = "minilm"  # "minilm" (bundled uncased BERT word pieces) or a local tokenizer folder
    vocab_size: int = 30522  # rows of the word-embedding table; must cover the tokenizer
    text_hidden: int = 384  # text encoder width (overridden by a checkpoint's config)
    text_layers: int = 6  # text encoder layers in all, fusion layers included (overridden by a checkpoint)
    text_heads: int = 12  # attention heads per text layer (overridden by a checkpoint)
    text_intermediate: int = 1536  # feed-forward width of a text layer (overridden by a checkpoint)
    text_positions: int = 512  # rows of the position-embedding table (overridden by a checkpoint)
    fusion_layers: int = 3  # the last layers of the text encoder that get cross-attention to image tokens
    text_dropout: float = 0.1  # dropout of the text encoder (hidden and attention)
    max_text_len: int = 64  # tokens per caption after truncation
    embed_dim: int = 256  # width of the shared ITC space
    queue_size: int = 4096  # momentum features kept for ITC (0: batch only)
    momentum: float = 0.995  # EMA factor of the momentum encoders
    temp: float = 0.07  # initial ITC temperature (learnable, clamped to [0.001, 0.5])
    alpha: float = 0.4  # momentum-distillation weight of the ITC targets
    mlm_knowledge_ratio: float = 0.5  # probability that a knowledge-slot token is masked
    mlm_random_ratio: float = 0.15  # probability that any other ordinary token is masked

    def validate(self) -> None:
        """Raise InputError (a ValueError) naming the first inconsistent field."""
        if not 1 <= self.fusion_layers <= self.text_layers:
            raise InputError(
                f"fusion_layers={self.fusion_layers} must be between 1 and text_layers={self.text_layers}"
            )
        if self.max_text_len > self.text_positions:
            raise InputError(f"max_text_len={self.max_text_len} exceeds text_positions={self.text_positions}")
        if self.queue_size < 0 or not 0 <= self.momentum <= 1:
            raise InputError(
                f"queue_size={self.queue_size} must be >= 0 and momentum={self.momentum} in [0, 1]"
            )
        for name in ("mlm_knowledge_ratio", "mlm_random_ratio", "alpha"):
            if not 0 <= getattr(self, name) <= 1:
                raise InputError(f"{name}={getattr(self, name)} must be in [0, 1]")

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> KlipConfig:
        """Build from a dict; unknown keys raise with their names."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"{source}: unknown KlipConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**values)


def load_tokenizer(config: KlipConfig):
    """The BERT word-piece tokenizer named by `config.tokenizer`, loaded offline (cached per folder)."""
    return load_tokenizer_from(str(local_folder(config.tokenizer, "tokenizer")))


def scene_ids_tensor(scene_ids: list[str], device: torch.device | str | None = None) -> torch.Tensor:
    """Stable int64 ids for string scene ids (same on every rank and run, unlike Python's hash)."""
    values = [
        int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") & (2**63 - 1)
        for s in scene_ids
    ]
    return torch.tensor(values, dtype=torch.long, device=device)


def mlm_slots(labels: torch.Tensor) -> int:
    """Token positions the MLM head runs on for these labels: the masked count rounded up to a sixteenth of the
    batch's positions (a handful of shapes for the compiled step; never fewer than the masked tokens, so the loss
    is the one over all masked tokens). Labels made by `mask_tokens` sit on the CPU: counting them costs no sync."""
    bucket = max(1, -(-labels.numel() // 16))
    masked = int((labels != IGNORE_INDEX).sum())
    return min(labels.numel(), -(-masked // bucket) * bucket)


def bert_config(config: KlipConfig) -> BertConfig:
    """The text encoder's sizes as a transformers BertConfig (a plain config object; the layers are ours)."""
    return BertConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.text_hidden,
        num_hidden_layers=config.text_layers,
        num_attention_heads=config.text_heads,
        intermediate_size=config.text_intermediate,
        max_position_embeddings=config.text_positions,
        hidden_dropout_prob=config.text_dropout,
        attention_probs_dropout_prob=config.text_dropout,
    )
