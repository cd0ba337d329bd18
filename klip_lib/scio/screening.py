"""Screening: per-clause agreement features (ITC/ITM gain and alone, MLM slot surprise) and the `Screener`
calibrated on held-out captions with planted errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..losses import knowledge_token_mask
from ..model import KlipModel
from .clauses import Item, per_clause_zeros, token_spans

SCORES = ("itm_gain", "itc_gain", "itm_alone", "itc_alone")
"""Per-clause screening features: agreement gain when the clause is removed, agreement of the clause alone."""


# screening ----------------------------------------------------------------------------------------
@torch.no_grad()
def _encode_rows(model: KlipModel, images: torch.Tensor, rows: list[int], batch_size: int):
    """({image row: position}, image tokens, ITC features) of the distinct rows in `rows`, encoded once each, in
    batches: only the images a call uses (at the gpu preset the corpus has 20k tiles, one call scores a few)."""
    device = next(model.parameters()).device
    used = sorted(set(rows))
    encoded = [model.image_tokens(images[used[s:s + batch_size]].to(device)) for s in range(0, len(used), batch_size)]
    return ({r: i for i, r in enumerate(used)}, torch.cat([e[0] for e in encoded]),
            torch.cat([e[1] for e in encoded]))


@torch.no_grad()
def agreement_logits(model: KlipModel, images: torch.Tensor, rows: list[int], texts: list[str],
                     batch_size: int = 128) -> tuple[np.ndarray, np.ndarray, float]:
    """(ITC cosine [n], ITM head logits [n, 2] (non-match, match), ITC temperature) of text i with image
    `rows[i]` (`_encode_rows`: each image used, once). The ITC logit is cosine / temperature."""
    if not texts:
        return np.zeros(0, dtype=np.float32), np.zeros((0, 2), dtype=np.float32), float(model.temp)
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    at, image_tokens, image_feat = _encode_rows(model, images, rows, batch_size)
    itc, itm = [], []
    for s in range(0, len(texts), batch_size):
        idx = torch.tensor([at[r] for r in rows[s:s + batch_size]], device=device)
        tok = model.tokenize(texts[s:s + batch_size], device)
        text_embeds, text_feat = model.text_tokens(tok["input_ids"], tok["attention_mask"])
        itc.append((text_feat * image_feat[idx]).sum(-1).float().cpu())
        fused = model.fusion(text_embeds, tok["attention_mask"], image_tokens[idx])
        itm.append(model.itm_head(fused[:, 0]).float().cpu())
    model.train(was)
    return torch.cat(itc).numpy(), torch.cat(itm).numpy(), float(model.temp)


def agreement(model: KlipModel, images: torch.Tensor, rows: list[int], texts: list[str],
              batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(ITC cosine, ITM probability) of text i with image `rows[i]`."""
    itc, logits, _ = agreement_logits(model, images, rows, texts, batch_size)
    return itc, torch.softmax(torch.from_numpy(logits), dim=1)[:, 1].numpy()


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
def masked_slot_logits(model: KlipModel, images: torch.Tensor, jobs: list[tuple[int, torch.Tensor, list[int]]],
                        batch_size: int = 64):
    """For jobs (image row, input_ids with the slots masked, slot positions): per job the image-conditioned MLM
    logits [len(positions), vocab] at its slots. Each image the jobs use is encoded once (`_encode_rows`); the
    vocabulary head runs on slots only."""
    tok = model.tokenizer
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    at, image_tokens, _ = _encode_rows(model, images, [j[0] for j in jobs], batch_size) if jobs else ({}, None, None)
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
    out = per_clause_zeros(items)
    for (n, i, orig), logits in zip(where, masked_slot_logits(model, images, jobs, batch_size)):
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
        feats = [{k: z.copy() for k in SCORES + ("itm_whole", "itm_without", "itc_without")}
                 for z in per_clause_zeros(items)]
    surprise = slot_surprise(model, images, items) if "surprise" in features else per_clause_zeros(items)
    for f, s in zip(feats, surprise):
        f["itm_alone"], f["itc_alone"], f["surprise"] = -f["itm_alone"], -f["itc_alone"], s
    return feats


FEATURES = SCORES + ("surprise",)


def unit_ranks(score: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Scores as their dense ranks scaled into [0, 1] (same order, same ties), and the distinct scores by rank.
    torchmetrics reads scores outside [0, 1] as logits and applies a sigmoid, which can merge large ones."""
    values, rank = np.unique(score, return_inverse=True)
    return torch.from_numpy(rank / max(len(values) - 1, 1)), values


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (torchmetrics: tied scores count half), 0.5 without both classes."""
    from torchmetrics.functional.classification import binary_auroc

    if label.all() or not label.any():
        return 0.5
    return float(binary_auroc(unit_ranks(score)[0], torch.from_numpy(label).long()))


F1_TIE = 1e-6
"""F1 values this close to the best count as tied (torchmetrics computes precision and recall in float32)."""


def f1_sweep(score: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F1, threshold) of flagging `score >= threshold`, for each distinct score as threshold, ascending: from
    torchmetrics' precision-recall curve."""
    from torchmetrics.functional.classification import binary_precision_recall_curve

    ranks, values = unit_ranks(score)
    if not label.any():
        return np.zeros(len(values)), values
    precision, recall, thresholds = binary_precision_recall_curve(ranks, torch.from_numpy(label).long())
    p, r = precision[:-1].double().numpy(), recall[:-1].double().numpy()
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=p + r > 0)
    return f1, values[np.rint(thresholds.double().numpy() * max(len(values) - 1, 1)).astype(int)]


MIN_WEIGHT = 0.1
"""A feature whose held-out AUC is under 0.55 (weight 2 * AUC - 1 < 0.1) gets no weight: with a few hundred
calibration clauses that is within noise of chance, and an unweighted feature is not computed on the corpus."""


@dataclass
class Screener:
    """Turns clause features into a wrongness score and flags: per-dimension standardisation (on the screened
    corpus itself), feature weights and a threshold calibrated on held-out captions with known errors."""

    weights: dict[str, float]  # feature -> weight: 2 * AUC - 1 on the held-out set (0 under MIN_WEIGHT)
    threshold: float  # flag a clause whose score exceeds this (held-out F1, or a false-flag bound)
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
            w = 2 * auc(z, y) - 1
            weights[f] = w if w >= MIN_WEIGHT else 0.0
        if not any(weights.values()):
            weights["itm_gain"] = 1.0  # no feature separates the held-out errors: screen by ITM as SCIO states
        screener = cls(weights, 0.0, stats)
        s = np.concatenate(screener.scores(items, feats, restandardise=False))
        f1, thresholds = f1_sweep(s, y)
        best = float(thresholds[np.flatnonzero(f1 >= f1.max() - F1_TIE)[-1]]) - 1e-9  # ties: the fewest flags
        # F1-optimal on the held-out errors (depends on their planted rate); with `max_false_flags` instead the
        # (1 - max_false_flags) quantile of the true clauses' scores: a bound on the share of true clauses flagged
        # that holds whatever the corpus's error rate (each flag removes text from training)
        if max_false_flags is not None and (~y).any():
            best = float(np.quantile(s[~y], 1 - max_false_flags))
        screener.threshold = best
        return screener

    def used(self) -> tuple[str, ...]:
        """The features with a non-zero weight (the only ones worth computing on the corpus)."""
        return tuple(f for f, w in self.weights.items() if w > 0)

    def flag(self, scores: list[np.ndarray]) -> list[list[bool]]:
        return [[bool(v > self.threshold) for v in s] for s in scores]
