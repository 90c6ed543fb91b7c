"""What the language-model and mmproj GGUF files share: which type each tensor gets under --outtype, the name
llama.cpp gives each tensor, hyperparameters copied from a config, and the order a file is written in.

The rules are llama.cpp's own converter's (convert_hf_to_gguf.py): vectors, norms, MoE routers and position
embeddings stay float32 whatever the output type, and a matrix whose rows do not split into Q8_0's 32-value
blocks falls back to float16.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmv.errors import MmvError

if TYPE_CHECKING:
    import gguf
    import numpy as np
    import torch

OUTTYPES = ("f32", "f16", "q8_0")
Q8_0_BLOCK = 32


def default_outtype(source_dtype: torch.dtype) -> str:
    """The source's precision kept: float16 checkpoints (as published) stay f16 exactly, others become f32."""
    import torch

    return "f16" if source_dtype == torch.float16 else "f32"


def file_type(outtype: str) -> gguf.LlamaFileType:
    import gguf

    return {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[outtype]


def stays_f32(name: str, ndim: int) -> bool:
    return ndim <= 1 or name.endswith("_norm.weight") or ".ffn_gate_inp." in name or ".position_embd." in name


def tensor_type(name: str, shape: tuple[int, ...], outtype: str) -> gguf.GGMLQuantizationType:
    from gguf import GGMLQuantizationType as Q

    if outtype == "f32" or stays_f32(name, len(shape)):
        return Q.F32
    if outtype == "q8_0" and shape[-1] % Q8_0_BLOCK == 0:
        return Q.Q8_0
    return Q.F16


def add_tensor(writer: gguf.GGUFWriter, name: str, tensor: torch.Tensor, outtype: str) -> None:
    """Encode one tensor (in PyTorch's row-major layout; GGUF stores the reversed shape) and queue it."""
    import gguf

    array: np.ndarray = tensor.detach().float().contiguous().numpy()
    qtype = tensor_type(name, array.shape, outtype)
    writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)


def mapped_name(names: gguf.TensorNameMap, key: str, what: str = "tensor") -> str:
    """llama.cpp's name for the PyTorch tensor `key`; `what` names the kind of tensor when there is none."""
    name = names.get_name(key, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise MmvError(f"no llama.cpp {what} corresponds to {key}")
    return name


def copy_fields(writer: gguf.GGUFWriter, config: Any, keys: dict[str, str]) -> None:
    """Write each `config` attribute under its GGUF key. `keys` maps the key (its writer method, `add_` left off) to
    the attribute: `{"block_count": "num_hidden_layers"}` calls `writer.add_block_count(config.num_hidden_layers)`."""
    for key, attribute in keys.items():
        getattr(writer, f"add_{key}")(getattr(config, attribute))


def write_out(writer: gguf.GGUFWriter) -> None:
    """Write what `writer` holds in GGUF's order (header, key-values, tensors) and close the file."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
