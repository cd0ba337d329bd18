"""Captioning: BLIP's captioner, an image-grounded text decoder fine-tuned from the pretrained text encoder.

The decoder is a copy of the model's text layers and cross-attention fusion layers run with causal
self-attention, its head the MLM head (tied word embeddings). Captions follow the FUSAR-GEOVL structure:
the decoder writes one caption dimension at a time after a prompt naming it ("water presence:"), as BLIP
writes after "a picture of"; a dimension that does not apply (no targets) is taught as "none", and the
target dimensions are prompted after the tile's count (`CONTEXT`), so they describe the counted targets or
say "none" after "no targets" instead of deciding each on its own. Fine-tuning packs a caption's 16
sequences in one row, weighs each dimension alike (`dimension_loss`) and, by default, keeps the text layers
frozen (their image-free states are computed once), training the fusion layers and head: on a 2-core CPU
that buys twice the steps of full fine-tuning. The captions are scored in `caption_scores`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..attention import KVCache
from ..hcot.realise import TARGET_ONLY
from ..hcot.schema import caption_text
from ..model import KlipModel
from ..vocab import CAPTION_DIMENSIONS
from .retrieval import SplitData

NONE_TEXT = "none"
PROMPTS = {d: re.sub(r"(?<=[a-z])(?=[A-Z])", " ", d).lower() + ":" for d in CAPTION_DIMENSIONS}
"""The decoder's prompt per dimension: 'terrain:', ..., 'target distribution:'."""
CONTEXT = {d: "Count" for d in TARGET_ONLY}
"""Dimension -> the dimension whose text its prompt starts with: the target dimensions are written after the
count ('count: two ships location:'), so they describe the counted targets, or 'none' after 'no targets'."""


@dataclass
class CaptionConfig:
    steps: int = 300  # fine-tuning steps of the decoder
    batch_size: int = 4  # caption records per step, each its 16 dimension sequences packed in one row
    lr: float = 2e-3  # AdamW learning rate (constant; 3e-3 was worse at smoke, 5e-3 diverged)
    label_smoothing: float = 0.0  # of the next-token cross-entropy (BLIP uses 0.1; at smoke 0 did as well or better)
    train_text: bool = False  # also fine-tune the text layers, as BLIP does (twice the time per step)
    dropout: float = 0.0  # of the decoder's layers while fine-tuning (tiny data, and a tenth of the CPU time)
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
        self.max_positions = self.text.embeddings.position_embeddings.num_embeddings
        attentions = [layer.attention.self for layer in (*self.text.layer, *self.fusion.layer)]
        for index, attention in enumerate(attentions):
            attention.layer_idx = index  # its slot in the key/value cache of generation

    def trainable(self, text: bool = True) -> list[nn.Parameter]:
        """The parameters fine-tuning updates: fusion layers (image projection and cross-attention included),
        head, output rows, and the text layers where `text`; the image encoder and input embeddings stay frozen."""
        layers = [*self.text.layer.parameters()] if text else []
        return [*layers, *self.fusion.parameters(), *self.head.parameters(), self.out, self.bias]

    @torch.no_grad()
    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Image tokens [B, N, W] of the frozen image encoder."""
        feats = self.visual.forward_features(images)
        return feats.flatten(2).transpose(1, 2) if feats.ndim == 4 else feats

    @staticmethod
    def attention(attention_mask: torch.Tensor, q: int, segments: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(positions [B, q], self-attention mask [B, 1, q, K]) of the last q of K tokens under causal attention;
        `attention_mask` [B, K] marks the real ones (left padding allowed).

        `segments` [B, q] (training, no cache) packs several sequences in a row: a token sees only the earlier
        tokens of its own segment, and positions restart at each segment (padding: -1).
        """
        keys = attention_mask.shape[1]
        query = torch.arange(keys - q, keys, device=attention_mask.device)[:, None]
        key = torch.arange(keys, device=attention_mask.device)[None]
        if segments is None:
            positions = (attention_mask.cumsum(1) - 1).clamp(min=0)[:, -q:]
            visible = (key <= query)[None] & attention_mask.bool()[:, None, :]
        else:
            starts = torch.cat([torch.ones_like(segments[:, :1], dtype=torch.bool), segments[:, 1:] != segments[:, :-1]], 1)
            index = torch.arange(q, device=segments.device).expand_as(segments)
            positions = (index - torch.cummax(torch.where(starts, index, 0), 1).values).masked_fill(segments < 0, 0)
            visible = (key <= query)[None] & (segments[:, :, None] == segments[:, None, :]) & (segments >= 0)[:, None, :]
        # every query also sees itself, so no row is all-masked (NaN in SDPA)
        return positions, (visible | (key == query)[None])[:, None]

    def text_hidden(self, input_ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                    cache: KVCache | None = None) -> torch.Tensor:
        """Hidden states of the text layers (causal self-attention, no image)."""
        h = self.text.embeddings(input_ids, position_ids=positions)
        for layer in self.text.layer:
            h = layer(h, mask, cache=cache)
        return h

    def fusion_hidden(self, h: torch.Tensor, image: torch.Tensor, mask: torch.Tensor,
                      cache: KVCache | None = None) -> torch.Tensor:
        """Hidden states of the fusion layers: causal self-attention, then cross-attention to `image` (image
        tokens projected to the text width: `fusion.image_proj`)."""
        for layer in self.fusion.layer:
            h = layer(h, mask, image, cache=cache)
        return h

    def hidden(self, image: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               cache: KVCache | None = None, segments: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, q, H] of the q tokens in `input_ids` (text then fusion layers); `attention_mask`
        [B, K] covers the tokens in `cache` and the new ones; `segments` as in `attention`."""
        positions, mask = self.attention(attention_mask, input_ids.shape[1], segments)
        return self.fusion_hidden(self.text_hidden(input_ids, positions, mask, cache), image, mask, cache)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over `vocab`."""
        return F.linear(self.head(hidden), self.out, self.bias)


def dimension_targets(record: dict) -> dict[str, str]:
    """The decoder's target text per dimension: the caption's, or 'none' where it does not apply."""
    return {d: record.get(d) or NONE_TEXT for d in CAPTION_DIMENSIONS}


def packed_rows(tokenizer, data: SplitData, max_positions: int | None = None
                ) -> list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per caption record, (tile index, token ids, segments, targets): its 16 sequences '[CLS] prompt text
    [SEP]' end to end, the segment (dimension) of each token, and the next token each position is taught to
    write (-100 inside the prompt, so the decoder learns the text after it). A sequence is cut at
    `max_positions` tokens."""
    rows = []
    for i, recs in enumerate(data.records):
        for rec in recs:
            ids, segments, targets = [], [], []
            dims = dimension_targets(rec)
            for k, (d, text) in enumerate(dims.items()):
                prompt = prompt_text(d, dims)
                seq = tokenizer(f"{prompt} {text}")["input_ids"][:max_positions]
                start = len(tokenizer(prompt)["input_ids"]) - 1  # '[CLS] prompt', without [SEP]
                ids += seq
                segments += [k] * len(seq)
                targets += [t if j + 1 >= start else -100 for j, t in enumerate(seq[1:])] + [-100]
            rows.append((i, torch.tensor(ids), torch.tensor(segments), torch.tensor(targets)))
    return rows


def prompt_text(dimension: str, dims: dict[str, str | None]) -> str:
    """The decoder's prompt for `dimension`, after the text of its CONTEXT dimension in `dims` where it has one."""
    if dimension not in CONTEXT:
        return PROMPTS[dimension]
    context = CONTEXT[dimension]
    return f"{PROMPTS[context]} {dims.get(context) or NONE_TEXT} {PROMPTS[dimension]}"


def dimension_loss(logits: torch.Tensor, labels: torch.Tensor, sequence: torch.Tensor,
                   label_smoothing: float = 0.0) -> torch.Tensor:
    """Next-token cross-entropy averaged over each sequence's tokens, then over the sequences (`sequence`: the
    sequence index of each token), so a yes/no dimension ('water presence: none visible') weighs as much as a
    50-token distribution: the few tokens that read the image are not drowned in template text."""
    losses = F.cross_entropy(logits, labels, label_smoothing=label_smoothing, reduction="none")
    _, sequence = torch.unique(sequence, return_inverse=True)
    n = int(sequence.max()) + 1
    sums = torch.zeros(n, dtype=losses.dtype).index_add(0, sequence, losses)
    counts = torch.zeros(n, dtype=losses.dtype).index_add(0, sequence, torch.ones_like(losses))
    return (sums / counts).mean()


def fine_tune(model: KlipModel, data: SplitData, cfg: CaptionConfig | None = None, progress: bool = True) -> CaptionDecoder:
    """A CaptionDecoder initialised from `model` and trained on the split's captions (`dimension_loss`).

    A step takes `batch_size` caption records, each one row of its 16 dimension sequences packed end to end
    (`packed_rows`): no padding between a 2-token 'none' and a 50-token distribution, one image per row. With the
    text layers frozen (`train_text` False) their states, which see no image, are computed once per row.
    """
    cfg = cfg or CaptionConfig()
    torch.manual_seed(cfg.seed)
    rows = packed_rows(model.tokenizer, data, model.config.text_positions)
    decoder = CaptionDecoder(model, [int(t) for _, ids, _, _ in rows for t in ids])
    for module in decoder.modules():
        if isinstance(module, nn.Dropout):
            module.p = cfg.dropout
    image_tokens = decoder.image_tokens(data.images)
    text_states = None
    if not cfg.train_text:
        with torch.no_grad():
            text_states = [decoder.text_hidden(ids[None], *decoder.attention(torch.ones_like(ids[None]), len(ids),
                                                                              segments[None]))[0]
                           for _, ids, segments, _ in rows]
    opt = torch.optim.AdamW(decoder.trainable(cfg.train_text), lr=cfg.lr, weight_decay=0.05)
    pad = decoder.tokenizer.pad_token_id
    decoder.train()
    decoder.losses = []
    for idx in tqdm(epoch_batches(len(rows), cfg.batch_size, cfg.steps, cfg.seed), desc="captioner",
                    disable=not progress):
        batch = [rows[k] for k in idx]
        segments = nn.utils.rnn.pad_sequence([r[2] for r in batch], batch_first=True, padding_value=-1)
        targets = nn.utils.rnn.pad_sequence([r[3] for r in batch], batch_first=True, padding_value=-100)
        positions, mask = decoder.attention((segments >= 0).long(), segments.shape[1], segments)
        if text_states is None:
            ids = nn.utils.rnn.pad_sequence([r[1] for r in batch], batch_first=True, padding_value=pad)
            h = decoder.text_hidden(ids, positions, mask)
        else:
            h = nn.utils.rnn.pad_sequence([text_states[k] for k in idx], batch_first=True)
        image = decoder.fusion.image_proj(image_tokens[[r[0] for r in batch]])
        hidden = decoder.fusion_hidden(h, image, mask)
        keep = targets != -100
        sequence = (torch.arange(len(batch))[:, None] * len(CAPTION_DIMENSIONS) + segments)[keep]
        loss = dimension_loss(decoder.logits(hidden[keep]), decoder.position[targets[keep]], sequence,
                              cfg.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        decoder.losses.append(loss.item())
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

    Beams of all prompts advance together (left-padded prompts, a key/value cache, the image keys/values computed
    once); a finished beam keeps its score, the best beam is picked by log-probability per generated token, and a
    prompt leaves the batch once all its beams have finished.
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
    active = torch.arange(n)  # prompts still in the batch; row r of the state is beam r % k of prompt active[r // k]
    out: list[list[int]] = [[] for _ in range(n)]

    def finish(which: torch.Tensor) -> None:  # the best beam of the active prompts `which` (indices into active)
        best = (scores[which] / lengths.view(-1, k)[which].clamp(min=1)).argmax(1) + which * k
        for prompt, row in zip(active[which].tolist(), best.tolist()):
            gen = ids[row, width:][mask[row, width:].bool()].tolist()
            out[prompt] = gen[:-1] if gen and gen[-1] == eos else gen

    cache = KVCache()
    new = ids
    for _ in range(max_new_tokens):
        a = len(active)
        logp = F.log_softmax(decoder.logits(decoder.hidden(image, new, mask, cache)[:, -1]).float(), dim=-1)
        logp[done] = float("-inf")
        logp[done, decoder.position[eos]] = 0.0  # a finished beam repeats [SEP], masked out, at no cost
        vocab = logp.shape[1]
        best = (scores.view(-1, 1) + logp).view(a, k * vocab).topk(k, dim=1)
        source = (best.indices // vocab + torch.arange(a)[:, None] * k).view(-1)
        token = decoder.vocab[(best.indices % vocab).view(-1)]
        scores = best.values
        cache.reorder(source)
        ids, mask = ids[source], mask[source]
        lengths, was_done = lengths[source] + (~done[source]).float(), done[source]
        new = token[:, None]
        ids = torch.cat([ids, new], 1)
        mask = torch.cat([mask, (~was_done).long()[:, None]], 1)
        done = was_done | (token == eos)
        finished = done.view(a, k).all(1)
        if finished.any():
            finish(finished.nonzero()[:, 0])
            keep = (~finished).nonzero()[:, 0]
            rows = (keep[:, None] * k + torch.arange(k)).view(-1)
            cache.reorder(rows, context=True)
            active, scores, image = active[keep], scores[keep], image[rows]
            ids, mask, done, lengths, new = ids[rows], mask[rows], done[rows], lengths[rows], new[rows]
        if not len(active):
            break
    if len(active):
        finish(torch.arange(len(active)))
    return out


def clean_text(text: str) -> str:
    """Decoded word pieces made readable: no spaces around '-' and '/', before ':', ';' and ')' nor after '(',
    first letter capitalised."""
    text = re.sub(r"\s*([-/])\s*", r"\1", text)
    text = re.sub(r"\(\s+", "(", re.sub(r"\s+([:;)])", r"\1", text)).strip()
    return text[:1].upper() + text[1:]


@torch.no_grad()
def generate(decoder: CaptionDecoder, images: torch.Tensor, cfg: CaptionConfig | None = None) -> list[dict]:
    """Per image, the 16 generated dimensions ({dimension: text or None}) and the full caption under `text`.

    The dimensions without CONTEXT are written first, then the others after their context's generated text.
    """
    cfg = cfg or CaptionConfig()
    tok = decoder.tokenizer
    image_tokens = decoder.image_tokens(images)
    out: list[dict] = [{} for _ in images]
    for stage in ([d for d in CAPTION_DIMENSIONS if d not in CONTEXT], [d for d in CAPTION_DIMENSIONS if d in CONTEXT]):
        jobs = [(i, d) for i in range(len(images)) for d in stage]
        if not jobs:
            continue
        prompts = [tok(prompt_text(d, out[i]))["input_ids"][:-1] for i, d in jobs]
        room = decoder.max_positions - max(len(p) for p in prompts)  # position embeddings left after a prompt
        generated = beam_search(decoder, image_tokens[[i for i, _ in jobs]], prompts, cfg.num_beams,
                                min(cfg.max_new_tokens, room))
        for (i, d), ids in zip(jobs, generated):
            text = clean_text(tok.decode(ids, skip_special_tokens=True))
            out[i][d] = None if text.lower() in ("", NONE_TEXT) else text
    out = [{d: dims[d] for d in CAPTION_DIMENSIONS} for dims in out]  # in caption order
    return [{**dims, "text": caption_text(dims)} for dims in out]
