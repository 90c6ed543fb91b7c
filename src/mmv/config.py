# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""Model configuration: one dataclass for the LLM + vision path, with named presets.

Field names follow the reference `config.json` (REFERENCE.md sections 1-3) so a config round-trips through
transformers folders unchanged. Sizes left as `None` are derived in `__post_init__`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from mmv.errors import MmvError

# The three vision variants (REFERENCE.md section 2): encoder tokens per image and projector layout.
VISION_VARIANTS = ("p32-256", "p16-256", "p16-naflex")
DEFAULT_VARIANT = "p32-256"
IMAGE_TOKEN = "<|image_pad|>"
IMAGE_MARKER = "<image>"
# sizes and counts that must be at least 1 (None ones are derived in __post_init__)
POSITIVE_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "num_experts",
    "num_experts_per_tok",
    "moe_intermediate_size",
    "image_hidden_size",
    "image_token_len",
)
# Rotary tables are built for every position up front ([positions, head_dim] float32, twice): a config may not
# ask for more than this (a million positions of a 96-wide head take 0.8 GB; the reference uses 32768).
MAX_POSITIONS = 1 << 20
# The numbers of a YaRN `rope_scaling` that mmv computes with; each must be positive and finite.
ROPE_SCALING_NUMBERS = ("factor", "beta_fast", "beta_slow", "attention_factor")
_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "dict": "an object",
    "list": "a list",
    "None": "null",
}


def _has_type(value: Any, name: str) -> bool:
    """`name` is one alternative of a field annotation, e.g. int, float, bool, str, dict[...], list[...], None."""
    base = name.split("[", 1)[0]
    if base == "None":
        return value is None
    if base in ("int", "float") and isinstance(value, bool):
        return False  # JSON true is not a number
    expected = {"int": int, "float": (int, float), "bool": bool, "str": str, "dict": dict, "list": list}.get(base)
    return expected is None or isinstance(value, expected)  # other types are not JSON's: nothing to check


def check_field_types(instance: Any) -> None:
    """Refuse a dataclass whose fields hold values of another JSON type than annotated (a hand-edited config)."""
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        alternatives = str(f.type).replace(" ", "").split("|")
        if not any(_has_type(value, name) for name in alternatives):
            wanted = " or ".join(_TYPE_NAMES[name.split("[", 1)[0]] for name in alternatives)
            raise MmvError(f"{f.name} must be {wanted}, got {value!r}")


@dataclass
class VLMConfig:
    # --- language model (MiniMind, Qwen3-shaped) ---
    hidden_size: int = 768
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    num_key_value_heads: int = 4  # grouped-query attention
    head_dim: int | None = None  # default hidden_size // num_attention_heads
    intermediate_size: int | None = None  # default ceil(hidden * pi / 64) * 64
    vocab_size: int = 6400
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1e6
    max_position_embeddings: int = 32768
    # YaRN context extension at inference: {"factor": 16, "original_max_position_embeddings": 2048, ...}
    rope_scaling: dict[str, Any] | None = None
    tie_word_embeddings: bool = True
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0
    # --- mixture of experts (use_moe replaces every dense MLP) ---
    use_moe: bool = False
    num_experts: int = 4
    num_experts_per_tok: int = 1
    moe_intermediate_size: int | None = None  # default intermediate_size
    norm_topk_prob: bool = True
    router_aux_loss_coef: float = 5e-4
    # --- vision path ---
    vision_variant: str = DEFAULT_VARIANT
    image_hidden_size: int = 768  # the encoder's hidden size
    image_token_len: int = 64  # placeholder tokens per image
    image_ids: list[int] = field(default_factory=lambda: [12])

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.vision_variant not in VISION_VARIANTS:
            raise MmvError(
                f"unknown vision variant {self.vision_variant!r}; expected one of {', '.join(VISION_VARIANTS)}"
            )
        for name in POSITIVE_FIELDS:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise MmvError(f"{name} must be at least 1, got {value}")
        if not (0 < self.rms_norm_eps < math.inf and 0 < self.rope_theta < math.inf):  # NaN fails both
            raise MmvError(
                f"rms_norm_eps and rope_theta must be positive and finite, got {self.rms_norm_eps}, {self.rope_theta}"
            )
        if not self.image_ids or not all(type(i) is int and i >= 0 for i in self.image_ids):
            raise MmvError(f"image_ids must be a non-empty list of token ids, got {self.image_ids!r}")
        self._check_token_ids()
        if self.max_position_embeddings > MAX_POSITIONS:
            raise MmvError(
                f"max_position_embeddings {self.max_position_embeddings} is more than mmv supports ({MAX_POSITIONS})"
            )
        if self.rope_scaling is not None:
            self._check_rope_scaling(self.rope_scaling)
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
            if self.head_dim < 1:
                raise MmvError(f"hidden_size {self.hidden_size} is smaller than num_attention_heads")
        if self.intermediate_size is None:
            self.intermediate_size = math.ceil(self.hidden_size * math.pi / 64) * 64
        if self.moe_intermediate_size is None:
            self.moe_intermediate_size = self.intermediate_size
        if self.num_attention_heads % self.num_key_value_heads:
            raise MmvError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.num_experts_per_tok > self.num_experts:
            raise MmvError(f"num_experts_per_tok ({self.num_experts_per_tok}) exceeds num_experts ({self.num_experts})")

    def _check_token_ids(self) -> None:
        named = [("bos_token_id", self.bos_token_id), ("eos_token_id", self.eos_token_id)]
        named += [("pad_token_id", self.pad_token_id), *(("image_ids", i) for i in self.image_ids)]
        for name, token in named:
            if not 0 <= token < self.vocab_size:
                raise MmvError(f"{name} {token} is not a token of the {self.vocab_size}-token vocabulary")

    def _check_rope_scaling(self, scaling: dict[str, Any]) -> None:
        """The YaRN numbers rope.inverse_frequencies divides by and takes logarithms of."""
        for name in ROPE_SCALING_NUMBERS:
            value = scaling.get(name, 1.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise MmvError(f"rope_scaling {name} must be a positive number, got {value!r}")
        original = scaling.get("original_max_position_embeddings", 2048)
        if type(original) is not int or original < 1:
            raise MmvError(
                f"rope_scaling original_max_position_embeddings must be a positive integer, got {original!r}"
            )
        if self.rope_theta <= 1:
            raise MmvError(f"rope_theta must be greater than 1 with rope_scaling, got {self.rope_theta}")

    @property
    def image_token_id(self) -> int:
        return self.image_ids[0]

    @property
    def projector_input_size(self) -> int:
        """Width of one projector input token: merged variants stack 4 encoder tokens."""
        return self.image_hidden_size * (1 if self.vision_variant == "p32-256" else 4)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VLMConfig:
        """Build from a reference or mmv `config.json`, ignoring fields that do not describe the weights."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> VLMConfig:
        return dataclasses.replace(self, **changes)


def _tiny(**overrides: Any) -> VLMConfig:
    base = dict(
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=160,
        image_hidden_size=32,
    )
    base.update(overrides)
    return VLMConfig(**base)


# Named presets; `tiny` matches the fixtures' model size and is what tests and the demo build on.
PRESETS: dict[str, Any] = {
    "minimind-3v": lambda: VLMConfig(),
    "minimind-3v-moe": lambda: VLMConfig(use_moe=True),
    "tiny": _tiny,
    "tiny-moe": lambda: _tiny(use_moe=True, num_experts=4, num_experts_per_tok=1),
}


def preset(name: str, **overrides: Any) -> VLMConfig:
    if name not in PRESETS:
        raise MmvError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    return PRESETS[name]().replace(**overrides) if overrides else PRESETS[name]()
