"""The loop in-process on real parquet data and the tiny fixture encoder: learning, loss normalisation,
the reference loss, empty and text-only batches, non-finite losses."""

from __future__ import annotations

import os
import re
import signal

import pytest
import torch

from mmv.data.batch import Batch
from mmv.data.loader import DataSpec, TrainData
from mmv.errors import MmvError
from mmv.train.build import build_model, training_inputs
from mmv.train.config import TrainConfig
from mmv.train.distributed import DistContext
from mmv.train.metrics import Sinks
from mmv.train.saves import read_record
from mmv.train.state import checkpoint_paths, load_resume
from mmv.train.trainer import Interrupted, Trainer, summed_loss
from tests.conftest import TOKENIZER_DIR, fixture_cases, load_fixture_model, one_thread
from tests.train.helpers import VISION_DIR, caption_row, read_metrics, text_row, write_parquet

CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


def make_trainer(tmp_path, rows, **overrides) -> Trainer:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data_file = write_parquet(tmp_path / "data.parquet", rows)
    spec = DataSpec(
        files=[str(data_file)],
        tokenizer_dir=str(TOKENIZER_DIR),
        vision_dir=str(VISION_DIR),
        max_seq_len=overrides.get("max_seq_len", 160),
        random_system_prompt=False,
        drop_empty_think=False,
        max_bad_fraction=overrides.pop("max_bad_fraction", 0.01),
        pack=overrides.pop("pack", False),
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
        **overrides,
    }
    cfg = TrainConfig(**values)
    model = build_model(training_inputs("none", str(VISION_DIR), str(TOKENIZER_DIR), cfg), cfg)
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    sinks = Sinks(run_dir, {}, wandb=False, tensorboard=False)
    return Trainer(cfg, model, TrainData(spec), CPU, run_dir, "sft_vlm_64.pth", sinks=sinks)


@pytest.mark.slow
def test_tiny_model_overfits_eight_samples(tmp_path):
    trainer = make_trainer(tmp_path, [caption_row(i) for i in range(8)], batch_size=8, epochs=60, lr=5e-3)
    result = trainer.fit()
    assert result.steps == 60
    assert result.history[-1] < 0.1 * result.history[0], (result.history[0], result.history[-1])


def test_accumulation_equals_one_big_batch(tmp_path):
    """Loss and update are normalised by all supervised tokens of the step, not averaged per micro-batch."""
    rows = [caption_row(i, words=3 + 4 * (i % 3)) for i in range(12)]  # unequal lengths: averaging would differ
    big = make_trainer(tmp_path / "a", rows, batch_size=4, accum=1)
    small = make_trainer(tmp_path / "b", rows, batch_size=2, accum=2)
    a, b = big.fit(), small.fit()
    assert a.steps == b.steps == 3
    assert a.history == pytest.approx(b.history, abs=1e-5)  # float32 sums in another order
    for (name, p), q in zip(big.model.named_parameters(), small.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5), name


def test_loss_equals_the_reference_text_loss():
    model = load_fixture_model("p32")
    cases = fixture_cases("p32")
    ids = cases["text_input_ids"]
    with torch.no_grad():
        ce, aux = summed_loss(model, Batch(input_ids=ids, labels=ids.clone()), CPU.device, torch.float32)
    assert float(ce) / (ids.shape[1] - 1) == pytest.approx(float(cases["text_loss"]), abs=1e-5)
    assert float(aux) == 0.0


def test_text_only_batches_train_the_projector_only_model(tmp_path):
    """No image reaches the projector, yet the step must run (and under DDP every parameter needs a gradient)."""
    trainer = make_trainer(tmp_path, [text_row(i) for i in range(8)], freeze="projector")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if n.startswith("model.")}
    result = trainer.fit()
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(result.history)))
    assert all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters() if n in before)


def test_moe_aux_loss_is_added(tmp_path):
    trainer = make_trainer(tmp_path, [caption_row(i) for i in range(8)], preset="tiny-moe", log_every=1)
    trainer.fit()
    records = read_metrics(trainer.run_dir)
    assert len(records) == 2 and all(r["aux_loss"] > 0 for r in records)
    assert set(records[0]) >= {
        "step",
        "epoch",
        "loss",
        "aux_loss",
        "lr",
        "grad_norm",
        "samples_per_s",
        "tokens_per_s",
        "padding_fraction",
        "skipped_rows",
    }


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, [caption_row(i) for i in range(16)], batch_size=2, lr=1e30, save_every=1)
    with pytest.raises(MmvError, match=r"loss became nan at step (\d+).*intact") as failure:
        trainer.fit()
    failed_at = int(re.search(r"at step (\d+)", str(failure.value)).group(1))
    paths = checkpoint_paths(trainer.run_dir)
    assert failed_at > 1 and str(paths[-1]) in str(failure.value)
    good = load_resume(paths[-1])
    assert good.progress.step == failed_at - 1
    assert all(torch.isfinite(t).all() for t in good.model.values())


def test_grad_checkpoint_gives_the_same_steps(tmp_path):
    rows = [caption_row(i) for i in range(8)]
    plain = make_trainer(tmp_path / "plain", rows).fit()
    recomputed = make_trainer(tmp_path / "ckpt", rows, grad_checkpoint=True).fit()
    assert recomputed.history == pytest.approx(plain.history, abs=1e-6)


def test_padding_for_compile_keeps_the_loss(tmp_path):
    from mmv.train.trainer import pad_length

    trainer = make_trainer(tmp_path, [caption_row(i, words=3 + i) for i in range(4)])
    batch = next(iter(trainer.data.batches(0, 0, 4)))
    padded = pad_length(batch, 64)
    assert padded.input_ids.shape[1] % 64 == 0 and padded.input_ids.shape[1] > batch.input_ids.shape[1]
    with torch.no_grad():
        (ce, _), (ce_padded, _) = trainer.forward(batch), trainer.forward(padded)
    assert float(ce_padded) == pytest.approx(float(ce), rel=1e-6)


def test_packed_batches_train_like_padded_ones(tmp_path):
    """Packing changes the layout, not the maths: attention stays inside each sample, positions restart."""
    rows = [caption_row(i, words=2 + 3 * (i % 4)) for i in range(12)]
    padded = make_trainer(tmp_path / "padded", rows, batch_size=6, max_seq_len=320)
    packed = make_trainer(tmp_path / "packed", rows, batch_size=6, max_seq_len=320, pack=True)
    batch = next(iter(packed.data.batches(0, 0, 6)))
    assert batch.segment_ids is not None and batch.input_ids.shape[0] < 6  # really packed
    a, b = padded.fit(), packed.fit()
    assert b.history == pytest.approx(a.history, abs=1e-5)


def test_an_empty_micro_batch_counts_its_samples_but_adds_no_loss(tmp_path):
    """A micro-batch whose rows were all skipped still advances the position; a stand-in keeps DDP in step."""
    trainer = make_trainer(tmp_path, [caption_row(i) for i in range(4)], batch_size=2, accum=2, preset="tiny-moe")
    batch = next(iter(trainer.data.batches(0, 0, 2)))
    empty = Batch(
        input_ids=torch.zeros((0, 0), dtype=torch.long), labels=torch.zeros((0, 0), dtype=torch.long), num_samples=2
    )
    with torch.no_grad():
        ce, aux = summed_loss(trainer.model, batch, CPU.device, torch.float32)
    plan = trainer.plan([batch, empty], stop=False)
    assert (plan.samples, plan.micro) == (4, 2)
    loss, step_aux, _, _ = trainer.step([batch, empty], plan)
    assert loss == pytest.approx(float(ce) / plan.supervised, abs=1e-6)
    assert float(aux) > 0 and step_aux == pytest.approx(float(aux) / 2, rel=1e-5)  # the stand-in adds none


def test_a_second_ctrl_c_inside_the_checkpoint_writer_waits_for_the_write(tmp_path, monkeypatch):
    """Two Ctrl-C while torch's C++ serialiser writes the checkpoint: an exception raised in its write callback
    would abort the process or leave a misleading write error; the run stops once every file is complete."""
    trainer = make_trainer(tmp_path, [caption_row(i) for i in range(16)], batch_size=2, save_every=2)
    real_save = torch.save
    interrupted = []

    class Interrupting:
        def __init__(self, inner):
            self.inner = inner

        def write(self, data):
            if not interrupted:
                interrupted.append(True)
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
            return self.inner.write(data)

        def flush(self):
            self.inner.flush()

    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: real_save(obj, Interrupting(f), *a, **k))
    with pytest.raises(Interrupted) as stopped:
        trainer.fit()
    assert interrupted and stopped.value.held
    checkpoint = stopped.value.result.checkpoint
    assert checkpoint == checkpoint_paths(trainer.run_dir)[-1] and load_resume(checkpoint).progress.step == 2
    record = read_record(trainer.run_dir)
    assert (record.step, record.finished) == (2, True)
    assert torch.load(trainer.run_dir / "sft_vlm_64.pth", weights_only=True)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are put back
