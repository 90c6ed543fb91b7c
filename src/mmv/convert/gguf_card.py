"""The README.md written beside GGUF files: how llama.cpp runs them and how closely they answer like mmv."""

from __future__ import annotations

from mmv import __version__
from mmv.config import VLMConfig
from mmv.convert.model_card import describe

# measured by tests/convert/test_gguf_llama_cpp.py against llama-cpp-python 0.3.36 (llama.cpp 0c1e570)
AGREEMENT = """- Text, `f32`, F32 KV cache, flash attention off (`-ctk f32 -ctv f32 -fa off`): greedy tokens equal
  mmv's for 64 of 64 steps on dense and MoE test models; logits within 1e-4.
- `f16` and `q8_0`: TODO
- llama.cpp's defaults (F16 KV cache, flash attention on where available) round the cache: TODO"""

MMPROJ_DIFFERENCES = """The image side (`mmproj-{name}.gguf`, llama.cpp projector type `lfm2`) has MiniMind's structure, but
llama.cpp runs it with three differences, so image answers are close to mmv's, not equal:
- its projector GELU is the tanh approximation (MiniMind's is exact): TODO figure;
- it resizes images itself (keeping the aspect ratio, bilinear, tiling large images) where MiniMind squashes
  them to 256x256 (bicubic): give it 256x256 images, e.g.
  `python -c "from PIL import Image; Image.open('in.jpg').convert('RGB').resize((256, 256), Image.BICUBIC).save('in.png')"`;
- llama-mtmd-cli and llama-server write `<|image_start|>` and `<|image_end|>` around the image, which MiniMind's
  tokenizer splits into pieces the model never saw in training: TODO figure."""


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
        lines.append(
            f'llama-mtmd-cli -m {name}.gguf{mmproj} -ctk f32 -ctv f32 -fa off --image photo.png -p "Describe the image."'
        )
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
