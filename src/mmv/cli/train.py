"""`mmv pretrain` and `mmv sft`: the same trainer with the reference's stage defaults."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from mmv.cli.common import MODEL_FLAGS, emit_json, handle_errors, show_notes
from mmv.config import PRESETS
from mmv.console import say
from mmv.device import DEVICE_HELP, DTYPE_HELP
from mmv.train.config import STAGE_DEFAULTS, TrainConfig

# the settings an error can name (see mmv.errors) -> flags
FLAGS = {**MODEL_FLAGS, "init": "--init", "projector": "--projector", "merge": "--merge K", "tiles": "--tiles N"}


def stage_default(stage: str, name: str) -> Any:
    """The value a stage uses when the option is not given: its stage default, else TrainConfig's."""
    return STAGE_DEFAULTS[stage].get(name, getattr(TrainConfig, name))


def stage_help(stage: str) -> str:
    d = STAGE_DEFAULTS[stage]
    what = {"pretrain": "Train the projector on image captions", "sft": "Instruction-tune on conversations"}[stage]
    return (
        f"{what} (defaults: --init {d['init']}, --freeze {d['freeze']}, lr {d['lr']:g}, batch {d['batch_size']}, "
        f"max length {d['max_seq_len']})."
    )


def _make(stage: str) -> Callable[..., None]:
    def default(name: str) -> str:
        return f"[default: {stage_default(stage, name)}]"

    @handle_errors(flags=FLAGS)
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
            None,
            help=f"llm | pretrain | none | a weights file, run directory or transformers folder {default('init')}.",
        ),
        preset: str = typer.Option(
            None, help=f"Model shape for --init none: {' | '.join(PRESETS)} {default('preset')}."
        ),
        experts_per_token: int = typer.Option(
            None, metavar="K", help="Experts each token of a MoE routes to [default: as --init records, else --preset]."
        ),
        vision: str = typer.Option(
            None,
            help="Vision encoder folder: CLIP, SigLIP, SigLIP2 or DINOv2 [default: beside --init, its run's, else "
            "the cached siglip2-<variant>].",
        ),
        tokenizer: str = typer.Option(
            None, help="Tokenizer folder [default: beside --init, its run's, else the cached llm]."
        ),
        freeze: str = typer.Option(
            None, help=f"projector | ends (projector + first/last block) | none {default('freeze')}."
        ),
        train_vision: bool = typer.Option(False, "--train-vision", help="Also train the vision encoder."),
        projector: str = typer.Option(
            None,
            help="A fresh projector: linear | mlp | ln-mlp [default: the reference variant's for its encoder, "
            "else ln-mlp].",
        ),
        merge: int = typer.Option(
            None,
            metavar="K",
            help="A fresh projector merges KxK patches into one image token (NaFlex: K patches) [default: the "
            "reference variant's, else 1].",
        ),
        tiles: int = typer.Option(
            None,
            metavar="N",
            help="Cut each image into up to N encoder-sized tiles plus a global view [default: as --init records, "
            "else 1].",
        ),
        epochs: int = typer.Option(None, help=f"Epochs {default('epochs')}."),
        max_steps: int = typer.Option(None, help="Stop after this many optimizer steps."),
        batch_size: int = typer.Option(None, help=f"Samples per process per micro-batch {default('batch_size')}."),
        accum: int = typer.Option(None, help=f"Micro-batches per optimizer step {default('accum')}."),
        lr: float = typer.Option(None, help=f"Peak learning rate {default('lr')}."),
        warmup: int = typer.Option(None, help=f"Linear warmup steps (the reference has none) {default('warmup')}."),
        max_seq_len: int = typer.Option(
            None, help=f"Longest sample in tokens (longer ones are dropped) {default('max_seq_len')}."
        ),
        pack: bool = typer.Option(False, "--pack", help="Pack several samples per row (attention kept apart)."),
        save_every: int = typer.Option(None, help=f"Steps between checkpoints {default('save_every')}."),
        keep: int = typer.Option(None, help=f"Resume checkpoints kept {default('keep')}."),
        log_every: int = typer.Option(None, help=f"Steps per metrics line {default('log_every')}."),
        seed: int = typer.Option(
            None, help=f"Seed of the data order, augmentation and fresh weights {default('seed')}."
        ),
        compile: bool = typer.Option(False, "--compile", help="torch.compile the model."),
        dtype: str = typer.Option(None, help=f"{DTYPE_HELP} {default('dtype')}."),
        device: str = typer.Option(None, help=f"{DEVICE_HELP} {default('device')}."),
        grad_checkpoint: bool = typer.Option(False, "--grad-checkpoint", help="Recompute blocks in backward."),
        num_workers: int = typer.Option(None, help=f"Data loading worker processes per rank {default('num_workers')}."),
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
        # Every option is named here once: a renamed parameter fails loudly instead of silently dropping a setting.
        options = {
            "init": init, "preset": preset, "experts_per_token": experts_per_token, "freeze": freeze,
            "projector": projector, "merge": merge, "tiles": tiles,
            "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "accum": accum, "lr": lr,
            "warmup": warmup, "max_seq_len": max_seq_len, "save_every": save_every, "keep": keep,
            "log_every": log_every, "seed": seed, "dtype": dtype, "device": device, "num_workers": num_workers,
            # switches: only an explicit "on" counts as given (off is every default)
            "train_vision": train_vision or None, "pack": pack or None, "compile": compile or None,
            "grad_checkpoint": grad_checkpoint or None, "wandb": wandb or None, "tensorboard": tensorboard or None,
        }  # fmt: skip
        given = {name: value for name, value in options.items() if value is not None}
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

    command.__doc__ = stage_help(stage)
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
        on_note=lambda note: show_notes([note], FLAGS),
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
