"""Damaged inputs never crash a command: seeded byte flips and truncations of a valid `.pth`, `.safetensors`, the
config.json of a transformers folder and of a run directory, and a dataset parquet, read by `mmv chat` (loading),
`mmv eval`, `mmv convert` and `mmv data check`.

Whatever the damage, a command exits 0, 1 (`data check` found bad rows) or 2 with one `error:` line: never a
traceback, and never the catch-all "(rerun with --debug for details)", which means the damage got past the checks
where the data enters. The cases are fixed by their seeds, so CI runs the same ones every time; a failure names its
case (`pytest tests/cli/test_fuzz.py -k pth-7` reruns it alone). The classes of crash this found each have a named
regression test below (and at the module that now refuses them).
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.cli.conftest import run_cli
from tests.conftest import REFERENCE, TOKENIZER_DIR, one_thread
from tests.data.parquet_files import mixed_rows, with_invalid_utf8
from tests.loading.helpers import make_run_dir

CASES = 300  # the corpus size, over all inputs together
SEED = 12  # change it to draw another corpus (then fix what it finds)
VISION = str(REFERENCE / "p32" / "vision")
DATA = REFERENCE / "labels" / "single.parquet"
# What a damaged JSON value becomes besides flipped bytes (which mostly make the file invalid JSON).
HOSTILE = [0, -1, 1, 7, 2**31, 2**63, 10**30, 1e308, -0.5, 0.5, float("nan"), "", "x", "../../x", None, True, [], {}]


@dataclass(frozen=True)
class Target:
    name: str
    commands: tuple[str, ...]  # the commands that read it, taken in turn
    json: bool = False  # a JSON file: also replace whole values


TARGETS = (
    Target("pth", ("chat", "eval", "convert")),
    Target("safetensors", ("chat", "eval", "convert")),
    Target("transformers-config", ("chat", "eval", "convert"), json=True),
    Target("run-config", ("chat", "eval", "convert"), json=True),
    Target("parquet", ("check", "eval")),
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    """A valid input of each kind (the file damaged, or for a config the folder it belongs to)."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("pristine")
    state = torch.load(REFERENCE / "p32" / "model_fp16.pth", weights_only=True)
    save_file({k: v.clone() for k, v in state.items()}, str(root / "model.safetensors"))  # clone: tied weights
    shutil.copytree(REFERENCE / "p32" / "hf-upstream", root / "transformers")
    return {
        "pth": REFERENCE / "p32" / "model_fp16.pth",
        "safetensors": root / "model.safetensors",
        "transformers-config": root / "transformers",
        "run-config": make_run_dir(root / "run", "p32"),
        "parquet": DATA,
    }


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No download cache to fall back on, and one torch thread (the model is tiny)."""
    monkeypatch.setenv("MMV_HOME", str(tmp_path / "cache"))
    with one_thread():
        yield


def json_paths(value, prefix=()):
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from json_paths(child, (*prefix, key))


def damage_json_value(data: bytes, rng: random.Random) -> bytes:
    """One value of the JSON file replaced by a hostile one, another number, or removed."""
    config = json.loads(data)
    path = rng.choice(list(json_paths(config)))
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    value = parent[path[-1]]
    if rng.random() < 0.15:
        del parent[path[-1]]
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and rng.random() < 0.5:
        parent[path[-1]] = rng.choice([value * 10, value * 1000, -value, value + 1, value - 1, 0])
    else:
        parent[path[-1]] = rng.choice(HOSTILE)
    return json.dumps(config).encode()


def damage(data: bytes, rng: random.Random, is_json: bool) -> bytes:
    """Flip 1-4 bits anywhere, in the first or the last 4 KiB (headers, pickles, zip and parquet footers), or
    truncate; in a JSON file, also replace a value."""
    kind = rng.choice(["flip", "flip-head", "flip-tail", "truncate", *(["value"] * 2 * is_json)])
    if kind == "truncate":
        return data[: rng.randrange(len(data))]
    if kind == "value":
        return damage_json_value(data, rng)
    damaged = bytearray(data)
    span = min(len(data), 4096)
    for _ in range(rng.randint(1, 4)):
        index = {"flip": rng.randrange(len(data)), "flip-head": rng.randrange(span)}.get(
            kind, len(data) - 1 - rng.randrange(span)
        )
        damaged[index] ^= 1 << rng.randrange(8)
    return bytes(damaged)


def place(target: str, pristine: dict[str, Path], blob: bytes, where: Path) -> tuple[str, list[str], str]:
    """(the model argument, the flags it needs, the data file) with the damaged input in place."""
    model, flags, data = (
        str(REFERENCE / "p32" / "model.pth"),
        ["--vision", VISION, "--tokenizer", str(TOKENIZER_DIR)],
        DATA,
    )
    if target in ("pth", "safetensors"):
        model = str(where / pristine[target].name)
        Path(model).write_bytes(blob)
    elif target in ("transformers-config", "run-config"):
        model = str(shutil.copytree(pristine[target], where / "model"))
        (Path(model) / "config.json").write_bytes(blob)
        flags = ["--vision", VISION] if target == "transformers-config" else []  # the run records both
    else:
        data = where / "data.parquet"
        data.write_bytes(blob)
    return model, flags, str(data)


def command_line(command: str, model: str, flags: list[str], data: str, where: Path) -> list[str]:
    if command == "chat":
        return ["chat", "--model", model, *flags, "--prompt", "hi", "--max-new-tokens", "2", "--temperature", "0"]
    if command == "eval":
        return ["eval", "--model", model, *flags, "--data", data, "--limit", "2", "--max-new-tokens", "2"]
    if command == "convert":
        vision = ["--with-vision", VISION] if "--vision" in flags else []
        return ["convert", model, "--to", "pth", "--out", str(where / "out.pth"), *vision]
    return ["data", "check", data]


def assert_handled(result, command: str) -> None:
    assert result.exit_code in ((0, 1, 2) if command == "check" else (0, 2)), result.stderr
    assert "Traceback" not in result.stderr
    assert "(rerun with --debug for details)" not in result.stderr, result.stderr
    if result.exit_code == 2:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0], result.stderr


CORPUS = [(TARGETS[n % len(TARGETS)], n // len(TARGETS)) for n in range(CASES)]


@pytest.mark.parametrize(("target", "case"), CORPUS, ids=[f"{t.name}-{c}" for t, c in CORPUS])
def test_damaged_input_is_handled(pristine, tmp_path, target, case):
    rng = random.Random(f"{SEED}-{target.name}-{case}")
    source = pristine[target.name]
    original = (source / "config.json" if source.is_dir() else source).read_bytes()
    model, flags, data = place(target.name, pristine, damage(original, rng, target.json), tmp_path)
    command = target.commands[case % len(target.commands)]
    assert_handled(run_cli(command_line(command, model, flags, data, tmp_path)), command)


# --- the classes of crash the corpus found, each pinned by name -------------------------------------------------


def folder_with_config(pristine, where: Path, **changes) -> str:
    folder = shutil.copytree(pristine["transformers-config"], where / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return str(folder)


def test_finding_parquet_text_that_is_not_utf8(tmp_path):
    """A flipped byte in the conversations column: pyarrow raised UnicodeDecodeError for the whole block, and
    `data check` / `eval` stopped with the catch-all error. Now the row is refused as `unicode`."""
    rows = mixed_rows(3)
    path = with_invalid_utf8(tmp_path / "flipped.parquet", rows, {0: b'[{"role": "us\xe5r"}]'})
    check = run_cli(["data", "check", str(path)])
    assert check.exit_code == 1 and "row 0 of flipped.parquet (unicode: conversations is not UTF-8" in check.stderr
    model = ["--model", str(REFERENCE / "p32" / "model.pth"), "--vision", VISION, "--tokenizer", str(TOKENIZER_DIR)]
    evaluated = run_cli(["eval", *model, "--data", str(path), "--max-new-tokens", "2", "--json"])
    assert evaluated.exit_code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["skipped"] == {"unicode": 1} and "Traceback" not in evaluated.stderr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rope_scaling": {"factor": "x"}}, "rope_scaling factor must be a positive number, got 'x'"),
        ({"rope_scaling": {"original_max_position_embeddings": 0}}, "original_max_position_embeddings must be a"),
        ({"pad_token_id": 100000}, "pad_token_id 100000 is not a token of the 6400-token vocabulary"),
        ({"max_position_embeddings": 2**40}, "max_position_embeddings 1099511627776 is more than mmv supports"),
    ],
    ids=["rope-scaling-values", "rope-scaling-original-zero", "token-id-outside-the-vocabulary", "huge-positions"],
)
def test_finding_config_values_that_crashed_a_built_model(pristine, tmp_path, changes, message):
    """Typed right but unusable: YaRN numbers that are strings or zero (TypeError / ZeroDivisionError when the
    rotary tables were built), a pad token past the vocabulary (IndexError once eval padded a batch), positions
    whose rotary tables cannot be allocated. Each is now refused where the config is read."""
    model = folder_with_config(pristine, tmp_path, **changes)
    result = run_cli(["eval", "--model", model, "--vision", VISION, "--data", str(DATA), "--max-new-tokens", "2"])
    lines = result.stderr.splitlines()
    assert result.exit_code == 2 and result.stdout == "" and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {model}/config.json: ") and message in lines[0]
