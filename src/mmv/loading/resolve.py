"""From what a user typed to the weights it names and what its run directory records.

A model reference is a weights file (`.pth` / `.pt` / `.safetensors` / `.bin`), a run directory or a weights file
inside one, a transformers folder, a folder holding one checkpoint, or a name in the download cache. `--init`
also takes `llm` and `pretrain` (files inside cached names) and `none` (a fresh model). Cached names that are
needed but absent are reported together (`NotDownloaded`), so one `mmv download` line fetches them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmv.adapters.spec import CONFIG_NAME as ADAPTER_CONFIG
from mmv.config import VisionConfig, VLMConfig, records_vision
from mmv.errors import MmvError
from mmv.hub.cache import find
from mmv.layout import CHECKPOINT_SUFFIXES, CONFIG_FILE, reading

# --init names -> (cache name, file inside it)
INIT_NAMES = {"llm": ("llm", "llm_768.pth"), "pretrain": ("minimind-3v-pytorch", "pretrain_vlm_768.pth")}


@dataclass(frozen=True)
class Missing:
    """A cached name that is needed but not downloaded."""

    name: str  # what `mmv download` takes
    what: str  # a folder looked for ("tokenizer"), or for a model the whole clause saying what is absent
    option: str | None = None  # the setting that names a local copy instead (see MmvError)
    folder: bool = True  # looked for beside the model and in the cache (an encoder or a tokenizer)


class NotDownloaded(MmvError):
    """Every missing download in one sentence with one `mmv download A B` line."""

    def __init__(self, missing: list[Missing], beside: bool = True) -> None:
        self.missing = missing
        clauses = [m.what for m in missing if not m.folder]
        folders = [m.what for m in missing if m.folder]
        if folders:
            where = "beside the model or in the cache" if beside else "in the cache"
            clauses.append("no " + " and no ".join(folders) + f" found {where}")
        names = " ".join(dict.fromkeys(m.name for m in missing))
        options = tuple(dict.fromkeys(m.option for m in missing if m.option))
        super().__init__(f"{', and '.join(clauses)}: run `mmv download {names}`", option=options)


@dataclass(frozen=True)
class RunRecord:
    """The mmv run directory a weights file belongs to, and its config.json (mmv.train.rundir)."""

    folder: Path
    config: dict[str, Any]


@dataclass
class ModelSources:
    weights: Path  # a weights file or a transformers folder
    run: RunRecord | None = None  # the run directory the weights belong to (a LoRA run: the one that adapted them)
    adapters: tuple[Path, ...] = ()  # adapter folders merged over the weights, in order (mmv.adapters)

    @property
    def lora_run(self) -> bool:
        """The weights are the base of `run`, a LoRA run, whose own result is its adapter."""
        return self.run is not None and bool(self.adapters) and self.adapters[-1].parent == self.run.folder

    @property
    def home(self) -> Path:
        """The folder the model lives in: where an encoder (`vision/`) or tokenizer beside it is looked for."""
        if self.lora_run:
            assert self.run is not None
            return self.run.folder
        return self.weights if self.weights.is_dir() else self.weights.parent

    @property
    def reference(self) -> Path:
        """What names this model again (a run records it as --init): a LoRA run is its folder, not its base."""
        return self.home if self.lora_run else self.weights

    @property
    def records_config(self) -> bool:
        """A run directory or transformers folder records what tensors cannot tell (experts per token, RoPE)."""
        return self.run is not None or self.weights.is_dir()

    def recorded_folder(self, key: str) -> Path | None:
        """The encoder (`vision_dir`) or tokenizer (`tokenizer_dir`) folder the run trained with."""
        value = self.run.config.get(key) if self.run else None
        return Path(value) if value else None

    def recorded_model(self, base: VLMConfig) -> VLMConfig:
        """`base` with what the run recorded about its model laid over it."""
        if self.run is None:
            return base
        with reading(self.run.folder / CONFIG_FILE):
            return base.overlay(self.run.config["model"])

    def recorded_frames(self) -> int | None:
        """The frames per video the run trained with (its data spec); None without a run or a recorded value."""
        return self.run.config.get("data", {}).get("frames") if self.run else None

    def recorded_vision(self, base: VLMConfig) -> VisionConfig | None:
        """The vision config the run recorded; None without a run, or for a run that predates recording it."""
        if self.run is None or not records_vision(self.run.config["model"]):
            return None
        return self.recorded_model(base).vision


def run_of(folder: Path) -> RunRecord | None:
    """The run `folder` holds, if it is a run directory; refused when the files of its last save may disagree (an
    interrupted save: the weights and `vision/` of different steps), rather than silently mixed."""
    from mmv.train.rundir import is_run_dir, read_run_config
    from mmv.train.saves import check_saved

    if not is_run_dir(folder):
        return None
    config = read_run_config(folder)
    check_saved(folder, config["stage"])
    return RunRecord(folder, config)


def looks_like_path(ref: str) -> bool:
    return any(sep in ref for sep in ("/", "\\")) or Path(ref).suffix in CHECKPOINT_SUFFIXES


def is_download_name(name: str) -> bool:
    from mmv.hub.registry import lookup

    try:
        lookup(name)
    except MmvError:
        return False
    return True


def resolve_model(ref: str | Path) -> ModelSources:
    """The weights `ref` names and the run they belong to; a cached name that is absent raises NotDownloaded."""
    path = Path(ref).expanduser()
    if path.is_file():
        return ModelSources(path, run_of(path.parent))
    if path.is_dir():
        run = run_of(path)
        if run is not None:
            return run_sources(run)
        if (path / CONFIG_FILE).is_file():
            return ModelSources(path)  # a transformers folder (read_checkpoint checks its config)
        if (path / ADAPTER_CONFIG).is_file():
            raise MmvError(f"{path} is an adapter, not a model: name its base model and apply it", option="adapter")
        return ModelSources(single_checkpoint(path))
    if looks_like_path(str(ref)):
        raise MmvError(f"model {ref} does not exist")
    found = find(str(ref))
    if found is not None:
        return resolve_model(found)
    if not is_download_name(str(ref)):
        raise MmvError(f"model {ref!r} is neither a file, a folder nor a download name (`mmv download --list`)")
    raise NotDownloaded([Missing(str(ref), f"the model {ref} is not downloaded", folder=False)])


def run_sources(run: RunRecord) -> ModelSources:
    """A run's result: its weights file, or for a LoRA run its adapter over the base it trained from."""
    weights = run.folder / run.config["weights"]
    if run.config["train"].get("lora") is None:
        return ModelSources(weights, run)
    init = run.config["train"].get("init")
    try:
        base = resolve_init(init) if isinstance(init, str) else None
    except MmvError as exc:
        raise MmvError(f"{run.folder} adapts {init}, which cannot be loaded: {exc}", option=exc.options) from None
    if base is None:
        raise MmvError(f"{run.folder} is a LoRA run that records no base model (init {init!r})")
    return ModelSources(base.weights, run, (*base.adapters, weights))


def resolve_init(init: str) -> ModelSources | None:
    """What training starts from: `none` (None: a fresh model), `llm`, `pretrain`, or any model reference."""
    if init == "none":
        return None
    if init not in INIT_NAMES:
        return resolve_model(init)
    name, file = INIT_NAMES[init]
    folder = find(name)
    if folder is None:
        raise NotDownloaded([Missing(name, f"the {init} weights ({file}) are not downloaded", "init", folder=False)])
    if not (folder / file).is_file():
        raise MmvError(f"the cached {name} has no {file}; run `mmv download {name}` again")
    return resolve_model(folder / file)


def single_checkpoint(folder: Path) -> Path:
    """A folder without config.json (a cached `llm` or `*-pytorch` name) must hold exactly one checkpoint file."""
    files = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise MmvError(
            f"{folder} has no {CONFIG_FILE} and holds {len(files)} checkpoint files ({found}); "
            "expected a transformers folder, a run directory or one checkpoint: name the file"
        )
    return files[0]
