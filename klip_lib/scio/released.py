"""SCIO as the authors released it (yangyifremad/FUSAR-KLIP, `SARKnowLIP_maskv2`, shipped as Python 3.8 bytecode;
the rules as issue 19 reads them from the decompiled code).

- Screening (stage 2): for each of a caption's N clauses, the caption without that clause is scored against the
  image with the ITC logit (cosine / temperature) and the ITM head's two logits, and compared with the caption
  whole. A variant *passes* when its ITC logit is closer to 1, its ITM match logit closer to 1 and its ITM
  non-match logit further from 1 than the whole caption's. Of the passing variants the one whose ITC logit is
  closest to 1 is kept (its left-out clause is flagged); when none passes, the last clause is flagged. No
  threshold is tuned: only relative comparisons, so every screened caption loses exactly one clause.
- Reconstruction (stage 3): the flagged clause's keyword span is masked in full (probability 1) and the
  image-conditioned MLM fills each masked position by argmax; the filled clause is taken as is (no rescoring).
- Stage lengths: three equal shares of the training budget (108 epochs = 3 x 36 in the release).

Our adaptations, stated: a caption is screened per view (the clauses that fit the text window together, see
`pack_views`); a view of one clause is not screened (leaving it out leaves no caption); the keyword span of a
clause is the run of its tokens from its first to its last knowledge-slot token (`losses.knowledge_token_mask`:
numbers, classes, directions), where the release finds it with 23 regex templates of its caption fields. Not
reproduced: the release's stage-1 "template MLM" training mask and stage-3's 5% extra random masking, which
change the training losses, not SCIO's decisions.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..model import KlipModel
from .clauses import Item
from .screening import agreement_logits, masked_slot_logits, slot_positions

STAGE_SHARES = (1 / 3, 1 / 3, 1 / 3)
"""Shares of the training budget of stages 1 (ITC+ITM+MLM), 2 (screened text) and 3 (reconstructed text)."""


def _closer_to_one(value: float, reference: float) -> bool:
    return abs(value - 1.0) < abs(reference - 1.0)


def released_pick(itc_whole: float, itm_whole, itc_without, itm_without) -> tuple[int, list[bool]]:
    """The released leave-one-clause-out rule on one caption of N >= 2 clauses.

    `itc_whole` is the whole caption's ITC logit, `itm_whole` its ITM logits (non-match, match); `itc_without[i]`
    and `itm_without[i]` the same for the caption without clause i. Returns (index of the clause to drop, whether
    each variant passed). Ties in closeness to 1 go to the earlier clause.
    """
    itc_without, itm_without = np.asarray(itc_without, float), np.asarray(itm_without, float).reshape(-1, 2)
    passed = [_closer_to_one(itc_without[i], itc_whole) and _closer_to_one(itm_without[i, 1], itm_whole[1])
              and abs(itm_without[i, 0] - 1.0) > abs(itm_whole[0] - 1.0) for i in range(len(itc_without))]
    if not any(passed):
        return len(itc_without) - 1, passed
    candidates = [i for i, p in enumerate(passed) if p]
    return min(candidates, key=lambda i: abs(itc_without[i] - 1.0)), passed


def released_scores(model: KlipModel, images: torch.Tensor, items: list[Item]) -> list[dict[str, np.ndarray]]:
    """Per item: the whole view's and each leave-one-out variant's ITC logit and ITM logits, the pass flags and
    the flag the released rule sets (one clause per view of two or more clauses, none for a one-clause view)."""
    rows, texts, where = [], [], []
    for it in items:
        n = len(it.clauses)
        variants = [it.text()] + ([it.text([j != i for j in range(n)]) for i in range(n)] if n > 1 else [])
        where.append((len(texts), n))
        rows += [it.row] * len(variants)
        texts += variants
    cos, itm, temp = agreement_logits(model, images, rows, texts)
    itc = cos / temp
    out = []
    for start, n in where:
        rec = {"itc_whole": np.repeat(itc[start], n), "itm_whole": np.repeat(itm[start, 1], n),
               "itc_without": np.full(n, np.nan), "itm_without": np.full(n, np.nan),
               "passed": np.zeros(n, bool), "flag": np.zeros(n, bool)}
        if n > 1:
            w = slice(start + 1, start + 1 + n)
            drop, passed = released_pick(itc[start], itm[start], itc[w], itm[w])
            rec.update(itc_without=itc[w], itm_without=itm[w, 1], passed=np.array(passed), flag=np.arange(n) == drop)
        out.append(rec)
    return out


def keyword_span(tokenizer, item: Item, index: int) -> tuple[dict, list[int]]:
    """The view's encoding and the token positions of clause `index`'s keyword span: every token from its first
    to its last knowledge-slot token (none when the clause has no knowledge slot)."""
    enc, slots = slot_positions(tokenizer, item)
    pos = slots[index]
    return enc, list(range(pos[0], pos[-1] + 1)) if pos else []


def fill_span(tokenizer, item: Item, index: int, enc: dict, span: list[int], ids: list[int]) -> str:
    """Clause `index`'s body with the characters of the tokens at `span` replaced by the tokens `ids`."""
    start = sum(len(c.piece) for c in item.clauses[:index])
    body = item.clauses[index].body
    a, b = enc["offset_mapping"][span[0]][0] - start, enc["offset_mapping"][span[-1]][1] - start
    return body[:a] + tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens(ids)) + body[b:]


@torch.no_grad()
def released_reconstruct(model: KlipModel, images: torch.Tensor, items: list[Item]) -> list[Item]:
    """Copies of the items where each flagged clause's keyword span is fully masked and filled by the MLM's
    argmax at each position; a flagged clause without a keyword span is left as it is (and stays flagged)."""
    tok = model.tokenizer
    out = [dataclasses.replace(it, clauses=[dataclasses.replace(c) for c in it.clauses]) for it in items]
    jobs, where = [], []
    for n, it in enumerate(items):
        for i, f in enumerate(it.flagged):
            if not f:
                continue
            enc, span = keyword_span(tok, it, i)
            if span:
                ids = torch.tensor(enc["input_ids"]).index_fill(0, torch.tensor(span), tok.mask_token_id)
                jobs.append((it.row, ids, span))
                where.append((n, i, enc, span))
    for (n, i, enc, span), logits in zip(where, masked_slot_logits(model, images, jobs)):
        out[n].clauses[i].body = fill_span(tok, items[n], i, enc, span, logits.argmax(-1).tolist())
    return out
