"""The MiniMind tokenizer and chat format (REFERENCE.md section 4).

The tokenizer is read with `PreTrainedTokenizerFast` directly (a data file, no remote code); its jinja chat template
renders conversations, and every `<image>` marker then becomes its own run of image placeholder tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.config import IMAGE_MARKER, IMAGE_TOKEN
from mmv.errors import MmvError
from mmv.layout import TOKENIZER_FILES

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from mmv.vision_input.tiles import TileGrid


def load_tokenizer(folder: str | Path, image_token: str = IMAGE_TOKEN) -> PreTrainedTokenizerFast:
    """The tokenizer in `folder`, which must know `image_token` (a MiniMind2 model's is `@`) and a chat template."""
    from transformers import PreTrainedTokenizerFast

    folder = Path(folder)
    missing = [name for name in TOKENIZER_FILES if not (folder / name).is_file()]
    if missing:
        raise MmvError(f"tokenizer folder {folder} lacks {', '.join(missing)}")
    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
    except Exception as exc:  # tokenizers raises its own exception types for a malformed tokenizer.json
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MmvError(f"cannot read the tokenizer in {folder}: {reason[:200]}") from None
    if tokenizer.convert_tokens_to_ids(image_token) is None or tokenizer.chat_template is None:
        raise MmvError(f"{folder} is not a MiniMind tokenizer: expected the {image_token} token and a chat template")
    return tokenizer


def expand_image_markers(
    text: str,
    tokens_per_image: int = 64,
    grids: Iterable[TileGrid] | None = None,
    image_token: str = IMAGE_TOKEN,
) -> str:
    """Replace each `<image>` with its own run of placeholders (adjacent markers stay separate runs).

    `grids`: the tile grid of each image in marker order (mmv.vision_input.tiles), whose layout of several runs
    replaces its marker; an iterator is consumed one grid per marker, so one can span the turns of a conversation.
    Markers beyond the grids, and every marker without grids, take one run. `image_token`: the placeholder (`@` in
    the MiniMind2-V generations, mmv.generations)."""
    run = image_token * tokens_per_image
    if grids is None:
        return text.replace(IMAGE_MARKER, run)
    remaining = iter(grids)
    pieces = text.split(IMAGE_MARKER)
    out = [pieces[0]]
    for piece in pieces[1:]:
        grid = next(remaining, None)
        out += [grid.layout(run) if grid is not None else run, piece]
    return "".join(out)


def render_chat(
    tokenizer: PreTrainedTokenizerFast,
    messages: list[dict[str, Any]],
    *,
    add_generation_prompt: bool = True,
    thinking: bool = False,
    tokens_per_image: int = 64,
    grids: Iterable[TileGrid] | None = None,
    image_token: str = IMAGE_TOKEN,
) -> str:
    """Chat template applied, image markers expanded (`grids`: each image's tiles, in order): the exact text the
    model sees."""
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt, open_thinking=thinking
    )
    return expand_image_markers(text, tokens_per_image, grids=grids, image_token=image_token)


def encode(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    """Token ids of rendered text; no BOS is added (the template writes <|im_start|> itself)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]
