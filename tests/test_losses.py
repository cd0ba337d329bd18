"""The pretraining losses on tiny hand-made tensors: ITC values, hard negatives, knowledge-slot masking."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from klip_lib.losses import (
    IGNORE_INDEX,
    itc_loss,
    itm_loss,
    knowledge_token_mask,
    mask_tokens,
    mlm_loss,
    sample_hard_negatives,
)
from klip_lib.model import KlipConfig, load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(KlipConfig())


def _itc(image, text, temp=1.0, alpha=0.0, ids=None):
    ids = torch.arange(len(image)) if ids is None else ids
    return itc_loss(image, text, image, text, ids, ids, temp, alpha, image, text)


def test_itc_equals_hand_computed_value_on_3x3():
    eye = torch.eye(3)
    # similarity matrix I / temp: every row is -log(e^(1/t) / (e^(1/t) + 2))
    assert float(_itc(eye, eye, temp=1.0)["itc"]) == pytest.approx(math.log(1 + 2 / math.e), abs=1e-6)
    assert float(_itc(eye, eye, temp=0.5)["itc"]) == pytest.approx(math.log(1 + 2 * math.exp(-2)), abs=1e-6)
    # text 0 points half way between images 0 and 1
    s = 1 / math.sqrt(2)
    text = torch.tensor([[s, s, 0.0], [0, 1, 0], [0, 0, 1]])
    i2t = [  # image rows against texts: (s, 0, 0), (s, 1, 0), (0, 0, 1)
        -math.log(math.exp(s) / (math.exp(s) + 2)),
        -math.log(math.e / (math.exp(s) + math.e + 1)),
        -math.log(math.e / (math.e + 2)),
    ]
    t2i = [  # text rows against images: (s, s, 0), (0, 1, 0), (0, 0, 1)
        -math.log(math.exp(s) / (2 * math.exp(s) + 1)),
        -math.log(math.e / (math.e + 2)),
        -math.log(math.e / (math.e + 2)),
    ]
    out = _itc(eye, text)
    assert float(out["itc_i2t"]) == pytest.approx(sum(i2t) / 3, abs=1e-6)
    assert float(out["itc_t2i"]) == pytest.approx(sum(t2i) / 3, abs=1e-6)
    assert float(out["itc"]) == pytest.approx((sum(i2t) + sum(t2i)) / 6, abs=1e-6)


def test_itc_full_distillation_is_the_entropy_of_the_momentum_softmax():
    g = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    text = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    p = F.softmax(image @ text.T / 0.5, dim=1)
    entropy = float(-(p * p.log()).sum(1).mean())
    assert float(_itc(image, text, temp=0.5, alpha=1.0)["itc_i2t"]) == pytest.approx(entropy, abs=1e-5)


def test_aligned_batch_has_lower_itc_than_shuffled():
    g = torch.Generator().manual_seed(1)
    image = F.normalize(torch.randn(8, 16, generator=g), dim=1)
    text = F.normalize(image + 0.1 * torch.randn(8, 16, generator=g), dim=1)
    aligned = float(_itc(image, text, temp=0.07)["itc"])
    shuffled = float(_itc(image, text[torch.roll(torch.arange(8), 1)], temp=0.07)["itc"])
    assert aligned < 0.1 < 5.0 < shuffled


def test_itc_counts_bank_entries_of_the_same_id_as_positives():
    eye = torch.eye(3)
    bank = torch.cat([eye, eye[:1]])  # a queued copy of pair 0
    ids = torch.arange(3)
    out = itc_loss(eye, eye, bank, bank, ids, torch.tensor([0, 1, 2, 0]), 1.0)
    # row 0 has two positives, each with target 1/2; rows 1 and 2 see one more negative
    row0 = -math.log(math.e / (2 * math.e + 2))
    row12 = -math.log(math.e / (math.e + 3))
    assert float(out["itc_i2t"]) == pytest.approx((row0 + 2 * row12) / 3, abs=1e-6)


def test_hard_negatives_never_come_from_the_same_scene():
    ids = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 4, 4])
    same = ids[:, None] == ids[None, :]
    sim = torch.where(same, 10.0, torch.randn(12, 12))  # same-scene columns would win every draw if allowed
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        index, has_negative = sample_hard_negatives(sim, ids, torch.rand(12, 12, generator=g))
        assert bool(has_negative.all())
        assert not bool((ids[index] == ids).any())


def test_hard_negatives_follow_the_similarity_and_flag_rows_without_candidates():
    ids = torch.tensor([0, 1, 2, 2])
    sim = torch.tensor([[0.0, 8.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0] * 4, [0.0] * 4])
    g = torch.Generator().manual_seed(0)
    picks = torch.stack([sample_hard_negatives(sim, ids, torch.rand(4, 4, generator=g))[0] for _ in range(100)])
    assert float((picks[:, 0] == 1).float().mean()) > 0.95  # softmax weight of column 1 is e^8 / (e^8 + 2)
    _, has_negative = sample_hard_negatives(sim, torch.zeros(4, dtype=torch.long), torch.rand(4, 4, generator=g))
    assert not bool(has_negative.any())


def test_hard_negatives_are_drawn_with_the_softmax_frequencies():
    sim = torch.tensor([[0.0, 1.0, 2.0, 0.5]])
    ids = torch.tensor([0, 1, 2, 3])
    g = torch.Generator().manual_seed(0)
    picks = torch.stack([sample_hard_negatives(sim.expand(4, 4), ids, torch.rand(4, 4, generator=g))[0][0]
                         for _ in range(4000)])
    expected = torch.softmax(torch.tensor([1.0, 2.0, 0.5]), 0)  # column 0 is the row's own id: never drawn
    observed = torch.stack([(picks == c).float().mean() for c in (1, 2, 3)])
    assert not bool((picks == 0).any())
    torch.testing.assert_close(observed, expected, atol=0.03, rtol=0)


def test_itm_and_mlm_losses_on_known_logits():
    assert float(itm_loss(torch.zeros(4, 2), torch.tensor([1, 0, 0, 1]))["itm"]) == pytest.approx(math.log(2))
    logits = torch.zeros(2, 3, 10)
    labels = torch.full((2, 3), IGNORE_INDEX)
    labels[0, 1], labels[1, 2] = 4, 7
    logits[0, 1, 4] = 100.0  # one confident hit, one uniform guess
    out = mlm_loss(logits, labels)
    assert float(out["mlm"]) == pytest.approx(math.log(10) / 2, abs=1e-4)
    assert float(out["mlm_acc"]) == pytest.approx(0.5)


def test_knowledge_slots_are_numbers_targets_directions_and_land_cover(tokenizer):
    table = knowledge_token_mask(tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    for word in "ship ships tanker aircraft 152 ##5 north top left farmland water".split():
        assert bool(table[ids(word)]), word
    for word in "the with - , is [CLS]".split():
        assert not bool(table[ids(word)]), word


def test_mask_tokens_masks_knowledge_slots_at_the_configured_rate(tokenizer):
    text = "3 cargo ships of 152 m lie in the top-right of the port, near farmland and a river to the north"
    batch = tokenizer([text] * 200, return_tensors="pt")
    ids = batch["input_ids"]
    g = torch.Generator().manual_seed(0)
    masked, labels = mask_tokens(ids, tokenizer, knowledge_ratio=0.6, random_ratio=0.1, generator=g)
    selected = labels != IGNORE_INDEX
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    knowledge = knowledge_token_mask(tokenizer)[ids] & ~special
    other = ~knowledge & ~special
    assert 0.55 < float(selected[knowledge].float().mean()) < 0.65
    assert 0.07 < float(selected[other].float().mean()) < 0.13
    assert not bool(selected[special].any())
    assert torch.equal(labels[selected], ids[selected])
    replaced = (masked[selected] == tokenizer.mask_token_id).float().mean()
    kept = (masked[selected] == ids[selected]).float().mean()
    assert 0.75 < float(replaced) < 0.85 and 0.05 < float(kept) < 0.15
    assert torch.equal(masked[~selected], ids[~selected])


def test_itc_with_invalid_bank_entries_equals_the_bank_without_them():
    g = torch.Generator().manual_seed(2)
    image = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    text = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    queue = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    ids, queue_ids = torch.arange(4), torch.tensor([0, 5, 6, 7, -1, -1])
    valid = torch.tensor([True] * 4 + [True, True, True, False, False, False])
    full = itc_loss(image, text, torch.cat([image, queue]), torch.cat([text, queue]), ids,
                    torch.cat([ids, queue_ids]), 0.1, 0.4, image, text, valid)
    cut = itc_loss(image, text, torch.cat([image, queue[:3]]), torch.cat([text, queue[:3]]), ids,
                   torch.cat([ids, queue_ids[:3]]), 0.1, 0.4, image, text)
    for name in ("itc", "itc_i2t", "itc_t2i"):
        torch.testing.assert_close(full[name], cut[name])


def test_itm_weights_leave_rows_out():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0], [3.0, 0.0], [0.5, 0.5]])
    labels = torch.tensor([1, 0, 0, 1])
    weighted = itm_loss(logits, labels, torch.tensor([1.0, 1.0, 0.0, 1.0]))
    kept = itm_loss(logits[[0, 1, 3]], labels[[0, 1, 3]])
    torch.testing.assert_close(weighted["itm"], kept["itm"])
    torch.testing.assert_close(weighted["itm_acc"], kept["itm_acc"])
