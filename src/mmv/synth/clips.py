"""Short clips encoded into MP4 in memory with PyAV, for the synthetic video task and for tests of video input.

One encoder thread and fixed x264 settings: the same pictures give the same bytes, so a synthetic file is identical
for a seed. CRF 18 keeps the solid shapes' colours and outlines crisp after 4:2:0 chroma subsampling.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from mmv.vision_input.video import pyav

if TYPE_CHECKING:
    from PIL import Image

CLIP_FPS = 4  # frames per second: an 8-frame clip lasts 2 s, so the frames' timestamps step by 0.25 s
CODEC_OPTIONS = {"crf": "18", "preset": "veryfast", "threads": "1"}


def mp4_bytes(frames: list[Image.Image], fps: int = CLIP_FPS) -> bytes:
    """The frames (all of one even size) as an H.264 MP4 file."""
    av = pyav()
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options=dict(CODEC_OPTIONS))
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(image.convert("RGB"))))
        container.mux(stream.encode())
    return buffer.getvalue()
