# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""The MiniMind language model: Qwen3-shaped decoder (GQA, q/k RMSNorm, RoPE, SwiGLU or MoE), tied embeddings.

MiniMind2 (mmv.generations) is the same decoder without the q/k norms, its MoE with shared experts.

Parameter names equal the reference `.pth` keys (and transformers' Qwen3), so state dicts load with strict=True.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmv.config import VLMConfig
from mmv.model.kv_cache import KVCache
from mmv.model.layers import DecodeLinear, FeedForward, RMSNorm
from mmv.model.moe import MoEFeedForward
from mmv.model.rope import apply_rope, rope_tables

# RoPE table rows built with the model; longer sequences grow them (all 32,768 positions of MiniMind take 24 MB)
ROPE_ROWS = 4096


@dataclass(frozen=True)
class AttentionContext:
    """What every block of one forward pass shares: the RoPE tables of its positions, the attention mask (None with
    `causal`: sdpa's own kernel) and the cache its keys and values are written to."""

    cos: torch.Tensor
    sin: torch.Tensor
    mask: torch.Tensor | None
    causal: bool
    cache: KVCache | None


class Attention(nn.Module):
    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        hidden = config.hidden_size
        self.q_proj = DecodeLinear(hidden, self.heads * self.head_dim, bias=False)
        self.k_proj = DecodeLinear(hidden, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = DecodeLinear(hidden, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = DecodeLinear(self.heads * self.head_dim, hidden, bias=False)
        # MiniMind2 had no q/k norm: Identity keeps its state dict free of the keys
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps) if config.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps) if config.qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, context: AttentionContext, layer: int) -> torch.Tensor:
        batch, length, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(batch, length, self.heads, self.head_dim))
        k = self.k_norm(self.k_proj(x).view(batch, length, self.kv_heads, self.head_dim))
        v = self.v_proj(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        # q and k rotate together: one set of RoPE kernels instead of two (decode runs 8 per token)
        qk = torch.cat([q, k], dim=2).transpose(1, 2)
        q, k = apply_rope(qk, context.cos, context.sin).split([self.heads, self.kv_heads], 1)
        if context.cache is not None:
            k, v = context.cache.write(layer, k, v)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=context.mask, is_causal=context.causal, enable_gqa=self.heads != self.kv_heads
        )
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class Block(nn.Module):
    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        self.self_attn = Attention(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = (
            MoEFeedForward(config) if config.use_moe else FeedForward(config.hidden_size, config.intermediate_size)
        )

    def forward(self, x: torch.Tensor, context: AttentionContext, layer: int) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), context, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    """Embeddings, decoder blocks and the final norm; `model.*` in the reference key layout."""

    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


def attention_mask_for(
    length: int, start: int, key_padding: torch.Tensor | None, segment_ids: torch.Tensor | None, device: torch.device
) -> tuple[torch.Tensor | None, bool]:
    """Return (boolean mask [B,1,T,S] or None, is_causal) for `length` new tokens after `start` cached ones.

    The fast path (no tensor, sdpa's own causal kernel) covers unpadded prefill and single-token decode.
    """
    if key_padding is None and segment_ids is None:
        if start == 0:
            return None, length > 1
        if length == 1:
            return None, False
    total = start + length
    query_pos = torch.arange(start, total, device=device)[:, None]
    key_pos = torch.arange(total, device=device)[None, :]
    allowed = (key_pos <= query_pos)[None, None]
    if segment_ids is not None:
        allowed = allowed & (segment_ids[:, None, :, None] == segment_ids[:, None, None, :])
    if key_padding is not None:
        allowed = allowed & key_padding[:, None, None, :total].bool()
        # a padded query row would otherwise see nothing and turn into NaN
        allowed = allowed | (key_pos == query_pos)[None, None]
    return allowed, False


class MiniMindLM(nn.Module):
    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        self.lm_head = DecodeLinear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        cos, sin = self.rope_rows(min(config.max_position_embeddings, ROPE_ROWS))
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def rope_rows(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        return rope_tables(c.head_dim, c.max_position_embeddings, c.rope_theta, c.rope_scaling, rows=rows)

    def cover_positions(self, end: int) -> None:
        """Grow the RoPE tables (at least doubling, at most to max_position_embeddings) to hold positions < end."""
        have, limit = self.rope_cos.shape[0], self.config.max_position_embeddings
        if end <= have or have >= limit:
            return
        cos, sin = self.rope_rows(min(max(end, 2 * have), limit))
        like = self.rope_cos
        self.rope_cos, self.rope_sin = cos.to(like.device, like.dtype), sin.to(like.device, like.dtype)

    def rope_for(
        self, position_ids: torch.Tensor | None, start: int, length: int, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # position ids never pass the sequence's length (left padding and packing count from 0)
        self.cover_positions(start + length)
        if position_ids is None:
            cos, sin = (
                self.rope_cos[start : start + length][None, None],
                self.rope_sin[start : start + length][None, None],
            )
        else:
            cos, sin = self.rope_cos[position_ids][:, None], self.rope_sin[position_ids][:, None]
        return cos.to(dtype), sin.to(dtype)

    def decode(
        self,
        hidden: torch.Tensor,
        *,
        position_ids: torch.Tensor | None = None,
        key_padding: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the blocks over input embeddings [B,T,H]; return (logits, summed MoE aux loss)."""
        start = cache.length if cache is not None else 0
        length = hidden.shape[1]
        cos, sin = self.rope_for(position_ids, start, length, hidden.dtype)
        mask, causal = attention_mask_for(length, start, key_padding, segment_ids, hidden.device)
        context = AttentionContext(cos, sin, mask, causal, cache)
        for index, block in enumerate(self.model.layers):
            hidden = block(hidden, context, index)
        if cache is not None:
            cache.advance(length)
        hidden = self.model.norm(hidden[:, -1:] if last_only else hidden)
        aux = sum(b.mlp.aux_loss for b in self.model.layers) if self.config.use_moe else hidden.new_zeros(())
        return self.lm_head(hidden), aux

    def new_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> KVCache:
        c = self.config
        return KVCache(c.num_hidden_layers, batch, c.num_key_value_heads, max_len, c.head_dim, dtype, device)
