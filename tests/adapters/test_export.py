"""`mmv convert --no-merge`: the base as a transformers folder plus the adapter in OUT/adapter, which transformers and
peft load in a process without mmv and which then gives mmv's logits (LoRA and DoRA); the merged export is
the same model."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmv.adapters.spec import ADAPTER_DIR
from mmv.convert import convert
from mmv.errors import MmvError
from mmv.loading import load_model
from tests.adapters.test_apply import logits
from tests.conftest import REFERENCE, TOKENIZER_DIR, fixture_cases
from tests.train.helpers import VISION_DIR, VLM_PTH

ATOL = 1e-4  # two implementations of the same float32 model (the transformers folders' tolerance)


@pytest.fixture(scope="module", params=["lora", "dora"])
def exported(request, tmp_path_factory) -> tuple[Path, Path]:
    """(the run, its --no-merge export) for a LoRA and a DoRA run."""
    run = request.getfixturevalue(f"{request.param}_run")
    out = tmp_path_factory.mktemp("no-merge") / "exported"
    convert(run, "transformers", out, merge=False)
    return run, out


def test_the_folder_is_the_base_plus_the_adapter_as_the_run_keeps_it(exported):
    lora_run, exported = exported
    adapter = exported / ADAPTER_DIR
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (adapter / name).read_bytes() == (lora_run / ADAPTER_DIR / name).read_bytes()
    base = load_file(str(exported / "model.safetensors"))
    reference = torch.load(VLM_PTH, map_location="cpu", weights_only=True)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(base[q].float(), reference[q].float())  # not merged: the base's own weights


@pytest.mark.slow
def test_peft_loads_it_without_mmv_and_gives_mmvs_logits(exported, tmp_path):
    lora_run, exported = exported
    here = Path(__file__).parent
    site = [str(here.parent / "convert"), sysconfig.get_paths()["purelib"]]
    out = tmp_path / "out.safetensors"
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    cases = REFERENCE / "p32" / "cases.safetensors"
    script = here / "isolated_peft.py"
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(script), os.pathsep.join(site), str(exported), str(cases), str(out)],
        env={**env, "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = load_file(str(out))
    image, text = logits(load_model(lora_run, device="cpu", dtype="float32").model)
    torch.testing.assert_close(got["base.image_logits"], fixture_cases("p32")["logits"], atol=ATOL, rtol=0)
    torch.testing.assert_close(got["adapted.image_logits"], image, atol=ATOL, rtol=0)
    torch.testing.assert_close(got["adapted.text_logits"], text, atol=ATOL, rtol=0)
    torch.testing.assert_close(got["merged.image_logits"], image, atol=ATOL, rtol=0)
    assert (got["adapted.image_logits"] - got["base.image_logits"]).abs().max() > 1e-2  # the adapter was applied


def test_the_merged_export_is_the_merged_model(lora_run, tmp_path):
    convert(lora_run, "pth", tmp_path / "merged.pth", dtype="float32")
    merged = load_model(
        tmp_path / "merged.pth", vision=VISION_DIR, tokenizer=TOKENIZER_DIR, device="cpu", dtype="float32"
    ).model
    expected = load_model(lora_run, device="cpu", dtype="float32").model.checkpoint_state_dict()
    state = merged.checkpoint_state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)


@pytest.mark.parametrize(
    ("source", "to", "phrase"),
    [
        ("run", "pth", "an unmerged adapter is written beside a transformers folder only"),
        ("base", "transformers", "applies no adapter"),
    ],
)
def test_what_cannot_be_written_unmerged_is_refused(lora_run, tmp_path, source, to, phrase):
    src = {"run": lora_run, "base": VLM_PTH}[source]
    with pytest.raises(MmvError, match=phrase):
        convert(src, to, tmp_path / "out", merge=False)
    assert not (tmp_path / "out").exists()
