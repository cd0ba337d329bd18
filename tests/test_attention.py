"""Our BERT-style blocks (klip_lib.attention) against transformers' own BERT modules on the same weights.

The test may import transformers internals; the library must not (it builds its layers from klip_lib.attention).
"""

from __future__ import annotations

import ast
from pathlib import Path

import torch
from transformers import BertConfig, BertModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import BertEmbeddings, BertLayer

from klip_lib.attention import Embeddings, KVCache, Layer, key_padding_mask
from klip_lib.encoders import TextEncoder, minilm_path, text_checkpoint_state
from klip_lib.model import KlipConfig, KlipModel

ROOT = Path(__file__).resolve().parent.parent


def _config(**changes) -> BertConfig:
    values = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  is_decoder=True, add_cross_attention=True, attn_implementation="eager")
    return BertConfig(**{**values, **changes})


def _inputs(config: BertConfig):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 7, config.hidden_size, generator=g)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    image = torch.randn(3, 9, config.hidden_size, generator=g)
    return h, mask, image


def test_layers_match_transformers_bert_layer_on_the_same_weights():
    config = _config()
    h, mask, image = _inputs(config)
    theirs = BertLayer(config).eval()
    ours = Layer(config, cross_attention=True).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)  # same parameter names, nothing missing or extra
    additive = create_bidirectional_mask(config=config, inputs_embeds=h, attention_mask=mask)
    with torch.no_grad():
        expected = theirs(h, additive, encoder_hidden_states=image)
        got = ours(h, key_padding_mask(mask), image)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        # text-only layer: the same block without cross-attention
        text_only = BertLayer(_config(is_decoder=False, add_cross_attention=False)).eval()
        ours_text = Layer(config).eval()
        ours_text.load_state_dict(text_only.state_dict(), strict=True)
        torch.testing.assert_close(ours_text(h, key_padding_mask(mask)), text_only(h, additive), rtol=1e-5, atol=1e-5)


def test_embeddings_match_transformers_with_and_without_position_ids():
    config = _config()
    theirs, ours = BertEmbeddings(config).eval(), Embeddings(config).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ids = torch.randint(0, config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(1))
    positions = torch.tensor([[0, 0, 1, 2, 3, 4], [0, 1, 2, 0, 1, 2]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), theirs(input_ids=ids))
        torch.testing.assert_close(ours(ids, position_ids=positions), theirs(input_ids=ids, position_ids=positions))


def test_cached_generation_equals_the_whole_sequence_at_once():
    config = _config()
    torch.manual_seed(0)
    layer = Layer(config, cross_attention=True).eval()
    h, _, image = _inputs(config)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()[None, None]
    cache = KVCache()
    with torch.no_grad():
        whole = layer(h, causal, image)
        steps = [layer(h[:, t:t + 1], causal[:, :, t:t + 1, : t + 1], image, cache=cache) for t in range(7)]
    torch.testing.assert_close(torch.cat(steps, 1), whole, rtol=1e-5, atol=1e-5)


def test_minilm_loads_into_our_text_encoder_and_matches_transformers_bert_model():
    folder = minilm_path()
    bert = BertConfig.from_pretrained(str(folder), local_files_only=True)
    state = text_checkpoint_state(folder, bert.num_hidden_layers, allow_pickle=False)
    encoder = TextEncoder(bert, bert.num_hidden_layers).eval()
    own = {k.removeprefix("text_encoder."): v for k, v in state.items() if k.startswith("text_encoder.")}
    result = encoder.load_state_dict(own, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    reference = BertModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager").eval()
    ids = torch.tensor([[101, 1996, 3417, 2038, 1017, 6210, 102, 0, 0], [101, 2300, 1999, 1996, 2327, 2187, 2217, 2007, 102]])
    mask = (ids != 0).long()
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        got = encoder(ids, mask)
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], rtol=1e-4, atol=1e-4)


def test_klip_model_takes_every_minilm_tensor_it_has_a_place_for():
    torch.manual_seed(0)
    model = KlipModel(KlipConfig(text_init="minilm", fusion_layers=2, image_size=32, patch_size=8,
                                 image_encoder_kwargs={"depth": 1}, queue_size=0))
    state = text_checkpoint_state(minilm_path(), 4, allow_pickle=False)
    assert set(state) <= set(model.state_dict())  # nothing unexpected
    # what the checkpoint cannot cover: cross-attention, the fusion layers' image projection, the MLM head
    # (the sentence-embedding MiniLM has none)
    kinds = (".crossattention.", "fusion.image_proj.", "mlm_")
    assert all(any(kind in k for kind in kinds) for k in model.text_init_missing), model.text_init_missing
    assert any(".crossattention." in k for k in model.text_init_missing)


def test_library_imports_no_transformers_internals():
    allowed = {"transformers"}  # the public top level (BertConfig, AutoTokenizer, ...)
    for path in (ROOT / "klip_lib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("transformers"):
                assert node.module in allowed, f"{path.relative_to(ROOT)} imports {node.module}"
