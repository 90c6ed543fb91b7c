"""MiniMind2-V checkpoints (mmv.generations) against the golden outputs of each era's own code.

../shared/fixtures/legacy/<generation>/ holds a tiny random model saved as that era saved it, and its outputs. One
finding about the 2502 fixture: its `logits` and `generated_greedy` equal a forward over the prompt without the
image (to 1e-5; with the image they differ by ~8), so the image never reached the era's model when they were made.
Its LLM is therefore checked on the prompt alone; its image path (the same CLIP features and Linear as 2510) is
checked through `projected`, and the splice through the 2510 fixture, whose logits do include the image.
"""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file

from mmv.checkpoint import read_checkpoint
from mmv.config import VLMConfig
from mmv.errors import MmvError
from mmv.generate import generate
from mmv.generations import MINIMIND2_FIELDS, MINIMIND2_VISION, detect_generation
from mmv.loading import gather, load_model
from mmv.loading.build import build_model
from mmv.model.layers import FeedForward
from mmv.model.moe import MoEFeedForward
from mmv.model.vlm import MiniMindVLM
from mmv.sampling import SamplingConfig
from mmv.tokenizer import encode, render_chat
from tests.conftest import SHARED

LEGACY = SHARED / "fixtures" / "legacy"
GENERATIONS = ("minimind2-v-2510", "minimind2-v-2502")
HEADS = 4  # the fixtures' head count, which a MiniMind2 checkpoint cannot tell
IMAGE_REACHED_MODEL = {"minimind2-v-2510": True, "minimind2-v-2502": False}  # see the module docstring


def era(generation: str):
    folder = LEGACY / generation
    assert folder.is_dir(), f"missing legacy fixtures at {folder}"
    return folder


def load(generation: str, weights: str = "model.pth"):
    folder = era(generation)
    return load_model(
        folder / weights,
        vision=folder / "vision",
        tokenizer=folder / "tokenizer",
        attention_heads=HEADS,
        device="cpu",
        dtype="float32",
    )


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("weights", ["model.pth", "model_fp16.pth"])
def test_logits_projector_and_greedy_match_the_era(generation, weights):
    loaded = load(generation, weights)
    cases = load_file(str(era(generation) / "cases.safetensors"))
    model, pixels = loaded.model, {"pixel_values": cases["pixel_values"]}
    assert any(n.startswith("read as MiniMind2-V") for n in loaded.notes)
    # fp16 files carry rounded weights: the fixtures' outputs are of the float32 ones
    logits_tol, projected_tol = (1e-4, 1e-5) if weights == "model.pth" else (5e-2, 2e-3)
    with torch.no_grad():
        features = model.image_features(pixels)
        projected = model.project_images(features)
        image = pixels if IMAGE_REACHED_MODEL[generation] else None
        logits = model(cases["input_ids"], pixel_inputs=image).logits
    assert torch.allclose(features[0], cases["vision_features"], atol=1e-5)
    assert torch.allclose(projected[0], cases["projected"], atol=projected_tol)
    assert (logits - cases["logits"]).abs().max() < logits_tol
    prompt = cases["input_ids"][0].tolist()
    reply = generate(model, [prompt], SamplingConfig(max_new_tokens=16, temperature=0.0), pixel_inputs=image)
    assert reply.tokens[0] == cases["generated_greedy"][0, len(prompt) :].tolist()


def test_the_2502_image_does_change_mmvs_answer():
    """The splice runs for 2502 too (the fixture's image did not): with the image the logits move."""
    loaded = load("minimind2-v-2502")
    cases = load_file(str(era("minimind2-v-2502") / "cases.safetensors"))
    with torch.no_grad():
        logits = loaded.model(cases["input_ids"], pixel_inputs={"pixel_values": cases["pixel_values"]}).logits
    first_image = int((cases["input_ids"][0] == 34).nonzero()[0])
    assert torch.allclose(logits[:, :first_image], cases["logits"][:, :first_image], atol=1e-4)
    assert (logits[:, first_image:] - cases["logits"][:, first_image:]).abs().max() > 1.0


@pytest.mark.parametrize("generation", GENERATIONS)
def test_the_eras_chat_template_and_placeholders(generation):
    """The era's template (its default system prompt) and 196 `@` give exactly the era's prompt ids."""
    loaded = load(generation)
    config = loaded.model.config
    assert (config.image_special_token, config.image_ids, config.image_token_len) == ("@", [34], 196)
    assert config.vision == MINIMIND2_VISION and not config.qk_norm and config.rms_norm_eps == 1e-5
    text = render_chat(
        loaded.tokenizer,
        [{"role": "user", "content": "<image>\nWhat is in this image?"}],
        tokens_per_image=config.image_token_len,
        image_token=config.image_special_token,
    )
    assert text == (era(generation) / "prompt.txt").read_text()
    cases = load_file(str(era(generation) / "cases.safetensors"))
    assert encode(loaded.tokenizer, text) == cases["input_ids"][0].tolist()


@pytest.mark.parametrize("generation", GENERATIONS)
def test_detection_and_its_note(generation):
    state = torch.load(era(generation) / "model.pth", weights_only=True)
    assert detect_generation(state) == generation
    inputs = gather(era(generation) / "model.pth", tokenizer=era(generation) / "tokenizer", need_vision=False)
    assert inputs.config.num_attention_heads == 8  # every MiniMind2 release's, said in the note
    note = next(n for n in inputs.notes if n.startswith("read as MiniMind2-V"))
    assert generation[-4:-2] in note and "8 attention heads" in note and note.option == "attention_heads"


def test_an_unknown_layout_is_refused_naming_what_it_holds(tmp_path):
    torch.save({"encoder.layer.0.weight": torch.ones(4, 4), "head.bias": torch.ones(4)}, tmp_path / "x.pth")
    with pytest.raises(MmvError, match=r"matches no generation|any MiniMind-V generation") as failure:
        read_checkpoint(tmp_path / "x.pth")
    assert "encoder.layer.0.weight (4, 4)" in str(failure.value) and "2 tensor(s)" in str(failure.value)


def test_a_2502_key_of_no_known_kind_is_refused(tmp_path):
    state = torch.load(era("minimind2-v-2502") / "model.pth", weights_only=True)
    state["layers.0.attention.rotary.weight"] = torch.ones(4)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(MmvError, match=r"no key like layers\.0\.attention\.rotary\.weight"):
        read_checkpoint(tmp_path / "odd.pth", base=VLMConfig(num_attention_heads=HEADS))


def test_heads_that_do_not_divide_the_query_rows_are_refused():
    with pytest.raises(MmvError, match="attention heads do not divide") as failure:
        gather(era("minimind2-v-2502") / "model.pth", attention_heads=5, need_tokenizer=False, need_vision=False)
    assert failure.value.options == ("attention_heads",)


def test_an_era_model_never_takes_todays_tokenizer_from_the_cache(tmp_path):
    model = tmp_path / "sft_vlm_512.pth"
    model.write_bytes((era("minimind2-v-2510") / "model.pth").read_bytes())
    with pytest.raises(MmvError, match="its own era's tokenizer") as failure:
        gather(model, need_vision=False)
    assert failure.value.options == ("tokenizer",)


# --- MoE: the fixtures are dense, so a tiny MoE of MiniMind2's design is saved in each era's layout ---


def era_moe_config(top_k: int) -> VLMConfig:
    return VLMConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        num_key_value_heads=2,
        intermediate_size=96,
        image_hidden_size=32,
        vision=MINIMIND2_VISION,
        use_moe=True,
        num_experts=4,
        num_experts_per_tok=top_k,
        num_shared_experts=1,
        **MINIMIND2_FIELDS,
    )


def as_2510(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.replace("vision_proj.mlp.", "vision_proj.vision_proj."): v for k, v in state.items()}


def as_2502(state: dict[str, torch.Tensor], head_dim: int) -> dict[str, torch.Tensor]:
    """The era's names, written independently of mmv.generations, and q/k rows back to interleaved pairs."""
    names = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3", "q_proj": "wq", "k_proj": "wk"}
    names |= {"v_proj": "wv", "o_proj": "wo"}
    out = {}
    for key, tensor in as_2510(state).items():
        key = key.replace("model.embed_tokens.", "tok_embeddings.").replace("lm_head.", "output.")
        key = key.replace("model.norm.", "norm.").replace("model.layers.", "layers.")
        key = key.replace(".self_attn.", ".attention.").replace(".input_layernorm.", ".attention_norm.")
        key = key.replace(".post_attention_layernorm.", ".ffn_norm.").replace(".mlp.", ".feed_forward.")
        key = key.replace("shared_experts.0.", "shared_experts.")  # the era's one shared expert, not in a list
        key = re.sub(rf"\.({'|'.join(names)})\.", lambda m: f".{names[m.group(1)]}.", key)
        if re.search(r"attention\.w[qk]\.", key):
            rows = tensor.shape[0]
            halves = tensor.reshape(rows // head_dim, 2, head_dim // 2, -1)
            tensor = halves.transpose(1, 2).reshape(rows, -1)
        out[key] = tensor.clone()
    return out


def era_moe_block(block: MoEFeedForward, x: torch.Tensor, top_k: int) -> torch.Tensor:
    """MiniMind2's MoE feed-forward as its code computes it: softmax router, top-k, weights renormalised only
    for k > 1, the shared expert added unweighted."""
    tokens = x.reshape(-1, x.shape[-1])
    scores = torch.softmax(tokens @ block.gate.weight.T, dim=-1)
    weight, index = torch.topk(scores, top_k, dim=-1, sorted=False)
    if top_k > 1:
        weight = weight / (weight.sum(-1, keepdim=True) + 1e-20)
    out = torch.zeros_like(tokens)
    for row in range(tokens.shape[0]):
        for slot in range(top_k):
            out[row] += weight[row, slot] * block.experts[int(index[row, slot])](tokens[row])
    shared: FeedForward = block.shared_experts[0]
    return (out + shared(tokens)).reshape(x.shape)


@pytest.mark.parametrize("top_k", [1, 2])
def test_the_moe_block_computes_minimind2s_routing(top_k):
    torch.manual_seed(0)
    block = MoEFeedForward(era_moe_config(top_k)).eval()
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        assert torch.allclose(block(x), era_moe_block(block, x, top_k), atol=1e-6)


@pytest.mark.parametrize("layout", ["minimind2-v-2510", "minimind2-v-2502"])
@pytest.mark.parametrize("top_k", [1, 2])
def test_a_minimind2_moe_saved_in_each_eras_layout_loads_to_equal_logits(tmp_path, layout, top_k):
    torch.manual_seed(1)
    original = MiniMindVLM(era_moe_config(top_k)).eval()
    original.init_fresh_weights(0.2)
    state = original.checkpoint_state_dict()
    saved = as_2510(state) if layout == "minimind2-v-2510" else as_2502(state, 64 // HEADS)
    torch.save(saved, tmp_path / "moe.pth")
    inputs = gather(
        tmp_path / "moe.pth",
        tokenizer=era(layout) / "tokenizer",
        need_vision=False,
        attention_heads=HEADS,
        experts_per_token=top_k,
    )
    assert inputs.checkpoint.generation == layout
    config = inputs.config
    assert (config.use_moe, config.num_experts, config.num_shared_experts, config.num_experts_per_tok) == (
        True,
        4,
        1,
        top_k,
    )
    loaded = build_model(inputs).eval()
    text = torch.randint(35, 6400, (1, 11))  # ids above the `@` placeholder
    ids = torch.cat([text[:, :3], torch.full((1, 196), 34), text[:, 3:]], dim=1)
    embeds = torch.randn(1, 196, 64)
    with torch.no_grad():
        want = original(ids, image_embeds=embeds).logits
        got = loaded(ids, image_embeds=embeds).logits
    assert torch.allclose(got, want, atol=1e-5)


# --- convert ---


@pytest.mark.parametrize("to", ["pth", "transformers"])
def test_convert_round_trip_keeps_the_logits(tmp_path, to):
    """2502 (the renamed, permuted layout) out to today's layout and read back: the same model."""
    from mmv.convert import convert

    folder = era("minimind2-v-2502")
    out = tmp_path / ("model.pth" if to == "pth" else "tf")
    convert(
        folder / "model.pth",
        to,
        out,
        dtype="float32",
        tokenizer=folder / "tokenizer",
        with_vision=folder / "vision",
        attention_heads=HEADS,
    )
    original, cases = load("minimind2-v-2502"), load_file(str(folder / "cases.safetensors"))
    back = load_model(out, vision=folder / "vision", tokenizer=folder / "tokenizer", attention_heads=HEADS)
    assert back.model.config == original.model.config
    pixels = {"pixel_values": cases["pixel_values"]}
    with torch.no_grad():
        want = original.model(cases["input_ids"], pixel_inputs=pixels).logits
        got = back.model(cases["input_ids"], pixel_inputs=pixels).logits
    assert torch.equal(got, want)


@pytest.mark.parametrize("to", ["qwen3", "gguf"])
def test_targets_that_cannot_express_minimind2_refuse(tmp_path, to):
    from mmv.convert import convert

    folder = era("minimind2-v-2510")
    with pytest.raises(MmvError, match=f"^{to} cannot express a MiniMind2-V model") as refused:
        convert(folder / "model.pth", to, tmp_path / "out", tokenizer=folder / "tokenizer", attention_heads=HEADS)
    assert refused.value.options == ("to",)
    assert not (tmp_path / "out").exists()
