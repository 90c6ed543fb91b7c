"""From a video URL in a request to its sampled frames, each of them an image to the engine.

The URL is read by the image rules (`read_media`: data: URIs always, http(s) only with `--allow-image-urls`, local
paths never) under the video size cap, and the frames are sampled as `mmv chat` samples a file's
(`mmv.vision_input.video.sample_frames`), to the server's frame count. A frame's digest is the video's sha256 with
the frame count and the frame's number: a conversation that resends the clip names the same frames, so the engine
finds their features and the history's keys/values again without hashing any pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mmv.errors import MmvError
from mmv.serve.image_input import CheckedImage, MediaPolicy, read_media
from mmv.serve.protocol import ApiError
from mmv.vision_input.video import Frame, pyav, sample_frames


@dataclass
class CheckedVideo:
    frames: list[Frame]  # uniform in time, with their timestamps (the prompt's "Frame k at t s:" lines)
    pictures: list[CheckedImage]  # the same frames as the engine's images, in order


def load_video(url: str, policy: MediaPolicy, frames: int, number: int) -> CheckedVideo:
    """Read the request's video `number` (from 1) and sample `frames` frames; every refusal is an ApiError whose
    message names the video ("video 2")."""
    label = f"video {number}"
    try:
        pyav()
    except MmvError as exc:
        raise ApiError(f"{label}: this server cannot read videos ({exc})", code="video_unsupported") from None
    data = read_media(url, policy, label, "video")
    try:
        sampled = sample_frames(data, frames, name=str(number))
    except MmvError as exc:
        raise ApiError(str(exc), code="invalid_video") from None
    digest = hashlib.sha256(data).hexdigest()
    pictures = [CheckedImage(frame.image, f"{digest}:{frames}:{k}") for k, frame in enumerate(sampled)]
    return CheckedVideo(sampled, pictures)
