"""A checked request rendered into what the engine decodes: token ids, the images' encoder inputs, the budget.

Each message's parts are joined with newlines, an image part becoming an `<image>` marker where it stood and a video
part its frames' lines ("Frame k at t s: <image>", after a "Video N:" line where the message holds several videos),
so a question after an image or a clip renders as `mmv chat` renders it; the MiniMind chat template does the rest.
A video is labelled by its message rather than by the request so that a conversation's earlier turns render the
same when a later turn adds a video, and their keys/values are reused.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmv.config import IMAGE_MARKER
from mmv.serve.protocol import ApiError, ChatRequest, Message, VideoPart
from mmv.serve.video_input import CheckedVideo
from mmv.tokenizer import encode, render_chat
from mmv.vision_input.video import video_text

if TYPE_CHECKING:
    import torch

    from mmv.loading import LoadedModel
    from mmv.serve.image_input import CheckedImage
    from mmv.vision_input.tiles import TileGrid
    from mmv.vision_input.video import Frame


@dataclass
class ImageInput:
    digest: str  # sha256 of the image file: the engine encodes each distinct image once
    pixels: dict[str, torch.Tensor]  # the processor's output for this image's views (the tiles too, if tiled)


@dataclass
class Prompt:
    tokens: list[int]  # rendered conversation, image placeholder runs expanded
    images: list[ImageInput]  # one per image, in order
    max_new_tokens: int


def template_messages(messages: list[Message], videos: Sequence[list[Frame]] = ()) -> list[dict[str, str]]:
    """The chat template's messages; `videos` are the sampled frames of the request's video parts, in order."""
    numbered = iter(enumerate(videos, 1))
    rendered = []
    for message in messages:
        several = sum(isinstance(part, VideoPart) for part in message.parts) > 1
        pieces = []
        for part in message.parts:
            if isinstance(part, VideoPart):
                number, frames = next(numbered)
                # the frames' last line ends the piece: the newline that follows is the join's, as an image's
                pieces.append(video_text(frames, str(number) if several else None).removesuffix("\n"))
            else:
                pieces.append(part if isinstance(part, str) else IMAGE_MARKER)
        rendered.append({"role": message.role, "content": "\n".join(pieces)})
    return rendered


def pictures(item: CheckedImage | CheckedVideo) -> list[CheckedImage]:
    """What the engine encodes for an image (the image) or a video (its sampled frames)."""
    return item.pictures if isinstance(item, CheckedVideo) else [item]


class PromptBuilder:
    """Renders requests for one loaded model; `lock` serialises the tokenizer, which is not safe to share."""

    def __init__(self, loaded: LoadedModel, lock: threading.Lock, max_new_tokens_limit: int) -> None:
        self.loaded, self.lock, self.limit = loaded, lock, max_new_tokens_limit
        config = loaded.model.config
        self.context = config.max_position_embeddings
        self.tokens_per_image, self.image_token = config.image_token_len, config.image_token_id
        self.image_text = config.image_special_token
        self.tiling = loaded.tiling

    def build(self, request: ChatRequest, media: list[CheckedImage | CheckedVideo]) -> Prompt:
        """`media`: the request's images and videos in order, as `image_input` and `video_input` checked them."""
        images = [picture for item in media for picture in pictures(item)]
        if images and self.loaded.processor is None:
            raise ApiError("this server's model was loaded without a vision encoder: it takes no images or videos")
        grids = self.tiling.grids([image.image for image in images])
        videos = [item.frames for item in media if isinstance(item, CheckedVideo)]
        with self.lock:
            text = render_chat(
                self.loaded.tokenizer,
                template_messages(request.messages, videos),
                thinking=request.thinking,
                tokens_per_image=self.tokens_per_image,
                image_token=self.image_text,
                grids=grids,
            )
            tokens = encode(self.loaded.tokenizer, text)
        placeholders = sum(1 for token in tokens if token == self.image_token)
        if placeholders != sum(grid.runs for grid in grids) * self.tokens_per_image:
            raise ApiError("the messages contain image placeholder tokens; send images as image_url parts")
        room = self.context - len(tokens)
        if room < 1:  # before any picture goes through the processor or the encoder
            raise ApiError(
                f"the conversation is {len(tokens)} tokens{self._frames_share(media, grids)}, over the "
                f"model's context of {self.context}",
                code="context_length_exceeded",
            )
        budget = min(request.max_tokens or self.limit, room)
        return Prompt(tokens, [self._pixels(image) for image in images], budget)

    def _frames_share(self, media: list[CheckedImage | CheckedVideo], grids: list[TileGrid]) -> str:
        """What the videos' frames take of the prompt, for a refusal; empty without videos."""
        frames = runs = start = 0
        for item in media:  # the grids are the pictures', in request order
            count = len(pictures(item))
            if isinstance(item, CheckedVideo):
                frames += count
                runs += sum(grid.runs for grid in grids[start : start + count])
            start += count
        tokens = runs * self.tokens_per_image
        if not frames:
            return ""
        return f" ({frames} video frames take {tokens} of them; this server samples {self.loaded.frames} per video)"

    def _pixels(self, image: CheckedImage) -> ImageInput:
        pixels: dict[str, Any] = self.loaded.processor(self.tiling.views(image.image))
        return ImageInput(image.digest, pixels)
