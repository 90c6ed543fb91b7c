"""Image decoding failures are one sentence each, and decompression bombs are refused before decoding."""

from __future__ import annotations

import pytest
from PIL import Image

from mmv.errors import MmvError
from mmv.images import media_bytes, open_image
from tests.conftest import IMAGES_DIR

PHOTO = IMAGES_DIR / "image-04-yellow-car.jpg"


def test_real_photo_opens_as_rgb():
    image = open_image(PHOTO)
    assert image.mode == "RGB" and image.size == (640, 640)


def test_rgba_is_converted(tmp_path):
    Image.new("RGBA", (8, 8), (255, 0, 0, 128)).save(tmp_path / "a.png")
    assert open_image(tmp_path / "a.png").mode == "RGB"


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "does not exist"),
        ("text", "not an image"),
        ("truncated", "cannot be decoded"),
        ("bomb", "pixel limit"),
    ],
)
def test_bad_images(tmp_path, kind, message):
    path = tmp_path / "x.png"
    if kind == "text":
        path.write_text("hello")
    elif kind == "truncated":
        path = tmp_path / "x.jpg"
        path.write_bytes(PHOTO.read_bytes()[:4000])
    elif kind == "bomb":
        Image.new("1", (12_000, 12_000)).save(path)  # 144 Mpx, a few KB on disk
    with pytest.raises(MmvError, match=message):
        open_image(path)


def test_media_is_read_from_a_path_or_taken_as_bytes_under_the_label_its_errors_use(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"frames")
    assert media_bytes(clip, "video") == (b"frames", f"video {clip}")
    assert media_bytes(b"pixels", "image") == (b"pixels", "image bytes")
    assert media_bytes(b"pixels", "image", name="upload 2") == (b"pixels", "image upload 2")
    with pytest.raises(MmvError, match=r"^video gone.mp4 does not exist$"):
        media_bytes(tmp_path / "gone.mp4", "video", name="gone.mp4")
