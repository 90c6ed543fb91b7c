"""The synthetic dataset: pretrain captions, SFT questions (multi-turn, two-image and text-only rows included) and a
held-out evaluation set of colour / shape / count questions, written as parquet in the published schema.

Each row draws from its own seeded generator (seed, split, index), so a file is identical for a seed however it is
produced, and the held-out images never occur in training.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from mmv.data.writer import ParquetRows
from mmv.errors import MmvError
from mmv.synth import captions
from mmv.synth.captions import QUESTION_KINDS, TEXT_ONLY, Turn
from mmv.synth.hires import hires_row
from mmv.synth.scenes import Scene, draw, jpeg_bytes, random_scene
from mmv.synth.video import video_row

Messages = list[dict[str, Any]]
Row = tuple[Messages, list[bytes]]
SPLITS = ("pretrain", "sft", "eval")
# the 256-pixel scenes; a square of one-pixel lines in a 256-pixel PNG (mmv.synth.hires); clips in video_bytes
# (mmv.synth.video)
TASKS = ("shapes", "hires", "video")


@dataclass(frozen=True)
class SynthConfig:
    n: int = 2000  # rows in pretrain.parquet and in sft.parquet
    eval_n: int = 200  # held-out rows in eval.parquet
    seed: int = 0
    two_image_fraction: float = 0.06  # rows that show two images (pretrain and SFT)
    text_only_fraction: float = 0.06  # rows without an image (pretrain and SFT)
    # SFT rows asking two or three questions about one image: more answers per image seen, so a tiny model learns
    # to read images in fewer steps
    multi_turn_fraction: float = 0.8
    eval_multi_turn_fraction: float = 0.25  # held-out rows with an earlier question before the scored one
    task: str = "shapes"  # one of TASKS

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise MmvError(f"unknown synthetic task {self.task!r}; expected one of {', '.join(TASKS)}")


@dataclass
class SynthResult:
    files: dict[str, Path] = field(default_factory=dict)  # split -> parquet path
    rows: dict[str, int] = field(default_factory=dict)
    tokenizer: Path | None = None
    vocab_size: int | None = None


def _rng(seed: int, split: str, index: int) -> random.Random:
    return random.Random(f"mmv-synth:{seed}:{split}:{index}")  # str seeds hash with sha512: stable everywhere


def _user(text: str, images: int = 0) -> dict[str, str]:
    return {"role": "user", "content": "<image>\n" * images + text}


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def _dialogue(turns: list[Turn], images: int) -> list[dict[str, str]]:
    messages = []
    for i, turn in enumerate(turns):
        messages += [_user(turn.question, images if i == 0 else 0), _assistant(turn.answer)]
    return messages


def _scene_row(
    rng: random.Random,
    config: SynthConfig,
    about_two: Callable[[Scene, Scene, random.Random], Messages],
    about_one: Callable[[Scene, random.Random], Messages],
) -> Row:
    """The mix of rows both training splits share: text-only, two-image and one-image rows in the configured shares;
    `about_two` and `about_one` write the split's conversation about the drawn scenes."""
    roll = rng.random()
    if roll < config.text_only_fraction:
        question, reply = rng.choice(TEXT_ONLY)
        return [_user(question), _assistant(reply)], []
    if roll < config.text_only_fraction + config.two_image_fraction:
        first, second = random_scene(rng), random_scene(rng)
        images = [jpeg_bytes(draw(first)), jpeg_bytes(draw(second))]
        return about_two(first, second, rng), images
    scene = random_scene(rng)
    return about_one(scene, rng), [jpeg_bytes(draw(scene))]


def pretrain_row(rng: random.Random, config: SynthConfig) -> Row:
    return _scene_row(rng, config, _describe_both, _caption)


def _describe_both(first: Scene, second: Scene, rng: random.Random) -> Messages:
    return [_user("Describe both images.", 2), _assistant(captions.describe_two(first, second))]


def _caption(scene: Scene, rng: random.Random) -> Messages:
    return [_user(rng.choice(captions.CAPTION_PROMPTS), 1), _assistant(captions.caption(scene))]


def sft_row(rng: random.Random, config: SynthConfig) -> Row:
    return _scene_row(rng, config, _compare, partial(_questions, multi_turn=config.multi_turn_fraction))


def _compare(first: Scene, second: Scene, rng: random.Random) -> Messages:
    return _dialogue([captions.compare_two(first, second, rng)], 2)


def _questions(scene: Scene, rng: random.Random, multi_turn: float) -> Messages:
    """One question about the scene, or (with probability `multi_turn`) two or three of different kinds."""
    kinds = list(captions.kinds_for(scene))
    rng.shuffle(kinds)
    turns = rng.randint(2, 3) if rng.random() < multi_turn else 1
    return _dialogue([captions.ask(scene, k, rng) for k in kinds[:turns]], 1)


def eval_row(rng: random.Random, config: SynthConfig, index: int) -> Row:
    """The last question is a colour, shape or count question (in turn); some rows have one earlier turn."""
    scene = random_scene(rng)
    last = QUESTION_KINDS[index % len(QUESTION_KINDS)]
    turns = [captions.ask(scene, last, rng)]
    if rng.random() < config.eval_multi_turn_fraction:
        earlier = rng.choice([k for k in captions.kinds_for(scene) if k != last])
        turns.insert(0, captions.ask(scene, earlier, rng))
    return _dialogue(turns, 1), [jpeg_bytes(draw(scene))]


def rows(split: str, config: SynthConfig) -> Iterator[tuple[list[dict[str, Any]], list[bytes], bytes | None]]:
    """(messages, images, video or None) of every row of the split."""
    count = config.eval_n if split == "eval" else config.n
    for index in range(count):
        rng = _rng(config.seed, split, index)
        if config.task == "video":
            yield video_row(split, rng, index)
        elif config.task == "hires":
            yield (*hires_row(split, rng), None)
        elif split == "pretrain":
            yield (*pretrain_row(rng, config), None)
        elif split == "sft":
            yield (*sft_row(rng, config), None)
        else:
            yield (*eval_row(rng, config, index), None)


def corpus_texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"].replace("<image>\n", "") for m in messages]


# The role names the chat template writes, so they become single tokens. No text may teach a merge of "\n\n": the
# generation prompt ends in "</think>\n\n", which must tokenise as in training, where an answer follows the newlines.
TEMPLATE_TEXTS = ("system\n", "user\n", "assistant\n")


def synthesize(
    out_dir: str | Path, config: SynthConfig, tokenizer: bool = True, on_row: Callable[[str], None] | None = None
) -> SynthResult:
    """Write pretrain.parquet, sft.parquet, eval.parquet (and tokenizer/) under `out_dir`."""
    out_dir = Path(out_dir)
    result = SynthResult()
    texts: list[str] = list(TEMPLATE_TEXTS)  # the tokenizer learns from the training splits only
    for split in SPLITS:
        path = out_dir / f"{split}.parquet"
        video = config.task == "video"
        with ParquetRows(path, multi_image=split != "eval" and not video, video=video) as out:
            for messages, images, clip in rows(split, config):
                out.add(messages, images, clip)
                if split != "eval":
                    texts += corpus_texts(messages)
                if on_row is not None:
                    on_row(split)
        result.files[split], result.rows[split] = path, out.rows
    if tokenizer:
        from mmv.synth.bpe import train_tokenizer
        from mmv.tokenizer import load_tokenizer

        texts += [text for pair in TEXT_ONLY for text in pair]
        result.tokenizer = train_tokenizer(texts, out_dir / "tokenizer")
        result.vocab_size = len(load_tokenizer(result.tokenizer))
    return result
