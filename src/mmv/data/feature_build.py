"""Building a vision-feature cache (`mmv.data.features`): every row's images decoded, preprocessed and encoded once.

Rows are read in file order and parsed as training parses them (`mmv.data.rows.parse_row`): a text-only row's
placeholder image is dropped, and a row that training refuses for its text stores no images (training never gets
to them). Images are decoded as training decodes them (`mmv.data.validate.decode_images`); a row whose images fail
stores the failure's words, so training with the cache skips it with the same kind and reason. Decoding and
preprocessing run in `num_workers` processes (they, not the encoder, bound the speed); the encoder runs in this
process, in float32, a chunk of rows at a time, and the features stream to the file.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.data.features import CacheKey, DataDigest, FeatureCache, FeatureWriter, mismatch
from mmv.data.parquet import iter_rows, open_dataset
from mmv.data.rows import BadRow, parse_row
from mmv.data.source import resolve_files
from mmv.data.validate import decode_images
from mmv.errors import MmvError
from mmv.fsio import refuse_input_as_output
from mmv.layout import CONFIG_FILE, PREPROCESSOR_FILE

if TYPE_CHECKING:
    import numpy as np
    import torch

    from mmv.model.vision import ImageProcessor

HASH_BLOCK = 1 << 22
CHUNK_ROWS = 64  # rows decoded together and encoded in one forward
_digests: dict[tuple[str, int, int, int], str] = {}  # (path, size, mtime_ns, inode) -> sha256, for this process


def file_sha256(path: Path) -> str:
    """The sha256 of a file's contents; remembered in this process while its size and mtime stay the same."""
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if memo not in _digests:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(HASH_BLOCK):
                digest.update(block)
        _digests[memo] = digest.hexdigest()
    return _digests[memo]


def encoder_digest(folder: str | Path) -> str:
    """One sha256 over what decides an encoder's features: its weights, config.json and preprocessor_config.json."""
    folder = Path(folder)
    files = [*sorted(folder.glob("*.safetensors")), folder / CONFIG_FILE, folder / PREPROCESSOR_FILE]
    digest = hashlib.sha256()
    for path in files:
        if not path.is_file():
            raise MmvError(f"vision encoder folder {folder} has no {path.name}", option="vision")
        digest.update(f"{path.name}\0{file_sha256(path)}\0".encode())
    return digest.hexdigest()


def cache_key(files: list[Path], vision_dir: str | Path) -> CacheKey:
    """The key of a cache of `files` (in the loader's order) encoded by `vision_dir`: reads every byte of each."""
    data = tuple(DataDigest(f.name, file_sha256(f), open_dataset(f).metadata.num_rows) for f in files)
    return CacheKey(data, encoder_digest(vision_dir))


def default_cache_path(files: list[Path], key: CacheKey, dtype: str) -> Path:
    """Beside the first data file, named by the key: a cache for other data or another encoder gets another name."""
    digest = hashlib.sha256(json.dumps([key.to_dict(), dtype]).encode()).hexdigest()[:12]
    return files[0].with_name(f"{files[0].name}.{dtype}-{digest}.features")


def open_checked(path: Path, key: CacheKey, vision_dir: str | Path, dtype: str | None = None) -> FeatureCache:
    """An existing cache that serves exactly this data and encoder (and dtype, when given), else one MmvError."""
    cache = FeatureCache(path)
    problem = mismatch(path, cache.key, key, vision_dir)
    if problem is None and dtype is not None and cache.dtype.name != dtype:
        problem = f"feature cache {path} holds {cache.dtype.name} features, not {dtype}; choose another file for them"
    if problem:
        raise MmvError(problem)
    return cache


@dataclass
class PreparedChunk:
    """A chunk of rows ready for the encoder."""

    counts: list[int]  # images per row
    failures: list[str | None]  # per row: why its images could not be decoded
    pixels: dict[str, np.ndarray] | None  # the processor's output for every image of the chunk, in order


def prepare_chunk(rows: list[tuple[Any, Any, Any]], processor: ImageProcessor) -> PreparedChunk:
    images, counts, failures = [], [], []
    for conversations, image_bytes, _video in rows:
        try:
            _, raw = parse_row(conversations, image_bytes)
        except BadRow:
            raw = []  # training refuses this row for its text before it looks at the images
        try:
            decoded = decode_images(raw)
        except BadRow as exc:
            counts.append(0)
            failures.append(str(exc))
            continue
        images += decoded
        counts.append(len(decoded))
        failures.append(None)
    pixels = {k: v.numpy() for k, v in processor(images).items()} if images else None
    return PreparedChunk(counts, failures, pixels)


_worker_processor: ImageProcessor | None = None


def _start_worker(vision_dir: str) -> None:
    import torch

    from mmv.model.vision import ImageProcessor

    global _worker_processor
    torch.set_num_threads(1)  # the workers share the machine; decoding is one image at a time anyway
    _worker_processor = ImageProcessor(vision_dir)


def _prepare_in_worker(rows: list[tuple[Any, Any]]) -> PreparedChunk:
    return prepare_chunk(rows, _worker_processor)


def prepared_chunks(chunks: Iterator[list[Any]], vision_dir: str | Path, num_workers: int) -> Iterator[PreparedChunk]:
    """The chunks prepared in order: here, or in worker processes with at most two chunks per worker in flight."""
    if num_workers <= 0:
        from mmv.model.vision import ImageProcessor

        processor = ImageProcessor(vision_dir)
        for rows in chunks:
            yield prepare_chunk(rows, processor)
        return
    # spawn, not fork: this process already runs torch's threads, which a forked child would inherit locked
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(num_workers, mp_context=context, initializer=_start_worker, initargs=(str(vision_dir),))
    pending: deque = deque()
    try:
        for rows in chunks:
            pending.append(pool.submit(_prepare_in_worker, rows))
            if len(pending) >= 2 * num_workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool:
        raise MmvError("a feature cache worker stopped unexpectedly; try fewer workers or check the memory") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def row_chunks(files: list[Path], size: int) -> Iterator[list[tuple[Any, Any, Any]]]:
    chunk: list[tuple[Any, Any, Any]] = []
    for path in files:
        for row in iter_rows(path):
            chunk.append(row)
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


@dataclass
class BuildResult:
    path: Path
    rows: int
    images: int
    failures: int  # rows whose images could not be decoded (training skips them as "image")
    bytes: int
    seconds: float
    reused: bool  # the cache existed already and fits: nothing was built


def build_feature_cache(
    files: list[str] | list[Path],
    vision_dir: str | Path,
    out: str | Path | None = None,
    *,
    dtype: str = "float16",
    device: str = "auto",
    num_workers: int = 0,
    chunk_rows: int = CHUNK_ROWS,
    on_rows: Callable[[int], None] | None = None,
) -> BuildResult:
    """Write the cache of `files` (paths or globs, in the loader's order) encoded by `vision_dir` to `out` (default:
    `default_cache_path`). An existing cache that fits is reused; one that does not is refused, never replaced."""
    import torch

    from mmv.device import pick_device
    from mmv.model.encoders import patch_features
    from mmv.model.vision import encoder_inputs_to, load_encoder

    start = time.perf_counter()
    paths = resolve_files([str(f) for f in files])
    key = cache_key(paths, vision_dir)
    out = Path(out) if out is not None else default_cache_path(paths, key, dtype)
    refuse_input_as_output(out, paths)
    if out.exists():
        cache = open_checked(out, key, vision_dir, dtype)
        return BuildResult(out, cache.rows, cache.images, len(cache.failures), out.stat().st_size, 0.0, True)
    target = pick_device(device)
    encoder = load_encoder(vision_dir).to(target)
    expected = sum(d.rows for d in key.data)
    with FeatureWriter(out, key, dtype) as writer, torch.inference_mode():
        for chunk in prepared_chunks(row_chunks(paths, chunk_rows), vision_dir, num_workers):
            features = None
            if chunk.pixels is not None:
                inputs = encoder_inputs_to(
                    {k: torch.from_numpy(v) for k, v in chunk.pixels.items()}, target, torch.float32
                )
                features = patch_features(encoder, inputs).cpu()
            write_rows(writer, chunk, features)
            if on_rows is not None:
                on_rows(len(chunk.counts))
        if writer.rows != expected:
            raise MmvError(f"the data files hold {writer.rows} rows, not the {expected} their metadata lists")
    seconds = time.perf_counter() - start
    return BuildResult(out, writer.rows, writer.images, len(writer.failures), out.stat().st_size, seconds, False)


def write_rows(writer: FeatureWriter, chunk: PreparedChunk, features: torch.Tensor | None) -> None:
    offset = 0
    for count, failure in zip(chunk.counts, chunk.failures, strict=True):
        writer.add_row(features[offset : offset + count] if count else None, failure)
        offset += count
