"""The stitcher that turns mmv's model modules into two self-contained modeling files, and the rules it keeps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmv.convert.remote_code import (
    CONFIG_MODULES,
    MODELING_MODULES,
    STITCHED_MARK,
    checked_imports,
    modeling_sources,
    owners_of,
    read_section,
)
from mmv.errors import MmvError

ROOT = Path(__file__).resolve().parents[2]
MARK = f"{STITCHED_MARK}: test\n"
OWNERS = {"VLMConfig": "mmv.config", "FeedForward": "mmv.model.layers", "MiniMindLM": "mmv.model.llm"}
EARLIER = {"mmv.config", "mmv.model.layers"}  # stitched before the module under test; mmv.model.llm comes after


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("generated")
    for name, text in modeling_sources("test").items():
        (folder / name).write_text(text)
    return folder


def test_generated_files_define_the_wrappers_and_import_the_config_file(generated):
    modeling = (generated / "modeling_minimind_v.py").read_text()
    config = (generated / "configuration_minimind_v.py").read_text()
    assert "class MiniMindVForCausalLM(MiniMindVLM" in modeling
    assert "\nfrom .configuration_minimind_v import MiniMindVConfig, MmvError, VisionConfig, VLMConfig\n" in modeling
    assert "class MiniMindVConfig(PretrainedConfig)" in config
    assert "class VLMConfig" in config  # mmv's own config, not a copy by hand
    for text in (modeling, config):
        compile(text, "generated", "exec")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_generated_files_pass_ruff(generated, command):
    """The project's own lint and format rules hold for the stitched files, imports gathered and sorted."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--config", str(ROOT / "pyproject.toml"), str(generated)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_exactly_the_stitched_modules_carry_the_mark():
    marked = {
        ".".join(path.relative_to(ROOT / "src").with_suffix("").parts)
        for path in (ROOT / "src" / "mmv").rglob("*.py")
        if path.read_text().startswith(STITCHED_MARK)
    }
    assert marked == set(CONFIG_MODULES + MODELING_MODULES)


def test_imports_are_gathered_and_mmv_imports_dropped():
    source = (
        f"{MARK}from __future__ import annotations\n\nimport torch\nfrom mmv.config import VLMConfig\n\nX = 1\n\n\n"
        "def f():\n    from mmv.model.llm import (\n        MiniMindLM,\n    )\n    return MiniMindLM, VLMConfig\n"
    )
    section = read_section("m", source, OWNERS, EARLIER)
    assert section.body == f"{MARK}\n\nX = 1\n\n\ndef f():\n    pass\n    return MiniMindLM, VLMConfig"
    assert [i.module for i in section.imports] == ["torch"]
    assert section.from_mmv == {"VLMConfig", "MiniMindLM"}  # a function-level import may name a later module


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("import torch\n", "first line is not"),
        (f"{MARK}import mmv.model.llm\n", "cannot be stitched"),
        (f"{MARK}from . import layers\n", "relative import"),
        (f"{MARK}from mmv.model.layers import FeedForward as FF\n", "keep the name"),
        (f"{MARK}from mmv.model.llm import FeedForward\n", "does not define there"),  # re-exported, not defined
        (f"{MARK}from mmv.model.vision import load_encoder\n", "does not define there"),  # not stitched
        (f"{MARK}from mmv.model.llm import MiniMindLM\n", "stitched after it"),
    ],
)
def test_broken_rules_are_refused(source, message):
    with pytest.raises(MmvError, match=message):
        read_section("m", source, OWNERS, EARLIER)


def test_configuration_file_cannot_import_from_the_modeling_file():
    source = f"{MARK}def f():\n    from mmv.model.llm import MiniMindLM\n    return MiniMindLM\n"
    with pytest.raises(MmvError, match="modeling file only"):
        read_section("mmv.config", source, OWNERS, EARLIER)


def test_name_clashes_are_refused():
    with pytest.raises(MmvError, match="redefines VLMConfig"):
        owners_of({"a": "class VLMConfig: ...\n", "b": "VLMConfig = 1\n"})
    section = read_section("m", f"{MARK}from typing import Any as VLMConfig\n", OWNERS, EARLIER)
    with pytest.raises(MmvError, match="binds VLMConfig"):
        checked_imports(section.imports, OWNERS, "f.py")
    twice = read_section("m", f"{MARK}import torch.nn as nn\nfrom something import nn\n", OWNERS, EARLIER)
    with pytest.raises(MmvError, match="nn is imported from both"):
        checked_imports(twice.imports, OWNERS, "f.py")
