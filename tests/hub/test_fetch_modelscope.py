"""Each way a ModelScope request fails without an HTTP answer, as the one sentence (and the settings it names)
`ModelScopeSource.errors` turns it into: the HTTP library's own exceptions, no server needed."""

from __future__ import annotations

import pytest

from mmv.errors import MmvError
from mmv.hub.fetch_modelscope import ModelScopeSource
from mmv.hub.httplib import library

ENDPOINT = "http://modelscope.test"
ADVICE = "check the network, or try the hf source (with a mirror endpoint)"


def failure(exc: Exception) -> MmvError:
    with pytest.raises(MmvError) as raised, ModelScopeSource(endpoint=ENDPOINT).errors("gongjy/r", "master"):
        raise exc
    assert raised.value.__cause__ is exc
    return raised.value


def test_each_failed_request_is_its_own_sentence():
    http = library()
    request = http.Request("GET", f"{ENDPOINT}/api/v1/models/gongjy/r/repo/files")
    timeout = failure(http.ReadTimeout("slow", request=request))
    assert str(timeout).startswith(f"{ENDPOINT} sent nothing for ") and str(timeout).endswith(
        f"(ReadTimeout) while listing gongjy/r: {ADVICE}"
    )
    unreachable = failure(http.ConnectError("refused", request=request))
    assert str(unreachable) == f"cannot reach {ENDPOINT} (ConnectError) to list gongjy/r: {ADVICE}"
    assert timeout.options == unreachable.options == ("source", "endpoint")
    garbled = failure(http.DecodingError("garbled", request=request))
    assert str(garbled) == (
        f"{ENDPOINT} sent an answer for gongjy/r that cannot be read (DecodingError); is the endpoint a ModelScope "
        "server?"
    )
    assert garbled.options == ("endpoint",)
