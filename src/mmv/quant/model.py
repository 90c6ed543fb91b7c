"""Which layers of a loaded MiniMind-V model become int8, swapped in place right after loading.

Quantized: every matrix a decode step streams, i.e. the attention projections (q, k, v, o), the feed-forward
projections (gate, up, down; every expert of a mixture), and the output head, which reads the largest matrix of
all (vocab x hidden) once per token. The head is tied to the embedding in MiniMind; the tie is broken here: the
head gets its own int8 copy while the embedding stays float32, since a step reads one row of it, and it stays the
model's float32 anchor that generation and the decoders read their dtype from.

In the vision encoder (SigLIP / SigLIP2), the attention and MLP projections of every transformer layer: in float32
it outweighs the whole language model (86M against 65M parameters for minimind-3v's p32 encoder), so a quantized
LLM beside a float encoder would still hold most of the memory. The pooling head's MLP too, where there is one
(MiniMind-V never reads the pooled output, but transformers computes it). The patch embedding (read as `.weight`
by transformers' own code) and the head's attention (`nn.MultiheadAttention` reads its projection's weight
directly) stay float32.

Kept float32: the MoE router (hidden x experts, a few KB: rounding it could flip an expert choice, which costs far
more than a rounded weight), the norms, and the vision projector (run once per image).
"""

from __future__ import annotations

import torch
from torch import nn

from mmv.errors import MmvError
from mmv.model.llm import MiniMindLM
from mmv.model.moe import MoEFeedForward
from mmv.quant.int8 import Int8Linear, quantize_linear

SCHEMES = ("int8",)
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
FEED_FORWARD_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
ENCODER_PROJECTIONS = {"self_attn": ("q_proj", "k_proj", "v_proj", "out_proj"), "mlp": ("fc1", "fc2")}


def check_scheme(scheme: str | None) -> None:
    """Refuse an unknown scheme before anything slow happens (None: no quantization)."""
    if scheme is not None and scheme not in SCHEMES:
        raise MmvError(f"unknown quantization {scheme!r}; expected one of {', '.join(SCHEMES)}")


def quantize_model(model: MiniMindLM, scheme: str = "int8", *, vision: bool = True) -> MiniMindLM:
    """Quantize `model`'s matrices in place (the module docstring says which); returns `model`.

    The float32 weights replaced are freed as each layer is swapped, so the float copy never stays resident. The
    model must be float32 on CPU; it is left in eval mode (int8 layers have no gradients and cannot be saved).
    """
    check_scheme(scheme)
    embedding = model.model.embed_tokens.weight
    if embedding.device.type != "cpu" or embedding.dtype != torch.float32:
        raise MmvError(
            f"--quantize {scheme} runs on CPU in float32; this model is {embedding.dtype} on {embedding.device} "
            "(use --device cpu --dtype float32)"
        )
    if is_quantized(model):
        raise MmvError("this model is quantized already")
    for block in model.model.layers:
        _swap(block.self_attn, ATTENTION_PROJECTIONS)
        mlp = block.mlp
        for ffn in mlp.experts if isinstance(mlp, MoEFeedForward) else [mlp]:
            _swap(ffn, FEED_FORWARD_PROJECTIONS)
    _swap(model, ("lm_head",))
    encoder = getattr(model, "vision_encoder", None)
    if vision and encoder is not None:
        for layer in encoder.encoder.layers:
            for part, names in ENCODER_PROJECTIONS.items():
                _swap(getattr(layer, part), names)
        if getattr(encoder, "head", None) is not None:
            _swap(encoder.head.mlp, ENCODER_PROJECTIONS["mlp"])
        _copy_out_of_file_maps(encoder)
    return model.eval()


def _copy_out_of_file_maps(module: nn.Module) -> None:
    """Give the tensors left in `module` memory of their own.

    transformers maps a safetensors file into memory and makes the encoder's tensors views of that map: the
    quantization has read every page of it, and the pages stay resident for as long as any tensor still points
    into the map. The few float tensors left (patch and position embeddings, norms) are copied so that it closes.
    """
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            tensor.data = tensor.data.clone()


def is_quantized(model: MiniMindLM) -> bool:
    return isinstance(model.lm_head, Int8Linear)


def _swap(parent: nn.Module, names: tuple[str, ...]) -> None:
    for name in names:
        setattr(parent, name, quantize_linear(getattr(parent, name)))
