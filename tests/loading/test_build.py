"""The one builder: gathered inputs -> a model on a device and dtype, fresh or with its weights."""

from __future__ import annotations

import torch

from mmv.config import preset
from mmv.loading import gather, resolve_init
from mmv.loading.build import build_model
from tests.conftest import REFERENCE, TOKENIZER_DIR, fixture_cases

NAFLEX_VISION = REFERENCE / "naflex-merge4" / "vision"


def test_a_fresh_model_is_made_for_its_encoder_from_the_seed():
    inputs = gather("none", resolve=resolve_init, vision=NAFLEX_VISION, tokenizer=TOKENIZER_DIR, base=preset("tiny"))
    assert inputs.checkpoint is None and inputs.sources is None
    assert (inputs.config.vision_variant, inputs.config.image_hidden_size) == ("p16-naflex", 32)
    torch.manual_seed(3)
    first = build_model(inputs).state_dict()
    torch.manual_seed(3)
    second = build_model(inputs).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert first["model.embed_tokens.weight"].std().item() < 0.03  # drawn N(0, 0.02), not torch's N(0, 1)


def test_weights_land_on_the_dtype_asked_for():
    inputs = gather(REFERENCE / "p32" / "model.pth", tokenizer=TOKENIZER_DIR)
    model = build_model(inputs, "cpu", "bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.vision_encoder is not None and model.training
    exact = build_model(inputs).eval()
    cases = fixture_cases("p32")
    with torch.no_grad():
        logits = exact(cases["text_input_ids"]).logits
    torch.testing.assert_close(logits, cases["text_logits"], atol=1e-4, rtol=0)


def test_a_text_only_files_projector_is_drawn_from_the_seed_as_a_constructed_model_draws_it():
    """The demo and `pretrain --init llm.pth` start from such a file: its projector, and so the whole run, must be
    what the seed gave before weights were loaded into an unfilled model (the CLIP demo test caught the change)."""
    from mmv.model.vlm import MiniMindVLM

    inputs = gather(REFERENCE / "p32" / "llm.pth", tokenizer=TOKENIZER_DIR, need_vision=False)
    assert inputs.checkpoint is not None and inputs.checkpoint.text_only
    torch.manual_seed(5)
    built = build_model(inputs).vision_proj.state_dict()
    torch.manual_seed(5)
    constructed = MiniMindVLM(inputs.config).vision_proj.state_dict()
    assert built.keys() == constructed.keys()
    assert all(torch.equal(built[k], constructed[k]) for k in built)


def test_a_full_checkpoint_loads_into_an_unfilled_model_without_drawing():
    inputs = gather(REFERENCE / "p32" / "model.pth", tokenizer=TOKENIZER_DIR)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    model = build_model(inputs)
    assert torch.equal(torch.get_rng_state(), state)  # no random draws for weights a file overwrites
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    cases = fixture_cases("p32")
    with torch.no_grad():
        logits = model.eval()(cases["text_input_ids"]).logits
    torch.testing.assert_close(logits, cases["text_logits"], atol=1e-4, rtol=0)
