"""Rows with `video_bytes`: frames sampled, placed after their timestamps, labelled, collated and checked like images;
a bad video is a skipped `image` row, never a crash."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from mmv.data.check import check_file
from mmv.data.labels import LabelBuilder
from mmv.data.loader import TrainData
from mmv.data.parquet import iter_rows
from mmv.data.rows import BadRow
from mmv.data.validate import RowValidator
from mmv.data.writer import ParquetRows
from mmv.errors import MmvError
from mmv.model.loss import IGNORE_INDEX
from mmv.synth.clips import mp4_bytes
from mmv.tokenizer import load_tokenizer
from tests.conftest import TOKENIZER_DIR, load_fixture_model
from tests.data.parquet_files import jpeg, make_spec

RUN = 64


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TOKENIZER_DIR)


def clip(frames: int = 8) -> bytes:
    """Frame k is a grey of level 30k, so a sampled frame can be told from its picture."""
    return mp4_bytes([Image.new("RGB", (64, 64), (30 * k, 30 * k, 30 * k)) for k in range(frames)])


def zero_frames() -> bytes:
    """An AVI file with a video stream and not one frame."""
    import io

    import av

    buffer = io.BytesIO()
    container = av.open(buffer, mode="w", format="avi")
    stream = container.add_stream("mpeg4", rate=4)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()  # the header and the stream, then no frame
    container.close()
    return buffer.getvalue()


def messages(question: str = "Is it getting lighter?") -> list[dict[str, str]]:
    return [{"role": "user", "content": f"<image>\n{question}"}, {"role": "assistant", "content": "Yes."}]


def conversation(question: str = "Is it getting lighter?") -> str:
    return json.dumps(messages(question))


def test_a_video_row_becomes_its_frames_each_after_its_timestamp(tokenizer):
    validator = RowValidator(LabelBuilder(tokenizer, 1024), frames=4)
    valid = validator.validate(conversation(), None, video_bytes=clip(8))
    assert valid.messages[0]["content"] == (
        "Frame 1 at 0.2 s: <image>\nFrame 2 at 0.8 s: <image>\nFrame 3 at 1.2 s: <image>\nFrame 4 at 1.8 s: <image>\n"
        "Is it getting lighter?"
    )
    assert [round(image.getpixel((32, 32))[0] / 30) for image in valid.images] == [1, 3, 5, 7]
    ids, labels = valid.sample.input_ids, valid.sample.labels
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert ids.count(image_id) == 4 * RUN
    assert all(labels[i] == IGNORE_INDEX for i, token in enumerate(ids) if token == image_id)
    supervised = [t for t, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    assert tokenizer.decode(supervised) == "<think>\n\n</think>\n\nYes.<|im_end|>\n"


def test_a_clip_shorter_than_the_frames_asked_gives_each_frame_once(tokenizer):
    valid = RowValidator(LabelBuilder(tokenizer, 2048), frames=8).validate(conversation(), None, video_bytes=clip(3))
    assert len(valid.images) == 3 and valid.messages[0]["content"].count("<image>") == 3


@pytest.mark.parametrize(
    ("video", "why"),
    [
        (b"", "not a video"),  # empty
        (b"plain text, no video at all", "not a video"),
        (clip(8)[:300], None),  # truncated inside the frames
        ("zero frames", "has no frames"),
    ],
)
def test_a_bad_video_is_an_image_problem_of_its_row(video, why):
    video = zero_frames() if video == "zero frames" else video
    with pytest.raises(BadRow) as caught:
        RowValidator(frames=4).validate(conversation(), None, video_bytes=video)
    assert caught.value.kind == "image" and str(caught.value).startswith("video in video_bytes ")
    if why is not None:
        assert why in str(caught.value)


def test_a_video_row_holds_no_images_and_one_marker():
    with pytest.raises(BadRow) as caught:
        RowValidator().validate(conversation(), [jpeg()], video_bytes=clip())
    assert caught.value.kind == "schema"
    two = json.dumps([{"role": "user", "content": "<image><image>Hm?"}, {"role": "assistant", "content": "x"}])
    with pytest.raises(BadRow) as caught:
        RowValidator().validate(two, None, video_bytes=clip())
    assert caught.value.kind == "markers"
    with pytest.raises(BadRow) as caught:
        RowValidator().validate(conversation(), None, video_bytes="not bytes")
    assert caught.value.kind == "schema"


def test_frames_out_of_range_are_refused():
    with pytest.raises(MmvError, match="frames must be between 1 and 64"):
        RowValidator(frames=0)


def write_video_file(path, rows: list[tuple[list, list[bytes], bytes | None]]):
    with ParquetRows(path, video=True) as out:
        for turns, images, video in rows:
            out.add(turns, images, video)
    return path


def test_the_writer_and_reader_keep_the_video_column(tmp_path):
    image_turns = [{"role": "user", "content": "<image>\nWhat?"}, {"role": "assistant", "content": "Red."}]
    path = write_video_file(tmp_path / "v.parquet", [(messages(), [], clip(4)), (image_turns, [jpeg()], None)])
    assert pq.read_schema(path).names == ["conversations", "image_bytes", "video_bytes"]
    rows = list(iter_rows(path))
    assert [r[1] for r in rows] == [None, jpeg()] and rows[0][2] == clip(4) and rows[1][2] is None


def test_the_loader_trains_on_video_rows_beside_image_rows_and_skips_bad_videos(tmp_path):
    image_turns = [{"role": "user", "content": "<image>\nWhat?"}, {"role": "assistant", "content": "Red."}]
    path = write_video_file(
        tmp_path / "v.parquet",
        [(messages(), [], clip(8)), (image_turns, [jpeg()], None), (messages(), [], b"not a video")],
    )
    for pack in (False, True):
        spec = make_spec([path], max_seq_len=600, frames=4, pack=pack, random_system_prompt=False, max_bad_fraction=1)
        data = TrainData(spec)
        [batch] = list(data.batches(0, 0, 3))
        assert batch.pixel_inputs["pixel_values"].shape[0] == 4 + 1
        assert int((batch.input_ids == 12).sum()) == 5 * RUN
        assert [s.kind for s in batch.skipped] == ["image"]
        assert data.stats()["image"] == 1 and data.stats()["bad"] == 1
        model = load_fixture_model("p32")
        with torch.no_grad():
            out = model(batch.input_ids, pixel_inputs=batch.pixel_inputs, labels=batch.labels)
        assert torch.isfinite(out.loss)


def test_data_check_counts_the_frames_in_the_length(tmp_path, tokenizer):
    path = write_video_file(tmp_path / "v.parquet", [(messages(), [], clip(8)), (messages(), [], clip(8)[:200])])
    four, eight = check_file(path, tokenizer, 1024, frames=4), check_file(path, tokenizer, 1024, frames=8)
    assert four.with_video == 1 and four.problems.count(["image"]) == 1
    # four more runs of placeholders and four more "Frame k at t s: " lines of about ten tokens each
    assert 4 * RUN + 4 * 8 <= eight.lengths[0] - four.lengths[0] <= 4 * RUN + 4 * 12
    short = check_file(path, tokenizer, 300, frames=8)
    assert short.problems.count(["too_long"]) == 1


def test_video_rows_cannot_come_from_a_feature_cache():
    def cached(images, row):
        return []

    with pytest.raises(MmvError, match="a feature cache holds whole images, not a video's frames") as caught:
        RowValidator(images=cached).validate(conversation(), None, video_bytes=clip(4))
    assert caught.value.options == ("feature_cache",)
