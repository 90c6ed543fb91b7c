"""Releasing a mapped weights file's pages: they leave the process's resident set, the values read back the same,
and memory that is not a file map is never touched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmv import file_pages

MB = 2**20

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc (Linux)")


def resident_file_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssFile line")


def test_a_mapped_tensors_pages_leave_the_resident_set_and_its_values_read_back(tmp_path):
    weights = torch.randn(4 * MB)  # 16 MB
    torch.save({"w": weights, "b": torch.randn(3)}, tmp_path / "model.pth")
    mapped = torch.load(tmp_path / "model.pth", mmap=True, weights_only=True)
    before = resident_file_mb()
    assert float(mapped["w"].sum()) == pytest.approx(float(weights.sum()), rel=1e-4)  # reads every page
    assert resident_file_mb() - before > 15
    released = file_pages.release([mapped["w"]])
    assert 15 * MB < released <= 16 * MB
    assert resident_file_mb() - before < 2
    assert torch.equal(mapped["w"], weights)


def test_memory_that_is_no_file_map_is_left_alone():
    own = torch.randn(4 * MB)
    copy = own.clone()
    assert file_pages.release([own, own[10:20], torch.empty(0)]) == 0
    assert torch.equal(own, copy)


def test_a_tensor_smaller_than_a_page_keeps_the_page_its_neighbours_share(tmp_path):
    torch.save({"a": torch.arange(8.0), "b": torch.arange(8.0) + 8}, tmp_path / "small.pth")
    mapped = torch.load(tmp_path / "small.pth", mmap=True, weights_only=True)
    assert file_pages.release([mapped["a"]]) == 0  # no whole page of its own
    assert torch.equal(mapped["b"], torch.arange(8.0) + 8)
