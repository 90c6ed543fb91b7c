"""A small byte-level BPE tokenizer trained offline, with the reference's special tokens, ids and chat layout.

REFERENCE.md section 4: `<|endoftext|>`=0 (pad/unk), `<|im_start|>`=1, `<|im_end|>`=2, `<|image_pad|>`=12,
`<think>`=25, `</think>`=26; ids 0-20 are special, 21-35 (tool and think tags, buffers) are ordinary added tokens
so they survive `skip_special_tokens`. The chat template below is written for mmv and renders the same text as the
reference template: ChatML, a think block in every assistant turn, an optional system turn, tool calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|audio_pad|>",
    "<tts_pad>",
    "<tts_text_bos>",
    "<tts_text_eod>",
    "<tts_text_bos_single>",
)
ADDED_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
    *(f"<|buffer{i}|>" for i in range(1, 10)),
)
# The reference's id layout: specials first (0-20), then the ordinary added tokens (21-35).
RESERVED = SPECIAL_TOKENS + ADDED_TOKENS
DEFAULT_VOCAB_SIZE = 1024  # an upper bound: a small corpus runs out of merges before it

TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}'
    "\n</tool_call><|im_end|>\n"
)

# One assistant turn: `<think>\n{reasoning}\n</think>\n\n{content}`, the reasoning taken from `reasoning_content`
# or split off a content that already holds a think block; tool calls follow as JSON inside <tool_call> tags.
# Consecutive tool results share one user turn.
CHAT_TEMPLATE = (
    "{%- set first = messages[0] if messages else {} -%}"
    "{%- if tools -%}"
    "{{- '<|im_start|>system\\n' -}}"
    "{%- if first.role == 'system' -%}{{- first.content + '\\n\\n' -}}{%- endif -%}"
    "{{- " + json.dumps(TOOLS_HEADER) + " -}}"
    "{%- for tool in tools -%}{{- '\\n' + (tool | tojson) -}}{%- endfor -%}"
    "{{- " + json.dumps(TOOLS_FOOTER) + " -}}"
    "{%- elif first.role == 'system' -%}"
    "{{- '<|im_start|>system\\n' + first.content + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set text = message.content if message.content is string else '' -%}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) -%}"
    "{{- '<|im_start|>' + message.role + '\\n' + text + '<|im_end|>\\n' -}}"
    "{%- elif message.role == 'assistant' -%}"
    "{%- set thought = '' -%}"
    "{%- if message.reasoning_content is string -%}"
    "{%- set thought = message.reasoning_content -%}"
    "{%- elif '</think>' in text -%}"
    "{%- set thought = text.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') -%}"
    "{%- set text = text.split('</think>')[-1].lstrip('\\n') -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>assistant\\n<think>\\n' + thought.strip('\\n') + '\\n</think>\\n\\n' + text.lstrip('\\n') -}}"
    "{%- for call in message.tool_calls or [] -%}"
    "{%- if text or not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    "{%- set call = call.function if call.function else call -%}"
    '{{- \'<tool_call>\\n{"name": "\' + call.name + \'", "arguments": \' -}}'
    "{{- call.arguments if call.arguments is string else (call.arguments | tojson) -}}"
    "{{- '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- elif message.role == 'tool' -%}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' + text + '\\n</tool_response>' -}}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{{- '<think>\\n' if open_thinking is defined and open_thinking is true else '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
)


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = DEFAULT_VOCAB_SIZE) -> Path:
    """Train on `texts` and save tokenizer.json + tokenizer_config.json (loadable by `mmv.tokenizer`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(RESERVED),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer = Tokenizer.from_str(_unmark_added(tokenizer.to_str()))
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        add_bos_token=False,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        model_max_length=131072,
    )
    from mmv.fsio import staged_folder

    with staged_folder(out_dir) as staged:
        wrapped.save_pretrained(str(staged))
        _finish_config(staged / "tokenizer_config.json")
    return Path(out_dir)


def _finish_config(path: Path) -> None:
    """The reference layout: the template inside tokenizer_config.json and a class name older transformers know."""
    config = json.loads(path.read_text())
    config.update(tokenizer_class="PreTrainedTokenizerFast", chat_template=CHAT_TEMPLATE)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (path.parent / "chat_template.jinja").unlink(missing_ok=True)


def _unmark_added(serialised: str) -> str:
    """The trainer registers every reserved token as special; the tool/think tags and buffers must not be."""
    data = json.loads(serialised)
    ordinary = set(ADDED_TOKENS)
    for token in data["added_tokens"]:
        if token["content"] in ordinary:
            token["special"] = False
    return json.dumps(data)
