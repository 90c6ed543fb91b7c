"""The ModelScope source: the same artifacts from the `gongjy/` mirrors, through ModelScope's public HTTP API.

Endpoints (those the `modelscope` SDK calls; default endpoint https://www.modelscope.cn, or `https://$MODELSCOPE_DOMAIN`):
- model files:   GET /api/v1/models/<owner>/<name>/repo/files?Revision=<rev>&Recursive=True
- dataset files: GET /api/v1/datasets/<owner>/<name>/repo/tree?Revision=<rev>&Root=/&Recursive=True
                 &PageNumber=<n>&PageSize=<k>
  both answer {"Code": 200, "Data": {"Files": [{"Path", "Type": "blob"|"tree", "Size", "Sha256", "Revision"}]}}
- a file:        GET /api/v1/{models|datasets}/<owner>/<name>/repo?Revision=<rev>&FilePath=<path> (Range supported)
The default revision is `master`. A token (--token or MODELSCOPE_API_TOKEN) is sent as a Bearer header.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from mmv import __version__
from mmv.errors import MmvError
from mmv.hub.listing import Listing, select
from mmv.hub.registry import Part
from mmv.hub.transfer import RemoteFile

DEFAULT_ENDPOINT = "https://www.modelscope.cn"
DEFAULT_REVISION = "master"
PAGE_SIZE = 100
TIMEOUT_S = 30.0


def modelscope_endpoint(endpoint: str | None) -> str:
    if endpoint:
        return endpoint.rstrip("/")
    domain = os.environ.get("MODELSCOPE_DOMAIN")
    return f"https://{domain}".rstrip("/") if domain else DEFAULT_ENDPOINT


class ModelScopeSource:
    name = "modelscope"

    def __init__(self, endpoint: str | None = None, token: str | None = None) -> None:
        self.endpoint = modelscope_endpoint(endpoint)
        token = token or os.environ.get("MODELSCOPE_API_TOKEN")
        self.headers = {"User-Agent": f"mmv/{__version__}"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self._session: Any = None

    def session(self) -> Any:
        import httpx2

        if self._session is None:
            self._session = httpx2.Client(follow_redirects=True, timeout=TIMEOUT_S)
        return self._session

    def list(self, part: Part, revision: str | None) -> Listing:
        if part.modelscope_repo_id is None:
            raise MmvError(f"{part.repo_id} has no ModelScope mirror that mmv knows of; use --source hf")
        repo = part.modelscope_repo_id
        rev = revision or DEFAULT_REVISION
        kind = "datasets" if part.repo_type == "dataset" else "models"
        base = f"{self.endpoint}/api/v1/{kind}/{repo}"
        entries = self._list_dataset(base, repo, rev) if kind == "datasets" else self._list_model(base, repo, rev)
        blobs = {e["Path"]: e for e in entries if e.get("Type", "blob") != "tree"}
        describe = f"ModelScope {part.repo_type} repository {repo} at revision {rev}"
        files = []
        for path in select(sorted(blobs), part, describe):
            entry = blobs[path]
            url = f"{base}/repo?Revision={quote(rev, safe='')}&FilePath={quote(path, safe='')}"
            sha = entry.get("Sha256") or None
            files.append(RemoteFile(path, url, entry.get("Size"), sha.lower() if sha else None))
        commit = next((e.get("Revision") for e in blobs.values() if e.get("Revision")), None)
        return Listing(self.name, repo, part.repo_type, rev, commit, files)

    def _list_model(self, base: str, repo: str, rev: str) -> list[dict[str, Any]]:
        data = self._get_json(f"{base}/repo/files", {"Revision": rev, "Recursive": "True"}, repo, rev)
        return list(data.get("Files") or [])

    def _list_dataset(self, base: str, repo: str, rev: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        page = 1
        while True:
            params = {
                "Revision": rev,
                "Root": "/",
                "Recursive": "True",
                "PageNumber": str(page),
                "PageSize": str(PAGE_SIZE),
            }
            batch = list(self._get_json(f"{base}/repo/tree", params, repo, rev).get("Files") or [])
            entries += batch
            if len(batch) < PAGE_SIZE:
                return entries
            page += 1

    def _get_json(self, url: str, params: dict[str, str], repo: str, rev: str) -> dict[str, Any]:
        with self.errors(repo, rev):
            response = self.session().get(url, params=params, headers=self.headers)
            self._raise(response, repo, rev, None)
            try:
                body = response.json()
            except ValueError as exc:
                raise MmvError(
                    f"{self.endpoint} answered the file listing of {repo} with something that is not "
                    "JSON; is --endpoint a ModelScope server?"
                ) from exc
        if body.get("Code") not in (200, None) or body.get("Success") is False:
            raise MmvError(f"ModelScope could not list {repo} at revision {rev}: {body.get('Message') or body}")
        return body.get("Data") or {}

    def check(self, response: Any, remote: RemoteFile, listing: Listing) -> None:
        if response.status_code >= 400:
            response.read()
            self._raise(response, listing.repo_id, listing.revision, remote.path)

    def _raise(self, response: Any, repo: str, rev: str, file: str | None) -> None:
        code = response.status_code
        if code < 400:
            return
        message = _server_message(response)
        if code in (401, 403):
            raise MmvError(
                f"{self.endpoint} refused access to {repo} ({code}): pass a ModelScope access token "
                "with --token or MODELSCOPE_API_TOKEN"
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
        import httpx2

        try:
            yield
        except httpx2.TransportError as exc:
            raise MmvError(
                f"cannot reach {self.endpoint} ({type(exc).__name__}) to list {repo}: check the network, "
                "or try --source hf (with --endpoint for a mirror)"
            ) from exc


def _server_message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("Message") or "") if isinstance(body, dict) else ""
