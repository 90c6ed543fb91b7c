"""Reading weights safely: native `.pth`, `.safetensors` and reference transformers folders.

Pickles are only ever opened with `weights_only=True`; folders are read as data (config.json + weights), their
modeling code is never imported. Every size is read off the tensors, and the projector off `vision_proj.*`,
so a mismatch fails with one sentence instead of mis-loading the way the reference's strict=False does. What
enters is checked here, once: only finite floating-point tensors, each of the shape its config implies.
"""

from __future__ import annotations

import math
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmv.config import NAFLEX_FAMILY, VISION_PRESETS, VisionConfig, VLMConfig, records_vision
from mmv.errors import MmvError
from mmv.generations import (
    CURRENT,
    MINIMIND2_FIELDS,
    MINIMIND2_VISION,
    detect_generation,
    head_width,
    is_minimind2,
    to_current_layout,
)
from mmv.layout import CONFIG_FILE, WEIGHT_FILES, read_json_object, reading

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from mmv.model.vision import EncoderInfo
    from mmv.model.vlm import MiniMindVLM

FOLDER_MODEL_TYPES = ("minimind-v", "minimind", "mmv")
BLOCK_KEY = re.compile(r"model\.layers\.(\d+)\.")  # the decoder block a checkpoint key belongs to


@dataclass
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    config: VLMConfig
    text_only: bool  # an `llm_768.pth`-style file: the projector must be freshly initialised
    source: Path
    generation: str = CURRENT  # the layout it was stored in (mmv.generations); state_dict is in today's


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.pth` / `.bin` (weights_only) or `.safetensors` file; all finite floating-point weights."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise MmvError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            # mmap avoids a second copy in memory, but only the zip format (torch >= 1.6) supports it
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError:
        raise MmvError(
            f"cannot read checkpoint {path}: it is not a weights-only PyTorch file (refusing to unpickle "
            "anything but tensors)"
        ) from None
    except Exception as exc:  # any unreadable file becomes the same one-line error
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MmvError(f"cannot read checkpoint {path}: {reason[:200]}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # an mmv resume checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MmvError(f"{path} is not a state dict of tensors")
    with reading(path):
        check_values(state)
    return state


def check_values(state: dict[str, torch.Tensor]) -> None:
    """Weights are non-empty, floating point and finite: an integer tensor in a float file or a NaN would load
    and run, answering nothing. A mapped file's pages are handed back as each tensor is checked (`mmv.file_pages`)."""
    import torch

    from mmv import file_pages

    spans = file_pages.file_maps()
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise MmvError(f"{key} holds {str(tensor.dtype).removeprefix('torch.')} values; weights are floating point")
        if tensor.numel() == 0:
            raise MmvError(f"{key} is empty (shape {tuple(tensor.shape)})")
        if not bool(torch.isfinite(tensor).all()):
            raise MmvError(f"{key} holds NaN or infinite values")
        file_pages.release([tensor], spans)


def projector_shape(state: dict[str, torch.Tensor]) -> tuple[str, int] | None:
    """The projector's kind (linear | mlp | ln-mlp) and input width, read off its tensors; None for a text-only LLM."""
    first = state.get("vision_proj.mlp.0.weight")
    if first is None:
        if any(k.startswith("vision_proj.") for k in state):
            raise MmvError("unrecognised vision projector keys: expected vision_proj.mlp.{0,1,3}.* or mlp.{0,2}.*")
        return None
    if first.dim() == 2 and "vision_proj.mlp.3.weight" not in state:
        return ("mlp" if "vision_proj.mlp.2.weight" in state else "linear"), first.shape[1]
    if first.dim() != 1 or "vision_proj.mlp.3.weight" not in state:
        raise MmvError(f"unrecognised vision projector: mlp.0.weight has shape {tuple(first.shape)}")
    return "ln-mlp", first.shape[0]


def reference_variant(kind: str, width: int, encoder_hidden: int | None = None) -> str:
    """The variant the reference would read a projector as (REFERENCE.md section 2).

    p32-256 and p16-256 share a layout and differ only in the LayerNorm width (768 vs 3072 at full size), so a
    model of another width needs the encoder's hidden size to tell them apart.
    """
    if kind == "mlp":
        if width % 4:
            raise MmvError(f"the mlp projector takes {width}-wide tokens, not 4 stacked NaFlex patches")
        return "p16-naflex"
    if kind == "linear":
        raise MmvError(
            "the checkpoint's linear projector records no vision config; name the encoder it was trained with",
            option="vision",
        )
    if encoder_hidden is not None and width in (encoder_hidden, 4 * encoder_hidden):
        return "p32-256" if width == encoder_hidden else "p16-256"
    if width in (768, 3072) and encoder_hidden is None:
        return "p32-256" if width == 768 else "p16-256"
    raise MmvError(
        f"the projector takes {width}-wide tokens, which fits neither a p32-256 nor a p16-256 encoder "
        f"of hidden size {encoder_hidden or 768}; name the matching encoder folder",
        option="vision",
    )


def detect_variant(state: dict[str, torch.Tensor], encoder_hidden: int | None = None) -> str | None:
    """The reference variant of a checkpoint's projector; None for a text-only LLM."""
    shape = projector_shape(state)
    return None if shape is None else reference_variant(*shape, encoder_hidden)


def read_vision(
    kind: str,
    width: int,
    recorded: VisionConfig | None,
    encoder: EncoderInfo | None,
    encoder_hidden: int | None,
) -> tuple[VisionConfig, int]:
    """The vision config and encoder width of a projector of `kind` taking `width`-wide tokens.

    What a run directory or transformers folder recorded wins. A bare checkpoint records nothing: with a SigLIP
    encoder or none it reads as the reference reads it (the three variants); over another family's encoder (or
    for a linear projector) the merge is what stacks the encoder's patches to `width`.
    """
    if recorded is not None:
        if kind != recorded.projector or width % recorded.group:
            raise MmvError(
                f"the {kind} projector taking {width}-wide tokens does not match the recorded vision config "
                f"({recorded.label})"
            )
        return recorded, width // recorded.group
    if encoder is None or (encoder.family in ("siglip", NAFLEX_FAMILY) and kind != "linear"):
        preset = VISION_PRESETS[reference_variant(kind, width, encoder.hidden_size if encoder else encoder_hidden)]
        return preset, width // preset.group
    group, rest = divmod(width, encoder.hidden_size)
    merge = group if encoder.family == NAFLEX_FAMILY else math.isqrt(group)
    if rest or not group or (encoder.family != NAFLEX_FAMILY and merge * merge != group):
        raise MmvError(
            f"the projector takes {width}-wide tokens, which no merge of the {encoder.hidden_size}-wide patches of "
            f"a {encoder.label} encoder makes",
            option="vision",
        )
    return encoder.vision(kind, merge), encoder.hidden_size


def _tensor(state: dict[str, torch.Tensor], key: str, dims: int) -> torch.Tensor:
    if key not in state:
        raise MmvError(f"not a MiniMind checkpoint: it has no {key}")
    tensor = state[key]
    if tensor.dim() != dims:
        raise MmvError(f"{key} has shape {tuple(tensor.shape)}; expected a {dims}-D tensor")
    return tensor


def infer_config(
    state: dict[str, torch.Tensor],
    base: VLMConfig | None = None,
    encoder_hidden: int | None = None,
    *,
    encoder: EncoderInfo | None = None,
    vision: VisionConfig | None = None,
) -> VLMConfig:
    """Every size of the model read off its tensors (in today's layout, mmv.generations); `base` supplies what
    tensors cannot tell (top-k, rope; a MiniMind2 model's head count), and `vision` the vision config a run or
    folder recorded (see read_vision)."""
    values = (base or VLMConfig()).to_dict()
    embed = _tensor(state, "model.embed_tokens.weight", 2)
    q_rows = _tensor(state, "model.layers.0.self_attn.q_proj.weight", 2).shape[0]
    k_rows = _tensor(state, "model.layers.0.self_attn.k_proj.weight", 2).shape[0]
    minimind2 = is_minimind2(state)
    if minimind2:
        head_dim = head_width(embed.shape[1], q_rows, values["num_attention_heads"])
        values.update(MINIMIND2_FIELDS)
        vision = vision or MINIMIND2_VISION
    else:
        head_dim = _tensor(state, "model.layers.0.self_attn.q_norm.weight", 1).shape[0]
    if q_rows % head_dim or k_rows % head_dim:
        measure = f"width {head_dim}" if minimind2 else f"q_norm's {head_dim}"
        raise MmvError(f"the q/k projections ({q_rows}, {k_rows} rows) are not whole heads of {measure}")
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"model\.layers\.(\d+)\.", k)))
    experts = {int(m.group(1)) for k in state if (m := re.match(r"model\.layers\.0\.mlp\.experts\.(\d+)\.", k))}
    mlp = "model.layers.0.mlp.experts.0.gate_proj.weight" if experts else "model.layers.0.mlp.gate_proj.weight"
    intermediate = _tensor(state, mlp, 2).shape[0]
    shared = {int(m.group(1)) for k in state if (m := re.match(r"model\.layers\.0\.mlp\.shared_experts\.(\d+)\.", k))}
    values.update(
        vocab_size=embed.shape[0],
        hidden_size=embed.shape[1],
        num_hidden_layers=layers,
        num_attention_heads=q_rows // head_dim,
        num_key_value_heads=k_rows // head_dim,
        head_dim=head_dim,
        intermediate_size=intermediate,
        moe_intermediate_size=intermediate,
        use_moe=bool(experts),
        num_experts=len(experts) or values["num_experts"],
        num_shared_experts=len(shared),
    )
    values["image_token_len"] = None  # follows the vision config
    shape = projector_shape(state)
    if shape is not None:
        found, width = read_vision(*shape, vision, encoder, encoder_hidden)
        values.update(vision=found, vision_variant=None, image_hidden_size=width)
    return VLMConfig.from_dict(values)


def expected_shapes(config: VLMConfig, text_only: bool) -> dict[str, tuple[int, ...]]:
    """Every checkpoint key of the model `config` describes, with its shape (built on the meta device: no memory)."""
    import torch

    from mmv.model.vlm import MiniMindVLM

    with torch.device("meta"):
        state = MiniMindVLM(config).checkpoint_state_dict()
    return {k: tuple(v.shape) for k, v in state.items() if not (text_only and k.startswith("vision_proj."))}


def check_shapes(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], source: Path) -> None:
    for key, tensor in state.items():
        if key in expected and tuple(tensor.shape) != expected[key]:
            raise MmvError(f"{source}: {key} has shape {tuple(tensor.shape)}, expected {expected[key]}")


def find_weights(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise MmvError(f"{folder} holds no weights: expected {' or '.join(WEIGHT_FILES)}")


def folder_config(folder: Path) -> dict:
    """The config.json of a transformers folder, checked to describe a MiniMind model."""
    path = folder / CONFIG_FILE
    config = read_json_object(path)
    if config.get("model_type") not in FOLDER_MODEL_TYPES:
        raise MmvError(f"{folder} is a {config.get('model_type')!r} folder; expected model_type 'minimind-v'")
    return config


def read_checkpoint(
    path: str | Path,
    encoder_hidden: int | None = None,
    base: VLMConfig | None = None,
    *,
    encoder: EncoderInfo | None = None,
    vision: VisionConfig | None = None,
    attention_heads: int | None = None,
) -> Checkpoint:
    """Weights in today's layout and the config they imply from a `.pth` / `.safetensors` file or a transformers
    folder of any generation (mmv.generations).

    `encoder` is the encoder found for it, `vision` what its run recorded; a folder's own config.json records both
    its sizes and, when mmv wrote it, its vision config. `attention_heads` is the head count of a MiniMind2 model,
    which its tensors cannot tell (default: what `base` says)."""
    path = Path(path)
    if path.is_dir():
        raw = folder_config(path)
        with reading(path / CONFIG_FILE):
            base = (base or VLMConfig()).overlay(raw)
        vision = base.vision if records_vision(raw) else vision
        hidden = raw.get("image_hidden_size")
        encoder_hidden = encoder_hidden or (hidden if isinstance(hidden, int) else None)
        weights = find_weights(path)
    else:
        weights = path
    if encoder is not None:
        encoder_hidden = encoder.hidden_size
    state = read_state_dict(weights)
    with reading(weights):
        generation = detect_generation(state)
        if attention_heads is not None:
            # kv heads are read off the tensors; 1 only keeps the interim config valid for any head count
            base = (base or VLMConfig()).replace(num_attention_heads=attention_heads, num_key_value_heads=1)
        state = to_current_layout(state, generation, (base or VLMConfig()).num_attention_heads)
        config = infer_config(state, base, encoder_hidden, encoder=encoder, vision=vision)
    text_only = "vision_proj.mlp.0.weight" not in state
    check_shapes(state, expected_shapes(config, text_only), weights)
    return Checkpoint(state, config, text_only, source=path, generation=generation)


def check_keys(expected: set[str], found: set[str], source: Path, tied: bool) -> None:
    missing = expected - found
    if tied and "lm_head.weight" in missing and "model.embed_tokens.weight" in found:
        missing.discard("lm_head.weight")  # transformers folders store tied weights once
    unexpected = found - expected
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) such as {sorted(missing)[0]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s) such as {sorted(unexpected)[0]}")
        raise MmvError(f"{source} does not match the model it describes: {'; '.join(parts)}")


def load_weights(
    model: MiniMindVLM, checkpoint: Checkpoint, after_block: Callable[[MiniMindVLM, int], None] | None = None
) -> None:
    """Copy checkpoint tensors into `model` after a strict key check (the encoder and a text-only projector aside).

    One tensor at a time, each one's pages of a mapped file handed back once copied (`mmv.file_pages`): the file
    is never resident beside the whole copy. The tensors outside the blocks come first, then block by block, and
    `after_block(model, i)` runs once block i is filled (int8 loading quantizes it there, so that the float copy
    of the whole model never exists)."""
    import torch

    from mmv import file_pages

    expected = set(model.checkpoint_state_dict())
    if checkpoint.text_only:
        expected = {k for k in expected if not k.startswith("vision_proj.")}
    check_keys(expected, set(checkpoint.state_dict), checkpoint.source, model.config.tie_word_embeddings)
    own = model.state_dict()
    check_shapes(checkpoint.state_dict, {k: tuple(v.shape) for k, v in own.items()}, checkpoint.source)
    spans = file_pages.file_maps()
    groups: dict[int, list[str]] = {}
    for name in checkpoint.state_dict:
        found = BLOCK_KEY.match(name)
        groups.setdefault(int(found.group(1)) if found else -1, []).append(name)
    with torch.no_grad():
        for block in sorted(groups):
            for name in groups[block]:
                tensor = checkpoint.state_dict[name]
                own.pop(name).copy_(tensor)  # popped: `after_block` may free it
                file_pages.release([tensor], spans)
            if block >= 0 and after_block is not None:
                after_block(model, block)
