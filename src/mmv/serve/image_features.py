"""Projected image features by image content: a picture resent with every turn of a conversation is encoded once.

The images of all the requests that join the batch in one step go through the encoder together, one call per
distinct input shape (tiles and NaFlex images carry their own), each distinct image once. The features are kept by
digest, so a later turn gets the very tensor its earlier turn was prefilled with, which is what lets `PrefixPool`
recognise the image there.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch

from mmv.model.vision import encoder_inputs_to

if TYPE_CHECKING:
    from mmv.model.vlm import MiniMindVLM
    from mmv.serve.prompt import ImageInput


def input_shape(image: ImageInput) -> tuple:
    """What must agree for images to share an encoder call: each input's name, dtype and per-view shape."""
    return tuple((name, tensor.dtype, tuple(tensor.shape[1:])) for name, tensor in sorted(image.pixels.items()))


class ImageFeatures:
    def __init__(self, model: MiniMindVLM, capacity: int) -> None:
        self.model, self.capacity = model, capacity
        # digest -> [runs, run, hidden] (one run per view: more than one for a tiled image), newest last
        self.features: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.encoded = 0  # images run through the encoder (the rest were found here)
        self.encoder_calls = 0

    @torch.inference_mode()
    def embeds(self, requests: list[list[ImageInput]]) -> list[torch.Tensor | None]:
        """For each request's images: [runs, run, hidden] over their views in order, or None without images.

        The images not kept here are encoded together."""
        found: dict[str, torch.Tensor] = {}
        by_shape: dict[tuple, dict[str, ImageInput]] = {}
        for image in (image for images in requests for image in images):
            if image.digest in self.features:
                found[image.digest] = self.features[image.digest]
            else:
                by_shape.setdefault(input_shape(image), {})[image.digest] = image
        for group in by_shape.values():
            found.update(self._encode(group))
        for digest, features in found.items():
            self.features[digest] = features
            self.features.move_to_end(digest)
        while len(self.features) > self.capacity:
            self.features.popitem(last=False)
        return [torch.cat([found[image.digest] for image in images]) if images else None for images in requests]

    def _encode(self, distinct: dict[str, ImageInput]) -> dict[str, torch.Tensor]:
        """One encoder call over every view of the images (same input shape); each one's [views, run, hidden]."""
        model, images = self.model, list(distinct.values())
        pixels = {name: torch.cat([image.pixels[name] for image in images]) for name in images[0].pixels}
        inputs = encoder_inputs_to(pixels, model.rope_cos.device, model.model.embed_tokens.weight.dtype)
        features = model.encode_images(inputs)
        self.encoded += len(images)
        self.encoder_calls += 1
        views = [next(iter(image.pixels.values())).shape[0] for image in images]
        # cloned: a kept image must not hold on to the features of the images it was encoded with
        return {image.digest: part.clone() for image, part in zip(images, features.split(views), strict=True)}
