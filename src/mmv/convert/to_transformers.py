"""`--to transformers`: a folder in the reference layout that transformers loads with mmv's generated code.

config.json (reference field names, `model_type: minimind-v`, `auto_map`), model.safetensors (a tied lm_head
stored once), tokenizer with chat template, generation_config.json, the two generated modeling files, a model
card, and with an encoder the `vision/` subfolder (a plain SigLIP folder: config, weights, preprocessor config).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from mmv import __version__
from mmv.adapters.spec import ADAPTER_DIR
from mmv.adapters.spec import CONFIG_NAME as ADAPTER_CONFIG
from mmv.adapters.spec import WEIGHTS_NAME as ADAPTER_WEIGHTS
from mmv.convert import model_card, remote_code
from mmv.convert.output import staged_dir
from mmv.convert.sources import Source
from mmv.convert.weights import cast, dtype_name, reference_order, stored_once
from mmv.errors import MmvError
from mmv.layout import CONFIG_FILE, ENCODER_FILES, VISION_SUBFOLDER, WEIGHT_FILES


def write_transformers(source: Source, out: Path, dtype: torch.dtype, force: bool) -> list[Path]:
    from safetensors.torch import save_file

    if source.text_only and source.adapter is not None:
        raise MmvError(
            f"the base of {source.origin} is a text-only LLM, which a transformers folder cannot hold; write the "
            "merged model instead"
        )
    if source.text_only:
        raise MmvError(
            f"{source.origin} is a text-only LLM without a vision projector; a transformers folder "
            "needs a VLM checkpoint (convert to qwen3 for the language model alone)",
            option="to",
        )
    tokenizer = source.tokenizer()
    state = stored_once(reference_order(cast(source.state_dict, dtype), source.config, False), source.config)
    params = sum(v.numel() for v in state.values())
    with staged_dir(out, force) as work:
        save_file(state, str(work / WEIGHT_FILES[0]), metadata={"format": "pt"})
        write_json(work / CONFIG_FILE, folder_config(source, dtype))
        write_json(work / "generation_config.json", generation_config(source))
        tokenizer.save_pretrained(str(work))
        for name, text in remote_code.modeling_sources(__version__).items():
            (work / name).write_text(text)
        if source.vision_dir is not None:
            copy_encoder(source.vision_dir, work / VISION_SUBFOLDER)
        if source.adapter is not None:
            copy_adapter(source.adapter, work / ADAPTER_DIR)
        card = model_card.transformers_card(
            out.name, source.config, params, dtype_name(dtype), source.vision_dir is not None, str(source.origin)
        )
        (work / "README.md").write_text(card)
        files = sorted(p.relative_to(work) for p in work.rglob("*") if p.is_file())
    return [out / f for f in files]


def folder_config(source: Source, dtype: torch.dtype) -> dict[str, Any]:
    """The reference's config.json fields (its own loader reads `inference_rope_scaling` and friends), plus auto_map."""
    config = source.config
    data: dict[str, Any] = {
        "architectures": [remote_code.MODEL_CLASS],
        "auto_map": remote_code.AUTO_MAP,
        "model_type": "minimind-v",
        **config.to_dict(),
        "hidden_act": "silu",
        "dropout": 0.0,
        "flash_attn": True,
        "inference_rope_scaling": config.rope_scaling is not None,
        "dtype": dtype_name(dtype),
        "mmv_version": __version__,
        "transformers_version": transformers_version(),
    }
    if source.vision_dir is not None:
        data["vision_subfolder"] = VISION_SUBFOLDER
    return data


def generation_config(source: Source) -> dict[str, Any]:
    c = source.config
    return {
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id,
        "pad_token_id": c.pad_token_id,
        "transformers_version": transformers_version(),
    }


def transformers_version() -> str:
    import transformers

    return transformers.__version__


def copy_encoder(vision_dir: Path, target: Path) -> None:
    """The encoder folder as it is (dtype untouched: the encoder stays frozen); only its known files travel."""
    missing = [name for name in ENCODER_FILES if not (vision_dir / name).is_file()]
    if missing:
        raise MmvError(f"vision encoder folder {vision_dir} lacks {', '.join(missing)}")
    target.mkdir()
    for name in ENCODER_FILES:
        shutil.copyfile(vision_dir / name, target / name)


def copy_adapter(adapter_dir: Path, target: Path) -> None:
    """The adapter folder as it is: `PeftModel.from_pretrained(model, OUT/adapter)` applies it to the base."""
    target.mkdir()
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        shutil.copyfile(adapter_dir / name, target / name)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
