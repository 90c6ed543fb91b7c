"""The MiniMind-V generations mmv reads: which one a state dict is, and its tensors in today's layout.

A checkpoint names no generation, so it is told by its keys and shapes:
- `minimind-3v` (2026): `model.*` keys with per-head q/k norms; SigLIP/SigLIP2 projectors under `vision_proj.mlp.*`.
- `minimind2-v-2510` (the 2025-10 re-release of MiniMind2-V): today's key names but no q/k norm, RMSNorm eps 1e-5,
  MoE with a shared expert (`mlp.shared_experts.0.*`) and a router that keeps a single expert's probability; a
  CLIP ViT-B/16 (224 px) whose 196 patch tokens go through one Linear (`vision_proj.vision_proj.0.*`) onto 196 `@`.
- `minimind2-v-2502` (the first MiniMind2-V): the same model under its older names (`tok_embeddings`,
  `layers.N.attention.wq`, `feed_forward.w1`, ...) with RoPE over interleaved pairs. Rotating pairs (2i, 2i+1) of
  a head equals rotating halves (i, i + d/2) once the q and k rows of every head are reordered evens-then-odds, so
  the rows are permuted at load time and the one model runs every generation.
The MiniMind2 design cannot be read off for one thing: a head's width (there is no q_norm to measure), so the head
count comes from the caller, by default the 8 of every MiniMind2 release.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from mmv.config import VisionConfig
from mmv.errors import MmvError

if TYPE_CHECKING:
    import torch

CURRENT = "minimind-3v"
GENERATIONS = {
    CURRENT: "MiniMind-V (2026 layout, SigLIP2 encoders)",
    "minimind2-v-2510": "MiniMind2-V (2025-10 layout, CLIP encoder)",
    "minimind2-v-2502": "MiniMind2-V (2025-02 layout, CLIP encoder, interleaved RoPE)",
}
MINIMIND2_HEADS = 8  # attention heads of every published MiniMind2 model (512 and 768 wide alike)
# What a MiniMind2 model is beyond its tensor shapes (VLMConfig fields)
MINIMIND2_FIELDS: dict[str, Any] = {
    "qk_norm": False,
    "rms_norm_eps": 1e-5,
    "top1_router_weight": True,
    "image_ids": [34],
    "image_special_token": "@",
}
# CLIP ViT-B/16 at 224 px: 196 patch tokens (class token dropped), one Linear, no merge
MINIMIND2_VISION = VisionConfig("clip", 224, 16, None, "linear", 1)

_LEGACY_PROJECTOR = "vision_proj.vision_proj."
# 2502 names -> today's; `{e}` stands for an optional `experts.N.` / `shared_experts.` / `shared_experts.N.` prefix
_RENAMES_2502 = (
    (r"tok_embeddings\.weight", "model.embed_tokens.weight"),
    (r"norm\.weight", "model.norm.weight"),
    (r"output\.weight", "lm_head.weight"),
    (r"layers\.(\d+)\.attention\.w([qkvo])\.weight", r"model.layers.\1.self_attn.\2_proj.weight"),
    (r"layers\.(\d+)\.attention_norm\.weight", r"model.layers.\1.input_layernorm.weight"),
    (r"layers\.(\d+)\.ffn_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),
    (r"layers\.(\d+)\.feed_forward\.gate\.weight", r"model.layers.\1.mlp.gate.weight"),
)
_FFN_2502 = re.compile(r"layers\.(\d+)\.feed_forward\.((?:experts\.\d+\.|shared_experts\.(?:\d+\.)?)?)w([123])\.weight")
_FFN_NAMES = {"1": "gate_proj", "2": "down_proj", "3": "up_proj"}


def detect_generation(state: dict[str, torch.Tensor]) -> str:
    """The generation whose layout `state` is in; a state dict of none is refused, naming what it holds."""
    if "tok_embeddings.weight" in state and "layers.0.attention.wq.weight" in state:
        return "minimind2-v-2502"
    if "model.embed_tokens.weight" in state and "model.layers.0.self_attn.q_proj.weight" in state:
        if "model.layers.0.self_attn.q_norm.weight" in state:
            if any(k.startswith(_LEGACY_PROJECTOR) for k in state):
                raise MmvError(
                    "the checkpoint has q/k norms (MiniMind-V) but a MiniMind2-V projector "
                    "(vision_proj.vision_proj.*): it matches no generation"
                )
            return CURRENT
        return "minimind2-v-2510"
    raise MmvError(
        f"not a checkpoint of any MiniMind-V generation mmv reads ({', '.join(GENERATIONS)}): it holds "
        f"{describe_keys(state)}"
    )


def describe_keys(state: dict[str, torch.Tensor]) -> str:
    """A few of a state dict's keys, with their shapes, for a refusal."""
    if not state:
        return "no tensors"
    shown = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(state.items())[:3])
    return f"{len(state)} tensor(s) such as {shown}"


def is_minimind2(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict in today's names has the MiniMind2 design (no q/k norm)."""
    return "model.layers.0.self_attn.q_norm.weight" not in state


def to_current_layout(
    state: dict[str, torch.Tensor], generation: str, heads: int = MINIMIND2_HEADS
) -> dict[str, torch.Tensor]:
    """`state` under today's names, with 2502's q/k rows permuted for half-split RoPE (`heads` attention heads)."""
    if generation == CURRENT:
        return state
    renamed = {k.replace(_LEGACY_PROJECTOR, "vision_proj.mlp.", 1): v for k, v in state.items()}
    if generation == "minimind2-v-2510":
        return renamed
    converted = {}
    for key, tensor in renamed.items():
        converted[_rename_2502(key)] = tensor
    hidden = converted["model.embed_tokens.weight"].shape[1]
    head_dim = head_width(hidden, converted["model.layers.0.self_attn.q_proj.weight"].shape[0], heads)
    for key in [k for k in converted if re.fullmatch(r"model\.layers\.\d+\.self_attn\.[qk]_proj\.weight", k)]:
        converted[key] = halves_from_pairs(converted[key], head_dim)
    return converted


def _rename_2502(key: str) -> str:
    if key.startswith("vision_proj."):
        return key
    for pattern, replacement in _RENAMES_2502:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key)
    found = _FFN_2502.fullmatch(key)
    if found is None:
        raise MmvError(f"a MiniMind2-V (2025-02) checkpoint has no key like {key}: it matches no generation")
    layer, prefix, which = found.groups()
    if prefix == "shared_experts.":
        prefix = "shared_experts.0."  # the era kept its single shared expert outside a list
    return f"model.layers.{layer}.mlp.{prefix}{_FFN_NAMES[which]}.weight"


def head_width(hidden: int, q_rows: int, heads: int) -> int:
    """The width of one attention head of a model without q_norm, given its head count."""
    if heads < 1 or q_rows % heads or (q_rows // heads) % 2:
        raise MmvError(
            f"{heads} attention heads do not divide the {q_rows} query rows into even-width heads",
            option="attention_heads",
        )
    return q_rows // heads


def halves_from_pairs(weight: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Reorder each head's rows from interleaved pairs (0,1),(2,3),... to halves: evens first, then odds."""
    rows, cols = weight.shape
    return weight.reshape(rows // head_dim, head_dim // 2, 2, cols).transpose(1, 2).reshape(rows, cols).contiguous()


def generation_note(generation: str, heads: int | None) -> str:
    """The one line saying which generation a checkpoint was read as."""
    note = f"read as {GENERATIONS[generation]}"
    if heads is not None:
        note += f" with {heads} attention heads (a MiniMind2 checkpoint does not record them)"
    return note
