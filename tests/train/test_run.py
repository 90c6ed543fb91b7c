"""`mmv pretrain` / `mmv sft` in-process through the real CLI: the run directory, reference-compatible weights,
initialisation from llm / VLM / run directory, bad rows, refused inputs, --show-sample, --train-vision."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mmv.checkpoint import read_state_dict
from tests.conftest import REFERENCE, TOKENIZER_DIR, one_thread
from tests.train.helpers import (
    LLM_PTH,
    VISION_DIR,
    VLM_PTH,
    base_args,
    caption_row,
    read_metrics,
    run_cli,
    text_row,
    write_parquet,
)

RUN_CONFIG_KEYS = {
    "mmv_version",
    "stage",
    "model",
    "train",
    "data",
    "vision_dir",
    "tokenizer_dir",
    "weights",
    "threads",
}


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rows = [text_row(i) if i % 4 == 3 else caption_row(i) for i in range(12)]
    return write_parquet(tmp_path_factory.mktemp("data") / "train.parquet", rows)


def train(args: list[str]) -> dict:
    result = run_cli(["--json", *args])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_pretrain_from_llm_writes_reference_weights(data, tmp_path):
    out = tmp_path / "run"
    summary = train(
        [
            "pretrain",
            "--data",
            str(data),
            "--out",
            str(out),
            "--init",
            str(LLM_PTH),
            "--vision",
            str(VISION_DIR),
            "--tokenizer",
            str(TOKENIZER_DIR),
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--save-every",
            "1",
            "--keep",
            "1",
            "--log-every",
            "1",
        ]
    )
    config = json.loads((out / "config.json").read_text())
    assert set(config) == RUN_CONFIG_KEYS and config["stage"] == "pretrain"
    assert config["weights"] == "pretrain_vlm_64.pth" and summary["weights"] == str(out / "pretrain_vlm_64.pth")
    assert config["train"]["freeze"] == "projector" and config["model"]["hidden_size"] == 64
    state = torch.load(out / config["weights"], weights_only=True)
    reference = torch.load(VLM_PTH, weights_only=True)
    assert list(state) == list(reference)  # exactly the reference key names, in its order
    assert all(t.dtype == torch.float16 for t in state.values())
    assert torch.equal(state["lm_head.weight"], state["model.embed_tokens.weight"])
    tensors = load_file(str(out / "pretrain_vlm_64.safetensors"))
    assert set(tensors) == set(state) and all(torch.equal(tensors[k], state[k]) for k in state)
    # --freeze projector: the LLM stays exactly the llm.pth it started from; the fresh projector moved
    llm = read_state_dict(LLM_PTH)
    assert all(torch.equal(state[k], llm[k].half()) for k in llm)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000002.pt"]
    assert [r["step"] for r in read_metrics(out)] == [1, 2]
    assert summary["step"] == 2 and summary["data"]["rows"] == 8


def test_the_done_line_says_its_loss_is_the_last_steps_not_the_logged_mean(data, tmp_path):
    """The last step line is a mean over --log-every steps; `done:` gave the last step's own loss without saying so."""
    result = run_cli(
        [*base_args(data, tmp_path / "run"), "--init", str(VLM_PTH), "--max-steps", "3", "--batch-size", "2"]
    )
    assert result.exit_code == 0, result.stderr
    logged = read_metrics(tmp_path / "run")[-1]
    done = result.stderr.strip().splitlines()[-1]
    assert done.startswith(f"done: {tmp_path / 'run' / 'sft_vlm_64.pth'} (loss ")
    assert done.endswith(" at step 3; each step line shows the mean loss since the line before)")
    assert f"loss {logged['loss']:.4f}" in result.stderr  # the logged mean is shown on its step line


def test_sft_from_a_run_directory_then_refusals(data, tmp_path):
    first = tmp_path / "first"
    train([*base_args(data, first), "--init", str(VLM_PTH), "--max-steps", "1", "--batch-size", "2"])
    second = tmp_path / "second"
    summary = train([*base_args(data, second), "--init", str(first), "--max-steps", "1", "--batch-size", "2"])
    assert json.loads((second / "config.json").read_text())["train"]["init"] == str(first / "sft_vlm_64.pth")
    assert summary["step"] == 1
    again = run_cli([*base_args(data, second), "--init", str(first)])
    assert (
        again.exit_code == 2 and "already holds a run" in again.stderr and "(option: --resume, --out)" in again.stderr
    )
    changed = run_cli([*base_args(data, second), "--resume", "--lr", "0.5"])
    assert changed.exit_code == 2 and "the lr setting 0.5 differs" in changed.stderr
    assert changed.stderr.rstrip().endswith("(option: --lr)")
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = run_cli([*base_args(data, empty), "--resume"])
    assert missing.exit_code == 2 and "config.json" in missing.stderr


def test_bad_rows_are_skipped_and_counted(tmp_path, capsys):
    rows = [caption_row(i) for i in range(9)]
    rows[2] = {**rows[2], "image_bytes": b"\xff\xd8 not a jpeg"}
    rows[4] = {**rows[4], "conversations": '[{"role": "user"'}
    rows[6] = {**rows[6], "conversations": rows[6]["conversations"].replace("<image>", "<image><image>")}
    data = write_parquet(tmp_path / "bad.parquet", rows)
    # three of nine rows are bad: far over the default 1% limit, so the limit is raised through the Python API
    from mmv.train.config import stage_config
    from mmv.train.run import RunRequest, run

    request = RunRequest(
        cfg=stage_config("sft", init=str(VLM_PTH), freeze="none", batch_size=3, epochs=1),
        out=tmp_path / "run",
        data=[str(data)],
        vision=str(VISION_DIR),
        tokenizer=str(TOKENIZER_DIR),
        data_options={"max_bad_fraction": 0.5},
    )
    summary = run(request, "sft")
    report = capsys.readouterr().err
    assert "skipped rows: json 1, markers 1, image 1 (of 9 read), e.g. row " in report and "bad.parquet" in report
    assert summary["data"]["json"] == summary["data"]["image"] == summary["data"]["markers"] == 1
    assert summary["data"]["rows"] == summary["samples_seen"] == 9 and summary["step"] >= 2
    assert read_metrics(tmp_path / "run")[-1]["skipped_rows"] == 3


def test_bad_rows_over_the_limit_stop_with_row_numbers(tmp_path):
    rows = [caption_row(i) for i in range(6)]
    rows[1] = {**rows[1], "image_bytes": b"broken"}
    data = write_parquet(tmp_path / "bad.parquet", rows)
    result = run_cli([*base_args(data, tmp_path / "run"), "--init", str(VLM_PTH)])
    last = result.stderr.strip().splitlines()[-1]
    assert result.exit_code == 2 and last.startswith("error:") and "row 1 of bad.parquet" in last
    assert "Traceback" not in result.stderr


def test_wrong_columns_name_the_expected_ones(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"text": ["hi"], "image": [b"x"]}), str(path))
    result = run_cli([*base_args(path, tmp_path / "run"), "--init", str(VLM_PTH)])
    assert result.exit_code == 2 and "conversations" in result.stderr and "image_bytes" in result.stderr
    assert not (tmp_path / "run").exists()


def test_show_sample_prints_marked_samples_and_trains_nothing(data, tmp_path, monkeypatch):
    monkeypatch.setenv("MMV_HOME", str(tmp_path / "empty-cache"))  # the default --init is not needed to preview
    result = run_cli([*base_args(data, tmp_path / "run"), "--show-sample", "2"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("--- sample") == 2 and "⟦" in result.stderr and "[image: 64 tokens]" in result.stderr
    assert not (tmp_path / "run").exists()


def test_train_vision_saves_the_encoder(data, tmp_path):
    from mmv.model.vision import load_encoder

    out = tmp_path / "run"
    train(
        [
            *base_args(data, out),
            "--init",
            str(VLM_PTH),
            "--max-steps",
            "1",
            "--batch-size",
            "4",
            "--train-vision",
            "--freeze",
            "projector",
        ]
    )
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {
        p.name for p in (out / "vision").iterdir()
    }
    trained, original = load_encoder(out / "vision"), load_encoder(VISION_DIR)
    changed = [n for n, p in trained.named_parameters() if not torch.equal(p, dict(original.named_parameters())[n])]
    assert changed
    # a run started from this one takes its trained encoder and its tokenizer unless told otherwise
    follow = tmp_path / "follow"
    train(["sft", "--data", str(data), "--out", str(follow), "--init", str(out), "--max-steps", "1"])
    config = json.loads((follow / "config.json").read_text())
    assert config["vision_dir"] == str(out / "vision") and config["tokenizer_dir"] == str(TOKENIZER_DIR)


def test_init_vision_and_tokenizer_default_to_the_download_cache(data, tmp_path, monkeypatch):
    """`--init llm` with no --vision / --tokenizer: llm_768.pth, the tokenizer and siglip2-p32-256 from the cache."""
    cache = tmp_path / "cache"
    (cache / "llm").mkdir(parents=True)
    (cache / "llm" / "llm_768.pth").symlink_to(LLM_PTH)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (cache / "llm" / name).symlink_to(TOKENIZER_DIR / name)
    monkeypatch.setenv("MMV_HOME", str(cache))
    command = ["pretrain", "--data", str(data), "--out", str(tmp_path / "run"), "--max-steps", "1", "--batch-size", "2"]
    missing = run_cli(command)
    assert missing.exit_code == 2 and "mmv download siglip2-p32-256" in missing.stderr
    (cache / "siglip2-p32-256").symlink_to(VISION_DIR)
    summary = train(command)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["init"] == str(cache / "llm" / "llm_768.pth")
    assert config["vision_dir"] == str(cache / "siglip2-p32-256") and config["tokenizer_dir"] == str(cache / "llm")
    assert summary["step"] == 1


@pytest.mark.parametrize(("flag", "module"), [("--wandb", "wandb"), ("--tensorboard", "tensorboard")])
def test_missing_extras_are_named(data, tmp_path, flag, module):
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    result = run_cli([*base_args(data, tmp_path / "run"), "--init", str(VLM_PTH), "--max-steps", "1", flag])
    assert result.exit_code == 2 and f"pip install 'mmv[{module}]'" in result.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_show_sample_takes_the_tokenizer_of_the_init_run(data, tmp_path, monkeypatch):
    from tests.loading.helpers import make_run_dir

    monkeypatch.setenv("MMV_HOME", str(tmp_path / "empty-cache"))
    run = make_run_dir(tmp_path / "first")
    result = run_cli(
        ["sft", "--data", str(data), "--out", str(tmp_path / "next"), "--init", str(run), "--show-sample", "1"]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("--- sample") == 1


def test_every_missing_download_in_one_line(data, tmp_path, monkeypatch):
    monkeypatch.setenv("MMV_HOME", str(tmp_path / "empty-cache"))
    result = run_cli(["sft", "--data", str(data), "--out", str(tmp_path / "run")])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].endswith(
        "run `mmv download minimind-3v-pytorch siglip2-p32-256 llm` (option: --init, --vision DIR, --tokenizer DIR)"
    )


def hand_edited(run, change) -> None:
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(change(config)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c, "has no resume checkpoint yet"),  # the untouched config passes every check
        (lambda c: [c], "holds a list, expected a JSON object"),
        (lambda c: {k: v for k, v in c.items() if k != "data"}, "is not an mmv run config: it has no 'data' field"),
        (lambda c: {**c, "train": "sft"}, "'train' must be an object, got 'sft'"),
        (lambda c: {**c, "train": {**c["train"], "lr": "high"}}, "lr must be a number, got 'high'"),
        (lambda c: {**c, "train": {**c["train"], "epochs": None}}, "epochs must be an integer, got None"),
        (lambda c: {**c, "data": {**c["data"], "max_seq_len": "768"}}, "max_seq_len must be an integer, got '768'"),
        (lambda c: {**c, "data": {k: v for k, v in c["data"].items() if k != "files"}}, "data lacks files"),
        (lambda c: {**c, "data": {**c["data"], "shuffle": True}}, "data has unknown field 'shuffle'"),
        (lambda c: {**c, "train": {**c["train"], "learning_rate": 1.0}}, "train has unknown field 'learning_rate'"),
        (lambda c: {**c, "stage": "finetune"}, "'stage' must be pretrain or sft, got 'finetune'"),
        (
            lambda c: {**c, "weights": "../other/model.pth"},
            "'weights' must name a .pth file (or adapter/) in the run directory",
        ),
        (
            lambda c: {**c, "weights": "sft_vlm_64.bin"},
            "'weights' must name a .pth file (or adapter/) in the run directory",
        ),
    ],
)
def test_a_hand_edited_run_config_is_one_sentence_on_resume(tmp_path, change, message):
    from tests.loading.helpers import make_run_dir

    run = make_run_dir(tmp_path / "run")
    hand_edited(run, change)
    result = run_cli(["sft", "--out", str(run), "--resume"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert message in lines[0]


def test_a_resume_computes_on_the_thread_count_the_run_started_on(data, tmp_path, monkeypatch):
    monkeypatch.delenv("MMV_THREADS", raising=False)
    out = tmp_path / "run"
    steps = ["--init", str(VLM_PTH), "--batch-size", "4", "--save-every", "1", "--keep", "1", "--max-steps", "1"]
    assert train([*base_args(data, out), *steps, "--threads", "2"])["threads"] == 2
    assert json.loads((out / "config.json").read_text())["threads"] == 2
    assert train([*base_args(data, out), "--resume"])["threads"] == 2
    assert train([*base_args(data, out), "--resume", "--threads", "1"])["threads"] == 1


def test_resume_where_there_is_no_run(tmp_path):
    result = run_cli(["sft", "--out", str(tmp_path / "absent"), "--resume"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "Errno" not in result.stderr
    assert (
        lines[0]
        == f"error: {tmp_path / 'absent'} holds no run to resume (no config.json); start a new run there instead"
    )


def test_a_bare_moe_init_trains_with_the_experts_per_token_given(data, tmp_path):
    moe = REFERENCE / "p32-moe"
    args = ["sft", "--data", str(data), "--init", str(moe / "model.pth"), "--vision", str(moe / "vision")]
    args += ["--tokenizer", str(TOKENIZER_DIR), "--max-steps", "1", "--batch-size", "2"]
    bare = run_cli(["--json", *args, "--out", str(tmp_path / "k1")])
    assert bare.exit_code == 0, bare.stderr
    assert "it runs with 1 (option: --experts-per-token K)" in bare.stderr
    assert json.loads((tmp_path / "k1" / "config.json").read_text())["model"]["num_experts_per_tok"] == 1
    given = run_cli(["--json", *args, "--out", str(tmp_path / "k2"), "--experts-per-token", "2"])
    assert given.exit_code == 0 and "note:" not in given.stderr, given.stderr
    config = json.loads((tmp_path / "k2" / "config.json").read_text())
    assert config["model"]["num_experts_per_tok"] == 2 and config["train"]["experts_per_token"] == 2


# --- training on nothing: exit 2, one sentence, no weights ---------------------------------------------------


def test_a_parquet_without_rows_is_refused_before_anything_is_written(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.Table.from_pylist([caption_row(0)]).slice(0, 0), str(empty))
    result = run_cli([*base_args(empty, tmp_path / "run"), "--init", str(VLM_PTH)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert lines[0] == f"error: the training data holds no rows ({empty}): nothing to train on"
    assert not (tmp_path / "run").exists()


def test_every_row_too_long_trains_nothing_and_writes_no_weights(data, tmp_path):
    run = tmp_path / "run"
    result = run_cli([*base_args(data, run), "--init", str(VLM_PTH), "--max-seq-len", "8", "--epochs", "1"])
    last = result.stderr.strip().splitlines()[-1]
    assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
    assert last.startswith("error: nothing to train on: all 12 rows read were skipped (too_long 12), e.g. row ")
    assert last.endswith("beyond max_seq_len 8); no weights were written")
    assert not list(run.glob("*.pth")) and not list(run.glob("*.safetensors")) and not (run / "checkpoints").exists()
    assert not (run / "save.json").exists()


def test_every_row_skipped_for_any_reason_is_nothing_to_train_on(tmp_path):
    """The class: rows dropped as broken (with the bad-row limit lifted) count the same as rows too long."""
    from mmv.errors import MmvError
    from mmv.train.config import stage_config
    from mmv.train.run import RunRequest, run

    rows = [{**caption_row(i), "image_bytes": b"not an image"} for i in range(4)]
    request = RunRequest(
        cfg=stage_config("sft", init=str(VLM_PTH), batch_size=2, epochs=1),
        out=tmp_path / "run",
        data=[str(write_parquet(tmp_path / "bad.parquet", rows))],
        vision=str(VISION_DIR),
        tokenizer=str(TOKENIZER_DIR),
        data_options={"max_bad_fraction": 1.0},
    )
    with pytest.raises(MmvError, match=r"^nothing to train on: all 4 rows read were skipped \(image 4\), e\.g\. row"):
        run(request, "sft")
    assert not list((tmp_path / "run").glob("sft_vlm_*"))


def test_vision_takes_a_cached_download_name(data, tmp_path, monkeypatch):
    """`--vision dinov2-small`: the cached folder is previewed, trained over and recorded as a path (so resume does not
    depend on the name); before it is downloaded, one line names the download."""
    from tests.encoder_folders import make_encoder_folder

    monkeypatch.setenv("MMV_HOME", str(tmp_path / "cache"))
    args = [*base_args(data, tmp_path / "run"), "--init", str(LLM_PTH), "--merge", "2"]
    args[args.index("--vision") + 1] = "dinov2-small"
    refused = run_cli([*args, "--show-sample", "1"])
    assert refused.exit_code == 2 and "run `mmv download dinov2-small`" in refused.stderr
    cached = make_encoder_folder(tmp_path / "cache" / "dinov2-small", "dinov2", side=112, patch=14)
    shown = run_cli([*args, "--show-sample", "1"])
    assert shown.exit_code == 0, shown.stderr
    assert "[image: 16 tokens]" in shown.stderr  # (112 / 14 / 2)^2
    train([*args, "--max-steps", "1"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["vision_dir"] == str(cached) and config["model"]["image_token_len"] == 16
