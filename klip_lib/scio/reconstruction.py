"""Reconstruction: the image-conditioned MLM proposes fillers for a flagged clause's knowledge slots; ITM
rescores the candidate views and keeps the best when it beats the original by a margin."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from ..model import KlipModel
from .clauses import Item, per_clause_zeros
from .screening import SCORES, Screener, agreement, masked_slot_logits, slot_positions, slot_surprise


# reconstruction -----------------------------------------------------------------------------------
@torch.no_grad()
def propose(model: KlipModel, images: torch.Tensor, items: list[Item], jobs: list[tuple[int, int]],
            top_k: int) -> list[list[str]]:
    """Candidate bodies for each (item index, clause index) job: the clause's knowledge slots masked, the
    image-conditioned MLM's top-k filler per slot (one slot changed at a time) and its best filler for every
    slot together. A clause without knowledge slots gets no candidates."""
    tok = model.tokenizer
    encoded, masked = [], []
    for n, i in jobs:
        enc, slots = slot_positions(tok, items[n])
        encoded.append((enc, slots[i]))
        if slots[i]:
            ids = torch.tensor(enc["input_ids"]).index_fill(0, torch.tensor(slots[i]), tok.mask_token_id)
            masked.append((items[n].row, ids, slots[i]))
    logits = iter(masked_slot_logits(model, images, masked))
    return [_candidates(tok, items[n], i, enc, pos, next(logits), top_k) if pos else []
            for (n, i), (enc, pos) in zip(jobs, encoded)]


def _candidates(tok, item: Item, index: int, enc: dict, pos: list[int], slot_logits: torch.Tensor,
                top_k: int) -> list[str]:
    """Clause `index` of `item` with its slot tokens (positions `pos` of `enc`) replaced by the MLM's fillers."""
    special = set(tok.all_special_ids)
    start = sum(len(c.piece) for c in item.clauses[:index])
    body = item.clauses[index].body

    def fillers(k):
        orig = tok.convert_ids_to_tokens(enc["input_ids"][pos[k]])
        top = slot_logits[k].topk(200).indices.tolist()
        words = [w for t, w in zip(top, tok.convert_ids_to_tokens(top)) if t not in special
                 and w.startswith("##") == orig.startswith("##") and any(ch.isalnum() for ch in w)]
        return [w.removeprefix("##") for w in words[:top_k]]

    def edit(changes: dict[int, str]) -> str:
        text, last = [], 0
        for p in sorted(changes):
            a, b = enc["offset_mapping"][p]
            text += [body[last:a - start], changes[p]]
            last = b - start
        return "".join(text) + body[last:]

    options = {p: fillers(k) for k, p in enumerate(pos)}
    cands = [edit({p: w}) for p in pos for w in options[p]]
    cands.append(edit({p: options[p][0] for p in pos if options[p]}))
    return [c for c in dict.fromkeys(cands) if c != body]


def reconstruct(model: KlipModel, images: torch.Tensor, items: list[Item], screener: Screener, feats: list[dict],
                scores: list[np.ndarray], top_k: int = 3, margin: float = 0.5) -> list[Item]:
    """Copies of the items where each flagged clause is replaced by its best candidate (by the screener's score
    of the candidate in the view) when that beats the original's score by `margin`; other clauses untouched."""
    out = [dataclasses.replace(it, clauses=[dataclasses.replace(c) for c in it.clauses]) for it in items]
    flagged = [(n, i) for n, it in enumerate(items) for i, f in enumerate(it.flagged) if f]
    jobs = [(n, i, body) for (n, i), bodies in zip(flagged, propose(model, images, items, flagged, top_k))
            for body in bodies]
    if not jobs:
        return out
    variants = []
    for n, i, body in jobs:
        cl = [dataclasses.replace(c, body=body) if j == i else c for j, c in enumerate(items[n].clauses)]
        variants.append(dataclasses.replace(items[n], clauses=cl))
    used = screener.used()  # features without weight are not computed (zeros)
    itc = itm = np.zeros(2 * len(jobs))
    if any(f in SCORES for f in used):
        rows = [it.row for it in variants for _ in range(2)]
        itc, itm = agreement(model, images, rows, [t for it, (_, i, b) in zip(variants, jobs) for t in (it.text(), b)])
    surprise = (slot_surprise(model, images, variants, only=[i for _, i, _ in jobs]) if "surprise" in used
                else per_clause_zeros(variants))
    best: dict[tuple[int, int], tuple[float, str]] = {}
    for k, ((n, i, body), it) in enumerate(zip(jobs, variants)):
        # the view without clause i is the same for every candidate: its agreement comes from the screening
        values = {"itm_gain": feats[n]["itm_without"][i] - itm[2 * k], "itc_gain": feats[n]["itc_without"][i] - itc[2 * k],
                  "itm_alone": -itm[2 * k + 1], "itc_alone": -itc[2 * k + 1], "surprise": surprise[k][i]}
        s = screener.score(it.clauses[i].dim, values)
        if s < scores[n][i] - margin and s < best.get((n, i), (math.inf, ""))[0]:
            best[(n, i)] = (s, body)
    for (n, i), (_, body) in best.items():
        out[n].clauses[i].body = body
    return out
