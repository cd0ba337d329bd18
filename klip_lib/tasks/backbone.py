"""The image encoder as a frozen backbone for the vision tasks: pooled features, patch-token maps, and the
ViTDet simple feature pyramid that torchvision's detectors take.

Every task gets `model.visual` (a timm ViT taking [B, C, S, S] normalised dB images at the preset's size),
so random init, CLIP-like, BLIP-like, KLIP and external checkpoints are scored by the same code.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn

PYRAMID_STRIDES = (4, 8, 16, 32)  # output strides of the simple feature pyramid, as in ViTDet


def patch_grid(visual: nn.Module) -> tuple[int, int]:
    """(rows, cols) of patch tokens the encoder makes at its input size."""
    return tuple(visual.patch_embed.grid_size)


def patch_size(visual: nn.Module) -> int:
    """Side of one patch in pixels."""
    return int(visual.patch_embed.patch_size[0])


def token_map(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Patch tokens of the last block as a map [B, W, rows, cols] (class/register tokens dropped)."""
    tokens = visual.forward_features(images)[:, visual.num_prefix_tokens:]
    rows, cols = patch_grid(visual)
    return tokens.transpose(1, 2).reshape(len(images), -1, rows, cols)


@torch.no_grad()
def pooled_features(visual: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The encoder's pooled feature (the input of its projection) per image, [N, W], in eval mode."""
    visual.eval()
    out = [visual.forward_head(visual.forward_features(images[i:i + batch_size]), pre_logits=True)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def token_maps(visual: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """`token_map` of every image, [N, W, rows, cols], in eval mode."""
    visual.eval()
    return torch.cat([token_map(visual, images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


class FrozenEncoder(nn.Module):
    """An image encoder with its weights frozen and kept in eval mode, returning patch-token maps."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FrozenEncoder:
        """Stays in eval mode whatever the parent asks (no dropout, no norm statistics updates)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return token_map(self.visual, images)


class TrainableEncoder(nn.Module):
    """An image encoder trained with its task head (the supervised reference), returning patch-token maps."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual.requires_grad_(True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return token_map(self.visual, images)


def _rescale(dim: int, scale: float) -> tuple[nn.Module, int]:
    """Layers taking a [B, dim, h, w] map to `scale` times its size (transposed convs up, max-pool down)."""
    if scale >= 1:
        layers, width = [], dim
        for _ in range(int(round(math.log2(scale)))):
            layers += [nn.ConvTranspose2d(width, width // 2, 2, stride=2), nn.GELU()]
            width //= 2
        return nn.Sequential(*layers), width
    return nn.MaxPool2d(kernel_size=int(round(1 / scale)), stride=int(round(1 / scale))), dim


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid on a frozen ViT: the last patch-token map resampled to strides
    4, 8, 16 and 32, each through a 1x1 and a 3x3 convolution to `out_channels` (torchvision backbone API).
    `trainable`: the encoder is trained with the heads (the supervised reference) instead of frozen."""

    def __init__(self, visual: nn.Module, out_channels: int = 64, trainable: bool = False):
        super().__init__()
        self.encoder = TrainableEncoder(visual) if trainable else FrozenEncoder(visual)
        dim, p = visual.num_features, patch_size(visual)
        self.out_channels = out_channels
        self.levels = nn.ModuleList()
        for stride in PYRAMID_STRIDES:
            resample, width = _rescale(dim, p / stride)
            self.levels.append(nn.Sequential(
                resample, nn.Conv2d(width, out_channels, 1), nn.GroupNorm(1, out_channels),
                nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.GroupNorm(1, out_channels)))

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        x = self.encoder(images)
        return OrderedDict((str(i), level(x)) for i, level in enumerate(self.levels))
