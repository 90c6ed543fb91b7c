"""One resolver for every reference: run directories and files inside them, --init names, missing downloads."""

from __future__ import annotations

import shutil

import pytest

from mmv.errors import MmvError
from mmv.loading import NotDownloaded, gather, resolve_init, resolve_model
from tests.conftest import REFERENCE, TOKENIZER_DIR
from tests.loading.helpers import folder_without_tokenizer, make_run_dir


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    home = tmp_path / "cache"
    monkeypatch.setenv("MMV_HOME", str(home))
    return home


def test_a_weights_file_inside_a_run_directory_brings_the_run(tmp_path, empty_cache):
    """Its encoder, its tokenizer and its model config (top-2 routing) as if the directory itself were named."""
    run = make_run_dir(tmp_path / "run")
    for ref in (run, run / "sft_vlm_64.pth"):
        sources = resolve_model(ref)
        assert sources.weights == run / "sft_vlm_64.pth" and sources.run.folder == run and sources.records_config
        inputs = gather(ref)
        assert inputs.vision_dir == REFERENCE / "p32-moe" / "vision"
        assert inputs.tokenizer_dir == TOKENIZER_DIR
        assert inputs.config.num_experts_per_tok == 2 and inputs.notes == []


def test_init_names(tmp_path, empty_cache):
    assert resolve_init("none") is None
    (empty_cache / "llm").mkdir(parents=True)
    shutil.copy(REFERENCE / "p32" / "llm.pth", empty_cache / "llm" / "llm_768.pth")
    assert resolve_init("llm").weights == empty_cache / "llm" / "llm_768.pth"
    with pytest.raises(NotDownloaded, match=r"pretrain weights \(pretrain_vlm_768.pth\) are not downloaded"):
        resolve_init("pretrain")
    (empty_cache / "minimind-3v-pytorch").mkdir()
    with pytest.raises(MmvError, match=r"has no pretrain_vlm_768\.pth; run `mmv download minimind-3v-pytorch` again"):
        resolve_init("pretrain")
    assert resolve_init(str(REFERENCE / "p32" / "model.pth")).weights == REFERENCE / "p32" / "model.pth"


def test_unknown_names_are_not_sent_to_mmv_download(empty_cache):
    with pytest.raises(MmvError, match="neither a file, a folder nor a download name") as failure:
        resolve_model("pretrian")
    assert not isinstance(failure.value, NotDownloaded)
    with pytest.raises(MmvError, match="does not exist"):
        resolve_model("runs/absent")


def test_every_missing_download_is_named_in_one_line(tmp_path, empty_cache):
    with pytest.raises(NotDownloaded) as failure:
        gather(folder_without_tokenizer(tmp_path / "tf"))
    assert str(failure.value) == (
        "no p32-256 vision encoder and no tokenizer found beside the model or in the cache: "
        "run `mmv download siglip2-p32-256 llm`"
    )
    assert failure.value.options == ("vision", "tokenizer")


def test_a_missing_model_is_named_with_the_encoder_it_will_need(empty_cache):
    """minimind-3v holds its tokenizer; the encoder is the default variant's until the weights say otherwise."""
    with pytest.raises(NotDownloaded) as failure:
        gather("minimind-3v")
    assert str(failure.value) == (
        "the model minimind-3v is not downloaded, and no p32-256 vision encoder found in the cache: "
        "run `mmv download minimind-3v siglip2-p32-256`"
    )


def test_missing_init_weights_encoder_and_tokenizer_together(empty_cache):
    from mmv.config import preset

    with pytest.raises(NotDownloaded) as failure:
        gather("pretrain", resolve=resolve_init, base=preset("minimind-3v"))
    assert str(failure.value).endswith("run `mmv download minimind-3v-pytorch siglip2-p32-256 llm`")
    assert failure.value.options == ("init", "vision", "tokenizer")


def test_what_is_given_is_not_looked_for(tmp_path, empty_cache):
    inputs = gather(
        folder_without_tokenizer(tmp_path / "tf"), vision=REFERENCE / "p32" / "vision", tokenizer=TOKENIZER_DIR
    )
    assert inputs.vision_dir == REFERENCE / "p32" / "vision" and inputs.tokenizer_dir == TOKENIZER_DIR
