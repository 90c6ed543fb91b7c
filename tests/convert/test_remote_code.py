"""The stitcher that turns mmv's model modules into one self-contained modeling file."""

from __future__ import annotations

import pytest

from mmv.convert.remote_code import generate, strip_mmv_imports
from mmv.errors import MmvError


def test_generated_files_define_the_wrappers_and_compile():
    files = generate("test")
    assert "class MiniMindVForCausalLM(MiniMindVLM" in files["modeling_minimind_v.py"]
    assert "class MiniMindVConfig(PretrainedConfig)" in files["configuration_minimind_v.py"]
    assert "class VLMConfig" in files["configuration_minimind_v.py"]  # mmv's own config, not a copy by hand


def test_nested_import_becomes_pass_and_top_level_import_disappears():
    source = (
        "from __future__ import annotations\nfrom mmv.config import VLMConfig\n\n"
        "def f():\n    from mmv.model.llm import (\n        FeedForward,\n    )\n    return FeedForward\n"
    )
    out = strip_mmv_imports(source, "m", {"VLMConfig", "FeedForward"})
    assert out == "\ndef f():\n    pass\n    return FeedForward"


def test_unknown_or_renamed_imports_are_refused():
    with pytest.raises(MmvError, match="does not define"):
        strip_mmv_imports("from mmv.model.llm import FeedForward as FF\n", "m", {"FeedForward"})
    with pytest.raises(MmvError, match="does not define"):
        strip_mmv_imports("from mmv.model.llm import Missing\n", "m", {"FeedForward"})
    with pytest.raises(MmvError, match="cannot be stitched"):
        strip_mmv_imports("import mmv.model.llm\n", "m", set())
