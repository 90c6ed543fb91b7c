"""A server that lies in its listings (paths, hashes, sizes, commits, links) never gets to touch a path.

The fake Hub and ModelScope servers put each lie where the real APIs put the value (`lfs.oid`, `oid`, `size`,
`path`, `sha`, `Sha256`, `Size`, `Path`, `Revision`, the tree's `Link` header); every one must be refused with one
sentence before anything outside the name's staging folder exists or changes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmv.errors import MmvError
from mmv.hub import cache, registry, validate
from mmv.hub.fetch import FetchOptions, download
from tests.hub.fake_hub import MISSING, FakeHub

SOURCES = ["hf", "modelscope"]
MODEL = "model.safetensors"  # the encoder's LFS file (sha256 on the Hub, Sha256 on ModelScope)
SMALL = "config.json"  # a small file: a git blob id on the Hub
# From <home>/.staging/siglip2-p32-256/.parts/ four levels up is the test's tmp_path: where the old code put the
# partial file named after the listed hash, appended to it, and deleted it on a mismatch.
ESCAPE = "../../../../victim/x"


def options(source: str, hub: FakeHub, **kw) -> FetchOptions:
    return FetchOptions(source=source, endpoint=hub.url if source == "modelscope" else None, **kw)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` except the mmv cache itself: what a lie must never create or change."""
    home = Path(cache.cache_root())
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and home not in p.parents and "hf-home" not in p.parts
    }


@pytest.fixture
def victim(tmp_path):
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "x.part").write_bytes(b"precious")
    (folder / "unrelated.part").write_bytes(b"also precious")
    return tmp_path


def refused(hub: FakeHub, source: str, root: Path, match: str, name: str = "siglip2") -> None:
    before = snapshot(root)
    with pytest.raises(MmvError, match=match):
        download(name, options(source, hub))
    assert snapshot(root) == before
    assert cache.find(name) is None
    assert not list(cache.cache_root().rglob("*.part"))


# --- hashes --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("lie", [ESCAPE, "/etc/passwd", "g" * 64, "ab" * 31, "ab" * 33, 12345, ["a"], " " + "a" * 63])
def test_a_sha256_that_is_not_64_hex_digits_is_refused(fake_hub, victim, source, lie):
    fake_hub.lies[(MODEL, "sha256")] = lie
    refused(fake_hub, source, victim, rf"lists .* as the (LFS )?sha256 of {MODEL}, which is not 64 hex digits")


@pytest.mark.parametrize("lie", [ESCAPE, "z" * 40, "ab" * 19, None, MISSING, 7])
def test_a_git_blob_id_that_is_not_40_hex_digits_is_refused(fake_hub, victim, lie):
    fake_hub.lies[(SMALL, "oid")] = lie
    refused(fake_hub, "hf", victim, rf"as the git blob id of {SMALL}, which is not 40 hex digits")


@pytest.mark.parametrize("source", SOURCES)
def test_an_upper_case_hash_is_accepted_and_still_verified(fake_hub, source):
    served = fake_hub.hf if source == "hf" else fake_hub.modelscope
    owner = "jingyaogong" if source == "hf" else "gongjy"
    data = served[("model", f"{owner}/siglip2-base-p32-256-ve")].files[MODEL]
    import hashlib

    fake_hub.lies[(MODEL, "sha256")] = hashlib.sha256(data).hexdigest().upper()
    assert (download("siglip2", options(source, fake_hub)).path / MODEL).read_bytes() == data


# --- sizes ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("lie", [-1, "200", True, 1.5, 10**20, None, MISSING])
def test_a_size_that_is_not_a_byte_count_is_refused(fake_hub, victim, source, lie):
    fake_hub.lies[(MODEL, "size")] = lie
    refused(fake_hub, source, victim, rf"lists .* as the size of {MODEL}, which is not a byte count")


@pytest.mark.parametrize(
    ("field", "lie", "match"),
    [
        ("lfs.size", 5, "lists two different sizes for"),
        ("lfs.size", "5", "which is not a byte count"),
        ("lfs", "sha256:abc", "lists LFS details of"),
        ("lfs", [], "lists LFS details of"),
    ],
)
def test_inconsistent_lfs_details_are_refused(fake_hub, victim, field, lie, match):
    fake_hub.lies[(MODEL, field)] = lie
    refused(fake_hub, "hf", victim, rf"{match} {MODEL}|{match}")


# --- paths ---------------------------------------------------------------------------------------------------------

UNSAFE_PATHS = [
    ("../../escaped.txt", "'..' component"),
    ("sub/../../escaped.txt", "'..' component"),
    ("./config.json", "'.' or '..' component"),
    ("a//b", "empty"),
    ("/etc/passwd", "absolute"),
    ("C:/x", "absolute"),
    ("..\\..\\escaped.txt", "backslash"),
    ("a\x00b", "control character"),
    ("a\nb", "control character"),
    (".mmv-manifest.json", "a name mmv keeps for itself"),
    (".parts/x.part", "a name mmv keeps for itself"),
    ("x" * 256, "longer than 255 bytes"),
    ("a/" * 600, "longer than 1024"),
]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("lie", "why"), UNSAFE_PATHS, ids=[repr(p)[:30] for p, _ in UNSAFE_PATHS])
def test_an_unsafe_listed_path_is_refused(fake_hub, victim, source, lie, why):
    fake_hub.lies[("README.md", "path")] = lie  # minimind-3v downloads the whole repository
    refused(fake_hub, source, victim, rf"lists an unsafe file path .*\(.*{re.escape(why)}", name="minimind-3v")


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("lie", [42, None, MISSING])
def test_a_listing_entry_without_a_path_is_refused(fake_hub, victim, source, lie):
    fake_hub.lies[("README.md", "path")] = lie
    refused(fake_hub, source, victim, r"a listing entry has no [pP]ath", name="minimind-3v")


@pytest.mark.parametrize("source", SOURCES)
def test_a_path_that_is_both_a_file_and_a_folder_is_refused(fake_hub, victim, source):
    owner = "jingyaogong" if source == "hf" else "gongjy"
    served = (fake_hub.hf if source == "hf" else fake_hub.modelscope)[("model", f"{owner}/minimind-3v")].files
    served["sub"] = b"a file"
    served["sub/inner.txt"] = b"a file in a folder of the same name"
    refused(fake_hub, source, victim, r"sub is listed both as a file and as the folder of sub/inner.txt", "minimind-3v")


# --- commits, links, whole answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lie", ["../../x", "abc", "g" * 40, "a" * 41, None, MISSING, 123])
def test_a_hub_commit_that_is_not_a_commit_id_is_refused(fake_hub, victim, lie):
    fake_hub.lies[(None, "commit")] = lie
    refused(fake_hub, "hf", victim, r"as its commit, which is not a commit id \(40-40 hex digits\)")


@pytest.mark.parametrize("lie", ["../../x", "master", "abc", "g" * 40, 123])
def test_a_modelscope_revision_that_is_not_a_commit_id_is_refused(fake_hub, victim, lie):
    fake_hub.lies[(MODEL, "commit")] = lie
    refused(fake_hub, "modelscope", victim, r"as its commit, which is not a commit id \(7-64 hex digits\)")


def test_tree_pages_are_followed_on_the_same_server_only(fake_hub, victim):
    from huggingface_hub import HfApi

    fake_hub.tree_page = 2  # the real Hub pages at 1,000 entries; the same protocol at 2
    served = fake_hub.hf[("model", "jingyaogong/minimind-3v")].files
    # huggingface_hub's own client reads the fake's pages as the Hub's: the Link format is the real one.
    listed = HfApi(endpoint=fake_hub.url).list_repo_tree("jingyaogong/minimind-3v", recursive=True)
    assert sorted(entry.path for entry in listed) == sorted(served)
    result = download("minimind-3v", options("hf", fake_hub))
    assert result.files == 7 and sum("cursor" in str(r.query) for r in fake_hub.requests) >= 6

    cache.remove("minimind-3v")
    fake_hub.lies[(None, "next")] = "http://attacker.example/api/models/x/tree/main?cursor=2"
    refused(fake_hub, "hf", victim, r"the next listing page points at another server", name="minimind-3v")


def test_a_tree_that_pages_forever_is_cut_off(fake_hub, victim, monkeypatch):
    monkeypatch.setattr("mmv.hub.fetch_hf.LISTING_FILES", 50)
    fake_hub.tree_page = 3
    commit = fake_hub.hf[("model", "jingyaogong/minimind-3v")].commit
    loop = f"{fake_hub.url}/api/models/jingyaogong/minimind-3v/tree/{commit}?recursive=true&expand=false&cursor=0"
    fake_hub.lies[(None, "next")] = loop  # every page says the first page comes next
    refused(fake_hub, "hf", victim, r"lists more than 50 entries", name="minimind-3v")


def test_a_modelscope_dataset_listing_that_pages_forever_is_cut_off(fake_hub, victim, monkeypatch):
    monkeypatch.setattr("mmv.hub.fetch_modelscope.LISTING_FILES", 500)
    full_page = [{"Path": f"f{i}.bin", "Type": "blob", "Size": 1} for i in range(100)]
    import json

    fake_hub.raw_listing = json.dumps({"Code": 200, "Data": {"Files": full_page}, "Success": True}).encode()
    refused(fake_hub, "modelscope", victim, r"lists more than 500 files", name="dataset-sft")


RAW = [
    (b"<html>not json</html>", r"not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, r"not JSON"),  # nested past the parser's recursion limit
    (b'"a string"', r"not a JSON list|not an object"),
    (b"[1, 2]", r"a listing entry has no [pP]ath"),
    (b'{"Code": 200, "Data": {"Files": "everything"}}', r"Files that are not a list"),
    (b'{"Code": 500, "Message": "line one\\nline two", "Success": false}', r"could not list .*: line one$"),
]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("raw", "match"), RAW, ids=[r[:12].decode() for r, _ in RAW])
def test_a_broken_listing_answer_is_one_sentence(fake_hub, victim, source, raw, match):
    if source == "hf" and raw.startswith(b"{"):
        match = r"not a JSON list"  # the Hub's tree is a list: any object is already wrong
    if source == "modelscope" and raw == b"[1, 2]":
        match = r"not an object"
    fake_hub.raw_listing = raw
    refused(fake_hub, source, victim, match)


# --- the checks themselves, and what users type --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["a", "a/b.c", "dir/sub/file.bin", "名前/ファイル.txt", "a b/c-d_e.f", "..a", "a.."])
def test_ordinary_paths_pass(path):
    assert validate.file_path(path, "x") == path


def test_checks_return_normalised_values():
    assert validate.digest("AB" * 32, 64, "sha256", "f", "x") == "ab" * 32
    assert validate.commit("ABCDEF1", (7, 64), "x") == "abcdef1"
    assert validate.size(0, "f", "x") == 0 and validate.size(validate.MAX_SIZE, "f", "x") == validate.MAX_SIZE
    assert validate.server_text("first\nsecond\x1b[31m") == "first"
    assert validate.server_text("x" * 500).endswith("...") and validate.server_text(None) == ""


@pytest.mark.parametrize("rev", ["main", "v1.0", "refs/pr/1", "a" * 40, "release-2024_01+b"])
def test_ordinary_revisions_pass(rev):
    assert validate.revision(rev, "--revision") == rev


@pytest.mark.parametrize(
    "rev", ["", "../x", "a..b", "x y", "a\x00b", "-rf", "/main", "main/", "a//b", "a\\b", "x.lock"]
)
def test_odd_revisions_are_refused(rev):
    with pytest.raises(MmvError, match=r"invalid revision"):
        validate.revision(rev, "--revision")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("hf:a/b@x y", r"invalid revision 'x y'"),
        ("hf:a/b@..", r"invalid revision"),
        ("hf:a/b@v1\x00", r"invalid revision"),
        ("hf:../b", r"invalid repository name '..'"),
        ("hf:a/..", r"invalid repository name '..'"),
        ("hf:.hidden/b", r"invalid repository name"),
        ("hf:a/b/../../etc/passwd", r"unsafe file path"),
        ("hf:a/b/.mmv-manifest.json", r"a name mmv keeps for itself"),
    ],
)
def test_specs_that_would_reach_another_route_or_path_are_refused(spec, match, tmp_path, monkeypatch):
    monkeypatch.setenv("MMV_HOME", str(tmp_path / "home"))
    with pytest.raises(MmvError, match=match):
        registry.lookup(spec)
    with pytest.raises(MmvError, match=match):
        cache.find(spec)  # every command that resolves names refuses it the same way


def test_a_revision_option_is_checked_before_any_request(fake_hub):
    with pytest.raises(MmvError, match=r"invalid revision '../x' in the requested revision") as refused:
        download("siglip2", options("hf", fake_hub, revision="../x"))
    assert refused.value.options == ("revision",)
    assert fake_hub.requests == []


def test_unknown_names_are_named_all_at_once(fake_hub):
    with pytest.raises(MmvError, match=r"unknown download names 'gpt5', 'nope': expected one of siglip2"):
        registry.lookup_all(["siglip2", "gpt5", "llm", "nope"])
    assert [a.name for a in registry.lookup_all(["siglip2", "hf:a/b"])] == ["siglip2-p32-256", "hf:a/b"]
