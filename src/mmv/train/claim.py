"""Claiming a run directory for a run: where a new run may start, one run at a time, and what a crash left.

A new run starts in a new or empty folder, or over an earlier start of a run that saved nothing; any other folder
(a transformers folder, a user's files) is refused before anything is written. Rank 0 holds the directory's lock
(mmv.train.lock) for the whole run. At the start, the temporaries a killed run left are removed, and a save that
was interrupted between its files is written again from the resumed state (mmv.train.saves).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from mmv.console import say
from mmv.errors import MmvError
from mmv.fsio import LEFTOVER, sweep
from mmv.train.lock import LOCK_FILE, run_lock
from mmv.train.rundir import is_run_dir
from mmv.train.saves import interrupted_save
from mmv.train.state import CHECKPOINT_DIR

if TYPE_CHECKING:
    from mmv.train.distributed import DistContext
    from mmv.train.trainer import Trainer


def foreign_entries(folder: Path) -> list[str]:
    """What a folder holds besides a run's lock and temporaries (nothing: a run may start there)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK_FILE and not LEFTOVER.fullmatch(p.name))


def refuse_foreign(out: Path) -> None:
    """A folder holding anything but an mmv run is never written into."""
    if out.exists() and not out.is_dir():
        raise MmvError(f"{out} is a file, not a run directory")
    present = foreign_entries(out)
    if present and not is_run_dir(out):
        shown = ", ".join(present[:3]) + (f" and {len(present) - 3} more" if len(present) > 3 else "")
        raise MmvError(f"{out} is not an mmv run directory (it holds {shown}); train into a new or empty folder")


def owning(out: Path, ctx: DistContext) -> AbstractContextManager[object]:
    """Rank 0 holds the run directory's lock for the whole run (the other ranks write nothing)."""
    return run_lock(out) if ctx.is_main else nullcontext()


def tidy(run_dir: Path) -> None:
    """Remove what an interrupted run left in `run_dir` (said in one line); an encoder folder a crash moved aside
    is put back (and said so) until the next save replaces it."""
    done = sweep(run_dir).add(sweep(run_dir / CHECKPOINT_DIR))
    for line in done.lines(run_dir):
        say(line)


def repair_save(trainer: Trainer, run_dir: Path, step: int) -> None:
    """A save interrupted between its files: write them again from the resumed state, before training on."""
    record = interrupted_save(run_dir)
    if record is not None:
        trainer.save_model_files()
        say(f"the save of step {record.step} was interrupted; wrote the weights of step {step} again")
