"""An adapter_config.json is data from anywhere: mmv applies only the LoRA settings it checked, and a file that is
missing, malformed, of another kind, or sets an option that would change the base (PiSSA initialisation, layer
replication, per-layer ranks) is refused in one sentence naming the field; a rank that disagrees with the weights
is refused before anything is applied."""

from __future__ import annotations

import json
import shutil

import pytest

from mmv.adapters.files import read_adapter
from mmv.adapters.spec import ADAPTER_DIR
from mmv.errors import MmvError
from mmv.loading import load_model
from tests.conftest import TOKENIZER_DIR
from tests.train.helpers import VISION_DIR, VLM_PTH


@pytest.fixture
def copy(lora_run, tmp_path):
    folder = tmp_path / "adapter"
    shutil.copytree(lora_run / ADAPTER_DIR, folder)
    return folder


def edit(folder, **changes) -> None:
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_the_run_adapter_reads_as_what_it_trained(lora_run):
    config = read_adapter(lora_run).config
    assert (config.r, config.lora_alpha, config.lora_dropout, config.use_dora) == (4, 8.0, 0.0, False)
    assert config.init_lora_weights is True and not config.rank_pattern and config.layer_replication is None


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"init_lora_weights": "pissa"}, "init_lora_weights is set to 'pissa', which mmv does not apply"),
        ({"layer_replication": [[0, 2], [1, 3]]}, "layer_replication is set to"),
        ({"rank_pattern": {"q_proj": 8}}, "rank_pattern is set to"),
        ({"bias": "all"}, "bias is set to 'all'"),
        ({"fan_in_fan_out": True}, "fan_in_fan_out is set to True"),
        ({"r": "4"}, "r must be a positive whole number, got '4'"),
        ({"r": 0}, "r must be a positive whole number, got 0"),
        ({"lora_alpha": "8"}, "lora_alpha must be a positive number"),
        ({"lora_dropout": 1.5}, r"lora_dropout must be a number in \[0, 1\)"),
        ({"target_modules": 7}, "target_modules must be a regular expression or a list of module names"),
        ({"modules_to_save": "vision_proj"}, "modules_to_save must be a list of module names"),
        ({"modules_to_save": ["vision_proj", "lm_head"]}, "also trains lm_head in full"),
        ({"use_dora": "yes"}, "use_dora must be true or false"),
        ({"peft_type": "IA3"}, "holds a 'IA3' adapter; mmv applies LoRA and DoRA adapters"),
    ],
)
def test_a_config_mmv_would_not_apply_faithfully_is_refused(copy, changes, phrase):
    edit(copy, **changes)
    with pytest.raises(MmvError, match=phrase) as error:
        read_adapter(copy)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("content", "phrase"), [("{not json", "is not valid JSON"), ("[1, 2]", "holds a list, expected a JSON object")]
)
def test_a_malformed_config_is_refused(copy, content, phrase):
    (copy / "adapter_config.json").write_text(content)
    with pytest.raises(MmvError, match=phrase):
        read_adapter(copy)


def test_missing_files_are_refused(copy):
    (copy / "adapter_model.safetensors").unlink()
    with pytest.raises(MmvError, match=r"has no adapter_model\.safetensors"):
        read_adapter(copy)
    (copy / "adapter_model.bin").write_bytes(b"a pickle mmv never opens")
    with pytest.raises(MmvError, match="safetensors only"):
        read_adapter(copy)
    (copy / "adapter_config.json").unlink()
    with pytest.raises(MmvError, match="holds no adapter"):
        read_adapter(copy)


def test_a_rank_that_disagrees_with_the_weights_is_refused(copy):
    edit(copy, r=8)
    disagree = r"does not fit .*has shape \(4, \d+\), but that layer there takes \(8, \d+\)"
    with pytest.raises(MmvError, match=disagree) as error:
        load_model(VLM_PTH, adapter=copy, vision=VISION_DIR, tokenizer=TOKENIZER_DIR, device="cpu")
    assert error.value.options == ("adapter",)


def test_fields_a_newer_peft_adds_are_accepted_at_their_default(copy):
    edit(copy, some_future_option=None, another_one=False)
    assert read_adapter(copy).config.r == 4
    edit(copy, some_future_option="on")
    with pytest.raises(MmvError, match="some_future_option is set to 'on'"):
        read_adapter(copy)
