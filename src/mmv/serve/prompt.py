"""A checked request rendered into what the engine decodes: token ids, the images' encoder inputs, the budget.

Each message's parts are joined with newlines, an image part becoming an `<image>` marker where it stood (so a
question after one image renders as `mmv chat` renders it), and the MiniMind chat template does the rest.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmv.config import IMAGE_MARKER
from mmv.serve.protocol import ApiError, ChatRequest, ImagePart, Message
from mmv.tokenizer import encode, render_chat

if TYPE_CHECKING:
    import torch

    from mmv.loading import LoadedModel
    from mmv.serve.image_input import CheckedImage


@dataclass
class ImageInput:
    digest: str  # sha256 of the image file: the engine encodes each distinct image once
    pixels: dict[str, torch.Tensor]  # the processor's output for this image's views (the tiles too, if tiled)


@dataclass
class Prompt:
    tokens: list[int]  # rendered conversation, image placeholder runs expanded
    images: list[ImageInput]  # one per image, in order
    max_new_tokens: int


def template_messages(messages: list[Message]) -> list[dict[str, str]]:
    return [
        {
            "role": message.role,
            "content": "\n".join(IMAGE_MARKER if isinstance(part, ImagePart) else part for part in message.parts),
        }
        for message in messages
    ]


class PromptBuilder:
    """Renders requests for one loaded model; `lock` serialises the tokenizer, which is not safe to share."""

    def __init__(self, loaded: LoadedModel, lock: threading.Lock, max_new_tokens_limit: int) -> None:
        self.loaded, self.lock, self.limit = loaded, lock, max_new_tokens_limit
        config = loaded.model.config
        self.context = config.max_position_embeddings
        self.tokens_per_image, self.image_token = config.image_token_len, config.image_token_id
        self.image_text = config.image_special_token
        self.tiling = loaded.tiling

    def build(self, request: ChatRequest, images: list[CheckedImage]) -> Prompt:
        if images and self.loaded.processor is None:
            raise ApiError("this server's model was loaded without a vision encoder: it takes no images")
        grids = self.tiling.grids([image.image for image in images])
        with self.lock:
            text = render_chat(
                self.loaded.tokenizer,
                template_messages(request.messages),
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
        if room < 1:
            raise ApiError(
                f"the conversation is {len(tokens)} tokens, over the model's context of {self.context}",
                code="context_length_exceeded",
            )
        budget = min(request.max_tokens or self.limit, room)
        return Prompt(tokens, [self._pixels(image) for image in images], budget)

    def _pixels(self, image: CheckedImage) -> ImageInput:
        pixels: dict[str, Any] = self.loaded.processor(self.tiling.views(image.image))
        return ImageInput(image.digest, pixels)
