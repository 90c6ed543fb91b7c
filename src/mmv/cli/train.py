"""`mmv pretrain` and `mmv sft`: the same trainer with the reference's stage defaults."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from mmv.cli.common import emit_json, handle_errors
from mmv.console import say

# command-line option -> TrainConfig field (values left at None keep the stage default)
TRAIN_FIELDS = (
    "init",
    "preset",
    "freeze",
    "epochs",
    "max_steps",
    "batch_size",
    "accum",
    "lr",
    "warmup",
    "max_seq_len",
    "save_every",
    "keep",
    "log_every",
    "seed",
    "dtype",
    "device",
    "num_workers",
)
TRAIN_FLAGS = ("train_vision", "pack", "compile", "grad_checkpoint", "wandb", "tensorboard")

STAGE_HELP = {
    "pretrain": "Train the projector on image captions (defaults: --init llm, --freeze projector, lr 4e-4, "
    "batch 16, max length 450).",
    "sft": "Instruction-tune on conversations (defaults: --init pretrain, --freeze ends, lr 5e-6, batch 4, "
    "max length 768).",
}


def _make(stage: str) -> Callable[..., None]:
    @handle_errors
    def command(
        files: list[str] = typer.Argument(None, metavar="[FILE...]", help="More parquet files (after --data)."),
        data: list[str] = typer.Option(
            None,
            "--data",
            metavar="FILE",
            help="Parquet file(s) or glob(s) of the published schema; --data A B C or repeated.",
        ),
        out: Path = typer.Option(
            ..., "--out", metavar="RUN_DIR", help="Run directory (config, metrics, weights, checkpoints)."
        ),
        init: str = typer.Option(
            None, help="llm | pretrain | none | a .pth/.safetensors, run directory or transformers folder."
        ),
        preset: str = typer.Option(None, help="Model shape for --init none: minimind-3v | minimind-3v-moe | tiny."),
        vision: str = typer.Option(None, help="Vision encoder folder [default: the cached siglip2-<variant>]."),
        tokenizer: str = typer.Option(None, help="Tokenizer folder [default: the cached llm]."),
        freeze: str = typer.Option(None, help="projector | ends (projector + first/last block) | none."),
        train_vision: bool = typer.Option(False, "--train-vision", help="Also train the vision encoder."),
        epochs: int = typer.Option(None, help="Epochs [default: 2]."),
        max_steps: int = typer.Option(None, help="Stop after this many optimizer steps."),
        batch_size: int = typer.Option(None, help="Samples per process per micro-batch."),
        accum: int = typer.Option(None, help="Micro-batches per optimizer step [default: 1]."),
        lr: float = typer.Option(None, help="Peak learning rate."),
        warmup: int = typer.Option(None, help="Linear warmup steps [default: 0, as the reference]."),
        max_seq_len: int = typer.Option(None, help="Longest sample in tokens (longer ones are dropped)."),
        pack: bool = typer.Option(False, "--pack", help="Pack several samples per row (attention kept apart)."),
        save_every: int = typer.Option(None, help="Steps between checkpoints [default: 1000]."),
        keep: int = typer.Option(None, help="Resume checkpoints kept [default: 2]."),
        log_every: int = typer.Option(None, help="Steps per metrics line [default: 10]."),
        seed: int = typer.Option(None, help="Seed of the data order, augmentation and fresh weights [default: 42]."),
        compile: bool = typer.Option(False, "--compile", help="torch.compile the model."),
        dtype: str = typer.Option(
            None, help="auto | float32 | bfloat16 | float16 [default: auto = bf16 on CUDA, fp32 on CPU]."
        ),
        device: str = typer.Option(None, help="auto | cpu | cuda."),
        grad_checkpoint: bool = typer.Option(False, "--grad-checkpoint", help="Recompute blocks in backward."),
        num_workers: int = typer.Option(None, help="Data loading worker processes per rank [default: 0]."),
        no_random_system_prompt: bool = typer.Option(
            False, "--no-random-system-prompt", help="Switch off the reference's random system prompt (p=0.2)."
        ),
        keep_empty_think: bool = typer.Option(
            False, "--keep-empty-think", help="Switch off dropping the empty think block (p=0.8)."
        ),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out where it stopped."),
        nproc: int = typer.Option(None, help="Launch N processes with torchrun (DDP) on this machine."),
        show_sample: int = typer.Option(None, metavar="N", help="Print N rendered training samples and exit."),
        wandb: bool = typer.Option(False, "--wandb", help="Log to Weights & Biases (pip install 'mmv[wandb]')."),
        tensorboard: bool = typer.Option(
            False, "--tensorboard", help="Log to TensorBoard (pip install 'mmv[tensorboard]')."
        ),
    ) -> None:
        given = {k: v for k, v in locals().items() if (k in TRAIN_FIELDS and v is not None) or (k in TRAIN_FLAGS and v)}
        data_options = {"random_system_prompt": not no_random_system_prompt, "drop_empty_think": not keep_empty_think}
        _train(
            stage,
            given,
            [*(data or []), *(files or [])],
            out,
            vision,
            tokenizer,
            resume,
            nproc,
            show_sample,
            data_options,
        )

    command.__doc__ = STAGE_HELP[stage]
    command.__name__ = stage
    return command


pretrain = _make("pretrain")
sft = _make("sft")


def _train(
    stage: str,
    given: dict[str, Any],
    data: list[str],
    out: Path,
    vision: str | None,
    tokenizer: str | None,
    resume: bool,
    nproc: int | None,
    show_sample: int | None,
    data_options: dict[str, Any],
) -> None:
    from mmv.errors import MmvError
    from mmv.train.config import stage_config
    from mmv.train.run import RunRequest, check_request, run

    if nproc is not None and nproc < 1:
        raise MmvError(f"--nproc must be at least 1, got {nproc}")
    cfg = stage_config(stage, **given)
    request = RunRequest(
        cfg=cfg,
        out=out.expanduser().absolute(),
        data=data,
        vision=vision,
        tokenizer=tokenizer,
        resume=resume,
        given=given,
        data_options=data_options,
        show_sample=show_sample or 0,
    )
    rank = int(os.environ.get("RANK", "0"))
    if nproc and nproc > 1 and "WORLD_SIZE" not in os.environ and not show_sample:
        from mmv.train.distributed import launch

        check_request(request, stage)
        raise SystemExit(launch(nproc, sys.argv[1:]))
    from mmv.train.trainer import Interrupted

    try:
        summary = run(request, stage)
    except MmvError:
        if rank == 0:
            raise
        raise SystemExit(2) from None  # every rank meets the same error; rank 0 reports it
    except Interrupted as exc:
        if rank == 0:
            say(
                f"interrupted: resume checkpoint {exc.result.checkpoint}; continue with "
                f"`mmv {stage} --out {out} --resume`"
            )
            emit_json(exc.summary)
        raise SystemExit(130) from None
    if rank == 0:
        if not show_sample:
            loss = f"{summary['loss']:.4f}" if summary["loss"] is not None else "n/a"
            say(f"done: {summary['weights']} (step {summary['step']}, loss {loss})")
        emit_json(summary)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A finished torchrun worker leaves without interpreter shutdown: about one run in fifteen, torch's gloo
        # threads were torn down during it and aborted the process ("terminate called without an active
        # exception", exit -6) after every file had been written. The process group is already destroyed and
        # every checkpoint is fsynced; only the standard streams still need flushing.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
