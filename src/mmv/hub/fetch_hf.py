"""The Hugging Face Hub source: listing over huggingface_hub's HTTP session, errors turned into one sentence.

The listing follows what `huggingface_hub.snapshot_download` does: the repository info pins the revision to a
commit, then the recursive tree API (paged by `Link: rel="next"`) gives every file's size, git blob id and, for LFS
files, its sha256. Files are then fetched from `<endpoint>/<repo>/resolve/<commit>/<path>`, so a name never mixes
files of two commits. The requests are made here rather than through `HfApi.repo_info` / `list_repo_tree` because
those cannot bound the tree listing's time (no timeout reaches it); the session, headers and error classification
(`hf_raise_for_status`) are huggingface_hub's own. Every value of the answers is checked (mmv.hub.validate).
`HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE` mean what they mean to huggingface_hub.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

from mmv import __version__
from mmv.errors import MmvError
from mmv.hub import validate
from mmv.hub.httplib import library
from mmv.hub.limits import LISTING_FILES, Timeouts, get_metadata, read_small, silent
from mmv.hub.listing import Listing, select
from mmv.hub.registry import Part
from mmv.hub.transfer import RemoteFile

MIRROR_HINT = "use a mirror endpoint or HF_ENDPOINT (e.g. https://hf-mirror.com), or the modelscope source"
COMMIT_LENGTH = (40, 40)  # the Hub names commits by their full git sha1


def hf_endpoint(endpoint: str | None) -> str:
    """--endpoint, else HF_ENDPOINT as set now (huggingface_hub reads it only at import), else the public Hub."""
    from huggingface_hub import constants

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


class HfSource:
    name = "hf"

    def __init__(self, endpoint: str | None = None, token: str | None = None, timeouts: Timeouts | None = None) -> None:
        from huggingface_hub.utils import build_hf_headers

        self.endpoint = hf_endpoint(endpoint)
        self.timeouts = timeouts or Timeouts()
        # token None: huggingface_hub falls back to HF_TOKEN, then the saved login
        self.headers = build_hf_headers(token=token or None, library_name="mmv", library_version=__version__)

    def session(self) -> Any:
        from huggingface_hub.utils import get_session

        return get_session()

    def list(self, part: Part, revision: str | None) -> Listing:
        from huggingface_hub import hf_hub_url

        rev = revision or "main"
        describe = f"{part.repo_type} repository {part.repo_id} at revision {rev} on {self.endpoint}"
        api = f"{self.endpoint}/api/{part.repo_type}s/{part.repo_id}"
        with self.errors(part.repo_id, part.repo_type, rev):
            info = self._json(f"{api}/revision/{quote(rev, safe='')}", {}, f"the repository info of {part.repo_id}")
            if not isinstance(info, dict):
                raise MmvError(
                    f"{describe}: the repository info is not a JSON object; is the endpoint a Hub server?",
                    option="endpoint",
                )
            commit = validate.commit(info.get("sha"), COMMIT_LENGTH, describe)
            tree = self._tree(f"{api}/tree/{commit}", part.repo_id, describe)
        entries = {entry["path"]: entry for entry in tree}
        files = []
        for path in select(sorted(entries), part, describe):
            entry = entries[path]
            size = validate.size(entry.get("size"), path, describe)
            lfs = entry.get("lfs")
            if lfs is not None:
                if not isinstance(lfs, dict):
                    raise MmvError(f"{describe} lists LFS details of {path} that are not an object")
                if validate.size(lfs.get("size"), path, describe) != size:
                    raise MmvError(f"{describe} lists two different sizes for {path}; refusing to download from it")
                sha256 = validate.digest(lfs.get("oid"), 64, "LFS sha256", path, describe)
                git_sha1 = None
            else:
                sha256 = None
                git_sha1 = validate.digest(entry.get("oid"), 40, "git blob id", path, describe)
            url = hf_hub_url(part.repo_id, path, repo_type=part.repo_type, revision=commit, endpoint=self.endpoint)
            files.append(RemoteFile(path, url, size, sha256, git_sha1))
        return Listing(self.name, part.repo_id, part.repo_type, rev, commit, files)

    def _tree(self, url: str, repo_id: str, describe: str) -> list[dict[str, Any]]:
        """Every file entry of the recursive tree, following the Hub's `Link: rel="next"` pages on this server."""
        files: list[dict[str, Any]] = []
        params: dict[str, Any] | None = {"recursive": "true", "expand": "false"}
        seen = 0
        while url:
            response = self._get(url, params, f"the file listing of {repo_id}")
            page = _json_of(response, describe)
            if not isinstance(page, list):
                raise MmvError(
                    f"{describe}: the file listing is not a JSON list; is the endpoint a Hub server?", option="endpoint"
                )
            seen += len(page)
            if seen > LISTING_FILES:
                raise MmvError(f"{describe} lists more than {LISTING_FILES} entries; refusing to download from it")
            for entry in page:
                if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                    raise MmvError(f"{describe}: a listing entry has no path ({validate.shown(entry)})")
                if entry.get("type") == "file":
                    files.append(entry)
            url = response.links.get("next", {}).get("url") or ""
            params = None  # the next link carries its own query
            if url and not _same_origin(url, self.endpoint):
                # The token goes with every page: never to a server other than the one the user chose.
                raise MmvError(f"{describe}: the next listing page points at another server ({validate.shown(url)})")
        return files

    def _json(self, url: str, params: dict[str, Any], what: str) -> Any:
        return _json_of(self._get(url, params, what), what)

    def _get(self, url: str, params: dict[str, Any] | None, what: str) -> Any:
        from huggingface_hub.utils import hf_raise_for_status

        response = get_metadata(self.session(), url, params, self.headers, self.timeouts, what)
        hf_raise_for_status(response)
        return response

    def check(self, response: Any, remote: RemoteFile, listing: Listing) -> None:
        """Raise the one-sentence error for a failed file request."""
        if response.status_code < 400:
            return
        from huggingface_hub.utils import hf_raise_for_status

        with self.errors(listing.repo_id, listing.repo_type, listing.revision, remote.path):
            hf_raise_for_status(read_small(response, f"the error answer for {remote.path}"))

    @contextlib.contextmanager
    def errors(self, repo_id: str, repo_type: str, revision: str, file: str | None = None) -> Iterator[None]:
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

        where = f"{repo_type} repository {repo_id}"
        http = library()
        try:
            yield
        except HfHubHTTPError as exc:
            raise self._refusal(exc, where, revision, file) from exc
        except OfflineModeIsEnabled as exc:
            raise MmvError(f"HF_HUB_OFFLINE is set, so {where} cannot be downloaded; unset it to go online") from exc
        except http.RequestError as exc:
            raise self._request_failure(exc, where) from exc

    def _refusal(self, exc: Exception, where: str, revision: str, file: str | None) -> MmvError:
        """The sentence for an HTTP error answer, most specific kind first (huggingface_hub's errors subclass
        HfHubHTTPError, GatedRepoError subclasses RepositoryNotFoundError); a 401 asks for a token."""
        from huggingface_hub.errors import (
            GatedRepoError,
            RemoteEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        unauthorized = _status(exc) == 401
        if isinstance(exc, GatedRepoError):
            return MmvError(
                f"{where} is gated on {self.endpoint}: accept its terms on the website, then pass a token or set "
                "HF_TOKEN",
                option="token",
            )
        if isinstance(exc, RepositoryNotFoundError) and unauthorized:
            return MmvError(
                f"{self.endpoint} refused {where} (401): it does not exist or needs a token; check the name, or pass "
                "a token / set HF_TOKEN",
                option="token",
            )
        if isinstance(exc, RepositoryNotFoundError):
            return MmvError(f"{where} was not found on {self.endpoint} (404)")
        if isinstance(exc, RevisionNotFoundError):
            return MmvError(f"revision {revision} was not found in {where} on {self.endpoint} (404)")
        if isinstance(exc, RemoteEntryNotFoundError):
            return MmvError(f"{file} was not found in {where} at revision {revision} (404)")
        if unauthorized:
            return MmvError(
                f"{self.endpoint} rejected the token (401 Unauthorized) for {where}: check the token or HF_TOKEN, or "
                "leave the token out for public repositories",
                option="token",
            )
        message = validate.server_text(getattr(exc, "server_message", None))
        server = f": {message}" if message else ""
        return MmvError(f"{self.endpoint} answered HTTP {_status(exc)} for {where}{server}")

    def _request_failure(self, exc: Exception, where: str) -> MmvError:
        """The sentence for a request that brought no usable answer: it timed out, found no server, or was not
        understood; each points to the mirrors."""
        http = library()
        if isinstance(exc, http.TimeoutException):
            failure = f"{self.endpoint} {silent(exc, self.timeouts)} while listing {where}: check the network, or"
        elif isinstance(exc, http.TransportError):
            failure = f"cannot reach {self.endpoint} ({type(exc).__name__}): check the network, or"
        else:
            failure = (
                f"{self.endpoint} sent an answer for {where} that cannot be read ({type(exc).__name__}); is the "
                "endpoint a Hub server? Or"
            )
        return MmvError(f"{failure} {MIRROR_HINT}", option=("endpoint", "source"))


def _json_of(response: Any, describe: str) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError) as exc:
        raise MmvError(
            f"{describe}: the server's answer is not JSON; is the endpoint a Hub server?", option="endpoint"
        ) from exc


def _same_origin(url: str, endpoint: str) -> bool:
    a, b = urlsplit(url), urlsplit(endpoint)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _status(exc: Any) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)
