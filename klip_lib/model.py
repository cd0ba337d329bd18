"""The KLIP model: a timm image encoder, a BERT text encoder with cross-attention fusion layers, ALBEF-style heads.

ITC uses momentum (EMA) encoders and feature queues; ITM draws hard negatives by ITC similarity, never
from the same scene; MLM is image-conditioned and its masking prefers knowledge slots (`klip_lib.losses`).
The training step (`KlipModel.step`) has fixed shapes and no host sync, so `torch.compile` traces it as one graph
(`compile_step`). The model takes tensors: images [B, C, S, S], token ids and masks from `load_tokenizer`, integer scene ids
(`scene_ids_tensor` turns the data layer's string scene ids into them).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import BertConfig

from . import dist
from .attention import PredictionHeadTransform
from .encoders import (
    WEIGHTS_NAME,
    FusionEncoder,
    TextEncoder,
    create_image_encoder,
    init_bert_weights,
    load_tokenizer_from,
    local_folder,
    read_state,
    text_checkpoint_state,
)
from .losses import IGNORE_INDEX, itc_loss, itm_loss, mask_tokens, mlm_loss, sample_hard_negatives
from .model_config import KlipConfig, bert_config, load_tokenizer, mlm_slots, scene_ids_tensor
from .weights import PICKLE_SUFFIXES, CheckpointError

__all__ = ["CheckpointError", "KlipConfig", "KlipModel", "OBJECTIVES", "load_tokenizer", "mlm_slots",
           "scene_ids_tensor"]

OBJECTIVES: tuple[str, ...] = ("itc", "itm", "mlm")
CONFIG_NAME = "config.json"


class KlipModel(nn.Module):
    """ALBEF/BLIP-style SAR vision-language model: ITC with momentum queue, ITM, knowledge-slot MLM."""

    has_text = True  # the tasks ask external adapters (klip_lib.tasks.external) the same questions
    has_itm = True

    def __init__(self, config: KlipConfig, tokenizer=None, allow_pickle: bool = False):
        super().__init__()
        bert, text_state = self._resolve_text(config, allow_pickle)
        self.config = config = dataclasses.replace(
            config,
            vocab_size=bert.vocab_size,
            text_hidden=bert.hidden_size,
            text_layers=bert.num_hidden_layers,
            text_heads=bert.num_attention_heads,
            text_intermediate=bert.intermediate_size,
            text_positions=bert.max_position_embeddings,
        )
        config.validate()
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config)
        if len(self.tokenizer) > config.vocab_size:
            raise ValueError(
                f"tokenizer has {len(self.tokenizer)} tokens but vocab_size is {config.vocab_size}"
            )
        n_text = config.text_layers - config.fusion_layers

        image_kwargs = {
            **config.image_encoder_kwargs,
            "in_chans": config.in_chans,
            "img_size": config.image_size,
        }
        if config.patch_size is not None:
            image_kwargs["patch_size"] = config.patch_size
        self.visual = create_image_encoder(
            config.image_encoder, image_kwargs, config.image_weights, allow_pickle
        )
        self.vision_proj = nn.Linear(self.visual.num_features, config.embed_dim)
        self.text_encoder = TextEncoder(bert, n_text)
        self.fusion = FusionEncoder(bert, config.fusion_layers, self.visual.num_features)
        self.text_proj = nn.Linear(config.text_hidden, config.embed_dim)
        self.temp = nn.Parameter(torch.tensor(float(config.temp)))
        self.itm_head = nn.Linear(config.text_hidden, 2)
        self.mlm_transform = PredictionHeadTransform(bert)  # decoder weights: the word embeddings (tied)
        self.mlm_bias = nn.Parameter(torch.zeros(config.vocab_size))
        for part in (self.text_encoder, self.fusion, self.itm_head, self.mlm_transform):
            init_bert_weights(part, bert.initializer_range)
        # text tensors a checkpoint init did not cover (cross-attention, heads): left at their initialisation
        self.text_init_missing = self._load_text_state(text_state, config.text_init) if text_state else []

        self.visual_m = copy.deepcopy(self.visual)
        self.vision_proj_m = copy.deepcopy(self.vision_proj)
        self.text_encoder_m = copy.deepcopy(self.text_encoder)
        self.text_proj_m = copy.deepcopy(self.text_proj)
        for _, momentum in self._momentum_pairs():
            momentum.requires_grad_(False)

        q, d = config.queue_size, config.embed_dim
        self.register_buffer("image_queue", torch.zeros(q, d))
        self.register_buffer("text_queue", torch.zeros(q, d))
        self.register_buffer("id_queue", torch.full((q,), -1, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))

    # construction -------------------------------------------------------------------------------
    @staticmethod
    def _resolve_text(config: KlipConfig, allow_pickle: bool) -> tuple[BertConfig, dict]:
        """The text encoder's BertConfig and, for a checkpoint init, its renamed tensors."""
        if config.text_init == "config":
            return bert_config(config), {}
        folder = local_folder(config.text_init, "text_init checkpoint")
        bert = BertConfig.from_pretrained(str(folder), local_files_only=True)
        bert.hidden_dropout_prob = bert.attention_probs_dropout_prob = config.text_dropout
        n_text = bert.num_hidden_layers - config.fusion_layers
        return bert, text_checkpoint_state(folder, n_text, allow_pickle)

    def _load_text_state(self, state: dict[str, torch.Tensor], source: str) -> list[str]:
        """Copy checkpoint tensors into the text modules; return the model's text tensors it did not cover."""
        own = self.state_dict()
        bad = [
            f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
            for k, v in state.items()
            if k in own and v.shape != own[k].shape
        ]
        if bad:
            raise CheckpointError(f"text_init {source}: tensors whose shapes do not match: {', '.join(bad)}")
        self.load_state_dict(state, strict=False)
        prefixes = ("text_encoder.", "fusion.", "mlm_")
        return sorted(k for k in own if k.startswith(prefixes) and k not in state)

    def _momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, momentum) module pairs that the EMA ties together."""
        return [
            (self.visual, self.visual_m),
            (self.vision_proj, self.vision_proj_m),
            (self.text_encoder, self.text_encoder_m),
            (self.text_proj, self.text_proj_m),
        ]

    # encoders ------------------------------------------------------------------------------------
    def image_tokens(self, images: torch.Tensor, momentum: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(image tokens [B, N, W], normalised ITC feature [B, D]) of the online or momentum encoder."""
        visual, proj = (self.visual_m, self.vision_proj_m) if momentum else (self.visual, self.vision_proj)
        feats = visual.forward_features(images)
        pooled = visual.forward_head(feats, pre_logits=True)
        tokens = feats.flatten(2).transpose(1, 2) if feats.ndim == 4 else feats
        return tokens, F.normalize(proj(pooled), dim=-1)

    def text_tokens(self, input_ids, attention_mask, momentum: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(text token embeddings [B, L, H], normalised ITC feature [B, D] of the mean token) of the online or momentum encoder."""
        encoder, proj = (
            (self.text_encoder_m, self.text_proj_m) if momentum else (self.text_encoder, self.text_proj)
        )
        embeds = encoder(input_ids, attention_mask)
        # masked mean over tokens, as MiniLM (all-MiniLM-L6-v2) was trained: unlike [CLS] of a text encoder
        # trained from scratch, it separates captions from the first step
        weights = attention_mask.unsqueeze(-1).to(embeds.dtype)
        pooled = (embeds * weights).sum(1) / weights.sum(1).clamp(min=1)
        return embeds, F.normalize(proj(pooled), dim=-1)

    def _mlm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits; the decoder is the word-embedding matrix (tied)."""
        weight = self.text_encoder.embeddings.word_embeddings.weight
        return F.linear(self.mlm_transform(hidden), weight, self.mlm_bias)

    def tokenize(self, texts: list[str], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """input_ids and attention_mask for captions, padded to the longest, truncated at max_text_len."""
        batch = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.config.max_text_len,
            return_tensors="pt",
        )
        return {
            "input_ids": batch["input_ids"].to(device),
            "attention_mask": batch["attention_mask"].to(device),
        }

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised ITC image features [B, embed_dim]."""
        return self.image_tokens(images)[1]

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised ITC text features [B, embed_dim]."""
        return self.text_tokens(input_ids, attention_mask)[1]

    def itm_score(
        self, images: torch.Tensor | None, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        image_embeds: torch.Tensor | None = None, text_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Probability [B] that caption i matches image i (ITM head over the fused [CLS]); `image_embeds` and
        `text_embeds` (tokens from `image_tokens` / `text_tokens`) skip their encoder when already computed."""
        if image_embeds is None:
            image_embeds, _ = self.image_tokens(images)
        if text_embeds is None:
            text_embeds, _ = self.text_tokens(input_ids, attention_mask)
        fused = self.fusion(text_embeds, attention_mask, image_embeds)
        return F.softmax(self.itm_head(fused[:, 0]).float(), dim=1)[:, 1]

    def mlm_logits(
        self,
        images: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        select: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Image-conditioned vocabulary logits [B, L, vocab] for (masked) captions.

        `select` (bool [B, L]) keeps only those positions ([n, vocab]: the vocabulary head is most of the
        cost); `image_embeds` (image tokens from `image_tokens`) skips the image encoder when already computed.
        """
        if image_embeds is None:
            image_embeds, _ = self.image_tokens(images)
        text_embeds, _ = self.text_tokens(input_ids, attention_mask)
        fused = self.fusion(text_embeds, attention_mask, image_embeds)
        return self._mlm_head(fused if select is None else fused[select])

    # training ------------------------------------------------------------------------------------
    @torch.no_grad()
    def momentum_update(self) -> None:
        """EMA step of the momentum encoders: p_m <- m * p_m + (1 - m) * p (one foreach kernel per op)."""
        m = self.config.momentum
        pairs = [(p_m, p.detach()) for online, momentum in self._momentum_pairs()
                 for p, p_m in zip(online.parameters(), momentum.parameters(), strict=True)]
        averaged, online = [p_m for p_m, _ in pairs], [p for _, p in pairs]
        torch._foreach_mul_(averaged, m)
        torch._foreach_add_(averaged, online, alpha=1 - m)

    @torch.no_grad()
    def _enqueue(self, image_feat: torch.Tensor, text_feat: torch.Tensor, ids: torch.Tensor) -> None:
        """Write the newest momentum features into the ring-buffer queues (fixed shapes, no host sync)."""
        q = self.config.queue_size
        n = min(len(ids), q)
        if n == 0:
            return
        slots = (self.queue_ptr + torch.arange(n, device=ids.device)) % q
        self.image_queue[slots] = image_feat[-n:].float()
        self.text_queue[slots] = text_feat[-n:].float()
        self.id_queue[slots] = ids[-n:]
        self.queue_ptr.copy_((self.queue_ptr + n) % q)
        self.queue_filled.copy_((self.queue_filled + n).clamp(max=q))

    def compile_step(self, **options) -> None:
        """Run the training step (`step`) through `torch.compile(fullgraph=True, **options)` from now on."""
        self._compiled_step = torch.compile(self.step, fullgraph=True, **options)

    def forward(
        self,
        images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        scene_ids: torch.Tensor,
        objectives: tuple[str, ...] = OBJECTIVES,
        alpha: float | None = None,
        generator: torch.Generator | None = None,
        mlm_inputs: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Named losses of the chosen objectives (and their metrics) plus `loss`, their sum.

        `scene_ids` [B] int64 (`scene_ids_tensor`): pairs of one scene are ITC positives and never ITM
        negatives. `alpha` defaults to config.alpha. `generator` (a CPU torch.Generator) drives ITM sampling
        and MLM masking.
        `mlm_inputs` = (masked input_ids, labels) from `mask_tokens`; masked here when None. In training
        mode the momentum encoders take an EMA step and the queues are filled.
        The random draws and the tokenizer work happen here, eagerly; `step` takes only tensors and static values.
        """
        unknown = [o for o in objectives if o not in OBJECTIVES]
        if unknown or not objectives:
            raise ValueError(f"objectives {list(objectives)}: choose from {list(OBJECTIVES)}")
        dist.check_equal_batches(images.shape[0], images.device)
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        noise = masked_ids = labels = None
        slots = 0
        if "itm" in objectives:  # uniform noise of the Gumbel-max draws, text and image side, rows of all ranks
            rows = images.shape[0] * dist.world_size()
            noise = torch.rand(2, rows, rows, generator=generator).to(images.device, non_blocking=True)
        if "mlm" in objectives:
            if mlm_inputs is None:
                c = self.config
                mlm_inputs = mask_tokens(
                    input_ids, self.tokenizer, c.mlm_knowledge_ratio, c.mlm_random_ratio, generator
                )
            masked_ids, labels = mlm_inputs
            slots = mlm_slots(labels)
        step = getattr(self, "_compiled_step", None) or self.step
        alpha = self.config.alpha if alpha is None else float(alpha)
        return step(images, input_ids, attention_mask, scene_ids, tuple(objectives), alpha, noise, masked_ids,
                    labels, slots)

    def step(self, images, input_ids, attention_mask, scene_ids, objectives: tuple[str, ...], alpha: float,
             itm_noise: torch.Tensor | None, masked_ids: torch.Tensor | None, labels: torch.Tensor | None,
             mlm_slots: int) -> dict[str, torch.Tensor]:
        """The losses of one step on tensors of fixed shapes: no host sync and no branch on tensor values, so
        that dynamo traces it as one graph. `itm_noise` [2, G, G] uniform (G: rows of all ranks), `mlm_slots`
        the number of token positions the MLM head runs on (`mlm_slots`)."""
        image_embeds, image_feat = self.image_tokens(images)
        text_embeds, text_feat = self.text_tokens(input_ids, attention_mask)
        out: dict[str, torch.Tensor] = {}
        if "itc" in objectives:
            out.update(self._itc(images, input_ids, attention_mask, image_feat, text_feat, scene_ids, alpha))
        if "itm" in objectives:
            out.update(self._itm(image_embeds, image_feat, text_embeds, text_feat, attention_mask, scene_ids,
                                 itm_noise))
        if "mlm" in objectives:
            out.update(self._mlm(image_embeds, attention_mask, masked_ids, labels, mlm_slots))
        out["loss"] = sum(out[o] for o in objectives)
        return out

    def _itc(self, images, input_ids, attention_mask, image_feat, text_feat, scene_ids, alpha):
        """ITC of the local rows against the gathered momentum batch and the queue's filled slots; then enqueue."""
        with torch.no_grad():
            if self.training:
                self.momentum_update()
            _, image_feat_m = self.image_tokens(images, momentum=True)
            _, text_feat_m = self.text_tokens(input_ids, attention_mask, momentum=True)
            image_all, text_all = dist.all_gather(image_feat_m), dist.all_gather(text_feat_m)
            ids_all = dist.all_gather(scene_ids)
            image_bank = torch.cat([image_all.float(), self.image_queue])
            text_bank = torch.cat([text_all.float(), self.text_queue])
            bank_ids = torch.cat([ids_all, self.id_queue])
            filled = torch.arange(self.config.queue_size, device=ids_all.device) < self.queue_filled
            bank_valid = torch.cat([torch.ones_like(ids_all, dtype=torch.bool), filled])
        losses = itc_loss(image_feat, text_feat, image_bank, text_bank, scene_ids, bank_ids, self.temp, alpha,
                          image_feat_m, text_feat_m, bank_valid)
        if self.training:
            self._enqueue(image_all, text_all, ids_all)
        return losses

    def _itm(self, image_embeds, image_feat, text_embeds, text_feat, attention_mask, scene_ids, noise):
        """ITM over the local positives and, per row, one hard negative text and one hard negative image from any
        rank: 3B pairs always; a row without a candidate negative (its whole batch one scene) weighs 0."""
        b = len(scene_ids)
        rows = dist.local_rows(b)
        with torch.no_grad():
            ids_all = dist.all_gather(scene_ids)
            sim = dist.all_gather(image_feat).float() @ dist.all_gather(text_feat).float().T / self.temp
            # drawn for the rows of all ranks, as one process with the combined batch would
            neg_text, has_text = (t[rows] for t in sample_hard_negatives(sim, ids_all, noise[0]))
            neg_image, has_image = (t[rows] for t in sample_hard_negatives(sim.T, ids_all, noise[1]))
        text_embeds_p, attention_mask_p = dist.pad_to_common_length(text_embeds, attention_mask)
        text_all = dist.all_gather_with_grad(text_embeds_p)
        mask_all = dist.all_gather(attention_mask_p)
        image_all = dist.all_gather_with_grad(image_embeds)
        texts = torch.cat([text_embeds_p, text_all[neg_text], text_embeds_p])
        masks = torch.cat([attention_mask_p, mask_all[neg_text], attention_mask_p])
        images = torch.cat([image_embeds, image_embeds, image_all[neg_image]])
        fused = self.fusion(texts, masks, images)
        labels = torch.cat([torch.ones_like(scene_ids), torch.zeros_like(scene_ids).repeat(2)])
        weights = torch.cat([torch.ones_like(has_text), has_text, has_image]).float()
        return itm_loss(self.itm_head(fused[:, 0]), labels, weights)

    def _mlm(self, image_embeds, attention_mask, masked_ids, labels, slots: int):
        """Image-conditioned MLM; the vocabulary head runs on `slots` positions: the masked tokens first (in
        order), then unmasked ones whose label is IGNORE_INDEX (a fixed count, not the data-dependent one)."""
        text_embeds, _ = self.text_tokens(masked_ids, attention_mask)
        fused = self.fusion(text_embeds, attention_mask, image_embeds)
        flat_labels = labels.flatten()
        order = torch.argsort((flat_labels == IGNORE_INDEX).to(torch.uint8), stable=True)[:slots]
        return mlm_loss(self._mlm_head(fused.flatten(0, 1)[order]), flat_labels[order])

    # checkpoints ---------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json, model.safetensors (weights, momentum copies, queues) and the tokenizer files."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(self.config), indent=2) + "\n")
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
            str(directory / WEIGHTS_NAME),
        )
        self.tokenizer.save_pretrained(str(directory))
        return directory

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, allow_pickle: bool = False) -> KlipModel:
        """Load a folder written by save_pretrained (or a weights file beside its config.json).

        Torch checkpoints (.pt, .pth, .bin, ...) load with weights_only=True; one that needs unpickling (objects
        besides tensors, which can run code) is refused unless `allow_pickle=True`, and then warned about. Weights
        that do not match the config raise CheckpointError naming the missing, unexpected and mis-shaped tensors.
        """
        path = Path(path).expanduser()
        folder = path if path.is_dir() else path.parent
        if path.is_dir():
            candidates = [path / WEIGHTS_NAME] + sorted(
                p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES
            )
            path = next((p for p in candidates if p.is_file()), path / WEIGHTS_NAME)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: give a folder written by KlipModel.save_pretrained")
        config_file = folder / CONFIG_NAME
        if not config_file.is_file():
            raise FileNotFoundError(f"{config_file} not found: the model config must sit beside the weights")
        state = read_state(path, allow_pickle)
        config = KlipConfig.from_dict(json.loads(config_file.read_text()), str(config_file))
        config = dataclasses.replace(config, text_init="config", image_weights=None)
        has_tokenizer = (folder / "tokenizer_config.json").is_file()
        tokenizer = load_tokenizer_from(str(folder)) if has_tokenizer else None
        model = cls(config, tokenizer=tokenizer)
        model.load_checked(state, f"{path} (config {config_file})")
        return model

    def load_checked(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load a full state dict; raise CheckpointError naming every tensor that does not match."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [
            f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
            for k in own
            if k in state and state[k].shape != own[k].shape
        ]
        problems = [
            f"{label}: {', '.join(items)}"
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape (file vs config)", shapes),
            )
            if items
        ]
        if problems:
            raise CheckpointError(f"{source}: weights do not match the config; " + "; ".join(problems))
        self.load_state_dict(state)
