"""One SCIO interface, two named strategies (`ScioConfig.strategy`) and a control:

- `released`: the authors' rules (`released.py`): leave-one-clause-out on the ITC logit and ITM head, "closer
  to 1", exactly one clause flagged per view, keyword span fully masked and filled by argmax; stages of equal
  length.
- `calibrated` (ours): clause features (ITC/ITM gain and alone, MLM slot surprise) weighted and thresholded on
  held-out val captions with planted errors. The threshold does NOT assume the corpus's own error rate: it
  *bounds the false-flag rate* (Neyman-Pearson), flagging a clause whose score exceeds the (1 - alpha) quantile
  of the held-out TRUE clauses' scores (alpha = `ScioConfig.max_false_flags`), with the corpus scored in the
  held-out set's standardisation, so that on a corpus of true clauses about alpha of them are flagged whatever
  its error rate. The corpus error rate is not estimated. (`max_false_flags=None` restores the F1-optimal
  threshold, which depends on the planted rate, with the corpus standardised on itself.)
- `none`: no screening (nothing flagged, nothing rewritten) in the released strategy's rounds: the control that
  separates what screening does from what the rounds' schedule does (each round restarts the optimizer and its
  warm-up; klip_lib.scio_effect's `no-screening` arm).

All return a `Screening`: the flags, a per-clause audit (scores with and without each clause) and the round's
log entries; `reconstruct` proofreads the flagged clauses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .clauses import Item
from .errors import wrong_labels
from .reconstruction import reconstruct as calibrated_reconstruct
from .released import STAGE_SHARES, released_reconstruct, released_scores
from .screening import Screener, clause_features


@dataclass
class Screening:
    flags: list[list[bool]]  # per item, per clause: flagged as wrong
    audit: list[dict[str, np.ndarray]]  # per item, per-clause columns (scores with / without the clause)
    log: dict = field(default_factory=dict)  # what the round log records (threshold, weights)
    state: tuple = ()  # what `reconstruct` needs


class Released:
    name = "released"

    def steps(self, total: int) -> tuple[int, int, int]:
        s = [max(1, round(total * share)) for share in STAGE_SHARES[:2]]
        return (s[0], s[1], max(1, total - sum(s)))

    def screen(self, model, data, corpus: list[Item], cfg) -> Screening:
        recs = released_scores(model, data.images, corpus)
        audit = [{k: r[k] for k in ("itc_whole", "itc_without", "itm_whole", "itm_without", "passed")} for r in recs]
        return Screening([list(r["flag"]) for r in recs], audit, {"threshold": None, "weights": None})

    def reconstruct(self, model, images, items: list[Item], screening: Screening, cfg) -> list[Item]:
        return released_reconstruct(model, images, items)


class Calibrated:
    name = "calibrated"

    def steps(self, total: int) -> tuple[int, int, int]:
        p1 = p2 = max(1, total // 5)  # 60/20/20
        return (max(1, total - p1 - p2), p1, p2)

    def screen(self, model, data, corpus: list[Item], cfg) -> Screening:
        feats_val = clause_features(model, data.images, data.heldout)
        screener = Screener.calibrate(data.heldout, feats_val, wrong_labels(data.heldout, data.facts),
                                      cfg.max_false_flags)
        feats = clause_features(model, data.images, corpus, screener.used())
        scores = screener.scores(corpus, feats, restandardise=cfg.max_false_flags is None)
        audit = [{"score": s, "itm_whole": f["itm_whole"], "itm_without": f["itm_without"],
                  "itc_without": f["itc_without"], "itm_gain": f["itm_gain"], "itc_gain": f["itc_gain"]}
                 for s, f in zip(scores, feats)]
        return Screening(screener.flag(scores), audit, {"threshold": screener.threshold, "weights": screener.weights},
                         (screener, feats, scores))

    def reconstruct(self, model, images, items: list[Item], screening: Screening, cfg) -> list[Item]:
        return calibrated_reconstruct(model, images, items, *screening.state, cfg.top_k, cfg.margin)


class NoScreening(Released):
    name = "none"

    def screen(self, model, data, corpus: list[Item], cfg) -> Screening:
        return Screening([[False] * len(it.clauses) for it in corpus], [{} for _ in corpus],
                         {"threshold": None, "weights": None})

    def reconstruct(self, model, images, items: list[Item], screening: Screening, cfg) -> list[Item]:
        return list(items)


STRATEGIES = {"released": Released(), "calibrated": Calibrated(), "none": NoScreening()}


def get_strategy(name: str):
    if name not in STRATEGIES:
        raise ValueError(f"unknown SCIO strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]
