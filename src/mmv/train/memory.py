"""A start-of-run estimate of training memory: weights + gradients + AdamW state + activations.

An estimate to catch an impossible batch before the first step, not a measurement: it assumes every sample is
`seq_len` long and counts the activations a block keeps for backward (no attention score matrix: sdpa's fused
kernels recompute it).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmv.config import VLMConfig


@dataclass
class MemoryEstimate:
    weights: int  # every parameter in float32 (frozen encoder included), QLoRA's quantised base in 4-bit
    gradients: int  # trainable parameters in float32
    optimizer: int  # AdamW: two float32 moments per trainable parameter
    activations: int  # the blocks' saved tensors + the logits and their gradient

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations


def estimate(
    config: VLMConfig,
    total_params: int,
    trainable_params: int,
    batch_size: int,
    seq_len: int,
    compute_bytes: int,
    grad_checkpoint: bool,
    quantized_params: int = 0,
    adapter_width: int = 0,
) -> MemoryEstimate:
    """`quantized_params` of the weights are held in 4-bit NF4 (QLoRA); `adapter_width` is the sum of the adapter
    ranks in one block (LoRA: each token keeps its rank-wide intermediate per adapted layer)."""
    from mmv.adapters.quantize import NF4_BYTES

    tokens = batch_size * seq_len
    hidden, inter = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * config.head_dim
    # per token and block: norms, q/k/v and their norms + rope, attention output, residuals, the SwiGLU's four
    # intermediate-wide tensors (MoE: top-k experts' worth)
    per_block = 12 * hidden + 4 * kv + 4 * inter * (config.num_experts_per_tok if config.use_moe else 1)
    per_block += adapter_width
    blocks = config.num_hidden_layers
    stored = tokens * (blocks * hidden + per_block) if grad_checkpoint else tokens * blocks * per_block
    # logits in the compute dtype, their float32 copy for the loss, and that copy's gradient
    logits = tokens * config.vocab_size * (compute_bytes + 8)
    return MemoryEstimate(
        weights=int(4 * (total_params - quantized_params) + NF4_BYTES * quantized_params),
        gradients=4 * trainable_params,
        optimizer=8 * trainable_params,
        activations=stored * compute_bytes + logits,
    )
