"""The decode step of one sequence on CPU, with as few operator calls per layer as the math allows.

At batch 1 a decode step is 57 matrix-vector products that must stream every weight, plus the small operators
around them. Through the modules (`Block.forward`) a layer makes ~250 aten operator calls (counting those inside
composites such as `linear`, `rms_norm` and `scaled_dot_product_attention`), each a few microseconds once the
products have pushed the interpreter's state out of L2: a quarter of the step. This path computes the same function
with ~66 per layer:

- buffers allocated once and written with `out=`; residual adds fused into the output products (`addmv_`);
- each hidden RMSNorm's scale is a Python float (one dot product) passed as the `alpha` of the products after it;
- the q/k norm weights carry the norm's sqrt(head_dim) and, for q, the attention scale 1/sqrt(head_dim);
- RoPE's half swap is one `flip` over a [rows, 2, head_dim/2] view.

A mixture-of-experts layer routes as `MoEFeedForward` does and runs only the chosen experts, each added into the
residual with its routing weight as `alpha`. It reads the model's parameters in place (no copies) and shares the KV
cache with the module path: the prefill fills the cache through the modules, and this step appends to it. Float32
on CPU only; batches, half precision and other devices keep the module path.

Every matrix-vector product goes through a `Product`: a float32 `nn.Linear` is wrapped to run `addmv` on its
weight; a quantized layer (`mmv.quant`) is a `Product` itself and runs its own kernel, so the int8 step is this
same step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from mmv.model.kv_cache import KVCache
from mmv.model.llm import Block, MiniMindLM
from mmv.model.moe import MoEFeedForward


class Product(Protocol):
    """One weight matrix W of the step, multiplied by a vector."""

    def write(self, out: torch.Tensor, vector: torch.Tensor, alpha: float) -> None:
        """out = alpha * W @ vector (out's old contents ignored)."""

    def add_to(self, out: torch.Tensor, vector: torch.Tensor, alpha: float) -> None:
        """out += alpha * W @ vector."""


class _Float32Product:
    __slots__ = ("weight",)

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight

    def write(self, out: torch.Tensor, vector: torch.Tensor, alpha: float) -> None:
        # beta=0: the output buffer is only a destination, its old contents are ignored
        torch.addmv(out, self.weight, vector, beta=0, alpha=alpha, out=out)

    def add_to(self, out: torch.Tensor, vector: torch.Tensor, alpha: float) -> None:
        out.addmv_(self.weight, vector, alpha=alpha)


def product_of(layer: nn.Module) -> Product:
    """A quantized layer (`mmv.quant`) is a `Product` itself; any other (`nn.Linear`, or the server's
    `PackedLinear`, whose single rows stay on the float weight) has its float32 weight read in place."""
    return layer if hasattr(layer, "write") else _Float32Product(layer.weight)


@dataclass
class _LayerWeights:
    input_norm: torch.Tensor
    q: Product
    k: Product
    v: Product
    qk_norm: torch.Tensor  # [heads + kv_heads, head_dim]: q rows, then k rows, scales folded in
    o: Product
    post_norm: torch.Tensor
    experts: list[tuple[Product, Product, Product]]  # (gate, up, down); a dense MLP is one expert
    router: Product | None  # MoE only: [num_experts, hidden]
    keys: torch.Tensor  # the cache's [kv_heads, max_len, head_dim] for this layer
    values: torch.Tensor


class FastDecoder:
    """Decodes one token at a time for a single unpadded sequence whose prefix is already in `cache`."""

    @staticmethod
    def supports(model: MiniMindLM, batch: int) -> bool:
        # the embedding stays float32 in a quantized model too: it tells the model's dtype and device
        weight, config = model.model.embed_tokens.weight, model.config
        return (
            batch == 1
            and config.qk_norm  # MiniMind2's design (mmv.generations) keeps the module path
            and config.num_shared_experts == 0
            and not config.top1_router_weight
            and weight.device.type == "cpu"
            and weight.dtype == torch.float32
            and model.rope_cos.dtype == torch.float32
        )

    def __init__(self, model: MiniMindLM, cache: KVCache) -> None:
        config = model.config
        self.cache = cache
        self.eps = config.rms_norm_eps
        self.heads, self.kv_heads, self.head_dim = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        )
        model.cover_positions(cache.max_len)
        self.rope_cos, self.rope_sin = model.rope_cos, model.rope_sin
        self.embeddings = model.model.embed_tokens.weight
        self.final_norm = model.model.norm.weight
        self.lm_head, self.vocab = product_of(model.lm_head), config.vocab_size
        self.top_k, self.norm_topk_prob = config.num_experts_per_tok, config.norm_topk_prob
        self.layers = [self._weights_of(block, layer) for layer, block in enumerate(model.model.layers)]
        self._allocate(
            config.hidden_size,
            config.moe_intermediate_size if config.use_moe else config.intermediate_size,
            config.num_experts,
        )

    def _weights_of(self, block: Block, layer: int) -> _LayerWeights:
        attention, mlp = block.self_attn, block.mlp
        ffns = mlp.experts if isinstance(mlp, MoEFeedForward) else [mlp]
        root = math.sqrt(self.head_dim)
        # q: sqrt(d) from the norm times 1/sqrt(d) from attention = the plain weight
        qk_norm = torch.cat(
            [
                attention.q_norm.weight.detach().expand(self.heads, -1),
                (attention.k_norm.weight.detach() * root).expand(self.kv_heads, -1),
            ]
        )
        return _LayerWeights(
            input_norm=block.input_layernorm.weight,
            q=product_of(attention.q_proj),
            k=product_of(attention.k_proj),
            v=product_of(attention.v_proj),
            qk_norm=qk_norm,
            o=product_of(attention.o_proj),
            post_norm=block.post_attention_layernorm.weight,
            experts=[(product_of(f.gate_proj), product_of(f.up_proj), product_of(f.down_proj)) for f in ffns],
            router=product_of(mlp.gate) if isinstance(mlp, MoEFeedForward) else None,
            keys=self.cache.keys[layer][0],
            values=self.cache.values[layer][0],
        )

    def _allocate(self, hidden: int, intermediate: int, num_experts: int) -> None:
        rows, head_dim = self.heads + self.kv_heads, self.head_dim
        self.x = torch.empty(hidden)
        self.normed = torch.empty(hidden)
        self.qk = torch.empty(rows * head_dim)
        self.q, self.k = self.qk.split([self.heads * head_dim, self.kv_heads * head_dim])
        self.qk_rows = self.qk.view(rows, head_dim)
        self.qk_halves = self.qk.view(rows, 2, head_dim // 2)
        self.sum_squares = torch.empty(rows, 1)
        self.rotated = torch.empty(rows, head_dim)
        group = self.heads // self.kv_heads
        self.rotated_q = self.rotated[: self.heads].view(self.kv_heads, group, head_dim)
        self.rotated_k = self.rotated[self.heads :]
        self.v = torch.empty(self.kv_heads * head_dim)
        self.v_rows = self.v.view(self.kv_heads, head_dim)
        self.attended = torch.empty(self.heads * head_dim)
        self.attended_groups = self.attended.view(self.kv_heads, group, head_dim)
        self.gate = torch.empty(intermediate)
        self.up = torch.empty(intermediate)
        self.router_logits = torch.empty(num_experts)

    def _rms_scale(self) -> float:
        """1 / RMS(x), computed once as a float so that the products after the norm can apply it for free."""
        x = self.x
        return 1.0 / math.sqrt(float(torch.dot(x, x)) / x.shape[0] + self.eps)

    @torch.inference_mode()
    def __call__(self, token: int) -> torch.Tensor:
        """Append `token` at the cache's next position; return float32 logits [1, vocab] for the token after it."""
        position = self.cache.length
        self.cache.end_after(1)
        self.x.copy_(self.embeddings[token])
        cos, sin = self.rope_cos[position], self.rope_sin[position]
        for layer in self.layers:
            self._attention(layer, position, cos, sin)
            self._feed_forward(layer)
        self.cache.advance(1)
        torch.mul(self.x, self.final_norm, out=self.normed)
        logits = torch.empty(self.vocab)  # new each step: the caller keeps it
        self.lm_head.write(logits, self.normed, self._rms_scale())
        return logits[None]

    def _attention(self, w: _LayerWeights, position: int, cos: torch.Tensor, sin: torch.Tensor) -> None:
        scale = self._rms_scale()
        torch.mul(self.x, w.input_norm, out=self.normed)
        w.q.write(self.q, self.normed, scale)
        w.k.write(self.k, self.normed, scale)
        w.v.write(self.v, self.normed, scale)
        torch.sum(self.qk_rows * self.qk_rows, -1, keepdim=True, out=self.sum_squares)
        self.sum_squares.add_(self.head_dim * self.eps).rsqrt_()
        self.qk_rows.mul_(self.sum_squares).mul_(w.qk_norm)
        torch.mul(self.qk_rows, cos, out=self.rotated)
        self.rotated.addcmul_(self.qk_halves.flip(1).view_as(self.rotated), sin)
        w.keys.select(1, position).copy_(self.rotated_k)
        w.values.select(1, position).copy_(self.v_rows)
        length = position + 1
        scores = torch.bmm(self.rotated_q, w.keys[:, :length].transpose(1, 2)).softmax(-1)
        torch.bmm(scores, w.values[:, :length], out=self.attended_groups)
        w.o.add_to(self.x, self.attended, 1.0)

    def _feed_forward(self, w: _LayerWeights) -> None:
        scale = self._rms_scale()
        torch.mul(self.x, w.post_norm, out=self.normed)
        if w.router is None:
            self._expert(*w.experts[0], scale, 1.0)
            return
        w.router.write(self.router_logits, self.normed, scale)
        weights, chosen = torch.topk(self.router_logits.softmax(-1), self.top_k, sorted=False)
        if self.norm_topk_prob:
            weights = weights / (weights.sum() + 1e-20)
        for weight, index in zip(weights.tolist(), chosen.tolist(), strict=True):
            self._expert(*w.experts[index], scale, weight)

    def _expert(self, gate: Product, up: Product, down: Product, scale: float, weight: float) -> None:
        """x += weight * down(silu(gate(h)) * up(h)), with h = the normed x (its scale given apart)."""
        gate.write(self.gate, self.normed, scale)
        up.write(self.up, self.normed, scale)
        F.silu(self.gate, inplace=True).mul_(self.up)
        down.add_to(self.x, self.gate, weight)
