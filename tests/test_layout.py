"""Config files of every kind are read one way: a JSON object or one clear sentence."""

from __future__ import annotations

import pytest

from mmv.errors import MmvError
from mmv.layout import read_json_object


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[1, 2]", "holds a list, expected a JSON object"),
        (b'"text"', "holds a string, expected a JSON object"),
        (b"3", "holds a number, expected a JSON object"),
        (b"null", "holds null, expected a JSON object"),
        (b"{not json", "is not valid JSON"),
        (b"\xff\xfe{}", "is not valid JSON"),
    ],
)
def test_anything_but_an_object_is_refused(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(MmvError, match=message):
        read_json_object(path)


def test_a_missing_file_and_an_object(tmp_path):
    with pytest.raises(MmvError, match="does not exist"):
        read_json_object(tmp_path / "config.json")
    (tmp_path / "config.json").write_text('{"a": 1}')
    assert read_json_object(tmp_path / "config.json") == {"a": 1}
