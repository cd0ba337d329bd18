"""Knowledge for real tiles: the same facts record as the simulator's (docs/contracts.md), built from offline
geography shipped in packages (geo), the sensor metadata and classical SAR methods on the image (image), each
fact with its source and confidence (facts); accuracy against real labels (accuracy).

Only numpy and the standard library are imported here; scipy, rasterio and the geography packages are imported
by the submodules that use them."""

from .config import KnowledgeConfig

__all__ = ["KnowledgeConfig"]
