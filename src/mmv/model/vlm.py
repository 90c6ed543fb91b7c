# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""MiniMind-V: the MiniMind LLM with projected image features spliced over `<|image_pad|>` runs at prefill."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmv.config import VLMConfig
from mmv.errors import MmvError
from mmv.model.encoders import patch_features
from mmv.model.kv_cache import KVCache
from mmv.model.llm import MiniMindLM
from mmv.model.loss import shifted_cross_entropy
from mmv.model.projector import VisionProjector

ENCODER_PREFIX = "vision_encoder."


@dataclass
class VLMOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None


class MiniMindVLM(MiniMindLM):
    """Parameters: `model.*`, `lm_head.*`, `vision_proj.*` (the checkpoint) and `vision_encoder.*` (kept apart)."""

    def __init__(self, config: VLMConfig, vision_encoder: nn.Module | None = None) -> None:
        super().__init__(config)
        self.vision_proj = VisionProjector(config)
        self.vision_encoder = vision_encoder

    @classmethod
    def unfilled(cls, config: VLMConfig, vision_encoder: nn.Module | None = None) -> MiniMindVLM:
        """The model with memory for its weights but no values in it, for a checkpoint to fill.

        Drawing tens of millions of random numbers only to overwrite them takes seconds, and memory nothing has
        written yet is not resident: a load then holds each weight once. The RoPE tables are computed as usual.
        """
        with torch.device("meta"):
            model = cls(config)
        model.to_empty(device="cpu")
        model.rope_cos, model.rope_sin = model.rope_rows(model.rope_cos.shape[0])
        if config.tie_word_embeddings:  # to_empty gives each parameter new memory, the tied one twice
            model.lm_head.weight = model.model.embed_tokens.weight
        model.vision_encoder = vision_encoder
        return model

    def init_fresh_weights(self, std: float = 0.02) -> None:
        """N(0, std) for every Linear and Embedding outside the encoder, as transformers models initialise.

        torch's default N(0, 1) embedding, tied to the output head, would start the loss near 50 instead of
        ln(vocab); the encoder keeps whatever weights it was loaded with.
        """
        with torch.no_grad():
            for name, module in self.named_modules():
                if name.startswith(ENCODER_PREFIX.rstrip(".")):
                    continue
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    module.weight.normal_(0.0, std)
                    if getattr(module, "bias", None) is not None:
                        module.bias.zero_()

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """The reference checkpoint layout: everything but the encoder (which ships as its own folder)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(ENCODER_PREFIX)}

    def encode_images(self, pixel_inputs: dict[str, Any]) -> torch.Tensor:
        """Processor output for N images -> projected features [N, tokens per image, hidden]."""
        return self.project_images(self.image_features(pixel_inputs))

    def image_features(self, pixel_inputs: dict[str, Any]) -> torch.Tensor:
        """Processor output for N images -> the encoder's patch tokens [N, patches, width]: what the projector reads
        (mmv.model.encoders says which outputs those are for each family)."""
        if self.vision_encoder is None:
            raise MmvError("this model has no vision encoder attached", option="vision")
        trainable = any(p.requires_grad for p in self.vision_encoder.parameters())
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            return patch_features(self.vision_encoder, pixel_inputs)

    def project_images(self, features: torch.Tensor) -> torch.Tensor:
        """Patch tokens [N, patches, width] (computed now, or read from a feature cache) -> image tokens
        [N, tokens per image, hidden]."""
        return self.vision_proj(features.to(self.vision_proj.mlp[-1].weight.dtype))

    def embed(self, input_ids: torch.Tensor, image_embeds: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with each placeholder run replaced, in order, by one image's features."""
        hidden = self.model.embed_tokens(input_ids)
        if image_embeds is None or image_embeds.shape[0] == 0:
            return hidden
        placeholders = input_ids == self.config.image_token_id
        expected = image_embeds.shape[0] * image_embeds.shape[1]
        found = int(placeholders.sum())
        if found != expected:
            raise MmvError(
                f"the prompt holds {found} image placeholder tokens but {image_embeds.shape[0]} image(s) "
                f"need {expected}"
            )
        # row-major order of the mask = sample by sample, image by image: one masked_scatter, no Python loop
        return hidden.masked_scatter(placeholders.unsqueeze(-1), image_embeds.to(hidden.dtype))

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        pixel_inputs: dict[str, Any] | None = None,
        image_features: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        key_padding: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        last_only: bool = False,
    ) -> VLMOutput:
        if image_embeds is None and image_features is not None:
            image_embeds = self.project_images(image_features)
        if image_embeds is None and pixel_inputs is not None:
            image_embeds = self.encode_images(pixel_inputs)
        hidden = self.embed(input_ids, image_embeds)
        logits, aux = self.decode(
            hidden,
            position_ids=position_ids,
            key_padding=key_padding,
            segment_ids=segment_ids,
            cache=cache,
            last_only=last_only,
        )
        loss = shifted_cross_entropy(logits, labels) if labels is not None else None
        return VLMOutput(logits=logits, loss=loss, aux_loss=aux)
