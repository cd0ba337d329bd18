"""The models every task scores, by name, so each notebook compares the same set on the same split.

`random` is the untrained model of the preset (same seed, same architecture); the pretrained ones come
from their folders (`klip_lib.artifacts.load_models` pretrains a run's at the preset when missing). External
foundation models named by local path join them through `external` (klip_lib.tasks.external).
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


def load_model(model_dir: str | os.PathLike | None, preset: str = "smoke", seed: int = 0) -> KlipModel:
    """A pretrained model from its folder, or (None) the preset's model at random initialisation; in eval mode."""
    from ..presets import section

    if model_dir is None:
        torch.manual_seed(seed)
        return KlipModel(KlipConfig(**section(preset, "model"))).eval()
    return KlipModel.from_pretrained(model_dir).eval()


class ModelSet(dict):
    """{name: model} in the order given, plus `not_provided`: {name: reason} of external models that did not load."""

    def __init__(self, models: dict, not_provided: dict[str, str] | None = None):
        super().__init__(models)
        self.not_provided = dict(not_provided or {})


def load_models(model_dirs: dict[str, str | os.PathLike | None], preset: str = "smoke", seed: int = 0,
                external: str = "") -> ModelSet:
    """{name: model folder or None (random init)} as models in the order given, then the `external` ones
    (comma-separated name=kind:path, see klip_lib.tasks.external) adapted to the preset's image size and channels;
    external models that cannot be loaded are listed in the result's `not_provided` with the reason.
    klip_lib.artifacts.load_models gives a run's models by name."""
    from ..presets import section
    from .external import load_external, parse_external

    clash = [s.name for s in parse_external(external) if s.name in MODELS]
    if clash:
        raise ValueError(f"external model name(s) {clash} are built-in names: rename them")
    models = {name: load_model(d, preset, seed) for name, d in model_dirs.items()}
    if not external.strip():
        return ModelSet(models)
    config = KlipConfig(**section(preset, "model"))
    loaded, not_provided = load_external(external, config.image_size, config.in_chans)
    return ModelSet({**models, **loaded}, not_provided)


# what a task needs from a model -> (test, reason when missing)
CAPABILITIES = {
    "text": (lambda m: getattr(m, "has_text", True), "n/a (no text encoder)"),
    "klip": (lambda m: isinstance(m, KlipModel), "n/a (external model: no KLIP text decoder / fusion encoder)"),
}


def usable(models: ModelSet, need: str) -> ModelSet:
    """The models a task can score; the others move to `not_provided` with the reason (and are printed)."""
    test, reason = CAPABILITIES[need]
    kept = ModelSet({n: m for n, m in models.items() if test(m)}, dict(models.not_provided))
    for name in models.keys() - kept.keys():
        kept.not_provided[name] = reason
        print(f"{name}: {reason}")
    return kept
