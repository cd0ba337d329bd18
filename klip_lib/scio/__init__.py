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
    clause_features,
    screen_scores,
    slot_positions,
    slot_surprise,
)

__all__ = [
    "FEATURES", "MIN_WEIGHT", "SCORES", "Clause", "Item", "ScioConfig", "ScioData", "Screener", "agreement",
    "clause_features", "corpus_from_records", "default_steps", "join_clauses", "load_scio_data", "pack_views",
    "pretrain_klip", "propose", "reconstruct", "run_rounds", "screen_scores", "slot_positions",
    "slot_surprise", "split_clauses", "token_spans", "write_corpus",
]
