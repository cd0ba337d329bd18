"""The pretraining losses: ITC (batch + queue, momentum distillation), ITM (hard negatives), knowledge-slot MLM.

Each loss returns a dict of named tensors. Means are taken over the items of all ranks
(`klip_lib.dist.global_mean`), so a 2-process run gives the losses of one process with the combined batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import vocab
from .dist import global_mean

IGNORE_INDEX = -100  # label of tokens that are not predicted (torch's cross_entropy default)

# fmt: off
# Words that carry the knowledge a caption states; their word pieces are the "knowledge slots".
DIRECTION_WORDS: tuple[str, ...] = (
    "north", "south", "east", "west", "northeast", "northwest", "southeast", "southwest",
    "northern", "southern", "eastern", "western", "upper", "lower", "top", "bottom", "left", "right",
    "center", "centre", "central", "middle", "corner", "edge",
)
NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "dozen", "dozens", "hundred", "hundreds", "several", "single",
)
WATER_WORDS: tuple[str, ...] = ("river", "coast", "lake", "sea", "harbour", "harbor", "basin", "dock", "quay")
# fmt: on


def knowledge_words() -> tuple[str, ...]:
    """Numbers in words, target classes and types, directions and grid cells, land cover and terrain."""
    targets = list(vocab.TARGET_CLASSES) + list(vocab.SHIP_CLASSES) + list(vocab.AIRCRAFT_TYPES)
    targets += [t + "s" for t in targets]  # plurals: ships, tankers, storage tanks
    landcover = list(vocab.LANDCOVER_CLASSES) + list(vocab.TERRAIN_CLASSES) + list(WATER_WORDS)
    return tuple(targets + landcover + list(DIRECTION_WORDS) + list(vocab.GRID_CELLS) + list(NUMBER_WORDS))


_KNOWLEDGE_CACHE: dict[int, torch.Tensor] = {}


def knowledge_token_mask(tokenizer) -> torch.Tensor:
    """Bool [vocab]: True for word pieces of knowledge words and for numeric pieces ("152", "##5")."""
    key = id(tokenizer)
    if key not in _KNOWLEDGE_CACHE:
        table = torch.zeros(len(tokenizer), dtype=torch.bool)
        for word in knowledge_words():
            for piece in tokenizer.tokenize(word):
                if any(ch.isalnum() for ch in piece):  # the "-" of "top-left" is no knowledge
                    table[tokenizer.convert_tokens_to_ids(piece)] = True
        for token, index in tokenizer.get_vocab().items():
            if token.removeprefix("##").isdigit():
                table[index] = True
        _KNOWLEDGE_CACHE[key] = table
    return _KNOWLEDGE_CACHE[key]


def mask_tokens(
    input_ids: torch.Tensor,
    tokenizer,
    knowledge_ratio: float,
    random_ratio: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking that prefers knowledge slots: returns (masked input_ids, labels).

    Each knowledge-slot token is selected with probability `knowledge_ratio`, every other ordinary
    token with `random_ratio`; special and padding tokens never. Selected tokens become [MASK] (80%),
    a random token (10%) or stay (10%); labels hold the original id there and IGNORE_INDEX elsewhere.
    """
    device = input_ids.device
    ids = input_ids.cpu()
    is_knowledge = knowledge_token_mask(tokenizer)[ids.clamp(0, len(tokenizer) - 1)]
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    prob = torch.where(is_knowledge, knowledge_ratio, random_ratio).masked_fill(special, 0.0)
    selected = torch.rand(ids.shape, generator=generator) < prob
    labels = torch.where(selected, ids, IGNORE_INDEX)
    action = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(len(tokenizer), ids.shape, generator=generator)
    masked = torch.where(selected & (action < 0.8), tokenizer.mask_token_id, ids)
    masked = torch.where(selected & (action >= 0.8) & (action < 0.9), random_ids, masked)
    return masked.to(device), labels.to(device)


def itc_loss(
    image_feat: torch.Tensor,
    text_feat: torch.Tensor,
    image_bank: torch.Tensor,
    text_bank: torch.Tensor,
    ids: torch.Tensor,
    bank_ids: torch.Tensor,
    temp: torch.Tensor | float,
    alpha: float = 0.0,
    image_feat_m: torch.Tensor | None = None,
    text_feat_m: torch.Tensor | None = None,
    bank_valid: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Image-text contrastive loss of the local rows against a bank (gathered batch + queue), as ALBEF.

    Features are L2-normalised: `image_feat`/`text_feat` [B, D] online (with gradients), banks [N, D]
    momentum features. A bank entry whose id equals a row's id is a positive of that row (the row's own
    pair must be in the bank). With `alpha` > 0 the targets mix in the momentum model's softmax
    (`image_feat_m`/`text_feat_m`, momentum distillation). `bank_valid` (bool [N]) leaves out the entries
    where it is False (a queue's empty slots), as if they were not in the bank: fixed shapes, same loss.
    """
    if alpha > 0 and (image_feat_m is None or text_feat_m is None):
        raise ValueError("itc_loss: alpha > 0 needs the momentum features image_feat_m and text_feat_m")
    positives = ids[:, None] == bank_ids[None, :]
    if bank_valid is not None:
        positives = positives & bank_valid
    positives = positives.float()
    targets = positives / positives.sum(1, keepdim=True)

    def logits_of(feat, bank):  # an invalid entry gets the lowest logit: softmax weight exactly 0
        logits = feat.float() @ bank.float().T / temp
        return logits if bank_valid is None else logits.masked_fill(~bank_valid, torch.finfo(logits.dtype).min)

    losses = {}
    for name, feat, bank, feat_m in (
        ("itc_i2t", image_feat, text_bank, image_feat_m),
        ("itc_t2i", text_feat, image_bank, text_feat_m),
    ):
        logits = logits_of(feat, bank)
        soft = targets
        if alpha > 0:
            with torch.no_grad():
                soft = alpha * F.softmax(logits_of(feat_m, bank), dim=1) + (1 - alpha) * targets
        total = -(F.log_softmax(logits, dim=1) * soft).sum()
        losses[name] = global_mean(total, feat.shape[0])
    losses["itc"] = (losses["itc_i2t"] + losses["itc_t2i"]) / 2
    return losses


@torch.no_grad()
def sample_hard_negatives(
    sim: torch.Tensor, ids: torch.Tensor, uniform: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One negative column per row of `sim` [G, G], drawn with probability softmax(sim row), on sim's device.

    Gumbel-max: the column of the largest sim + Gumbel noise made from `uniform` [G, G] (values in [0, 1), e.g.
    `torch.rand`), which is a draw from softmax(sim row); fixed shapes, no host sync. Columns sharing the row's
    id (its own tile and every tile of the same scene) are never drawn.
    Returns (index [G], has_negative [G]); a row whose every column shares its id has no negative (index 0).
    """
    same = ids[:, None] == ids[None, :]
    tiny = torch.finfo(torch.float32).tiny
    gumbel = -torch.log(-torch.log(uniform.float().clamp(tiny, 1 - 1e-7)))
    scores = (sim.float() + gumbel).masked_fill(same, float("-inf"))
    return scores.argmax(1), ~same.all(1)


def itm_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Image-text matching: cross-entropy of [N, 2] logits against labels (1 match, 0 not); `weights` [N] (0 or 1)
    leave rows out (a hard negative that could not be drawn) while the shapes stay fixed."""
    weights = torch.ones_like(labels, dtype=torch.float32) if weights is None else weights.float()
    total = (F.cross_entropy(logits.float(), labels, reduction="none") * weights).sum()
    accuracy = ((logits.argmax(1) == labels).float() * weights).sum() / weights.sum().clamp_min(1)
    return {"itm": global_mean(total, weights.sum()), "itm_acc": accuracy.detach()}


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Masked language modelling: cross-entropy of logits [..., V] over the tokens whose label is not IGNORE_INDEX."""
    selected = labels != IGNORE_INDEX
    flat = logits.reshape(-1, logits.shape[-1]).float()
    total = F.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    hits = (logits.argmax(-1) == labels) & selected
    accuracy = hits.sum().float() / selected.sum().clamp_min(1)
    return {"mlm": global_mean(total, selected.sum()), "mlm_acc": accuracy.detach()}
