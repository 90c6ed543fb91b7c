"""A real HTTP server on 127.0.0.1 speaking the parts of the Hugging Face Hub and ModelScope APIs that downloads use.

Hub (what huggingface_hub 1.0 to 2.4 call): `GET /api/{models,datasets}/<repo>[/revision/<rev>]` (repo info, `sha` and
`siblings`), `GET /api/.../tree/<rev>[/<path>]?recursive=` (file sizes, git oids, LFS sha256), and
`GET|HEAD [/datasets]/<repo>/resolve/<rev>/<path>` with X-Repo-Commit, ETag, and for LFS files a 302 to a CDN URL
carrying X-Linked-Etag / X-Linked-Size; bodies honour `Range`. Errors carry X-Error-Code like the real Hub
(RepoNotFound as 401 without a token, RevisionNotFound, EntryNotFound, and "Invalid credentials" for a bad token).
ModelScope (the shapes of the `modelscope` / `modelscope_hub` SDKs' requests and of the fields they read):
`/api/v1/models/<repo>/repo/files`, `/api/v1/datasets/<repo>/repo/tree` (paged by PageNumber / PageSize), both in
the envelope {"Code": 200, "Data": {"Files": [...]}, "Message", "RequestId", "Success"} with folders as "tree" and
files as "blob" entries (Name, Path, Type, Size, Sha256, Revision, IsLFS, Mode, CommitMessage, CommittedDate), and
`/api/v1/{models,datasets}/<repo>/repo?Revision=&FilePath=` for a file; errors use the same envelope with the
server's numeric Code and `Success: false`.

Faults for tests: `gone` lists a file but answers 404 for it; `drop[path] = (after_bytes, times)` closes the
connection mid-body; `corrupt` flips a byte of the body (same length) so only a checksum can notice;
`stall[path] = after_bytes` sends part of the body and hangs until `release` is set (also when asked to resume
at that offset), setting `stalled` once it hangs, so a client can be killed or time out mid-file;
`hang` names API routes ("hf-info", "hf-tree", "ms-listing") that read the request and never answer (until
`release`); `oversize[path] = (extra_bytes, declared)` streams junk past the end of the file, announced in
Content-Length or not.
Lies for tests: `lies[(path, field)] = value` replaces what the server says about one file (`path`) or the whole
repository (`None`); fields: "path", "size", "sha256" (Hub `lfs.oid`, ModelScope `Sha256`), "oid" (Hub git blob
id), "lfs" (the Hub's whole LFS object), "lfs.size", "commit" (Hub repository info `sha`, ModelScope `Revision`),
"next" (the Hub tree's next-page link), "content-range" (of an answer to a resume); MISSING drops the field.
`raw_listing` replaces the whole listing answer with these bytes. `tree_page` makes the Hub tree answer in pages
of that many entries, linked by `Link: rel="next"` like the Hub. Every request is logged in `requests`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache, cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from tests.conftest import REFERENCE, TOKENIZER_DIR

LFS_SUFFIXES = (".safetensors", ".pth", ".parquet", ".bin")
MISSING = object()  # a lie that removes the field


@dataclass
class Repo:
    repo_id: str
    repo_type: str  # "model" or "dataset"
    files: dict[str, bytes]
    private: bool = False
    tags: tuple[str, ...] = ()  # extra revision names that point at the same commit

    @cached_property
    def commit(self) -> str:
        digest = hashlib.sha1(self.repo_id.encode())
        for path in sorted(self.files):
            digest.update(path.encode() + hashlib.sha1(self.files[path]).digest())
        return digest.hexdigest()

    def knows(self, revision: str, default: str) -> bool:
        return revision in (default, self.commit, *self.tags)


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class FakeHub:
    hf: dict[tuple[str, str], Repo] = field(default_factory=dict)  # (repo_type, repo_id) -> repo
    modelscope: dict[tuple[str, str], Repo] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=lambda: {"hf_secret"})
    drop: dict[str, tuple[int, int]] = field(default_factory=dict)  # path in repo -> (bytes sent, times left)
    corrupt: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)  # listed, but the file request answers 404
    stall: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the body hangs until `release`
    stalled: threading.Event = field(default_factory=threading.Event)  # set once a body hangs
    hang: set[str] = field(default_factory=set)  # API routes that never answer: "hf-info", "hf-tree", "ms-listing"
    oversize: dict[str, tuple[int, bool]] = field(default_factory=dict)  # path -> (junk bytes after it, announced)
    sent: dict[str, int] = field(default_factory=dict)  # path -> body bytes the server managed to send, last request
    release: threading.Event = field(default_factory=threading.Event)
    lies: dict[tuple[str | None, str], object] = field(default_factory=dict)  # (path or None, field) -> value
    raw_listing: bytes | None = None  # answer every listing request with these bytes instead
    tree_page: int | None = None  # entries per page of the Hub tree listing; None: one page
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    @property
    def cdn_url(self) -> str:
        """The same server under another host name: like the real CDN, off the Hub's host, so clients neither follow
        its redirect for metadata nor send it the token."""
        return self.url.replace("127.0.0.1", "localhost")

    def add(self, repo: Repo, modelscope: bool = False) -> None:
        (self.modelscope if modelscope else self.hf)[(repo.repo_type, repo.repo_id)] = repo

    def lie(self, path: str | None, name: str, truth: object) -> object:
        """What the listing says for `name` of `path`: the lie when there is one, else the truth."""
        if (path, name) in self.lies:
            return self.lies[(path, name)]
        return self.lies.get((None, name), truth) if path is not None and name == "commit" else truth

    def ranges(self, path: str) -> list[str | None]:
        """The Range header of every GET that sent the body of `path` (for Hub LFS files: the CDN request, not the
        redirecting resolve request before it)."""
        return [
            r.headers.get("Range")
            for r in self.requests
            if r.method == "GET" and _target(r) == path and not ("/resolve/" in r.path and is_lfs(path))
        ]


def _target(request: Request) -> str | None:
    """Which file a request fetches: ModelScope names it in FilePath, the CDN in `file`, the Hub in the URL."""
    for key in ("FilePath", "file"):
        if key in request.query:
            return request.query[key][0]
    if "/resolve/" in request.path:
        return request.path.split("/resolve/", 1)[1].split("/", 1)[1]
    return None


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        split = urlsplit(self.path)
        path, query = unquote(split.path), parse_qs(split.query)
        self.hub.requests.append(Request(self.command, path, query, dict(self.headers.items())))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "v1"]:
            return self._modelscope(parts[2:], query, head)
        if parts[0] == "api":
            return self._hf_api(parts[1:], query)
        if parts[0] == "cdn":
            return self._cdn(query, head)
        repo_type = "model"
        if parts[0] == "datasets":
            repo_type, parts = "dataset", parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(repo_type, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), head)
        self._error(404, "not found")

    # --- the Hub ---------------------------------------------------------------------------------------------------

    def _hf_repo(self, repo_type: str, repo_id: str, revision: str) -> Repo | None:
        """The repo when access is allowed and the revision exists; otherwise sends the Hub's error and None."""
        repo = self.hub.hf.get((repo_type, repo_id))
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth else None
        if token is not None and token not in self.hub.tokens:
            self._error(401, "Invalid credentials in Authorization header")
            return None
        if repo is None or (repo.private and token is None):
            # The real Hub answers 401 to anonymous requests for missing or private repos, 404 when authenticated.
            self._error(401 if token is None else 404, "Repository not found", code="RepoNotFound")
            return None
        if not repo.knows(revision, "main"):
            self._error(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
            return None
        return repo

    def _hf_api(self, parts: list[str], query: dict[str, list[str]]) -> None:
        if len(parts) < 3 or parts[0] not in ("models", "datasets"):
            return self._error(404, "not found")
        repo_type = parts[0][:-1]
        repo_id = "/".join(parts[1:3])
        rest = parts[3:]
        if not rest or rest[0] == "revision":
            if "hf-info" in self.hub.hang:
                return self._hang()
            revision = "/".join(rest[1:]) if rest else "main"
            repo = self._hf_repo(repo_type, repo_id, revision)
            if repo is None:
                return None
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            siblings = [self._sibling(p, d, blobs) for p, d in sorted(repo.files.items())]
            info = {"id": repo_id, "private": repo.private, "siblings": siblings}
            _put(info, "sha", self.hub.lie(None, "commit", repo.commit))
            return self._json(info)
        if rest[0] == "tree":
            if "hf-tree" in self.hub.hang:
                return self._hang()
            revision, sub = rest[1], "/".join(rest[2:])
            repo = self._hf_repo(repo_type, repo_id, revision)
            if repo is None:
                return None
            if self.hub.raw_listing is not None:
                return self._send(200, self.hub.raw_listing, {"Content-Type": "application/json"})
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            entries = self._tree(repo, sub, recursive)
            return self._tree_page(entries, int(query.get("cursor", ["0"])[0]))
        return self._error(404, "not found")

    def _tree_page(self, entries: list[dict], start: int) -> None:
        """One page of the tree; like the Hub, a `Link: <...&cursor=...>; rel="next"` header leads to the next."""
        size = self.hub.tree_page or len(entries) or 1
        headers = {"Content-Type": "application/json"}
        if start + size < len(entries):
            split = urlsplit(self.path)
            query = {k: v for k, v in parse_qs(split.query).items() if k != "cursor"}
            params = "&".join(f"{k}={v[0]}" for k, v in query.items())
            truth = f"{self.hub.url}{split.path}?{params}&cursor={start + size}"
            link = self.hub.lie(None, "next", truth)
            if link is not MISSING:
                headers["Link"] = f'<{link}>; rel="next"'
        self._send(200, json.dumps(entries[start : start + size]).encode(), headers)

    @staticmethod
    def _sibling(path: str, data: bytes, blobs: bool) -> dict:
        entry: dict = {"rfilename": path}
        if blobs:
            entry.update(size=len(data), blobId=git_oid(data))
            if is_lfs(path):
                entry["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
        return entry

    def _tree(self, repo: Repo, sub: str, recursive: bool) -> list[dict]:
        prefix = f"{sub}/" if sub else ""
        out, dirs = [], set()
        for path, data in sorted(repo.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if "/" in rest:
                top = prefix + rest.split("/", 1)[0]
                if top not in dirs:
                    dirs.add(top)
                    out.append(
                        {"type": "directory", "oid": hashlib.sha1(top.encode()).hexdigest(), "size": 0, "path": top}
                    )
                if not recursive:
                    continue
            lie = self.hub.lie
            size = lie(path, "size", len(data))
            entry = {"type": "file"}
            _put(entry, "oid", lie(path, "oid", git_oid(data)))
            _put(entry, "size", size)
            _put(entry, "path", lie(path, "path", path))
            if is_lfs(path):
                lfs = {"pointerSize": 134}
                _put(lfs, "oid", lie(path, "sha256", hashlib.sha256(data).hexdigest()))
                _put(lfs, "size", lie(path, "lfs.size", size))
                _put(entry, "lfs", lie(path, "lfs", lfs))
            out.append(entry)
        return out

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str, head: bool) -> None:
        repo = self._hf_repo(repo_type, repo_id, revision)
        if repo is None:
            return None
        data = repo.files.get(path)
        if data is None or path in self.hub.gone:
            return self._error(404, "Entry not found", code="EntryNotFound")
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{git_oid(data)}"', "Accept-Ranges": "bytes"}
        if is_lfs(path):
            sha = hashlib.sha256(data).hexdigest()
            headers.update(
                {
                    "X-Linked-Etag": f'"{sha}"',
                    "X-Linked-Size": str(len(data)),
                    "Location": f"{self.hub.cdn_url}/cdn/{sha}?file={path}&repo={repo_type}:{repo_id}",
                }
            )
            return self._send(302, b"", headers)
        return self._body(path, data, headers, head)

    def _cdn(self, query: dict[str, list[str]], head: bool) -> None:
        repo_type, repo_id = query["repo"][0].split(":", 1)
        path = query["file"][0]
        data = self.hub.hf[(repo_type, repo_id)].files[path]
        self._body(path, data, {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "Accept-Ranges": "bytes"}, head)

    # --- ModelScope --------------------------------------------------------------------------------------------------

    def _modelscope(self, parts: list[str], query: dict[str, list[str]], head: bool) -> None:
        if len(parts) < 4 or parts[0] not in ("models", "datasets") or parts[3] != "repo":
            return self._error(404, "not found")
        repo_type, repo_id = parts[0][:-1], "/".join(parts[1:3])
        revision = query.get("Revision", ["master"])[0]
        repo = self.hub.modelscope.get((repo_type, repo_id))
        token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip() or None
        if repo is not None and repo.private and token not in self.hub.tokens:
            return self._ms_error(401, 10010201, "Unauthorized, please login first")
        if repo is None or not repo.knows(revision, "master"):
            return self._ms_error(404, 10010205, f"Model or revision not exist: {repo_id}@{revision}")
        tail = parts[4:]
        if tail in (["files"], ["tree"]):
            if "ms-listing" in self.hub.hang:
                return self._hang()
            if self.hub.raw_listing is not None:
                return self._send(200, self.hub.raw_listing, {"Content-Type": "application/json"})
            entries = self._ms_entries(repo)
            if tail == ["tree"]:
                size = int(query.get("PageSize", ["100"])[0])
                page = int(query.get("PageNumber", ["1"])[0])
                entries = entries[(page - 1) * size : page * size]
            payload = {
                "Code": 200,
                "Data": {"Files": entries},
                "Message": "success",
                "RequestId": "fake",
                "Success": True,
            }
            return self._json(payload)
        if not tail:
            path = query.get("FilePath", [""])[0]
            data = repo.files.get(path)
            if data is None or path in self.hub.gone:
                return self._ms_error(404, 10010205, f"file not exist: {path}")
            return self._body(path, data, {"Accept-Ranges": "bytes"}, head)
        return self._error(404, "not found")

    def _ms_entries(self, repo: Repo) -> list[dict]:
        """The recursive listing as ModelScope gives it: folders as "tree" entries, files as "blob" entries, with
        the fields the modelscope SDK reads (Path, Type, Size, Sha256, Revision) and some it does not."""
        folders = sorted({p.rsplit("/", 1)[0] for p in repo.files if "/" in p})
        entries: list[dict] = [
            {"Name": f.rsplit("/", 1)[-1], "Path": f, "Type": "tree", "Size": 0, "Sha256": "", "Revision": repo.commit}
            for f in folders
        ]
        lie = self.hub.lie
        for path, data in sorted(repo.files.items()):
            entry = {"Name": path.rsplit("/", 1)[-1], "Type": "blob", "IsLFS": is_lfs(path), "Mode": "33188"}
            entry.update(CommitMessage="upload", CommittedDate=1700000000, CommitterName="fake")
            _put(entry, "Path", lie(path, "path", path))
            _put(entry, "Size", lie(path, "size", len(data)))
            _put(entry, "Sha256", lie(path, "sha256", hashlib.sha256(data).hexdigest()))
            _put(entry, "Revision", lie(path, "commit", repo.commit))
            entries.append(entry)
        return entries

    def _ms_error(self, status: int, code: int, message: str) -> None:
        self._json({"Code": code, "Message": message, "Success": False, "RequestId": "fake"}, status)

    # --- plumbing ----------------------------------------------------------------------------------------------------

    def _body(self, path: str, data: bytes, headers: dict[str, str], head: bool) -> None:
        if path in self.hub.corrupt:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        start, status = 0, 200
        wanted = self.headers.get("Range")
        if wanted:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            status = 206
            truth = f"bytes {start}-{len(data) - 1}/{len(data)}"
            headers = {**headers, "Content-Range": str(self.hub.lie(path, "content-range", truth))}
        body = data[start:]
        if head:
            return self._send(status, b"", {**headers, "Content-Length": str(len(body))}, declared=len(body))
        if path in self.hub.stall and start <= self.hub.stall[path]:
            self._send(status, body[: self.hub.stall[path] - start], headers, declared=len(body))
            self.hub.stalled.set()
            return self._hang()
        after, times = self.hub.drop.get(path, (0, 0))
        if times > 0 and start < after:
            self.hub.drop[path] = (after, times - 1)
            self._send(status, body[: after - start], headers, declared=len(body))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if path in self.hub.oversize:
            return self._oversize(path, status, body, headers)
        self.hub.sent[path] = len(body)
        return self._send(status, body, headers)

    def _oversize(self, path: str, status: int, body: bytes, headers: dict[str, str]) -> None:
        """The file, then junk: with a Content-Length that counts it, or none (the body ends when the server
        closes), streamed a block at a time so a client that stops reading stops it."""
        extra, declared = self.hub.oversize[path]
        self.close_connection = True
        self.hub.sent[path] = 0
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if declared:
            self.send_header("Content-Length", str(len(body) + extra))
        self.send_header("Connection", "close")
        self.end_headers()
        block = b"\0" * (1 << 16)
        try:
            self.wfile.write(body)
            self.hub.sent[path] = len(body)
            while self.hub.sent[path] < len(body) + extra:
                self.wfile.write(block)
                self.hub.sent[path] += len(block)
        except OSError:
            pass  # the client hung up: what it had to do
        return None

    def _hang(self) -> None:
        """Keep the connection open and say nothing more until the test releases it."""
        self.hub.release.wait()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        return None

    def _json(self, payload: object, status: int = 200) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message, "Content-Type": "application/json"}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str], declared: int | None = None) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key != "Content-Length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if declared is None else declared))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
            self.wfile.flush()


def _put(entry: dict, key: str, value: object) -> None:
    if value is MISSING:
        entry.pop(key, None)
    else:
        entry[key] = value


@cache
def _read(path: Path) -> bytes:
    return path.read_bytes()


def published_repos() -> list[tuple[Repo, Repo]]:
    """The Hub repos of REFERENCE.md section 8 (filled with the tiny p32 fixtures) and their ModelScope twins."""
    p32 = REFERENCE / "p32"
    readme = b"# tiny test repository\n"
    encoder = {
        name: _read(p32 / "vision" / name) for name in ("config.json", "model.safetensors", "preprocessor_config.json")
    }
    pytorch = {
        "llm_768.pth": _read(p32 / "llm.pth"),
        "pretrain_vlm_768.pth": _read(p32 / "model_fp16.pth"),
        "sft_vlm_768.pth": _read(p32 / "model.pth"),
    }
    folder = {p.name: _read(p) for p in sorted((p32 / "hf-upstream").iterdir())}
    folder["tokenizer.json"] = _read(TOKENIZER_DIR / "tokenizer.json")
    folder["tokenizer_config.json"] = _read(TOKENIZER_DIR / "tokenizer_config.json")
    labels = REFERENCE / "labels"
    data = {
        "pretrain_i2t.parquet": _read(labels / "single.parquet"),
        "sft_i2t.parquet": _read(labels / "multi.parquet"),
    }
    table = [
        ("model", "siglip2-base-p32-256-ve", encoder),
        ("model", "minimind-3v-pytorch", pytorch),
        ("model", "minimind-3v", folder),
        ("dataset", "minimind-v_dataset", data),
    ]
    out = []
    for repo_type, name, files in table:
        files = {**files, "README.md": readme, ".gitattributes": b"*.pth filter=lfs\n"}
        out.append(
            (
                Repo(f"jingyaogong/{name}", repo_type, files, tags=("v1",)),
                Repo(f"gongjy/{name}", repo_type, dict(files), tags=("v1",)),
            )
        )
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # Clients that hang up mid-answer are what many tests do on purpose: not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def start(hub: FakeHub) -> tuple[ThreadingHTTPServer, threading.Thread]:
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = _Server(("127.0.0.1", 0), handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


def new_hub() -> FakeHub:
    hub = FakeHub()
    for hf_repo, ms_repo in published_repos():
        hub.add(hf_repo)
        hub.add(ms_repo, modelscope=True)
    hub.add(Repo("someone/private-model", "model", {"weights.bin": b"secret" * 100}, private=True))
    hub.add(Repo("gongjy/private-model", "model", {"weights.bin": b"secret" * 100}, private=True), modelscope=True)
    return hub


@contextlib.contextmanager
def running(monkeypatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A fresh fake server, an empty mmv cache, no saved Hub login, and HF_ENDPOINT pointing at the server."""
    hub = new_hub()
    server, thread = start(hub)
    monkeypatch.setenv("MMV_HOME", str(tmp_path / "mmv-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "MODELSCOPE_API_TOKEN", "MODELSCOPE_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield hub
    finally:
        hub.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
