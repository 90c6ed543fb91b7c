"""Opening images safely: every failure is one clear sentence, never a traceback or a decompression bomb."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from mmv.errors import MmvError

if TYPE_CHECKING:
    from PIL import Image

# 64 megapixels: far above any photo the 256x256 encoders need, far below what exhausts memory when decoded.
MAX_PIXELS = 64_000_000


def media_bytes(source: str | Path | bytes, kind: str, name: str | None = None) -> tuple[bytes, str]:
    """A media file's bytes (or the bytes as given) and the label its errors call it by: "image photo.jpg", "video
    bytes", or `kind` and `name` where a name is given."""
    label = f"{kind} {name or (source if not isinstance(source, bytes) else 'bytes')}"
    if isinstance(source, bytes):
        return source, label
    path = Path(source)
    if not path.is_file():
        raise MmvError(f"{label} does not exist")
    return path.read_bytes(), label


def open_image(source: str | Path | bytes, name: str | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode a file path or raw bytes into a fully loaded RGB image."""
    from PIL import Image, UnidentifiedImageError

    source, label = media_bytes(source, "image", name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked below
            image = Image.open(io.BytesIO(source))
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise MmvError(f"{label} is {width}x{height} pixels, over the {max_pixels:,}-pixel limit")
            image.load()  # decode now, so a truncated file fails here and not deep inside the processor
            return image.convert("RGB")
    except MmvError:
        raise
    except Image.DecompressionBombError:
        raise MmvError(f"{label} is over the pixel limit (a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise MmvError(f"{label} is not an image file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MmvError(f"{label} cannot be decoded: {str(exc).splitlines()[0] if str(exc) else 'corrupt'}") from None
