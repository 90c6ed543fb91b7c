"""What a source says a repository holds, and picking the files a name asks for."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from mmv.errors import MmvError
from mmv.hub import validate
from mmv.hub.registry import Part
from mmv.hub.transfer import RemoteFile

_SKIPPED = (".gitattributes",)  # git plumbing, not part of any artifact


@dataclass
class Listing:
    source: str  # "hf" or "modelscope"
    repo_id: str
    repo_type: str
    revision: str  # what was asked for
    commit: str | None  # what it resolved to
    files: list[RemoteFile]


def select(paths: list[str], part: Part, describe: str) -> list[str]:
    """The paths a part asks for; a literal file name that is missing is an error naming it."""
    if part.patterns is None:
        chosen = [p for p in paths if p.rsplit("/", 1)[-1] not in _SKIPPED]
    else:
        chosen = [p for p in paths if any(fnmatch.fnmatchcase(p, pat) for pat in part.patterns)]
        for pattern in part.patterns:
            if not any(fnmatch.fnmatchcase(p, pattern) for p in paths):
                raise MmvError(f"{pattern} was not found in {describe} (the repository has {len(paths)} files)")
    # The listing comes from a server: a path that would land outside the name's folder is refused outright.
    return [validate.file_path(path, describe) for path in chosen]
