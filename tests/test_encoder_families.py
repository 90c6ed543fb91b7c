"""Every encoder family end to end: a tiny random encoder saved with `save_pretrained`, pretrain and SFT through
the real CLI with --projector / --merge, chat, resume, convert to a transformers folder (run where mmv cannot be
imported) and back, the image token count as configured everywhere and the logits equal across formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmv.errors import MmvError
from tests.conftest import TOKENIZER_DIR, one_thread
from tests.dependency_range import installed_release, oldest_supported
from tests.encoder_folders import make_encoder_folder
from tests.train.helpers import LLM_PTH, caption_row, png, run_cli, text_row, write_parquet

pytestmark = pytest.mark.slow

# name -> (encoder kind, its geometry, --projector, --merge, image tokens per image)
FAMILIES = {
    "clip": ("clip", {"side": 64, "patch": 16}, "linear", 1, 16),  # the CLIP-era shape: 4x4 patches, one Linear
    "clip-full": ("clip-full", {"side": 64, "patch": 8}, "ln-mlp", 2, 16),  # a two-tower CLIPModel folder
    "siglip": ("siglip", {"side": 96, "patch": 16}, "mlp", 3, 4),
    "siglip2": ("siglip2", {"patch": 16, "max_patches": 64}, "mlp", 4, 16),  # NaFlex: 4 consecutive patches
    "dinov2-registers": ("dinov2-registers", {"side": 112, "patch": 14}, "ln-mlp", 2, 16),
}
# custom SigLIP-family projectors: a bare .pth of theirs is refused (it reads as a reference variant)
BARE_REFUSED = {"siglip": "siglip 96px/16", "siglip2": "siglip2 NaFlex/16 \\(64 patches\\)"}
COMMON = ["--tokenizer", str(TOKENIZER_DIR), "--max-steps", "2", "--batch-size", "2", "--log-every", "1"]
COMMON += ["--no-random-system-prompt", "--keep-empty-think", "--device", "cpu"]


def train(args: list[str]) -> dict:
    result = run_cli(["--json", *args])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def cases(folder: Path, encoder: Path, image: Path, tokens: int) -> Path:
    """The inputs isolated_load.py runs: one image prompt, its pixels, and a text-only prompt."""
    from PIL import Image

    from mmv.model.vision import ImageProcessor
    from mmv.tokenizer import encode, load_tokenizer, render_chat

    tokenizer = load_tokenizer(TOKENIZER_DIR)
    prompt = render_chat(tokenizer, [{"role": "user", "content": "<image>\nWhat is it?"}], tokens_per_image=tokens)
    text = render_chat(tokenizer, [{"role": "user", "content": "Count to three."}])
    pixels = ImageProcessor(encoder)([Image.open(image)])
    tensors = {
        "input_ids": torch.tensor([encode(tokenizer, prompt)]),
        "text_input_ids": torch.tensor([encode(tokenizer, text)]),
        **{f"pixel.{k}": v for k, v in pixels.items()},
    }
    path = folder / "cases.safetensors"
    save_file(tensors, str(path))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """For each family: its encoder, pretrain and SFT run directories, transformers folder and .pth round trip."""
    from mmv.convert import convert

    root = tmp_path_factory.mktemp("families")
    data = write_parquet(root / "data.parquet", [caption_row(i) for i in range(6)] + [text_row(1)])
    image = root / "image.png"
    image.write_bytes(png((200, 40, 90), 40))
    made = {}
    with one_thread():
        for name, (kind, geometry, projector, merge, tokens) in FAMILIES.items():
            home = root / name
            encoder = make_encoder_folder(home / "encoder", kind, **geometry)
            pretrain = train(
                [
                    *("pretrain", "--data", str(data), "--out", str(home / "pretrain"), "--init", str(LLM_PTH)),
                    *("--vision", str(encoder), "--projector", projector, "--merge", str(merge), "--save-every", "1"),
                    *COMMON,
                ]
            )
            sft = train(
                [
                    *("sft", "--data", str(data), "--out", str(home / "sft"), "--init", str(home / "pretrain")),
                    *("--freeze", "none", "--lr", "1e-3", *COMMON),
                ]
            )
            folder = convert(home / "sft", "transformers", home / "tf")
            back = convert(home / "tf", "pth", home / "back.pth")
            made[name] = {
                "home": home,
                "encoder": encoder,
                "tokens": tokens,
                "pretrain": pretrain,
                "sft": sft,
                "folder": folder,
                "back": back,
                "cases": cases(home, encoder, image, tokens),
                "image": image,
                "data": data,
            }
    return made


@pytest.fixture(params=list(FAMILIES))
def family(request, runs) -> dict:
    return {"name": request.param, **runs[request.param]}


def logits(model_ref: Path, case: Path, **options) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-prompt and text-prompt logits through the loader `mmv chat` uses, in float32 on one thread."""
    from mmv.loading import load_model

    loaded = load_model(model_ref, tokenizer=TOKENIZER_DIR, device="cpu", dtype="float32", **options)
    inputs = load_file(str(case))
    pixels = {k.removeprefix("pixel."): v for k, v in inputs.items() if k.startswith("pixel.")}
    with torch.no_grad(), one_thread():
        image = loaded.model(inputs["input_ids"], pixel_inputs=pixels).logits
        text = loaded.model(inputs["text_input_ids"]).logits
    return image, text


def test_the_run_records_the_vision_path_and_its_token_count(family):
    _, geometry, projector, merge, tokens = FAMILIES[family["name"]]
    for stage in ("pretrain", "sft"):
        config = json.loads((family["home"] / stage / "config.json").read_text())
        vision = config["model"]["vision"]
        assert (vision["projector"], vision["merge"], vision["patch_size"]) == (projector, merge, geometry["patch"])
        assert config["model"]["image_token_len"] == config["data"]["tokens_per_image"] == tokens
        assert config["model"]["vision_variant"] == "custom" and config["vision_dir"] == str(family["encoder"])
    assert family["sft"]["step"] == 2 and family["sft"]["data"]["rows"] == 4  # 2 steps of 2 rows


def test_chat_answers_about_an_image(family):
    result = run_cli(
        [
            *("--json", "chat", str(family["image"]), "--model", str(family["home"] / "sft")),
            *("--prompt", "What is it?", "--temperature", "0", "--max-new-tokens", "3", "--device", "cpu"),
        ]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["new_tokens"] == 3


def test_eval_renders_each_image_as_the_models_token_count(family):
    """Every image row is evaluated (none skipped): its prompt holds the model's placeholder run, which the model
    checks against the images it encodes."""
    result = run_cli(
        [
            "--json",
            "eval",
            "--model",
            str(family["home"] / "sft"),
            "--data",
            str(family["data"]),
            "--max-new-tokens",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["evaluated"] == 7 and not summary["skipped"], summary


def test_the_transformers_folder_carries_the_family_and_token_count(family):
    folder, config = family["folder"], json.loads((family["folder"].out / "config.json").read_text())
    assert config["image_token_len"] == family["tokens"] and config["vision"]["family"] == folder.encoder_family
    assert (folder.variant, folder.tokens_per_image) == ("custom", family["tokens"])
    encoder = json.loads((folder.out / "vision" / "config.json").read_text())
    assert encoder == json.loads((family["encoder"] / "config.json").read_text())  # copied as it is
    card = (folder.out / "README.md").read_text()
    assert f"{family['tokens']} `<|image_pad|>` tokens" in card


def test_logits_are_equal_across_run_folder_and_pth(family):
    expected = logits(family["home"] / "sft", family["cases"])
    assert expected[0].shape[1] == load_file(str(family["cases"]))["input_ids"].shape[1]
    assert all(torch.equal(a, b) for a, b in zip(logits(family["folder"].out, family["cases"]), expected, strict=True))
    run_weights = torch.load(family["home"] / "sft" / "sft_vlm_64.pth", weights_only=True)
    back = torch.load(family["back"].out, weights_only=True)
    assert list(back) == list(run_weights) and all(torch.equal(back[k], run_weights[k]) for k in back)
    if family["name"] in BARE_REFUSED:
        # a bare .pth records no vision config: over a SigLIP or SigLIP2 encoder it reads as the reference's
        # variants (here p16-naflex's layout), whose encoder this is not
        with pytest.raises(MmvError, match=f"holds a {BARE_REFUSED[family['name']]} encoder of width 32, but back"):
            logits(family["back"].out, family["cases"], vision=family["encoder"])
    else:
        found = logits(family["back"].out, family["cases"], vision=family["encoder"])
        assert all(torch.equal(a, b) for a, b in zip(found, expected, strict=True))


def test_a_wrong_image_token_count_is_refused(family):
    from mmv.loading import load_model

    loaded = load_model(family["home"] / "sft", device="cpu", dtype="float32")
    inputs = load_file(str(family["cases"]))
    pixels = {k.removeprefix("pixel."): v for k, v in inputs.items() if k.startswith("pixel.")}
    ids = inputs["input_ids"]
    first = int((ids[0] == loaded.model.config.image_token_id).nonzero()[0])
    one_short = torch.cat([ids[:, :first], ids[:, first + 1 :]], dim=1)
    with pytest.raises(
        MmvError,
        match=f"holds {family['tokens'] - 1} image placeholder tokens but 1 image\\(s\\) need {family['tokens']}",
    ):
        loaded.model(one_short, pixel_inputs=pixels)


def test_gguf_exports_the_language_model_and_names_the_vision_path_it_cannot_express(family, tmp_path):
    """mmv's mmproj writer expresses p16-256's SigLIP path alone: any other family's image side is left out, said
    in one sentence naming the vision path, and the language model still exported."""
    from mmv.convert import convert

    result = convert(family["home"] / "sft", "gguf", tmp_path / "g")
    assert result.note is not None and "matches no llama.cpp projector type" in result.note
    assert f"{family['tokens']} tokens" in result.note and "not exported" in result.note
    assert (result.variant, result.encoder_family, result.tokens_per_image) == (None, None, None)
    assert sorted(p.name for p in result.out.iterdir()) == ["README.md", "g.gguf"]


def test_qwen3_exports_the_language_model_alone(family, tmp_path):
    from mmv.convert import convert

    result = convert(family["home"] / "sft", "qwen3", tmp_path / "q")
    assert (result.variant, result.encoder_family, result.vision) == (None, None, None)
    assert json.loads((result.out / "config.json").read_text())["model_type"] == "qwen3"


@pytest.fixture(scope="module", params=["newest", "oldest"])
def isolated(request, runs, tmp_path_factory) -> dict:
    """Every family's folder run by transformers in a process that cannot import mmv (tests/convert)."""
    purelib = sysconfig.get_paths()["purelib"]
    oldest = oldest_supported("transformers")
    site = [purelib] if request.param == "newest" else [str(installed_release("transformers", oldest)), purelib]
    work = tmp_path_factory.mktemp(f"isolated-{request.param}")
    jobs = [
        {"name": name, "folder": str(r["folder"].out), "resave": str(work / name), "cases": str(r["cases"])}
        for name, r in runs.items()
    ]
    env = {"HF_MODULES_CACHE": str(work / "modules"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(work)}
    script = Path(__file__).parent / "convert" / "isolated_load.py"
    out = work / "out.safetensors"
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(script), os.pathsep.join(site), json.dumps(jobs), str(out)],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {**load_file(str(out)), "work": work, "release": request.param}


def test_transformers_without_mmv_gives_mmv_logits(isolated, family):
    name = family["name"]
    image, text = logits(family["home"] / "sft", family["cases"])
    assert bool(isolated[f"{name}.class_is_remote"])
    if isolated["release"] == "newest":  # the same transformers on both sides: the same encoder kernels
        assert torch.equal(isolated[f"{name}.image_logits"], image)
        assert torch.equal(isolated[f"{name}.text_logits"], text)
    else:
        torch.testing.assert_close(isolated[f"{name}.image_logits"], image, atol=1e-5, rtol=0)
        torch.testing.assert_close(isolated[f"{name}.text_logits"], text, atol=1e-5, rtol=0)
    assert isolated[f"{name}.image_greedy"].shape[1] == image.shape[1] + 16


def test_transformers_resave_stays_readable_by_mmv(isolated, family):
    """transformers' `save_pretrained` of the loaded folder re-stores the encoder with its native class."""
    resaved = isolated["work"] / family["name"]
    recorded = json.loads((family["folder"].out / "config.json").read_text())["vision"]
    assert json.loads((resaved / "config.json").read_text())["vision"] == recorded
    found = logits(resaved, family["cases"])
    expected = logits(family["home"] / "sft", family["cases"])
    assert all(torch.equal(a, b) for a, b in zip(found, expected, strict=True))


def test_resume_keeps_the_vision_path(runs, tmp_path):
    """A resumed run rebuilds the same projector over the same encoder; a different merge is refused."""
    run = runs["dinov2-registers"]["home"] / "pretrain"
    before = (run / "pretrain_vlm_64.pth").read_bytes()
    refused = run_cli(["pretrain", "--out", str(run), "--resume", "--merge", "1"])
    assert refused.exit_code == 2 and "the merge setting 1 differs from the run's 2" in refused.stderr
    assert refused.stderr.rstrip().endswith("(option: --merge K)")
    resumed = train(["pretrain", "--out", str(run), "--resume", "--device", "cpu"])
    assert resumed["step"] == 2 and (run / "pretrain_vlm_64.pth").read_bytes() == before
