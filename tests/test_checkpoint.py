"""Safe, strict loading: variants from shapes, folders without code, clear refusals."""

from __future__ import annotations

import pytest
import torch

from mmv.checkpoint import detect_variant, load_weights, read_checkpoint, read_state_dict
from mmv.config import VLMConfig
from mmv.errors import MmvError
from mmv.model.vision import EncoderInfo
from mmv.model.vlm import MiniMindVLM
from tests.conftest import REFERENCE, fixture_cases, load_fixture_model


def test_sizes_are_read_off_the_tensors():
    config = read_checkpoint(REFERENCE / "p32-moe" / "model.pth", encoder_hidden=32).config
    assert (
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.num_key_value_heads,
        config.head_dim,
        config.intermediate_size,
    ) == (64, 3, 4, 2, 16, 160)
    assert config.use_moe and config.num_experts == 4 and config.image_hidden_size == 32


def test_full_size_widths_need_no_encoder_hint():
    assert (
        detect_variant(
            {
                "vision_proj.mlp.0.weight": torch.zeros(768),
                "vision_proj.mlp.1.weight": torch.zeros(1),
                "vision_proj.mlp.3.weight": torch.zeros(1),
            }
        )
        == "p32-256"
    )
    assert (
        detect_variant(
            {
                "vision_proj.mlp.0.weight": torch.zeros(3072),
                "vision_proj.mlp.1.weight": torch.zeros(1),
                "vision_proj.mlp.3.weight": torch.zeros(1),
            }
        )
        == "p16-256"
    )


def test_transformers_folder_loads_without_running_code():
    folder = REFERENCE / "p32" / "hf-upstream"
    assert not list(folder.glob("*.py"))
    model = load_fixture_model("p32")
    checkpoint = read_checkpoint(folder, encoder_hidden=32)
    fresh = MiniMindVLM(checkpoint.config, model.vision_encoder).eval()
    load_weights(fresh, checkpoint)
    cases = fixture_cases("p32")
    with torch.no_grad():
        logits = fresh(cases["text_input_ids"]).logits
    torch.testing.assert_close(logits, cases["text_logits"], atol=1e-4, rtol=0)


def test_text_only_llm_weights_load_with_a_fresh_projector():
    checkpoint = read_checkpoint(REFERENCE / "p32" / "llm.pth")
    assert checkpoint.text_only
    model = MiniMindVLM(checkpoint.config.replace(image_hidden_size=32)).eval()
    load_weights(model, checkpoint)
    cases = fixture_cases("p32")
    with torch.no_grad():
        logits = model(cases["text_input_ids"]).logits
    torch.testing.assert_close(logits, cases["text_logits"], atol=1e-4, rtol=0)


def test_naflex_checkpoint_refuses_a_p32_model():
    checkpoint = read_checkpoint(REFERENCE / "naflex-merge4" / "model.pth", encoder_hidden=32)
    assert checkpoint.config.vision_variant == "p16-naflex"
    wrong = MiniMindVLM(checkpoint.config.replace(vision_variant="p16-256"))
    with pytest.raises(MmvError, match=r"missing|unexpected|shape"):
        load_weights(wrong, checkpoint)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = read_state_dict(REFERENCE / "p32" / "model.pth")
    state.pop("model.layers.1.mlp.up_proj.weight")
    state["model.layers.0.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "broken.pth")
    checkpoint = read_checkpoint(tmp_path / "broken.pth", encoder_hidden=32)
    with pytest.raises(
        MmvError,
        match=r"missing 1 key\(s\) such as model.layers.1.mlp.up_proj.weight; "
        r"unexpected 1 key\(s\) such as model.layers.0.extra.weight",
    ):
        load_weights(MiniMindVLM(checkpoint.config), checkpoint)


def test_todays_llm_with_a_minimind2_projector_is_refused(tmp_path):
    state = read_state_dict(REFERENCE / "p32" / "llm.pth")
    state["vision_proj.vision_proj.0.weight"] = torch.zeros(64, 768)  # MiniMind2-V's Linear beside q/k norms
    torch.save(state, tmp_path / "mixed.pth")
    with pytest.raises(MmvError, match=r"MiniMind2-V projector .* matches no generation"):
        read_checkpoint(tmp_path / "mixed.pth")


def test_ambiguous_width_without_encoder_is_refused():
    state = read_state_dict(REFERENCE / "p32" / "model.pth")
    with pytest.raises(MmvError, match="fits neither a p32-256 nor a p16-256 encoder") as failure:
        detect_variant(state)
    assert failure.value.options == ("vision",)


def test_pickles_with_code_are_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(MmvError, match="weights-only"):
        read_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(MmvError, match="cannot read checkpoint"):
        read_state_dict(tmp_path / "garbage.pth")
    with pytest.raises(MmvError, match="does not exist"):
        read_state_dict(tmp_path / "absent.pth")


def test_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    state = read_state_dict(REFERENCE / "p32" / "model.pth")
    state["lm_head.weight"] = state["lm_head.weight"].clone()
    save_file(state, str(tmp_path / "m.safetensors"))
    assert read_checkpoint(tmp_path / "m.safetensors", encoder_hidden=32).config.vision_variant == "p32-256"


def test_unknown_variant_is_refused():
    with pytest.raises(MmvError, match="unknown vision variant"):
        VLMConfig(vision_variant="p8-1024")


def broken(tmp_path, change) -> str:
    """The p32 fixture with one tensor changed by `change(state)`, saved as a .pth."""
    state = read_state_dict(REFERENCE / "p32" / "model.pth")
    change(state)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    return path


Q_NORM = "model.layers.0.self_attn.q_norm.weight"
EMBED = "model.embed_tokens.weight"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update({Q_NORM: torch.zeros(0)}), rf"{Q_NORM} is empty \(shape \(0,\)\)"),
        (lambda s: s.update({EMBED: s[EMBED].flatten()}), rf"{EMBED} has shape \(409600,\); expected a 2-D tensor"),
        (lambda s: s.update({Q_NORM: torch.ones(24)}), "are not whole heads of q_norm.s 24"),
        (
            lambda s: s.update({"model.layers.1.self_attn.k_norm.weight": torch.ones(8)}),
            r"k_norm.weight has shape \(8,\), expected \(16,\)",
        ),
        (
            lambda s: s["model.layers.2.mlp.up_proj.weight"].__setitem__((3, 5), float("nan")),
            "up_proj.weight holds NaN",
        ),
        (lambda s: s["model.norm.weight"].__setitem__(0, float("inf")), "model.norm.weight holds NaN or infinite"),
        (lambda s: s.update({EMBED: s[EMBED].to(torch.int64)}), f"{EMBED} holds int64 values; weights are floating"),
        (lambda s: s.update({"lm_head.weight": s["lm_head.weight"] > 0}), "lm_head.weight holds bool values"),
    ],
)
def test_bad_tensors_are_refused_where_they_are_read(tmp_path, change, message):
    path = broken(tmp_path, change)
    with pytest.raises(MmvError, match=message) as failure:
        read_checkpoint(path, encoder_hidden=32)
    assert str(path) in str(failure.value)


def folder_with_config(tmp_path, edit) -> object:
    import json
    import shutil

    folder = tmp_path / "tf"
    shutil.copytree(REFERENCE / "p32" / "hf-upstream", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(edit(config)))
    return folder


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: [c], "holds a list, expected a JSON object"),
        (lambda c: {**c, "num_attention_heads": "4"}, "num_attention_heads must be an integer, got '4'"),
        (lambda c: {**c, "rope_theta": "1e6"}, "rope_theta must be a number, got '1e6'"),
        (lambda c: {**c, "rope_scaling": [16]}, r"rope_scaling must be an object or null, got \[16\]"),
        (lambda c: {**c, "image_ids": 12}, "image_ids must be a list, got 12"),
        (lambda c: {**c, "num_key_value_heads": 0}, "num_key_value_heads must be at least 1, got 0"),
        (lambda c: {**c, "use_moe": "false"}, "use_moe must be true or false"),
        # found by tests/cli/test_fuzz.py: each crashed (TypeError, ZeroDivisionError, ValueError, IndexError,
        # an allocation of terabytes) once a model was built or run
        (
            lambda c: {**c, "rope_scaling": {"factor": "16", "original_max_position_embeddings": 2048}},
            "rope_scaling factor must be a positive number, got '16'",
        ),
        (
            lambda c: {**c, "rope_scaling": {"factor": 16, "original_max_position_embeddings": 0}},
            "rope_scaling original_max_position_embeddings must be a positive integer, got 0",
        ),
        (
            lambda c: {**c, "rope_scaling": {"beta_fast": -1.0, "original_max_position_embeddings": 2048}},
            "rope_scaling beta_fast must be a positive number, got -1.0",
        ),
        (
            lambda c: {**c, "rope_scaling": {"attention_factor": float("inf")}},
            "rope_scaling attention_factor must be a positive number, got inf",
        ),
        (
            lambda c: {**c, "rope_theta": 1.0, "rope_scaling": {"factor": 16}},
            "rope_theta must be greater than 1 with rope_scaling, got 1.0",
        ),
        (lambda c: {**c, "rope_theta": float("nan")}, "rms_norm_eps and rope_theta must be positive and finite"),
        (lambda c: {**c, "pad_token_id": 6400}, "pad_token_id 6400 is not a token of the 6400-token vocabulary"),
        (lambda c: {**c, "image_ids": [12, -1]}, r"image_ids must be a non-empty list of token ids, got \[12, -1\]"),
        (lambda c: {**c, "image_ids": [70000]}, "image_ids 70000 is not a token of the 6400-token vocabulary"),
        (
            lambda c: {**c, "max_position_embeddings": 2**40},
            "max_position_embeddings 1099511627776 is more than mmv supports",
        ),
    ],
)
def test_bad_folder_configs_are_refused_naming_the_file(tmp_path, edit, message):
    folder = folder_with_config(tmp_path, edit)
    with pytest.raises(MmvError, match=message) as failure:
        read_checkpoint(folder)
    assert str(folder / "config.json") in str(failure.value)


DINO = EncoderInfo("dinov2", "dinov2_with_registers", 32, 112, 14, None)  # an 8x8 grid of 32-wide patches


def saved_model(tmp_path, vision) -> object:
    """A bare .pth of a tiny model with this vision config: nothing but tensors."""
    from mmv.config import preset

    path = tmp_path / "model.pth"
    torch.save(MiniMindVLM(preset("tiny").replace(vision=vision)).checkpoint_state_dict(), path)
    return path


@pytest.mark.parametrize(("projector", "merge"), [("ln-mlp", 2), ("linear", 1), ("mlp", 4)])
def test_a_bare_checkpoint_over_another_family_reads_its_merge_off_the_encoder_width(tmp_path, projector, merge):
    vision = DINO.vision(projector, merge)
    checkpoint = read_checkpoint(saved_model(tmp_path, vision), encoder=DINO)
    assert checkpoint.config.vision == vision and checkpoint.config.image_hidden_size == 32
    assert checkpoint.config.image_token_len == (8 // merge) ** 2


@pytest.mark.parametrize(
    ("vision", "encoder", "message"),
    [
        (DINO.vision("linear", 1), None, "linear projector records no vision config"),
        (DINO.vision("ln-mlp", 2), None, "fits neither a p32-256 nor a p16-256 encoder"),
        (DINO.vision("ln-mlp", 2), EncoderInfo("dinov2", "dinov2", 48, 112, 14, None), "no merge of the 48-wide"),
        (DINO.vision("mlp", 1), EncoderInfo("dinov2", "dinov2", 16, 112, 14, None), "no merge of the 16-wide"),
    ],
)
def test_a_bare_checkpoint_that_cannot_be_read_names_the_encoder_setting(tmp_path, vision, encoder, message):
    with pytest.raises(MmvError, match=message) as failure:
        read_checkpoint(saved_model(tmp_path, vision), encoder=encoder)
    assert failure.value.options == ("vision",)


def test_what_a_folder_records_must_fit_its_projector(tmp_path):
    from mmv.config import VisionConfig

    recorded = VisionConfig("siglip", 256, 32, None, "mlp", 1)
    folder = folder_with_config(tmp_path, lambda c: {**c, "vision": recorded.__dict__})
    with pytest.raises(MmvError, match=r"the ln-mlp projector taking 32-wide tokens does not match the recorded"):
        read_checkpoint(folder)
    folder = folder_with_config(tmp_path / "b", lambda c: {**c, "vision_variant": "p16-naflex"})
    with pytest.raises(MmvError, match=r"does not match the recorded vision config \(p16-naflex encoder"):
        read_checkpoint(folder)
