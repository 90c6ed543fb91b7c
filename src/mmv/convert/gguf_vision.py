"""The image side as a llama.cpp mmproj GGUF (SigLIP encoder + projector), for the one variant llama.cpp expresses.

p16-256's projector is llama.cpp's `lfm2` projector type: the same 2x2 token merge in the same channel order
(r0c0, r0c1, r1c0, r1c1), then LayerNorm (eps 1e-5), Linear, GELU, Linear, over a SigLIP encoder whose post-
layernorm output feeds it. What still differs is documented, not hidden: llama.cpp's GELU there is the tanh
approximation (MiniMind's is exact), its image resize is its own, and llama-mtmd-cli wraps every image in
`<|image_start|>` / `<|image_end|>` text. The other variants, and every other encoder family or projector, have no
such type; `image_side_note` says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.convert.gguf_tensors import add_tensor, copy_fields, file_type, mapped_name, write_out
from mmv.errors import MmvError

if TYPE_CHECKING:
    import gguf

    from mmv.convert.sources import Source

PROJECTOR_TYPE = "lfm2"
MERGE = 2  # p16-256 merges 2x2 encoder tokens into one
# mmv's projector modules -> the lfm2 projector's tensors (clip.cpp: mm.input_norm, then mm.1 and mm.2)
PROJECTOR_NAMES = {"vision_proj.mlp.0": "mm.input_norm", "vision_proj.mlp.1": "mm.1", "vision_proj.mlp.3": "mm.2"}
# llama.cpp's clip keys (gguf_tensors.copy_fields) -> the SiglipVisionConfig fields they copy
ENCODER_KEYS = {
    "vision_image_size": "image_size",
    "vision_patch_size": "patch_size",
    "vision_embedding_length": "hidden_size",
    "vision_feed_forward_length": "intermediate_size",
    "vision_block_count": "num_hidden_layers",
    "vision_head_count": "num_attention_heads",
    "vision_attention_layernorm_eps": "layer_norm_eps",
}
ENCODER_PREFIX = "vision_tower.vision_model."  # where the gguf package's name map expects the SigLIP tower
NOT_EXPRESSIBLE = {
    "p32-256": "p32-256's projector (LayerNorm, Linear, GELU, Linear, no token merge) matches no llama.cpp "
    "projector type (`mlp` has no LayerNorm, and it cannot be folded into the encoder's own final LayerNorm), "
    "so the image side is not exported: the language model runs text, or image embeddings computed by mmv",
    "p16-naflex": "p16-naflex's SigLIP2 NaFlex encoder and 4-token raster regroup match no llama.cpp projector "
    "type, so the image side is not exported: the language model runs text, or image embeddings computed by mmv",
}


def image_side_note(source: Source) -> str | None:
    """None when an mmproj file is written (or the source is a text-only LLM); else the sentence saying why not."""
    if source.text_only:
        return None
    variant = source.config.vision_variant
    if variant in NOT_EXPRESSIBLE:
        return NOT_EXPRESSIBLE[variant]
    if variant != "p16-256":
        return (
            f"this model's vision path ({source.config.vision.label}) matches no llama.cpp projector type mmv "
            "writes (p16-256's alone), so the image side is not exported: the language model runs text, or image "
            "embeddings computed by mmv"
        )
    if source.vision_dir is None:
        return (
            "no SigLIP encoder folder was found beside the source, so the image side (mmproj) is not exported; "
            "pass --with-vision DIR to include it"
        )
    act = encoder_config(source.vision_dir).get("hidden_act", "gelu_pytorch_tanh")  # SigLIP's default
    if act != "gelu_pytorch_tanh":
        return f"llama.cpp's SigLIP runs the tanh GELU but this encoder uses {act!r}, so the image side is not exported"
    return None


def encoder_config(folder: Path) -> dict:
    config = json.loads((folder / "config.json").read_text())
    return config.get("vision_config", config)


def write_mmproj(path: Path, source: Source, outtype: str) -> None:
    """The encoder from `source.vision_dir` and the projector from the checkpoint, as one `clip` GGUF."""
    import gguf

    from mmv.model.vision import load_encoder

    if source.vision_dir is None or image_side_note(source) is not None:
        raise MmvError(image_side_note(source) or "no vision encoder folder to export")
    encoder = load_encoder(source.vision_dir)
    # the image side is small: under q8_0 it stays f16
    outtype = "f32" if outtype == "f32" else "f16"
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.MMPROJ])
    writer.add_type(gguf.GGUFType.MMPROJ)
    add_vision_hparams(writer, encoder.config, source.config.hidden_size, source.vision_dir, outtype, path.stem)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, encoder.config.num_hidden_layers)
    for key, tensor in encoder.state_dict().items():
        if key.startswith("head."):  # the pooling head: MiniMind uses last_hidden_state
            continue
        add_tensor(writer, mapped_name(names, ENCODER_PREFIX + key, "mmproj tensor"), tensor, outtype)
    for key, tensor in source.state_dict.items():
        if key.startswith("vision_proj."):
            module, _, leaf = key.rpartition(".")
            add_tensor(writer, f"{PROJECTOR_NAMES[module]}.{leaf}", tensor, outtype)
    write_out(writer)


def add_vision_hparams(
    writer: gguf.GGUFWriter, config: Any, projection_dim: int, folder: Path, outtype: str, name: str
) -> None:
    """`config`: the loaded encoder's SiglipVisionConfig (transformers fills what config.json leaves out)."""
    writer.add_name(name)
    writer.add_file_type(file_type(outtype))
    writer.add_clip_has_vision_encoder(True)
    writer.add_clip_projector_type(PROJECTOR_TYPE)
    writer.add_vision_projection_dim(projection_dim)
    copy_fields(writer, config, ENCODER_KEYS)
    mean, std = normalisation(folder)
    writer.add_vision_image_mean(mean)
    writer.add_vision_image_std(std)
    writer.add_vision_projector_scale_factor(MERGE)
    writer.add_vision_use_gelu(True)  # SigLIP's gelu_pytorch_tanh


def normalisation(folder: Path) -> tuple[list[float], list[float]]:
    """The processor's mean and std; MiniMind's encoders use 0.5 and 0.5 (REFERENCE.md section 2)."""
    path = folder / "preprocessor_config.json"
    processor = json.loads(path.read_text()) if path.is_file() else {}
    return processor.get("image_mean", [0.5] * 3), processor.get("image_std", [0.5] * 3)
