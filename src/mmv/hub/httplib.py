"""The HTTP library mmv.hub speaks: the one huggingface_hub's own session is built on.

huggingface_hub 1.x builds its session on httpx, 2.x on httpx2 (the same API under another package name). mmv
downloads from the Hub through that session, so the timeouts it passes, the responses it rebuilds for
`hf_raise_for_status`, the exceptions it catches and the ModelScope client must all come from the same library:
an httpx.ReadTimeout is not an httpx2.ReadTimeout. The library is read off the session's class rather than off
version numbers, so a client installed with `huggingface_hub.set_client_factory` (a subclass of either) decides it
too. Every module of mmv.hub takes its HTTP types from `library()`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mmv.errors import MmvError

LIBRARIES = ("httpx", "httpx2")  # the packages huggingface_hub 1.x and 2.x build their sessions on


def library() -> ModuleType:
    """httpx or httpx2: the package that huggingface_hub's session class (or one of its bases) comes from."""
    from huggingface_hub.utils import get_session

    session = type(get_session())
    for cls in session.__mro__:
        package = cls.__module__.partition(".")[0]
        if package in LIBRARIES:
            return importlib.import_module(package)
    raise MmvError(
        f"huggingface_hub's HTTP session is a {session.__module__}.{session.__qualname__}, not an httpx or httpx2 "
        "client, so mmv cannot download through it (was another client set with set_client_factory?)"
    )
