"""Named presets: one name sets data, model and training sizes for a scale.

A preset is data: a dict of sections, each section the keyword arguments of that part's dataclass
(`data` -> klip_lib.data.SimConfig, `model` -> klip_lib.model.KlipConfig, `train` -> klip_lib.train.TrainConfig).
`smoke` finishes on a 2-core CPU in minutes; `gpu` targets one H100-class GPU in bf16.
"""

from __future__ import annotations

import copy

PRESETS: dict[str, dict[str, dict]] = {
    "smoke": {
        "data": {"n_tiles": 48, "tile_size": 128, "image_size": 64},
    },
    "gpu": {
        "data": {"n_tiles": 20000, "tile_size": 256, "image_size": 224},
    },
}


class UnknownPresetError(ValueError):
    pass


def get_preset(name: str) -> dict[str, dict]:
    """A deep copy of the preset `name`; an unknown name raises with the list of known ones."""
    if name not in PRESETS:
        raise UnknownPresetError(f"unknown preset {name!r}: choose one of {', '.join(sorted(PRESETS))}")
    return copy.deepcopy(PRESETS[name])


def section(name: str, part: str) -> dict:
    """One section (`data`, `model`, `train`, ...) of a preset; empty when the preset does not set it."""
    return get_preset(name).get(part, {})
