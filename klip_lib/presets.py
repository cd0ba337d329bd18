"""Named presets: one name sets data, model and training sizes for a scale.

A preset is data: a dict of sections, each section the keyword arguments of that part's dataclass
(`data` -> klip_lib.data.SimConfig, `model` -> klip_lib.model.KlipConfig, `train` -> klip_lib.train.TrainConfig).
`smoke` finishes on a 2-core CPU in minutes; `study` is sized for an effect to show within an hour on 2 cores
(a `notebooks` section: parameters `klip run` passes to the notebooks, by stem); `gpu` targets one H100-class GPU in bf16, eager: compiling the
training step (`TrainConfig.compile`, `KlipModel.compile_step`: one graph, fixed shapes since issue 21) stays
opt-in until it is measured on a GPU (before, dynamo broke the graph at the queue fill level and recompiled for the
data-dependent ITM/MLM shapes, and warm-up plus 20 steps did not finish within 240 s on an H200).
"""

from __future__ import annotations

import copy

from .errors import UserError

ALL_MODELS = "random,clip-like,blip-like,klip"  # every built-in model (klip_lib.tasks.models.MODELS)

PRESETS: dict[str, dict[str, dict]] = {
    "smoke": {
        "data": {"n_tiles": 48, "tile_size": 128, "image_size": 64, "eval_tiles": 280},
        "model": {
            "image_encoder": "vit_tiny_patch16_224", "image_size": 64, "patch_size": 8,
            "image_encoder_kwargs": {"depth": 4}, "text_init": "config", "text_hidden": 128, "text_layers": 4,
            "text_heads": 2, "text_intermediate": 512, "text_positions": 128, "fusion_layers": 2,
            "max_text_len": 96, "embed_dim": 64, "queue_size": 64, "momentum": 0.9,
        },
        "train": {"steps": 100, "batch_size": 16, "lr": 2e-3, "warmup_steps": 10, "checkpoint_every": 50},
    },
    "study": {  # issue 17: large enough for effects to show (test sets of 400+ tiles, a model that learns), the whole
        # `klip run` sized for an hour on 2 CPU cores (measured: 46 minutes, reports/README.md); the smoke model, 16x the
        # pretraining tiles, 1.5x the steps at twice the batch, every pretrained model scored, longer fine-tuning
        "data": {"n_tiles": 768, "tile_size": 128, "image_size": 64, "eval_tiles": 400},
        "model": {
            "image_encoder": "vit_tiny_patch16_224", "image_size": 64, "patch_size": 8,
            "image_encoder_kwargs": {"depth": 4}, "text_init": "config", "text_hidden": 128, "text_layers": 4,
            "text_heads": 2, "text_intermediate": 512, "text_positions": 128, "fusion_layers": 2,
            "max_text_len": 96, "embed_dim": 64, "queue_size": 512, "momentum": 0.99,
        },
        "train": {"steps": 150, "batch_size": 32, "lr": 1e-3, "warmup_steps": 15, "checkpoint_every": 50},
        "notebooks": {
            "05_scio": {"copies": 2,  # about 500 training tiles: over 500 planted errors, tile clusters 16x smoke's
                        # SCIO's downstream effect (five arms pretrained at the preset's steps, about 70 minutes
                        # here) does not fit the hour: `klip bench scio-effect --preset study --run-dir RUN` measures
                        # it on the run's data (reports/README.md)
                        "effect_tasks": ""},
            # the whole SAR-ACD training split; at lr 3e-4 the ViT from scratch left chance in 10 epochs
            "06_eval_classification": {"models": ALL_MODELS, "acd_train_per_class": 0, "finetune_epochs": 10,
                                       "finetune_lr": 1e-3},
            "07_eval_detection": {"models": ALL_MODELS},
            "08_eval_segmentation": {"models": ALL_MODELS},
            "09_eval_retrieval": {"models": ALL_MODELS},
            "10_eval_captioning": {"models": ALL_MODELS, "steps": 600},
            "11_eval_vqa": {"models": ALL_MODELS, "steps": 300},
        },
    },
    "gpu": {
        "data": {"n_tiles": 20000, "tile_size": 256, "image_size": 224},
        "model": {
            "image_encoder": "vit_base_patch16_224", "image_size": 224, "patch_size": 16, "text_init": "config",
            "text_hidden": 768, "text_layers": 12, "text_heads": 12, "text_intermediate": 3072,
            "text_positions": 512, "fusion_layers": 6, "max_text_len": 128, "embed_dim": 256, "queue_size": 16384,
        },
        "train": {"steps": 20000, "batch_size": 128, "lr": 2e-4, "warmup_steps": 1000, "checkpoint_every": 1000,
                  "num_workers": 8},
    },
}


class UnknownPresetError(UserError, ValueError):
    pass


def get_preset(name: str) -> dict[str, dict]:
    """A deep copy of the preset `name`; an unknown name raises with the list of known ones."""
    if name not in PRESETS:
        raise UnknownPresetError(f"unknown preset {name!r}: choose one of {', '.join(sorted(PRESETS))}")
    return copy.deepcopy(PRESETS[name])


def section(name: str, part: str) -> dict:
    """One section (`data`, `model`, `train`, ...) of a preset; empty when the preset does not set it."""
    return get_preset(name).get(part, {})


def notebook_parameters(name: str, notebook: str) -> dict:
    """The parameters the preset's `notebooks` section sets for one notebook (by stem, e.g. "10_eval_captioning"):
    `klip run --preset NAME` passes them to Papermill beside run_dir, preset and seed."""
    return dict(section(name, "notebooks").get(notebook, {}))
