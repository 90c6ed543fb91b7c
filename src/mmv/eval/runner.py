"""Batched evaluation: greedy answers, accuracy, the reference answers' loss and perplexity, throughput.

For each batch the images are encoded once; the projected features serve both the batched generation (left padded,
`mmv.generate`) and a teacher-forced pass that scores the reference answer (its tokens and the closing
`<|im_end|>`) after exactly the prompt the generation saw.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mmv.data.skips import Skips
from mmv.eval.items import EvalItem, ItemReader, PromptFormat, strip_think
from mmv.eval.scoring import SCORING_METRICS, is_correct
from mmv.fsio import atomic_path

if TYPE_CHECKING:
    import torch

    from mmv.loading import LoadedModel


@dataclass(frozen=True)
class EvalConfig:
    metric: str = "exact"  # exact | contains
    batch_size: int = 16  # rows generated together
    max_new_tokens: int = 64  # answers are cut here
    limit: int | None = None  # evaluate only the first N usable rows
    thinking: bool = False  # open the think block in the generation prompt


@dataclass
class EvalReport:
    metric: str
    evaluated: int = 0
    correct: int = 0
    answer_nll: float = 0.0  # summed over reference answer tokens
    answer_tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    skips: Skips = field(default_factory=Skips)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.evaluated if self.evaluated else None

    @property
    def mean_loss(self) -> float | None:
        return self.answer_nll / self.answer_tokens if self.answer_tokens else None

    def summary(self) -> dict[str, Any]:
        loss = self.mean_loss
        return {
            "metric": self.metric,
            "evaluated": self.evaluated,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "mean_loss": loss,
            "perplexity": perplexity(loss) if loss is not None else None,
            "answer_tokens": self.answer_tokens,
            "new_tokens": self.new_tokens,
            "seconds": round(self.seconds, 3),
            "samples_per_s": self.evaluated / self.seconds if self.seconds else None,
            "tokens_per_s": self.new_tokens / self.seconds if self.seconds else None,
            "skipped": self.skips.counts,
        }


def perplexity(mean_loss: float) -> float:
    """exp(mean loss); infinite where that overflows a float (a loss over ~709: a broken or untrained model)."""
    try:
        return math.exp(mean_loss)
    except OverflowError:
        return math.inf


def batched(items: Iterator[EvalItem], size: int) -> Iterator[list[EvalItem]]:
    batch: list[EvalItem] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def encode_images(loaded: LoadedModel, batch: list[EvalItem]) -> torch.Tensor | None:
    from mmv.errors import MmvError
    from mmv.model.vision import encoder_inputs_to

    pictures = [picture for item in batch for picture in item.images]
    if not pictures:
        return None
    if loaded.processor is None:
        raise MmvError("the data holds images but the model was loaded without a vision encoder", option="vision")
    model = loaded.model
    views = loaded.tiling.all_views(pictures)
    inputs = encoder_inputs_to(loaded.processor(views), model.rope_cos.device, model.model.embed_tokens.weight.dtype)
    return model.encode_images(inputs)


def answer_nll(
    loaded: LoadedModel, prompts: list[list[int]], answers: list[list[int]], image_embeds: torch.Tensor | None
) -> list[float]:
    """Summed negative log-likelihood of each answer (right-padded teacher forcing in one forward)."""
    import torch

    from mmv.model.loss import IGNORE_INDEX, shifted_cross_entropy

    model = loaded.model
    device = model.rope_cos.device
    sequences = [p + a for p, a in zip(prompts, answers, strict=True)]
    width = max(len(s) for s in sequences)
    ids = torch.zeros((len(sequences), width), dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        end = len(prompt) + len(answer)
        ids[row, :end] = torch.tensor(prompt + answer)
        labels[row, len(prompt) : end] = torch.tensor(answer)
        mask[row, :end] = 1
    ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
    logits = model(ids, image_embeds=image_embeds, key_padding=mask).logits
    return shifted_cross_entropy(logits, labels, reduction="none").sum(dim=1).tolist()


def evaluate_batch(loaded: LoadedModel, batch: list[EvalItem], config: EvalConfig) -> list[dict[str, Any]]:
    import torch

    from mmv.generate import generate
    from mmv.sampling import SamplingConfig

    tok = loaded.tokenizer
    prompts = [item.prompt_ids for item in batch]
    answers = [item.answer_ids for item in batch]
    with torch.inference_mode():
        embeds = encode_images(loaded, batch)
        result = generate(
            loaded.model,
            prompts,
            SamplingConfig(max_new_tokens=config.max_new_tokens, temperature=0.0),
            image_embeds=embeds,
        )
        nlls = answer_nll(loaded, prompts, answers, embeds)
    records = []
    for item, tokens, stopped, nll, answer in zip(batch, result.tokens, result.stopped, nlls, answers, strict=True):
        prediction = strip_think(tok.decode(tokens, skip_special_tokens=True))
        records.append(
            {
                "file": item.file,
                "row": item.row,
                "question": item.question,
                "reference": item.reference,
                "prediction": prediction,
                "correct": is_correct(prediction, item.reference, config.metric),
                "loss": nll / len(answer),
                "answer_tokens": len(answer),
                "new_tokens": len(tokens),
                "stopped": stopped,
            }
        )
    return records


def evaluate(
    loaded: LoadedModel,
    files: list[str | Path],
    config: EvalConfig,
    out: str | Path | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> EvalReport:
    """Evaluate every usable row of `files`; per-sample records go to `out` (JSONL, written atomically)."""
    from mmv.errors import MmvError

    if config.metric not in SCORING_METRICS:
        raise MmvError(f"unknown metric {config.metric!r}; expected one of {', '.join(SCORING_METRICS)}")
    report = EvalReport(config.metric)
    model_config = loaded.model.config
    reader = ItemReader(
        loaded.tokenizer,
        PromptFormat(
            model_config.image_token_len,
            model_config.max_position_embeddings,
            config.max_new_tokens,
            config.thinking,
            model_config.image_special_token,
        ),
        loaded.tiling,
        loaded.frames,
    )
    start = time.perf_counter()
    with jsonl_sink(out) as sink:
        for batch in batched(reader.items(files, report.skips, config.limit), config.batch_size):
            for record in evaluate_batch(loaded, batch, config):
                report.evaluated += 1
                report.correct += record["correct"]
                report.answer_nll += record["loss"] * record["answer_tokens"]
                report.answer_tokens += record["answer_tokens"]
                report.new_tokens += record["new_tokens"]
                if sink is not None:
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            if on_batch is not None:
                on_batch(len(batch))
        report.seconds = time.perf_counter() - start
        if report.evaluated == 0:
            skipped = report.skips.describe() or "no rows"
            raise MmvError(f"nothing to evaluate in {', '.join(map(str, files))} ({skipped})")
    return report


@contextlib.contextmanager
def jsonl_sink(path: str | Path | None) -> Iterator[IO[str] | None]:
    """An atomically written text file (it appears only once complete), or nothing when no path is given."""
    if path is None:
        yield None
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        yield handle
