"""Training from a feature cache: the same losses as from the images (exactly with float32 features, within 1e-3
with float16), no JPEG decoded and no encoder run; the cache built beside the data and reused; exact resume;
refusals in one line."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from mmv.data.feature_build import build_feature_cache
from mmv.data.loader import DataSpec, TrainData
from mmv.errors import MmvError
from mmv.train.build import build_model, training_inputs
from mmv.train.config import TrainConfig
from mmv.train.distributed import DistContext
from mmv.train.state import checkpoint_paths, load_resume
from mmv.train.trainer import Trainer
from tests.conftest import TOKENIZER_DIR, one_thread
from tests.train.helpers import VISION_DIR, VLM_PTH, base_args, caption_row, read_metrics, run_cli, text_row
from tests.train.helpers import write_parquet as write_rows

CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


def training_rows(count: int = 16, broken: bool = True) -> list[dict]:
    rows = [text_row(i) if i % 4 == 3 else caption_row(i, words=2 + i % 5) for i in range(count)]
    if broken:
        rows[5] = {**rows[5], "image_bytes": b"broken"}  # skipped as "image" both ways
    return rows


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_rows(tmp_path_factory.mktemp("data") / "train.parquet", training_rows(), row_group_size=8)


def fit(run_dir, data_file, cache=None, **overrides) -> list[float]:
    """A tiny fresh sft run in-process; with a cache the model has no encoder at all, so none can run."""
    cfg = TrainConfig(
        stage="sft", init="none", preset="tiny", freeze="none", lr=1e-3, epochs=2, batch_size=4, **overrides
    )
    spec = DataSpec(
        files=[str(data_file)],
        tokenizer_dir=str(TOKENIZER_DIR),
        vision_dir=str(VISION_DIR),
        max_seq_len=160,
        random_system_prompt=False,
        drop_empty_think=False,
        max_bad_fraction=0.5,
        feature_cache=str(cache) if cache else None,
    )
    inputs = training_inputs("none", str(VISION_DIR), str(TOKENIZER_DIR), cfg)
    model = build_model(dataclasses.replace(inputs, vision_dir=None) if cache else inputs, cfg)
    assert (model.vision_encoder is None) == bool(cache)
    run_dir.mkdir(parents=True)
    result = Trainer(cfg, model, TrainData(spec), CPU, run_dir, "sft_vlm_64.pth").fit()
    assert result.steps == 8
    return result.history


def no_decoding(monkeypatch):
    import mmv.images

    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(mmv.images, "open_image", refuse)


def test_float32_features_give_exactly_the_losses_of_the_images(data, tmp_path, monkeypatch):
    cache = build_feature_cache([data], VISION_DIR, tmp_path / "f32.features", dtype="float32").path
    plain = fit(tmp_path / "plain", data)
    no_decoding(monkeypatch)
    assert fit(tmp_path / "cached", data, cache) == plain


def test_float16_features_stay_within_1e_3_of_every_step(data, tmp_path, monkeypatch):
    cache = build_feature_cache([data], VISION_DIR, tmp_path / "f16.features").path
    plain = fit(tmp_path / "plain", data)
    no_decoding(monkeypatch)
    cached = fit(tmp_path / "cached", data, cache)
    assert cached == pytest.approx(plain, abs=1e-3) and cached != plain


def test_train_vision_and_a_cache_contradict_each_other(data, tmp_path):
    with pytest.raises(MmvError, match="cannot come from a feature cache"):
        TrainConfig(train_vision=True, cache_features=True)
    with pytest.raises(MmvError, match="cannot come from a feature cache"):
        TrainConfig(train_vision=True, feature_cache="x.features")
    refused = run_cli(
        [*base_args(data, tmp_path / "run"), "--init", str(VLM_PTH), "--train-vision", "--cache-features"]
    )
    assert refused.exit_code == 2 and "training the vision encoder changes its features" in refused.stderr
    assert "(option: --train-vision, --cache-features, --feature-cache)" in refused.stderr
    assert refused.stderr.count("\n") == 1 and not (tmp_path / "run").exists()
    with pytest.raises(MmvError, match="unknown cache dtype 'int8'") as refused:
        TrainConfig(cache_dtype="int8")
    assert refused.value.options == ("cache_dtype",)


def args(data, out, *extra) -> list[str]:
    return [
        *base_args(data, out),
        "--init",
        str(VLM_PTH),
        "--batch-size",
        "2",
        "--max-steps",
        "6",
        "--save-every",
        "3",
        "--keep",
        "5",
        "--log-every",
        "1",
        *extra,
    ]


def train(arguments: list[str]):
    result = run_cli(["--json", *arguments])
    assert result.exit_code == 0, result.stderr
    return result


def test_cache_beside_the_data_built_once_then_reused_and_resumed_exactly(tmp_path):
    (tmp_path / "data").mkdir()
    data = write_rows(tmp_path / "data" / "train.parquet", training_rows(), row_group_size=8)
    first = train(args(data, tmp_path / "first", "--cache-features", "--cache-dtype", "float32"))
    built = list(data.parent.glob("train.parquet.float32-*.features"))
    assert len(built) == 1 and "building the feature cache" in first.stderr
    config = json.loads((tmp_path / "first" / "config.json").read_text())
    assert config["data"]["feature_cache"] == str(built[0]) and config["train"]["cache_features"]
    assert "+ 0 encoder" in first.stderr  # the encoder is not even loaded

    plain = train(args(data, tmp_path / "plain"))
    assert "+ 0 encoder" not in plain.stderr
    losses = [r["loss"] for r in read_metrics(tmp_path / "first")]
    assert losses == [r["loss"] for r in read_metrics(tmp_path / "plain")]

    # as if stopped after step 3: the resumed run reads the recorded cache and repeats steps 4-6 bit for bit
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "first", resumed)
    for path in checkpoint_paths(resumed)[1:]:
        path.unlink()
    mtime = built[0].stat().st_mtime_ns
    again = train([*base_args(data, resumed), "--resume"])
    assert "building" not in again.stderr and built[0].stat().st_mtime_ns == mtime
    assert [r["loss"] for r in read_metrics(resumed)] == losses
    final, original = load_resume(checkpoint_paths(resumed)[-1]), load_resume(checkpoint_paths(tmp_path / "first")[-1])
    assert all(torch.equal(final.model[k], original.model[k]) for k in original.model)

    other = train(args(data, tmp_path / "second", "--cache-features", "--cache-dtype", "float32"))
    assert "building" not in other.stderr and built[0].stat().st_mtime_ns == mtime  # reused


def test_a_given_cache_of_other_data_is_refused_in_one_line(data, tmp_path):
    other = write_rows(tmp_path / "other.parquet", [caption_row(i) for i in range(16)])
    cache = build_feature_cache([other], VISION_DIR, tmp_path / "other.features").path
    refused = run_cli(args(data, tmp_path / "run", "--feature-cache", str(cache)))
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert f"feature cache {cache} was built from other data than train.parquet" in refused.stderr


def test_a_resumed_run_whose_cache_changed_is_refused(tmp_path):
    data = write_rows(tmp_path / "train.parquet", training_rows())
    cache = tmp_path / "run.features"
    train(args(data, tmp_path / "run", "--feature-cache", str(cache), "--max-steps", "3"))
    build_feature_cache([data], VISION_DIR.parent / "vision", tmp_path / "tmp.features", dtype="float32")
    shutil.move(tmp_path / "tmp.features", cache)  # same data and encoder, float32 now: still fits
    train([*base_args(data, tmp_path / "run"), "--resume", "--max-steps", "3"])
    write_rows(tmp_path / "train.parquet", [caption_row(i) for i in range(16)])  # the data changed under the run
    refused = run_cli([*base_args(data, tmp_path / "run"), "--resume"])
    assert refused.exit_code == 2 and "was built from other data than train.parquet" in refused.stderr


def test_processes_of_a_distributed_run_do_not_build_the_cache(data, tmp_path):
    from mmv.train.run import RunRequest, plan_fresh, with_feature_cache

    cfg = TrainConfig(init=str(VLM_PTH), feature_cache=str(tmp_path / "missing.features"))
    request = RunRequest(
        cfg=cfg, out=tmp_path / "run", data=[str(data)], vision=str(VISION_DIR), tokenizer=str(TOKENIZER_DIR)
    )
    plan = plan_fresh(request)
    with pytest.raises(MmvError, match="does not exist yet and the processes of a distributed run") as caught:
        with_feature_cache(plan, may_build=False)
    assert caught.value.options == ("nproc",) and not (tmp_path / "missing.features").exists()
    built = with_feature_cache(plan, may_build=True)
    assert built.data_spec["feature_cache"] == str(tmp_path / "missing.features") and built.inputs.vision_dir is None
    assert with_feature_cache(dataclasses.replace(plan, cfg=TrainConfig()), may_build=False).inputs.vision_dir


@pytest.mark.slow
def test_two_gloo_processes_train_from_the_cache_like_one(tmp_path):
    from tests.train.helpers import mmv, start

    data = write_rows(tmp_path / "train.parquet", training_rows(24, broken=False))
    ddp = mmv([*args(data, tmp_path / "ddp", "--cache-features"), "--nproc", "2", "--json"], timeout=300)
    assert ddp.returncode == 0, ddp.stderr
    assert ddp.stderr.count("building the feature cache") == 1  # by the launcher, before the workers start
    single = start(args(data, tmp_path / "single", "--cache-features", "--batch-size", "4"))
    _, err = single.communicate(timeout=300)
    assert single.returncode == 0, err
    assert "building" not in err
    one, two = read_metrics(tmp_path / "single"), read_metrics(tmp_path / "ddp")
    assert [r["step"] for r in two] == list(range(1, 7))
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], abs=1e-5)
    assert '"world_size": 2' in ddp.stdout
