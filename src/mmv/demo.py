"""The offline demo: synthetic data -> a tiny VLM trained from scratch (pretrain, then SFT) -> held-out evaluation.

Everything runs through the same code as real training and evaluation (`mmv.train.run`, `mmv.loading`,
`mmv.eval`); only the inputs are made here: the data, a byte-level BPE tokenizer, a random SigLIP-, CLIP- or
DINOv2-architecture encoder (trained too, `--train-vision`) and a random text-only LLM to start from (like
`llm_768.pth`).

Step counts follow from `minutes` by a fixed rate per task, never from measured speed, so a seed gives the same model
on any machine; a faster machine only finishes sooner.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmv.errors import MmvError
from mmv.layout import VISION_SUBFOLDER

SECONDS_PER_STEP = 0.16  # one optimizer step of the demo model at batch 16 on a 2-core laptop CPU
# the hires task's step at --tiles 4: five views an image (64 patches each, 16 tokens once merged); --tiles 1 takes
# the same steps, so the two differ only in what the model sees
HIRES_SECONDS_PER_STEP = 0.25
# the video task's step: two 64-token frames a sample, and an MP4 to decode (0.23-0.3 s measured at load 1-4)
VIDEO_SECONDS_PER_STEP = 0.25
PRETRAIN_SHARE = 0.4  # of the training steps; the rest is SFT
DEMO_MINUTES = 8.0  # every task's training length but the hires one's
# the hires task's: 960 steps read the pattern through the tiles (100% at --tiles 4, 600 steps did too; --tiles 1
# stays at chance) with half the other tasks' wait (BENCHMARKS.md)
HIRES_MINUTES = 4.0


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 0
    # training length at the task's seconds_per_step (synthesis and evaluation come on top); None: the task's own
    minutes: float | None = None
    n: int = 4000  # synthetic rows per training split
    eval_n: int = 300  # held-out questions (colour, shape, count in turn)
    batch_size: int = 16
    pretrain_lr: float = 4e-3  # from scratch: far above the reference's fine-tuning rates (6e-3 learns worse)
    sft_lr: float = 3e-3
    warmup: int = 100  # steps of linear warmup: at 20, runs from scratch lose steps to early instability
    num_workers: int = 1  # a DataLoader process decodes images while the main one trains
    max_seq_len: int = 256  # the longest synthetic conversation is about 230 tokens with two images
    encoder_hidden: int = 64  # the tiny encoder's width (image_hidden_size)
    encoder: str = "siglip"  # the tiny encoder's family: siglip | clip | dinov2 (mmv.synth.encoder)
    threads: int = 1  # torch threads: tiny tensors gain nothing from more, and one thread is bit-reproducible
    task: str = "shapes"  # the synthetic task (mmv.synth.dataset.TASKS): shapes | hires | video
    tiles: int = 1  # tiles per image the model is trained with (the hires task compares 4 with 1)
    # frames each clip of the video task is sampled to: 2 of its 8 (frames 2 and 6) show both the move and the last
    # shape's arrival; at 4 frames and a 2x2 merge motion stayed at chance (BENCHMARKS.md)
    frames: int = 2
    # KxK patches per image token of the fresh projector; None: the task's own (the hires task's 2x2: 16 tokens a
    # view), else what the encoder's reference variant uses, else 1 (the grid's own tokens: 64 a scene or frame,
    # where a moving shape changes token at every cell it crosses)
    merge: int | None = None

    def __post_init__(self) -> None:
        from mmv.synth.dataset import TASKS
        from mmv.synth.encoder import FAMILIES
        from mmv.vision_input.video import check_frames

        if self.encoder not in FAMILIES:
            raise MmvError(f"unknown demo encoder {self.encoder!r}; expected one of {', '.join(FAMILIES)}")
        if self.task not in TASKS:
            raise MmvError(f"unknown demo task {self.task!r}; expected one of {', '.join(TASKS)}")
        check_frames(self.frames)

    @property
    def encoder_side(self) -> int:
        """The tiny encoder's image side: 128 for the hires task (its 256-pixel images are tiled), the video task's
        128-pixel frames as they are (a resize to 256 cost most of its loading time), else the scenes' 256."""
        from mmv.synth.encoder import IMAGE_SIZE
        from mmv.synth.hires import ENCODER_SIDE
        from mmv.synth.video import CLIP_SIZE

        return {"hires": ENCODER_SIDE, "video": CLIP_SIZE}.get(self.task, IMAGE_SIZE)

    @property
    def encoder_patch(self) -> int | None:
        """The hires task's 16-pixel patches (8x8 a view); None: the scenes' 8x8 grid at any side."""
        from mmv.synth.hires import ENCODER_PATCH

        return ENCODER_PATCH if self.task == "hires" else None

    @property
    def projector_merge(self) -> int | None:
        """`merge`, or the hires task's 2x2 (16 tokens a view) when it is None."""
        from mmv.synth.hires import MERGE

        return MERGE if self.merge is None and self.task == "hires" else self.merge

    @property
    def seq_len(self) -> int:
        """max_seq_len, with room for every run of a tiled image (five runs of 16 at four tiles of the hires task)
        or of a clip's frames."""
        from mmv.synth.encoder import GRID

        extra_runs = (self.tiles if self.tiles > 1 else 0) + (self.frames - 1 if self.task == "video" else 0)
        view_tokens = (self.encoder_side // self.encoder_patch) ** 2 if self.encoder_patch else GRID**2
        return self.max_seq_len + view_tokens // (self.projector_merge or 1) ** 2 * extra_runs

    @property
    def seconds_per_step(self) -> float:
        return {"hires": HIRES_SECONDS_PER_STEP, "video": VIDEO_SECONDS_PER_STEP}.get(self.task, SECONDS_PER_STEP)

    @property
    def training_minutes(self) -> float:
        if self.minutes is not None:
            return self.minutes
        return HIRES_MINUTES if self.task == "hires" else DEMO_MINUTES

    @property
    def steps(self) -> tuple[int, int]:
        total = max(2, round(self.training_minutes * 60 / self.seconds_per_step))
        pretrain = max(1, round(total * PRETRAIN_SHARE))
        return pretrain, total - pretrain


@dataclass
class DemoResult:
    out: Path
    eval: dict[str, Any] = field(default_factory=dict)
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)  # question kind -> correct, total
    seconds: dict[str, float] = field(default_factory=dict)  # per phase
    losses: dict[str, float | None] = field(default_factory=dict)  # final training loss per stage
    example: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


def make_start_weights(folder: Path, vocab_size: int, seed: int) -> Path:
    """A random text-only LLM of the `tiny` preset, saved like `llm_768.pth` (the projector starts fresh)."""
    import torch

    from mmv.config import preset
    from mmv.fsio import atomic_path
    from mmv.model.vlm import MiniMindVLM

    config = preset("tiny", vocab_size=vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # torch's default initialisation, not init_fresh_weights' N(0, 0.02): the loss starts high (about 45, from
        # the N(0, 1) embedding tied to the output layer) but this small model learns to read the image about
        # twice as fast; with small weights, colour, shape and count stay near chance for the first thousand steps
        model = MiniMindVLM(config)
    state = {k: v.clone() for k, v in model.checkpoint_state_dict().items() if not k.startswith("vision_proj.")}
    path = folder / f"llm_{config.hidden_size}.pth"
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)  # a file object, not the temporary's name: the same weights give the same bytes
    return path


def train_stage(
    stage: str,
    out: Path,
    data: Path,
    init: Path,
    vision: Path,
    tokenizer: Path,
    steps: int,
    lr: float,
    config: DemoConfig,
    lora: int | None = None,
) -> dict[str, Any]:
    """One `mmv pretrain` / `mmv sft` run: everything trained (LLM, projector and encoder), or with `lora` adapters
    of that rank and the projector (the encoder frozen) on the same data, steps, batch and schedule."""
    from mmv.train.config import stage_config
    from mmv.train.run import RunRequest, run

    trained = {"freeze": "none", "train_vision": True} if lora is None else {"lora": lora}
    cfg = stage_config(
        stage,
        init=str(init),
        preset="tiny",
        **trained,
        lr=lr,
        warmup=config.warmup,
        batch_size=config.batch_size,
        max_steps=steps,
        epochs=1000,
        max_seq_len=config.seq_len,
        tiles=config.tiles,
        merge=config.projector_merge,
        seed=config.seed,
        log_every=10,
        save_every=10**9,
        device="cpu",
        num_workers=config.num_workers,
    )
    request = RunRequest(
        cfg=cfg,
        out=out,
        data=[str(data)],
        vision=str(vision),
        tokenizer=str(tokenizer),
        data_options={"random_system_prompt": False, "drop_empty_think": False, "frames": config.frames},
    )
    return run(request, stage)


def question_kind(question: str) -> str:
    from mmv.synth.captions import QUESTIONS
    from mmv.synth.hires import question_kind as hires_kind
    from mmv.synth.video import question_kind as video_kind

    text = question.replace("<image>", "").strip()
    asked_kind = next((kind for kind, asked in QUESTIONS.items() if text in asked), None)
    return asked_kind or hires_kind(text) or video_kind(text) or "other"


def score_by_kind(records_path: Path) -> dict[str, dict[str, int]]:
    by_kind: dict[str, dict[str, int]] = {}
    for line in records_path.read_text().splitlines():
        record = json.loads(line)
        entry = by_kind.setdefault(question_kind(record["question"]), {"correct": 0, "total": 0})
        entry["correct"] += record["correct"]
        entry["total"] += 1
    return by_kind


def answer_one(loaded: Any, eval_file: Path, out: Path, question: str) -> dict[str, str]:
    """Ask the model about the first held-out image; save the image so the user can look and ask more."""
    import pyarrow.parquet as pq

    from mmv.chat import ChatSession
    from mmv.images import open_image
    from mmv.sampling import SamplingConfig

    row = pq.read_table(eval_file, columns=["conversations", "image_bytes"]).slice(0, 1).to_pylist()[0]
    image = open_image(row["image_bytes"], name="held-out image")
    image.save(out)
    session = ChatSession(loaded, SamplingConfig(max_new_tokens=32, temperature=0.0))
    session.attach(out.name, image)
    reply = session.ask(question)
    return {"image": str(out), "question": question, "answer": reply.text}


def answer_clip(loaded: Any, eval_file: Path, out: Path) -> dict[str, str]:
    """Ask the model the first held-out clip's question, its frames placed as in training; save the clip."""
    import pyarrow.parquet as pq

    from mmv.chat import ChatSession
    from mmv.sampling import SamplingConfig
    from mmv.vision_input.video import frames_prompt, sample_frames

    row = pq.read_table(eval_file, columns=["conversations", "video_bytes"]).slice(0, 1).to_pylist()[0]
    out.write_bytes(row["video_bytes"])
    question = json.loads(row["conversations"])[0]["content"].removeprefix("<image>\n")
    frames = sample_frames(out, loaded.frames)
    session = ChatSession(loaded, SamplingConfig(max_new_tokens=32, temperature=0.0))
    for frame in frames:
        session.attach(f"{out.name}@{frame.seconds:.1f}s", frame.image)
    reply = session.ask(frames_prompt(frames) + question)
    return {"image": str(out), "question": question, "answer": reply.text}


def run_demo(out: str | Path, config: DemoConfig, say: Callable[[str], None] = print) -> DemoResult:
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _run(Path(out), config, say)
    finally:
        torch.set_num_threads(previous_threads)


def _run(out: Path, config: DemoConfig, say: Callable[[str], None]) -> DemoResult:
    from mmv.eval.runner import EvalConfig, evaluate
    from mmv.loading import load_model
    from mmv.synth.dataset import SynthConfig, synthesize
    from mmv.synth.encoder import TinyEncoderConfig, make_encoder
    from mmv.synth.hires import QUESTIONS as HIRES_QUESTIONS

    if out.exists() and any(out.iterdir()):
        raise MmvError(f"{out} is not empty; choose a new output folder for the demo", option="out")
    result = DemoResult(out)
    pretrain_steps, sft_steps = config.steps
    clock = time.perf_counter()

    say(f"1/4 drawing {2 * config.n + config.eval_n:,} synthetic scenes and training a tokenizer")
    synth = SynthConfig(n=config.n, eval_n=config.eval_n, seed=config.seed, task=config.task)
    data = synthesize(out / "data", synth)
    assert data.tokenizer is not None and data.vocab_size is not None
    tiny = TinyEncoderConfig(
        hidden_size=config.encoder_hidden,
        seed=config.seed,
        family=config.encoder,
        image_size=config.encoder_side,
        patch_size=config.encoder_patch,
    )
    make_encoder(out / "encoder", tiny)
    start = make_start_weights(out, data.vocab_size, config.seed)
    result.seconds["data"], clock = time.perf_counter() - clock, time.perf_counter()

    stages = (  # stage, the weights and encoder it starts from, steps, learning rate, what it trains on
        (
            "pretrain",
            start,
            out / "encoder",
            pretrain_steps,
            config.pretrain_lr,
            "image captions (LLM, projector and encoder from scratch)",
        ),
        # SFT starts from the encoder pretrain trained (--train-vision)
        (
            "sft",
            out / "pretrain",
            out / "pretrain" / VISION_SUBFOLDER,
            sft_steps,
            config.sft_lr,
            "questions and answers",
        ),
    )
    for number, (stage, init, encoder, steps, lr, what) in enumerate(stages, start=2):
        say(f"{number}/4 {stage}: {steps} steps on {what}")
        summary = train_stage(stage, out / stage, data.files[stage], init, encoder, data.tokenizer, steps, lr, config)
        result.losses[stage] = summary["loss"]
        result.seconds[stage], clock = time.perf_counter() - clock, time.perf_counter()

    say(f"4/4 evaluating on {config.eval_n} held-out questions")
    loaded = load_model(out / "sft", device="cpu", dtype="float32")
    records = out / "eval.jsonl"
    report = evaluate(loaded, [data.files["eval"]], EvalConfig(batch_size=32, max_new_tokens=24), records)
    result.eval = report.summary()
    result.by_kind = score_by_kind(records)
    if config.task == "video":
        result.example = answer_clip(loaded, data.files["eval"], out / "example.mp4")
    else:
        question = HIRES_QUESTIONS[0] if config.task == "hires" else "How many shapes are there?"
        result.example = answer_one(loaded, data.files["eval"], out / "example.png", question)
    result.seconds["eval"] = time.perf_counter() - clock

    loss_curve(
        [out / "pretrain" / "metrics.jsonl", out / "sft" / "metrics.jsonl"], ["pretrain", "sft"], out / "loss.png"
    )
    result.paths = {
        "model": str(out / "sft"),
        "loss_curve": str(out / "loss.png"),
        "eval_records": str(records),
        "data": str(out / "data"),
    }
    return result


def _read_losses(path: Path) -> list[tuple[int, float]]:
    points = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("loss") is not None and record["loss"] > 0:
            points.append((int(record["step"]), float(record["loss"])))
    return points


def loss_curve(metrics: list[Path], names: list[str], out: Path, size: tuple[int, int] = (800, 450)) -> Path:
    """Training loss of consecutive stages on one log-scale plot, drawn with PIL (no plotting dependency)."""
    import math

    from PIL import Image, ImageDraw, ImageFont

    from mmv.fsio import atomic_path

    stages, starts, offset = [], [], 0
    for path in metrics:
        points = _read_losses(path)
        stages.append([(offset + step, loss) for step, loss in points])
        starts.append(offset)
        offset += points[-1][0] if points else 0
    every = [p for stage in stages for p in stage]
    if not every:
        raise MmvError("no losses were logged, so there is no curve to draw")
    width, height = size
    left, right, top, bottom = 70, 20, 40, 50
    lo, hi = math.log10(min(loss for _, loss in every)), math.log10(max(loss for _, loss in every))
    lo, hi = math.floor(lo * 2) / 2, math.ceil(hi * 2) / 2 + (0.5 if lo == hi else 0)
    max_step = max(step for step, _ in every) or 1

    def xy(step: float, loss: float) -> tuple[float, float]:
        return (
            left + step / max_step * (width - left - right),
            top + (hi - math.log10(loss)) / (hi - lo) * (height - top - bottom),
        )

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)
    for exponent in range(math.floor(lo), math.ceil(hi) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if lo <= math.log10(value) <= hi:
                y = xy(0, value)[1]
                draw.line([(left, y), (width - right, y)], fill=(225, 225, 225))
                draw.text((8, y - 8), f"{value:g}", fill="black", font=font)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    colours = [(40, 90, 200), (230, 120, 20), (40, 160, 60)]
    for index, (stage, start, name) in enumerate(zip(stages, starts, names, strict=True)):
        colour = colours[index % len(colours)]
        if len(stage) > 1:
            draw.line([xy(*p) for p in stage], fill=colour, width=2)
        if index:
            x = xy(start, 1)[0]
            draw.line([(x, top), (x, height - bottom)], fill=(160, 160, 160))
            draw.text((x - 12, height - bottom + 4), str(start), fill="black", font=font)
        draw.line([(left + 10 + 120 * index, 20), (left + 34 + 120 * index, 20)], fill=colour, width=3)
        draw.text((left + 40 + 120 * index, 12), name, fill=colour, font=font)
    draw.text((left - 4, height - bottom + 4), "0", fill="black", font=font)
    draw.text((width - right - 30, height - bottom + 4), str(max_step), fill="black", font=font)
    draw.text((width // 2 - 50, height - 24), "optimizer step", fill="black", font=font)
    draw.text((width - right - 190, 12), "training loss (log scale)", fill="black", font=font)
    with atomic_path(out) as tmp:
        image.save(tmp, format="PNG")
    return out
