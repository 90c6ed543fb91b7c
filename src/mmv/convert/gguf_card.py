"""The README.md written beside GGUF files: how llama.cpp runs them and how closely they answer like mmv."""

from __future__ import annotations

from mmv import __version__
from mmv.config import VLMConfig
from mmv.convert.model_card import describe

# each llama.cpp figure below is asserted as a bound by tests/convert/test_gguf_llama_cpp.py
AGREEMENT = """Measured against mmv with llama.cpp 0c1e570 (llama-cpp-python 0.3.36) on small random test models, 64
greedy steps (equal steps before the first different token; largest logit error):

| file | KV cache | dense | MoE (4 experts, top-2) |
|---|---|---|---|
| `f32` | F32, flash attention off | 64 of 64, 5.7e-6 | 64 of 64, 1.1e-5 |
| `f32` | llama.cpp default (F16, flash attention auto) | 64 of 64, 0.020 | 38 of 64, 0.023 |
| `f16` | F32, flash attention off | 64 of 64, 0.011 | 43 of 64, 2.19 |
| `q8_0` | F32, flash attention off | 10 of 64, 0.30 | 3 of 64, 5.6 |

`f32` with an F32 cache is exact (image prompts too, with mmv's image features passed as embeddings). `f16`
and `q8_0` round the activations inside every matrix product as well as the weights (a float16 checkpoint's
`f16` file: 64 of 64, 0.0088). Random weights keep their top logits close together, the hardest case for rounding;
a mixture of experts also flips near-tied router choices (mmv itself, on the weights rounded to float16, is
2.19 off)."""

MMPROJ_DIFFERENCES = """The image side (`mmproj-{name}.gguf`, llama.cpp projector type `lfm2`) has MiniMind's
structure, but llama.cpp runs it with three differences:
- its projector GELU is the tanh approximation (MiniMind's is exact): on a 256x256 photo the image embeddings
  are within 3.0e-4 of mmv's (4.6e-4 for the f16 mmproj), and in MiniMind's own prompt the answer is greedy-equal
  for 64 of 64 steps;
- it resizes images itself (keeping the aspect ratio, bilinear, up to 256 tokens: a 640x640 photo becomes 256
  image tokens where MiniMind uses 64) where MiniMind squashes them to 256x256 (bicubic). Give it 256x256 images,
  which it leaves as they are (with Pillow: `Image.open(path).convert("RGB").resize((256, 256), Image.BICUBIC)`);
- llama-mtmd-cli and llama-server write `<|image_start|>` and `<|image_end|>` around the image, text MiniMind's
  tokenizer splits into pieces (9 tokens for the first) the model never saw in training: with them the greedy
  answer equalled mmv's for 18 of 64 steps. Through llama-cpp-python's low-level API the image embeddings can be
  placed in MiniMind's own prompt instead."""


def card(
    name: str,
    config: VLMConfig,
    outtype: str,
    text_only: bool,
    with_mmproj: bool,
    note: str | None,
    source: str,
) -> str:
    arch = "qwen3moe" if config.use_moe else "qwen3"
    files = [f"- `{name}.gguf`: the language model (llama.cpp architecture `{arch}`), tokenizer and chat template."]
    if with_mmproj:
        files.append(f"- `mmproj-{name}.gguf`: the SigLIP encoder and projector (llama.cpp projector type `lfm2`).")
    if note:
        files.append(f"- No mmproj file: {note}.")
    mmproj = f" --mmproj mmproj-{name}.gguf" if with_mmproj else ""
    lines = [
        f"# {name}",
        "",
        f"MiniMind{'' if text_only else '-V'} ({describe(config)}) for llama.cpp, weights `{outtype}`, "
        f"converted by mmv {__version__} from `{source}`.",
        "",
        *files,
        "",
        "## Run it",
        "",
        "```bash",
        f"llama-cli -m {name}.gguf -ctk f32 -ctv f32 -fa off --temp 0.85 --top-p 0.85 --top-k 50",
        f"llama-server -m {name}.gguf{mmproj} -ctk f32 -ctv f32 -fa off --port 8080  # OpenAI-compatible API",
    ]
    if with_mmproj:
        lines.append(f"llama-mtmd-cli -m {name}.gguf{mmproj} -ctk f32 -ctv f32 -fa off --image photo.png \\")
        lines.append('    -p "Describe the image."')
    lines += [
        "```",
        "",
        "`-ctk f32 -ctv f32 -fa off` keep the KV cache in float32 as mmv does; without them llama.cpp answers "
        "faster with a rounded cache.",
        "",
        "## How closely it answers like mmv",
        "",
        AGREEMENT,
    ]
    if with_mmproj:
        lines += ["", MMPROJ_DIFFERENCES.format(name=name)]
    return "\n".join(lines) + "\n"
