"""llama.cpp itself, through llama-cpp-python's low-level bindings: what the GGUF tests run the exported files with.

The low-level API is used because the checks need what the high-level `Llama` class does not expose together: a
float32 KV cache with flash attention off, token embeddings passed in directly (mmv's projected image features in
place of the placeholders) and the mmproj's own image embeddings (libmtmd, as llama-mtmd-cli runs it).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp import mtmd_cpp

MTMD_CHUNK_TEXT, MTMD_CHUNK_IMAGE = 0, 1


class LlamaModel:
    """One GGUF model and one context; `feed` calls continue the same sequence until `reset`."""

    def __init__(self, path: Path, *, n_ctx: int = 512, llama_defaults: bool = False) -> None:
        """`llama_defaults`: llama.cpp's F16 KV cache and automatic flash attention instead of an F32 cache without."""
        llama_cpp.llama_backend_init()
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
        assert self.model, f"llama.cpp could not load {path}"
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = n_ctx
        params.n_threads = params.n_threads_batch = 1  # one summation order, and the suite's cores stay free
        if not llama_defaults:
            params.type_k = params.type_v = llama_cpp.GGML_TYPE_F32
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        assert self.ctx, f"llama.cpp could not create a context for {path}"
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_embd = llama_cpp.llama_model_n_embd(self.model)
        self.position = 0

    def close(self) -> None:
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)

    def metadata(self, key: str) -> str:
        buffer = ctypes.create_string_buffer(1 << 16)
        length = llama_cpp.llama_model_meta_val_str(self.model, key.encode(), buffer, len(buffer))
        assert length >= 0, f"no metadata key {key}"
        return buffer.value.decode()

    def tokenize(self, text: str) -> list[int]:
        """As mmv encodes rendered text: nothing added, special tokens recognised."""
        data = text.encode()
        tokens = (llama_cpp.llama_token * (len(data) + 8))()
        count = llama_cpp.llama_tokenize(self.vocab, data, len(data), tokens, len(tokens), False, True)
        assert count >= 0
        return list(tokens[:count])

    def reset(self) -> None:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        self.position = 0

    def feed(self, tokens: list[int] | None = None, embeds: np.ndarray | None = None) -> np.ndarray:
        """Decode token ids or embedding rows [n, n_embd] at the next positions; the last position's logits."""
        count = len(tokens) if tokens is not None else embeds.shape[0]
        batch = llama_cpp.llama_batch_init(count, 0 if tokens is not None else self.n_embd, 1)
        try:
            batch.n_tokens = count
            if tokens is not None:
                for i, token in enumerate(tokens):
                    batch.token[i] = token
            else:
                flat = np.ascontiguousarray(embeds, dtype=np.float32).ravel()
                ctypes.memmove(batch.embd, flat.ctypes.data, flat.nbytes)
            for i in range(count):
                batch.pos[i] = self.position + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = i == count - 1
            assert llama_cpp.llama_decode(self.ctx, batch) == 0
        finally:
            llama_cpp.llama_batch_free(batch)
        self.position += count
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,)).copy()

    def greedy(
        self, parts: list[list[int] | np.ndarray], steps: int, force: list[int] | None = None
    ) -> tuple[list[int], list[np.ndarray]]:
        """Prefill the parts in order (token lists or embedding arrays), then decode `steps` tokens: the argmax of
        each step and its logits. `force`: feed these tokens instead of the argmax (teacher forcing)."""
        self.reset()
        for part in parts:
            logits = self.feed(tokens=part) if isinstance(part, list) else self.feed(embeds=part)
        tokens, all_logits = [], []
        for step in range(steps):
            all_logits.append(logits)
            tokens.append(int(np.argmax(logits)))
            logits = self.feed(tokens=[force[step] if force is not None else tokens[-1]])
        return tokens, all_logits


@contextmanager
def llama_model(path: Path, **options) -> Iterator[LlamaModel]:
    model = LlamaModel(path, **options)
    try:
        yield model
    finally:
        model.close()


@dataclass
class MtmdPrompt:
    """What libmtmd makes of a prompt with one image: text token runs and image embeddings, in order."""

    parts: list[list[int] | np.ndarray]

    @property
    def images(self) -> list[np.ndarray]:
        return [p for p in self.parts if isinstance(p, np.ndarray)]

    @property
    def text(self) -> list[list[int]]:
        return [p for p in self.parts if isinstance(p, list)]


def mtmd_prompt(mmproj: Path, model: LlamaModel, text: str, rgb: np.ndarray) -> MtmdPrompt:
    """Tokenise `text` (holding libmtmd's media marker once) and encode the uint8 RGB image [H, W, 3], as
    llama-mtmd-cli does before it decodes."""
    params = mtmd_cpp.mtmd_context_params_default()
    params.use_gpu, params.n_threads, params.warmup, params.print_timings = False, 1, False, False
    ctx = mtmd_cpp.mtmd_init_from_file(str(mmproj).encode(), model.model, params)
    assert ctx, f"libmtmd could not load {mmproj}"
    pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
    bitmap = mtmd_cpp.mtmd_bitmap_init(
        pixels.shape[1], pixels.shape[0], pixels.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
    )
    chunks = mtmd_cpp.mtmd_input_chunks_init()
    try:
        data = text.encode()
        request = mtmd_cpp.mtmd_input_text(data, len(data), False, True)
        bitmaps = (mtmd_cpp.mtmd_bitmap_p_ctypes * 1)(bitmap)
        assert mtmd_cpp.mtmd_tokenize(ctx, chunks, ctypes.byref(request), bitmaps, 1) == 0
        parts: list[list[int] | np.ndarray] = []
        for index in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
            chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, index)
            kind = mtmd_cpp.mtmd_input_chunk_get_type(chunk)
            if kind == MTMD_CHUNK_TEXT:
                count = ctypes.c_size_t()
                pointer = mtmd_cpp.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                parts.append(list(pointer[: count.value]))
            else:
                assert kind == MTMD_CHUNK_IMAGE
                assert mtmd_cpp.mtmd_encode_chunk(ctx, chunk) == 0
                rows = mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk)
                embd = mtmd_cpp.mtmd_get_output_embd(ctx)
                parts.append(np.ctypeslib.as_array(embd, shape=(rows, model.n_embd)).copy())
        return MtmdPrompt(parts)
    finally:
        mtmd_cpp.mtmd_input_chunks_free(chunks)
        mtmd_cpp.mtmd_bitmap_free(bitmap)
        mtmd_cpp.mtmd_free(ctx)


def media_marker() -> str:
    return mtmd_cpp.mtmd_default_marker().decode()
