"""What the two GGUF files share (mmv.convert.gguf_tensors): llama.cpp's tensor names, hyperparameters copied from
a config, and a file written in GGUF's order, read back with the gguf package's own reader."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mmv.convert.gguf_tensors import copy_fields, mapped_name, write_out
from mmv.errors import MmvError


def test_keys_get_llama_cpps_names_and_an_unknown_one_is_one_sentence():
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3, 2)
    assert mapped_name(names, "model.layers.1.self_attn.q_norm.weight") == "blk.1.attn_q_norm.weight"
    with pytest.raises(MmvError, match=r"^no llama.cpp tensor corresponds to model.layers.1.bogus.weight$"):
        mapped_name(names, "model.layers.1.bogus.weight")
    with pytest.raises(MmvError, match=r"^no llama.cpp mmproj tensor corresponds to bogus.weight$"):
        mapped_name(names, "bogus.weight", "mmproj tensor")


def test_copied_fields_read_back_under_their_keys(tmp_path):
    import gguf

    path = tmp_path / "fields.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen3")
    config = SimpleNamespace(num_hidden_layers=3, rms_norm_eps=1e-6)
    copy_fields(writer, config, {"block_count": "num_hidden_layers", "layer_norm_rms_eps": "rms_norm_eps"})
    write_out(writer)
    fields = {key: field.contents() for key, field in gguf.GGUFReader(str(path)).fields.items()}
    assert fields["qwen3.block_count"] == 3
    assert abs(fields["qwen3.attention.layer_norm_rms_epsilon"] - 1e-6) < 1e-12
