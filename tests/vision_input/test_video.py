"""Video input: frames sampled uniformly in time with their timestamps; bad files are one clear error."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image

from mmv.errors import MmvError
from mmv.vision_input.video import frames_prompt, sample_frames, uniform_picks

FPS = 10


def write_clip(path: Path, frames: int, codec: str = "mpeg4") -> Path:
    """A clip whose frame k shows a red bar k*8 pixels from the left (so a frame can be told from its picture)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 128, 64, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        for k in range(frames):
            image = Image.new("RGB", (128, 64), (255, 255, 255))
            image.paste((220, 20, 20), (k * 8 % 120, 0, k * 8 % 120 + 8, 64))
            frame = av.VideoFrame.from_image(image)
            frame.pts = k
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def red_column(image: Image.Image) -> int:
    return next(x for x in range(image.width) if image.getpixel((x, 32))[1] < 120)


def test_frames_are_uniform_in_time_with_their_timestamps(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", 20)  # 2 s: the middles of five 0.4 s shares are frames 2, 6, ...
    frames = sample_frames(clip, 5)
    assert [round(f.seconds, 1) for f in frames] == [0.2, 0.6, 1.0, 1.4, 1.8]
    assert [red_column(f.image) // 8 for f in frames] == [2, 6, 10, 14, 18 % 15]
    assert frames_prompt(frames).splitlines()[2] == "Frame 3 at 1.0 s: <image>"


def test_a_gif_is_read_too(tmp_path):
    pictures = [Image.new("RGB", (32, 32), (k * 40, 0, 0)) for k in range(6)]
    path = tmp_path / "clip.gif"
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=200, loop=0)
    frames = sample_frames(path, 3)
    assert len(frames) == 3 and [round(f.seconds, 1) for f in frames] == [0.2, 0.6, 1.0]


def test_a_short_clip_gives_each_frame_once():
    assert uniform_picks([0.0, 0.1, 0.2], 8) == [0, 1, 2]
    assert uniform_picks([k / 10 for k in range(90)], 3) == [15, 45, 75]


def test_bad_videos_are_one_clear_error(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", 15).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(clip[: len(clip) // 3])
    (tmp_path / "text.mp4").write_bytes(b"this is not a video at all\n" * 20)
    for name in ("cut.mp4", "text.mp4"):
        with pytest.raises(MmvError, match=f"video .*{name}"):
            sample_frames(tmp_path / name, 4)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MmvError, match=r"empty\.mp4 is not a video file"):
        sample_frames(empty, 4)
    with pytest.raises(MmvError, match="does not exist"):
        sample_frames(tmp_path / "missing.mp4", 4)
    with pytest.raises(MmvError, match="frames must be between"):
        sample_frames(tmp_path / "cut.mp4", 0)


def test_a_clip_of_frames_over_the_pixel_limit_is_refused_before_decoding():
    """200 KB of H.264 that would decode to 8192x8200 pictures: refused as an image bomb is."""
    import io

    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=4, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 8192, 8200, "yuv420p"
        frame = av.VideoFrame(8192, 8200, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(MmvError, match="video bomb has 8192x8200 frames, over the 64,000,000-pixel limit"):
        sample_frames(buffer.getvalue(), 4, name="bomb")
