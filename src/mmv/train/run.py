"""One training run end to end: resolve inputs, build data and model, train, write the run directory, summarise.

A resumed run takes its settings from RUN_DIR/config.json; only options that do not change the maths may differ.
A run owns its directory while it runs (mmv.train.lock): it starts in a new or empty folder (or over an earlier
start that saved nothing), or continues the run there with --resume; any other folder is refused untouched.
"""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.adapters.spec import ADAPTER_DIR, WEIGHTS_NAME, check_adapter_options
from mmv.config import check_field_types
from mmv.console import say
from mmv.errors import MmvError
from mmv.layout import CONFIG_FILE
from mmv.train.claim import owning, refuse_foreign, repair_save, tidy
from mmv.train.config import TrainConfig, weights_name
from mmv.train.distributed import DistContext, gather_objects, setup, teardown
from mmv.train.metrics import check_extras
from mmv.train.rundir import METRICS_FILE, read_run_config, run_config, truncate_metrics, write_json
from mmv.train.state import ResumeState, checkpoint_paths, latest_resume
from mmv.vision_input.tiles import tile_side
from mmv.vision_input.video import DEFAULT_FRAMES

if TYPE_CHECKING:
    from mmv.loading import ModelInputs, Note

# options a resumed run may change: they steer reporting and speed, not what is computed
# (batch_size and accum too: they say how the global batch is split, e.g. to keep it when the world size changes)
RESUME_MUTABLE = (
    "save_every",
    "keep",
    "log_every",
    "num_workers",
    "wandb",
    "tensorboard",
    "device",
    "compile",
    "grad_checkpoint",
    "batch_size",
    "accum",
)


@dataclass
class RunRequest:
    cfg: TrainConfig
    out: Path
    data: list[str] = field(default_factory=list)
    vision: str | None = None
    tokenizer: str | None = None
    resume: bool = False
    given: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields set on the command line
    data_options: dict[str, Any] = field(default_factory=dict)  # DataSpec flags (random_system_prompt, ...)
    show_sample: int = 0
    threads: int | None = None  # the CPU threads each process computes on, recorded in config.json
    on_note: Callable[[Note], None] = say  # shows what the user should know about the model (rank 0 only)


@dataclass
class RunPlan:
    cfg: TrainConfig  # init resolved: "none" or an absolute path
    data_spec: dict[str, Any]
    inputs: ModelInputs  # the starting weights read, the encoder and tokenizer found
    vision_dir: str
    tokenizer_dir: str
    resume: ResumeState | None


def absolute_data(files: list[str]) -> list[str]:
    """Absolute paths (globs kept as patterns), so a run directory does not depend on the working directory."""
    if not files:
        raise MmvError("no training data given: expected one or more parquet files or glob patterns", option="data")
    out = []
    for item in files:
        path = Path(item).expanduser()
        if not glob.has_magic(item) and not path.is_file():
            raise MmvError(f"the training data {item} does not exist", option="data")
        out.append(str(path.absolute()))
    return out


def check_fresh(req: RunRequest) -> list[str]:
    """A new run may start over a directory whose earlier start saved nothing yet, never over saved work."""
    refuse_foreign(req.out)
    if checkpoint_paths(req.out) or list(req.out.glob("*_vlm_*.pth")) or (req.out / ADAPTER_DIR).is_dir():
        raise MmvError(
            f"{req.out} already holds a run; resume it or choose another output folder", option=("resume", "out")
        )
    check_extras(req.cfg.wandb, req.cfg.tensorboard)
    check_adapter_options(req.cfg, req.given)
    return absolute_data(req.data)


def plan_fresh(req: RunRequest) -> RunPlan:
    from mmv.train.build import training_inputs

    files = check_fresh(req)
    inputs = training_inputs(req.cfg.init, req.vision, req.tokenizer, req.cfg)
    cfg = dataclasses.replace(req.cfg, init=str(inputs.sources.reference) if inputs.sources else "none")
    vision_dir, tokenizer_dir = str(inputs.vision_dir), str(inputs.tokenizer_dir)
    spec = {
        "files": files,
        "tokenizer_dir": tokenizer_dir,
        "vision_dir": vision_dir,
        "max_seq_len": cfg.max_seq_len,
        "tokens_per_image": inputs.config.image_token_len,
        "image_token": inputs.config.image_special_token,
        "tiles": inputs.config.image_tiles,
        "tile_side": tile_side(inputs.config.vision),
        "frames": DEFAULT_FRAMES,
        "seed": cfg.seed,
        "pack": cfg.pack,
        "num_workers": cfg.num_workers,
        **req.data_options,
    }
    return RunPlan(cfg, spec, inputs, vision_dir, tokenizer_dir, None)


def resume_settings(req: RunRequest, stage: str) -> tuple[TrainConfig, dict[str, Any], dict[str, Any]]:
    """The saved run's config (with the options that may change applied), its data spec and its config.json."""
    if not (req.out / CONFIG_FILE).is_file():
        raise MmvError(f"{req.out} holds no run to resume (no {CONFIG_FILE}); start a new run there instead")
    saved = read_run_config(req.out)
    if saved["stage"] != stage:
        raise MmvError(f"{req.out} holds a {saved['stage']} run; resume it with `mmv {saved['stage']}`")
    cfg, spec = saved_settings(req.out, saved)
    for key, value in req.given.items():
        if key not in RESUME_MUTABLE and key != "init" and value != getattr(cfg, key):
            mutable = ", ".join(k.replace("_", " ") for k in RESUME_MUTABLE)
            raise MmvError(
                f"the {key.replace('_', ' ')} setting {value} differs from the run's {getattr(cfg, key)}: a resumed "
                f"run keeps its settings (only {mutable} may change)",
                option=key,
            )
    frames = req.data_options.get("frames", spec["frames"])
    if frames != spec["frames"]:
        raise MmvError(
            f"the frames setting {frames} differs from the run's {spec['frames']}: a resumed run keeps its settings",
            option="frames",
        )
    cfg = dataclasses.replace(cfg, **{k: v for k, v in req.given.items() if k in RESUME_MUTABLE})
    check_extras(cfg.wandb, cfg.tensorboard)
    spec = {**spec, "num_workers": cfg.num_workers}
    if req.data and absolute_data(req.data) != spec["files"]:
        raise MmvError(
            f"the training data differs from the files the run in {req.out} trains on; leave it out to resume",
            option="data",
        )
    if not checkpoint_paths(req.out):
        raise MmvError(
            f"{req.out} has no resume checkpoint yet (checkpoints/step-N.pt); start it again, without resuming, "
            "into a new output folder",
            option=("resume", "out"),
        )
    return cfg, spec, saved


def saved_settings(run_dir: Path, saved: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """The training settings and data spec a run recorded, checked field by field (config.json may be edited).

    Training settings a run does not record (it predates them) take their defaults."""
    from mmv.data.loader import DataSpec
    from mmv.layout import reading

    with reading(run_dir / CONFIG_FILE):
        for section, fields in (("train", TrainConfig), ("data", DataSpec)):
            unknown = sorted(set(saved[section]) - {f.name for f in dataclasses.fields(fields)})
            if unknown:  # a misspelt hand edit would otherwise be ignored
                raise MmvError(f"{section} has unknown field {unknown[0]!r}")
        cfg = TrainConfig.from_dict(saved["train"])
        try:
            spec = DataSpec(**saved["data"])
        except TypeError:
            absent = sorted(f.name for f in dataclasses.fields(DataSpec) if f.name not in saved["data"])
            raise MmvError(f"data lacks {', '.join(absent)}") from None
        check_field_types(spec)
    return cfg, dataclasses.asdict(spec)


def plan_resume(req: RunRequest, stage: str) -> RunPlan:
    from mmv.train.build import training_inputs

    cfg, spec, saved = resume_settings(req, stage)
    inputs = training_inputs(cfg.init, saved["vision_dir"], saved["tokenizer_dir"], cfg)
    state = latest_resume(req.out)
    return RunPlan(cfg, spec, inputs, saved["vision_dir"], saved["tokenizer_dir"], state)


def check_request(req: RunRequest, stage: str) -> None:
    """What can be refused without a model or data, before a launcher starts any worker."""
    if req.resume:
        resume_settings(req, stage)
    else:
        check_fresh(req)


def with_feature_cache(plan: RunPlan, may_build: bool) -> RunPlan:
    """The plan reading features from its cache (`mmv.train.features`) and building no encoder; as it is when the
    run uses no cache."""
    from mmv.train.features import ready_feature_cache

    if not plan.cfg.uses_feature_cache:
        return plan
    path = ready_feature_cache(plan.data_spec, plan.cfg, plan.vision_dir, may_build)
    spec = {**plan.data_spec, "feature_cache": str(path)}
    return dataclasses.replace(plan, data_spec=spec, inputs=dataclasses.replace(plan.inputs, vision_dir=None))


def build_features_before_launch(req: RunRequest, stage: str) -> None:
    """A launcher builds a missing feature cache once, before any worker starts (the workers only open it)."""
    cfg = resume_settings(req, stage)[0] if req.resume else req.cfg
    if cfg.uses_feature_cache:
        with_feature_cache(plan_resume(req, stage) if req.resume else plan_fresh(req), may_build=True)


def show_samples(data: Any, count: int, batch_size: int) -> None:
    shown = 0
    for batch in data.batches(0, 0, batch_size):
        for index in range(len(batch.rows)):
            say(data.render(batch, index) + "\n")
            shown += 1
            if shown >= count:
                return


def describe(model: Any, trainer: Any, plan: RunPlan, data_rows: int, ctx: DistContext) -> None:
    """Start-of-run figures: parameters, the memory estimate and the global batch."""
    from mmv.adapters.quantize import logical_numel, quantized_numel
    from mmv.train.memory import estimate
    from mmv.train.metrics import human_bytes, human_count

    cfg = plan.cfg
    encoder = sum(p.numel() for p in model.vision_encoder.parameters()) if model.vision_encoder else 0
    total = sum(logical_numel(p) for p in model.parameters())
    trainable = sum(p.numel() for p in trainer.params)
    mem = estimate(
        model.config,
        total,
        trainable,
        cfg.batch_size,
        cfg.max_seq_len,
        trainer.dtype.itemsize,
        cfg.grad_checkpoint,
        quantized_params=quantized_numel(model) if cfg.qlora else 0,
        adapter_width=adapter_width(cfg),
    )
    say(
        f"model: {human_count(total - encoder)} parameters + {human_count(encoder)} encoder; "
        f"trainable {human_count(trainable)} of {human_count(total)} ({trainable / total:.2%}: {training_mode(cfg)}"
        f"{', encoder too' if cfg.train_vision else ''}); device {ctx.device}, {trainer.dtype}"
    )
    say(
        f"memory estimate per process: {human_bytes(mem.total)} = weights {human_bytes(mem.weights)} + "
        f"gradients {human_bytes(mem.gradients)} + AdamW {human_bytes(mem.optimizer)} + activations "
        f"{human_bytes(mem.activations)} (batch {cfg.batch_size} x {cfg.max_seq_len} tokens)"
    )
    say(
        f"data: {data_rows} rows; global batch {trainer.global_batch} = {cfg.batch_size} x accum "
        f"{cfg.accum} x {ctx.world_size} process(es)"
    )


def training_mode(cfg: TrainConfig) -> str:
    if cfg.lora is None:
        return f"--freeze {cfg.freeze}"
    from mmv.adapters.spec import AdapterSpec

    base = ", base in 4-bit NF4" if cfg.qlora else ""
    return f"{AdapterSpec.of(cfg).describe()} + the projector{base}"


def adapter_width(cfg: TrainConfig) -> int:
    """The adapter ranks summed over one block's adapted layers (the memory estimate's activations)."""
    from mmv.adapters.spec import parse_targets

    return 0 if cfg.lora is None else cfg.lora * len(parse_targets(cfg.lora_targets))


def warn_coarse_files(source: Any) -> None:
    from mmv.data.source import COARSE_ROWS

    for coarse in source.coarse_files():
        say(
            f"warning: {coarse} is stored in row groups of over {COARSE_ROWS:,} rows, so its rows are read almost "
            f"in file order; `mmv data rechunk {coarse} --out FILE` writes a copy that shuffles well"
        )


def sum_stats(per_rank: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for stats in per_rank:
        for key, value in stats.items():
            total[key] = total.get(key, 0) + value
    return total


def run(req: RunRequest, stage: str) -> dict[str, Any]:
    """Train; return the JSON summary. Raises `Interrupted` (carrying the summary) after Ctrl-C."""
    from mmv.data.loader import DataSpec, TrainData

    if req.show_sample:
        return show_training_samples(req)
    ctx = setup(req.cfg.device)
    try:
        if req.cfg.qlora:  # before anything is written: the run could not start anyway
            from mmv.adapters.quantize import check_qlora

            check_qlora(ctx.device)
        with owning(req.out, ctx):
            plan = plan_resume(req, stage) if req.resume else plan_fresh(req)
            plan = with_feature_cache(plan, may_build=not ctx.distributed)
            spec = DataSpec(**plan.data_spec)
            data = TrainData(spec, ctx.rank, ctx.world_size)
            refuse_no_rows(data)
            return train(req, stage, plan, spec, data, ctx)
    finally:
        teardown(ctx)


def refuse_no_rows(data: Any) -> None:
    if data.num_rows == 0:
        files = ", ".join(str(f) for f in data.source.files)
        raise MmvError(f"the training data holds no rows ({files}): nothing to train on")


def show_training_samples(req: RunRequest) -> dict[str, Any]:
    """--show-sample: the data as the model will see it; needs only the tokenizer (and --vision if given)."""
    from mmv.data.loader import DataSpec, TrainData
    from mmv.train.build import preview_config, preview_tokenizer, preview_vision

    cfg = req.cfg
    tokenizer = str(preview_tokenizer(cfg.init, req.tokenizer))
    vision = preview_vision(req.vision)
    model = preview_config(cfg.init, vision, tokenizer, cfg)
    spec = DataSpec(
        files=absolute_data(req.data),
        tokenizer_dir=tokenizer,
        vision_dir=vision,
        max_seq_len=cfg.max_seq_len,
        tokens_per_image=model.image_token_len,
        image_token=model.image_special_token,
        tiles=model.image_tiles,
        tile_side=tile_side(model.vision),
        seed=cfg.seed,
        pack=cfg.pack,
        **req.data_options,
    )
    show_samples(TrainData(spec), req.show_sample, cfg.batch_size)
    return {"run_dir": str(req.out), "shown_samples": req.show_sample}


def train(req: RunRequest, stage: str, plan: RunPlan, spec: Any, data: Any, ctx: DistContext) -> dict[str, Any]:
    from mmv.train.build import build_model
    from mmv.train.metrics import Sinks
    from mmv.train.trainer import Interrupted, NothingTrained, Trainer

    cfg = plan.cfg
    model = build_model(plan.inputs, cfg)
    if cfg.lora is not None:
        from mmv.adapters.training import prepare_model

        prepare_model(model, cfg, ctx.device)
    name = ADAPTER_DIR if cfg.lora is not None else weights_name(stage, model.config.hidden_size, model.config.use_moe)
    config = run_config(
        stage,
        model.config.to_dict(),
        cfg.to_dict(),
        dataclasses.asdict(spec),
        plan.vision_dir,
        plan.tokenizer_dir,
        name,
        req.threads,
    )
    sinks = None
    if ctx.is_main:
        tidy(req.out)
        if plan.resume is None:
            write_json(req.out / CONFIG_FILE, config)
            (req.out / METRICS_FILE).unlink(missing_ok=True)  # left by an earlier start that saved nothing
        else:
            truncate_metrics(req.out, plan.resume.progress.step)
        sinks = Sinks(req.out, config, cfg.wandb, cfg.tensorboard)
    trainer = Trainer(cfg, model, data, ctx, req.out, name, plan.vision_dir, plan.resume, sinks)
    if ctx.is_main:
        if plan.resume is not None:
            repair_save(trainer, req.out, plan.resume.progress.step)
        for note in plan.inputs.notes:
            req.on_note(note)
        describe(model, trainer, plan, data.num_rows, ctx)
        warn_coarse_files(data.source)
        if plan.resume is not None:
            p = plan.resume.progress
            say(
                f"resuming at step {p.step} (epoch {p.epoch}, sample {p.position}; written by "
                f"{p.world_size} process(es))"
            )
    interrupted = None
    try:
        result = trainer.fit()
    except Interrupted as exc:
        interrupted, result = exc, exc.result
    except NothingTrained:
        raise nothing_trained(data, ctx) from None
    finally:
        if sinks is not None:
            sinks.close()
    gathered = gather_objects(ctx, (data.stats(), data.skips.examples))
    stats = sum_stats([counts for counts, _ in gathered])
    summary = summarise(req, stage, result, stats, ctx, interrupted is not None)
    if interrupted is not None:
        interrupted.summary = summary
        raise interrupted
    if ctx.is_main:
        report_skipped(stats, [e for _, rank_examples in gathered for e in rank_examples])
    return summary


def nothing_trained(data: Any, ctx: DistContext) -> MmvError:
    """Every row was skipped: one sentence with the counts and an example (all ranks call this together)."""
    gathered = gather_objects(ctx, (data.stats(), data.skips.examples))
    stats = sum_stats([counts for counts, _ in gathered])
    skipped = ", ".join(f"{k} {v}" for k, v in stats.items() if k not in ("rows", "bad") and v)
    example = next((e for _, rank_examples in gathered for e in rank_examples), None)
    return MmvError(
        f"nothing to train on: all {stats.get('rows', 0)} rows read were skipped ({skipped})"
        f"{f', e.g. {example}' if example else ''}; no weights were written"
    )


def report_skipped(stats: dict[str, int], examples: list[str]) -> None:
    skipped = {k: v for k, v in stats.items() if k not in ("rows", "bad") and v}
    if skipped:
        say(
            f"skipped rows: {', '.join(f'{k} {v}' for k, v in skipped.items())} (of {stats.get('rows', 0)} read), "
            f"e.g. {'; '.join(examples[:3])}"
        )


def summarise(
    req: RunRequest, stage: str, result: Any, stats: dict[str, int], ctx: DistContext, interrupted: bool
) -> dict[str, Any]:
    p = result.progress
    weights = result.weights
    return {
        "run_dir": str(req.out),
        "stage": stage,
        "interrupted": interrupted,
        "step": p.step,
        "epoch": p.epoch,
        "steps_this_run": result.steps,
        "samples_seen": p.samples_seen,
        "total_samples": p.total_samples,
        "loss": result.loss,
        "seconds": round(result.seconds, 3),
        "samples_per_s": result.samples / result.seconds if result.seconds else None,
        "tokens_per_s": result.tokens / result.seconds if result.seconds else None,
        "weights": str(weights) if weights else None,
        "safetensors": str(safetensors_of(weights)) if weights else None,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "world_size": ctx.world_size,
        "data": stats,
    }


def safetensors_of(weights: Path) -> Path:
    """The safetensors file of a run's result: beside the .pth, or inside a LoRA run's adapter folder."""
    return weights / WEIGHTS_NAME if weights.is_dir() else weights.with_suffix(".safetensors")
