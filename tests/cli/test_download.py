"""`mmv download` and `mmv cache` end to end against the loopback fake Hub, then `mmv chat` on what was fetched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mmv.hub import cache
from tests.conftest import REFERENCE, TOKENIZER_DIR, fixture_cases
from tests.faults import dead_pid
from tests.hub.fake_hub import running

ENCODER_REPO = ("model", "jingyaogong/siglip2-base-p32-256-ve")
LAST_RESORT_S = 600  # only so that a broken build fails instead of hanging; the waits below are on events


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    with running(monkeypatch, tmp_path) as hub:
        yield hub


def test_download_prints_paths_and_a_json_summary(cli, fake_hub):
    result = cli(["download", "siglip2", "llm", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)  # stdout is exactly one JSON object
    names = {item["name"]: item for item in summary["names"]}
    assert list(names) == ["siglip2-p32-256", "llm"]
    assert names["llm"]["files"] == 3 and not names["llm"]["already_cached"]
    assert summary["downloaded_bytes"] == sum(item["bytes"] for item in summary["names"]) > 0
    assert names["siglip2-p32-256"]["commits"] == {ENCODER_REPO[1]: fake_hub.hf[ENCODER_REPO].commit}

    again = cli(["download", "siglip2"])
    assert again.exit_code == 0
    assert again.stdout == f"{cache.find('siglip2')}\n"
    assert "already cached" in again.stderr


def test_help_renders(cli):
    result = cli(["download", "--help"])
    assert result.exit_code == 0 and "hf:OWNER/REPO" in result.stdout and "(default: main)" in result.stdout


def test_list_shows_every_name_and_what_is_cached(cli, fake_hub):
    cli(["download", "dataset-sft"])
    result = cli(["download", "--list", "--json"])
    rows = {row["name"]: row for row in json.loads(result.stdout)["names"]}
    assert {
        "siglip2-p32-256",
        "siglip2-p16-256",
        "siglip2-p16-naflex",
        "llm",
        "minimind-3v",
        "minimind-3v-moe",
        "minimind-3v-pytorch",
        "dataset",
        "dataset-pretrain",
        "dataset-sft",
        "clip-vit-base-patch16",
        "dinov2-small",
        "dinov2-base",
        "siglip2-base-patch16-naflex",
    } == set(rows)
    assert rows["siglip2-p32-256"]["aliases"] == ["siglip2"]
    assert rows["dataset-sft"]["cached"] == str(cache.find("dataset-sft"))
    assert rows["minimind-3v"]["cached"] is None and rows["minimind-3v"]["bytes"] > 0

    table = cli(["download", "--list"])
    assert table.exit_code == 0 and "minimind-3v-pytorch" in table.stdout


def test_to_copies_or_links_without_clobbering(cli, fake_hub, tmp_path):
    out = tmp_path / "models"
    copied = cli(["download", "siglip2", "--to", str(out)])
    assert copied.exit_code == 0, copied.stderr
    target = out / "siglip2-p32-256"
    assert not target.is_symlink() and sorted(p.name for p in target.iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    assert cli(["download", "siglip2", "--to", str(out)]).exit_code == 0  # same files: nothing to do

    (target / "config.json").write_text("{}")  # the user's edit must survive
    clash = cli(["download", "siglip2", "--to", str(out)])
    assert clash.exit_code == 2 and "already exists and differs" in clash.stderr and "(option: --to)" in clash.stderr
    assert (target / "config.json").read_text() == "{}"

    linked = cli(["download", "llm", "--to", str(out), "--link"])
    assert linked.exit_code == 0, linked.stderr
    assert (out / "llm").is_symlink() and (out / "llm").resolve() == cache.find("llm").resolve()


def test_a_copy_killed_midway_is_cleaned_by_the_next(cli, fake_hub, tmp_path):
    out = tmp_path / "models"
    left = out / f".siglip2-p32-256.tmp-{dead_pid()}-abcd1234"
    left.mkdir(parents=True)
    (left / "config.json").write_text("half")
    copied = cli(["download", "siglip2", "--to", str(out)])
    assert copied.exit_code == 0, copied.stderr
    assert sorted(p.name for p in out.iterdir()) == ["siglip2-p32-256"]
    assert (out / "siglip2-p32-256" / "config.json").read_text() != "half"


def test_cache_list_and_rm(cli, fake_hub):
    cli(["download", "siglip2", "hf:jingyaogong/minimind-3v/config.json"])
    listed = json.loads(cli(["cache", "list", "--json"]).stdout)
    assert [n["name"] for n in listed["names"]] == ["hf:jingyaogong/minimind-3v/config.json", "siglip2-p32-256"]
    assert listed["bytes"] == sum(n["bytes"] for n in listed["names"])

    removed = cli(["cache", "rm", "siglip2", "--json"])
    assert removed.exit_code == 0 and json.loads(removed.stdout)["removed"][0]["name"] == "siglip2"
    assert cache.find("siglip2") is None
    missing = cli(["cache", "rm", "siglip2"])
    assert missing.exit_code == 2 and "mmv cache list" in missing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["download", "gpt5"], "unknown download name 'gpt5'"),
        (["download", "gpt5", "siglip2", "nope"], "unknown download names 'gpt5', 'nope': expected one of"),
        (["download", "hf:jingyaogong/nope"], "refused model repository jingyaogong/nope (401)"),
        (["download", "minimind-3v", "--revision", "nope"], "revision nope was not found"),
        (
            ["download", "minimind-3v", "--revision", "../main"],
            "invalid revision '../main' in the requested revision: expected a branch, tag or commit such as main, "
            "v1.0, refs/pr/1 or a commit id (option: --revision)",
        ),
        (["download", "hf:jingyaogong/minimind-3v@a b"], "invalid revision 'a b'"),
        (["download", "llm", "--source", "ftp"], "unknown --source 'ftp'"),
        (["download", "siglip2", "--link"], "--link only makes sense with --to"),
        (["download", "--bogus"], "No such option: --bogus (see `mmv download --help`)"),
        (["cache", "rm"], "Missing argument 'NAME...' (see `mmv cache rm --help`)"),
        (["cache", "rm", "siglip2", "llm"], "siglip2, llm are not in the cache"),
    ],
)
def test_errors_are_one_line_and_exit_2(cli, fake_hub, args, message):
    result = cli(args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")  # no blank line or usage block before it
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert cache.entries() == []


def test_unknown_names_are_refused_before_anything_downloads(cli, fake_hub):
    result = cli(["download", "siglip2", "gpt5"])
    assert result.exit_code == 2 and fake_hub.requests == [] and cache.entries() == []


def test_offline_names_every_missing_name_at_once(cli, fake_hub, monkeypatch):
    assert cli(["download", "siglip2"]).exit_code == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = cli(["download", "siglip2", "llm", "dataset-sft"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "error: llm, dataset-sft are not in the cache at" in result.stderr
    assert "HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE to download them" in result.stderr


def test_cache_rm_removes_nothing_unless_every_name_is_there(cli, fake_hub):
    assert cli(["download", "siglip2"]).exit_code == 0
    result = cli(["cache", "rm", "siglip2", "gpt5", "llm"])
    assert result.exit_code == 2 and "gpt5, llm are not in the cache" in result.stderr
    assert "nothing was removed" in result.stderr and cache.find("siglip2") is not None


@pytest.mark.parametrize("where", ["home", "to"])
def test_file_system_errors_are_a_sentence(cli, fake_hub, tmp_path, monkeypatch, where):
    """What the OS said, on which file, and what to do: not a raw `OSError: [Errno ...]`."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    if where == "home":
        monkeypatch.setenv("MMV_HOME", str(blocker))
        args, doing, hint = ["download", "siglip2"], f"cannot write the download cache at {blocker}", "set MMV_HOME"
    else:
        args, doing, hint = ["download", "siglip2", "--to", str(blocker / "sub")], "cannot put", "another --to"
    result = cli(args)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: {doing}") and "Not a directory (" in result.stderr
    assert str(blocker) in result.stderr and hint in result.stderr
    assert "Errno" not in result.stderr and "OSError" not in result.stderr and "NotADirectoryError" not in result.stderr


def test_cache_list_suggests_the_name_that_resumes_a_partial_download(cli, fake_hub):
    from mmv.errors import MmvError
    from mmv.hub.fetch import FetchOptions, download

    spec = "hf:jingyaogong/minimind-3v-pytorch/llm_768.pth"
    fake_hub.drop["llm_768.pth"] = (50_000, 1)
    with pytest.raises(MmvError, match="connection dropped"):
        download(spec, FetchOptions(revision="v1", retries=0))

    listed = cli(["cache", "list"])
    assert f"`mmv download {spec} --revision v1` resumes it" in listed.stderr
    assert "hf--" not in listed.stderr
    partial = json.loads(cli(["cache", "list", "--json"]).stdout)["partial"]
    assert partial == [{"name": spec, "revision": "v1", "bytes": 50_000}]

    assert cli(["download", spec, "--revision", "v1"]).exit_code == 0
    assert fake_hub.ranges("llm_768.pth")[-1] == "bytes=50000-"


def test_killed_download_resumes_where_it_stopped(cli, fake_hub):
    """A real `mmv download` process interrupted mid-file (Ctrl-C); the next run asks only for the missing bytes.

    Nothing here guesses how long a step takes: it waits for the server to reach the stall, then for the client to
    have written those bytes (or to have died), so a slow, busy machine only makes it slower."""
    fake_hub.stall["model.safetensors"] = 300_000
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmv.cli.app", "download", "siglip2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    staging = cache.staging_dir("siglip2")
    give_up = time.monotonic() + LAST_RESORT_S
    while not fake_hub.stalled.wait(timeout=1):
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < give_up, "the client never reached the stalled file"
    while _partial_bytes(staging) < 300_000:  # the bytes are on their way: the client writes each as it arrives
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < give_up, f"only {_partial_bytes(staging)} bytes written"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=LAST_RESORT_S)
    assert proc.returncode == 130, stderr.decode()
    assert cache.find("siglip2") is None and _partial_bytes(staging) == 300_000

    fake_hub.stall.clear()
    resumed = cli(["download", "siglip2", "--json"])
    assert resumed.exit_code == 0, resumed.stderr
    served = fake_hub.hf[ENCODER_REPO].files
    assert fake_hub.ranges("model.safetensors")[-1] == "bytes=300000-"
    assert (cache.find("siglip2") / "model.safetensors").read_bytes() == served["model.safetensors"]
    downloaded = json.loads(resumed.stdout)["downloaded_bytes"]
    assert downloaded == len(served["model.safetensors"]) - 300_000 + len(served["preprocessor_config.json"])


def _partial_bytes(staging) -> int:
    parts = list((staging / ".parts").glob("*.part")) if staging.exists() else []
    return sum(p.stat().st_size for p in parts)


@pytest.mark.parametrize("source", ["hf", "modelscope"])
def test_chat_runs_on_the_downloaded_names(cli, fake_hub, source):
    """`mmv download minimind-3v siglip2`, then `mmv chat --model minimind-3v` gives the reference reply."""
    from mmv.tokenizer import load_tokenizer

    got = cli(["download", "minimind-3v", "siglip2", "--source", source, "--endpoint", fake_hub.url])
    assert got.exit_code == 0, got.stderr
    reply = cli(
        [
            "chat",
            str(REFERENCE / "p32" / "image.png"),
            "--model",
            "minimind-3v",
            "--temperature",
            "0",
            "--max-new-tokens",
            "16",
            "--prompt",
            "What is in this image?",
        ]
    )
    assert reply.exit_code == 0, reply.stderr

    cases = fixture_cases("p32")  # the same weights, run by the reference implementation
    new = cases["generated_greedy"][0, cases["input_ids"].shape[1] :].tolist()
    assert reply.stdout == load_tokenizer(TOKENIZER_DIR).decode(new, skip_special_tokens=True) + "\n"
