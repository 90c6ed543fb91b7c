"""The short README.md model card written into every exported folder."""

from __future__ import annotations

from mmv import __version__
from mmv.config import VLMConfig

TRANSFORMERS_USAGE = """```python
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

model = AutoModelForCausalLM.from_pretrained("{name}", trust_remote_code=True)
tokenizer = PreTrainedTokenizerFast.from_pretrained("{name}")
prompt = tokenizer.apply_chat_template([{{"role": "user", "content": "Hello!"}}], tokenize=False,
                                       add_generation_prompt=True)
ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
out = model.generate(ids, max_new_tokens=64, do_sample=True, temperature=0.85, top_p=0.85)
print(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
```"""

IMAGE_USAGE = """Images: write `<image>` in the user message, replace each with {tokens} `<|image_pad|>` tokens
after the chat template, and pass the processor output of `vision/`:

```python
from transformers import AutoImageProcessor
from PIL import Image

processor = AutoImageProcessor.from_pretrained("{name}", subfolder="vision")
text = tokenizer.apply_chat_template([{{"role": "user", "content": "<image>\\nDescribe the image."}}],
                                     tokenize=False, add_generation_prompt=True)
ids = tokenizer(text.replace("<image>", "<|image_pad|>" * {tokens}), return_tensors="pt",
                add_special_tokens=False).input_ids
pixels = processor(images=[Image.open("photo.jpg").convert("RGB")], return_tensors="pt")
out = model.generate(ids, **pixels, max_new_tokens=64)
```"""

TILED_USAGE = """

This model was trained on images cut into up to {tiles} tiles plus a global view: each view is one run of {tokens}
placeholders, laid out by the tiling code that ships in `modeling_minimind_v.py`:

```python
import sys

Tiling = sys.modules[type(model).__module__].Tiling  # defined in the model's own modeling file
tiling = Tiling.of(model.config.vlm_config().vision, model.config.image_tiles)
image = Image.open("photo.jpg").convert("RGB")
run = "<|image_pad|>" * {tokens}
ids = tokenizer(text.replace("<image>", tiling.grid(image.size).layout(run)), return_tensors="pt",
                add_special_tokens=False).input_ids
pixels = processor(images=tiling.views(image), return_tensors="pt")
```"""

QWEN3_USAGE = """```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{name}")  # {cls}, no remote code
tokenizer = AutoTokenizer.from_pretrained("{name}")
```"""


def describe(config: VLMConfig) -> str:
    moe = f", MoE {config.num_experts} experts (top-{config.num_experts_per_tok})" if config.use_moe else ""
    return (
        f"hidden {config.hidden_size}, {config.num_hidden_layers} layers, {config.num_attention_heads} heads "
        f"({config.num_key_value_heads} key/value), vocab {config.vocab_size}{moe}"
    )


def transformers_card(name: str, config: VLMConfig, params: int, dtype: str, with_vision: bool, source: str) -> str:
    vision = (
        f"The {config.vision.family} encoder is included under `vision/` (weights and preprocessor config) and "
        "loads with its native transformers class, so the folder is complete on its own.\n\n"
        + IMAGE_USAGE.format(name=name, tokens=config.image_token_len)
        + (
            TILED_USAGE.format(tiles=config.image_tiles, tokens=config.image_token_len)
            if config.image_tiles > 1
            else ""
        )
        if with_vision
        else "The vision encoder is not included (as in the reference's folders): pass `image_embeds` "
        "(projected features), or convert again with `mmv convert --with-vision DIR`."
    )
    return f"""---
library_name: transformers
license: apache-2.0
tags: [minimind-v, vision-language, mmv]
---
# {name}

A MiniMind-V vision-language model ({params / 1e6:.1f}M parameters without the vision encoder; {describe(config)};
vision: {config.vision.label}), stored in {dtype} in the reference MiniMind-V layout. Converted by
mmv {__version__} from `{source}`.

The modeling files (`modeling_minimind_v.py`, `configuration_minimind_v.py`) are generated from mmv's own model code
and need only torch and transformers; they are wired through `auto_map`, so loading needs `trust_remote_code=True`.

{TRANSFORMERS_USAGE.format(name=name)}

{vision}
"""


def qwen3_card(name: str, config: VLMConfig, params: int, dtype: str, cls: str, source: str) -> str:
    return f"""---
library_name: transformers
license: apache-2.0
tags: [minimind, qwen3, mmv]
---
# {name}

The language model of a MiniMind-V checkpoint ({params / 1e6:.1f}M parameters; {describe(config)}) as a native
`{cls}` folder in {dtype}: no remote code, so it runs wherever Qwen3 runs. The vision projector is not included.
Converted by mmv {__version__} from `{source}`.

{QWEN3_USAGE.format(name=name, cls=cls)}
"""
