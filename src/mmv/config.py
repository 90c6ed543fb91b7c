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

# Encoder families by the transformers class that runs them; siglip2 is the NaFlex one (SigLIP2's fixed-size
# checkpoints are SigLIP-architecture models and run as `siglip`).
FAMILIES = ("clip", "siglip", "siglip2", "dinov2")
NAFLEX_FAMILY = "siglip2"
PROJECTORS = ("linear", "mlp", "ln-mlp")  # Linear | Linear-GELU-Linear | LayerNorm-Linear-GELU-Linear
CUSTOM_VARIANT = "custom"  # the vision_variant of a vision config that is none of the reference presets
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
    "image_tiles",
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


@dataclass(frozen=True)
class VisionConfig:
    """The vision path: which encoder, the images it takes, and how the projector turns its patches into tokens.

    The encoder's width is VLMConfig.image_hidden_size (the reference field); tokens per image follow from the rest.
    """

    family: str = "siglip"  # clip | siglip | siglip2 (NaFlex) | dinov2: the transformers class family that runs it
    image_size: int | None = 256  # side of the square images a fixed-size encoder takes; None for NaFlex
    patch_size: int = 32
    max_patches: int | None = None  # NaFlex only: patches per image (the processor's max_num_patches, padded to)
    projector: str = "ln-mlp"  # linear | mlp | ln-mlp (PROJECTORS)
    merge: int = 1  # K: each KxK block of the patch grid becomes one token; NaFlex: K consecutive patches

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.family not in FAMILIES:
            raise MmvError(f"unknown encoder family {self.family!r}; expected one of {', '.join(FAMILIES)}")
        if self.projector not in PROJECTORS:
            raise MmvError(f"unknown projector {self.projector!r}; expected one of {', '.join(PROJECTORS)}")
        for name in ("image_size", "patch_size", "max_patches", "merge"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise MmvError(f"{name} must be at least 1, got {value}")
        if self.naflex != (self.image_size is None) or self.naflex != (self.max_patches is not None):
            raise MmvError(
                "a NaFlex (siglip2) encoder has max_patches and no image_size; every other family the reverse, "
                f"got family {self.family!r}, image_size {self.image_size}, max_patches {self.max_patches}"
            )
        if self.image_size is not None and self.image_size % self.patch_size:
            raise MmvError(f"image_size {self.image_size} is not a whole number of {self.patch_size}-pixel patches")
        if self.naflex and self.max_patches % self.merge:
            raise MmvError(f"merge {self.merge} does not divide the {self.max_patches} patches of a NaFlex image")
        if not self.naflex and self.grid % self.merge:
            raise MmvError(f"merge {self.merge} does not divide the {self.grid}x{self.grid} patch grid")

    @property
    def naflex(self) -> bool:
        return self.family == NAFLEX_FAMILY

    @property
    def grid(self) -> int:
        """Patches per side of a fixed-size image."""
        assert self.image_size is not None, "a NaFlex image has no fixed grid"
        return self.image_size // self.patch_size

    @property
    def patch_tokens(self) -> int:
        """Encoder tokens per image that reach the projector (class and register tokens dropped)."""
        return self.max_patches if self.max_patches is not None else self.grid**2

    @property
    def group(self) -> int:
        """Encoder tokens stacked into one projector input token."""
        return self.merge if self.naflex else self.merge**2

    @property
    def tokens_per_image(self) -> int:
        return self.patch_tokens // self.group

    @property
    def encoder_label(self) -> str:
        """The encoder it needs, e.g. `p32-256` for a reference preset's, else `dinov2 224px/14`."""
        named = variant_of(self)
        if named != CUSTOM_VARIANT:
            return named
        if self.naflex:
            return f"{self.family} NaFlex/{self.patch_size} ({self.max_patches} patches)"
        return f"{self.family} {self.image_size}px/{self.patch_size}"

    @property
    def label(self) -> str:
        merge = (
            "no merge"
            if self.merge == 1
            else f"{self.merge} patches per token"
            if self.naflex
            else f"{self.merge}x{self.merge} merge"
        )
        return f"{self.encoder_label} encoder, {self.projector} projector, {merge}, {self.tokens_per_image} tokens"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VisionConfig:
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise MmvError(f"vision has unknown field {unknown[0]!r}")
        return cls(**data)


# The reference's three vision variants (REFERENCE.md section 2) as named vision configs.
VISION_PRESETS = {
    "p32-256": VisionConfig("siglip", 256, 32, None, "ln-mlp", 1),
    "p16-256": VisionConfig("siglip", 256, 16, None, "ln-mlp", 2),
    "p16-naflex": VisionConfig("siglip2", None, 16, 256, "mlp", 4),
}
VISION_VARIANTS = tuple(VISION_PRESETS)


def variant_of(vision: VisionConfig) -> str:
    """The reference variant a vision config is, else CUSTOM_VARIANT."""
    return next((name for name, preset in VISION_PRESETS.items() if preset == vision), CUSTOM_VARIANT)


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
    qk_norm: bool = True  # per-head RMSNorm on q and k before RoPE (MiniMind2 had none)
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
    norm_topk_prob: bool = True  # the chosen experts' weights renormalised to sum to 1
    # with one expert per token, weight it by its router probability instead (MiniMind2 renormalised only k > 1)
    top1_router_weight: bool = False
    num_shared_experts: int = 0  # dense experts every token also passes through (MiniMind2: 1)
    router_aux_loss_coef: float = 5e-4
    # --- vision path ---
    # a reference variant (VISION_VARIANTS) or "custom"; None: named after `vision`, p32-256 when both are None
    vision_variant: str | None = None
    vision: VisionConfig | None = None  # None: the preset `vision_variant` names
    image_hidden_size: int = 768  # the encoder's hidden size
    image_token_len: int | None = None  # placeholder tokens per image: vision.tokens_per_image
    image_ids: list[int] = field(default_factory=lambda: [12])
    image_special_token: str = IMAGE_TOKEN  # the placeholder's text (MiniMind2: "@", repeated 196 times)
    # at most this many encoder-sized tiles per image, plus a global view (mmv.vision_input.tiles); 1: one view, as
    # the reference; runs record it so that chat, eval and convert cut images as training did
    image_tiles: int = 1

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in POSITIVE_FIELDS:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise MmvError(f"{name} must be at least 1, got {value}")
        self._settle_vision()
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
        if self.num_shared_experts < 0:
            raise MmvError(f"num_shared_experts must be at least 0, got {self.num_shared_experts}")
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

    def _settle_vision(self) -> None:
        """`vision`, `vision_variant` and `image_token_len` made to agree; a given value that disagrees is refused."""
        vision = self.vision
        if isinstance(vision, dict):
            vision = VisionConfig.from_dict(vision)
        elif vision is not None and not isinstance(vision, VisionConfig):
            raise MmvError(f"vision must be an object, got {vision!r}")
        if vision is None:
            name = self.vision_variant or DEFAULT_VARIANT
            if name not in VISION_PRESETS:
                raise MmvError(f"unknown vision variant {name!r}; expected one of {', '.join(VISION_VARIANTS)}")
            vision = VISION_PRESETS[name]
        named = variant_of(vision)
        if self.vision_variant is not None and self.vision_variant != named:
            raise MmvError(f"vision_variant {self.vision_variant!r} does not match the vision config, which is {named}")
        tokens = vision.tokens_per_image
        if self.image_token_len is not None and self.image_token_len != tokens:
            raise MmvError(f"image_token_len {self.image_token_len} does not match the {vision.label}")
        self.vision, self.vision_variant, self.image_token_len = vision, named, tokens

    @property
    def image_token_id(self) -> int:
        return self.image_ids[0]

    @property
    def projector_input_size(self) -> int:
        """Width of one projector input token: a merge stacks `vision.group` encoder tokens."""
        assert self.vision is not None  # settled in __post_init__
        return self.image_hidden_size * self.vision.group

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VLMConfig:
        """Build from a reference or mmv `config.json`, ignoring fields that do not describe the weights."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def overlay(self, data: dict[str, Any]) -> VLMConfig:
        """The fields a config.json records (`data`) laid over this config; its vision fields replace these whole."""
        values = {**self.to_dict(), "image_token_len": None}
        if records_vision(data):
            values.update(vision=None, vision_variant=None)
        return VLMConfig.from_dict({**values, **data})

    def replace(self, **changes: Any) -> VLMConfig:
        """A copy with `changes`; a new `vision` or `vision_variant` takes the other and the token count with it."""
        if "vision_variant" in changes and "vision" not in changes:
            changes["vision"] = None
        elif "vision" in changes and "vision_variant" not in changes:
            changes["vision_variant"] = None
        changes.setdefault("image_token_len", None)
        return dataclasses.replace(self, **changes)


def records_vision(data: dict[str, Any]) -> bool:
    """Whether a config.json says which vision path its model has (mmv's do; the reference's record no encoder)."""
    return "vision" in data or "vision_variant" in data


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
