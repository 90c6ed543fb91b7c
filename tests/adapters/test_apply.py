"""An adapter applied to its base: merged logits equal the unmerged adapter's, a LoRA run loads as its base plus
its adapter, an adapter that does not fit is refused in one sentence, and no source file ever changes."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from mmv.adapters.apply import apply_adapter
from mmv.adapters.files import read_adapter
from mmv.adapters.spec import ADAPTER_DIR, ADAPTER_MARK, FILE_PREFIX
from mmv.errors import MmvError
from mmv.loading import load_model
from tests.cli.conftest import run_cli
from tests.conftest import REFERENCE, TOKENIZER_DIR, fixture_cases, load_fixture_model, one_thread, pixel_inputs
from tests.train.helpers import VISION_DIR, VLM_PTH


def logits(model) -> tuple[torch.Tensor, torch.Tensor]:
    cases = fixture_cases("p32")
    with torch.no_grad(), one_thread():
        image = model(cases["input_ids"], pixel_inputs=pixel_inputs(cases)).logits
        text = model(cases["text_input_ids"]).logits
    return image, text


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_merged_logits_equal_the_unmerged_adapters(request, kind):
    run = request.getfixturevalue(f"{kind}_run")
    unmerged = load_fixture_model("p32")
    apply_adapter(unmerged, read_adapter(run), "the fixture")
    assert any(ADAPTER_MARK in name for name, _ in unmerged.named_parameters())  # really unmerged
    merged = load_model(run, device="cpu", dtype="float32").model
    assert not any(ADAPTER_MARK in name for name, _ in merged.named_parameters())
    base = logits(load_fixture_model("p32"))
    for got, expected, before in zip(logits(merged), logits(unmerged), base, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        assert (got - before).abs().max() > 1e-2  # the adapter changed the model: the comparison means something


def test_a_lora_run_is_its_base_plus_its_adapter(lora_run):
    from_run = load_model(lora_run, device="cpu", dtype="float32")
    explicit = load_model(
        VLM_PTH,
        adapter=lora_run / ADAPTER_DIR,
        vision=VISION_DIR,
        tokenizer=TOKENIZER_DIR,
        device="cpu",
        dtype="float32",
    )
    assert from_run.vision_dir == VISION_DIR and from_run.tokenizer_dir == TOKENIZER_DIR  # what the run recorded
    a, b = from_run.model.state_dict(), explicit.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    also = load_model(VLM_PTH, adapter=lora_run, vision=VISION_DIR, tokenizer=TOKENIZER_DIR, device="cpu")
    assert torch.equal(also.model.lm_head.weight, a["lm_head.weight"])  # a run directory names its adapter too


def test_an_adapter_for_another_shape_is_refused(lora_run, tmp_path):
    moe = REFERENCE / "p32-moe" / "model.pth"  # the same widths, but experts instead of one MLP
    with pytest.raises(
        MmvError, match=r"does not fit .*model\.pth: it adapts model\.layers\.0\.mlp\.(down|gate|up)_proj"
    ):
        load_model(moe, adapter=lora_run, tokenizer=TOKENIZER_DIR, device="cpu")
    wider = tmp_path / "wider.pth"
    from mmv.config import preset
    from mmv.model.vlm import MiniMindVLM

    model = MiniMindVLM(preset("tiny", hidden_size=96, image_hidden_size=32))
    model.init_fresh_weights()
    torch.save(model.checkpoint_state_dict(), wider)
    with pytest.raises(MmvError, match=r"does not fit wider\.pth: its \S+ has shape"):
        load_model(wider, adapter=lora_run, vision=VISION_DIR, tokenizer=TOKENIZER_DIR, device="cpu")


def test_the_cli_refuses_a_mismatched_adapter_in_one_line(lora_run):
    result = run_cli(
        [
            *("chat", "--model", str(REFERENCE / "p32-moe" / "model.pth"), "--adapter", str(lora_run)),
            *("--tokenizer", str(TOKENIZER_DIR), "--prompt", "hi", "--max-new-tokens", "2"),
        ]
    )
    assert result.exit_code == 2 and "does not fit" in result.stderr and "(option: --adapter DIR)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_chat_on_a_run_and_on_its_base_with_the_adapter_answer_alike(lora_run):
    common = ["--prompt", "Describe it.", "--temperature", "0", "--max-new-tokens", "8", "--json"]
    image = str(next(p for p in sorted((REFERENCE.parent.parent / "images").iterdir()) if p.suffix == ".jpg"))
    from_run = run_cli(["chat", image, "--model", str(lora_run), *common])
    explicit = run_cli(
        [
            *("chat", image, "--model", str(VLM_PTH), "--adapter", str(lora_run / ADAPTER_DIR)),
            *("--vision", str(VISION_DIR), "--tokenizer", str(TOKENIZER_DIR), *common),
        ]
    )
    assert from_run.exit_code == explicit.exit_code == 0, from_run.stderr + explicit.stderr
    replies = [json.loads(result.stdout.splitlines()[-1])["reply"] for result in (from_run, explicit)]
    assert replies[0] == replies[1] and replies[0]


@pytest.mark.parametrize(
    ("model", "adapter", "phrase"),
    [
        ("adapter", None, "is an adapter, not a model"),
        ("run", "run", "already applies its adapter"),
        ("base", "nowhere", "does not exist"),
        ("base", "base-folder", "holds no adapter"),
        ("base", "config-file", "is a file; an adapter is the folder that holds adapter_config.json"),
    ],
)
def test_adapters_in_the_wrong_place_are_refused(lora_run, tmp_path, model, adapter, phrase):
    places = {
        "adapter": lora_run / ADAPTER_DIR,
        "run": lora_run,
        "base": VLM_PTH,
        "nowhere": tmp_path / "nothing",
        "base-folder": VLM_PTH.parent,
        "config-file": lora_run / ADAPTER_DIR / "adapter_config.json",
    }
    with pytest.raises(MmvError, match=phrase) as error:
        load_model(places[model], adapter=places.get(adapter), tokenizer=TOKENIZER_DIR, device="cpu")
    assert error.value.options == ("adapter",)


def test_a_file_in_another_layout_is_refused(lora_run, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "adapter"
    shutil.copytree(lora_run / ADAPTER_DIR, folder)
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    save_file({k.removeprefix(FILE_PREFIX): v for k, v in tensors.items()}, str(folder / "adapter_model.safetensors"))
    with pytest.raises(MmvError, match="not in peft's layout"):
        read_adapter(folder)
    save_file({**tensors, f"{FILE_PREFIX}model.norm.weight": torch.ones(64)}, str(folder / "adapter_model.safetensors"))
    with pytest.raises(MmvError, match="neither an adapter nor the projector"):
        read_adapter(folder)


def test_loading_and_merging_never_change_the_source_files(lora_run, tmp_path):
    from mmv.convert import convert

    def digests() -> dict[str, str]:
        files = [VLM_PTH, *sorted(p for p in lora_run.rglob("*") if p.is_file())]
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    before = digests()
    load_model(lora_run, device="cpu")
    convert(lora_run, "pth", tmp_path / "merged.pth")
    assert digests() == before


def test_peft_names_mmv_relies_on():
    from peft import LoraModel

    assert LoraModel.prefix == ADAPTER_MARK


def test_eval_on_a_run_and_on_its_base_with_the_adapter_score_alike(lora_run, lora_data):
    common = ["--data", str(lora_data), "--max-new-tokens", "4", "--device", "cpu", "--json"]
    from_run = run_cli(["eval", "--model", str(lora_run), *common])
    explicit = run_cli(
        [
            *("eval", "--model", str(VLM_PTH), "--adapter", str(lora_run / ADAPTER_DIR)),
            *("--vision", str(VISION_DIR), "--tokenizer", str(TOKENIZER_DIR), *common),
        ]
    )
    base = run_cli(
        ["eval", "--model", str(VLM_PTH), "--vision", str(VISION_DIR), "--tokenizer", str(TOKENIZER_DIR), *common]
    )
    assert from_run.exit_code == explicit.exit_code == base.exit_code == 0, from_run.stderr + explicit.stderr
    scores = [json.loads(r.stdout.splitlines()[-1]) for r in (from_run, explicit, base)]
    assert scores[0]["evaluated"] == scores[1]["evaluated"] == 12
    assert scores[0]["mean_loss"] == pytest.approx(scores[1]["mean_loss"], abs=1e-6)
    assert scores[0]["mean_loss"] < scores[2]["mean_loss"] - 0.5  # the adapter learned these answers


def test_a_pretrain_lora_run_on_a_text_only_llm_brings_its_projector(tmp_path, lora_data):
    from mmv.adapters.files import read_adapter
    from tests.adapters.conftest import train_lora
    from tests.train.helpers import LLM_PTH

    run = tmp_path / "run"
    train_lora(run, lora_data, init=LLM_PTH, stage="pretrain", max_steps=2)
    projector = read_adapter(run).projector
    loaded = load_model(run, device="cpu", dtype="float32")
    assert loaded.vision_dir == VISION_DIR and projector
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in projector.items())  # the trained projector, not a fresh one
