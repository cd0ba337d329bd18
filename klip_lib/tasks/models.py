"""The models every task scores, by name, so each notebook compares the same set on the same split.

`random` is the untrained model of the preset (same seed, same architecture); the pretrained ones come
from `klip_lib.train.ensure_pretrained` (trained at the preset when missing from the run folder).
"""

from __future__ import annotations

import os

import torch

from ..model import KlipConfig, KlipModel

# display name -> pretraining objective (None: random initialisation)
MODELS: dict[str, str | None] = {
    "random": None,
    "clip-like": "itc",
    "blip-like": "itc+itm+mlm",
    "klip": "klip",
}
DEFAULT_MODELS = "random,blip-like,klip"


def parse_names(names: str | list[str]) -> list[str]:
    """'random,klip' -> ['random', 'klip']; an unknown name raises with the known ones."""
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    unknown = [n for n in items if n and n not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}: choose from {', '.join(MODELS)}")
    return [n for n in items if n]


def load_model(run_dir: str | os.PathLike, name: str, preset: str = "smoke", seed: int = 0) -> KlipModel:
    """One model by name, in eval mode on the CPU."""
    from ..presets import section
    from ..train import ensure_pretrained

    objective = MODELS[parse_names([name])[0]]
    if objective is None:
        torch.manual_seed(seed)
        model = KlipModel(KlipConfig(**section(preset, "model")))
    else:
        model = KlipModel.from_pretrained(ensure_pretrained(run_dir, objective, preset, seed))
    return model.eval()


def load_models(run_dir: str | os.PathLike, names: str | list[str] = DEFAULT_MODELS, preset: str = "smoke",
                seed: int = 0) -> dict[str, KlipModel]:
    """The named models, in the order given."""
    return {name: load_model(run_dir, name, preset, seed) for name in parse_names(names)}
