"""A run's save is the weights, the .safetensors and the trained encoder of one step: a crash at any of its
renames never lets a reader mix two steps (it refuses in one line), and --resume writes the save again."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from mmv.data.loader import DataSpec, TrainData
from mmv.errors import MmvError
from mmv.loading import load_model
from mmv.train.build import build_model, training_inputs
from mmv.train.config import stage_config
from mmv.train.distributed import DistContext
from mmv.train.run import RunRequest, run
from mmv.train.rundir import run_config, write_json
from mmv.train.saves import SAVE_FILE, read_record
from mmv.train.state import checkpoint_paths, load_resume
from mmv.train.trainer import Trainer
from tests.conftest import TOKENIZER_DIR, one_thread
from tests.faults import Crash, crash_at_rename, gone, mmv_killed_at_rename
from tests.train.helpers import VISION_DIR, VLM_PTH, base_args, caption_row, env, mmv, write_parquet

CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
NAME = "sft_vlm_64.pth"
PARTS = [NAME, "sft_vlm_64.safetensors", "vision"]


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_parquet(tmp_path_factory.mktemp("data") / "train.parquet", [caption_row(i) for i in range(8)])


def trainer_in(run_dir, data) -> Trainer:
    """A --train-vision trainer writing into `run_dir`, whose config.json is the one `mmv sft` writes."""
    cfg = stage_config("sft", init=str(VLM_PTH), freeze="projector", train_vision=True, batch_size=4, keep=5)
    model = build_model(training_inputs(cfg.init, str(VISION_DIR), str(TOKENIZER_DIR), cfg), cfg)
    spec = DataSpec(files=[str(data)], tokenizer_dir=str(TOKENIZER_DIR), vision_dir=str(VISION_DIR))
    run_dir.mkdir()
    spec_dict, vision, tokenizer = dataclasses.asdict(spec), str(VISION_DIR), str(TOKENIZER_DIR)
    config = run_config("sft", model.config.to_dict(), cfg.to_dict(), spec_dict, vision, tokenizer, NAME)
    write_json(run_dir / "config.json", config)
    return Trainer(cfg, model, TrainData(spec), CPU, run_dir, NAME, str(VISION_DIR))


def next_step(trainer: Trainer) -> None:
    """As if one more step were trained: every trainable tensor (projector and encoder) moves."""
    with torch.no_grad():
        for param in trainer.params:
            param.add_(0.5)
    trainer.progress.step += 1


def steps_on_disk(run_dir) -> dict[str, int | None]:
    """The step each part holds: the resume checkpoint whose trained tensors it matches (None: none, or absent)."""
    states = {(s := load_resume(p)).progress.step: s.model for p in checkpoint_paths(run_dir)}
    projector = [k for k in next(iter(states.values())) if k.startswith("vision_proj.")]
    encoder = [k for k in next(iter(states.values())) if k.startswith("vision_encoder.")]

    def step_of(tensors, keys, name, dtype):
        for step, model in states.items():
            if all(torch.equal(tensors[name(k)], model[k].to(dtype)) for k in keys):
                return step
        return None

    found: dict[str, int | None] = dict.fromkeys(PARTS)
    if (run_dir / NAME).exists():
        found[NAME] = step_of(torch.load(run_dir / NAME, weights_only=True), projector, str, torch.float16)
    if (run_dir / PARTS[1]).exists():
        found[PARTS[1]] = step_of(load_file(str(run_dir / PARTS[1])), projector, str, torch.float16)
    if (run_dir / "vision").exists():
        vision = load_file(str(run_dir / "vision" / "model.safetensors"))
        found["vision"] = step_of(vision, encoder, lambda k: k.split(".", 1)[1], torch.float32)
    return found


def reader_sees(run_dir) -> int | str:
    """What `mmv chat` / `load_model` makes of the run: the one step every part it reads holds, or its refusal."""
    try:
        loaded = load_model(run_dir)
    except MmvError as exc:
        assert "\n" not in str(exc)
        return str(exc)
    steps = steps_on_disk(run_dir)
    assert loaded.vision_dir == run_dir / "vision"  # the trained encoder, never the one it started from
    assert len(set(steps.values())) == 1 and None not in steps.values(), steps
    return steps[NAME]


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_a_crash_at_any_rename_of_a_save_never_mixes_steps(tmp_path, data, monkeypatch, capsys, exchange):
    run_dir = tmp_path / "run"
    trainer = trainer_in(run_dir, data)
    next_step(trainer)
    trainer.save()
    assert reader_sees(run_dir) == 1
    snapshot = shutil.copytree(run_dir, tmp_path / "after-step-1")
    next_step(trainer)
    with crash_at_rename(monkeypatch, None, exchange) as renames:
        trainer.save()
    assert reader_sees(run_dir) == 2 and [r.rsplit("/", 1)[-1] for r in renames][:2] == ["step-00000002.pt", SAVE_FILE]
    outcomes = []
    for n in range(1, len(renames) + 1):
        shutil.rmtree(run_dir)
        shutil.copytree(snapshot, run_dir)
        trainer.saved_step = None
        with pytest.raises(Crash), crash_at_rename(monkeypatch, n, exchange):
            trainer.save()
        seen = reader_sees(run_dir)
        outcomes.append(seen)
        if isinstance(seen, str):
            assert seen == (
                f"{run_dir}: its save of step 2 was interrupted, so its weights and encoder may be of different "
                f"steps; `mmv sft --out {run_dir} --resume` writes them again"
            )
        else:
            assert seen == 1 and n <= 2  # killed before the save began replacing parts: the last save, whole
    assert outcomes[:2] == [1, 1] and all(isinstance(o, str) for o in outcomes[2:])
    if not exchange:  # killed between the encoder's two renames: vision/ is missing until the next start
        crash_between_the_encoder_renames(trainer, snapshot, renames.index(str(run_dir / "vision")) + 1, monkeypatch)
        resume_puts_back_and_rewrites(run_dir, monkeypatch, capsys)


def crash_between_the_encoder_renames(trainer, snapshot, n, monkeypatch) -> None:
    shutil.rmtree(trainer.run_dir)
    shutil.copytree(snapshot, trainer.run_dir)
    trainer.saved_step = None
    with pytest.raises(Crash), crash_at_rename(monkeypatch, n, exchange=False):
        trainer.save()
    assert not (trainer.run_dir / "vision").exists()
    assert "was interrupted" in reader_sees(trainer.run_dir)  # not the encoder the run started from


def resume_puts_back_and_rewrites(run_dir, monkeypatch, capsys) -> None:
    gone(monkeypatch)  # the crashed process is gone: what it left is the next start's to clean
    capsys.readouterr()
    summary = run(RunRequest(cfg=stage_config("sft"), out=run_dir, resume=True), "sft")
    err = capsys.readouterr().err
    assert err.count("put back") == 1 and err.count("the save of step 2 was interrupted") == 1
    assert reader_sees(run_dir) == summary["step"] > 2
    assert not [p for p in run_dir.rglob(".*")]


def test_a_save_record_naming_a_missing_part_is_refused(tmp_path, data):
    """The trained encoder deleted (or lost): never silently the untrained one the run started from."""
    run_dir = tmp_path / "run"
    trainer = trainer_in(run_dir, data)
    next_step(trainer)
    trainer.save()
    shutil.rmtree(run_dir / "vision")
    with pytest.raises(MmvError, match=r"lacks vision, which its save of step 1 wrote"):
        load_model(run_dir)
    (run_dir / SAVE_FILE).unlink()  # a run of an older mmv has no record: its config still tells
    with pytest.raises(MmvError, match=r"trained its encoder, but .*vision is missing"):
        load_model(run_dir)
    (run_dir / SAVE_FILE).write_text(json.dumps({"format": "mmv-save-1", "step": "2"}))
    with pytest.raises(MmvError, match="is not an mmv save record"):
        read_record(run_dir)


def sft(data, out) -> list[str]:
    args = [*base_args(data, out), "--init", str(VLM_PTH), "--freeze", "projector", "--train-vision"]
    return [*args, "--batch-size", "4", "--max-steps", "2", "--save-every", "1", "--keep", "5"]


@pytest.mark.slow
def test_killed_between_the_pth_and_the_safetensors_then_resume_writes_the_save_again(tmp_path, data, monkeypatch):
    """A real SIGKILL of `mmv sft` in its last save, after the .pth and before the .safetensors: a reader refuses,
    the next --resume says so in one line and writes the step's files again."""
    run_dir = tmp_path / "run"
    # the 3rd rename of the 2nd save: config.json, then 6 per save (checkpoint, record, .pth, .safetensors,
    # vision/, record)
    killed = mmv_killed_at_rename(sft(data, run_dir), 1 + 6 + 4, env=env(), timeout=240)
    assert killed.returncode == -9, killed.stderr
    record = read_record(run_dir)
    assert record is not None and (record.step, record.finished) == (2, False)
    assert steps_on_disk(run_dir) == {NAME: 2, PARTS[1]: 1, "vision": 1}
    assert "was interrupted" in reader_sees(run_dir)
    resumed = mmv([*sft(data, run_dir), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("the save of step 2 was interrupted; wrote the weights of step 2 again") == 1
    assert reader_sees(run_dir) == 2 and read_record(run_dir).finished
    assert not [p for p in run_dir.rglob(".*") if p.name != ".mmv-run.lock"]
