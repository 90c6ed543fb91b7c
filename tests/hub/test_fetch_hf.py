"""Each way a Hub request fails, as the one sentence (and the settings it names) `HfSource.errors` turns it into:
huggingface_hub's own error classes and the HTTP library's, raised as they would be, no server needed."""

from __future__ import annotations

import pytest

from mmv.errors import MmvError
from mmv.hub.fetch_hf import MIRROR_HINT, HfSource
from mmv.hub.httplib import library

ENDPOINT = "http://hub.test"
WHERE = "model repository o/r"


def http_error(kind: str, status: int, server_message: str | None = None) -> Exception:
    import huggingface_hub.errors as hub_errors

    http = library()
    response = http.Response(status, request=http.Request("GET", f"{ENDPOINT}/api/models/o/r"))
    return getattr(hub_errors, kind)("refused", response=response, server_message=server_message)


def refusal(exc: Exception, file: str | None = None) -> MmvError:
    with pytest.raises(MmvError) as raised, HfSource(endpoint=ENDPOINT).errors("o/r", "model", "main", file):
        raise exc
    assert raised.value.__cause__ is exc
    return raised.value


HTTP_CASES = [
    (
        "GatedRepoError",
        403,
        f"{WHERE} is gated on {ENDPOINT}: accept its terms on the website, then pass a token or set HF_TOKEN",
        ("token",),
    ),
    (
        "RepositoryNotFoundError",
        401,
        f"{ENDPOINT} refused {WHERE} (401): it does not exist or needs a token; check the name, or pass a token / "
        "set HF_TOKEN",
        ("token",),
    ),
    ("RepositoryNotFoundError", 404, f"{WHERE} was not found on {ENDPOINT} (404)", ()),
    ("RevisionNotFoundError", 404, f"revision main was not found in {WHERE} on {ENDPOINT} (404)", ()),
    ("RemoteEntryNotFoundError", 404, f"config.json was not found in {WHERE} at revision main (404)", ()),
    (
        "HfHubHTTPError",
        401,
        f"{ENDPOINT} rejected the token (401 Unauthorized) for {WHERE}: check the token or HF_TOKEN, or leave the "
        "token out for public repositories",
        ("token",),
    ),
    ("HfHubHTTPError", 500, f"{ENDPOINT} answered HTTP 500 for {WHERE}", ()),
]


@pytest.mark.parametrize(("kind", "status", "message", "settings"), HTTP_CASES, ids=lambda c: str(c)[:30])
def test_each_http_refusal_is_its_own_sentence(kind, status, message, settings):
    error = refusal(http_error(kind, status), file="config.json")
    assert (str(error), error.options) == (message, settings)


def test_the_servers_own_words_are_kept_when_checked():
    error = refusal(http_error("HfHubHTTPError", 503, server_message="down for maintenance"))
    assert str(error) == f"{ENDPOINT} answered HTTP 503 for {WHERE}: down for maintenance"


def test_each_failed_request_points_to_the_mirrors():
    http = library()
    request = http.Request("GET", f"{ENDPOINT}/api/models/o/r")
    cases = [
        (http.ConnectTimeout("slow", request=request), f"{ENDPOINT} did not accept a connection within"),
        (http.ConnectError("refused", request=request), f"cannot reach {ENDPOINT} (ConnectError): check the network"),
        (http.DecodingError("garbled", request=request), f"{ENDPOINT} sent an answer for {WHERE} that cannot be read"),
    ]
    for exc, start in cases:
        error = refusal(exc)
        assert str(error).startswith(start) and str(error).endswith(MIRROR_HINT)
        assert error.options == ("endpoint", "source")
    assert "while listing model repository o/r: check the network, or use a mirror" in str(refusal(cases[0][0]))
    assert "(DecodingError); is the endpoint a Hub server? Or use a mirror" in str(refusal(cases[2][0]))


def test_offline_mode_says_how_to_go_online():
    from huggingface_hub.errors import OfflineModeIsEnabled

    error = refusal(OfflineModeIsEnabled("offline"))
    assert str(error) == f"HF_HUB_OFFLINE is set, so {WHERE} cannot be downloaded; unset it to go online"
