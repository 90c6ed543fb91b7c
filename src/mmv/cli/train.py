"""`mmv pretrain` and `mmv sft`: the same trainer with the reference's stage defaults."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from mmv.adapters.spec import DEFAULT_LORA_LR
from mmv.cli.common import MODEL_FLAGS, TRAIN_THREADS_HELP, emit_json, handle_errors, show_notes
from mmv.config import PRESETS
from mmv.console import say
from mmv.device import DEVICE_HELP, DTYPE_HELP
from mmv.train.config import STAGE_DEFAULTS, TrainConfig

# the settings an error can name (see mmv.errors) -> flags; of the loading commands' flags, only those training has
NOT_TRAINING = ("attention_heads", "adapter", "quantize")
FLAGS = {
    **{name: flag for name, flag in MODEL_FLAGS.items() if name not in NOT_TRAINING},
    "init": "--init", "nproc": "--nproc N", "projector": "--projector", "merge": "--merge K",
    "tiles": "--tiles N", "frames": "--frames N", "data": "--data", "out": "--out", "resume": "--resume",
    "freeze": "--freeze",
    "train_vision": "--train-vision", "cache_features": "--cache-features", "feature_cache": "--feature-cache",
    "cache_dtype": "--cache-dtype", "lr": "--lr", "warmup": "--warmup", "epochs": "--epochs",
    "max_steps": "--max-steps", "batch_size": "--batch-size", "accum": "--accum", "max_seq_len": "--max-seq-len",
    "save_every": "--save-every", "keep": "--keep", "log_every": "--log-every", "num_workers": "--num-workers",
    "lora": "--lora R", "lora_alpha": "--lora-alpha A", "lora_dropout": "--lora-dropout P",
    "lora_targets": "--lora-targets LIST", "dora": "--dora", "qlora": "--qlora", "wandb": "--wandb",
    "tensorboard": "--tensorboard", "seed": "--seed", "preset": "--preset", "pack": "--pack",
    "compile": "--compile", "grad_checkpoint": "--grad-checkpoint",
}  # fmt: skip


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
        frames: int = typer.Option(
            None,
            metavar="N",
            help="Frames sampled from each row's video (video_bytes), each an image after its timestamp [default: 8].",
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
        cache_features: bool = typer.Option(
            False,
            "--cache-features",
            help="Encode every image once into a feature cache beside the data (reused while data and encoder are "
            "unchanged) and train from it: no JPEG decoding, no encoder run.",
        ),
        feature_cache: Path = typer.Option(
            None,
            "--feature-cache",
            metavar="FILE",
            help="The feature cache to build or reuse (implies --cache-features).",
        ),
        cache_dtype: str = typer.Option(
            None, help=f"float16 | float32 (exactly the losses without a cache) {default('cache_dtype')}."
        ),
        no_random_system_prompt: bool = typer.Option(
            False, "--no-random-system-prompt", help="Switch off the reference's random system prompt (p=0.2)."
        ),
        keep_empty_think: bool = typer.Option(
            False, "--keep-empty-think", help="Switch off dropping the empty think block (p=0.8)."
        ),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out where it stopped."),
        nproc: int = typer.Option(None, help="Launch N processes with torchrun (DDP) on this machine."),
        threads: int = typer.Option(None, "--threads", min=1, metavar="N", help=TRAIN_THREADS_HELP),
        show_sample: int = typer.Option(None, metavar="N", help="Print N rendered training samples and exit."),
        wandb: bool = typer.Option(False, "--wandb", help="Log to Weights & Biases (pip install 'mmv[wandb]')."),
        tensorboard: bool = typer.Option(
            False, "--tensorboard", help="Log to TensorBoard (pip install 'mmv[tensorboard]')."
        ),
        lora: int = typer.Option(
            None,
            metavar="R",
            help="Train rank-R LoRA adapters on the LLM's linear layers (+ the projector) instead of its weights"
            f"{' (default lr then ' + format(DEFAULT_LORA_LR, 'g') + ')' if stage == 'sft' else ''}.",
        ),
        lora_alpha: float = typer.Option(None, metavar="A", help="Adapter scale numerator (alpha / R) [default: 2R]."),
        lora_dropout: float = typer.Option(None, metavar="P", help=f"Adapter input dropout {default('lora_dropout')}."),
        lora_targets: str = typer.Option(None, metavar="LIST", help=f"Layers to adapt {default('lora_targets')}."),
        dora: bool = typer.Option(False, "--dora", help="DoRA: weight-decomposed adapters (with --lora)."),
        qlora: bool = typer.Option(
            False, "--qlora", help="Hold the frozen base in 4-bit NF4 (with --lora; pip install 'mmv[qlora]')."
        ),
    ) -> None:
        # Every option is named here once: a renamed parameter fails loudly instead of silently dropping a setting.
        options = {
            "init": init, "preset": preset, "experts_per_token": experts_per_token, "freeze": freeze,
            "projector": projector, "merge": merge, "tiles": tiles,
            "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "accum": accum, "lr": lr,
            "warmup": warmup, "max_seq_len": max_seq_len, "save_every": save_every, "keep": keep,
            "log_every": log_every, "seed": seed, "dtype": dtype, "device": device, "num_workers": num_workers,
            "cache_dtype": cache_dtype,
            "feature_cache": str(feature_cache.expanduser().absolute()) if feature_cache else None,
            "lora": lora, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout, "lora_targets": lora_targets,
            # switches: only an explicit "on" counts as given (off is every default)
            "train_vision": train_vision or None, "pack": pack or None, "compile": compile or None,
            "grad_checkpoint": grad_checkpoint or None, "wandb": wandb or None, "tensorboard": tensorboard or None,
            "cache_features": cache_features or None, "dora": dora or None, "qlora": qlora or None,
        }  # fmt: skip
        given = {name: value for name, value in options.items() if value is not None}
        data_options = {"random_system_prompt": not no_random_system_prompt, "drop_empty_think": not keep_empty_think}
        if frames is not None:
            data_options["frames"] = frames
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
            threads,
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
    threads: int | None,
) -> None:
    from mmv.errors import MmvError
    from mmv.threads import requested_threads, set_threads
    from mmv.train.config import stage_config
    from mmv.train.run import RunRequest, build_features_before_launch, check_request, run

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
        from mmv.train.lock import held_for_workers

        requested_threads(threads)  # a bad MMV_THREADS is refused once, not by every worker
        with held_for_workers(request.out):
            check_request(request, stage)
            build_features_before_launch(request, stage)
            raise SystemExit(launch(nproc, sys.argv[1:]))
    threads = set_threads(resume_threads(threads, request), processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    request.threads = threads
    from mmv.train.trainer import Interrupted

    try:
        summary = run(request, stage)
    except MmvError:
        if rank == 0:
            raise
        raise SystemExit(2) from None  # every rank meets the same error; rank 0 reports it
    except Interrupted as exc:
        ignore_further_ctrl_c()  # every file is written: one more Ctrl-C must not turn exit 130 into a signal death
        if rank == 0:
            how = "interrupted again while saving: stopped once it was written" if exc.held else "interrupted"
            say(f"{how}: resume checkpoint {exc.result.checkpoint}; continue with `mmv {stage} --out {out} --resume`")
            emit_json(exc.summary)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        ignore_further_ctrl_c()
        if rank == 0:
            say(f"interrupted: stopped at once{last_checkpoint(request.out, stage)}")
        raise SystemExit(130) from None
    if rank == 0:
        if not show_sample:
            step = summary["step"]
            loss = f"loss {summary['loss']:.4f} at step {step}" if summary["loss"] is not None else "no loss"
            # the step lines (and metrics.jsonl) are means over each --log-every window: say why they differ
            say(f"done: {summary['weights']} ({loss}; each step line shows the mean loss since the line before)")
        emit_json({**summary, "threads": threads})
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A finished torchrun worker leaves without interpreter shutdown: about one run in fifteen, torch's gloo
        # threads were torn down during it and aborted the process ("terminate called without an active
        # exception", exit -6) after every file had been written. The process group is already destroyed and
        # every checkpoint is fsynced; only the standard streams still need flushing.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def resume_threads(option: int | None, request: Any) -> int | None:
    """--threads, else MMV_THREADS, else (resuming) the count the run started on: a different count sums in a
    different order, and the resumed losses would drift from an uninterrupted run's in their last digits."""
    from mmv.threads import requested_threads
    from mmv.train.rundir import recorded_threads

    requested = requested_threads(option)
    if requested is None and request.resume:
        return recorded_threads(request.out)
    return requested


def ignore_further_ctrl_c() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def last_checkpoint(run_dir: Path, stage: str) -> str:
    """Where a run stopped at once can continue from: its newest resume checkpoint, untouched by the stop."""
    from mmv.train.state import checkpoint_paths

    paths = checkpoint_paths(run_dir)
    if not paths:
        return ", before any checkpoint was written"
    return f"; resume checkpoint {paths[-1]} is intact, continue with `mmv {stage} --out {run_dir} --resume`"
