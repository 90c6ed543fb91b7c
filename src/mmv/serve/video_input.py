"""From a video URL in a request to its sampled frames, each of them an image to the engine.

The URL is read by the image rules (`read_media`: data: URIs always, http(s) only with `--allow-image-urls`, local
paths never) under the video size cap, and the frames are sampled as `mmv chat` samples a file's
(`mmv.vision_input.video.sample_frames`), to the server's frame count. A frame's digest is the video's sha256 with
the frame count and the frame's number: a conversation that resends the clip names the same frames, so the engine
finds their features and the history's keys/values again without hashing any pixels, and `RecentVideos` hands back
its frames without decoding it again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mmv.errors import MmvError
from mmv.serve.image_input import CheckedImage, MediaPolicy, read_media
from mmv.serve.protocol import ApiError
from mmv.vision_input.video import Frame, pyav, sample_frames


@dataclass
class CheckedVideo:
    frames: list[Frame]  # uniform in time, with their timestamps (the prompt's "Frame k at t s:" lines)
    pictures: list[CheckedImage]  # the same frames as the engine's images, in order


class RecentVideos:
    """The frames sampled from the last videos served, by content and frame count, up to `max_bytes` of pixels.

    A conversation resends its clip with every turn (the protocol is stateless); without this each turn would decode
    it again. Requests are prepared on a thread pool, so the entries are guarded by a lock (decoding is not)."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self.decoded = 0  # videos sampled because they were not here
        self._entries: OrderedDict[tuple[str, int], list[Frame]] = OrderedDict()
        self._lock = threading.Lock()

    def frames(self, digest: str, count: int, sample: Callable[[], list[Frame]]) -> list[Frame]:
        key = (digest, count)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        sampled = sample()
        with self._lock:
            self.decoded += 1
            self._entries[key] = sampled
            while self._entries and sum(map(_pixel_bytes, self._entries.values())) > self.max_bytes:
                self._entries.popitem(last=False)
        return sampled


def _pixel_bytes(frames: list[Frame]) -> int:
    return sum(frame.image.width * frame.image.height * 3 for frame in frames)


def load_video(
    url: str, policy: MediaPolicy, frames: int, number: int, recent: RecentVideos | None = None
) -> CheckedVideo:
    """Read the request's video `number` (from 1) and sample `frames` frames (or find them in `recent`); every
    refusal is an ApiError whose message names the video ("video 2")."""
    label = f"video {number}"
    try:
        pyav()
    except MmvError as exc:
        raise ApiError(f"{label}: this server cannot read videos ({exc})", code="video_unsupported") from None
    data = read_media(url, policy, label, "video")
    digest = hashlib.sha256(data).hexdigest()

    def sample() -> list[Frame]:
        try:
            return sample_frames(data, frames, name=str(number))
        except MmvError as exc:
            raise ApiError(str(exc), code="invalid_video") from None

    sampled = recent.frames(digest, frames, sample) if recent is not None else sample()
    pictures = [CheckedImage(frame.image, f"{digest}:{frames}:{k}") for k, frame in enumerate(sampled)]
    return CheckedVideo(sampled, pictures)
