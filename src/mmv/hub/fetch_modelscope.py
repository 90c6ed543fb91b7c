"""The ModelScope source: the same artifacts from the `gongjy/` mirrors, through ModelScope's public HTTP API.

Endpoints (those the `modelscope` / `modelscope_hub` SDKs call; default endpoint https://www.modelscope.cn, or
`https://$MODELSCOPE_DOMAIN`):
- model files:   GET /api/v1/models/<owner>/<name>/repo/files?Revision=<rev>&Recursive=True
- dataset files: GET /api/v1/datasets/<owner>/<name>/repo/tree?Revision=<rev>&Root=/&Recursive=True
                 &PageNumber=<n>&PageSize=<k>   (pages until one comes back short)
  both answer {"Code": 200, "Data": {"Files": [{"Name", "Path", "Type": "blob"|"tree", "Size", "Sha256",
  "Revision" (commit id), ...}]}, "Message", "RequestId", "Success": true}; errors carry the same envelope with
  a non-200 Code, `Success: false` and a Message.
- a file:        GET /api/v1/{models|datasets}/<owner>/<name>/repo?Revision=<rev>&FilePath=<path> (Range supported)
The default revision is `master`. A token (--token or MODELSCOPE_API_TOKEN) is sent as a Bearer header. Every
value of a listing is checked (mmv.hub.validate) before it is used.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from mmv import __version__
from mmv.errors import MmvError
from mmv.hub import validate
from mmv.hub.httplib import library
from mmv.hub.limits import LISTING_FILES, Timeouts, get_metadata, read_small, silent
from mmv.hub.listing import Listing, select
from mmv.hub.registry import Part
from mmv.hub.transfer import RemoteFile

DEFAULT_ENDPOINT = "https://www.modelscope.cn"
DEFAULT_REVISION = "master"
PAGE_SIZE = 100
COMMIT_LENGTH = (7, 64)  # git commit ids, possibly abbreviated (the SDK compares them by prefix)


def modelscope_endpoint(endpoint: str | None) -> str:
    if endpoint:
        return endpoint.rstrip("/")
    domain = os.environ.get("MODELSCOPE_DOMAIN")
    return f"https://{domain}".rstrip("/") if domain else DEFAULT_ENDPOINT


class ModelScopeSource:
    name = "modelscope"

    def __init__(self, endpoint: str | None = None, token: str | None = None, timeouts: Timeouts | None = None) -> None:
        self.endpoint = modelscope_endpoint(endpoint)
        self.timeouts = timeouts or Timeouts()
        token = token or os.environ.get("MODELSCOPE_API_TOKEN")
        self.headers = {"User-Agent": f"mmv/{__version__}"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self._session: Any = None

    def session(self) -> Any:
        if self._session is None:
            # The library huggingface_hub uses: the one whose exceptions mmv.hub catches and whose Timeouts it passes.
            self._session = library().Client(follow_redirects=True, timeout=self.timeouts.httpx())
        return self._session

    def list(self, part: Part, revision: str | None) -> Listing:
        if part.modelscope_repo_id is None:
            raise MmvError(
                f"{part.repo_id} has no ModelScope mirror that mmv knows of; use the hf source", option="source"
            )
        repo = part.modelscope_repo_id
        rev = revision or DEFAULT_REVISION
        kind = "datasets" if part.repo_type == "dataset" else "models"
        base = f"{self.endpoint}/api/v1/{kind}/{repo}"
        describe = f"ModelScope {part.repo_type} repository {repo} at revision {rev}"
        entries = self._list_dataset(base, repo, rev) if kind == "datasets" else self._list_model(base, repo, rev)
        blobs = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("Path"), str):
                raise MmvError(f"{describe}: a listing entry has no Path ({validate.shown(entry)})")
            if entry.get("Type", "blob") != "tree":
                blobs[entry["Path"]] = entry
        files = []
        commits = set()
        for path in select(sorted(blobs), part, describe):
            entry = blobs[path]
            url = f"{base}/repo?Revision={quote(rev, safe='')}&FilePath={quote(path, safe='')}"
            sha = entry.get("Sha256")
            sha256 = validate.digest(sha, 64, "sha256", path, describe) if sha else None
            files.append(RemoteFile(path, url, validate.size(entry.get("Size"), path, describe), sha256))
            if entry.get("Revision"):
                commits.add(validate.commit(entry["Revision"], COMMIT_LENGTH, describe))
        # Each file names the commit it was listed at; one answer for the whole listing or none at all.
        commit = commits.pop() if len(commits) == 1 else None
        return Listing(self.name, repo, part.repo_type, rev, commit, files)

    def _list_model(self, base: str, repo: str, rev: str) -> list[Any]:
        return self._files(f"{base}/repo/files", {"Revision": rev, "Recursive": "True"}, repo, rev)

    def _list_dataset(self, base: str, repo: str, rev: str) -> list[Any]:
        entries: list[Any] = []
        page = 1
        while True:
            params = {
                "Revision": rev,
                "Root": "/",
                "Recursive": "True",
                "PageNumber": str(page),
                "PageSize": str(PAGE_SIZE),
            }
            batch = self._files(f"{base}/repo/tree", params, repo, rev)
            entries += batch
            if len(batch) < PAGE_SIZE:
                return entries
            if len(entries) > LISTING_FILES:
                # A server that answers every page in full would otherwise be paged forever.
                raise MmvError(f"ModelScope lists more than {LISTING_FILES} files in {repo}; refusing to download")
            page += 1

    def _files(self, url: str, params: dict[str, str], repo: str, rev: str) -> list[Any]:
        data = self._get_json(url, params, repo, rev)
        files = data.get("Files") if isinstance(data, dict) else None
        if files is None:
            return []
        if not isinstance(files, list):
            raise MmvError(f"{self.endpoint} answered the file listing of {repo} with Files that are not a list")
        if len(files) > LISTING_FILES:
            raise MmvError(f"ModelScope lists more than {LISTING_FILES} files in {repo}; refusing to download")
        return files

    def _get_json(self, url: str, params: dict[str, str], repo: str, rev: str) -> Any:
        with self.errors(repo, rev):
            response = get_metadata(self.session(), url, params, self.headers, self.timeouts, f"the listing of {repo}")
            self._raise(response, repo, rev, None)
            try:
                body = response.json()
            except (ValueError, RecursionError) as exc:
                raise MmvError(
                    f"{self.endpoint} answered the file listing of {repo} with something that is not "
                    "JSON; is the endpoint a ModelScope server?",
                    option="endpoint",
                ) from exc
        if not isinstance(body, dict):
            raise MmvError(f"{self.endpoint} answered the file listing of {repo} with JSON that is not an object")
        if body.get("Code") not in (200, None) or body.get("Success") is False:
            message = validate.server_text(body.get("Message")) or "no message"
            raise MmvError(f"ModelScope could not list {repo} at revision {rev}: {message}")
        return body.get("Data") or {}

    def check(self, response: Any, remote: RemoteFile, listing: Listing) -> None:
        if response.status_code >= 400:
            answer = read_small(response, f"the error answer for {remote.path}")
            self._raise(answer, listing.repo_id, listing.revision, remote.path)

    def _raise(self, response: Any, repo: str, rev: str, file: str | None) -> None:
        code = response.status_code
        if code < 400:
            return
        message = _server_message(response)
        if code in (401, 403):
            raise MmvError(
                f"{self.endpoint} refused access to {repo} ({code}): pass a ModelScope access token "
                "or set MODELSCOPE_API_TOKEN",
                option="token",
            )
        if code == 404 and file:
            raise MmvError(f"{file} was not found in ModelScope repository {repo} at revision {rev} (404)")
        if code == 404:
            raise MmvError(
                f"ModelScope repository {repo} (revision {rev}) was not found on {self.endpoint} (404"
                f"{': ' + message if message else ''})"
            )
        raise MmvError(f"{self.endpoint} answered HTTP {code} for {repo}{': ' + message if message else ''}")

    @contextlib.contextmanager
    def errors(self, repo: str, rev: str) -> Iterator[None]:
        http = library()
        try:
            yield
        except http.RequestError as exc:
            raise self._request_failure(exc, repo) from exc

    def _request_failure(self, exc: Exception, repo: str) -> MmvError:
        """The sentence for a request that brought no usable answer: it timed out, found no server, or was not
        understood."""
        http = library()
        if not isinstance(exc, http.TransportError):
            return MmvError(
                f"{self.endpoint} sent an answer for {repo} that cannot be read ({type(exc).__name__}); "
                "is the endpoint a ModelScope server?",
                option="endpoint",
            )
        if isinstance(exc, http.TimeoutException):
            failure = f"{self.endpoint} {silent(exc, self.timeouts)} while listing {repo}"
        else:
            failure = f"cannot reach {self.endpoint} ({type(exc).__name__}) to list {repo}"
        return MmvError(
            f"{failure}: check the network, or try the hf source (with a mirror endpoint)",
            option=("source", "endpoint"),
        )


def _server_message(response: Any) -> str:
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return ""
    return validate.server_text(body.get("Message")) if isinstance(body, dict) else ""
