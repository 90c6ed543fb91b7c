"""The transformers folder: its layout, and the generated code run where mmv is not installed (`python -I -S`)."""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
import transformers
from packaging.version import Version
from safetensors import safe_open
from safetensors.torch import load_file

from tests.conftest import (
    FIXTURE_VARIANTS,
    REFERENCE,
    TOKENIZER_DIR,
    fixture_cases,
    load_fixture_model,
    one_thread,
    pixel_inputs,
)
from tests.convert.conftest import greedy
from tests.dependency_range import declared_range, installed_release, oldest_supported

ATOL = 1e-4  # against the reference's own float32 outputs (fixtures/README.md)
YARN = {
    "type": "yarn",
    "factor": 16,
    "original_max_position_embeddings": 2048,
    "beta_fast": 32,
    "beta_slow": 1,
    "attention_factor": 1.0,
}


@pytest.fixture(scope="module", params=["newest", "oldest"])
def isolated(request, tf_folders, tmp_path_factory) -> dict:
    """Logits and generations of every folder (and one with YaRN), computed in a process that cannot import mmv.

    Run twice: on the installed transformers (the newest release pyproject.toml allows, in CI) and on the oldest
    release it allows, installed apart (tests/dependency_range.py).
    """
    from mmv.config import VLMConfig
    from mmv.convert import convert

    purelib = sysconfig.get_paths()["purelib"]
    if request.param == "oldest":
        version = oldest_supported("transformers")
        site = [str(installed_release("transformers", version)), purelib]
    else:
        version, site = transformers.__version__, [purelib]
    work = tmp_path_factory.mktemp(f"isolated-{request.param}")
    folders = {**tf_folders, "p32-yarn": work / "p32-yarn"}
    convert(
        REFERENCE / "p32" / "model.pth",
        "transformers",
        folders["p32-yarn"],
        tokenizer=TOKENIZER_DIR,
        base=VLMConfig(rope_scaling=YARN),
    )
    jobs = [
        {
            "name": name,
            "folder": str(folder),
            "resave": str(work / f"{name}-resaved"),
            "cases": str(REFERENCE / name.removesuffix("-yarn") / "cases.safetensors"),
        }
        for name, folder in folders.items()
    ]
    env = {"HF_MODULES_CACHE": str(work / "modules"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(work)}
    script = Path(__file__).with_name("isolated_load.py")
    out = work / "out.safetensors"
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(script), os.pathsep.join(site), json.dumps(jobs), str(out)],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with safe_open(str(out), "pt") as results:
        ran_on = results.metadata()["transformers"]
    assert Version(ran_on) == Version(version), f"the {request.param} run imported transformers {ran_on}, not {version}"
    return {**load_file(str(out)), "work": work, "release": request.param}


def test_installed_transformers_is_in_the_declared_range():
    assert transformers.__version__ in declared_range("transformers"), transformers.__version__


def test_folder_layout(tf_folders):
    folder = tf_folders["p32"]
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "modeling_minimind_v.py",
        "configuration_minimind_v.py",
        "README.md",
        "vision/config.json",
        "vision/model.safetensors",
        "vision/preprocessor_config.json",
    } == names
    config = json.loads((folder / "config.json").read_text())
    reference = json.loads((REFERENCE / "p32" / "hf-upstream" / "config.json").read_text())
    assert config["model_type"] == "minimind-v" and config["auto_map"]["AutoModelForCausalLM"]
    for key in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "intermediate_size",
        "vocab_size",
        "image_ids",
        "image_hidden_size",
        "image_token_len",
        "image_special_token",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "use_moe",
    ):
        assert config[key] == reference[key], key
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        keys = set(weights.keys())
    upstream = safe_open(str(REFERENCE / "p32" / "hf-upstream" / "model.safetensors"), "pt")
    assert keys == set(upstream.keys())  # the reference converter's key set: lm_head stored once, no encoder
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((folder / "model.safetensors").stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_modeling_files_never_import_mmv(tf_folders):
    for name in ("modeling_minimind_v.py", "configuration_minimind_v.py"):
        tree = ast.parse((tf_folders["p32"] / name).read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in imported if m.split(".")[0] == "mmv"}, name


def test_isolated_process_matches_the_reference(isolated, fixture_name):
    cases = fixture_cases(fixture_name)
    assert bool(isolated[f"{fixture_name}.class_is_remote"])
    torch.testing.assert_close(isolated[f"{fixture_name}.image_logits"], cases["logits"], atol=ATOL, rtol=0)
    torch.testing.assert_close(isolated[f"{fixture_name}.text_logits"], cases["text_logits"], atol=ATOL, rtol=0)
    assert torch.equal(isolated[f"{fixture_name}.image_greedy"], cases["generated_greedy"])


def test_isolated_process_matches_mmv(isolated, fixture_name):
    """Same code, same weights: transformers' run of the folder and mmv's run of the .pth agree to float32 rounding."""
    model, cases = load_fixture_model(fixture_name), fixture_cases(fixture_name)
    with torch.no_grad(), one_thread():  # as in the isolated process, so the kernels reduce in the same order
        image_logits = model(cases["input_ids"], pixel_inputs=pixel_inputs(cases)).logits
        text_logits = model(cases["text_input_ids"]).logits
        text_greedy = greedy(model, cases["text_input_ids"], 16)
    if isolated["release"] == "newest":  # the same transformers on both sides, so the same SigLIP kernels too
        assert torch.equal(isolated[f"{fixture_name}.image_logits"], image_logits)
    else:  # another transformers release runs the encoder: equal to float32 rounding, not bit for bit
        torch.testing.assert_close(isolated[f"{fixture_name}.image_logits"], image_logits, atol=1e-5, rtol=0)
    assert torch.equal(isolated[f"{fixture_name}.text_logits"], text_logits)
    assert torch.equal(isolated[f"{fixture_name}.text_greedy"], text_greedy)


def test_left_padded_batch_generates_like_each_prompt_alone(isolated, fixture_name):
    assert torch.equal(isolated[f"{fixture_name}.batch_greedy"], isolated[f"{fixture_name}.alone_greedy"])


def test_cache_is_taken_under_either_name(isolated, fixture_name):
    last = isolated[f"{fixture_name}.text_logits"][:, -1]
    for key in ("cache", "past_key_values"):
        torch.testing.assert_close(isolated[f"{fixture_name}.step_logits.{key}"], last, atol=1e-5, rtol=0, msg=key)


@pytest.mark.parametrize(
    "call",
    [
        "unknown_forward_argument",
        "unknown_generate_argument",
        "both_cache_names",
        "static_cache",
        "four_d_attention_mask",
    ],
)
def test_wrong_calls_fail_loudly(isolated, fixture_name, call):
    """No `**kwargs` swallows an argument: what the modeling code cannot honour raises instead of being ignored."""
    assert bool(isolated[f"{fixture_name}.refused.{call}"])


def test_folder_tokenizer_renders_the_chat_template(isolated, fixture_name):
    from mmv.tokenizer import encode, load_tokenizer, render_chat

    tokenizer = load_tokenizer(TOKENIZER_DIR)
    expected = encode(tokenizer, render_chat(tokenizer, [{"role": "user", "content": "hi"}]))
    assert isolated[f"{fixture_name}.prompt_ids"].tolist() == expected


def test_folder_loads_back_into_mmv(tf_folders, fixture_name):
    """Through the loader `mmv chat` uses: the encoder is found in vision/, the logits are the reference's."""
    from mmv.loading import load_model

    loaded = load_model(tf_folders[fixture_name], device="cpu", dtype="float32")
    assert loaded.vision_dir == tf_folders[fixture_name] / "vision"
    assert loaded.model.config.vision_variant == FIXTURE_VARIANTS[fixture_name]
    cases = fixture_cases(fixture_name)
    with torch.no_grad():
        logits = loaded.model(cases["input_ids"], pixel_inputs=pixel_inputs(cases)).logits
    torch.testing.assert_close(logits, cases["logits"], atol=ATOL, rtol=0)


def test_yarn_rope_scaling_survives_the_folder(isolated):
    from mmv.checkpoint import load_weights, read_checkpoint
    from mmv.config import VLMConfig
    from mmv.model.vlm import MiniMindVLM

    checkpoint = read_checkpoint(REFERENCE / "p32" / "model.pth", 32, VLMConfig(rope_scaling=YARN))
    model = MiniMindVLM(checkpoint.config).eval()
    load_weights(model, checkpoint)
    cases = fixture_cases("p32")
    with torch.no_grad(), one_thread():
        expected = model(cases["text_input_ids"]).logits
    assert torch.equal(isolated["p32-yarn.text_logits"], expected)
    assert not torch.allclose(expected, cases["text_logits"], atol=1e-3)  # YaRN did change the model
    resaved = json.loads((isolated["work"] / "p32-yarn-resaved" / "config.json").read_text())
    assert resaved["rope_scaling"].items() >= YARN.items()  # transformers may add its `rope_type` key


def test_transformers_resave_stays_readable_by_mmv(isolated, fixture_name):
    """`save_pretrained` of the loaded model keeps the reference layout and re-stores the encoder in vision/."""
    from mmv.loading import load_model

    folder = isolated["work"] / f"{fixture_name}-resaved"
    loaded = load_model(folder, tokenizer=TOKENIZER_DIR, device="cpu", dtype="float32")
    assert loaded.vision_dir == folder / "vision" and (folder / "vision" / "preprocessor_config.json").is_file()
    cases = fixture_cases(fixture_name)
    with torch.no_grad():
        logits = loaded.model(cases["input_ids"], pixel_inputs=pixel_inputs(cases)).logits
    torch.testing.assert_close(logits, cases["logits"], atol=ATOL, rtol=0)
