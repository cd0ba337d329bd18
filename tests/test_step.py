"""The fixed-shape training step: the same losses as the data-dependent step it replaced, no graph breaks, and
compiled steps that match eager ones."""

from __future__ import annotations

import copy

import pytest
import torch
from klip_tiny import tiny_batch, tiny_model

from klip_lib.losses import IGNORE_INDEX, itc_loss, itm_loss, mlm_loss, sample_hard_negatives
from klip_lib.model import OBJECTIVES, mlm_slots


def reference_step(model, images, input_ids, attention_mask, scene_ids, alpha, noise, masked_ids, labels):
    """The step as it was before (fd4c2af, one process): the queue cut at its fill level, hard-negative rows
    dropped where there is no candidate, the MLM head on the gathered masked tokens; negatives drawn from `noise`."""
    image_embeds, image_feat = model.image_tokens(images)
    text_embeds, text_feat = model.text_tokens(input_ids, attention_mask)
    out = {}
    with torch.no_grad():
        if model.training:
            m = model.config.momentum
            for online, momentum in model._momentum_pairs():
                for p, p_m in zip(online.parameters(), momentum.parameters(), strict=True):
                    p_m.mul_(m).add_(p.detach(), alpha=1 - m)
        _, image_feat_m = model.image_tokens(images, momentum=True)
        _, text_feat_m = model.text_tokens(input_ids, attention_mask, momentum=True)
        filled = int(model.queue_filled)
        image_bank = torch.cat([image_feat_m.float(), model.image_queue[:filled]])
        text_bank = torch.cat([text_feat_m.float(), model.text_queue[:filled]])
        bank_ids = torch.cat([scene_ids, model.id_queue[:filled]])
    out.update(itc_loss(image_feat, text_feat, image_bank, text_bank, scene_ids, bank_ids, model.temp, alpha,
                        image_feat_m, text_feat_m))
    if model.training:
        model._enqueue(image_feat_m, text_feat_m, scene_ids)
    with torch.no_grad():
        sim = image_feat.float() @ text_feat.float().T / model.temp
        neg_text, has_text = sample_hard_negatives(sim, scene_ids, noise[0])
        neg_image, has_image = sample_hard_negatives(sim.T, scene_ids, noise[1])
    neg_text, neg_image = neg_text[has_text], neg_image[has_image]
    texts = torch.cat([text_embeds, text_embeds[neg_text], text_embeds[has_image]])
    masks = torch.cat([attention_mask, attention_mask[neg_text], attention_mask[has_image]])
    images_itm = torch.cat([image_embeds, image_embeds[has_text], image_embeds[neg_image]])
    itm_labels = torch.zeros(len(texts), dtype=torch.long)
    itm_labels[: len(scene_ids)] = 1
    out.update(itm_loss(model.itm_head(model.fusion(texts, masks, images_itm)[:, 0]), itm_labels))
    fused = model.fusion(model.text_tokens(masked_ids, attention_mask)[0], attention_mask, image_embeds)
    selected = labels != IGNORE_INDEX
    out.update(mlm_loss(model._mlm_head(fused[selected]), labels[selected]))
    out["loss"] = out["itc"] + out["itm"] + out["mlm"]
    return out


def _step_args(model, batch, step: int):
    noise = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(step))
    masked, labels = batch["mlm_inputs"]
    return (batch["images"], batch["input_ids"], batch["attention_mask"], batch["scene_ids"], 0.4, noise, masked,
            labels)


@pytest.mark.parametrize("scenes", [None, ["a", "a", "b", "b", "c", "c", "c", "d"], ["one"] * 8])
def test_fixed_shape_step_gives_the_losses_and_gradients_of_the_data_dependent_step(scenes):
    new = tiny_model().train()
    old = copy.deepcopy(new)
    batch = tiny_batch(new, scenes=scenes)
    for step in range(3):  # queue of 16, batches of 8: empty, half full, full
        images, ids, mask, scene_ids, alpha, noise, masked, labels = _step_args(new, batch, step)
        got = new.step(images, ids, mask, scene_ids, OBJECTIVES, alpha, noise, masked, labels, mlm_slots(labels))
        expected = reference_step(old, images, ids, mask, scene_ids, alpha, noise, masked, labels)
        for name, value in expected.items():
            torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6, msg=name)
        got["loss"].backward()
        expected["loss"].backward()
        for (name, p), q in zip(new.named_parameters(), old.parameters(), strict=True):
            if p.grad is not None or q.grad is not None:
                error = float((p.grad - q.grad).norm())
                assert error <= 1e-4 * float(q.grad.norm()) + 1e-7, (name, error, float(q.grad.norm()))
        for model in (new, old):
            with torch.no_grad():
                for p in model.parameters():
                    if p.grad is not None:
                        p.sub_(0.1 * p.grad)
                        p.grad = None
        torch.testing.assert_close(new.image_queue, old.image_queue)
        assert torch.equal(new.queue_filled, old.queue_filled) and torch.equal(new.id_queue, old.id_queue)


def test_mlm_slots_cover_every_masked_token_in_a_few_shapes():
    labels = torch.full((4, 32), IGNORE_INDEX)
    assert mlm_slots(labels) == 0
    labels[0, :3] = 5
    assert mlm_slots(labels) == 8  # buckets of 128 / 16
    labels[:, :20] = 5
    assert mlm_slots(labels) == 80
    labels[:] = 5
    assert mlm_slots(labels) == 128


def _training_step_inputs(model, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(2, 8, 8, generator=g)
    masked, labels = batch["mlm_inputs"]
    return (batch["images"], batch["input_ids"], batch["attention_mask"], batch["scene_ids"], OBJECTIVES, 0.4,
            noise, masked, labels, mlm_slots(labels))


def test_training_step_traces_without_graph_breaks():
    model = tiny_model().train()
    batch = tiny_batch(model)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model.step)(*_training_step_inputs(model, batch))
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_two_compiled_steps_match_two_eager_steps(backend):
    """aot_eager traces forward and backward as the real compile does; inductor also generates the kernels (C++
    on CPU: minutes on a loaded 2-core machine, hence slow)."""
    eager = tiny_model().train()
    compiled = copy.deepcopy(eager)
    compiled.compile_step(backend=backend)
    torch._dynamo.reset()
    batch = tiny_batch(eager)
    results = []
    for model in (eager, compiled):
        # SGD: AdamW turns the rounding noise of gradients that are zero in exact arithmetic (the ViT's key bias)
        # into full-size updates, which compiled and eager kernels round differently
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        losses = []
        for step in range(2):
            out = model(batch["images"], batch["input_ids"], batch["attention_mask"], batch["scene_ids"],
                        generator=torch.Generator().manual_seed(step), mlm_inputs=batch["mlm_inputs"])
            out["loss"].backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append({k: v.detach() for k, v in out.items()})
        results.append((losses, model.state_dict()))
    (eager_losses, eager_state), (compiled_losses, compiled_state) = results
    for a, b in zip(eager_losses, compiled_losses, strict=True):
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    for name, value in eager_state.items():
        torch.testing.assert_close(compiled_state[name], value, rtol=1e-4, atol=1e-5, msg=name)
