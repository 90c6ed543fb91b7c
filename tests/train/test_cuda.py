"""Training on a GPU (`gpu`-marked, skipped without CUDA; tests/gpu.py): bf16 autocast, float16 with the grad scaler,
fused AdamW, exact resume, a single-process NCCL group with mmv's DDP wrapper, pinned batches and the feature cache
on the device. The tiny fresh model and the fixture encoder on real parquet rows, as in test_trainer.py."""

from __future__ import annotations

import os
import socket

import pytest
import torch

from mmv.data.feature_build import build_feature_cache
from mmv.data.loader import DataSpec, TrainData
from mmv.train.build import build_model, training_inputs
from mmv.train.config import TrainConfig
from mmv.train.distributed import DistContext
from mmv.train.state import ResumeState, checkpoint_paths, load_resume
from mmv.train.trainer import Trainer, make_optimizer, wrap_ddp
from tests.conftest import TOKENIZER_DIR
from tests.train.helpers import VISION_DIR, caption_row, text_row, write_parquet

# cuBLAS reads this when it starts, which is after collection: deterministic matmuls for the exact-resume test
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

pytestmark = pytest.mark.gpu


def rows(count: int = 16) -> list[dict]:
    return [text_row(i) if i % 4 == 3 else caption_row(i, words=2 + i % 5) for i in range(count)]


def make_trainer(
    folder,
    device: torch.device,
    cache=None,
    resume: ResumeState | None = None,
    pin: bool = False,
    workers: int = 0,
    **overrides,
) -> Trainer:
    folder.mkdir(parents=True, exist_ok=True)
    data = folder.parent / "data.parquet"
    if not data.exists():
        write_parquet(data, rows())
    spec = DataSpec(
        files=[str(data)],
        tokenizer_dir=str(TOKENIZER_DIR),
        vision_dir=str(VISION_DIR),
        max_seq_len=160,
        random_system_prompt=False,
        drop_empty_think=False,
        pin_memory=pin,
        num_workers=workers,
        feature_cache=str(cache) if cache else None,
    )
    values = {
        "stage": "sft",
        "init": "none",
        "preset": "tiny",
        "freeze": "none",
        "lr": 1e-3,
        "epochs": 1,
        "batch_size": 4,
        "save_every": 10**6,
        "log_every": 10**6,
        "device": device.type,
        **overrides,
    }
    cfg = TrainConfig(**values)
    model = build_model(training_inputs("none", str(VISION_DIR), str(TOKENIZER_DIR), cfg), cfg)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=device)
    return Trainer(cfg, model, TrainData(spec), ctx, folder / "run", "sft_vlm_64.pth", resume=resume)


def test_bf16_autocast_steps_follow_float32(tmp_path, gpu):
    full = make_trainer(tmp_path / "fp32", gpu, dtype="float32")
    half = make_trainer(tmp_path / "bf16", gpu, dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and not half.scaler.is_enabled()
    assert all(p.dtype == torch.float32 and p.device.type == gpu.type for p in half.params)  # float32 master weights
    batch = next(iter(half.data.batches(0, 0, 4))).to(gpu)
    with torch.no_grad(), torch.autocast(gpu.type, dtype=torch.bfloat16):
        logits = half.model(batch.input_ids, pixel_inputs=batch.pixel_inputs).logits
    assert logits.dtype == torch.bfloat16
    a, b = full.fit(), half.fit()
    assert a.steps == b.steps == 4
    assert b.history == pytest.approx(a.history, rel=2e-2)


def test_float16_trains_with_the_grad_scaler(tmp_path, gpu):
    """The scaler starts at 2**16, so the first steps' gradients overflow float16 and are skipped while it calibrates
    (torch's documented behaviour): the losses then follow float32 only loosely, but the first (same weights, same
    batch) agrees, nothing becomes inf or nan, and the second epoch's losses are lower than the first's."""
    full = make_trainer(tmp_path / "fp32", gpu, dtype="float32")
    half = make_trainer(tmp_path / "fp16", gpu, dtype="float16", epochs=2, save_every=4)
    assert half.scaler.is_enabled()
    start = [p.detach().clone() for p in half.params]
    a, b = full.fit(), half.fit()
    assert b.history[0] == pytest.approx(a.history[0], rel=1e-2)
    assert len(b.history) == 8 and sum(b.history[4:]) < sum(b.history[:4])
    assert all(torch.isfinite(p).all() and not torch.equal(p, q) for p, q in zip(half.params, start, strict=True))
    saved = load_resume(checkpoint_paths(tmp_path / "fp16" / "run")[-1])
    assert saved.scaler is not None and 0 < saved.scaler["scale"] <= 2.0**16


def test_fused_adamw_steps_like_the_plain_one(gpu):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(64, 32, device=gpu)) for _ in range(3)]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    fused = make_optimizer(params, TrainConfig(lr=1e-2))
    plain = torch.optim.AdamW(twins, lr=1e-2, weight_decay=0.01, foreach=False)
    assert fused.defaults["fused"] is True
    for _ in range(3):
        grads = [torch.randn_like(p) for p in params]
        for p, q, g in zip(params, twins, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        fused.step()
        plain.step()
    for p, q in zip(params, twins, strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


@pytest.fixture
def deterministic():
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)


def test_resume_on_the_device_is_exact(tmp_path, gpu, deterministic):
    """bf16 autocast, fused AdamW: stopped after step 4 of 8 and resumed, steps 5-8 and the weights are bit-equal."""
    whole = make_trainer(tmp_path / "whole", gpu, dtype="bfloat16", batch_size=2, save_every=4, keep=5)
    history = whole.fit().history
    assert len(history) == 8
    middle = load_resume(checkpoint_paths(tmp_path / "whole" / "run")[0])
    assert middle.progress.step == 4
    resumed = make_trainer(tmp_path / "resumed", gpu, dtype="bfloat16", batch_size=2, save_every=4, resume=middle)
    assert resumed.fit().history == history[4:]
    for p, q in zip(whole.params, resumed.params, strict=True):
        assert torch.equal(p, q)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_single_process_nccl_group_runs_mmv_ddp(tmp_path, gpu):
    import torch.distributed as dist

    backend = "nccl" if gpu.type == "cuda" else "gloo"  # what mmv.train.distributed.setup picks
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        assert dist.get_backend() == backend
        total = torch.arange(4.0, device=gpu)
        dist.all_reduce(total)
        assert total.tolist() == [0.0, 1.0, 2.0, 3.0]
        trainer = make_trainer(tmp_path, gpu, dtype="bfloat16")
        ctx = DistContext(rank=0, world_size=1, local_rank=0, device=gpu)
        engine = wrap_ddp(trainer.model, ctx)
        batch = next(iter(trainer.data.batches(0, 0, 4))).to(gpu)
        with torch.autocast(gpu.type, dtype=torch.bfloat16):
            out = engine(batch.input_ids, pixel_inputs=batch.pixel_inputs)
        out.logits.float().logsumexp(-1).mean().backward()
        assert all(p.grad is not None for p in trainer.params if p.requires_grad)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_feature_cache_trains_on_the_device_like_the_images(tmp_path, gpu):
    write_parquet(tmp_path / "data.parquet", rows())
    cache = build_feature_cache([tmp_path / "data.parquet"], VISION_DIR, tmp_path / "data.features", device=gpu.type)
    plain = make_trainer(tmp_path / "plain", gpu, dtype="bfloat16").fit().history
    cached = make_trainer(tmp_path / "cached", gpu, cache.path, dtype="bfloat16").fit().history
    assert cached == pytest.approx(plain, rel=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("cached", [False, True], ids=["images", "features"])
def test_the_loader_pins_batches(tmp_path, workers, cached):
    write_parquet(tmp_path / "data.parquet", rows())
    cache = build_feature_cache([tmp_path / "data.parquet"], VISION_DIR, tmp_path / "data.features").path
    cuda = torch.device("cuda")
    trainer = make_trainer(tmp_path / "run", cuda, cache if cached else None, pin=True, workers=workers)
    batch = next(b for b in trainer.data.batches(0, 0, 4) if b.num_images)
    images = batch.image_features if cached else batch.pixel_inputs["pixel_values"]
    assert batch.input_ids.is_pinned() and batch.labels.is_pinned() and images.is_pinned()
    moved = batch.to(cuda)
    assert moved.input_ids.is_cuda and (moved.image_features if cached else moved.pixel_inputs["pixel_values"]).is_cuda
