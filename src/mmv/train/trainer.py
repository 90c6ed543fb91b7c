"""The training loop: gradient accumulation, DDP, mixed precision, exact resume, Ctrl-C and non-finite handling.

Loss normalisation: every step's loss is the sum of the per-token cross-entropies over all ranks and micro-batches
divided by the global count of supervised tokens (all-reduced before the first forward), so N ranks x M
micro-batches compute the same loss and gradient as one process with the whole global batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from mmv.data.batch import Batch
from mmv.device import pick_dtype
from mmv.errors import MmvError
from mmv.model.loss import IGNORE_INDEX, shifted_cross_entropy
from mmv.model.vlm import MiniMindVLM
from mmv.train.config import TrainConfig
from mmv.train.distributed import DistContext, gather_rows
from mmv.train.freeze import apply_freeze
from mmv.train.metrics import ProgressView, Sinks, Window, human_duration
from mmv.train.rundir import save_model_files
from mmv.train.schedule import lr_at
from mmv.train.state import Progress, ResumeState, capture_rng, restore_rng, save_resume
from mmv.train.stop import StopSignal

COMPILE_LENGTH_MULTIPLE = 64  # --compile: sequence lengths rounded up to this
ESTIMATE_AFTER = 5  # steps after the first (warm-up, compilation) that time the per-epoch estimate


class DataSource(Protocol):
    """What the trainer needs from the data (mmv.data.loader.TrainData provides it)."""

    num_rows: int

    def batches(self, epoch: int, start_sample: int, batch_size: int) -> Iterator[Batch]: ...


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped the run at a step boundary after writing a resume checkpoint."""

    def __init__(self, result: FitResult, held: bool = False) -> None:
        super().__init__("interrupted")
        self.result = result
        self.held = held  # a second Ctrl-C came while the checkpoint was written: the run stopped right after it
        self.summary: dict[str, Any] = {}  # filled in by the caller that summarises the run


class NothingTrained(MmvError):
    """The data ran out without one optimizer step (every row skipped): nothing was learnt, nothing is saved."""

    def __init__(self) -> None:
        super().__init__("nothing to train on: no row of the data was usable, so no weights were written")


@dataclass
class FitResult:
    progress: Progress
    loss: float | None = None  # the last step's loss
    steps: int = 0  # optimizer steps in this invocation
    samples: int = 0
    tokens: int = 0  # non-padding tokens
    seconds: float = 0.0
    checkpoint: Path | None = None
    weights: Path | None = None
    history: list[float] = field(default_factory=list)  # every step's loss in this invocation


@dataclass
class StepPlan:
    """What all ranks agreed on before a step: one all-gather of each rank's counts."""

    supervised: int  # global supervised tokens (the loss denominator)
    samples: int  # global positions consumed
    micro: int  # the most micro-batches any rank holds (others run empty ones to keep DDP in step)
    tokens: int  # global non-padding tokens
    slots: int  # global token slots (tokens + padding)
    stop: bool  # some rank was asked to stop
    skipped: int  # global rows the loader skipped in these batches


def supervised_count(batch: Batch) -> int:
    return int((batch.labels[:, 1:] != IGNORE_INDEX).sum())


def pad_length(batch: Batch, multiple: int) -> Batch:
    """Right-pad to a multiple of `multiple` tokens, so a compiled model meets few distinct shapes. The loss is
    unchanged: padding is unsupervised and, with causal attention, never seen by a real token."""
    extra = -batch.input_ids.shape[1] % multiple
    if not extra:
        return batch

    def pad(t: torch.Tensor | None, value: int) -> torch.Tensor | None:
        return None if t is None else F.pad(t, (0, extra), value=value)

    return dataclasses.replace(
        batch,
        input_ids=pad(batch.input_ids, 0),
        labels=pad(batch.labels, IGNORE_INDEX),
        segment_ids=pad(batch.segment_ids, -1),
        position_ids=pad(batch.position_ids, 0),
    )


def summed_loss(
    model: nn.Module, batch: Batch, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy summed over the supervised tokens, MoE aux loss) of one micro-batch.

    A sum, not a mean: the trainer divides by the supervised tokens of the whole step on every rank."""
    batch = batch.to(device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        out = model(
            batch.input_ids,
            pixel_inputs=batch.pixel_inputs,
            image_features=batch.image_features,
            position_ids=batch.position_ids,
            segment_ids=batch.segment_ids,
        )
    ce = shifted_cross_entropy(out.logits, batch.labels, reduction="sum")
    aux = out.aux_loss if out.aux_loss is not None else ce.new_zeros(())
    return ce, aux.float()


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with torch's defaults as the reference; the fused kernel where this torch has one for the device."""
    try:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except RuntimeError:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def enable_grad_checkpoint(model: MiniMindVLM) -> None:
    """Recompute each decoder block in backward; parameter names (and so checkpoints) are unchanged."""
    from torch.utils.checkpoint import checkpoint

    for block in model.model.layers:
        inner = block.forward

        def forward(*args: Any, _inner: Any = inner, **kwargs: Any) -> torch.Tensor:
            return checkpoint(_inner, *args, use_reentrant=False, **kwargs)

        block.forward = forward


def wrap_ddp(model: nn.Module, ctx: DistContext) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel as DDP

    # the rope tables are constant buffers: syncing them before every forward would only cost time
    newer = "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
    no_sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
    return DDP(model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None, **no_sync)


def planned_steps(p: Progress, num_rows: int, epochs: int, global_batch: int, max_steps: int | None) -> int:
    """Optimizer steps from `p` to the end: each epoch ends with its own (possibly short) step."""
    steps, seen, epoch, position = p.step, p.samples_seen, p.epoch, p.position
    while seen < p.total_samples and epoch < epochs:
        take = min(num_rows - position, p.total_samples - seen)
        steps += math.ceil(take / global_batch)
        seen, epoch, position = seen + take, epoch + 1, 0
    return min(steps, max_steps) if max_steps else steps


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        model: MiniMindVLM,
        data: DataSource,
        ctx: DistContext,
        run_dir: Path,
        weights_name: str,
        vision_source: str | None = None,
        resume: ResumeState | None = None,
        sinks: Sinks | None = None,
    ) -> None:
        self.cfg, self.data, self.ctx, self.run_dir = cfg, data, ctx, run_dir
        self.weights_name, self.vision_source, self.sinks = weights_name, vision_source, sinks
        self.model = model.to(ctx.device)
        self.names = apply_freeze(model, cfg.freeze, cfg.train_vision, adapters=cfg.lora is not None)
        named = dict(model.named_parameters())
        self.params = [named[n] for n in self.names]
        self.dtype = pick_dtype(cfg.dtype, ctx.device)
        self.optimizer = make_optimizer(self.params, cfg)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.dtype == torch.float16)
        if cfg.grad_checkpoint:
            enable_grad_checkpoint(model)
        self.engine: nn.Module = model
        if ctx.distributed:
            self.engine = wrap_ddp(model, ctx)
        if cfg.compile:
            self.engine = torch.compile(self.engine)
        self.global_batch = cfg.batch_size * cfg.accum * ctx.world_size
        self.progress = self.start(resume)
        self.last_checkpoint: Path | None = None
        self.weights_path: Path | None = None
        self.saved_step: int | None = None  # the step the files on disk hold, once this run saved
        self.stop = StopSignal(ctx.distributed)
        self.result = FitResult(progress=self.progress)
        self.view: ProgressView | None = None
        self.window, self.started = Window(), time.perf_counter()
        self.timing_mark = (self.started, 0)  # (time, samples) where the time-per-epoch estimate starts

    # --- state ---------------------------------------------------------------------------------------------------

    def start(self, resume: ResumeState | None) -> Progress:
        if resume is None:
            total = self.cfg.epochs * self.data.num_rows
            if self.cfg.max_steps is not None:
                total = min(total, self.cfg.max_steps * self.global_batch)
            return Progress(total_samples=total, world_size=self.ctx.world_size)
        if set(resume.model) != set(self.names):
            raise MmvError(
                f"the resume checkpoint trains {len(resume.model)} tensors but the freeze mode {self.cfg.freeze}"
                f"{' with the vision encoder' if self.cfg.train_vision else ''} trains {len(self.names)}; "
                "resume with the run's own settings",
                option=("freeze", "train_vision"),
            )
        named = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in resume.model.items():
                named[name].copy_(tensor)
        self.optimizer.load_state_dict(resume.optimizer)
        if resume.scaler:
            self.scaler.load_state_dict(resume.scaler)
        restore_rng(resume.rng)
        return Progress(**{**resume.progress.__dict__, "world_size": self.ctx.world_size})

    def resume_state(self) -> ResumeState:
        trainable = {n: p.detach().to("cpu", copy=True) for n, p in zip(self.names, self.params, strict=True)}
        return ResumeState(
            progress=self.progress,
            model=trainable,
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            rng=capture_rng(),
        )

    def save(self) -> None:
        """Rank 0 writes the resume checkpoint, then the weights (and encoder) of the same step; the other ranks
        wait so none exits mid-write. A second Ctrl-C meanwhile stops the run once every file is complete."""
        if self.saved_step != self.progress.step:  # a stop right after a periodic save has nothing new to write
            with self.stop.writing_files():
                if self.ctx.is_main:
                    self.last_checkpoint = save_resume(self.run_dir, self.resume_state(), self.cfg.keep)
                    self.save_model_files()
                if self.ctx.distributed:
                    torch.distributed.barrier()
            self.saved_step = self.progress.step
        if self.stop.held:
            raise Interrupted(self.finish_result(), held=True)

    def save_model_files(self) -> None:
        """What the run produces at the current step (rank 0 only): the weights (and the trained encoder) as one
        save, or with --lora the adapter folder (adapters + projector, replaced in one rename)."""
        if self.cfg.lora is not None:
            from mmv.adapters.training import save_run_adapter

            self.weights_path = save_run_adapter(self.run_dir, self.model, self.cfg)
            return
        vision = self.vision_source if self.cfg.train_vision else None
        self.weights_path = save_model_files(self.run_dir, self.weights_name, self.model, self.progress.step, vision)

    def finished(self) -> bool:
        p, cfg = self.progress, self.cfg
        out_of_steps = cfg.max_steps is not None and p.step >= cfg.max_steps
        return p.samples_seen >= p.total_samples or p.epoch >= cfg.epochs or out_of_steps

    # --- one step ------------------------------------------------------------------------------------------------

    def plan(self, micro: list[Batch], stop: bool) -> StepPlan:
        local = [
            sum(supervised_count(b) for b in micro),
            sum(b.num_samples for b in micro),
            len(micro),
            float(stop),
            sum(b.num_tokens for b in micro),
            sum(b.input_ids.numel() for b in micro),
            sum(len(b.skipped) for b in micro),
        ]
        rows = gather_rows(self.ctx, local)
        totals = rows.sum(0)
        return StepPlan(
            supervised=int(totals[0]),
            samples=int(totals[1]),
            micro=int(rows[:, 2].max()),
            tokens=int(totals[4]),
            slots=int(totals[5]),
            stop=bool(totals[3] > 0),
            skipped=int(totals[6]),
        )

    def empty_batch(self) -> Batch:
        """A one-row batch with nothing supervised: keeps a rank with fewer micro-batches in step under DDP."""
        ids = torch.zeros(1, 2, dtype=torch.long)
        return Batch(input_ids=ids, labels=torch.full_like(ids, IGNORE_INDEX))

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.compile:
            batch = pad_length(batch, COMPILE_LENGTH_MULTIPLE)
        return summed_loss(self.engine, batch, self.ctx.device, self.dtype)

    def anchor(self) -> torch.Tensor:
        """Zero that depends on every trainable parameter: a text-only batch never reaches the projector, and DDP
        needs a gradient (even zero) for every parameter on every rank."""
        return torch.stack([p.reshape(-1)[0].float() for p in self.params]).sum() * 0.0

    def step(self, micro: list[Batch], plan: StepPlan) -> tuple[float, float, float, float]:
        """Forward/backward every micro-batch, then one optimizer update. Returns (loss, aux, lr, grad_norm)."""
        scale = self.ctx.world_size / plan.supervised  # DDP averages gradients over ranks; undo that
        ce_sum = torch.zeros((), dtype=torch.float64)
        aux_sum = torch.zeros((), dtype=torch.float64)
        for index in range(plan.micro):
            real = index < len(micro) and micro[index].input_ids.shape[0] > 0
            last = index == plan.micro - 1
            sync = self.engine.no_sync() if self.ctx.distributed and not last else contextlib.nullcontext()
            with sync:
                ce, aux = self.forward(micro[index] if real else self.empty_batch())
                aux = aux if real else aux * 0.0  # the stand-in batch's routing is no data
                loss = ce * scale + aux / plan.micro + self.anchor()
                self.scaler.scale(loss).backward()
            ce_sum += ce.detach().double().cpu()
            aux_sum += aux.detach().double().cpu()
        sums = gather_rows(self.ctx, [float(ce_sum), float(aux_sum)]).sum(0)
        loss = float(sums[0]) / plan.supervised
        aux = float(sums[1]) / (self.ctx.world_size * plan.micro)
        if not (math.isfinite(loss) and math.isfinite(aux)):
            self.optimizer.zero_grad(set_to_none=True)
            raise self.non_finite(f"the loss became {loss}")
        p = self.progress
        lr = lr_at(
            self.cfg.lr, p.samples_seen / self.global_batch, p.total_samples / self.global_batch, self.cfg.warmup
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip))
        if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
            raise self.non_finite(f"the gradient norm became {grad_norm}")
        self.scaler.step(self.optimizer)  # with float16, a step with inf/nan gradients is skipped by the scaler
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, aux, lr, grad_norm

    def non_finite(self, what: str) -> MmvError:
        kept = (
            f"the last good checkpoint {self.last_checkpoint} is intact"
            if self.last_checkpoint
            else "no checkpoint was written yet"
        )
        return MmvError(
            f"{what} at step {self.progress.step + 1}, so training stopped; {kept}. "
            "Try a lower learning rate, more warmup, or the dtype bfloat16/float32",
            option=("lr", "warmup", "dtype"),
        )

    # --- the loop ------------------------------------------------------------------------------------------------

    def fit(self) -> FitResult:
        """Train to the end, or until interrupted (then `Interrupted` carries the result)."""
        p, cfg = self.progress, self.cfg
        self.view = (
            ProgressView(planned_steps(p, self.data.num_rows, cfg.epochs, self.global_batch, cfg.max_steps), p.step)
            if self.ctx.is_main
            else None
        )
        self.window, self.started = Window(), time.perf_counter()
        self.model.train()
        if self.model.vision_encoder is not None and not cfg.train_vision:
            self.model.vision_encoder.eval()
        try:
            with self.stop:
                while not self.finished():
                    self.run_epoch(self.stop)
                if self.progress.step == 0:
                    raise NothingTrained()
                self.save()
        finally:
            if self.view is not None:
                self.view.close()
        return self.finish_result()

    def run_epoch(self, stop: StopSignal) -> None:
        """Steps from the current position until the epoch's data runs out (then the next epoch) or the run ends."""
        p = self.progress
        batches = self.data.batches(p.epoch, p.position, self.cfg.batch_size)
        while not self.finished():
            micro = list(itertools.islice(batches, self.cfg.accum))
            plan = self.plan(micro, stop.requested)
            if plan.stop:
                self.save()
                raise Interrupted(self.finish_result())
            if plan.samples == 0:  # every rank has exhausted this epoch
                p.epoch += 1
                p.position = 0
                return
            self.advance(micro, plan)

    def advance(self, micro: list[Batch], plan: StepPlan) -> None:
        """One step over `micro`, then the bookkeeping: position, metrics, progress, periodic checkpoint."""
        p, cfg, result = self.progress, self.cfg, self.result
        if plan.supervised:
            loss, aux, lr, grad_norm = self.step(micro, plan)  # the lr is read at the position before the step
        p.position += plan.samples
        p.samples_seen += plan.samples
        p.skipped += plan.skipped
        result.samples += plan.samples
        result.tokens += plan.tokens
        if not plan.supervised:
            return  # nothing to learn from (every row skipped): move on without a step
        p.step += 1
        result.steps += 1
        result.loss = loss
        result.history.append(loss)
        self.window.add(loss, aux, plan.samples, plan.tokens, plan.slots)
        logged = p.step % cfg.log_every == 0 or self.finished()
        record = None
        if logged or self.view is not None:
            record = {**self.window.record(p.step, p.epoch, lr, grad_norm), "skipped_rows": p.skipped}
        if logged:
            if self.sinks is not None:
                self.sinks.write(record)
            self.window.reset()
        if self.view is not None:
            self.view.update(p.step, record, logged)
            self.estimate_epoch_time()
        if p.step % cfg.save_every == 0 and not self.finished():
            self.save()

    def estimate_epoch_time(self) -> None:
        """Once, after a few steps: timed from the end of the first step (warm-up and compilation excluded)."""
        result = self.result
        if result.steps == 1:
            self.timing_mark = (time.perf_counter(), result.samples)
        elif result.steps == ESTIMATE_AFTER + 1 and self.view is not None:
            started, samples = self.timing_mark
            per_sample = (time.perf_counter() - started) / max(result.samples - samples, 1)
            self.view.note(f"estimated time per epoch: {human_duration(per_sample * self.data.num_rows)}")

    def finish_result(self) -> FitResult:
        self.result.checkpoint, self.result.weights = self.last_checkpoint, self.weights_path
        self.result.seconds = time.perf_counter() - self.started
        return self.result
