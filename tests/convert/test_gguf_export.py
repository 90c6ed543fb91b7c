"""`--to gguf` as files: every tensor and metadata key read back with the gguf package's own reader, what each
variant exports, and every refusal in one sentence with nothing written. (llama.cpp itself runs the files in
test_gguf_llama_cpp.py.)"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mmv.errors import MmvError
from tests.cli.conftest import run_cli
from tests.conftest import REFERENCE, TOKENIZER_DIR, fixture_base_config
from tests.convert.gguf_exports import Exports
from tests.convert.test_convert_cli import assert_refused, leftovers


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Exports:
    return Exports(tmp_path_factory.mktemp("gguf"))


def read(path):
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    fields = {key: field.contents() for key, field in reader.fields.items()}
    return fields, {tensor.name: tensor for tensor in reader.tensors}


def values(tensor) -> torch.Tensor:
    """A tensor as PyTorch holds it (GGUF stores the shape reversed), dequantised when quantised."""
    from gguf.quants import dequantize

    array = dequantize(tensor.data, tensor.tensor_type).reshape([int(n) for n in reversed(tensor.shape)])
    return torch.from_numpy(np.array(array, dtype=np.float32))


def reference_state(name: str, weights: str = "model.pth") -> dict[str, torch.Tensor]:
    return torch.load(REFERENCE / name / weights, weights_only=True)


@pytest.mark.parametrize("name", ["p32", "p32-moe"])
def test_language_model_reads_back_exactly(exports, name):
    from mmv.tokenizer import load_tokenizer

    fields, tensors = read(exports.model(name))
    state, moe = reference_state(name), name.endswith("moe")
    arch = "qwen3moe" if moe else "qwen3"
    assert fields["general.architecture"] == arch and fields["general.type"] == "model"
    assert fields[f"{arch}.block_count"] == 3 and fields[f"{arch}.embedding_length"] == 64
    assert fields[f"{arch}.attention.head_count"] == 4 and fields[f"{arch}.attention.head_count_kv"] == 2
    assert fields[f"{arch}.attention.key_length"] == 16 and fields[f"{arch}.rope.freq_base"] == 1e6
    assert fields[f"{arch}.feed_forward_length"] == 160 and fields[f"{arch}.attention.value_length"] == 16
    assert fields[f"{arch}.context_length"] == fixture_base_config(name).max_position_embeddings
    assert abs(fields[f"{arch}.attention.layer_norm_rms_epsilon"] - 1e-6) < 1e-12
    assert f"{arch}.rope.scaling.type" not in fields  # no YaRN unless mmv applies it
    if moe:
        assert fields["qwen3moe.expert_count"] == 4 and fields["qwen3moe.expert_used_count"] == 2
        assert fields["qwen3moe.expert_feed_forward_length"] == 160
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    assert torch.equal(values(tensors["token_embd.weight"]), state["model.embed_tokens.weight"])
    assert torch.equal(values(tensors["blk.2.attn_k_norm.weight"]), state["model.layers.2.self_attn.k_norm.weight"])
    assert torch.equal(values(tensors["blk.1.attn_output.weight"]), state["model.layers.1.self_attn.o_proj.weight"])
    if moe:
        assert torch.equal(values(tensors["blk.1.ffn_gate_inp.weight"]), state["model.layers.1.mlp.gate.weight"])
        stacked = torch.stack([state[f"model.layers.1.mlp.experts.{e}.down_proj.weight"] for e in range(4)])
        assert torch.equal(values(tensors["blk.1.ffn_down_exps.weight"]), stacked)
    else:
        assert torch.equal(values(tensors["blk.0.ffn_up.weight"]), state["model.layers.0.mlp.up_proj.weight"])
    assert not any(name.startswith(("v.", "mm.")) for name in tensors)
    tokenizer = load_tokenizer(TOKENIZER_DIR)
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["tokenizer.chat_template"] == tokenizer.chat_template
    assert (fields["tokenizer.ggml.bos_token_id"], fields["tokenizer.ggml.eos_token_id"]) == (1, 2)
    assert fields["tokenizer.ggml.add_bos_token"] is False and fields["tokenizer.ggml.add_eos_token"] is False
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    assert len(tokens) == 6400 and tokens[12] == "<|image_pad|>" and tokens[25] == "<think>"
    assert (types[12], types[25], types[500]) == (3, 4, 1)  # control, user-defined (not special), normal


def test_outtypes_quantise_matrices_and_keep_vectors_float32(exports):
    from gguf import GGMLQuantizationType as Q

    state = reference_state("p32-moe")
    for outtype, matrix_type, file_type in [("f16", Q.F16, 1), ("q8_0", Q.Q8_0, 7)]:
        fields, tensors = read(exports.model("p32-moe", outtype))
        assert fields["general.file_type"] == file_type
        assert tensors["blk.0.attn_q.weight"].tensor_type == matrix_type
        assert tensors["blk.0.ffn_up_exps.weight"].tensor_type == matrix_type
        assert tensors["token_embd.weight"].tensor_type == matrix_type
        for vector in ("blk.0.ffn_gate_inp.weight", "blk.0.attn_norm.weight", "blk.0.attn_q_norm.weight"):
            assert tensors[vector].tensor_type == Q.F32, vector
        source = state["model.layers.0.self_attn.q_proj.weight"]
        error = (values(tensors["blk.0.attn_q.weight"]) - source).abs().max() / source.abs().max()
        assert 0 < error < (1e-3 if outtype == "f16" else 1e-2)


def test_float16_checkpoint_defaults_to_f16_without_loss(exports):
    fields, tensors = read(exports.model("p32", None, "model_fp16.pth"))
    state = reference_state("p32", "model_fp16.pth")
    assert fields["general.file_type"] == 1
    assert torch.equal(values(tensors["blk.2.ffn_down.weight"]), state["model.layers.2.mlp.down_proj.weight"].float())


def test_p16_256_gets_an_lfm2_mmproj(exports):
    from mmv.model.vision import load_encoder

    folder = exports.folder("p16-merge2x2")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "mmproj-p16-merge2x2-f32-model.gguf",
        "p16-merge2x2-f32-model.gguf",
    ]
    fields, tensors = read(exports.mmproj("p16-merge2x2"))
    assert fields["general.architecture"] == "clip" and fields["general.type"] == "mmproj"
    assert fields["clip.projector_type"] == "lfm2" and fields["clip.vision.projector.scale_factor"] == 2
    assert fields["clip.vision.projection_dim"] == 64 and fields["clip.vision.image_size"] == 256
    assert fields["clip.vision.patch_size"] == 16 and fields["clip.vision.block_count"] == 2
    assert fields["clip.vision.image_mean"] == [0.5, 0.5, 0.5] and fields["clip.use_gelu"] is True
    state, encoder = reference_state("p16-merge2x2"), load_encoder(REFERENCE / "p16-merge2x2" / "vision")
    vision = encoder.config
    assert fields["clip.vision.embedding_length"] == vision.hidden_size
    assert fields["clip.vision.feed_forward_length"] == vision.intermediate_size
    assert fields["clip.vision.attention.head_count"] == vision.num_attention_heads
    assert abs(fields["clip.vision.attention.layer_norm_epsilon"] - vision.layer_norm_eps) < 1e-9
    pairs = {"mm.input_norm.weight": "mlp.0.weight", "mm.1.weight": "mlp.1.weight", "mm.2.bias": "mlp.3.bias"}
    for gguf_name, key in pairs.items():
        assert torch.equal(values(tensors[gguf_name]), state[f"vision_proj.{key}"]), gguf_name
    weights = encoder.state_dict()
    assert torch.equal(values(tensors["v.patch_embd.weight"]), weights["embeddings.patch_embedding.weight"])
    assert torch.equal(values(tensors["v.blk.1.ffn_down.weight"]), weights["encoder.layers.1.mlp.fc2.weight"])
    assert torch.equal(values(tensors["v.post_ln.bias"]), weights["post_layernorm.bias"])
    assert not any(".head." in name for name in tensors) and "mmproj-" in (folder / "README.md").read_text()


@pytest.mark.parametrize(("name", "phrase"), [("p32", "p32-256's projector"), ("naflex-merge4", "p16-naflex")])
def test_variants_without_a_projector_type_export_the_language_model_and_say_why(tmp_path, name, phrase):
    source, out = str(REFERENCE / name / "model.pth"), str(tmp_path / "g")
    result = run_cli(["convert", source, "--to", "gguf", "--out", out, "--tokenizer", str(TOKENIZER_DIR), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert phrase in summary["note"] and "not exported" in summary["note"]
    assert summary["variant"] is None and summary["vision"] is None and summary["dtype"] == "f32"
    assert f"note: {summary['note']}" in " ".join(result.stderr.split())
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["README.md", "g.gguf"]
    assert summary["note"] in " ".join((tmp_path / "g" / "README.md").read_text().split())


def test_p16_256_without_its_encoder_says_how_to_add_it(tmp_path):
    from mmv.config import preset
    from mmv.convert import convert
    from mmv.model.vlm import MiniMindVLM

    # a full-width (768) projector: the tiny fixtures' 32-wide one cannot be told apart without its encoder
    model = MiniMindVLM(preset("tiny", vision_variant="p16-256", image_hidden_size=768))
    torch.save(model.checkpoint_state_dict(), tmp_path / "model.pth")
    result = convert(tmp_path / "model.pth", "gguf", tmp_path / "g", tokenizer=TOKENIZER_DIR)
    assert "--with-vision" in result.note and not list((tmp_path / "g").glob("mmproj-*"))


def test_text_only_llm_exports_without_a_note(tmp_path):
    from mmv.convert import convert

    result = convert(REFERENCE / "p32" / "llm.pth", "gguf", tmp_path / "g", tokenizer=TOKENIZER_DIR, outtype="q8_0")
    assert result.note is None and result.dtype == "q8_0" and result.variant is None
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["README.md", "g.gguf"]


@pytest.mark.parametrize(
    ("options", "phrases"),
    [
        (["--to", "gguf", "--dtype", "float16"], ["a dtype does not apply to GGUF", "(option: --dtype, --outtype)"]),
        (["--to", "transformers", "--outtype", "f16"], ["applies to GGUF only", "(option: --outtype, --dtype)"]),
        (
            ["--to", "gguf", "--outtype", "q4_0"],
            ["unknown GGUF output type 'q4_0'", "f32, f16, q8_0", "(option: --outtype)"],
        ),
    ],
)
def test_option_mixups_are_refused_before_reading(tmp_path, options, phrases):
    args = ["convert", str(REFERENCE / "p32" / "model.pth"), "--out", str(tmp_path / "g"), *options]
    assert_refused(run_cli([*args, "--tokenizer", str(TOKENIZER_DIR)]), *phrases)
    assert list(tmp_path.iterdir()) == []


def test_moe_without_renormalised_router_is_refused(tmp_path):
    from mmv.convert import convert

    base = fixture_base_config("p32-moe").replace(norm_topk_prob=False)
    with pytest.raises(MmvError, match="always renormalises"):
        convert(REFERENCE / "p32-moe" / "model.pth", "gguf", tmp_path / "g", tokenizer=TOKENIZER_DIR, base=base)
    assert leftovers(tmp_path) == [] and not (tmp_path / "g").exists()


def test_tokenizer_llama_cpp_would_split_differently_is_refused(tmp_path):
    from mmv.convert import convert

    folder = tmp_path / "tokenizer"
    shutil.copytree(TOKENIZER_DIR, folder)
    data = json.loads((folder / "tokenizer.json").read_text())
    data["pre_tokenizer"] = {"type": "Whitespace"}
    (folder / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(MmvError, match="not plain GPT-2 byte-level BPE"):
        convert(REFERENCE / "p32" / "model.pth", "gguf", tmp_path / "g", tokenizer=folder)
    assert leftovers(tmp_path) == [] and not (tmp_path / "g").exists()
