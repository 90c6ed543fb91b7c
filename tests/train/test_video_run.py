"""`mmv sft` and `mmv eval` on rows with videos: --frames is recorded in the run, kept on resume and used by eval
and chat."""

from __future__ import annotations

import json

import pytest

from mmv.data.writer import ParquetRows
from mmv.eval.runner import EvalConfig, evaluate
from mmv.loading import load_model
from mmv.synth.dataset import SynthConfig, rows
from tests.conftest import one_thread
from tests.train.helpers import VLM_PTH, base_args, run_cli


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


def write_clips(path, bad: bool):
    """Six synthetic video questions, and with `bad` a seventh row whose video is not one."""
    with ParquetRows(path, video=True) as out:
        for messages, images, video in rows("sft", SynthConfig(n=6, task="video")):
            out.add(messages, images, video)
        if bad:
            out.add(messages, [], b"not a video")
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return write_clips(tmp_path_factory.mktemp("video") / "clips.parquet", bad=False)


def test_sft_on_videos_records_its_frames_which_resume_keeps_and_eval_uses(clips, tmp_path):
    run = tmp_path / "run"
    steps = ["--init", str(VLM_PTH), "--batch-size", "6", "--save-every", "1", "--max-steps", "1", "--frames", "3"]
    result = run_cli(["--json", *base_args(clips, run), *steps, "--max-seq-len", "400"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["data"]["rows"] == 6 and summary["data"]["bad"] == 0
    assert json.loads((run / "config.json").read_text())["data"]["frames"] == 3

    changed = run_cli([*base_args(clips, run), "--resume", "--frames", "4"])
    assert changed.exit_code == 2 and "the frames setting 4 differs from the run's 3" in changed.stderr
    assert changed.stderr.rstrip().endswith("(option: --frames N)")

    loaded = load_model(run, device="cpu", dtype="float32")
    assert loaded.frames == 3
    assert load_model(run, device="cpu", dtype="float32", frames=5).frames == 5
    out = tmp_path / "eval.jsonl"
    with_bad = write_clips(tmp_path / "with_bad.parquet", bad=True)
    report = evaluate(loaded, [with_bad], EvalConfig(batch_size=4, max_new_tokens=4), out)
    assert report.evaluated == 6 and report.skips.counts == {"image": 1}
    questions = [json.loads(line)["question"] for line in out.read_text().splitlines()]
    assert all(q.startswith("Frame 1 at ") and q.count("<image>") == 3 for q in questions)

    from tests.vision_input.test_video import write_clip

    clip = write_clip(tmp_path / "clip.mp4", 20)
    chat = ["--json", "chat", str(clip), "--model", str(run), "--prompt", "What moves?", "--max-new-tokens", "2"]
    for extra, frames in (([], 3), (["--frames", "2"], 2)):
        asked = run_cli([*chat, "--temperature", "0", *extra])
        assert asked.exit_code == 0, asked.stderr
        assert json.loads(asked.stdout.strip().splitlines()[-1])["frames"] == frames


def test_eval_frames_on_the_command_line(clips, tmp_path):
    from tests.conftest import TOKENIZER_DIR
    from tests.train.helpers import VISION_DIR

    out = tmp_path / "eval.jsonl"
    args = ["eval", "--model", str(VLM_PTH), "--data", str(clips), "--vision", str(VISION_DIR)]
    args += ["--tokenizer", str(TOKENIZER_DIR)]
    result = run_cli(["--json", *args, "--frames", "2", "--max-new-tokens", "2", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert all(json.loads(line)["question"].count("<image>") == 2 for line in out.read_text().splitlines())
    refused = run_cli([*args, "--frames", "99"])
    assert refused.exit_code == 2 and "frames must be between 1 and 64" in refused.stderr
    assert refused.stderr.rstrip().endswith("(option: --frames N)")
