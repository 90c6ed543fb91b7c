"""From an image URL in a request to a checked image: data: URIs always, http(s) only when the server allows it.

A server must not fetch arbitrary URLs for whoever can reach it, so http(s) URLs are off unless `--allow-image-urls`;
then a download has a timeout, follows redirects to http(s) only, and stops at the size cap. Local paths are never
read. Every image then passes `mmv.images.open_image` (not an image, truncated, decompression bomb). A video's URL
is read by the same rules (`read_media`), under its own size cap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmv.errors import MmvError
from mmv.images import open_image
from mmv.serve.protocol import ApiError

if TYPE_CHECKING:
    from PIL import Image

DOWNLOAD_TIMEOUT_S = 10.0
CHUNK = 1 << 16


@dataclass
class MediaPolicy:
    max_bytes: int  # one image (or one video, under the video policy), after base64 decoding or download
    allow_urls: bool = False  # fetch http(s) URLs (off: a server must not fetch URLs for anyone)
    timeout_s: float = DOWNLOAD_TIMEOUT_S  # the whole download, however slowly the bytes come


@dataclass
class CheckedImage:
    image: Image.Image
    digest: str  # sha256 of the encoded bytes: the same picture in a later turn is recognised by it


def load_image(url: str, policy: MediaPolicy, label: str) -> CheckedImage:
    """Read one image_url; every refusal is an ApiError whose message names the image (`label`)."""
    data = read_media(url, policy, label, "image")
    try:
        image = open_image(data, name=label)
    except MmvError as exc:
        raise ApiError(str(exc), code="invalid_image") from None
    return CheckedImage(image, hashlib.sha256(data).hexdigest())


def read_media(url: str, policy: MediaPolicy, label: str, kind: str) -> bytes:
    """The bytes behind an image or video URL (`kind`), within the policy; a refusal names `label`."""
    if url.startswith("data:"):
        return _from_data_uri(url, policy.max_bytes, label, kind)
    if url.startswith(("http://", "https://")):
        if not policy.allow_urls:
            raise ApiError(
                f"{label}: {kind} URLs are not fetched by this server (start it with --allow-image-urls); "
                f"send the {kind} as a data: URI",
                code=f"{kind}_url_not_allowed",
            )
        return _download(url, policy, label, kind)
    raise ApiError(f"{label}: expected a data: URI or an http(s) URL; local paths are never read")


def _too_large(label: str, max_bytes: int, kind: str) -> ApiError:
    return ApiError(f"{label} is over this server's {max_bytes / 2**20:g} MB {kind} limit", code=f"{kind}_too_large")


def _from_data_uri(url: str, max_bytes: int, label: str, kind: str) -> bytes:
    header, comma, payload = url.partition(",")
    if not comma or not header.endswith(";base64"):
        example = "data:image/png;base64,..." if kind == "image" else "data:video/mp4;base64,..."
        raise ApiError(f"{label}: a data: URI must be base64 encoded ({example})")
    if len(payload) * 3 // 4 > max_bytes + 3:  # refuse before decoding
        raise _too_large(label, max_bytes, kind)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(f"{label}: the data: URI is not valid base64") from None
    if len(data) > max_bytes:
        raise _too_large(label, max_bytes, kind)
    return data


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        if not newurl.startswith(("http://", "https://")):
            raise urllib.error.URLError(f"redirect to {newurl.split(':', 1)[0]}: refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    """http and https only: no file:, ftp: or data: handler that a redirect could reach."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        _HttpOnlyRedirects(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _download(url: str, policy: MediaPolicy, label: str, kind: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "mmv-serve"})
    deadline = time.monotonic() + policy.timeout_s
    try:
        with _opener().open(request, timeout=policy.timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                raise _too_large(label, policy.max_bytes, kind)
            data = bytearray()
            while chunk := response.read(CHUNK):
                data += chunk
                if len(data) > policy.max_bytes:
                    raise _too_large(label, policy.max_bytes, kind)
                if time.monotonic() > deadline:
                    raise ApiError(
                        f"{label}: the download took over {policy.timeout_s:g} s", code=f"{kind}_download_failed"
                    )
            return bytes(data)
    except ApiError:
        raise
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:  # urllib answers a redirect to file: and the like with the 3xx itself
            raise ApiError(
                f"{label}: a redirect away from http(s) was refused", code=f"{kind}_download_failed"
            ) from None
        raise ApiError(f"{label}: downloading it failed with HTTP {exc.code}", code=f"{kind}_download_failed") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(f"{label}: downloading it failed ({reason})", code=f"{kind}_download_failed") from None
