"""Which layers of a loaded MiniMind-V model become int8, swapped in place right after loading.

Quantized: every matrix a decode step streams, i.e. the attention projections (q, k, v, o), the feed-forward
projections (gate, up, down; every expert of a mixture), and the output head, which reads the largest matrix of
all (vocab x hidden) once per token. The head is tied to the embedding in MiniMind; the tie is broken here: the
head gets its own int8 copy while the embedding stays float32, since a step reads one row of it, and it stays the
model's float32 anchor that generation and the decoders read their dtype from.

In the vision encoder, every `nn.Linear` of its transformer layers and heads, whatever the family (SigLIP, SigLIP2,
CLIP, DINOv2 name them differently): in float32 it outweighs the whole language model (86M against 65M parameters
for minimind-3v's p32 encoder), so a quantized LLM beside a float encoder would still hold most of the memory. The
patch embedding (a convolution, or a Linear whose `.weight` transformers reads) and the projections inside an
`nn.MultiheadAttention` are read as weights directly: those stay float32. SigLIP's attention-pooling head is
dropped: mmv reads the patch tokens, never the pooled vector, and a quantized model is never saved (7.5M parameters
of a p32-256 encoder, 14 MB resident after quantizing).

Kept float32: the MoE router (hidden x experts, a few KB: rounding it could flip an expert choice, which costs far
more than a rounded weight), the norms, and the vision projector (run once per image).
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn

from mmv import file_pages
from mmv.errors import MmvError
from mmv.model.llm import MiniMindLM
from mmv.model.moe import MoEFeedForward
from mmv.quant.int8 import Int8Linear, quantize_linear
from mmv.quant.patches import swap_patch_convolutions
from mmv.quant.schemes import check_scheme

ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
FEED_FORWARD_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


def quantize_model(model: MiniMindLM, scheme: str = "int8", *, vision: bool = True) -> MiniMindLM:
    """Quantize `model`'s matrices in place (the module docstring says which); returns `model`.

    The float32 weights replaced are freed as each layer is swapped, so the float copy never stays resident. The
    model must be float32 on CPU; it is left in eval mode (int8 layers have no gradients and cannot be saved).
    """
    check_scheme(scheme)
    embedding = model.model.embed_tokens.weight
    if embedding.device.type != "cpu" or embedding.dtype != torch.float32:
        raise MmvError(
            f"quantizing to {scheme} runs on CPU in float32; this model is {embedding.dtype} on {embedding.device} "
            "(load it on the cpu device in float32)",
            option=("quantize", "device", "dtype"),
        )
    if is_quantized(model):
        raise MmvError("this model is quantized already")
    for index in range(len(model.model.layers)):
        quantize_block(model, index)
    _swap(model, ("lm_head",))
    encoder = getattr(model, "vision_encoder", None)
    if vision and encoder is not None:
        _drop_pooling_head(encoder)
        _swap_encoder_linears(encoder)
        swap_patch_convolutions(encoder)  # float32 still, without oneDNN's first-call memory (`mmv.quant.patches`)
        _copy_out_of_file_maps(encoder)
    return_freed_memory()
    return model.eval()


def quantize_block(model: MiniMindLM, index: int) -> None:
    """Quantize decoder block `index`'s matrices (those still float: `load_model` quantizes each block as soon as
    the checkpoint has filled it, `quantize_model` the rest), and hand the float ones back to the OS."""
    block = model.model.layers[index]
    _swap(block.self_attn, ATTENTION_PROJECTIONS)
    mlp = block.mlp
    for ffn in mlp.experts if isinstance(mlp, MoEFeedForward) else [mlp]:
        _swap(ffn, FEED_FORWARD_PROJECTIONS)
    return_freed_memory()  # block by block: the freed float blocks would otherwise pile up to the load's peak


def return_freed_memory() -> None:
    """Hand the freed float32 weights back to the OS (glibc's malloc_trim; a no-op where libc has none).

    Each float matrix freed by a swap is a few MB; once glibc has seen such blocks freed it serves the next ones from
    its heap rather than from fresh maps, and a heap does not shrink by itself: without this, the freed float copy of
    a mixture-of-experts model stayed resident (1,184 MB after loading minimind-3v-moe in int8, 786 MB after the
    trim; minimind-3v: 664 and 621 MB).
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return
    trim(0)


def _drop_pooling_head(encoder: nn.Module) -> None:
    """SigLIP's and SigLIP2's vision towers run their `head` only when `use_head` is set (transformers 5.x);
    `load_encoder` has turned it off already."""
    for module in list(encoder.modules()):
        if hasattr(module, "use_head") and isinstance(getattr(module, "head", None), nn.Module):
            module.use_head = False
            del module.head


def _swap_encoder_linears(encoder: nn.Module) -> None:
    """Every plain nn.Linear of the encoder, except the embeddings' (SigLIP2's patch embedding is a Linear whose
    `.weight` transformers reads) and those an nn.MultiheadAttention reads as raw weights."""
    parents = [
        module
        for path, module in encoder.named_modules()
        if "embeddings" not in path.split(".") and not isinstance(module, nn.MultiheadAttention)
    ]
    spans = file_pages.file_maps()  # the encoder's weights are views of its mapped safetensors file
    for parent in parents:
        names = tuple(name for name, child in parent.named_children() if type(child) is nn.Linear)
        replaced = [getattr(parent, name) for name in names]
        _swap(parent, names)
        # each matrix's pages as soon as it is quantized: the whole file would otherwise stay resident till the end
        file_pages.release([tensor for layer in replaced for tensor in layer.parameters()], spans)


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
        layer = getattr(parent, name)
        if not isinstance(layer, Int8Linear):
            setattr(parent, name, quantize_linear(layer))
