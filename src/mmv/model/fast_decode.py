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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmv.model.kv_cache import KVCache
from mmv.model.llm import Block, MiniMindLM
from mmv.model.moe import MoEFeedForward


@dataclass
class _LayerWeights:
    input_norm: torch.Tensor
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    qk_norm: torch.Tensor  # [heads + kv_heads, head_dim]: q rows, then k rows, scales folded in
    o: torch.Tensor
    post_norm: torch.Tensor
    experts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (gate, up, down); a dense MLP is one expert
    router: torch.Tensor | None  # MoE only: [num_experts, hidden]
    keys: torch.Tensor  # the cache's [kv_heads, max_len, head_dim] for this layer
    values: torch.Tensor


class FastDecoder:
    """Decodes one token at a time for a single unpadded sequence whose prefix is already in `cache`."""

    @staticmethod
    def supports(model: MiniMindLM, batch: int) -> bool:
        weight, config = model.lm_head.weight, model.config
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
        self.rope_cos, self.rope_sin = model.rope_cos, model.rope_sin
        self.embeddings = model.model.embed_tokens.weight
        self.final_norm = model.model.norm.weight
        self.lm_head = model.lm_head.weight
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
            q=attention.q_proj.weight,
            k=attention.k_proj.weight,
            v=attention.v_proj.weight,
            qk_norm=qk_norm,
            o=attention.o_proj.weight,
            post_norm=block.post_attention_layernorm.weight,
            experts=[(ffn.gate_proj.weight, ffn.up_proj.weight, ffn.down_proj.weight) for ffn in ffns],
            router=mlp.gate.weight if isinstance(mlp, MoEFeedForward) else None,
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
        return torch.mv(self.lm_head, self.normed).mul_(self._rms_scale())[None]

    def _attention(self, w: _LayerWeights, position: int, cos: torch.Tensor, sin: torch.Tensor) -> None:
        scale = self._rms_scale()
        torch.mul(self.x, w.input_norm, out=self.normed)
        # beta=0: the output buffer is only a destination, its old contents are ignored
        torch.addmv(self.q, w.q, self.normed, beta=0, alpha=scale, out=self.q)
        torch.addmv(self.k, w.k, self.normed, beta=0, alpha=scale, out=self.k)
        torch.addmv(self.v, w.v, self.normed, beta=0, alpha=scale, out=self.v)
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
        self.x.addmv_(w.o, self.attended)

    def _feed_forward(self, w: _LayerWeights) -> None:
        scale = self._rms_scale()
        torch.mul(self.x, w.post_norm, out=self.normed)
        if w.router is None:
            self._expert(*w.experts[0], scale, 1.0)
            return
        torch.addmv(self.router_logits, w.router, self.normed, beta=0, alpha=scale, out=self.router_logits)
        weights, chosen = torch.topk(self.router_logits.softmax(-1), self.top_k, sorted=False)
        if self.norm_topk_prob:
            weights = weights / (weights.sum() + 1e-20)
        for weight, index in zip(weights.tolist(), chosen.tolist(), strict=True):
            self._expert(*w.experts[index], scale, weight)

    def _expert(self, gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor, scale: float, weight: float) -> None:
        """x += weight * down(silu(gate(h)) * up(h)), with h = the normed x (its scale given apart)."""
        torch.addmv(self.gate, gate, self.normed, beta=0, alpha=scale, out=self.gate)
        torch.addmv(self.up, up, self.normed, beta=0, alpha=scale, out=self.up)
        F.silu(self.gate, inplace=True).mul_(self.up)
        self.x.addmv_(down, self.gate, alpha=weight)
