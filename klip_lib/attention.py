"""BERT-style text and fusion blocks on `torch.nn.functional.scaled_dot_product_attention`.

Our own small modules instead of transformers' internal `BertLayer`/`BertAttention`, so that a newer transformers
release cannot break them; the parameter names are BERT's (`attention.self.query`, `attention.output.LayerNorm`,
`intermediate.dense`, `output.dense`, `embeddings.word_embeddings`, ...), so BERT/MiniLM checkpoints and our saved
models load unchanged. Post-LN as BERT; `config` is a transformers `BertConfig` (only its fields are read).
The key padding mask is always applied as a tensor (no Python branch on its values), so dynamo traces it whole.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def key_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Bool [B, 1, 1, L] for SDPA (True: attend) from a 0/1 attention mask [B, L]."""
    return attention_mask[:, None, None, :].bool()


class KVCache:
    """Keys and values of the tokens seen so far, per attention layer (`layer_idx`), for step-by-step generation;
    `context` holds the cross-attention keys and values of a fixed context (the image tokens), computed once."""

    def __init__(self):
        self.layers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.context: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}  # by cross-attention layer

    def update(self, key: torch.Tensor, value: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new tokens' keys and values [B, heads, n, d]; return all of them."""
        if index in self.layers:
            old_key, old_value = self.layers[index]
            key, value = torch.cat([old_key, key], 2), torch.cat([old_value, value], 2)
        self.layers[index] = (key, value)
        return key, value

    def reorder(self, rows: torch.Tensor, context: bool = False) -> None:
        """Keep rows `rows` of every layer (beam search: each beam continues from its source); with `context`
        also of the fixed-context keys and values (rows dropped; a beam moving within rows of one context need not)."""
        self.layers = {i: (k[rows], v[rows]) for i, (k, v) in self.layers.items()}
        if context:
            self.context = {i: (k[rows], v[rows]) for i, (k, v) in self.context.items()}


class SelfAttention(nn.Module):
    """Multi-head attention projections (`query`, `key`, `value`) and SDPA over `context` tokens."""

    def __init__(self, config):
        super().__init__()
        hidden = config.hidden_size
        if hidden % config.num_attention_heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of {config.num_attention_heads} heads")
        self.heads = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob
        self.layer_idx = 0  # this layer's slot in a KVCache (set by whoever generates with one)
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, h: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None,
                cache: KVCache | None = None) -> torch.Tensor:
        q = self._split(self.query(h))
        if cache is not None and context is not h:  # cross-attention to a fixed context: its keys/values once
            if self not in cache.context:
                cache.context[self] = (self._split(self.key(context)), self._split(self.value(context)))
            k, v = cache.context[self]
        else:
            k, v = self._split(self.key(context)), self._split(self.value(context))
            if cache is not None:
                k, v = cache.update(k, v, self.layer_idx)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).flatten(2)


class AddNorm(nn.Module):
    """`dense`, dropout, residual add and `LayerNorm` (BERT's SelfOutput and Output)."""

    def __init__(self, config, width: int):
        super().__init__()
        self.dense = nn.Linear(width, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    """Self- or cross-attention with its output projection and post-LN (BERT's BertAttention)."""

    def __init__(self, config):
        super().__init__()
        self.self = SelfAttention(config)
        self.output = AddNorm(config, config.hidden_size)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """Self-attention over `h` (with `cache`: also over the cached tokens), or cross-attention to `context`."""
        return self.output(self.self(h, h if context is None else context, mask, cache), h)


class Intermediate(nn.Module):
    """The first feed-forward projection and its GELU (BERT's BertIntermediate)."""

    def __init__(self, config):
        super().__init__()
        if config.hidden_act != "gelu":
            raise ValueError(f"hidden_act {config.hidden_act!r}: only 'gelu' (BERT's exact GELU) is supported")
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(h))


class Layer(nn.Module):
    """A BERT layer: self-attention, optional cross-attention to `context` tokens (ALBEF fusion), feed-forward."""

    def __init__(self, config, cross_attention: bool = False):
        super().__init__()
        self.attention = Attention(config)
        if cross_attention:
            self.crossattention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = AddNorm(config, config.intermediate_size)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None, context: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        h = self.attention(h, mask, cache=cache)
        if context is not None:
            h = self.crossattention(h, context=context, cache=cache)
        return self.output(self.intermediate(h), h)


class Embeddings(nn.Module):
    """Word, position and token-type embeddings, LayerNorm and dropout (BERT's BertEmbeddings, one segment)."""

    def __init__(self, config):
        super().__init__()
        hidden = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, hidden, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, hidden)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings [B, L, H]; positions 0..L-1 unless `position_ids` [B, L] are given."""
        if position_ids is None:
            positions = self.position_embeddings.weight[: input_ids.shape[1]]
        else:
            positions = self.position_embeddings(position_ids)
        h = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(h + positions))


class PredictionHeadTransform(nn.Module):
    """`dense`, GELU and `LayerNorm` before the tied vocabulary decoder (BERT's BertPredictionHeadTransform)."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(h)))
