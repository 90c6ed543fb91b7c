"""The language model, its tokenizer and chat template as one llama.cpp GGUF file.

MiniMind is llama.cpp's `qwen3` architecture (q/k RMSNorm, NEOX-style half-split RoPE, sequential positions) and,
with experts, `qwen3moe` (softmax router over all experts, top-k, renormalised weights). Tensor names come from the
`gguf` package's own map of the Qwen3 layout, which MiniMind's keys equal. The tokenizer is written as GPT-2
byte-level BPE with the `gpt-2` pre-tokenizer: llama.cpp's HF converter cannot name MiniMind's pre-tokenizer, but
its split is exactly GPT-2's (the tests compare both tokenizers on varied text).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.config import VLMConfig
from mmv.convert.gguf_tensors import add_tensor, copy_fields, file_type, mapped_name, write_out
from mmv.convert.to_qwen3 import rope_parameters
from mmv.convert.weights import LM_HEAD
from mmv.errors import MmvError

if TYPE_CHECKING:
    import gguf
    import torch
    from transformers import PreTrainedTokenizerFast

EXPERT_PARTS = ("gate_proj", "up_proj", "down_proj")
# llama.cpp's hyperparameter keys (gguf_tensors.copy_fields) -> the VLMConfig fields they copy
TEXT_KEYS = {
    "context_length": "max_position_embeddings",
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "block_count": "num_hidden_layers",
    "head_count": "num_attention_heads",
    "head_count_kv": "num_key_value_heads",
    "key_length": "head_dim",
    "value_length": "head_dim",
    "rope_freq_base": "rope_theta",
    "layer_norm_rms_eps": "rms_norm_eps",
}
EXPERT_KEYS = {
    "expert_count": "num_experts",
    "expert_used_count": "num_experts_per_tok",
    "expert_feed_forward_length": "moe_intermediate_size",
}
# what llama.cpp's byte-level BPE ("gpt2" model, "gpt-2" pre-tokenizer) does; anything else would split differently
GPT2_PRE_TOKENIZER = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}


def check_expressible(config: VLMConfig) -> None:
    if config.use_moe and not config.norm_topk_prob:
        raise MmvError(
            "llama.cpp's qwen3moe always renormalises the top-k router weights, but this model does not "
            "(norm_topk_prob false); a GGUF would answer differently, so none is written"
        )


def write_language_model(
    path: Path, state: dict[str, torch.Tensor], config: VLMConfig, tokenizer: PreTrainedTokenizerFast, outtype: str
) -> None:
    """`state` in the reference layout (vision_proj.* is left out); `path` is written in place."""
    import gguf

    check_expressible(config)
    arch = gguf.MODEL_ARCH.QWEN3MOE if config.use_moe else gguf.MODEL_ARCH.QWEN3
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    add_hparams(writer, config, outtype, path.stem)
    add_tokenizer(writer, tokenizer, config.vocab_size)
    for name, tensor in gguf_tensors(state, config, arch):
        add_tensor(writer, name, tensor, outtype)
    write_out(writer)


def add_hparams(writer: gguf.GGUFWriter, config: VLMConfig, outtype: str, name: str) -> None:
    import gguf

    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_file_type(file_type(outtype))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    copy_fields(writer, config, TEXT_KEYS)
    rope = rope_parameters(config)  # YaRN only where mmv applies it
    if rope["rope_type"] == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(rope["factor"])
        writer.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        writer.add_rope_scaling_yarn_beta_fast(rope["beta_fast"])
        writer.add_rope_scaling_yarn_beta_slow(rope["beta_slow"])
        # llama.cpp scales cos and sin by YaRN's 1 + 0.1 ln(factor) and then by this key; mmv (like the reference)
        # scales them by attention_factor alone, so the key cancels llama.cpp's term
        writer.add_rope_scaling_attn_factors(rope["attention_factor"] / (1 + 0.1 * math.log(rope["factor"])))
    if config.use_moe:
        copy_fields(writer, config, EXPERT_KEYS)


def gguf_tensors(
    state: dict[str, torch.Tensor], config: VLMConfig, arch: gguf.MODEL_ARCH
) -> Iterator[tuple[str, torch.Tensor]]:
    """(GGUF name, tensor) pairs; a tied lm_head is left out (llama.cpp reuses token_embd), experts are stacked."""
    import gguf
    import torch

    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    for key, tensor in state.items():
        if key.startswith("vision_proj.") or ".mlp.experts." in key:
            continue
        if key == LM_HEAD and config.tie_word_embeddings:
            continue
        yield mapped_name(names, key), tensor
    if not config.use_moe:
        return
    for layer in range(config.num_hidden_layers):
        prefix = f"model.layers.{layer}.mlp.experts"
        for part in EXPERT_PARTS:
            experts = [state[f"{prefix}.{e}.{part}.weight"] for e in range(config.num_experts)]
            yield mapped_name(names, f"{prefix}.{part}.weight"), torch.stack(experts)


def add_tokenizer(writer: gguf.GGUFWriter, tokenizer: PreTrainedTokenizerFast, vocab_size: int) -> None:
    import gguf

    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    check_byte_level_bpe(backend)
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise MmvError(f"the tokenizer has ids up to {max(vocab.values())} but the model only {vocab_size} embeddings")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]  # llama.cpp's converter fills holes the same way
    types = [gguf.TokenType.UNUSED] * vocab_size
    added = tokenizer.added_tokens_decoder
    for text, index in vocab.items():
        tokens[index] = text
        types[index] = token_type(text, added[index].special if index in added else None)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in backend["model"]["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    # MiniMind's chat template writes <|im_start|> itself: nothing is added around the text
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_chat_template(tokenizer.chat_template)


def check_byte_level_bpe(backend: dict[str, Any]) -> None:
    model, pre = backend.get("model", {}), backend.get("pre_tokenizer") or {}
    byte_level = {k: pre.get(k) for k in GPT2_PRE_TOKENIZER} == GPT2_PRE_TOKENIZER
    plain_bpe = model.get("type") == "BPE" and not model.get("byte_fallback") and not model.get("dropout")
    if not (byte_level and plain_bpe and backend.get("normalizer") is None):
        raise MmvError(
            "the tokenizer is not plain GPT-2 byte-level BPE (pre-tokenizer "
            f"{pre.get('type')}, model {model.get('type')}); llama.cpp would split text differently, "
            "so no GGUF is written"
        )


def token_type(text: str, special: bool | None) -> gguf.TokenType:
    """llama.cpp's converter's rule: added tokens are control tokens when special or shaped like `<|...|>`."""
    import gguf

    if special is None:
        return gguf.TokenType.NORMAL
    if special or (text.startswith("<|") and text.endswith("|>")):
        return gguf.TokenType.CONTROL
    return gguf.TokenType.USER_DEFINED
