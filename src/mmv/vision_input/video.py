"""Video input: frames sampled uniformly in time with PyAV (`pip install 'mmv[video]'`), each shown as an image.

A clip of N sampled frames becomes N images in the prompt, each after its timestamp ("Frame 3 at 1.5 s:"), so
the order and spacing in time are written out for the model rather than left for it to guess. Decoding runs
twice over the stream: once for the frame times (nothing converted), once to convert only the chosen frames, so a
long clip never sits in memory as pictures.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.config import IMAGE_MARKER
from mmv.errors import MmvError
from mmv.images import MAX_PIXELS, media_bytes

if TYPE_CHECKING:
    from PIL import Image

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".mkv", ".avi")
EXTRA_HINT = "reading videos needs PyAV: pip install 'mmv[video]'"
MAX_FRAMES = 64
DEFAULT_FRAMES = 8  # frames per video where neither the command nor the run says


@dataclass(frozen=True)
class Frame:
    image: Image.Image
    seconds: float  # from the start of the clip


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def check_frames(count: int) -> int:
    if type(count) is not int or not 1 <= count <= MAX_FRAMES:
        raise MmvError(f"frames must be between 1 and {MAX_FRAMES}, got {count!r}", option="frames")
    return count


def pyav() -> Any:
    """The PyAV module, or one line saying how to install it."""
    try:
        import av
    except ImportError:
        raise MmvError(EXTRA_HINT) from None
    return av


def _open(av: Any, data: bytes, label: str) -> Any:
    try:
        container = av.open(io.BytesIO(data))
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise MmvError(
            f"{label} is not a video file ({str(exc).splitlines()[0] if str(exc) else 'unreadable'})"
        ) from None
    if not container.streams.video:
        container.close()
        raise MmvError(f"{label} holds no video stream")
    context = container.streams.video[0].codec_context
    if context.width * context.height > MAX_PIXELS:  # a small file of huge frames: a bomb, as for images
        container.close()
        raise MmvError(f"{label} has {context.width}x{context.height} frames, over the {MAX_PIXELS:,}-pixel limit")
    return container


def _frames(av: Any, data: bytes, label: str) -> Any:
    """Every decoded frame of the first video stream, in order; a corrupt stream is one MmvError."""
    container = _open(av, data, label)
    try:
        stream = container.streams.video[0]
        yield from container.decode(stream)
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise MmvError(f"{label} cannot be decoded: {str(exc).splitlines()[0] if str(exc) else 'corrupt'}") from None
    finally:
        container.close()


def check_video(data: bytes, name: str) -> int:
    """The number of frames of a video's bytes, every one decoded once; a file that is not a readable video with
    at least one frame is one MmvError."""
    label = f"video {name}"
    count = sum(1 for _ in _frames(pyav(), data, label))
    if not count:
        raise MmvError(f"{label} has no frames")
    return count


def uniform_picks(times: list[float], count: int) -> list[int]:
    """Indices of the frames nearest to `count` instants spread evenly over the clip (each the middle of its
    share of the clip), without repeats when the clip has fewer frames than asked for."""
    if len(times) <= count:
        return list(range(len(times)))
    start, end = times[0], times[-1] + (times[-1] - times[0]) / max(1, len(times) - 1)
    picks: list[int] = []
    for k in range(count):
        target = start + (end - start) * (k + 0.5) / count
        nearest = min(range(len(times)), key=lambda i: abs(times[i] - target))
        if not picks or nearest > picks[-1]:
            picks.append(nearest)
    return picks


def sample_frames(source: str | Path | bytes, count: int, name: str | None = None) -> list[Frame]:
    """`count` frames of a video file (or its bytes), uniform in time, as RGB images with their timestamps."""
    check_frames(count)
    av = pyav()
    source, label = media_bytes(source, "video", name)
    times = [_seconds(frame, position) for position, frame in enumerate(_frames(av, source, label))]
    if not times:
        raise MmvError(f"{label} has no frames")
    picks = set(uniform_picks(times, count))
    chosen = [
        Frame(frame.to_image().convert("RGB"), times[position])
        for position, frame in enumerate(_frames(av, source, label))
        if position in picks
    ]
    if len(chosen) != len(picks):
        raise MmvError(f"{label} changed while it was read")
    return chosen


def _seconds(frame: Any, position: int) -> float:
    """The frame's presentation time; a stream without timestamps counts frames at its rate, else at 25 fps."""
    if frame.time is not None:
        return float(frame.time)
    return position / 25.0


def frames_prompt(frames: list[Frame]) -> str:
    """One line per frame: its number, its time and its image marker."""
    return "".join(f"Frame {k} at {frame.seconds:.1f} s: {IMAGE_MARKER}\n" for k, frame in enumerate(frames, 1))


def video_text(frames: list[Frame], name: str | None = None) -> str:
    """A video as a prompt lays it out: its frames' lines, after a "Video NAME:" line where several videos are
    asked about together (`mmv chat` names them by file, `mmv serve` by their number in the request)."""
    return (f"Video {name}:\n" if name else "") + frames_prompt(frames)
