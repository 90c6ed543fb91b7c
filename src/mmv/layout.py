"""The files of a model on disk: names shared by every reader and writer, and the one way their JSON is read.

Checkpoints, transformers folders, run directories, encoder and tokenizer folders are written by one part of mmv
and read by another; naming each file once keeps the two from disagreeing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmv.errors import MmvError

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")  # what a weights file may be called
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # a transformers folder's weights; the first found wins
CONFIG_FILE = "config.json"  # a transformers folder's or an encoder's config; a run directory's settings
VISION_SUBFOLDER = "vision"  # the encoder inside a transformers folder; the trained encoder in a run directory
PREPROCESSOR_FILE = "preprocessor_config.json"
ENCODER_FILES = (CONFIG_FILE, WEIGHT_FILES[0], PREPROCESSOR_FILE)  # a SigLIP encoder folder as published
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object (every config of this layout); anything else is one clear error."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MmvError(f"{path} does not exist") from None
    except OSError as exc:
        raise MmvError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # including text that is not UTF-8
        raise MmvError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(data), "a number")
        raise MmvError(f"{path} holds {kind}, expected a JSON object")
    return data


@contextmanager
def reading(source: Path | str) -> Iterator[None]:
    """Name `source` in any MmvError raised while its contents are checked (the checks do not know the file)."""
    try:
        yield
    except MmvError as exc:
        raise MmvError(f"{source}: {exc}", option=exc.options) from None
