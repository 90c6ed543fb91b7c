# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""The transformers face of MiniMindVLM, last section of a folder's `modeling_minimind_v.py`.

mmv itself never imports this module: remote_code.py reads it as text. It runs on every transformers release in
mmv's supported range, which differ in how `generate` hands the KV cache to `forward`: up to 5.23 as
`past_key_values`, from 5.24 as `cache` (the old name deprecated). `forward` takes either and returns the cache
under the name the running transformers reads back. It names every argument `generate` passes in that range and
takes no `**kwargs`: an argument it does not know fails the call instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Any, ClassVar

import torch
import transformers
from transformers import Cache, DynamicCache, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MoeCausalLMOutputWithPast
from transformers.utils import cached_file

from mmv.convert.transformers_config import MiniMindVConfig
from mmv.errors import MmvError
from mmv.model.encoders import ENCODER_TYPES
from mmv.model.loss import shifted_cross_entropy
from mmv.model.vlm import MiniMindVLM

PIXEL_KEYS = ("pixel_values", "pixel_attention_mask", "spatial_shapes")
# the output field transformers reads the cache back from: `cache` from 5.24 on, `past_key_values` before
CACHE_FIELD = next(
    f.name for f in dataclasses.fields(MoeCausalLMOutputWithPast) if f.name in ("cache", "past_key_values")
)


class _CacheView:
    """The KVCache interface MiniMindLM uses (length / write / advance) over a transformers DynamicCache."""

    def __init__(self, cache: Cache) -> None:
        if not isinstance(cache, DynamicCache):
            # a static cache hands back its whole preallocated length, which the attention would read as keys
            raise ValueError(
                f"MiniMind-V decodes with a DynamicCache (transformers' default), not {type(cache).__name__}"
            )
        self.cache, self.length = cache, cache.get_seq_length()

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.update(k, v, layer)

    def advance(self, num_tokens: int) -> None:
        self.length += num_tokens


class _InitOnce(PreTrainedModel):
    """MiniMindLM.__init__ calls super().__init__() with no arguments; transformers is already set up by then."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


class MiniMindVForCausalLM(MiniMindVLM, _InitOnce, GenerationMixin):
    config_class = MiniMindVConfig
    _tied_weights_keys: ClassVar[dict[str, str]] = {"lm_head.weight": "model.embed_tokens.weight"}
    _no_split_modules: ClassVar[list[str]] = ["Block"]

    def __init__(self, config: MiniMindVConfig) -> None:
        PreTrainedModel.__init__(self, config)
        MiniMindVLM.__init__(self, config.vlm_config())
        self.config = config  # MiniMindLM stored the plain VLMConfig; transformers needs its own back
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: torch.nn.Module) -> None:
        if module is self:  # the RoPE tables are not stored in the weights: rebuild them after a meta-device init
            cos, sin = self.rope_rows(self.rope_cos.shape[0])
            self.rope_cos.copy_(cos)
            self.rope_sin.copy_(sin)
        else:
            super()._init_weights(module)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any):
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        subfolder = getattr(model.config, "vision_subfolder", None)
        if subfolder:  # the folder carries its encoder; load it with its family's native transformers class
            hub = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
            encoder_class = cls._encoder_class(pretrained_model_name_or_path, subfolder, model.config.vision, hub)
            encoder = encoder_class.from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **hub)
            model.vision_encoder = encoder.requires_grad_(False).eval().to(model.device)
        return model

    @staticmethod
    def _encoder_class(folder: str | os.PathLike, subfolder: str, vision: dict[str, Any], hub: dict[str, Any]) -> type:
        """The transformers class of the encoder's config.json model_type, which must be the family trained with."""
        encoder_config, _ = PretrainedConfig.get_config_dict(folder, subfolder=subfolder, **hub)
        model_type = encoder_config.get("model_type")
        if model_type not in ENCODER_TYPES or ENCODER_TYPES[model_type][0] != vision["family"]:
            raise ValueError(
                f"{subfolder}/ holds a {model_type!r} encoder, but the model was trained with a {vision['family']} one"
            )
        return getattr(transformers, ENCODER_TYPES[model_type][1])

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, state_dict=None, **kwargs: Any) -> None:
        # the weights file holds the reference layout only; the encoder goes to its own subfolder
        state_dict = self.checkpoint_state_dict() if state_dict is None else state_dict
        super().save_pretrained(save_directory, *args, state_dict=state_dict, **kwargs)
        subfolder = getattr(self.config, "vision_subfolder", None)
        if subfolder and self.vision_encoder is not None:  # keep the folder complete: encoder + processor config
            target = os.path.join(save_directory, subfolder)
            self.vision_encoder.save_pretrained(target)
            processor = cached_file(
                self.name_or_path,
                "preprocessor_config.json",
                subfolder=subfolder,
                _raise_exceptions_for_missing_entries=False,
            )
            if processor:
                shutil.copyfile(processor, os.path.join(target, "preprocessor_config.json"))

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: torch.nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> torch.nn.Linear:
        return self.lm_head

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        return_dict: bool | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_attention_mask: torch.Tensor | None = None,
        spatial_shapes: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> MoeCausalLMOutputWithPast | tuple:
        """`cache` and `past_key_values` are one argument under its new and old name: pass either, not both.

        `output_attentions` / `output_hidden_states` are taken because wrappers such as peft's PeftModelForCausalLM
        always pass them; asking for either is refused (the model returns logits and the cache only)."""
        if cache is not None and past_key_values is not None:
            raise ValueError("pass the KV cache as `cache` or as `past_key_values`, not both")
        if output_attentions or output_hidden_states:
            raise ValueError("MiniMind-V returns logits and the KV cache, not attentions or hidden states")
        cache = cache if cache is not None else past_key_values
        use_cache = getattr(self.config, "use_cache", True) if use_cache is None else use_cache
        if cache is None and use_cache:
            cache = DynamicCache(config=self.config)
        view = _CacheView(cache) if cache is not None else None
        start = view.length if view is not None else 0
        if inputs_embeds is None:
            # images are spliced in at prefill only; decode steps carry no placeholders
            if start == 0 and image_embeds is None and pixel_values is not None:
                pixels = dict(zip(PIXEL_KEYS, (pixel_values, pixel_attention_mask, spatial_shapes), strict=True))
                image_embeds = self.encode_images(self._encoder_inputs(pixels))
            inputs_embeds = self.embed(input_ids, image_embeds if start == 0 else None)
        key_padding = self._key_padding(attention_mask)
        if key_padding is not None and position_ids is None:
            # left padding: count positions from each row's first real token
            positions = (key_padding.long().cumsum(-1) - 1).clamp(min=0)
            position_ids = positions[:, start : start + inputs_embeds.shape[1]]
        last_only = isinstance(logits_to_keep, int) and logits_to_keep == 1
        logits, aux = self.decode(
            inputs_embeds, position_ids=position_ids, key_padding=key_padding, cache=view, last_only=last_only
        )
        if isinstance(logits_to_keep, torch.Tensor):  # the positions to keep, as transformers' own models take them
            logits = logits[:, logits_to_keep]
        elif logits_to_keep > 1:
            logits = logits[:, -logits_to_keep:]
        loss = shifted_cross_entropy(logits, labels) if labels is not None else None
        output = MoeCausalLMOutputWithPast(loss=loss, aux_loss=aux, logits=logits, **{CACHE_FIELD: cache})
        return output.to_tuple() if return_dict is False else output

    @staticmethod
    def _key_padding(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """The 2-D padding mask, or None where nothing is padded."""
        if attention_mask is None:
            return None
        if attention_mask.dim() != 2:
            raise ValueError(f"MiniMind-V takes a 2-D attention mask [batch, sequence], not {attention_mask.dim()}-D")
        return None if bool(attention_mask.all()) else attention_mask

    def _encoder_inputs(self, pixels: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
        if self.vision_encoder is None:
            raise MmvError(
                "this folder has no vision encoder: convert it with `mmv convert --with-vision DIR`, "
                "or pass image_embeds"
            )
        dtype = next(self.vision_encoder.parameters()).dtype
        return {
            k: v.to(self.device, dtype if v.is_floating_point() else v.dtype)
            for k, v in pixels.items()
            if v is not None
        }
