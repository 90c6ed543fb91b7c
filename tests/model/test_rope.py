"""RoPE tables and the optional YaRN extension."""

from __future__ import annotations

import torch

from mmv.model.rope import apply_rope, rope_tables


def test_plain_tables_rotate_pairs_by_position():
    cos, sin = rope_tables(head_dim=8, max_len=16, theta=1e6)
    assert torch.allclose(cos[0], torch.ones(8)) and torch.allclose(sin[0], torch.zeros(8))
    x = torch.randn(1, 1, 16, 8)
    rotated = apply_rope(x, cos, sin)
    assert torch.allclose(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # a rotation keeps lengths


def test_yarn_stretches_only_low_frequencies():
    scaling = {"factor": 16, "original_max_position_embeddings": 2048, "beta_fast": 32, "beta_slow": 1}
    _, plain = rope_tables(96, 32768, 1e6)
    _, yarn = rope_tables(96, 32768, 1e6, scaling)
    position = 30000
    assert torch.allclose(plain[position, 0], yarn[position, 0])  # fastest dimension untouched
    # the slowest dimension turns 16x more slowly
    torch.testing.assert_close(yarn[position, 47].asin(), plain[position, 47].asin() / 16, rtol=1e-3, atol=0)


def test_yarn_is_inert_within_the_original_context():
    scaling = {"factor": 16, "original_max_position_embeddings": 2048}
    assert torch.equal(rope_tables(16, 1024, 1e6, scaling)[0], rope_tables(16, 1024, 1e6)[0])


def test_rotation_equals_the_reference_rotate_half_bit_for_bit():
    """The reference rotates with x * cos + cat(-x2, x1) * sin over plain sin tables; the signed table and
    swapped halves must give exactly the same floats (checkpoints trained either way must agree)."""
    freqs = torch.outer(torch.arange(64).float(), 1.0 / (1e6 ** (torch.arange(0, 16, 2).float() / 16)))
    plain_cos, plain_sin = torch.cat([freqs.cos()] * 2, -1), torch.cat([freqs.sin()] * 2, -1)
    cos, sin = rope_tables(16, 64, 1e6)
    x = torch.randn(2, 3, 64, 16)
    first, second = x.chunk(2, dim=-1)
    reference = x * plain_cos + torch.cat((-second, first), dim=-1) * plain_sin
    assert torch.equal(cos, plain_cos)
    assert torch.equal(apply_rope(x, cos, sin), reference)


def test_fewer_rows_equal_the_first_rows_of_the_full_table_bit_for_bit():
    scaling = {"factor": 16, "original_max_position_embeddings": 2048, "attention_factor": 1.2}
    full_cos, full_sin = rope_tables(96, 32768, 1e6, scaling)
    cos, sin = rope_tables(96, 32768, 1e6, scaling, rows=5000)
    assert cos.shape == (5000, 96)
    assert torch.equal(cos, full_cos[:5000]) and torch.equal(sin, full_sin[:5000])


def test_the_model_builds_its_tables_small_and_grows_them_for_long_sequences():
    """The tables start at ROPE_ROWS rows and grow when a sequence needs more: the same logits as a model whose
    tables hold every position from the start."""
    from mmv.config import preset
    from mmv.model.llm import ROPE_ROWS
    from mmv.model.vlm import MiniMindVLM

    torch.manual_seed(0)
    model = MiniMindVLM(preset("tiny", rope_scaling={"factor": 16, "original_max_position_embeddings": 2048})).eval()
    assert model.rope_cos.shape[0] == ROPE_ROWS < model.config.max_position_embeddings
    full = rope_tables(
        model.config.head_dim, model.config.max_position_embeddings, model.config.rope_theta, model.config.rope_scaling
    )
    ids = torch.randint(0, model.config.vocab_size, (1, 8))
    cache = model.new_cache(1, ROPE_ROWS + 16, torch.float32, torch.device("cpu"))
    cache.advance(ROPE_ROWS + 4)  # positions 4100-4107: past the first tables
    with torch.no_grad():
        logits = model(ids, cache=cache).logits
    assert model.rope_cos.shape[0] == 2 * ROPE_ROWS
    assert torch.equal(model.rope_cos, full[0][: 2 * ROPE_ROWS]) and torch.equal(
        model.rope_sin, full[1][: 2 * ROPE_ROWS]
    )
    model.rope_cos, model.rope_sin = full
    cache.length = ROPE_ROWS + 4
    with torch.no_grad():
        assert torch.equal(model(ids, cache=cache).logits, logits)
