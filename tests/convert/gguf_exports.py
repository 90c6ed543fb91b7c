"""The fixture models exported with `--to gguf`, each (variant, outtype) converted once per test module."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REFERENCE, TOKENIZER_DIR, fixture_base_config


class Exports:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: dict[tuple[str, str | None, str], Path] = {}

    def folder(self, name: str, outtype: str | None = "f32", weights: str = "model.pth") -> Path:
        """The output folder of REFERENCE/name/weights converted with its encoder beside it (outtype None: the
        default)."""
        from mmv.convert import convert

        key = (name, outtype, weights)
        if key not in self.done:
            out = self.root / f"{name}-{outtype}-{Path(weights).stem}"
            convert(
                REFERENCE / name / weights,
                "gguf",
                out,
                outtype=outtype,
                tokenizer=TOKENIZER_DIR,
                with_vision=REFERENCE / name / "vision",
                base=fixture_base_config(name),
            )
            self.done[key] = out
        return self.done[key]

    def model(self, name: str, outtype: str | None = "f32", weights: str = "model.pth") -> Path:
        folder = self.folder(name, outtype, weights)
        return folder / f"{folder.name}.gguf"

    def mmproj(self, name: str, outtype: str = "f32") -> Path:
        folder = self.folder(name, outtype)
        return folder / f"mmproj-{folder.name}.gguf"
