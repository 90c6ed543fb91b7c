"""The projector's merge and layers: the reference variants' layouts, and any K for any family."""

from __future__ import annotations

import pytest
import torch

from mmv.config import VisionConfig, preset
from mmv.model.projector import VisionProjector, merge_tokens


@pytest.mark.parametrize("merge", [1, 2, 3, 4])
def test_grid_merge_stacks_each_block_row_by_row(merge):
    """Token (i, j) of the merged grid is patches (Ki + r, Kj + c) for r, c in row-major order, blocks row-major."""
    side, dim = 12, 2
    features = torch.arange(side * side * dim, dtype=torch.float32).reshape(1, side * side, dim)
    merged = merge_tokens(features, merge, raster=False)
    cells = side // merge
    assert merged.shape == (1, cells * cells, merge * merge * dim)
    for i in range(cells):
        for j in range(cells):
            patches = [(merge * i + r) * side + merge * j + c for r in range(merge) for c in range(merge)]
            assert torch.equal(merged[0, i * cells + j], features[0, patches].reshape(-1))


def test_raster_merge_stacks_consecutive_patches():
    features = torch.arange(2 * 12 * 3, dtype=torch.float32).reshape(2, 12, 3)
    merged = merge_tokens(features, 3, raster=True)
    assert merged.shape == (2, 4, 9) and torch.equal(merged[1, 2], features[1, 6:9].reshape(-1))


@pytest.mark.parametrize(
    ("projector", "layers"),
    [
        ("linear", ["Linear"]),
        ("mlp", ["Linear", "GELU", "Linear"]),
        ("ln-mlp", ["LayerNorm", "Linear", "GELU", "Linear"]),
    ],
)
def test_layers_of_each_projector_kind(projector, layers):
    """The reference's `mlp.{0,1,3}` (ln-mlp) and `mlp.{0,2}` (mlp) layouts, and `mlp.0` alone for linear."""
    config = preset("tiny").replace(vision=VisionConfig("dinov2", 112, 14, None, projector, 2))
    module = VisionProjector(config)
    assert [type(m).__name__ for m in module.mlp] == layers
    assert module.mlp[-1].out_features == 64
    first = next(m for m in module.mlp if isinstance(m, torch.nn.Linear))
    assert first.in_features == 4 * 32  # a 2x2 merge of 32-wide patches
    out = module(torch.randn(3, 64, 32))
    assert out.shape == (3, 16, 64)
