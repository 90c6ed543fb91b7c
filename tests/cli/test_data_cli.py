"""`mmv data synth | from-llava | check | preview | rechunk | cache-features`, run as real subprocesses on files the
tests write."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmv.data.rows import parse_row
from mmv.images import open_image
from tests.conftest import TOKENIZER_DIR


def mmv(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmv.cli.app", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def jpeg(size=(64, 64), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def conv(*turns: str) -> str:
    roles = ("user", "assistant")
    return json.dumps([{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)])


def write_parquet(path, rows, multi=False):
    images = pa.list_(pa.binary()) if multi else pa.binary()
    table = pa.table(
        {"conversations": [r[0] for r in rows], "image_bytes": [r[1] for r in rows]},
        schema=pa.schema([("conversations", pa.string()), ("image_bytes", images)]),
    )
    pq.write_table(table, path)
    return path


@pytest.mark.slow
def test_synth_writes_the_three_splits_and_a_tokenizer(tmp_path):
    result = mmv("data", "synth", "--out", tmp_path / "d", "--n", "40", "--eval-n", "9", "--seed", "1", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows"] == {"pretrain": 40, "sft": 40, "eval": 9}
    assert 300 < summary["vocab_size"] < 1024
    for split in ("pretrain", "sft", "eval"):
        assert pq.read_metadata(tmp_path / "d" / f"{split}.parquet").num_rows == summary["rows"][split]
    # the tokenizer folder gets the permissions of a plain mkdir, not mkdtemp's private 0700
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "d" / "tokenizer").stat().st_mode & 0o777 == 0o777 & ~umask
    # what synth writes passes its own check, token lengths included
    check = mmv(
        "data", "check", *(tmp_path / "d").glob("*.parquet"), "--tokenizer", tmp_path / "d" / "tokenizer", "--json"
    )
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["ok"] is True


def test_from_llava_converts_and_skips_missing_and_corrupt_images(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    Image.new("RGB", (400, 300), (10, 200, 10)).save(images / "sub" / "big.png")
    (images / "red.jpg").write_bytes(jpeg())
    (images / "broken.jpg").write_bytes(jpeg()[:200])  # truncated JPEG
    human, gpt = "human", "gpt"
    records = [
        {
            "id": "a",
            "image": "sub/big.png",
            "conversations": [{"from": human, "value": "<image>\nWhat is it?"}, {"from": gpt, "value": "Green."}],
        },
        {
            "id": "b",
            "image": "missing.jpg",
            "conversations": [{"from": human, "value": "<image>\nHi"}, {"from": gpt, "value": "x"}],
        },
        {
            "id": "c",
            "image": "broken.jpg",
            "conversations": [{"from": human, "value": "<image>\nHi"}, {"from": gpt, "value": "x"}],
        },
        {
            "id": "d",
            "image": ["red.jpg", "sub/big.png"],
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": human, "value": "<image>\n<image>\nSame?"},
                {"from": gpt, "value": "No."},
                {"from": human, "value": "Why?"},
                {"from": gpt, "value": "Colours."},
            ],
        },
        {"id": "e", "conversations": [{"from": human, "value": "No picture here."}, {"from": gpt, "value": "Ok."}]},
        {
            "id": "f",
            "image": "red.jpg",
            "conversations": [{"from": human, "value": "Marker missing"}, {"from": gpt, "value": "x"}],
        },
    ]
    source = tmp_path / "llava.json"
    source.write_text(json.dumps(records, indent=1))
    out = tmp_path / "out.parquet"
    result = mmv("data", "from-llava", source, images, "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["records"], summary["written"]) == (6, 3)
    assert summary["skipped"] == {"missing image": 1, "corrupt image": 1, "markers": 1}
    assert any(e.startswith("record 1 (missing image: ") and "missing.jpg" in e for e in summary["examples"])

    table = pq.read_table(out)
    assert table.schema.field("image_bytes").type == pa.list_(pa.binary())  # record d has two images
    rows = [
        parse_row(c, b)
        for c, b in zip(table.column("conversations").to_pylist(), table.column("image_bytes").to_pylist(), strict=True)
    ]
    (first, first_images), (two, two_images), (text, text_images) = rows
    assert first == [{"role": "user", "content": "<image>\nWhat is it?"}, {"role": "assistant", "content": "Green."}]
    assert open_image(first_images[0]).size == (256, 192)  # shrunk to 256 on the long side, aspect kept
    assert [m["role"] for m in two] == ["system", "user", "assistant", "user", "assistant"]
    assert [open_image(b).size for b in two_images] == [(64, 64), (256, 192)]
    assert text_images == [] and text[0]["content"] == "No picture here."

    # JSON lines give the same rows
    lines = tmp_path / "llava.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    again = mmv("data", "from-llava", lines, images, "--out", tmp_path / "again.parquet", "--json")
    assert json.loads(again.stdout)["written"] == 3
    assert pq.read_table(tmp_path / "again.parquet").equals(table)


def test_from_llava_with_nothing_usable_fails_and_writes_nothing(tmp_path):
    (tmp_path / "images").mkdir()
    source = tmp_path / "llava.json"
    source.write_text(
        json.dumps(
            [
                {
                    "image": "gone.jpg",
                    "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}],
                }
            ]
        )
    )
    result = mmv("data", "from-llava", source, tmp_path / "images", "--out", tmp_path / "out.parquet")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "1 missing image" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "llava.json"]


def test_from_llava_skips_image_paths_outside_the_folder_unless_allowed(tmp_path):
    images, secret = tmp_path / "images", tmp_path / "secret"
    (images / "sub").mkdir(parents=True)
    secret.mkdir()
    (images / "in.jpg").write_bytes(jpeg())
    (secret / "x.jpg").write_bytes(jpeg(colour=(0, 0, 250)))
    (images / "linked.jpg").symlink_to(secret / "x.jpg")  # a link inside the folder is an ordinary file name

    def record(image: str) -> dict:
        return {
            "image": image,
            "conversations": [{"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "x"}],
        }

    names = ["in.jpg", "../secret/x.jpg", str(secret / "x.jpg"), "sub/../../secret/x.jpg", "linked.jpg"]
    source = tmp_path / "llava.jsonl"
    source.write_text("\n".join(json.dumps(record(name)) for name in names) + "\n")
    result = mmv("data", "from-llava", source, images, "--out", tmp_path / "a.parquet", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["written"], summary["skipped"]) == (2, {"outside image folder": 3})
    assert summary["examples"][0].startswith("record 1 (outside image folder: image ../secret/x.jpg is outside ")
    assert "--allow-outside" in summary["examples"][0] and "--allow-outside" in result.stderr

    allowed = mmv("data", "from-llava", source, images, "--out", tmp_path / "b.parquet", "--allow-outside", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert (json.loads(allowed.stdout)["written"], json.loads(allowed.stdout)["skipped"]) == (5, {})
    colours = [open_image(b).getpixel((5, 5)) for b in pq.read_table(tmp_path / "b.parquet")["image_bytes"].to_pylist()]
    assert [c[2] > 200 for c in colours] == [False, True, True, True, True]


def test_an_output_equal_to_an_input_is_refused_naming_both(tmp_path):
    data = write_parquet(tmp_path / "rows.parquet", [(conv("<image>\nColour?", "Red."), jpeg())])
    before = data.read_bytes()
    preview = mmv("data", "preview", data, "--out", data)
    assert preview.returncode == 2 and f"the output {data} is the input {data}" in preview.stderr
    assert preview.stderr.rstrip().endswith("(option: --out)")
    assert len(preview.stderr.strip().splitlines()) == 1 and data.read_bytes() == before

    (tmp_path / "images").mkdir()
    source = tmp_path / "llava.json"
    source.write_text(
        json.dumps([{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}])
    )
    text = source.read_text()
    llava = mmv("data", "from-llava", source, tmp_path / "images", "--out", source)
    assert llava.returncode == 2 and f"the output {source} is the input {source}" in llava.stderr
    assert llava.stderr.rstrip().endswith("(option: --out)")
    assert source.read_text() == text


@pytest.fixture()
def bad_dataset(tmp_path):
    good = conv("<image>\nColour?", "Red.")
    rows = [
        (good, jpeg()),
        ('[{"role": "user", ', jpeg()),  # json
        (json.dumps({"role": "user"}), jpeg()),  # schema: not a list
        (conv("<image>\nHi"), jpeg()),  # schema: no assistant turn
        (conv("<image>\n<image>\nTwo?", "One."), jpeg()),  # markers: two markers, one image
        (good, jpeg()[:300]),  # image: truncated
        (good, b"not an image at all"),  # image: not an image
        (conv("<image>\n" + "word " * 300, "Long."), jpeg()),  # too_long: the image fits, the answer does not
        (conv("word " * 300 + "\n<image>", "Long."), jpeg()),  # too_long: the image run is cut
        (conv("Text only question", "Answer."), jpeg((8, 8), (0, 0, 0))),
        (conv("Tell a story.", "word " * 300), jpeg((8, 8), (0, 0, 0))),  # usable: the answer is cut, not lost
    ]
    return write_parquet(tmp_path / "bad.parquet", rows)


@pytest.mark.slow
def test_check_names_each_kind_of_bad_row_and_exits_1(bad_dataset, tmp_path):
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"text": ["hello"]}), wrong)
    result = mmv("data", "check", bad_dataset, wrong, "--tokenizer", TOKENIZER_DIR, "--max-seq-len", "200", "--json")
    assert result.returncode == 1, result.stderr
    bad, columns = json.loads(result.stdout)["files"]
    assert bad["problems"] == {
        "file": 0,
        "json": 1,
        "unicode": 0,
        "schema": 2,
        "markers": 1,
        "image": 2,
        "too_long": 2,
    }
    assert (bad["rows"], bad["checked"], bad["bad"], bad["truncated"], bad["rendered"]) == (11, 11, 8, 1, True)
    assert bad["text_only"] == 2 and bad["with_images"] == 1
    assert bad["tokens"]["max"] > 200 and bad["tokens"]["min"] > 10
    assert any(e.startswith("row 4 of bad.parquet (markers: 2 <image> marker(s)") for e in bad["examples"])
    assert columns["problems"]["file"] == 1 and columns["examples"][0].startswith("wrong.parquet (file: ")
    assert "expected conversations (JSON string or list) and image_bytes" in columns["examples"][0]
    assert "bad: markers" in result.stderr and "9 problem(s) found" in result.stderr
    assert "were skipped" not in result.stderr

    limited = mmv("data", "check", bad_dataset, "--limit", "1", "--json")
    assert limited.returncode == 0 and json.loads(limited.stdout)["files"][0]["checked"] == 1
    assert json.loads(limited.stdout)["files"][0]["rendered"] is False
    assert "no --tokenizer: the checks on the rendered chat template" in limited.stderr


def test_check_measures_lengths_with_the_models_image_token_count(tmp_path, cli):
    """Each image renders as the model's placeholder run: a 16-token model's rows are 48 tokens per image shorter."""
    data = write_parquet(tmp_path / "d.parquet", [(conv("<image>\nWhat is it?", "A red square."), jpeg())])
    lengths = {}
    for tokens in ("16", "64"):
        result = cli(
            ["--json", "data", "check", str(data), "--tokenizer", str(TOKENIZER_DIR), "--tokens-per-image", tokens]
        )
        assert result.exit_code == 0, result.stderr
        lengths[tokens] = json.loads(result.stdout)["files"][0]["tokens"]["max"]
    assert lengths["64"] - lengths["16"] == 48


def test_check_of_a_missing_file_is_one_line_and_exit_2(tmp_path):
    result = mmv("data", "check", tmp_path / "nope.parquet")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nope.parquet" in result.stderr


def test_preview_draws_a_contact_sheet(bad_dataset, tmp_path):
    out = tmp_path / "sheet.png"
    result = mmv("data", "preview", bad_dataset, "--out", out, "--rows", "6", "--columns", "3", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 6
    sheet = Image.open(out)
    assert sheet.format == "PNG" and sheet.width > 3 * 224 and sheet.height > 2 * 224
    # the first cell shows the row's red image; the second (bad JSON) a red "unusable" box
    assert sheet.convert("RGB").getpixel((8 + 112, 8 + 112)) == pytest.approx((200, 30, 30), abs=12)


def test_rechunk_copies_into_small_row_groups_and_never_overwrites(tmp_path):
    rows = [(conv(f"<image>\nWhat is {i}?", f"It is {i}."), jpeg()) for i in range(50)]
    source = write_parquet(tmp_path / "coarse.parquet", rows)
    before = source.read_bytes()
    result = mmv("data", "rechunk", source, "--out", tmp_path / "fine.parquet", "--group-rows", "16", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows"] == 50 and summary["group_rows"] == 16
    fine = pq.ParquetFile(tmp_path / "fine.parquet")
    assert [fine.metadata.row_group(i).num_rows for i in range(fine.num_row_groups)] == [16, 16, 16, 2]
    assert fine.read().equals(pq.read_table(source))

    again = mmv("data", "rechunk", source, "--out", tmp_path / "fine.parquet")
    assert again.returncode == 2 and "exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert source.read_bytes() == before


def test_training_warns_about_a_coarse_file(tmp_path, capsys):
    from mmv.data.source import COARSE_ROWS, ParquetSource
    from mmv.train.run import warn_coarse_files

    rows = [(conv(f"Say {i}.", f"{i}"), None) for i in range(COARSE_ROWS + 1)]
    coarse = write_parquet(tmp_path / "coarse.parquet", rows)
    fine = write_parquet(tmp_path / "fine.parquet", rows[:10])
    warn_coarse_files(ParquetSource([str(coarse), str(fine)]))
    err = capsys.readouterr().err
    assert f"mmv data rechunk {coarse} --out FILE" in err and "fine.parquet" not in err


@pytest.mark.slow
def test_cache_features_writes_reuses_and_refuses_in_one_line(tmp_path):
    from mmv.data.features import FeatureCache
    from tests.train.helpers import VISION_DIR

    data = tmp_path / "d.parquet"
    write_parquet(data, [(conv("<image>\nwhat?", "a red square"), jpeg()), (conv("<image>\nand?", "x"), b"broken")])
    out = tmp_path / "d.features"
    built = mmv("data", "cache-features", data, "--vision", VISION_DIR, "--out", out, "--device", "cpu", "--json")
    assert built.returncode == 0, built.stderr
    summary = json.loads(built.stdout)
    assert summary | {"seconds": 0, "bytes": 0} == {
        "out": str(out), "rows": 2, "images": 1, "image_failures": 1, "bytes": 0, "dtype": "float16", "reused": False,
        "seconds": 0,
    }  # fmt: skip
    assert summary["bytes"] == out.stat().st_size and FeatureCache(out).count(0) == 1
    again = mmv("data", "cache-features", data, "--vision", VISION_DIR, "--out", out, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["reused"] is True
    before = out.read_bytes()
    write_parquet(data, [(conv("<image>\nwhat?", "a blue square"), jpeg(colour=(0, 0, 200)))])
    refused = mmv("data", "cache-features", data, "--vision", VISION_DIR, "--out", out)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "was built from other data than d.parquet" in refused.stderr and out.read_bytes() == before
    wrong = mmv("data", "cache-features", data, "--vision", VISION_DIR, "--cache-dtype", "int8")
    assert wrong.returncode == 2 and "unknown --cache-dtype 'int8'" in wrong.stderr
