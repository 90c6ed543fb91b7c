# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""The transformers face of VLMConfig, last section of a folder's `configuration_minimind_v.py`.

mmv itself never imports this module: remote_code.py reads it as text.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from transformers import PretrainedConfig

from mmv.config import VLMConfig

_VLM_FIELDS = {f.name for f in dataclasses.fields(VLMConfig)}


class MiniMindVConfig(PretrainedConfig):
    """The same reference field names as VLMConfig, normalised by VLMConfig itself."""

    model_type = "minimind-v"
    image_token_id = VLMConfig.image_token_id

    def __init__(self, **kwargs: Any) -> None:
        # transformers rewrites a `rope_scaling` argument into its own schema; MiniMind's YaRN dict is kept as given
        scaling = kwargs.pop("rope_scaling", None) or kwargs.pop("rope_parameters", None)
        core = VLMConfig.from_dict({**{k: v for k, v in kwargs.items() if k in _VLM_FIELDS}, "rope_scaling": scaling})
        fields = core.to_dict()
        fields.pop("rope_scaling")
        super().__init__(**{**kwargs, **fields})
        self.rope_parameters = scaling  # what the `rope_scaling` property returns

    def vlm_config(self) -> VLMConfig:
        return VLMConfig.from_dict({name: getattr(self, name) for name in _VLM_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["rope_scaling"] = data.pop("rope_parameters", None)  # the reference's field name, as mmv reads it
        return data
