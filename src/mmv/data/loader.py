"""`TrainData`: the training stream of Batches for one rank, exact to the sample for resume.

Positions and batches. The epoch order (`source.EpochPlan`, a function of seed and epoch only) lists every row once;
its positions are the samples. From `start_sample` on, the stream is cut into chunks of `batch_size * world_size`
positions and rank r builds its Batch from positions [r * batch_size, (r + 1) * batch_size) of each chunk. Every rank
yields exactly `num_batches(start_sample, batch_size)` batches, one per chunk, so DDP ranks stay in step:

- `Batch.num_samples` is the number of this rank's positions in the chunk (batch_size, less only in a short final
  chunk), `Batch.next_sample` is the global position just past the chunk: the resume position after this step.
- Bad and too-long rows (`mmv.data.validate`) are skipped, so a Batch may hold fewer samples; they are listed in
  `Batch.skipped` and counted in `TrainData.skips`. A chunk with nothing usable for this rank yields an empty Batch
  (zero-size tensors) that still carries num_samples and next_sample.

Skipped positions before `start_sample` are never read: only the windows holding this rank's positions are.
With a feature cache (`DataSpec.feature_cache`, `mmv.data.features`), samples carry their images' encoder features
from the cache: no image is decoded or processed, and rows are skipped exactly as without it.
With `num_workers > 0`, DataLoader worker w builds batches w, w + k, w + 2k, ... and the DataLoader hands them out
round-robin, which is exactly the order without workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from mmv.config import IMAGE_TOKEN
from mmv.data.batch import Batch
from mmv.data.collate import PreparedSample, collate
from mmv.data.features import FeatureCache
from mmv.data.labels import LabelBuilder, Preprocessing
from mmv.data.rows import BAD_KINDS, KINDS, BadRow
from mmv.data.skips import BadRowGuard, Skipped, Skips
from mmv.data.source import BlockReader, EpochPlan, ParquetSource, WindowRows
from mmv.data.validate import RowValidator, decode_row_images
from mmv.errors import MmvError
from mmv.vision_input.tiles import Tiling, check_tiles
from mmv.vision_input.video import check_frames


@dataclass
class DataSpec:
    files: list[str]  # parquet paths or glob patterns
    tokenizer_dir: str
    vision_dir: str | None  # image processor folder; None: images are still decoded (checked) but not processed
    max_seq_len: int = 768
    tokens_per_image: int = 64  # each image's placeholder run: the model's image_token_len
    tiles: int = 1  # at most this many tiles per image plus a global view (the model's image_tiles)
    tile_side: int = 256  # the encoder's native side, which tiles are cut at (mmv.vision_input.tiles.tile_side)
    frames: int = 8  # the frames a row's video (video_bytes) is sampled to, each an image after its timestamp
    seed: int = 42
    random_system_prompt: bool = True  # reference preprocessing: a random system prompt with p=0.2, seeded per row
    drop_empty_think: bool = True  # reference preprocessing: empty think blocks removed with p=0.8, seeded per row
    pack: bool = False  # several samples per row (segment_ids, position_ids) instead of one padded sample per row
    num_workers: int = 0  # DataLoader worker processes used inside TrainData.batches
    max_bad_fraction: float = 0.01  # stop with MmvError naming a few rows when more of an epoch's rows are bad
    pin_memory: bool = False  # page-locked batches for faster copies to the GPU (only where CUDA is available)
    block_rows: int = 256  # rows read at a time from a row group
    window_rows: int = 2048  # rows shuffled together; a reader holds about one window in memory
    feature_cache: str | None = None  # a cache of these files encoded by vision_dir: read features, not images
    image_token: str = IMAGE_TOKEN  # the placeholder's text: the model's image_special_token (MiniMind2-V: "@")


def check_spec(spec: DataSpec) -> None:
    check_tiles(spec.tiles)
    check_frames(spec.frames)
    for name in ("max_seq_len", "tokens_per_image", "tile_side", "block_rows", "window_rows"):
        if getattr(spec, name) < 1:
            raise MmvError(f"{name} must be at least 1, got {getattr(spec, name)}")
    if spec.num_workers < 0:
        raise MmvError(f"num_workers must be 0 or more, got {spec.num_workers}")
    if not 0 <= spec.max_bad_fraction <= 1:
        raise MmvError(f"max_bad_fraction must be between 0 and 1, got {spec.max_bad_fraction}")
    if spec.feature_cache and not spec.vision_dir:
        raise MmvError("a feature cache needs the vision encoder folder it was built with", option="vision")


def check_feature_cache(spec: DataSpec, files: list[Path]) -> None:
    """The cache must hold exactly these files encoded by this encoder (their contents are hashed: once per process)."""
    from mmv.data.feature_build import cache_key, open_checked

    open_checked(Path(spec.feature_cache), cache_key(files, spec.vision_dir), spec.vision_dir)


def chunk_slices(start: int, total: int, batch_size: int, rank: int, world_size: int) -> Iterator[tuple[range, int]]:
    """This rank's positions in each chunk from `start`, with the position just past the chunk."""
    chunk = batch_size * world_size
    for begin in range(start, total, chunk):
        end = min(begin + chunk, total)
        low = min(begin + rank * batch_size, end)
        yield range(low, min(low + batch_size, end)), end


class BatchBuilder:
    """Positions -> Batch: reading, parsing, tokenising, image decoding and collation in one process."""

    def __init__(self, spec: DataSpec, source: ParquetSource) -> None:
        from mmv.model.vision import ImageProcessor
        from mmv.tokenizer import load_tokenizer

        self.spec = spec
        self.source = source
        self.tokenizer = load_tokenizer(spec.tokenizer_dir, spec.image_token)
        self.features = FeatureCache(spec.feature_cache) if spec.feature_cache else None
        self.tiling = Tiling(spec.tiles, spec.tile_side)
        self.validator = RowValidator(
            LabelBuilder(self.tokenizer, spec.max_seq_len, spec.tokens_per_image, spec.image_token),
            Preprocessing.from_flags(spec.random_system_prompt, spec.drop_empty_think),
            spec.seed,
            images=self.features.images_of if self.features else decode_row_images,
            tiling=self.tiling,
            frames=spec.frames,
        )
        self.processor = ImageProcessor(spec.vision_dir) if spec.vision_dir and not self.features else None
        self.reader = BlockReader(source)
        self._plan: EpochPlan | None = None
        self._window: tuple[int, int, WindowRows] | None = None  # (epoch, window, rows as read)

    def plan(self, epoch: int) -> EpochPlan:
        if self._plan is None or self._plan.epoch != epoch:
            self._plan = EpochPlan(
                self.source.groups, self.spec.seed, epoch, self.spec.block_rows, self.spec.window_rows
            )
        return self._plan

    def build(self, epoch: int, positions: range, next_sample: int) -> Batch:
        plan = self.plan(epoch)
        samples: list[PreparedSample] = []
        skipped: list[Skipped] = []
        for position in positions:
            window, index, row = plan.row_at(position)
            conversations, image_bytes, video_bytes = self._read(plan, window).row(index)
            try:
                samples.append(self.prepare(epoch, row, conversations, image_bytes, video_bytes))
            except BadRow as exc:
                skipped.append(Skipped(row, exc.kind, str(exc)))
        return collate(
            samples,
            pack=self.spec.pack,
            max_seq_len=self.spec.max_seq_len,
            process=self.processor,
            num_samples=len(positions),
            next_sample=next_sample,
            skipped=skipped,
        )

    def prepare(
        self, epoch: int, row: int, conversations: Any, image_bytes: Any, video_bytes: Any = None
    ) -> PreparedSample:
        valid = self.validator.validate(conversations, image_bytes, row, epoch, video_bytes)
        return PreparedSample(row, valid.sample.input_ids, valid.sample.labels, self.tiling.all_views(valid.images))

    def _read(self, plan: EpochPlan, window: int) -> WindowRows:
        # positions only move forward, so one cached window is enough
        if self._window is None or self._window[:2] != (plan.epoch, window):
            self._window = None  # free the old window before reading the next
            self._window = (plan.epoch, window, self.reader.read_window(plan, window))
        return self._window[2]


class TrainData:
    """The batches of one rank; see the module docstring for the position and batch semantics."""

    def __init__(self, spec: DataSpec, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise MmvError(f"rank {rank} is outside a world of {world_size} process(es)")
        check_spec(spec)
        self.spec = spec
        self.rank, self.world_size = rank, world_size
        self.source = ParquetSource(spec.files)
        self.num_rows = self.source.num_rows
        if spec.feature_cache:
            check_feature_cache(spec, self.source.files)
        self.rows_read = 0  # sample positions consumed (used or skipped) over every `batches` call
        self.skips = Skips.of(KINDS)
        self._builder = BatchBuilder(spec, self.source)  # fails fast on a bad tokenizer or vision folder

    def num_batches(self, start_sample: int, batch_size: int) -> int:
        """Batches every rank yields from `start_sample` to the end of the epoch."""
        chunk = batch_size * self.world_size
        return max(0, -(-(self.num_rows - start_sample) // chunk))

    def rank_rows(self, batch_size: int) -> int:
        """Positions this rank takes in a whole epoch."""
        full, rest = divmod(self.num_rows, batch_size * self.world_size)
        return full * batch_size + min(max(rest - self.rank * batch_size, 0), batch_size)

    def batches(self, epoch: int, start_sample: int, batch_size: int) -> Iterator[Batch]:
        if batch_size < 1:
            raise MmvError(f"batch size must be at least 1, got {batch_size}")
        guard = BadRowGuard(self.spec.max_bad_fraction, self.rank_rows(batch_size))
        for batch in self._stream(epoch, start_sample, batch_size):
            self.rows_read += batch.num_samples
            for skipped in batch.skipped:
                where = self.source.locate(skipped.row)
                self.skips.add(skipped.kind, where, skipped.reason)
                guard.add(skipped.kind, where, skipped.reason)
            yield batch

    def stats(self) -> dict[str, int]:
        """{"rows": positions read, one count per kind, "bad": the kinds that mean broken data}; ranks sum these."""
        return {"rows": self.rows_read, **self.skips.counts, "bad": self.skips.count(BAD_KINDS)}

    def render(self, batch: Batch, index: int) -> str:
        """Sample `index` of the batch as text: supervised spans marked, image runs collapsed (--show-sample)."""
        from mmv.data.show import render_sample

        return render_sample(self._builder.tokenizer, batch, index, self.source.locate)

    def _stream(self, epoch: int, start_sample: int, batch_size: int) -> Iterator[Batch]:
        arguments = (start_sample, self.num_rows, batch_size, self.rank, self.world_size)
        pin = self.spec.pin_memory and torch.cuda.is_available()
        if self.spec.num_workers <= 0:
            for positions, next_sample in chunk_slices(*arguments):
                batch = self._builder.build(epoch, positions, next_sample)
                yield batch.pin_memory() if pin else batch
            return
        stream = WorkerStream(self.spec, self.source, epoch, arguments)
        loader = DataLoader(
            stream, batch_size=None, num_workers=self.spec.num_workers, collate_fn=_as_is, pin_memory=pin
        )
        items = iter(loader)
        try:
            while True:
                lost_worker = None
                try:
                    item = next(items)
                except StopIteration:
                    return
                except (RuntimeError, ConnectionError, EOFError) as exc:
                    # a worker killed (out of memory, a signal): torch notices (RuntimeError), or the worker dies
                    # while handing over a batch's shared memory (the connection resets): one line, no traceback
                    if isinstance(exc, RuntimeError) and "DataLoader worker" not in str(exc):
                        raise
                    lost_worker = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if lost_worker is not None:
                    # raised outside the except clause: torch's exception would otherwise stay attached as the
                    # context, keep the iterator alive past `del items`, and its SIGCHLD handler would still fire
                    # for the other workers while the caller prints this error
                    raise MmvError(
                        f"a data loader worker stopped unexpectedly ({lost_worker}); "
                        "try fewer workers or check the memory"
                    )
                if isinstance(item, WorkerFailure):
                    raise MmvError(item.message)
                yield item
        finally:
            del items  # stop the workers now, even while a traceback still holds this frame


class WorkerFailure:
    """An MmvError raised in a worker, passed back as data so it stays one line (no worker traceback)."""

    def __init__(self, message: str) -> None:
        self.message = message


def _as_is(item: Any) -> Any:
    return item


class WorkerStream(IterableDataset):
    """Worker w of k builds every k-th batch; the builder is created inside the worker process."""

    def __init__(
        self, spec: DataSpec, source: ParquetSource, epoch: int, stream: tuple[int, int, int, int, int]
    ) -> None:
        self.spec, self.source, self.epoch = spec, source, epoch
        self.stream = stream  # chunk_slices arguments: start, total, batch_size, rank, world_size

    def __iter__(self) -> Iterator[Batch | WorkerFailure]:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        try:
            builder = BatchBuilder(self.spec, self.source)
            for positions, next_sample in itertools.islice(chunk_slices(*self.stream), worker, None, workers):
                yield builder.build(self.epoch, positions, next_sample)
        except MmvError as exc:
            yield WorkerFailure(str(exc))
