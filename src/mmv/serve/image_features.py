"""Projected image features by image content: a picture resent with every turn of a conversation is encoded once.

Each image is encoded alone, so its features never depend on which images arrived with it; the same file always
gives the very same tensor, which is what lets `PrefixPool` recognise it in a later turn.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch

from mmv.model.vision import encoder_inputs_to

if TYPE_CHECKING:
    from mmv.model.vlm import MiniMindVLM
    from mmv.serve.prompt import ImageInput


class ImageFeatures:
    def __init__(self, model: MiniMindVLM, capacity: int) -> None:
        self.model, self.capacity = model, capacity
        # digest -> [runs, run, hidden] (one run per view: more than one for a tiled image), newest last
        self.features: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.encoded = 0  # images run through the encoder (the rest were found here)

    @torch.inference_mode()
    def embeds(self, images: list[ImageInput]) -> torch.Tensor | None:
        """[runs, run, hidden] for the request's images' views in order, or None without images."""
        if not images:
            return None
        found = []
        for image in images:
            features = self.features.get(image.digest)
            if features is None:
                features = self._encode(image)
                self.features[image.digest] = features
                self.encoded += 1
            self.features.move_to_end(image.digest)
            found.append(features)
        while len(self.features) > self.capacity:
            self.features.popitem(last=False)
        return torch.cat(found)

    def _encode(self, image: ImageInput) -> torch.Tensor:
        model = self.model
        inputs = encoder_inputs_to(image.pixels, model.rope_cos.device, model.model.embed_tokens.weight.dtype)
        return model.encode_images(inputs)
