"""`mmv chat` end to end on the reference fixture model: one-shot, JSON, piped multi-turn REPL, bad input."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.conftest import IMAGES_DIR, REFERENCE, TOKENIZER_DIR, fixture_cases

MODEL = ["--model", str(REFERENCE / "p32" / "model.pth"), "--tokenizer", str(TOKENIZER_DIR)]
IMAGE = str(REFERENCE / "p32" / "image.png")
GREEDY = ["--temperature", "0", "--max-new-tokens", "16"]


def reference_reply() -> str:
    from mmv.tokenizer import load_tokenizer

    cases = fixture_cases("p32")
    new = cases["generated_greedy"][0, cases["input_ids"].shape[1] :].tolist()
    return load_tokenizer(TOKENIZER_DIR).decode(new, skip_special_tokens=True)


def test_one_shot_streams_the_reference_reply(cli):
    result = cli(["chat", IMAGE, *MODEL, *GREEDY, "--prompt", "What is in this image?"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == reference_reply() + "\n"


def test_image_marker_places_the_image(cli):
    result = cli(["chat", IMAGE, *MODEL, *GREEDY, "--prompt", "<image>\nWhat is in this image?"])
    assert result.stdout == reference_reply() + "\n"


def test_json_summary(cli):
    result = cli(["chat", IMAGE, *MODEL, *GREEDY, "--prompt", "What is in this image?", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["reply"] == reference_reply()
    assert summary["new_tokens"] == 16
    assert {"ttft_ms", "vision_ms", "decode_tokens_per_s"} <= summary.keys()
    assert summary["vision_ms"] > 0 and summary["ttft_ms"] >= summary["vision_ms"]


def test_piped_prompts_are_a_multi_turn_session(cli, tmp_path):
    transcript = tmp_path / "t.json"
    script = (
        f"hello\n/image {IMAGE}\nWhat is in this image?\n/save {transcript}\n/clear\n"
        "/help\nagain\n/exit\nnever answered\n"
    )
    result = cli(["chat", *MODEL, "--max-new-tokens", "4", "--temperature", "0", "--json"], input=script)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["turns"] == 3
    saved = json.loads(transcript.read_text())
    assert [t["role"] for t in saved["turns"]] == ["user", "assistant", "user", "assistant"]
    assert saved["turns"][2]["content"] == "<image>\nWhat is in this image?"
    assert saved["turns"][2]["images"] == [IMAGE]
    assert "/image PATH" in result.stderr  # /help went to stderr


def test_second_turn_sees_the_first(cli):
    """The same question asked after a first exchange gets a different context, hence (here) a different reply."""
    first = cli(["chat", *MODEL, "--max-new-tokens", "6", "--temperature", "0", "--prompt", "Hi"]).stdout
    both = cli(["chat", *MODEL, "--max-new-tokens", "6", "--temperature", "0"], input="Hello there\nHi\n").stdout
    assert first.strip() != both.splitlines()[-1].strip()


def make_bomb(path):
    Image.new("1", (12_000, 12_000)).save(path)


@pytest.mark.parametrize("kind", ["missing", "not-image", "truncated", "bomb", "bad-checkpoint", "wrong-variant"])
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, kind):
    image, model = str(tmp_path / "x.jpg"), list(MODEL)
    if kind == "not-image":
        (tmp_path / "x.jpg").write_text("plain text")
    elif kind == "truncated":
        (tmp_path / "x.jpg").write_bytes((IMAGES_DIR / "image-04-yellow-car.jpg").read_bytes()[:5000])
    elif kind == "bomb":
        image = str(tmp_path / "x.png")
        make_bomb(image)
    elif kind == "bad-checkpoint":
        image = IMAGE
        (tmp_path / "m.pth").write_bytes(b"\x00garbage")
        model[1] = str(tmp_path / "m.pth")
    elif kind == "wrong-variant":
        image = IMAGE
        model[1] = str(REFERENCE / "naflex-merge4" / "model.pth")
        model += ["--vision", str(REFERENCE / "p32" / "vision")]
    result = cli(["chat", image, *model, "--prompt", "hi"])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_cached_name_prints_the_download_command(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MMV_HOME", str(tmp_path))
    result = cli(["chat", "--model", "minimind-3v", "--prompt", "hi"])
    assert result.exit_code == 2
    assert "mmv download minimind-3v" in result.stderr


@pytest.mark.slow
def test_ctrl_c_stops_the_reply_not_the_session(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "mmv.cli.app", "chat", *MODEL, "--max-new-tokens", "20000", "--temperature", "0"]
    process = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    process.stdin.write("tell me a long story\n")
    process.stdin.flush()
    first = process.stdout.read(1)  # the reply has started streaming
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    # the session survives: it goes on to read the next command
    stdout, stderr = process.communicate(input=f"/save {tmp_path / 't.json'}\n/exit\n", timeout=120)
    assert process.returncode == 0, stderr
    assert first and stdout
    stats = [line for line in stderr.splitlines() if "tok/s" in line]
    assert len(stats) == 1 and "stopped" in stats[0], stderr
    assert int(stats[0].split(" tokens")[0].split()[-1]) < 20000
    assert "saved" in stderr and (tmp_path / "t.json").is_file()


def test_save_refuses_to_replace_a_device(cli):
    result = cli(["chat", *MODEL, "--max-new-tokens", "2"], input="/save /dev/null\n")
    assert "not a regular file" in result.stderr
    assert result.exit_code == 2


def test_one_tile_streams_the_reference_reply(cli):
    result = cli(["chat", IMAGE, *MODEL, *GREEDY, "--tiles", "1", "--prompt", "What is in this image?"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == reference_reply() + "\n"


def test_a_tiled_chat_answers_and_a_bad_tile_count_names_the_flag(cli):
    photo = str(IMAGES_DIR / "image-02-rainbow-umbrella-street.jpg")
    result = cli(["chat", photo, *MODEL, *GREEDY, "--tiles", "4", "--prompt", "Describe it.", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["new_tokens"] > 0
    bad = cli(["chat", photo, *MODEL, *GREEDY, "--tiles", "0", "--prompt", "Describe it."])
    assert bad.exit_code == 2
    assert "--tiles" in bad.stderr and "Traceback" not in bad.stderr


def test_a_video_is_sampled_into_timestamped_frames(cli, tmp_path):
    from tests.vision_input.test_video import write_clip

    clip = write_clip(tmp_path / "clip.mp4", 20)
    result = cli(["chat", str(clip), *MODEL, *GREEDY, "--frames", "4", "--prompt", "What moves?", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["new_tokens"] > 0
    too_many = cli(["chat", str(clip), *MODEL, *GREEDY, "--frames", "65", "--prompt", "What moves?"])
    assert too_many.exit_code == 2 and "--frames" in too_many.stderr
    (tmp_path / "bad.webm").write_bytes(b"not a video")
    bad = cli(["chat", str(tmp_path / "bad.webm"), *MODEL, "--prompt", "What moves?"])
    assert bad.exit_code == 2 and "bad.webm is not a video file" in bad.stderr and "Traceback" not in bad.stderr
