"""SCIO (Self-Consistent Iterative Optimization): clause-level screening, proofreading and reconstruction.

A caption is split into clauses (one per dimension sentence, further split at semicolons), each with its
character and token span. Captions longer than the text window are packed into *views* of whole clauses
that fit it, so every clause is seen and scored in context. Screening scores the image against each view
whole and with each clause removed (ITC and ITM), by one of two named strategies (`strategies.py`,
`ScioConfig.strategy`): `released`, the authors' relative "closer to 1" rule that drops one clause per caption
(`released.py`), and `calibrated`, ours, a clause-feature score thresholded on held-out captions with planted
errors so as to bound the share of true clauses flagged. Proofreading
drops flagged clauses from the training text (so they are in no ITC/ITM/MLM target); reconstruction masks
the keyword span of a flagged clause and fills it by argmax (released) or lets the image-conditioned MLM
propose top-k fillers, rescores the candidate views and keeps the best when it beats the original by a margin
(calibrated). Rounds p0 (all text),
p1 (flagged clauses left out) and p2 (reconstructed text) each train, screen and reconstruct, and are logged.
"""

from .clauses import (
    Clause,
    Item,
    corpus_from_records,
    join_clauses,
    pack_views,
    split_clauses,
    token_spans,
    write_corpus,
)
from .reconstruction import propose, reconstruct
from .released import keyword_span, released_pick, released_reconstruct, released_scores
from .rounds import (
    ScioConfig,
    ScioData,
    default_steps,
    load_scio_data,
    pretrain_klip,
    run_rounds,
)
from .screening import (
    FEATURES,
    MIN_WEIGHT,
    SCORES,
    Screener,
    agreement,
    agreement_logits,
    clause_features,
    screen_scores,
    slot_positions,
    slot_surprise,
)
from .strategies import STRATEGIES, Screening, get_strategy

__all__ = [
    "FEATURES", "MIN_WEIGHT", "SCORES", "STRATEGIES", "Clause", "Item", "ScioConfig", "ScioData", "Screener",
    "Screening", "agreement", "agreement_logits", "get_strategy", "keyword_span", "released_pick",
    "released_reconstruct", "released_scores",
    "clause_features", "corpus_from_records", "default_steps", "join_clauses", "load_scio_data", "pack_views",
    "pretrain_klip", "propose", "reconstruct", "run_rounds", "screen_scores", "slot_positions",
    "slot_surprise", "split_clauses", "token_spans", "write_corpus",
]
