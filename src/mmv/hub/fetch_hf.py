"""The Hugging Face Hub source: listing through huggingface_hub's API client, errors turned into one sentence.

The listing follows what `huggingface_hub.snapshot_download` does: `repo_info` pins the revision to a commit, then
the recursive tree API gives every file's size, git blob id and, for LFS files, its sha256. Files are then fetched
from `<endpoint>/<repo>/resolve/<commit>/<path>`, so a name never mixes files of two commits.
`HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE` mean what they mean to huggingface_hub.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from mmv import __version__
from mmv.errors import MmvError
from mmv.hub.listing import Listing, select
from mmv.hub.registry import Part
from mmv.hub.transfer import RemoteFile

MIRROR_HINT = "use a mirror with --endpoint URL or HF_ENDPOINT (e.g. https://hf-mirror.com), or --source modelscope"


def hf_endpoint(endpoint: str | None) -> str:
    """--endpoint, else HF_ENDPOINT as set now (huggingface_hub reads it only at import), else the public Hub."""
    from huggingface_hub import constants

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


class HfSource:
    name = "hf"

    def __init__(self, endpoint: str | None = None, token: str | None = None) -> None:
        from huggingface_hub import HfApi
        from huggingface_hub.utils import build_hf_headers

        self.endpoint = hf_endpoint(endpoint)
        self.token = token or None  # None: huggingface_hub falls back to HF_TOKEN, then the saved login
        self.api = HfApi(endpoint=self.endpoint, token=self.token, library_name="mmv", library_version=__version__)
        self.headers = build_hf_headers(token=self.token, library_name="mmv", library_version=__version__)

    def session(self) -> Any:
        from huggingface_hub.utils import get_session

        return get_session()

    def list(self, part: Part, revision: str | None) -> Listing:
        from huggingface_hub import hf_hub_url
        from huggingface_hub.hf_api import RepoFile

        rev = revision or "main"
        with self.errors(part.repo_id, part.repo_type, rev):
            info = self.api.repo_info(part.repo_id, repo_type=part.repo_type, revision=revision)
            commit = info.sha
            tree = list(
                self.api.list_repo_tree(
                    part.repo_id, recursive=True, revision=commit or revision, repo_type=part.repo_type
                )
            )
        entries = {e.path: e for e in tree if isinstance(e, RepoFile)}
        describe = f"{part.repo_type} repository {part.repo_id} at revision {rev} on {self.endpoint}"
        files = []
        for path in select(sorted(entries), part, describe):
            entry = entries[path]
            url = hf_hub_url(
                part.repo_id, path, repo_type=part.repo_type, revision=commit or rev, endpoint=self.endpoint
            )
            sha256 = entry.lfs.sha256 if entry.lfs is not None else None
            files.append(RemoteFile(path, url, entry.size, sha256, None if sha256 else entry.blob_id))
        return Listing(self.name, part.repo_id, part.repo_type, rev, commit, files)

    def check(self, response: Any, remote: RemoteFile, listing: Listing) -> None:
        """Raise the one-sentence error for a failed file request."""
        if response.status_code < 400:
            return
        from huggingface_hub.utils import hf_raise_for_status

        response.read()
        with self.errors(listing.repo_id, listing.repo_type, listing.revision, remote.path):
            hf_raise_for_status(response)

    @contextlib.contextmanager
    def errors(self, repo_id: str, repo_type: str, revision: str, file: str | None = None) -> Iterator[None]:
        import httpx2
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RemoteEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        where = f"{repo_type} repository {repo_id}"
        try:
            yield
        except GatedRepoError as exc:
            raise MmvError(
                f"{where} is gated on {self.endpoint}: accept its terms on the website, then pass "
                "--token or set HF_TOKEN"
            ) from exc
        except RepositoryNotFoundError as exc:
            if _status(exc) == 401:
                raise MmvError(
                    f"{self.endpoint} refused {where} (401): it does not exist or needs a token; check the "
                    "name, or pass --token / set HF_TOKEN"
                ) from exc
            raise MmvError(f"{where} was not found on {self.endpoint} (404)") from exc
        except RevisionNotFoundError as exc:
            raise MmvError(f"revision {revision} was not found in {where} on {self.endpoint} (404)") from exc
        except RemoteEntryNotFoundError as exc:
            raise MmvError(f"{file} was not found in {where} at revision {revision} (404)") from exc
        except HfHubHTTPError as exc:
            if _status(exc) == 401:
                raise MmvError(
                    f"{self.endpoint} rejected the token (401 Unauthorized) for {where}: check --token "
                    "or HF_TOKEN, or leave the token out for public repositories"
                ) from exc
            server = f": {exc.server_message}" if getattr(exc, "server_message", None) else ""
            raise MmvError(f"{self.endpoint} answered HTTP {_status(exc)} for {where}{server}") from exc
        except OfflineModeIsEnabled as exc:
            raise MmvError(f"HF_HUB_OFFLINE is set, so {where} cannot be downloaded; unset it to go online") from exc
        except httpx2.TransportError as exc:
            raise MmvError(
                f"cannot reach {self.endpoint} ({type(exc).__name__}): check the network, or {MIRROR_HINT}"
            ) from exc


def _status(exc: Any) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)
