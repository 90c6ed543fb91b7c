"""The piped / interactive side of `mmv chat`: every bad line is one error line and the session goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REFERENCE, TOKENIZER_DIR
from tests.loading.helpers import folder_with_positions

MODEL = ["--model", str(REFERENCE / "p32" / "model.pth"), "--tokenizer", str(TOKENIZER_DIR)]
IMAGE = str(REFERENCE / "p32" / "image.png")
GREEDY = ["--temperature", "0", "--max-new-tokens", "4"]
ONE_SHOT_FIELDS = {"reply", "new_tokens", "ttft_ms", "vision_ms", "decode_tokens_per_s", "stopped", "reused_tokens"}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.slow
def test_binary_garbage_on_stdin_is_one_line_and_the_session_goes_on():
    """The real process, with stdin decoded strictly (as in most UTF-8 locales): invalid UTF-8 used to end the
    session with a traceback; NULs and control characters are text and get answered."""
    garbage = b"hel\xff\xfelo\n\x00\x01\x1b[31m\x7fwhat?\nWhat is in this image?\n"
    done = subprocess.run(
        [sys.executable, "-m", "mmv.cli.app", "chat", *MODEL, *GREEDY],
        input=garbage,
        capture_output=True,
        timeout=300,
        env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
    )
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr
    assert error_lines(stderr) == [
        "error: the message is not UTF-8 text (byte 0xff at character 4); nothing was sent"
    ], stderr
    assert len(done.stdout.decode().splitlines()) == 2  # the two other lines were answered
    assert done.returncode == 2  # a piped session reports that a line failed, at the end


def test_piped_json_is_one_summary_with_the_one_shot_fields_per_reply(cli):
    """Exactly one JSON object when the session ends (the promise of every --json): each reply has the fields of a
    one-shot --json reply, and each failed input line is listed with its number and error."""
    one_shot = json.loads(cli(["chat", IMAGE, *MODEL, *GREEDY, "--prompt", "What is in this image?", "--json"]).stdout)
    script = "What is in this image?\n/help\nhel\udcfflo\n\n<image> no image attached\nAnd now?\n"
    result = cli(["chat", IMAGE, *MODEL, *GREEDY, "--json"], input=script.encode("utf-8", "surrogateescape"))
    assert len(result.stdout.splitlines()) == 1
    summary = json.loads(result.stdout)
    assert set(summary) == {"turns", "errors", "replies", "failed", "threads"}
    assert summary["threads"] == one_shot["threads"] >= 1
    assert summary["turns"] == 2 and summary["errors"] == 2
    first, second = summary["replies"]
    assert set(first) == set(one_shot) - {"threads"} == ONE_SHOT_FIELDS
    assert first["reply"] == one_shot["reply"]
    assert set(second) == ONE_SHOT_FIELDS and second["reused_tokens"] > 64  # the image's run, kept
    assert summary["failed"] == [
        {"line": 3, "error": "the message is not UTF-8 text (byte 0xff at character 4); nothing was sent"},
        {"line": 5, "error": "the prompt has 1 <image> marker(s) but 0 image(s) were given"},
    ]
    assert len(error_lines(result.stderr)) == 2
    assert result.exit_code == 2


def test_save_to_an_unwritable_place_is_reported_and_the_conversation_goes_on(cli, tmp_path):
    """It used to end the session (an OSError) and lose the conversation."""
    (tmp_path / "file").write_text("a file, not a folder")
    unwritable, saved = tmp_path / "file" / "t.json", tmp_path / "t.json"
    script = f"hello\n/save {unwritable}\nhow are you?\n/save {saved}\n"
    result = cli(["chat", *MODEL, *GREEDY], input=script)
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot save the transcript to {unwritable}: ")
    assert "Traceback" not in result.stderr
    assert len(result.stdout.splitlines()) == 2  # both messages answered
    turns = json.loads(saved.read_text())["turns"]
    assert [t["content"] for t in turns if t["role"] == "user"] == ["hello", "how are you?"]
    assert result.exit_code == 2


def test_clear_keeps_the_command_line_images(cli, tmp_path):
    """/clear forgets the conversation, not what the command line set up: its images are attached again to the
    next message (and it says so), so the same question gets the same greedy answer."""
    saved = tmp_path / "t.json"
    script = f"What is in this image?\n/clear\nWhat is in this image?\n/save {saved}\n"
    result = cli(["chat", IMAGE, *MODEL, *GREEDY], input=script)
    assert result.exit_code == 0, result.stderr
    first, again = result.stdout.splitlines()
    assert first == again
    assert f"conversation cleared; {IMAGE} attached to your next message" in result.stderr
    turns = json.loads(saved.read_text())["turns"]
    assert [(t["role"], t["images"]) for t in turns] == [("user", [IMAGE]), ("assistant", [])]


def test_clear_without_command_line_images_attaches_nothing(cli, tmp_path):
    saved = tmp_path / "t.json"
    result = cli(["chat", *MODEL, *GREEDY], input=f"/image {IMAGE}\nhi\n/clear\nhi\n/save {saved}\n")
    assert result.exit_code == 0, result.stderr
    assert "conversation cleared\n" in result.stderr
    assert [t["images"] for t in json.loads(saved.read_text())["turns"]] == [[], []]


def test_the_model_positions_are_one_line_and_the_session_goes_on(cli, tmp_path):
    """A reply that reaches max_position_embeddings and a message that no longer fits used to end the session
    with an IndexError from the rotary tables."""
    short = ["--model", str(folder_with_positions(tmp_path / "short", 40)), "--temperature", "0"]
    result = cli(["chat", *short, "--max-new-tokens", "30"], input="hi\nand now?\n/clear\nhi\n")
    assert "Traceback" not in result.stderr
    first, again = result.stdout.splitlines()
    assert first == again
    assert result.stderr.count("note: the reply stopped at the model's 40 positions (max_position_embeddings)") == 2
    [error] = error_lines(result.stderr)
    assert error.startswith("error: the conversation is ") and "but the model has 40 positions" in error
    assert result.exit_code == 2

    one_shot = cli(["chat", *short, "--prompt", "hello " * 40])
    assert one_shot.exit_code == 2 and one_shot.stdout == ""
    assert one_shot.stderr.startswith("error: the conversation is ") and len(one_shot.stderr.splitlines()) == 1


def test_a_prompt_or_system_prompt_that_is_not_utf8_is_one_line(cli):
    """Bytes of argv that are not UTF-8 reach Python as lone surrogates (surrogateescape), which the tokenizer
    cannot encode: one line naming the byte, before anything runs."""
    prompt = cli(["chat", *MODEL, *GREEDY, "--prompt", "hel\udcfflo"])
    assert prompt.exit_code == 2 and prompt.stdout == ""
    assert prompt.stderr == "error: the message is not UTF-8 text (byte 0xff at character 4); nothing was sent\n"
    system = cli(["chat", *MODEL, *GREEDY, "--system", "\udce9t\udce9", "--prompt", "hi"])
    assert system.exit_code == 2
    assert system.stderr == "error: the system prompt is not UTF-8 text (byte 0xe9 at character 1); nothing was sent\n"
