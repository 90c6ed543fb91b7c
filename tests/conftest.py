"""Shared test fixtures: where the reference golden files live, and loaders for the fixture models."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.gpu import full_float32, gpu  # noqa: F401 - the `gpu`-marked tests' fixtures, for every test module

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "fixtures" / "reference"
TOKENIZER_DIR = SHARED / "minimind_tokenizer"
IMAGES_DIR = SHARED / "images"
# fixture folder name -> the variant name mmv uses
FIXTURE_VARIANTS = {"p32": "p32-256", "p16-merge2x2": "p16-256", "naflex-merge4": "p16-naflex", "p32-moe": "p32-256"}


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background (`pytest &` in a script, nohup) inherits SIGINT as ignored, and so does every
    command it starts: the Ctrl-C tests need Ctrl-C to arrive, as it does for a user at a terminal."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # one pytest-xdist worker per core: torch's own threads on top would oversubscribe the cores, and a
        # spinning thread pool on a busy core runs far slower than one thread
        import torch

        torch.set_num_threads(1)


def fixture_dir(name: str) -> Path:
    path = REFERENCE / name
    assert path.is_dir(), f"missing reference fixtures at {path}: the suite needs ../shared beside the checkout"
    return path


def fixture_base_config(name: str):
    """What a bare .pth cannot tell: the MoE fixture routes to 2 experts per token."""
    from mmv.config import VLMConfig

    raw = json.loads((fixture_dir(name) / "vlm_config.json").read_text())
    return VLMConfig(num_experts_per_tok=raw.get("num_experts_per_tok", 1))


def load_fixture_model(name: str, weights: str = "model.pth"):
    """The fixture VLM in float32 through the loader every command uses (the encoder beside it, no tokenizer)."""
    from mmv.loading import gather
    from mmv.loading.build import build_model

    folder = fixture_dir(name)
    inputs = gather(folder / weights, base=fixture_base_config(name), need_tokenizer=False)
    return build_model(inputs).eval()


def load_p32_for_chat(**options):
    """The p32 fixture as `mmv chat` and `mmv serve` load it (encoder, tokenizer; float32 on the CPU)."""
    from mmv.loading import load_model

    folder = fixture_dir("p32")
    where = {"vision": folder / "vision", "tokenizer": TOKENIZER_DIR}
    return load_model(folder / "model.pth", **where, device="cpu", dtype="float32", **options)


def fixture_cases(name: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(fixture_dir(name) / "cases.safetensors"))


def pixel_inputs(cases: dict) -> dict:
    return {k.removeprefix("pixel."): v for k, v in cases.items() if k.startswith("pixel.")}


@pytest.fixture(autouse=True)
def pinned_threads(monkeypatch):
    """Every command a test runs computes on one thread (MMV_THREADS, which subprocesses inherit): mmv's default
    follows the cores idle at start, and two runs compared number for number must sum in one order however busy
    the machine is. tests/test_threads.py covers the default itself."""
    monkeypatch.setenv("MMV_THREADS", "1")


@pytest.fixture(params=list(FIXTURE_VARIANTS))
def fixture_name(request) -> str:
    return request.param


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread: tiny models run fastest so on a busy CPU, and reductions keep one summation order."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
