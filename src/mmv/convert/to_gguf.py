"""`--to gguf`: files llama.cpp runs (llama-cli, llama-server, llama-mtmd-cli, ollama, LM Studio).

DIR/NAME.gguf holds the language model with its tokenizer and chat template; for p16-256 with its encoder,
DIR/mmproj-NAME.gguf holds the image side; DIR/README.md says how to run them and how closely they match mmv.
NAME is the output folder's name. A variant llama.cpp cannot express gets the language model only, and
`image_side_note` is the sentence saying why (printed by the CLI and written into the README).
"""

from __future__ import annotations

from pathlib import Path

from mmv.convert import gguf_card
from mmv.convert.gguf_text import check_expressible, write_language_model
from mmv.convert.gguf_vision import image_side_note, write_mmproj
from mmv.convert.output import staged_dir
from mmv.convert.sources import Source
from mmv.convert.weights import reference_order


def write_gguf(source: Source, out: Path, outtype: str, force: bool) -> list[Path]:
    check_expressible(source.config)  # before anything is staged
    tokenizer = source.tokenizer()
    state = reference_order(source.state_dict, source.config, source.text_only)
    name = out.name
    note = image_side_note(source)
    with_mmproj = not source.text_only and note is None
    with staged_dir(out, force) as work:
        write_language_model(work / f"{name}.gguf", state, source.config, tokenizer, outtype)
        if with_mmproj:
            write_mmproj(work / f"mmproj-{name}.gguf", source, outtype)
        card = gguf_card.card(name, source.config, outtype, source.text_only, with_mmproj, note, str(source.origin))
        (work / "README.md").write_text(card)
        files = sorted(p.relative_to(work) for p in work.rglob("*") if p.is_file())
    return [out / f for f in files]
