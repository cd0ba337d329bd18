"""SCIO (Self-Consistent Iterative Optimization): clause-level screening, proofreading and reconstruction.

A caption is split into clauses (one per dimension sentence, further split at semicolons), each with its
character and token span. Captions longer than the text window are packed into *views* of whole clauses
that fit it, so every clause is seen and scored in context. Screening scores the image against each view
whole, with each clause removed and with each clause alone (ITC cosine and ITM probability); a clause whose
removal raises agreement more than a threshold calibrated on held-out captions is flagged. Proofreading
drops flagged clauses from the training text (so they are in no ITC/ITM/MLM target); reconstruction masks
the knowledge slots of a flagged clause, lets the image-conditioned MLM propose top-k fillers, rescores the
candidate views with ITM and keeps the best when it beats the original by a margin. Rounds p0 (all text),
p1 (flagged clauses left out) and p2 (reconstructed text) each train, screen and reconstruct, and are logged.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .losses import knowledge_token_mask
from .model import KlipConfig, KlipModel
from .vocab import CAPTION_DIMENSIONS

SCORES = ("itm_gain", "itc_gain", "itm_alone", "itc_alone")
"""Per-clause screening features: agreement gain when the clause is removed, agreement of the clause alone."""


# clauses -------------------------------------------------------------------------------------------
@dataclass
class Clause:
    dim: str | None  # caption dimension the clause belongs to (None for free text)
    body: str  # the clause's words, without the separator that follows it
    sep: str  # the separator after it (". ", "; ", "." or ""): body + sep pieces rebuild the caption

    @property
    def piece(self) -> str:
        return self.body + self.sep


_SPLIT = re.compile(r"(;\s+|\.\s+|\.$)")


def _split_span(text: str, dim: str | None) -> list[Clause]:
    """Clauses of one span of text, cut after '; ' and '. ' (and a final '.')."""
    parts = _SPLIT.split(text)
    out = []
    for body, sep in zip(parts[0::2], parts[1::2] + [""]):
        if body:
            out.append(Clause(dim, body, sep))
        elif sep and out:
            out[-1].sep += sep
    return out


def split_clauses(text: str, dims: dict[str, str | None] | None = None) -> list[Clause]:
    """Clauses of a caption; with the record's dimensions each clause is labelled with its dimension.

    `"".join(c.piece for c in split_clauses(t))` is `t` exactly.
    """
    if not dims:
        return _split_span(text, None)
    out, pos = [], 0
    for d in CAPTION_DIMENSIONS:
        value = (dims.get(d) or "").strip().rstrip(".")
        at = text.find(value, pos) if value else -1
        if at < 0:
            continue
        if at > pos:  # text between dimensions (none in captions written by caption_text)
            out += _split_span(text[pos:at], None)
        end = at + len(value)
        while end < len(text) and text[end] in ". ":
            end += 1
        out += _split_span(text[at:end], d)
        pos = end
    if pos < len(text):
        out += _split_span(text[pos:], None)
    return out


def join_clauses(clauses: list[Clause]) -> str:
    """The text of some clauses, in order (trailing whitespace removed)."""
    return "".join(c.piece for c in clauses).rstrip()


def token_spans(tokenizer, clauses: list[Clause]) -> list[tuple[int, int]]:
    """[start, end) token positions of each clause in the tokenized joined text ([CLS] is position 0)."""
    text = join_clauses(clauses)
    offsets = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)["offset_mapping"]
    bounds, pos = [], 0
    for c in clauses:
        bounds.append((pos, pos + len(c.piece)))
        pos += len(c.piece)
    spans = []
    for lo, hi in bounds:
        inside = [i for i, (a, b) in enumerate(offsets) if b > a and lo <= a < hi]
        spans.append((inside[0], inside[-1] + 1) if inside else (0, 0))
    return spans


def pack_views(clauses: list[Clause], tokenizer, max_tokens: int) -> list[list[int]]:
    """Clause indices grouped, in order, into views whose text fits `max_tokens` (with [CLS] and [SEP])."""
    views: list[list[int]] = []
    used = 0
    for i, c in enumerate(clauses):
        n = len(tokenizer.tokenize(c.piece))
        if views and used + n <= max_tokens - 2:
            views[-1].append(i)
            used += n
        else:
            views.append([i])
            used = n
    return views


# the corpus SCIO works on --------------------------------------------------------------------------
@dataclass
class Item:
    """One view of a caption: the clauses SCIO screens together against one image."""

    tile_id: str  # the tile (image) the caption describes
    row: int  # the tile's position in the image tensor the corpus is scored with
    clauses: list[Clause]  # the view's clauses, current text
    truth: list[Clause] | None = None  # the true clauses (error-injection harness), aligned with `clauses`
    kinds: list[str | None] = field(default_factory=list)  # error kind injected per clause (None: untouched)
    flagged: list[bool] = field(default_factory=list)  # screening result per clause (latest round)

    def text(self, keep: list[bool] | None = None) -> str:
        return join_clauses([c for c, k in zip(self.clauses, keep or [True] * len(self.clauses)) if k])


def corpus_from_records(records: list[dict], tile_rows: dict[str, int], tokenizer, max_tokens: int) -> list[Item]:
    """Views of the captions of the tiles in `tile_rows` (tile_id -> image row)."""
    items = []
    for r in records:
        if r.get("status", "ok") != "ok" or r["tile_id"] not in tile_rows:
            continue
        clauses = split_clauses(r["text"], r)
        for view in pack_views(clauses, tokenizer, max_tokens):
            cl = [clauses[i] for i in view]
            items.append(Item(r["tile_id"], tile_rows[r["tile_id"]], cl, None, [None] * len(cl), [False] * len(cl)))
    return items


def write_corpus(items: list[Item], path: str | Path, proofread: bool) -> Path:
    """A captions JSONL with one line per view; with `proofread`, flagged clauses are left out of the text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for it in items:
        keep = [not f for f in it.flagged] if proofread else None
        text = it.text(keep)
        if text:
            lines.append(json.dumps({"tile_id": it.tile_id, "text": text, "status": "ok"}))
    path.write_text("\n".join(lines) + "\n")
    return path


# screening ----------------------------------------------------------------------------------------
@torch.no_grad()
def agreement(model: KlipModel, images: torch.Tensor, rows: list[int], texts: list[str],
              batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(ITC cosine, ITM probability) of text i with image `rows[i]`; image encodings computed once."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    image_tokens, image_feat = model._image(images.to(device))
    itc, itm = [], []
    for s in range(0, len(texts), batch_size):
        idx = torch.tensor(rows[s:s + batch_size], device=device)
        tok = model.tokenize(texts[s:s + batch_size], device)
        text_embeds, text_feat = model._text(tok["input_ids"], tok["attention_mask"])
        itc.append((text_feat * image_feat[idx]).sum(-1).float().cpu())
        fused = model.fusion(text_embeds, tok["attention_mask"], image_tokens[idx])
        itm.append(torch.softmax(model.itm_head(fused[:, 0]).float(), dim=1)[:, 1].cpu())
    model.train(was)
    return torch.cat(itc).numpy(), torch.cat(itm).numpy()


def screen_scores(model: KlipModel, images: torch.Tensor, items: list[Item]) -> list[dict[str, np.ndarray]]:
    """Per item, the SCORES of each clause: agreement gains on removal and agreement of the clause alone."""
    rows, texts, where = [], [], []
    for it in items:
        n = len(it.clauses)
        variants = [it.text()] + [it.text([j != i for j in range(n)]) if n > 1 else "" for i in range(n)]
        variants += [c.body for c in it.clauses]
        where.append((len(texts), n))
        rows += [it.row] * len(variants)
        texts += [v or "[MASK]" for v in variants]
    itc, itm = agreement(model, images, rows, texts)
    out = []
    for start, n in where:
        whole, without, alone = slice(start, start + 1), slice(start + 1, start + 1 + n), \
            slice(start + 1 + n, start + 1 + 2 * n)
        out.append({"itm_gain": itm[without] - itm[whole], "itc_gain": itc[without] - itc[whole],
                    "itm_alone": itm[alone], "itc_alone": itc[alone], "itm_whole": np.repeat(itm[whole], n),
                    "itm_without": itm[without], "itc_without": itc[without]})
    return out


def slot_positions(tokenizer, item: Item) -> tuple[dict, list[list[int]]]:
    """The view's tokens (input_ids, offsets) and, per clause, the positions of its knowledge-slot tokens."""
    enc = tokenizer(item.text(), return_offsets_mapping=True, truncation=True, max_length=512)
    table = knowledge_token_mask(tokenizer)
    spans = token_spans(tokenizer, item.clauses)
    slots = [[p for p in range(a, b) if table[enc["input_ids"][p]]] for a, b in spans]
    return enc, slots


@torch.no_grad()
def _masked_slot_logits(model: KlipModel, images: torch.Tensor, jobs: list[tuple[int, torch.Tensor, list[int]]],
                        batch_size: int = 64):
    """For jobs (image row, input_ids with the slots masked, slot positions): per job the image-conditioned MLM
    logits [len(positions), vocab] at its slots. Each image the jobs use is encoded once (not every tile of
    `images`); the vocabulary head runs on slots only."""
    tok = model.tokenizer
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    used = sorted({j[0] for j in jobs})
    at = {row: k for k, row in enumerate(used)}
    image_tokens = model._image(images[used].to(device))[0] if used else None
    out = []
    for s in range(0, len(jobs), batch_size):
        chunk = jobs[s:s + batch_size]
        ids = torch.nn.utils.rnn.pad_sequence([j[1] for j in chunk], batch_first=True, padding_value=tok.pad_token_id)
        select = torch.zeros(ids.shape, dtype=torch.bool)
        for b, (_, _, pos) in enumerate(chunk):
            select[b, pos] = True
        rows = torch.tensor([at[j[0]] for j in chunk], device=device)
        logits = model.mlm_logits(None, ids.to(device), (ids != tok.pad_token_id).long().to(device),
                                  select.to(device), image_tokens[rows]).float()
        out += list(logits.split([len(j[2]) for j in chunk]))  # rows of `select` are in job order
    model.train(was)
    return out


@torch.no_grad()
def slot_surprise(model: KlipModel, images: torch.Tensor, items: list[Item], batch_size: int = 64,
                  only: list[int] | None = None) -> list[np.ndarray]:
    """Per item, per clause: mean negative log-probability the image-conditioned MLM gives the clause's own
    knowledge-slot tokens when they are masked (0 for a clause without slots, or not in `only[item]`)."""
    tok = model.tokenizer
    where, jobs = [], []  # (item index, clause index, original ids) and the masked inputs
    for n, it in enumerate(items):
        enc, slots = slot_positions(tok, it)
        for i, pos in enumerate(slots):
            if pos and (only is None or only[n] == i):
                ids = torch.tensor(enc["input_ids"])
                where.append((n, i, ids[pos]))
                jobs.append((it.row, ids.index_fill(0, torch.tensor(pos), tok.mask_token_id), pos))
    out = [np.zeros(len(it.clauses)) for it in items]
    for (n, i, orig), logits in zip(where, _masked_slot_logits(model, images, jobs, batch_size)):
        logp = torch.log_softmax(logits, -1)
        out[n][i] = float(-logp[torch.arange(len(orig)), orig.to(logp.device)].mean())
    return out


def clause_features(model: KlipModel, images: torch.Tensor, items: list[Item],
                    features: tuple[str, ...] | None = None) -> list[dict[str, np.ndarray]]:
    """Per item, per clause: the screening SCORES (oriented so that larger means more likely wrong) and the
    MLM slot surprise. Only the named `features` are computed (all by default); the others are zeros."""
    features = FEATURES if features is None else features
    if any(f in SCORES for f in features):
        feats = screen_scores(model, images, items)
    else:
        feats = [{k: np.zeros(len(it.clauses)) for k in SCORES + ("itm_whole", "itm_without", "itc_without")}
                 for it in items]
    surprise = slot_surprise(model, images, items) if "surprise" in features else [np.zeros(len(it.clauses))
                                                                                  for it in items]
    for f, s in zip(feats, surprise):
        f["itm_alone"], f["itc_alone"], f["surprise"] = -f["itm_alone"], -f["itc_alone"], s
    return feats


FEATURES = SCORES + ("surprise",)


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (ties counted half), 0.5 without both classes."""
    pos, neg = score[label], score[~label]
    if not len(pos) or not len(neg):
        return 0.5
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (len(pos) * len(neg)))


MIN_WEIGHT = 0.1
"""A feature whose held-out AUC is under 0.55 (weight 2 * AUC - 1 < 0.1) gets no weight: with a few hundred
calibration clauses that is within noise of chance, and an unweighted feature is not computed on the corpus."""


@dataclass
class Screener:
    """Turns clause features into a wrongness score and flags: per-dimension standardisation (on the screened
    corpus itself), feature weights and a threshold calibrated on held-out captions with known errors."""

    weights: dict[str, float]  # feature -> weight: 2 * AUC - 1 on the held-out set (0 under MIN_WEIGHT)
    threshold: float  # flag a clause whose score exceeds this (held-out F1, optionally capped)
    stats: dict = field(default_factory=dict)  # (dim, feature) -> (mean, std) of the corpus last scored

    @staticmethod
    def standardise(items: list[Item], feats: list[dict]) -> dict:
        """(dim, feature) -> (mean, std) over the clauses of a corpus."""
        dims = np.array([c.dim or "" for it in items for c in it.clauses])
        stats = {}
        for f in FEATURES:
            x = np.concatenate([ft[f] for ft in feats])
            for d in set(dims):
                stats[(d, f)] = (float(x[dims == d].mean()), float(x[dims == d].std()) + 1e-6)
        return stats

    def score(self, dim: str | None, values: dict[str, float]) -> float:
        """The weighted sum of a clause's standardised features."""
        return sum(w * (values[f] - self.stats[(dim or "", f)][0]) / self.stats[(dim or "", f)][1]
                   for f, w in self.weights.items() if w)

    def scores(self, items: list[Item], feats: list[dict], restandardise: bool = True) -> list[np.ndarray]:
        if restandardise:
            self.stats = self.standardise(items, feats)
        return [np.array([self.score(c.dim, {f: ft[f][i] for f in FEATURES}) for i, c in enumerate(it.clauses)])
                for it, ft in zip(items, feats)]

    @classmethod
    def calibrate(cls, items: list[Item], feats: list[dict], wrong: list[list[bool]],
                  max_false_flags: float | None = None) -> Screener:
        """Weights and threshold from held-out items whose wrong clauses are known."""
        stats = cls.standardise(items, feats)
        y = np.concatenate([np.array(w, dtype=bool) for w in wrong])
        dims = [c.dim or "" for it in items for c in it.clauses]
        weights = {}
        for f in FEATURES:
            x = np.concatenate([ft[f] for ft in feats])
            z = np.array([(v - stats[(d, f)][0]) / stats[(d, f)][1] for v, d in zip(x, dims)])
            w = 2 * _auc(z, y) - 1
            weights[f] = w if w >= MIN_WEIGHT else 0.0
        if not any(weights.values()):
            weights["itm_gain"] = 1.0  # no feature separates the held-out errors: screen by ITM as SCIO states
        screener = cls(weights, 0.0, stats)
        s = np.concatenate(screener.scores(items, feats, restandardise=False))
        best = (-1.0, float(s.max()) + 1)
        for t in np.unique(s):
            flag = s >= t
            tp, fp, fn = (flag & y).sum(), (flag & ~y).sum(), (~flag & y).sum()
            f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
            best = max(best, (f1, float(t) - 1e-9))
        # F1-optimal on the held-out errors; with `max_false_flags`, flagging at most that share of its true clauses
        # (the corpus may hold far fewer errors than the calibration set, and each flag removes text from training)
        cap = float(np.quantile(s[~y], 1 - max_false_flags)) if max_false_flags is not None and (~y).any() else -np.inf
        screener.threshold = max(best[1], cap)
        return screener

    def used(self) -> tuple[str, ...]:
        """The features with a non-zero weight (the only ones worth computing on the corpus)."""
        return tuple(f for f, w in self.weights.items() if w > 0)

    def flag(self, scores: list[np.ndarray]) -> list[list[bool]]:
        return [[bool(v > self.threshold) for v in s] for s in scores]


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
    logits = iter(_masked_slot_logits(model, images, masked))
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
                else [np.zeros(len(it.clauses)) for it in variants])
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


# the rounds ---------------------------------------------------------------------------------------
@dataclass
class ScioConfig:
    steps: tuple[int, int, int] = (24, 8, 8)  # training steps of rounds p0 (all text), p1 (masked), p2 (reconstructed)
    top_k: int = 2  # MLM fillers proposed per knowledge slot
    margin: float = 0.5  # a candidate replaces a clause when its score is lower by this much (in standard units)
    calibration_rate: float = 0.5  # share of eligible held-out clauses made wrong to calibrate the screener
    max_false_flags: float | None = None  # cap on the share of true held-out clauses flagged (None: F1-optimal;
    # 0.1 keeps ~90% of clean captions, but at the smoke preset SCIO then no longer beats random flagging)
    calibration_copies: int = 3  # differently corrupted copies of the held-out captions (more calibration clauses)


@dataclass
class ScioData:
    """Everything the rounds need: images of all tiles, the corpus to proofread, held-out items with errors."""

    images: torch.Tensor  # [tiles, C, S, S] in shard order; an Item's `row` indexes it
    facts: dict[str, dict]  # tile_id -> facts record
    train: list[Item]  # the training split's views (the corpus SCIO proofreads)
    heldout: list[Item]  # the val split's views with injected errors (truth kept): calibration
    shard_dir: Path  # the shard folder training reads


def load_scio_data(shard_dir, records: list[dict], model_config: KlipConfig, cfg: ScioConfig, seed: int) -> ScioData:
    """Views of the train and val captions, and the val views corrupted for calibration."""
    from .data.dataset import ShardDataset
    from .model import load_tokenizer
    from .scio_inject import inject_errors

    ds = ShardDataset(shard_dir)
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    facts = {t["tile_id"]: t["facts"] for t in ds.tiles}
    tok = load_tokenizer(model_config)

    def views(split):
        rows = {t["tile_id"]: i for i, t in enumerate(ds.tiles) if t["split"] == split and t["facts"]}
        return corpus_from_records(records, rows, tok, model_config.max_text_len)

    val = views("val")
    heldout = [it for c in range(cfg.calibration_copies)
               for it in inject_errors(val, facts, cfg.calibration_rate, seed + 1 + c)]
    if not heldout:
        raise ValueError(f"{shard_dir}: no captioned val tiles to calibrate SCIO's thresholds on; "
                         "simulate more tiles or caption the val split")
    return ScioData(images, facts, views("train"), heldout, Path(shard_dir))


def run_rounds(data: ScioData, out_dir, model_config: KlipConfig, train_cfg, cfg: ScioConfig,
               model: KlipModel | None = None, on_round=None) -> tuple[KlipModel, list[dict]]:
    """Rounds p0, p1, p2: train, calibrate on held-out errors, screen and reconstruct the training corpus.

    p0 trains on all text, p1 on the text with p0's flagged clauses left out, p2 on p1's reconstruction
    (clauses still flagged and not replaced stay left out). `on_round(name, model, items, fixed, (feats, scores), screener)`
    is called after each round (the harness scores it). Returns the model and one log row per round.
    """
    from .scio_inject import wrong_labels
    from .train import METRICS_CSV, append_csv, pretrain, read_csv

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if model is None:
        torch.manual_seed(train_cfg.seed)
        model = KlipModel(model_config)
    (out_dir / METRICS_CSV).unlink(missing_ok=True)
    corpus, texts, log, done = data.train, None, [], 0
    for r, (name, steps) in enumerate(zip(("p0", "p1", "p2"), cfg.steps)):
        if steps:
            texts = write_corpus(corpus, out_dir / f"{name}_captions.jsonl", proofread=True)
            phase_cfg = round_schedule(train_cfg, done, steps, sum(cfg.steps))
            pretrain(data.shard_dir, out_dir / name, model_config, phase_cfg, captions=texts, resume=False,
                     model=model, progress=False)
            for row in read_csv(out_dir / name / METRICS_CSV):
                append_csv(out_dir / METRICS_CSV, {"round": r, **row, "step": done + row["step"]})
            done += steps
        feats_val = clause_features(model, data.images, data.heldout)
        screener = Screener.calibrate(data.heldout, feats_val, wrong_labels(data.heldout, data.facts),
                                      cfg.max_false_flags)
        feats = clause_features(model, data.images, corpus, screener.used())
        scores = screener.scores(corpus, feats)
        flags = screener.flag(scores)
        corpus = [dataclasses.replace(it, flagged=f) for it, f in zip(corpus, flags)]
        fixed = reconstruct(model, data.images, corpus, screener, feats, scores, cfg.top_k, cfg.margin)
        row = {"round": name, "steps": done, "flag_rate": float(np.mean(np.concatenate(flags))),
               "edited": sum(a.body != b.body for x, y in zip(corpus, fixed) for a, b in zip(x.clauses, y.clauses)),
               "weights": screener.weights, "threshold": screener.threshold}
        if on_round:
            row.update(on_round(name, model, corpus, fixed, (feats, scores), screener) or {})
        log.append(row)
        if name == "p1":  # from p1 on, training continues on the corrected text
            corpus = [dataclasses.replace(f, flagged=[fl and a.body == b.body for fl, a, b in
                                                     zip(f.flagged, it.clauses, f.clauses)])
                      for it, f in zip(corpus, fixed)]
    (out_dir / "scio_rounds.json").write_text(json.dumps(log, indent=2, default=float) + "\n")
    return model, log


def round_schedule(train_cfg, start: int, steps: int, total: int):
    """The TrainConfig of one round: the slice [start, start + steps) of one warmup/cosine schedule over all
    rounds' `total` steps, so a later round continues at the learning rate the last one ended at (restarting the
    warmup to the peak in every round left the smoke KLIP model's ITC at chance: retrieval r_mean 0.583 = random)."""
    from .train import lr_factor

    whole = dataclasses.replace(train_cfg, steps=total)
    first, last = lr_factor(start, whole), lr_factor(start + steps, whole)  # the next round starts at `last`
    if start == 0:
        return dataclasses.replace(train_cfg, steps=steps, warmup_steps=min(train_cfg.warmup_steps, steps),
                                   min_lr_ratio=last)
    return dataclasses.replace(train_cfg, steps=steps, warmup_steps=0, lr=train_cfg.lr * first,
                               min_lr_ratio=last / first)


def pretrain_klip(run_dir, out_dir, model_config: KlipConfig, train_cfg, captions, preset: str = "smoke",
                  seed: int = 0, cfg: ScioConfig | None = None) -> Path:
    """The KLIP model: BLIP-like losses (ITC+ITM+MLM) on SCIO-proofread captions, in rounds p0/p1/p2 whose
    steps add up to the preset's; writes `out_dir/model`, `out_dir/metrics.csv` and `out_dir/scio_rounds.json`."""
    from .hcot.generate import read_captions
    from .train import ensure_shards

    cfg = cfg or ScioConfig(steps=default_steps(train_cfg.steps))
    shard_dir = ensure_shards(run_dir, preset, seed)
    data = load_scio_data(shard_dir, read_captions(captions), model_config, cfg, seed)
    model, _ = run_rounds(data, out_dir, model_config, train_cfg, cfg)
    model.save_pretrained(Path(out_dir) / "model")
    return Path(out_dir) / "model"


def default_steps(total: int) -> tuple[int, int, int]:
    """A preset's step count split 60/20/20 over rounds p0, p1, p2."""
    p1 = p2 = max(1, total // 5)
    return (max(1, total - p1 - p2), p1, p2)
