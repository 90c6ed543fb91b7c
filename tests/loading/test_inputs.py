"""The encoder and tokenizer order (given > beside > recorded > cache), experts per token, the one fit check."""

from __future__ import annotations

import json
import shutil

import pytest

from mmv.errors import MmvError
from mmv.loading import gather
from tests.conftest import REFERENCE, TOKENIZER_DIR
from tests.loading.helpers import make_run_dir

MOE = REFERENCE / "p32-moe"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A download cache holding the p32 encoder and the llm tokenizer."""
    home = tmp_path / "cache"
    shutil.copytree(REFERENCE / "p32" / "vision", home / "siglip2-p32-256")
    (home / "llm").mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER_DIR / name, home / "llm" / name)
    monkeypatch.setenv("MMV_HOME", str(home))
    return home


def test_encoder_order_given_beside_recorded_cache(tmp_path, cache):
    run = make_run_dir(tmp_path / "run")
    recorded = MOE / "vision"
    assert gather(run).vision_dir == recorded
    shutil.copytree(REFERENCE / "p32" / "vision", run / "vision")  # the run's trained encoder
    assert gather(run).vision_dir == run / "vision"
    given = tmp_path / "given"
    shutil.copytree(REFERENCE / "p32" / "vision", given)
    assert gather(run, vision=given).vision_dir == given
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(MOE / "model.pth", bare / "model.pth")
    assert gather(bare / "model.pth", vision=recorded).vision_dir == recorded
    folder = tmp_path / "tf"
    shutil.copytree(REFERENCE / "p32" / "hf-upstream", folder)
    assert gather(folder).vision_dir == cache / "siglip2-p32-256"


def test_tokenizer_order_given_beside_recorded_cache(tmp_path, cache):
    other = tmp_path / "other-tokenizer"
    shutil.copytree(TOKENIZER_DIR, other)
    run = make_run_dir(tmp_path / "run", tokenizer=other)
    assert gather(run).tokenizer_dir == other
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER_DIR / name, run / name)
    assert gather(run).tokenizer_dir == run
    assert gather(run, tokenizer=TOKENIZER_DIR).tokenizer_dir == TOKENIZER_DIR
    shutil.rmtree(other)
    (run / "tokenizer.json").unlink()
    assert gather(run).tokenizer_dir == cache / "llm"


def test_a_bare_moe_file_says_how_many_experts_it_routes_to(cache):
    inputs = gather(MOE / "model.pth")
    assert inputs.config.num_experts_per_tok == 1
    [note] = inputs.notes
    assert note == "model.pth does not record how many experts each token routes to; it runs with 1"
    assert note.option == "experts_per_token"
    inputs = gather(MOE / "model.pth", experts_per_token=2)
    assert inputs.config.num_experts_per_tok == 2 and inputs.notes == []


def test_experts_per_token_overrides_what_a_run_records(tmp_path, cache):
    run = make_run_dir(tmp_path / "run")
    assert gather(run, experts_per_token=3).config.num_experts_per_tok == 3
    with pytest.raises(MmvError, match=r"5 experts per token does not fit sft_vlm_64\.pth, which has 4") as failure:
        gather(run, experts_per_token=5)
    assert failure.value.options == ("experts_per_token",)
    dense = gather(REFERENCE / "p32" / "model.pth", experts_per_token=2)
    assert not dense.config.use_moe and dense.notes == [
        "model.pth is a dense model: experts per token (2) does not apply"
    ]


def test_a_projector_refuses_another_encoder_in_one_sentence(cache):
    with pytest.raises(MmvError) as failure:
        gather(REFERENCE / "p32" / "model.pth", vision=REFERENCE / "naflex-merge4" / "vision")
    assert str(failure.value) == (
        f"{REFERENCE / 'naflex-merge4' / 'vision'} holds a p16-naflex encoder of width 32, but model.pth was "
        "trained for a p32-256 encoder of width 32"
    )
    assert failure.value.options == ("vision",)


def test_a_text_only_model_takes_the_encoder_it_is_given(cache):
    inputs = gather(REFERENCE / "p32" / "llm.pth", vision=REFERENCE / "naflex-merge4" / "vision")
    assert inputs.config.vision_variant == "p16-naflex" and inputs.config.image_hidden_size == 32
    assert inputs.checkpoint.text_only and inputs.notes == []  # the projector is fresh: only a loaded model says so


def test_a_hand_edited_run_model_config_is_refused(tmp_path, cache):
    run = make_run_dir(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["model"]["num_experts_per_tok"] = "2"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(MmvError, match=r"config.json: num_experts_per_tok must be an integer, got '2'"):
        gather(run / "sft_vlm_64.pth")


def test_a_fresh_projector_takes_the_shape_it_is_given(tmp_path, cache):
    from tests.encoder_folders import make_encoder_folder

    dino = make_encoder_folder(tmp_path / "dino", "dinov2-registers", side=112, patch=14)
    inputs = gather(REFERENCE / "p32" / "llm.pth", vision=dino, projector="linear", merge=4)
    vision = inputs.config.vision
    assert (vision.family, vision.projector, vision.merge, inputs.config.image_token_len) == ("dinov2", "linear", 4, 4)
    assert inputs.config.vision_variant == "custom" and inputs.config.image_hidden_size == 32
    with pytest.raises(MmvError, match="merge 3 does not divide the 8x8 patch grid"):
        gather(REFERENCE / "p32" / "llm.pth", vision=dino, merge=3)


def test_vision_takes_a_download_name(tmp_path, cache, monkeypatch):
    """`--vision dinov2-small` is the cached download; before `mmv download` it says so (and never falls back to
    the cached SigLIP encoder); a folder of that name in the working directory wins."""
    from mmv.loading import NotDownloaded
    from tests.encoder_folders import make_encoder_folder

    llm = REFERENCE / "p32" / "llm.pth"
    with pytest.raises(
        NotDownloaded, match=r"^the vision encoder dinov2-small is not downloaded: run `mmv download dinov2-small`$"
    ) as failure:
        gather(llm, vision="dinov2-small")
    assert failure.value.options == ("vision",)
    cached = make_encoder_folder(cache / "dinov2-small", "dinov2", side=112, patch=14)
    inputs = gather(llm, vision="dinov2-small")
    assert inputs.vision_dir == cached and inputs.config.vision.family == "dinov2"
    local = make_encoder_folder(tmp_path / "here" / "dinov2-small", "clip", side=64, patch=16)
    monkeypatch.chdir(tmp_path / "here")
    assert gather(llm, vision="dinov2-small").config.vision.family == "clip" and local.is_dir()


def test_a_trained_projector_keeps_its_shape(cache):
    with pytest.raises(MmvError, match=r"model\.pth has a ln-mlp projector with merge 1, not merge 2") as failure:
        gather(REFERENCE / "p32" / "model.pth", merge=2)
    assert failure.value.options == ("merge",)
    assert gather(REFERENCE / "p32" / "model.pth", projector="ln-mlp", merge=1).config.vision_variant == "p32-256"


def test_a_model_over_another_encoder_names_the_encoder_it_lacks(tmp_path, cache):
    from mmv.config import VisionConfig

    run = make_run_dir(tmp_path / "run", fixture="p16-merge2x2")
    config = json.loads((run / "config.json").read_text())
    config["model"]["vision"] = VisionConfig("dinov2", 224, 14, None, "ln-mlp", 2).__dict__
    config["model"]["vision_variant"] = "custom"
    config["model"]["image_token_len"] = 64
    config["vision_dir"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(MmvError, match=r"no dinov2 224px/14 vision encoder was beside the model or recorded") as err:
        gather(run)
    assert err.value.options == ("vision",)
