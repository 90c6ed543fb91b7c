"""One verdict per row: training, `mmv data check` and `mmv eval` skip each bad row under the same kind.

Each case of BAD_ROWS once crashed or passed one of the three while another skipped it; here each goes through the
three tools' own entry points (`TrainData`, `check_file`, eval's `ItemReader`) between two good rows.
"""

from __future__ import annotations

import json

import pytest

from mmv.data.check import check_file
from mmv.data.labels import LabelBuilder, Preprocessing
from mmv.data.loader import TrainData
from mmv.data.rows import BadRow, parse_row
from mmv.data.skips import Skips
from mmv.data.validate import RowValidator
from mmv.eval.items import ItemReader, PromptFormat
from mmv.tokenizer import load_tokenizer
from tests.conftest import TOKENIZER_DIR
from tests.data.parquet_files import BAD_ROWS, image_row, make_spec, text_row, write_parquet

MAX_SEQ_LEN = 256


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TOKENIZER_DIR)


def verdict(validator: RowValidator, row: dict) -> tuple[str, str]:
    with pytest.raises(BadRow) as caught:
        validator.validate(row["conversations"], row["image_bytes"])
    return caught.value.kind, str(caught.value)


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_each_bad_row_gets_one_kind_in_training_check_and_eval(case, tokenizer, tmp_path):
    row, kind, reason = BAD_ROWS[case]
    path = write_parquet(tmp_path / "case.parquet", [image_row(0), row, text_row(2)])

    data = TrainData(make_spec([path], max_seq_len=MAX_SEQ_LEN, max_bad_fraction=1.0))
    batches = list(data.batches(0, 0, 3))
    assert [(s.row, s.kind) for b in batches for s in b.skipped] == [(1, kind)]
    assert sorted(r for b in batches for r in b.rows) == [0, 2]
    assert reason in data.skips.examples[0] and data.skips.examples[0].startswith("row 1 of case.parquet")

    checked = check_file(path, tokenizer, MAX_SEQ_LEN)
    assert {k: n for k, n in checked.problems.counts.items() if n} == {kind: 1}
    assert (
        checked.problems.examples[0].startswith(f"row 1 of case.parquet ({kind}: ")
        and reason in (checked.problems.examples[0])
    )

    skips = Skips()
    items = list(ItemReader(tokenizer, PromptFormat()).items([path], skips))
    assert [item.row for item in items] == [0, 2]
    assert skips.counts == {kind: 1} and reason in skips.examples[0]


@pytest.mark.parametrize("case", [c for c, (_, kind, _) in BAD_ROWS.items() if kind != "too_long"])
def test_checks_without_a_tokenizer_catch_all_but_the_length(case):
    row, kind, reason = BAD_ROWS[case]
    found, message = verdict(RowValidator(), row)
    assert found == kind and reason in message


def test_the_validator_builds_what_training_builds(tokenizer):
    """Same ids and labels as LabelBuilder with training's seeded preprocessing; the images decoded in order."""
    row = image_row(3, images=2)
    builder, preprocessing = LabelBuilder(tokenizer, MAX_SEQ_LEN), Preprocessing(1.0, 1.0)
    valid = RowValidator(builder, preprocessing, seed=5).validate(row["conversations"], row["image_bytes"], 7, 2)
    messages, _ = parse_row(row["conversations"], row["image_bytes"])
    system, drop = preprocessing.choose(5, 2, 7, messages)
    assert system is not None and drop
    assert valid.sample == builder.build(messages, 2, system, drop) and valid.messages == messages
    assert [image.size for image in valid.images] == [(32, 32), (32, 32)]
    assert valid.sample.length == len(valid.sample.input_ids) < MAX_SEQ_LEN

    plain = RowValidator().validate(row["conversations"], row["image_bytes"])
    assert plain.sample is None and len(plain.images) == 2 and not RowValidator().renders


def test_check_without_a_tokenizer_says_the_rendered_checks_did_not_run(tmp_path):
    long_row = BAD_ROWS["longer than the model's positions"][0]
    path = write_parquet(tmp_path / "a.parquet", [image_row(0), long_row])
    report = check_file(path)
    assert report.summary()["rendered"] is False and report.problems.total == 0 and report.lengths.tolist() == []


def test_eval_skips_a_prompt_without_room_for_its_answer(tokenizer, tmp_path):
    """A row training keeps can still not fit the model once the new tokens are added: too_long, named."""
    path = write_parquet(tmp_path / "a.parquet", [text_row(0), image_row(1)])
    skips = Skips()
    fits = list(ItemReader(tokenizer, PromptFormat(positions=120, max_new_tokens=16)).items([path], skips))
    assert [item.row for item in fits] == [0, 1] and skips.total == 0
    image_item = fits[1]
    assert image_item.prompt_ids.count(12) == 64 and image_item.answer_ids[-1] == tokenizer.eos_token_id
    room = len(image_item.prompt_ids) + 16
    items = list(ItemReader(tokenizer, PromptFormat(positions=room - 1, max_new_tokens=16)).items([path], skips))
    assert [item.row for item in items] == [0]
    assert skips.counts == {"too_long": 1} and skips.examples[0].startswith("row 1 of a.parquet (too_long: the prompt")


@pytest.mark.slow
def test_check_sft_and_eval_count_the_same_bad_rows(tmp_path):
    """The proof through the three commands: one parquet with every case of BAD_ROWS among 199 good rows."""
    from mmv.train.config import stage_config
    from mmv.train.run import RunRequest, run
    from tests.conftest import one_thread
    from tests.train.helpers import VISION_DIR, VLM_PTH, caption_row, mmv
    from tests.train.helpers import text_row as counting_row

    good = [counting_row(i) if i % 5 == 4 else caption_row(i) for i in range(199)]
    bad = [row for row, _, _ in BAD_ROWS.values()]
    rows = good[:]
    for k, row in enumerate(bad):
        rows.insert(1 + 25 * k, row)
    path = write_parquet(tmp_path / "mixed.parquet", rows, row_group_size=50)
    expected: dict[str, int] = {}
    for _, kind, _ in BAD_ROWS.values():
        expected[kind] = expected.get(kind, 0) + 1

    def counted(counts: dict[str, int]) -> dict[str, int]:
        return {kind: n for kind, n in counts.items() if n and kind not in ("rows", "bad")}

    check = mmv(["data", "check", str(path), "--tokenizer", str(TOKENIZER_DIR), "--max-seq-len", "256", "--json"])
    assert check.returncode == 1, check.stderr
    [report] = json.loads(check.stdout)["files"]
    assert counted(report["problems"]) == expected and report["checked"] == 207

    with one_thread():
        summary = run(
            RunRequest(
                cfg=stage_config("sft", init=str(VLM_PTH), freeze="none", batch_size=32, epochs=1, max_seq_len=256),
                out=tmp_path / "run",
                data=[str(path)],
                vision=str(VISION_DIR),
                tokenizer=str(TOKENIZER_DIR),
                data_options={"max_bad_fraction": 0.05},  # 8 of 207 rows: over the default 1%
            ),
            "sft",
        )
    assert counted(summary["data"]) == expected and summary["data"]["rows"] == 207
    assert summary["data"]["bad"] == sum(n for kind, n in expected.items() if kind != "too_long")

    evaluated = mmv(["eval", "--model", str(tmp_path / "run"), "--data", str(path), "--max-new-tokens", "2", "--json"])
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["skipped"] == expected and result["evaluated"] == 199
