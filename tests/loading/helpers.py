"""Run directories and transformers folders made from the fixtures, the way mmv writes them (no training)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from tests.conftest import REFERENCE, TOKENIZER_DIR, fixture_base_config


def make_run_dir(folder: Path, fixture: str = "p32-moe", tokenizer: Path = TOKENIZER_DIR) -> Path:
    """An sft run directory in the trainer's layout: config.json (rundir.run_config) and the weights beside it."""
    from mmv.checkpoint import read_checkpoint
    from mmv.data.loader import DataSpec
    from mmv.train.config import stage_config
    from mmv.train.rundir import run_config, write_json

    folder.mkdir(parents=True)
    shutil.copy(REFERENCE / fixture / "model_fp16.pth", folder / "sft_vlm_64.pth")
    vision = REFERENCE / fixture / "vision"
    model = read_checkpoint(folder / "sft_vlm_64.pth", 32, fixture_base_config(fixture)).config
    spec = DataSpec(files=[str(folder / "data.parquet")], tokenizer_dir=str(tokenizer), vision_dir=str(vision))
    config = run_config(
        "sft",
        model.to_dict(),
        stage_config("sft", init="none").to_dict(),
        dataclasses.asdict(spec),
        str(vision),
        str(tokenizer),
        "sft_vlm_64.pth",
    )
    write_json(folder / "config.json", config)
    return folder


def folder_without_tokenizer(folder: Path) -> Path:
    """The p32 transformers folder of the reference converter, its tokenizer files left out."""
    shutil.copytree(REFERENCE / "p32" / "hf-upstream", folder, ignore=shutil.ignore_patterns("tokenizer*", "*.jinja"))
    return folder


def folder_with_positions(folder: Path, positions: int) -> Path:
    """The p32 transformers folder of the reference converter (tokenizer included), its config asking for only
    `positions` positions: a conversation fills them in a few dozen tokens."""
    import json

    shutil.copytree(REFERENCE / "p32" / "hf-upstream", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": positions}))
    return folder
