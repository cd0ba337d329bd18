"""Captioning: BLIP's captioner, an image-grounded text decoder fine-tuned from the pretrained text encoder.

The decoder is a copy of the model's text layers and cross-attention fusion layers run with causal
self-attention, its head the MLM head (tied word embeddings). Captions follow the FUSAR-GEOVL structure:
the decoder writes one caption dimension at a time after a prompt naming it ("water presence:"), as BLIP
writes after "a picture of"; a dimension that does not apply (no targets) is taught as "none". Scored with
BLEU-4, ROUGE-L and CIDEr (pycocoevalcap) and, per dimension, by the HCoT fact-checker.
"""

from __future__ import annotations

import copy
import os
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import DynamicCache

from ..hcot.factcheck import check_caption
from ..hcot.schema import caption_text
from ..model import KlipModel
from ..vocab import CAPTION_DIMENSIONS
from .retrieval import SplitData

NONE_TEXT = "none"
PROMPTS = {d: re.sub(r"(?<=[a-z])(?=[A-Z])", " ", d).lower() + ":" for d in CAPTION_DIMENSIONS}
"""The decoder's prompt per dimension: 'terrain:', ..., 'target distribution:'."""


@dataclass
class CaptionConfig:
    steps: int = 80  # fine-tuning steps of the decoder
    batch_size: int = 24  # (tile, dimension) sequences per step
    lr: float = 1e-3  # AdamW learning rate (constant)
    label_smoothing: float = 0.1  # of the next-token cross-entropy (BLIP uses 0.1)
    num_beams: int = 2  # beam width of the search
    max_new_tokens: int = 56  # tokens per dimension (the longest template dimension has 50)
    seed: int = 0  # drives batch order and dropout


class CaptionDecoder(nn.Module):
    """Image-grounded text decoder initialised from a KlipModel (its image encoder stays frozen).

    It writes only the word pieces of `vocab` (those of the training captions): the output layer starts as the
    matching rows of the tied word-embedding table and is trained on its own (the 30k-row input table stays
    frozen: its dense updates and 30k-way softmaxes were most of the CPU time).
    """

    def __init__(self, model: KlipModel, vocab: list[int]):
        super().__init__()
        self.tokenizer = model.tokenizer
        self.visual = model.visual
        self.text = copy.deepcopy(model.text_encoder)
        self.fusion = copy.deepcopy(model.fusion)
        self.head = copy.deepcopy(model.mlm_transform)
        self.register_buffer("vocab", torch.tensor(sorted(set(vocab)), dtype=torch.long))
        self.out = nn.Parameter(model.text_encoder.embeddings.word_embeddings.weight.detach()[self.vocab].clone())
        self.bias = nn.Parameter(model.mlm_bias.detach()[self.vocab].clone())
        position = torch.full((model.config.vocab_size,), -100, dtype=torch.long)
        position[self.vocab] = torch.arange(len(self.vocab))
        self.register_buffer("position", position)  # token id -> its output index, -100 outside the vocab
        attentions = [layer.attention.self for layer in (*self.text.layer, *self.fusion.layer)]
        for index, attention in enumerate(attentions):
            attention.layer_idx = index  # its slot in the key/value cache of generation

    def trainable(self) -> list[nn.Parameter]:
        """The parameters fine-tuning updates: text and fusion layers, head, output rows; the image encoder and
        the input embedding tables stay frozen."""
        return [*self.text.layer.parameters(), *self.fusion.parameters(), *self.head.parameters(), self.out,
                self.bias]

    @torch.no_grad()
    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Image tokens [B, N, W] of the frozen image encoder."""
        feats = self.visual.forward_features(images)
        return feats.flatten(2).transpose(1, 2) if feats.ndim == 4 else feats

    def hidden(self, image: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               cache: DynamicCache | None = None) -> torch.Tensor:
        """Hidden states [B, q, H] of the q tokens in `input_ids` under causal self-attention and cross-attention
        to `image` (image tokens projected to the text width: `fusion.image_proj`); `attention_mask` [B, K] covers
        the tokens in `cache` and the new ones (left padding allowed)."""
        q, keys = input_ids.shape[1], attention_mask.shape[1]
        positions = (attention_mask.cumsum(1) - 1).clamp(min=0)[:, -q:]
        h = self.text.embeddings(input_ids=input_ids, position_ids=positions)
        query = torch.arange(keys - q, keys, device=h.device)[:, None]
        key = torch.arange(keys, device=h.device)[None]
        # causal and not padding; every query also sees itself, so no row is all-masked (NaN in SDPA)
        mask = (((key <= query)[None] & attention_mask.bool()[:, None, :]) | (key == query)[None])[:, None]
        for layer in self.text.layer:
            h = layer(h, mask, cache=cache)
        for layer in self.fusion.layer:
            h, _ = layer.attention(h, mask, cache=cache)
            h, _ = layer.crossattention(h, encoder_hidden_states=image)
            h = layer.output(layer.intermediate(h), h)
        return h

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over `vocab`."""
        return F.linear(self.head(hidden), self.out, self.bias)


def dimension_targets(record: dict) -> dict[str, str]:
    """The decoder's target text per dimension: the caption's, or 'none' where it does not apply."""
    return {d: record.get(d) or NONE_TEXT for d in CAPTION_DIMENSIONS}


def training_sequences(data: SplitData) -> list[tuple[int, str, str]]:
    """(tile index, dimension, target text) for every caption record of the split."""
    return [(i, d, text) for i, recs in enumerate(data.records) for rec in recs
            for d, text in dimension_targets(rec).items()]


def encode_batch(tokenizer, items: list[tuple[str, str]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Tokens of '[CLS] prompt target [SEP]' (right-padded) and labels: -100 on the prompt and padding."""
    tokens = tokenizer([f"{PROMPTS[d]} {t}" for d, t in items], padding="longest", return_tensors="pt")
    labels = tokens["input_ids"].clone()
    labels[tokens["attention_mask"] == 0] = -100
    for row, (d, _) in enumerate(items):
        labels[row, :prompt_length(tokenizer, d)] = -100
    return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}, labels


def prompt_length(tokenizer, dimension: str) -> int:
    """Tokens of '[CLS] prompt' (without [SEP])."""
    return len(tokenizer(PROMPTS[dimension])["input_ids"]) - 1


def fine_tune(model: KlipModel, data: SplitData, cfg: CaptionConfig | None = None, progress: bool = True) -> CaptionDecoder:
    """A CaptionDecoder initialised from `model` and trained on the split's captions (next-token loss)."""
    cfg = cfg or CaptionConfig()
    torch.manual_seed(cfg.seed)
    seqs = training_sequences(data)
    texts = [f"{PROMPTS[d]} {t}" for _, d, t in set(seqs)]
    decoder = CaptionDecoder(model, [i for ids in model.tokenizer(texts)["input_ids"] for i in ids])
    image_tokens = decoder.image_tokens(data.images)
    opt = torch.optim.AdamW(decoder.trainable(), lr=cfg.lr, weight_decay=0.05)
    batches = epoch_batches(len(seqs), cfg.batch_size, cfg.steps, cfg.seed)
    decoder.train()
    for idx in tqdm(batches, desc="captioner", disable=not progress):
        tokens, labels = encode_batch(decoder.tokenizer, [seqs[k][1:] for k in idx])
        hidden = decoder.hidden(decoder.fusion.image_proj(image_tokens[[seqs[k][0] for k in idx]]), **tokens)
        shifted = labels[:, 1:]
        keep = shifted != -100
        loss = F.cross_entropy(decoder.logits(hidden[:, :-1][keep]), decoder.position[shifted[keep]],
                               label_smoothing=cfg.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return decoder.eval()


def epoch_batches(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """`steps` batches of indices into n items, each epoch a fresh permutation."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) for _ in range(-(-steps * batch_size // n))])
    return [order[i * batch_size:(i + 1) * batch_size].tolist() for i in range(steps)]


@torch.no_grad()
def beam_search(decoder: CaptionDecoder, image_tokens: torch.Tensor, prompts: list[list[int]], num_beams: int,
                max_new_tokens: int) -> list[list[int]]:
    """Generated token ids per prompt (prompt and [SEP] left out); `image_tokens` [P, N, W] one row per prompt.

    Beams of all prompts advance together (left-padded prompts, a key/value cache); a finished beam keeps its
    score, and the best beam is picked by log-probability per generated token.
    """
    tok = decoder.tokenizer
    eos, pad = tok.sep_token_id, tok.pad_token_id
    n, k = len(prompts), num_beams
    width = max(len(p) for p in prompts)
    ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p)
        mask[row, width - len(p):] = 1
    ids, mask = ids.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
    image = decoder.fusion.image_proj(image_tokens).repeat_interleave(k, 0)
    scores = torch.full((n, k), float("-inf"))
    scores[:, 0] = 0.0
    done = torch.zeros(n * k, dtype=torch.bool)
    lengths = torch.zeros(n * k)
    cache = DynamicCache()
    new = ids
    for _ in range(max_new_tokens):
        logp = F.log_softmax(decoder.logits(decoder.hidden(image, new, mask, cache)[:, -1]).float(), dim=-1)
        logp[done] = float("-inf")
        logp[done, decoder.position[eos]] = 0.0  # a finished beam repeats [SEP], masked out, at no cost
        vocab = logp.shape[1]
        best = (scores.view(-1, 1) + logp).view(n, k * vocab).topk(k, dim=1)
        source = (best.indices // vocab + torch.arange(n)[:, None] * k).view(-1)
        token = decoder.vocab[(best.indices % vocab).view(-1)]
        scores = best.values
        cache.reorder_cache(source)
        ids, mask = ids[source], mask[source]
        lengths, was_done = lengths[source] + (~done[source]).float(), done[source]
        new = token[:, None]
        ids = torch.cat([ids, new], 1)
        mask = torch.cat([mask, (~was_done).long()[:, None]], 1)
        done = was_done | (token == eos)
        if done.all():
            break
    pick = (scores.view(-1) / lengths.clamp(min=1)).view(n, k).argmax(1) + torch.arange(n) * k
    out = []
    for row in pick.tolist():
        gen = ids[row, width:][mask[row, width:].bool()].tolist()
        out.append(gen[:-1] if gen and gen[-1] == eos else gen)
    return out


def clean_text(text: str) -> str:
    """Decoded word pieces made readable: no spaces around '-' and '/', first letter capitalised."""
    text = re.sub(r"\s*([-/])\s*", r"\1", text).strip()
    return text[:1].upper() + text[1:]


@torch.no_grad()
def generate(decoder: CaptionDecoder, images: torch.Tensor, cfg: CaptionConfig | None = None) -> list[dict]:
    """Per image, the 16 generated dimensions ({dimension: text or None}) and the full caption under `text`."""
    cfg = cfg or CaptionConfig()
    tok = decoder.tokenizer
    image_tokens = decoder.image_tokens(images)
    jobs = [(i, d) for i in range(len(images)) for d in CAPTION_DIMENSIONS]
    prompts = [tok(PROMPTS[d])["input_ids"][:-1] for _, d in jobs]
    generated = beam_search(decoder, image_tokens[[i for i, _ in jobs]], prompts, cfg.num_beams, cfg.max_new_tokens)
    out = [{} for _ in images]
    for (i, d), ids in zip(jobs, generated):
        text = clean_text(tok.decode(ids, skip_special_tokens=True))
        out[i][d] = None if text.lower() in ("", NONE_TEXT) else text
    for dims in out:
        dims["text"] = caption_text(dims)
    return out


def majority_caption(data: SplitData) -> dict:
    """The trivial baseline: each dimension's most common text over the split's captions (None counts too)."""
    dims = {d: Counter(rec.get(d) for recs in data.records for rec in recs).most_common(1)[0][0]
            for d in CAPTION_DIMENSIONS}
    return {**dims, "text": caption_text(dims)}


def metric_tokens(text: str) -> str:
    """Lower-case words and numbers joined by spaces (the role of COCO's PTB tokenizer, which needs Java)."""
    return " ".join(re.findall(r"[a-z0-9]+(?:[-/][a-z0-9]+)*", text.lower()))


def ngram_scores(candidates: list[str], references: list[list[str]]) -> dict[str, float]:
    """Corpus BLEU-4, ROUGE-L and CIDEr(-D) of candidate captions against their references (pycocoevalcap)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    res = {i: [metric_tokens(c)] for i, c in enumerate(candidates)}
    gts = {i: [metric_tokens(r) for r in refs] for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {"bleu4": float(bleu[3]), "rouge_l": float(Rouge().compute_score(gts, res)[0]),
            "cider": float(Cider().compute_score(gts, res)[0])}


def fact_accuracy(captions: list[dict], facts: list[dict]) -> dict[str, float | None]:
    """Per dimension, the share of applicable generated dimensions the fact-checker finds true, and `mean`."""
    marks = [check_caption(c, f) for c, f in zip(captions, facts)]
    acc = {}
    for d in CAPTION_DIMENSIONS:
        checked = [m[d] for m in marks if m[d] is not None]
        acc[d] = float(np.mean(checked)) if checked else None
    known = [v for v in acc.values() if v is not None]
    acc["mean"] = float(np.mean(known)) if known else None
    return acc


def score_captions(captions: list[dict], data: SplitData) -> dict:
    """BLEU-4, ROUGE-L, CIDEr and the fact accuracy (`fact_mean` and `fact/<dimension>`) of captions for `data`."""
    scores = ngram_scores([c["text"] for c in captions], [[r["text"] for r in recs] for recs in data.records])
    facts = fact_accuracy(captions, data.facts)
    return {**scores, "fact_mean": facts.pop("mean"), **{f"fact/{d}": v for d, v in facts.items()}}


def plot_fact_accuracy(metrics: dict[str, dict], path: str | os.PathLike | None = None):
    """Bars of the fact accuracy per caption dimension, one colour per model (the baseline included)."""
    from ..viz import grouped_bars

    return grouped_bars({name: {d: m.get(f"fact/{d}") for d in CAPTION_DIMENSIONS} for name, m in metrics.items()},
                        ylabel="fact accuracy", save_to=path, categories=list(CAPTION_DIMENSIONS), ylim=(0, 1.05))


def plot_examples(data: SplitData, captions: dict[str, list[dict]], tiles: int = 2,
                  dimensions: tuple[str, ...] = ("Functionality", "Layout", "Water", "Count"),
                  path: str | os.PathLike | None = None):
    """Thumbnails with some dimensions of each model's caption beside the ground truth."""
    import matplotlib.pyplot as plt

    from ..viz import sar_rgb

    tiles = min(tiles, len(data.images))
    columns = {"ground truth": [data.records[i][0] for i in range(tiles)],
               **{name: caps[:tiles] for name, caps in captions.items()}}
    fig, axes = plt.subplots(tiles, len(columns) + 1, figsize=(3.2 * (len(columns) + 1), 3.0 * tiles),
                             squeeze=False)
    for i in range(tiles):
        axes[i, 0].imshow(sar_rgb(data.images[i].numpy()))
        axes[i, 0].set_title(data.tile_ids[i], fontsize=8)
        axes[i, 0].axis("off")
        for ax, (name, caps) in zip(axes[i, 1:], columns.items()):
            lines = [f"{d}: {caps[i].get(d) or '-'}" for d in dimensions]
            ax.text(0, 1, "\n".join(_wrapped(lines, 42)), fontsize=6.5, va="top", family="monospace")
            ax.set_title(name, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=100)
    return fig


def _wrapped(lines: list[str], width: int) -> list[str]:
    import textwrap

    return [part for line in lines for part in textwrap.wrap(line, width)]
