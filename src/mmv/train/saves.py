"""Which files of a run directory were written together: RUN_DIR/save.json.

A save replaces several files one by one (the `.pth`, the `.safetensors`, the trained encoder `vision/`), so a
kill between two of them would leave parts of different steps. save.json says which step the parts belong to and
whether their save finished: it is marked unfinished (atomically) before the first part is replaced and finished
after the last, so a reader that finds it unfinished knows the parts may disagree and refuses them
(`check_saved`); `mmv sft|pretrain --resume` writes the parts again from the last resume checkpoint.

A run without save.json (one of an older mmv, or one that saved nothing yet) is read as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mmv.errors import MmvError
from mmv.fsio import atomic_write_text
from mmv.layout import read_json_object

SAVE_FILE = "save.json"
FORMAT = "mmv-save-1"


@dataclass(frozen=True)
class SaveRecord:
    step: int  # the optimizer step the parts hold
    parts: tuple[str, ...]  # names inside the run directory: files or folders
    finished: bool


def write_record(run_dir: Path, record: SaveRecord) -> None:
    data = {"format": FORMAT, "step": record.step, "parts": list(record.parts), "finished": record.finished}
    atomic_write_text(run_dir / SAVE_FILE, json.dumps(data, indent=2) + "\n")


def read_record(run_dir: Path) -> SaveRecord | None:
    """The run's save record; None when it has none. A record that is not one is an error naming the file."""
    path = run_dir / SAVE_FILE
    if not path.exists():
        return None
    data = read_json_object(path)
    step, parts, finished = data.get("step"), data.get("parts"), data.get("finished")
    if (
        data.get("format") != FORMAT
        or not isinstance(step, int)
        or not isinstance(parts, list)
        or not all(isinstance(p, str) for p in parts)
        or not isinstance(finished, bool)
    ):
        raise MmvError(f"{path} is not an mmv save record (expected format {FORMAT} with step, parts, finished)")
    return SaveRecord(step, tuple(parts), finished)


def interrupted_save(run_dir: Path) -> SaveRecord | None:
    """The record of a save that did not finish, if the last one did not."""
    record = read_record(run_dir)
    return record if record is not None and not record.finished else None


def check_saved(run_dir: Path, stage: str) -> None:
    """Refuse a run directory whose parts may be of different steps, or lack one its last save wrote."""
    from mmv.train.lock import holder

    record = read_record(run_dir)
    if record is None:
        return
    if not record.finished:
        owner = holder(run_dir)
        if owner is not None:
            raise MmvError(
                f"{run_dir} is being saved by the training in process {owner} (step {record.step}); "
                "try again when the save is done"
            )
        raise MmvError(
            f"{run_dir}: its save of step {record.step} was interrupted, so its weights and encoder may be of "
            f"different steps; `mmv {stage} --out {run_dir} --resume` writes them again"
        )
    missing = [part for part in record.parts if not (run_dir / part).exists()]
    if missing:
        raise MmvError(f"{run_dir} lacks {', '.join(missing)}, which its save of step {record.step} wrote")
