"""Tensor bookkeeping shared by the writers: output dtype, and tied embeddings stored once or twice."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmv.config import VLMConfig
from mmv.errors import MmvError

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "float16", "bfloat16")
EMBED, LM_HEAD = "model.embed_tokens.weight", "lm_head.weight"


def parse_dtype(name: str | None) -> torch.dtype | None:
    import torch

    if name is None:
        return None
    if name not in DTYPES:
        raise MmvError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating tensors in `dtype`, each its own contiguous copy (safetensors refuses shared or strided storage)."""
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().clone() for k, v in state.items()}


def settle_tying(state: dict[str, torch.Tensor], config: VLMConfig) -> VLMConfig:
    """A checkpoint whose lm_head differs from its embeddings is untied, whatever its config says."""
    import torch

    if config.tie_word_embeddings and LM_HEAD in state and not torch.equal(state[LM_HEAD], state[EMBED]):
        return config.replace(tie_word_embeddings=False)
    if not config.tie_word_embeddings and LM_HEAD not in state:
        raise MmvError("the checkpoint has no lm_head.weight but its config says the embeddings are not tied")
    return config


def stored_once(state: dict[str, torch.Tensor], config: VLMConfig) -> dict[str, torch.Tensor]:
    """The transformers convention: a tied lm_head is not written (it is re-tied on load)."""
    if config.tie_word_embeddings:
        return {k: v for k, v in state.items() if k != LM_HEAD}
    return dict(state)


def reference_order(state: dict[str, torch.Tensor], config: VLMConfig, text_only: bool) -> dict[str, torch.Tensor]:
    """The reference `.pth` layout: every key in module order (as the reference saves), a tied lm_head included.

    Any missing or unexpected key fails here, so a writer never emits a checkpoint that would not load strictly.
    """
    import torch

    from mmv.model.vlm import MiniMindVLM

    with torch.device("meta"):
        expected = list(MiniMindVLM(config).checkpoint_state_dict())
    if text_only:
        expected = [k for k in expected if not k.startswith("vision_proj.")]
    state = dict(state)
    if config.tie_word_embeddings:  # one shared tensor (settle_tying made sure they are equal): a canonical file
        state[LM_HEAD] = state[EMBED]
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        parts = [f"missing {sorted(missing)[0]}"] if missing else []
        parts += [f"unexpected {sorted(unexpected)[0]}"] if unexpected else []
        raise MmvError(f"the checkpoint does not match the model its tensors describe: {'; '.join(parts)}")
    return {k: state[k] for k in expected}
