"""What a run reports: metrics.jsonl lines, a rich progress bar (plain log lines off a terminal), and the optional
wandb / tensorboard sinks (extras, imported only when asked for)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from mmv.console import console, say
from mmv.errors import MmvError


def human_count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def human_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Window:
    """Sums over the steps since the last logged one."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.loss = self.aux = 0.0
        self.samples = self.tokens = self.slots = 0
        self.started = time.perf_counter()

    def add(self, loss: float, aux: float, samples: int, tokens: int, slots: int) -> None:
        self.steps += 1
        self.loss += loss
        self.aux += aux
        self.samples += samples
        self.tokens += tokens
        self.slots += slots

    def record(self, step: int, epoch: int, lr: float, grad_norm: float) -> dict[str, Any]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return {
            "step": step,
            "epoch": epoch,
            "loss": self.loss / max(self.steps, 1),
            "aux_loss": self.aux / max(self.steps, 1),
            "lr": lr,
            "grad_norm": grad_norm,
            "samples_per_s": self.samples / elapsed,
            "tokens_per_s": self.tokens / elapsed,
            "padding_fraction": 1.0 - self.tokens / self.slots if self.slots else 0.0,
        }


def check_extras(wandb: bool, tensorboard: bool) -> None:
    """Refuse a tracker whose package is missing before the run writes anything."""
    import importlib.util

    for wanted, module in ((wandb, "wandb"), (tensorboard, "tensorboard")):
        if wanted and importlib.util.find_spec(module) is None:
            raise MmvError(
                f"logging to {module} needs the {module} package: pip install 'mmv[{module}]'", option=module
            )


class Sinks:
    """metrics.jsonl plus the optional experiment trackers; only rank 0 builds one."""

    def __init__(self, run_dir: Path, run_config: dict[str, Any], wandb: bool, tensorboard: bool) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.wandb = self.tensorboard = None
        if wandb:
            import wandb as wandb_module

            self.wandb = wandb_module.init(project="mmv", name=run_dir.name, config=run_config, dir=str(run_dir))
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        if self.wandb is not None:
            self.wandb.log(numbers, step=record["step"])
        if self.tensorboard is not None:
            for key, value in numbers.items():
                self.tensorboard.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
        if self.tensorboard is not None:
            self.tensorboard.close()


class ProgressView:
    """A rich bar (step, loss, lr, tokens/s, ETA) on a terminal; one plain line per logged step otherwise."""

    def __init__(self, total_steps: int, done: int) -> None:
        self.total = total_steps
        self.bar = None
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self.task = self.bar.add_task("train", total=total_steps, completed=done, info="")
            self.bar.start()

    def update(self, step: int, record: dict[str, Any] | None, logged: bool) -> None:
        if self.bar is not None:
            info = (
                f"loss {record['loss']:.4f}  lr {record['lr']:.2e}  {human_count(record['tokens_per_s'])} tok/s"
                if record
                else None
            )
            self.bar.update(self.task, completed=step, **({"info": info} if info else {}))
        elif logged and record is not None:
            say(
                f"step {step}/{self.total}  epoch {record['epoch']}  loss {record['loss']:.4f}  "
                f"lr {record['lr']:.3e}  grad_norm {record['grad_norm']:.3f}  "
                f"{record['samples_per_s']:.1f} samples/s  {human_count(record['tokens_per_s'])} tok/s  "
                f"padding {record['padding_fraction']:.0%}"
            )

    def note(self, message: str) -> None:
        say(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
