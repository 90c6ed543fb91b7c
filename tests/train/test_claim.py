"""Where a run may start: never in a folder that holds anything but an mmv run (refused in one sentence naming
what is there, every file untouched); and what a killed run left is cleaned by the next start."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from mmv.train.state import checkpoint_paths
from tests.conftest import REFERENCE, one_thread
from tests.faults import dead_pid
from tests.train.helpers import VLM_PTH, base_args, caption_row, run_cli, write_parquet


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_parquet(tmp_path_factory.mktemp("data") / "train.parquet", [caption_row(i) for i in range(4)])


def contents(folder) -> dict[str, str]:
    """Every entry under `folder` with its bytes' hash (folders as "dir"), to prove nothing changed."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def sft(data, out, *extra: str) -> list[str]:
    return [*base_args(data, out), "--init", str(VLM_PTH), "--batch-size", "2", "--max-steps", "1", *extra]


def transformers_folder(path):
    return shutil.copytree(REFERENCE / "p32" / "hf-upstream", path)


def users_folder(path):
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    return path


@pytest.mark.parametrize(
    ("make", "shown"),
    [
        (transformers_folder, "chat_template.jinja, config.json, generation_config.json and 3 more"),
        (users_folder, "notes.txt"),
    ],
)
@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_a_folder_that_is_not_a_run_is_refused_untouched(data, tmp_path, make, shown, resume):
    out = make(tmp_path / "out")
    before = contents(out)
    result = run_cli(sft(data, out, *(["--resume"] if resume else [])))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    if resume:
        assert "holds no run to resume" in lines[0] or "is not an mmv run config" in lines[0]
    else:
        assert lines[0].startswith(f"error: {out} is not an mmv run directory (it holds {shown}")
        assert lines[0].endswith("); train into a new or empty folder")
    assert contents(out) == before


def test_a_file_is_refused_and_an_empty_folder_is_trained_into(data, tmp_path):
    (tmp_path / "file").write_text("mine")
    refused = run_cli(sft(data, tmp_path / "file"))
    assert refused.exit_code == 2 and f"{tmp_path / 'file'} is a file, not a run directory" in refused.stderr
    assert (tmp_path / "file").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert run_cli(sft(data, tmp_path / "empty")).exit_code == 0
    assert checkpoint_paths(tmp_path / "empty")


def test_the_next_start_cleans_what_a_killed_run_left(data, tmp_path):
    """Temporaries of processes that are gone are removed by the next start; a live writer's are kept."""
    run_dir = tmp_path / "run"
    assert run_cli(sft(data, run_dir, "--save-every", "1", "--keep", "3")).exit_code == 0
    dead, live = dead_pid(), os.getppid()
    left = [
        run_dir / f".sft_vlm_64.pth.tmp-{dead}-abcd1234",
        run_dir / f".save.json.tmp-{dead}-abcd1234",
        run_dir / "checkpoints" / f".step-00000002.pt.tmp-{dead}-abcd1234",
    ]
    for path in left:
        path.write_bytes(b"half")
    (run_dir / f".vision.tmp-{dead}-abcd1234").mkdir()
    kept = run_dir / f".metrics.jsonl.tmp-{live}-abcd1234"
    kept.write_bytes(b"being written")
    before = contents(run_dir)
    refused = run_cli(sft(data, run_dir, "--resume", "--lr", "0.5"))  # refused before the start: nothing cleaned
    assert refused.exit_code == 2 and contents(run_dir) == before
    resumed = run_cli(sft(data, run_dir, "--resume"))
    assert resumed.exit_code == 0, resumed.stderr
    cleaned = [line for line in resumed.stderr.splitlines() if "interrupted" in line]
    assert cleaned == [
        f"removed 4 temporaries that an interrupted write left in {run_dir} (.save.json.tmp-{dead}-abcd1234, "
        f".sft_vlm_64.pth.tmp-{dead}-abcd1234, .vision.tmp-{dead}-abcd1234 and 1 more)"
    ]
    hidden = sorted(p.name for p in run_dir.rglob(".*"))
    assert hidden == [kept.name]
