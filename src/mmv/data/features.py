"""The vision-feature cache file: every image's encoder output, written once, read back by (global row, image).

The frozen encoder gives the same patch tokens (`mmv.model.encoders.patch_features`) for an image every epoch, so
training can read them instead of decoding the JPEG, preprocessing it and running the encoder again. One file,
written front to back in one pass:

    MAGIC, then zeros up to byte 64        the records start 64 bytes in, aligned for any dtype
    records                                image i's features: [tokens, dim] in the cache dtype, image after image
    starts: int64 [rows + 1]               row r's images are records starts[r] .. starts[r + 1] - 1
    footer: UTF-8 JSON                     the key, the record shape and dtype, rows whose images failed to decode
    footer length: uint64, MAGIC           read from the end

Why this layout: every image of one encoder has the same record shape (a fixed grid; NaFlex pads to its patch
budget), so record i sits at a computed offset and one memory map of the records gives random access in the loader's
shuffled order, shared page cache between DataLoader workers and DDP ranks, and nothing in RAM but what a batch
reads. The writer streams: it holds the pending batch and the starts (8 bytes a row), never the features.
safetensors needs every tensor's shape and offset in a header before the data (a streaming writer would hold a whole
shard in memory, and a dataset would be thousands of tensors), and `.npy` needs the final shape up front.

The key ties a cache to its inputs: the content sha256 and row count of every data file, in order (the loader's
global row numbering), and the sha256 of the encoder's weights, config and preprocessing. A cache whose key differs
from the data and encoder of a run is refused.
"""

from __future__ import annotations

import json
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from mmv.data.rows import BadRow
from mmv.errors import MmvError
from mmv.fsio import atomic_path

if TYPE_CHECKING:
    import torch

MAGIC = b"MMVFEAT1"
DATA_START = 64
TAIL = struct.Struct("<Q8s")  # footer length, MAGIC
DTYPES = ("float16", "float32")
FORMAT = 1


@dataclass(frozen=True)
class DataDigest:
    name: str  # the file's name, for messages; files are matched by content
    sha256: str
    rows: int


@dataclass(frozen=True)
class CacheKey:
    data: tuple[DataDigest, ...]  # in the loader's file order
    encoder: str  # sha256 over the encoder's weights, config.json and preprocessor_config.json

    def to_dict(self) -> dict[str, Any]:
        return {"data": [vars(d) for d in self.data], "encoder": self.encoder}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> CacheKey:
        return cls(tuple(DataDigest(**d) for d in value["data"]), value["encoder"])


def mismatch(path: Path, found: CacheKey, wanted: CacheKey, encoder_dir: str | Path) -> str | None:
    """Why the cache at `path` (key `found`) cannot serve data and encoder `wanted`, in one sentence; None if it can."""
    rebuild = "build it again with `mmv data cache-features` or train without the cache"
    if found.encoder != wanted.encoder:
        return (
            f"feature cache {path} was built with another vision encoder than {encoder_dir} (its weights, config or "
            f"preprocessing differ); {rebuild}"
        )
    names = ", ".join(d.name for d in wanted.data)
    if len(found.data) != len(wanted.data):
        return (
            f"feature cache {path} was built from {len(found.data)} data file(s), not the {len(wanted.data)} given "
            f"({names}); {rebuild}"
        )
    for built, given in zip(found.data, wanted.data, strict=True):
        if (built.sha256, built.rows) != (given.sha256, given.rows):
            return (
                f"feature cache {path} was built from other data than {given.name} (its contents differ from "
                f"{built.name} as cached); {rebuild}"
            )
    return None


class FeatureWriter:
    """`with FeatureWriter(path, key, "float16") as out: out.add_row(features or None, failure)`, row by row in
    global row order; the file appears under its name only once complete."""

    def __init__(self, path: str | Path, key: CacheKey, dtype: str = "float16") -> None:
        if dtype not in DTYPES:
            raise MmvError(f"unknown cache dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        self.path, self.key, self.dtype = Path(path), key, np.dtype(dtype)
        self.shape: tuple[int, int] | None = None  # (tokens, dim) of every record, from the first image
        self.starts = array("q", [0])
        self.failures: dict[int, str] = {}  # row -> why its images could not be decoded
        self._handle: IO[bytes] | None = None

    @property
    def rows(self) -> int:
        return len(self.starts) - 1

    @property
    def images(self) -> int:
        return self.starts[-1]

    def __enter__(self) -> FeatureWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._handle = open(tmp, "wb")  # closed in __exit__
            self._handle.write(MAGIC.ljust(DATA_START, b"\0"))
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def add_row(self, features: torch.Tensor | np.ndarray | None, failure: str | None = None) -> None:
        """The next row's images as [n, tokens, dim] (None or n = 0: no images), or the reason they failed."""
        count = 0
        if failure is not None:
            self.failures[self.rows] = failure
        elif features is not None and len(features):
            values = np.ascontiguousarray(_numpy(features), dtype=self.dtype)
            if values.ndim != 3 or (self.shape is not None and values.shape[1:] != self.shape):
                raise ValueError(f"features of shape {values.shape}; the cache holds [n, {self.shape}] records")
            self.shape = self.shape or (values.shape[1], values.shape[2])
            self._handle.write(values.tobytes())
            count = values.shape[0]
        self.starts.append(self.starts[-1] + count)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            self._handle.close()
            self._atomic.__exit__(exc_type, exc, tb)

    def _finish(self) -> None:
        self._handle.write(np.asarray(self.starts, dtype="<i8").tobytes())
        footer = {
            "format": FORMAT,
            "key": self.key.to_dict(),
            "dtype": self.dtype.name,
            "shape": list(self.shape or (0, 0)),
            "rows": self.rows,
            "images": self.images,
            "failures": {str(row): reason for row, reason in self.failures.items()},
        }
        text = json.dumps(footer).encode("utf-8")
        self._handle.write(text)
        self._handle.write(TAIL.pack(len(text), MAGIC))


def _numpy(features: Any) -> np.ndarray:
    return features.detach().cpu().numpy() if hasattr(features, "detach") else np.asarray(features)


class FeatureCache:
    """A cache file opened for reading: its footer checked, the records and starts memory-mapped (nothing read)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        footer = read_footer(self.path)
        self.key = CacheKey.from_dict(footer["key"])
        self.dtype = np.dtype(footer["dtype"])
        self.shape = tuple(footer["shape"])
        self.rows, self.images = footer["rows"], footer["images"]
        self.failures = {int(row): reason for row, reason in footer["failures"].items()}
        record = self.shape[0] * self.shape[1] * self.dtype.itemsize
        starts_at = DATA_START + self.images * record
        self._starts = np.memmap(self.path, dtype="<i8", mode="r", offset=starts_at, shape=(self.rows + 1,))
        if self._starts[0] != 0 or self._starts[-1] != self.images or np.any(np.diff(self._starts) < 0):
            raise MmvError(f"{self.path} is not an mmv feature cache (its row index is damaged)")
        self._records = (
            np.memmap(self.path, dtype=self.dtype, mode="r", offset=DATA_START, shape=(self.images, *self.shape))
            if self.images
            else None
        )

    def count(self, row: int) -> int:
        """The number of images stored for global row `row`."""
        return int(self._starts[row + 1] - self._starts[row])

    def features(self, row: int, index: int) -> torch.Tensor:
        """Image `index` of global row `row`: the encoder's last_hidden_state [tokens, dim], in the cache dtype."""
        import torch

        if not 0 <= index < self.count(row):
            raise IndexError(f"row {row} has {self.count(row)} cached image(s), not an image {index}")
        return torch.from_numpy(np.array(self._records[int(self._starts[row]) + index]))

    def images_of(self, image_bytes: list[bytes], row: int) -> list[torch.Tensor]:
        """What training uses in place of decoding a row's images (`RowValidator`'s image source): the cached
        features, or the row's decoding failure as BadRow("image"), exactly as decoding would have refused it."""
        if row in self.failures:
            raise BadRow("image", self.failures[row])
        if self.count(row) != len(image_bytes):
            raise MmvError(
                f"feature cache {self.path} holds {self.count(row)} image(s) for row {row}, which has "
                f"{len(image_bytes)}; build the cache again"
            )
        return [self.features(row, k) for k in range(len(image_bytes))]


def read_footer(path: Path) -> dict[str, Any]:
    """The footer of a cache file, checked for size and fields; anything else is one MmvError naming the file."""
    not_cache = f"{path} is not an mmv feature cache"
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(len(MAGIC))
            if size < DATA_START + TAIL.size or head != MAGIC:
                raise MmvError(f"{not_cache} (no {MAGIC.decode()} header; an unfinished build is never renamed)")
            handle.seek(size - TAIL.size)
            length, magic = TAIL.unpack(handle.read(TAIL.size))
            if magic != MAGIC or length > size - DATA_START - TAIL.size:
                raise MmvError(f"{not_cache} (its end is damaged: truncated or overwritten)")
            handle.seek(size - TAIL.size - length)
            footer = json.loads(handle.read(length).decode("utf-8"))
            check_footer(path, footer, size - length - TAIL.size)
    except FileNotFoundError:
        raise MmvError(f"feature cache {path} does not exist") from None
    except OSError as exc:
        raise MmvError(f"cannot read feature cache {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise MmvError(f"{not_cache} (its footer is not valid JSON: {exc})") from None
    return footer


def check_footer(path: Path, footer: Any, footer_at: int) -> None:
    """The footer's fields and counts, and that the records and starts they describe fill the file exactly."""
    bad = f"{path} is not an mmv feature cache of format {FORMAT}"
    try:
        if footer["format"] != FORMAT or footer["dtype"] not in DTYPES:
            raise MmvError(f"{bad} (format {footer['format']!r}, dtype {footer['dtype']!r})")
        CacheKey.from_dict(footer["key"])
        tokens, dim = footer["shape"]
        rows, images = footer["rows"], footer["images"]
        failures = {int(row): str(reason) for row, reason in footer["failures"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MmvError(f"{bad} (its footer lacks or misstates {exc})") from None
    numbers = (tokens, dim, rows, images)
    if any(type(n) is not int or n < 0 for n in numbers) or any(not 0 <= r < rows for r in failures):
        raise MmvError(f"{bad} (its footer's counts are out of range)")
    record = tokens * dim * np.dtype(footer["dtype"]).itemsize
    if DATA_START + images * record + 8 * (rows + 1) != footer_at:
        raise MmvError(f"{bad} (its size does not fit {images} images of {rows} rows: truncated or damaged)")
