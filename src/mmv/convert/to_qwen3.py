"""`--to qwen3`: the language model alone as a native Qwen3 / Qwen3-MoE folder (no remote code).

MiniMind is the Qwen3 architecture with identical parameter names (REFERENCE.md section 1), so the tensors are
written unchanged. For MoE, transformers 5 fuses the experts into `gate_up_proj` / `down_proj` tensors in memory
but reads and writes the per-expert `mlp.experts.{e}.{gate,up,down}_proj.weight` keys on disk (a conversion
mapping applied on load, reversed on save) - the layout of the published Qwen3-MoE checkpoints, which is exactly
MiniMind's. The config is built with the installed transformers' own config classes so its fields are valid there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmv.config import VLMConfig
from mmv.convert import model_card
from mmv.convert.output import staged_dir
from mmv.convert.sources import Source
from mmv.convert.to_transformers import generation_config, write_json
from mmv.convert.weights import cast, dtype_name, reference_order, stored_once
from mmv.layout import WEIGHT_FILES


def qwen3_class(config: VLMConfig) -> str:
    return "Qwen3MoeForCausalLM" if config.use_moe else "Qwen3ForCausalLM"


def rope_parameters(config: VLMConfig) -> dict[str, Any]:
    """mmv's RoPE in transformers' schema; YaRN only where mmv applies it (a context longer than the original)."""
    scaling = config.rope_scaling
    original = (scaling or {}).get("original_max_position_embeddings", 2048)
    if not scaling or config.max_position_embeddings <= original:
        return {"rope_type": "default", "rope_theta": config.rope_theta}
    return {
        "rope_type": "yarn",
        "rope_theta": config.rope_theta,
        "factor": float(scaling.get("factor", 16)),
        "original_max_position_embeddings": original,
        "beta_fast": float(scaling.get("beta_fast", 32.0)),
        "beta_slow": float(scaling.get("beta_slow", 1.0)),
        # transformers would otherwise derive 0.1 * ln(factor) + 1; mmv and the reference use 1.0
        "attention_factor": float(scaling.get("attention_factor", 1.0)),
    }


# VLMConfig fields that Qwen3Config (and Qwen3MoeConfig) take under the same name and with the same meaning
SAME_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
    "intermediate_size", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings", "bos_token_id",
    "eos_token_id", "pad_token_id",
)  # fmt: skip
SAME_MOE_FIELDS = (
    "num_experts",
    "num_experts_per_tok",
    "moe_intermediate_size",
    "norm_topk_prob",
    "router_aux_loss_coef",
)


def qwen3_config(config: VLMConfig, dtype: torch.dtype) -> Any:
    from transformers import Qwen3Config, Qwen3MoeConfig

    common = {name: getattr(config, name) for name in SAME_FIELDS}
    common.update(
        hidden_act="silu",
        rope_parameters=rope_parameters(config),
        attention_bias=False,
        attention_dropout=0.0,
        use_sliding_window=False,
        dtype=dtype_name(dtype),
    )
    if config.use_moe:
        moe = {name: getattr(config, name) for name in SAME_MOE_FIELDS}
        result = Qwen3MoeConfig(**common, **moe, decoder_sparse_step=1, mlp_only_layers=[])
    else:
        result = Qwen3Config(**common)
    result.architectures = [qwen3_class(config)]
    return result


def write_qwen3(source: Source, out: Path, dtype: torch.dtype, force: bool) -> list[Path]:
    from safetensors.torch import save_file

    tokenizer = source.tokenizer()
    llm = {k: v for k, v in source.state_dict.items() if not k.startswith("vision_proj.")}
    state = stored_once(reference_order(cast(llm, dtype), source.config, True), source.config)
    params = sum(v.numel() for v in state.values())
    with staged_dir(out, force) as work:
        save_file(state, str(work / WEIGHT_FILES[0]), metadata={"format": "pt"})
        qwen3_config(source.config, dtype).save_pretrained(str(work))
        write_json(work / "generation_config.json", generation_config(source))
        tokenizer.save_pretrained(str(work))
        card = model_card.qwen3_card(
            out.name, source.config, params, dtype_name(dtype), qwen3_class(source.config), str(source.origin)
        )
        (work / "README.md").write_text(card)
        files = sorted(p.relative_to(work) for p in work.rglob("*") if p.is_file())
    return [out / f for f in files]
