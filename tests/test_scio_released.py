"""The released SCIO strategy's rules pinned on tiny hand-made cases: leave-one-clause-out order, "closer to 1",
the one kept variant, the drop-the-last fallback, full masking of the keyword span and its argmax filling."""

from __future__ import annotations

import numpy as np
import torch
from klip_tiny import tiny_model
from test_scio import _item

from klip_lib.scio import keyword_span, released, released_pick, released_reconstruct, released_scores


def test_a_variant_passes_only_when_itc_and_itm_match_come_closer_to_one_and_non_match_moves_away():
    whole_itc, whole_itm = 3.0, (0.5, 2.0)  # ITC logit 2 from 1; ITM non-match 0.5 from 1, match 1 from 1
    itc = [2.5, 0.0, 2.9, 1.5]
    itm = [[0.3, 1.5],  # ITC 1.5 from 1, match 0.5, non-match 0.7: passes
           [0.2, 1.2],  # ITC 1 from 1 (below 1 counts: closer, not higher): passes
           [0.5, 1.5],  # non-match exactly as far from 1 as the whole's, not further: fails
           [0.3, 2.5]]  # match 1.5 from 1, further than the whole's 1: fails
    drop, passed = released_pick(whole_itc, whole_itm, itc, itm)
    assert passed == [True, True, False, False]
    assert drop == 1  # of the passing variants the one whose ITC logit is closest to 1


def test_closer_to_one_is_not_higher_agreement():
    # removing clause 0 raises the ITC logit from 0.5 to 3 (more agreement, but further from 1): fails;
    # removing clause 1 lowers it to 0.8 (closer to 1): passes and is dropped
    drop, passed = released_pick(0.5, (3.0, 0.0), [3.0, 0.8], [[4.0, 0.5], [4.0, 0.5]])
    assert passed == [False, True] and drop == 1


def test_when_no_variant_passes_the_last_clause_is_dropped():
    drop, passed = released_pick(1.0, (5.0, 1.0), [2.0, 3.0, 4.0], [[5.0, 1.0]] * 3)
    assert passed == [False, False, False] and drop == 2


def test_tied_closeness_goes_to_the_earlier_clause():
    drop, _ = released_pick(5.0, (0.0, 3.0), [2.0, 0.0, 2.0], [[-1.0, 1.5]] * 3)
    assert drop == 0  # clauses 0, 1, 2 all 1 from 1


def test_leave_one_out_scores_the_whole_view_then_each_clause_left_out_in_order(monkeypatch):
    item = _item()
    n = len(item.clauses)
    seen = {}

    def fake(model, images, rows, texts, batch_size=128):
        seen["texts"] = list(texts)
        itc = np.array([2.0] + [3.0] * n)  # cosine; / temperature 2 -> logit 1.0 whole, 1.5 each variant
        itm = np.array([[0.0, 0.0]] + [[0.0, 0.0]] * n)
        itc[1 + 3] = 1.8  # leaving clause 3 out: logit 0.9, 0.1 from 1 (the whole view is at 1 exactly)
        return itc, itm, 2.0

    monkeypatch.setattr(released, "agreement_logits", fake)
    rec = released_scores(None, None, [item])[0]
    texts = seen["texts"]
    assert texts[0] == item.text() and len(texts) == 1 + n
    for i in range(n):
        assert texts[1 + i] == item.text([j != i for j in range(n)])  # clause i left out, order kept
    assert np.allclose(rec["itc_whole"], 1.0) and np.allclose(rec["itc_without"], [1.5, 1.5, 1.5, 0.9, 1.5, 1.5])
    # the whole view's ITC logit is exactly 1: nothing comes closer, so the fallback drops the last clause
    assert list(rec["flag"]) == [False] * (n - 1) + [True]


def test_a_one_clause_view_is_not_screened(monkeypatch):
    item = _item()
    one = type(item)(item.tile_id, 0, item.clauses[:1], None, [None], [False])
    monkeypatch.setattr(released, "agreement_logits",
                        lambda m, i, rows, texts, batch_size=128: (np.ones(len(texts)), np.zeros((len(texts), 2)), 1.0))
    assert list(released_scores(None, None, [one])[0]["flag"]) == [False]


def test_reconstruction_masks_the_whole_keyword_span_and_fills_it_by_argmax(monkeypatch):
    model = tiny_model().eval()
    tok = model.tokenizer
    item = _item()
    index = 4  # "There are 3 ships in the tile"
    flagged = [i == index for i in range(len(item.clauses))]
    item.flagged = flagged
    enc, span = keyword_span(tok, item, index)
    assert tok.convert_ids_to_tokens([enc["input_ids"][p] for p in span]) == ["3", "ships"]
    jobs_seen = []
    fill = tok.convert_tokens_to_ids(["7", "tanks"])

    def fake_logits(model, images, jobs, batch_size=64):
        jobs_seen.extend(jobs)
        out = []
        for _, _, pos in jobs:
            logits = torch.zeros(len(pos), len(tok))
            logits[torch.arange(len(pos)), torch.tensor(fill)] = 1.0
            out.append(logits)
        return out

    monkeypatch.setattr(released, "masked_slot_logits", fake_logits)
    fixed = released_reconstruct(model, None, [item])[0]
    assert len(jobs_seen) == 1
    row, ids, pos = jobs_seen[0]
    original = torch.tensor(enc["input_ids"])
    assert pos == span and (ids[span] == tok.mask_token_id).all()  # every token of the span masked
    outside = torch.ones(len(ids), dtype=torch.bool)
    outside[span] = False
    assert torch.equal(ids[outside], original[outside])  # nothing else masked
    assert fixed.clauses[index].body == "There are 7 tanks in the tile"  # argmax at each position
    assert [c.body for i, c in enumerate(fixed.clauses) if i != index] == \
        [c.body for i, c in enumerate(item.clauses) if i != index]


def test_released_stages_are_equal_thirds_and_calibrated_keeps_60_20_20():
    from klip_lib.scio import default_steps

    assert default_steps(108) == (36, 36, 36)
    assert default_steps(100, "calibrated") == (60, 20, 20)
