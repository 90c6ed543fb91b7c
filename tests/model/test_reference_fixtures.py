"""The VLM against the reference implementation's golden outputs, for all four fixture variants."""

from __future__ import annotations

import torch

from tests.conftest import FIXTURE_VARIANTS, fixture_cases, load_fixture_model, pixel_inputs

ATOL = 1e-4


def test_variant_detected(fixture_name):
    model = load_fixture_model(fixture_name)
    assert model.config.vision_variant == FIXTURE_VARIANTS[fixture_name]
    assert model.config.use_moe == fixture_name.endswith("moe")


def test_vision_features_projection_and_logits(fixture_name):
    model, cases = load_fixture_model(fixture_name), fixture_cases(fixture_name)
    with torch.no_grad():
        features = model.vision_encoder(**pixel_inputs(cases)).last_hidden_state
        projected = model.encode_images(pixel_inputs(cases))
        logits = model(cases["input_ids"], image_embeds=projected).logits
    torch.testing.assert_close(features, cases["vision_features"], atol=ATOL, rtol=0)
    torch.testing.assert_close(projected, cases["projected"], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits, cases["logits"], atol=ATOL, rtol=0)


def test_text_only_logits_and_loss(fixture_name):
    model, cases = load_fixture_model(fixture_name), fixture_cases(fixture_name)
    ids = cases["text_input_ids"]
    with torch.no_grad():
        out = model(ids, labels=ids)
    torch.testing.assert_close(out.logits, cases["text_logits"], atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss.reshape(1), cases["text_loss"], atol=1e-5, rtol=0)


def test_float16_checkpoint_matches_float32_logits(fixture_name):
    model, cases = load_fixture_model(fixture_name, "model_fp16.pth"), fixture_cases(fixture_name)
    with torch.no_grad():
        logits = model(cases["input_ids"], pixel_inputs=pixel_inputs(cases)).logits
    # fp16 storage rounds every weight; the logits stay close to the fp32 reference
    assert (logits - cases["logits"]).abs().max() < 5e-2
    assert torch.equal(logits[0, -1].argmax(), cases["logits"][0, -1].argmax())
