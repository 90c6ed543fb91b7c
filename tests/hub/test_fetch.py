"""Downloads against the loopback fake Hub and ModelScope servers: snapshots, resume, verification, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mmv.errors import MmvError
from mmv.hub import cache
from mmv.hub.fetch import FetchOptions, download
from mmv.hub.listing import Listing
from mmv.hub.transfer import RemoteFile, part_path
from tests.hub.fake_hub import FakeHub, Repo

SOURCES = ["hf", "modelscope"]
MODEL = "model.safetensors"  # the LFS file of the encoder repo (200 kB+, sha256-verified)


def options(source: str, hub: FakeHub, **kw) -> FetchOptions:
    # The Hub is reached through HF_ENDPOINT (set by the fixture), ModelScope through --endpoint.
    return FetchOptions(source=source, endpoint=hub.url if source == "modelscope" else None, **kw)


def repo(hub: FakeHub, source: str, name: str, repo_type: str = "model") -> Repo:
    if source == "hf":
        return hub.hf[(repo_type, f"jingyaogong/{name}")]
    return hub.modelscope[(repo_type, f"gongjy/{name}")]


def cached_files(path: Path) -> dict[str, bytes]:
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in path.rglob("*")
        if p.is_file() and p.name != cache.MANIFEST
    }


def leftovers(root: Path, name: str) -> list[Path]:
    """Every file under the cache root called `name`, or any partial file."""
    return [p for p in root.rglob("*") if p.is_file() and (p.name == name or p.suffix == ".part")]


@pytest.mark.parametrize("source", SOURCES)
def test_full_snapshot_lands_complete_with_manifest(fake_hub, source):
    served = repo(fake_hub, source, "minimind-3v")
    result = download("minimind-3v", options(source, fake_hub))

    expected = {k: v for k, v in served.files.items() if k != ".gitattributes"}
    assert cached_files(result.path) == expected
    assert result.path == cache.resolve("minimind-3v") and not result.already_cached
    assert result.downloaded == sum(len(v) for v in expected.values())
    manifest = json.loads((result.path / cache.MANIFEST).read_text())
    assert manifest["source"] == source and manifest["parts"][0]["commit"] == served.commit
    assert not cache.staging_dir("minimind-3v").exists()


@pytest.mark.parametrize("source", SOURCES)
def test_llm_joins_weights_and_tokenizer_from_two_repos(fake_hub, source):
    result = download("llm", options(source, fake_hub))
    files = cached_files(result.path)
    assert sorted(files) == ["llm_768.pth", "tokenizer.json", "tokenizer_config.json"]
    assert files["llm_768.pth"] == repo(fake_hub, source, "minimind-3v-pytorch").files["llm_768.pth"]
    assert files["tokenizer.json"] == repo(fake_hub, source, "minimind-3v").files["tokenizer.json"]


def test_single_file_and_dataset_specs(fake_hub):
    one = download("hf:jingyaogong/minimind-3v/config.json@v1", options("hf", fake_hub))
    assert cached_files(one.path) == {
        "config.json": fake_hub.hf[("model", "jingyaogong/minimind-3v")].files["config.json"]
    }
    assert cache.read_manifest(one.path)["revision"] == "v1"
    assert cache.find("hf:jingyaogong/minimind-3v/config.json@v1") == one.path

    data = download("hf-dataset:jingyaogong/minimind-v_dataset/sft_i2t.parquet", options("hf", fake_hub))
    assert list(cached_files(data.path)) == ["sft_i2t.parquet"]


@pytest.mark.parametrize("source", SOURCES)
def test_dropped_connection_resumes_with_range(fake_hub, source):
    fake_hub.drop[MODEL] = (200_000, 1)
    result = download("siglip2", options(source, fake_hub))

    assert fake_hub.ranges(MODEL) == [None, "bytes=200000-"]
    assert (result.path / MODEL).read_bytes() == repo(fake_hub, source, "siglip2-base-p32-256-ve").files[MODEL]


@pytest.mark.parametrize("source", SOURCES)
def test_interrupted_download_resumes_on_the_next_run(fake_hub, source):
    fake_hub.drop[MODEL] = (200_000, 99)
    with pytest.raises(MmvError, match=r"connection dropped while downloading model.safetensors.*resumes"):
        download("siglip2", options(source, fake_hub, retries=0))
    assert cache.find("siglip2") is None  # never half there
    assert cache.partial_downloads() == [
        cache.Partial(
            "siglip2-p32-256",
            None,
            200_000 + len(repo(fake_hub, source, "siglip2-base-p32-256-ve").files["config.json"]),
        )
    ]

    fake_hub.drop.clear()
    result = download("siglip2", options(source, fake_hub, retries=0))
    served = repo(fake_hub, source, "siglip2-base-p32-256-ve").files
    assert fake_hub.ranges(MODEL)[-1] == "bytes=200000-"
    assert fake_hub.ranges("config.json") == [None]  # verified in staging, not fetched again
    assert result.downloaded == len(served[MODEL]) - 200_000 + len(served["preprocessor_config.json"])
    assert cached_files(result.path) == {k: served[k] for k in ("config.json", MODEL, "preprocessor_config.json")}
    assert cache.partial_downloads() == []


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("victim", [MODEL, "config.json"])  # LFS sha256, and a small file (git blob id on the Hub)
def test_corrupted_body_is_rejected_and_nothing_cached(fake_hub, source, victim):
    fake_hub.corrupt.add(victim)
    with pytest.raises(MmvError, match=f"{victim} failed verification"):
        download("siglip2", options(source, fake_hub))
    assert cache.find("siglip2") is None
    assert leftovers(cache.cache_root(), victim) == []

    fake_hub.corrupt.clear()
    assert download("siglip2", options(source, fake_hub)).files == 3


@pytest.mark.parametrize("source", SOURCES)
def test_missing_repository_revision_and_file(fake_hub, source):
    owner = "jingyaogong" if source == "hf" else "gongjy"
    table = fake_hub.hf if source == "hf" else fake_hub.modelscope
    del table[("model", f"{owner}/minimind-3v")]
    # Anonymous requests for a missing repo get 401 from the real Hub, so the message also mentions the token.
    missing = (
        r"refused model repository jingyaogong/minimind-3v \(401\).*pass a token"
        if source == "hf"
        else r"ModelScope repository gongjy/minimind-3v \(revision master\) was not found .*\(404"
    )
    with pytest.raises(MmvError, match=missing):
        download("minimind-3v", options(source, fake_hub))

    bad_revision = (
        r"revision nope was not found in model repository jingyaogong/minimind-3v-pytorch"
        if source == "hf"
        else r"gongjy/minimind-3v-pytorch \(revision nope\) was not found"
    )
    with pytest.raises(MmvError, match=bad_revision):
        download("minimind-3v-pytorch", options(source, fake_hub, revision="nope"))

    del repo(fake_hub, source, "siglip2-base-p32-256-ve").files["preprocessor_config.json"]
    with pytest.raises(MmvError, match=rf"preprocessor_config.json was not found in .*{owner}/siglip2-base-p32-256-ve"):
        download("siglip2", options(source, fake_hub))

    fake_hub.gone.add("sft_i2t.parquet")  # listed, then 404 when fetched
    with pytest.raises(MmvError, match=rf"sft_i2t.parquet was not found in .*{owner}/minimind-v_dataset"):
        download("dataset-sft", options(source, fake_hub))
    assert cache.entries() == []


@pytest.mark.parametrize("source", SOURCES)
def test_a_path_escaping_the_cache_is_refused(fake_hub, source):
    repo(fake_hub, source, "minimind-3v").files["../../escaped.txt"] = b"x"
    with pytest.raises(MmvError, match=r"lists an unsafe file path '../../escaped.txt'"):
        download("minimind-3v", options(source, fake_hub))
    assert not list(cache.cache_root().parent.rglob("escaped.txt"))


@pytest.mark.parametrize("source", SOURCES)
def test_private_repository_needs_a_token(fake_hub, source, monkeypatch):
    repo(fake_hub, source, "minimind-3v").private = True
    with pytest.raises(MmvError, match=r"\(401\).*token"):
        download("minimind-3v", options(source, fake_hub))
    if source == "hf":
        with pytest.raises(MmvError, match=r"rejected the token \(401 Unauthorized\)"):
            download("minimind-3v", options(source, fake_hub, token="hf_wrong"))
        monkeypatch.setenv("HF_TOKEN", "hf_secret")  # read at call time, like huggingface_hub does
        assert download("minimind-3v", options(source, fake_hub)).files == 7
    else:
        assert download("minimind-3v", options(source, fake_hub, token="hf_secret")).files == 7


@pytest.mark.parametrize("source", SOURCES)
def test_cached_names_resolve_offline(fake_hub, source, monkeypatch):
    download("siglip2", options(source, fake_hub))
    seen = len(fake_hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    again = download("siglip2-p32-256", options(source, fake_hub))
    assert again.already_cached and again.downloaded == 0 and again.path == cache.resolve("siglip2")
    assert len(fake_hub.requests) == seen  # not a single request
    with pytest.raises(MmvError, match=r"llm is not in the cache .* HF_HUB_OFFLINE is set"):
        download("llm", options(source, fake_hub))


def test_no_network_names_the_mirror():
    closed = "http://127.0.0.1:9"  # discard port: nothing listens there
    with pytest.raises(MmvError, match=r"cannot reach http://127.0.0.1:9 .*mirror endpoint.*hf-mirror.com") as refused:
        download("minimind-3v", FetchOptions(endpoint=closed, retries=0))
    assert refused.value.options == ("endpoint", "source")
    with pytest.raises(MmvError, match=r"cannot reach http://127.0.0.1:9"):
        download("minimind-3v", FetchOptions(source="modelscope", endpoint=closed, retries=0))


def test_asking_another_revision_replaces_the_cached_copy(fake_hub):
    first = download("siglip2", options("hf", fake_hub))
    pinned = download("siglip2", options("hf", fake_hub, revision="v1"))
    assert pinned.path == first.path and not pinned.already_cached
    assert cache.read_manifest(pinned.path)["revision"] == "v1"
    assert download("siglip2", options("hf", fake_hub, revision="v1")).already_cached
    assert [e.name for e in cache.entries()] == ["siglip2-p32-256"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to make writes fail with ENOSPC")
def test_disk_full_keeps_the_partial_file_and_caches_nothing(fake_hub):
    served = fake_hub.hf[("model", "jingyaogong/siglip2-base-p32-256-ve")].files[MODEL]
    import hashlib

    listed = RemoteFile(
        MODEL, "(the key ignores the url when a hash is listed)", len(served), hashlib.sha256(served).hexdigest()
    )
    part = part_path(cache.staging_dir("siglip2"), listed)
    part.parent.mkdir(parents=True)
    # Writes through this link hit the kernel's always-full device: a real ENOSPC without filling a disk.
    part.symlink_to("/dev/full")
    with pytest.raises(MmvError, match=r"disk is full while writing model.safetensors.*resumes once space is freed"):
        download("siglip2", options("hf", fake_hub))
    assert cache.find("siglip2") is None


def test_not_enough_space_is_refused_before_downloading(tmp_path, monkeypatch):
    from mmv.hub.fetch import _check_space

    monkeypatch.setenv("MMV_HOME", str(tmp_path))
    huge = RemoteFile("huge.bin", "http://127.0.0.1:9/huge.bin", size=10**18, sha256="0" * 64)
    listing = Listing("hf", "o/r", "model", "main", None, [huge])
    with pytest.raises(MmvError, match=r"not enough disk space in .*needs 1000000000.0 GB more"):
        _check_space([listing], tmp_path)


def test_second_download_of_the_same_name_waits_its_turn(fake_hub):
    from mmv.hub.fetch import _lock

    with _lock(cache.staging_dir("siglip2")), pytest.raises(MmvError, match="another `mmv download` of"):
        download("siglip2", options("hf", fake_hub))


def test_huggingface_hub_itself_downloads_from_the_fake(fake_hub, tmp_path):
    """The fake speaks the real protocol: huggingface_hub's own snapshot_download works against it."""
    from huggingface_hub import snapshot_download

    served = fake_hub.hf[("model", "jingyaogong/siglip2-base-p32-256-ve")]
    out = snapshot_download("jingyaogong/siglip2-base-p32-256-ve", local_dir=tmp_path / "snap", endpoint=fake_hub.url)
    for path, data in served.files.items():
        assert (Path(out) / path).read_bytes() == data


@pytest.mark.parametrize(
    ("name", "repo_id", "revision"),
    [
        ("dinov2-small", "facebook/dinov2-small", None),
        ("clip-vit-base-patch16", "openai/clip-vit-base-patch16", "refs/pr/10"),
    ],
)
def test_public_encoders_come_from_their_publishers_repository(fake_hub, tmp_path, name, repo_id, revision):
    """The encoder's three files, verified like every download, at the revision the registry pins; the model card
    and the other frameworks' weights stay behind."""
    from tests.encoder_folders import make_encoder_folder

    kind = "clip-full" if name.startswith("clip") else "dinov2"
    folder = make_encoder_folder(tmp_path / "published", kind)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    extras = {"README.md": b"# card\n", "pytorch_model.bin": b"pickle" * 100}
    fake_hub.add(Repo(repo_id, "model", {**files, **extras}, tags=(revision,) if revision else ()))

    result = download(name, options("hf", fake_hub))
    assert cached_files(result.path) == files
    assert cache.read_manifest(result.path)["revision"] == revision
    asked = {r.path for r in fake_hub.requests if repo_id in r.path}
    pinned = f"/api/models/{repo_id}/revision/{revision or 'main'}"
    assert pinned in asked or (revision is None and f"/api/models/{repo_id}" in asked), sorted(asked)
