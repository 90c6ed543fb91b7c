"""The names `mmv download` knows: which repositories and files each one holds (REFERENCE.md section 8).

A name maps to one or more parts; each part is a set of files in one Hub repository. ModelScope mirrors the
MiniMind-V repositories under the `gongjy/` owner, so those parts also name their ModelScope twin; the public
encoders of other publishers (CLIP, DINOv2, SigLIP2) are fetched from the Hub only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmv.errors import MmvError
from mmv.hub import validate
from mmv.layout import ENCODER_FILES, TOKENIZER_FILES

HF_OWNER = "jingyaogong"
MODELSCOPE_OWNER = "gongjy"


@dataclass(frozen=True)
class Part:
    repo_id: str  # Hub repository, e.g. "jingyaogong/minimind-3v"
    repo_type: str = "model"  # "model" or "dataset"
    patterns: tuple[str, ...] | None = None  # fnmatch patterns of the files to fetch; None = the whole repository
    modelscope_repo_id: str | None = None  # ModelScope twin; None = not mirrored there


@dataclass(frozen=True)
class Artifact:
    name: str  # the name users type; also the directory name under the cache root (see cache.dir_name)
    summary: str  # what it holds, for `mmv download --list`
    parts: tuple[Part, ...]
    size_hint: int | None = None  # approximate bytes, shown by --list before anything is downloaded
    revision: str | None = None  # pinned by an `@REV` suffix of an hf: spec, or where a repo's safetensors live


def _mirror(repo: str) -> str:
    return f"{MODELSCOPE_OWNER}/{repo.split('/', 1)[1]}"


def _part(repo: str, *patterns: str, repo_type: str = "model") -> Part:
    full = f"{HF_OWNER}/{repo}"
    return Part(full, repo_type, tuple(patterns) or None, _mirror(full))


def _public(repo: str) -> Part:
    """An encoder folder as another publisher ships it (config, safetensors weights, processor config)."""
    return Part(repo, "model", ENCODER_FILES)


_DATASET = "minimind-v_dataset"

_TABLE: tuple[Artifact, ...] = (
    Artifact(
        "siglip2-p32-256",
        "SigLIP2 encoder, 256x256 / patch 32 (default variant)",
        (_part("siglip2-base-p32-256-ve", *ENCODER_FILES),),
        379_000_000,
    ),
    Artifact(
        "siglip2-p16-256",
        "SigLIP2 encoder, 256x256 / patch 16",
        (_part("siglip2-base-p16-256-ve", *ENCODER_FILES),),
        372_000_000,
    ),
    Artifact(
        "siglip2-p16-naflex",
        "SigLIP2 NaFlex encoder, patch 16, up to 256 patches",
        (_part("siglip2-base-p16-ve", *ENCODER_FILES),),
        372_000_000,
    ),
    Artifact(
        "clip-vit-base-patch16",
        "CLIP ViT-B/16, 224px, 196 patches (the whole CLIP model; its vision tower is used)",
        # pinned to the Hub bot's safetensors conversion of the weights (pull request 10): mmv loads safetensors only
        (_public("openai/clip-vit-base-patch16"),),
        599_000_000,
        revision="refs/pr/10",
    ),
    Artifact(
        "dinov2-small",
        "DINOv2 ViT-S/14, 224px centre crop, 256 patches",
        (_public("facebook/dinov2-small"),),
        88_200_000,
    ),
    Artifact(
        "dinov2-base",
        "DINOv2 ViT-B/14, 224px centre crop, 256 patches",
        (_public("facebook/dinov2-base"),),
        346_000_000,
    ),
    Artifact(
        "siglip2-base-patch16-naflex",
        "SigLIP2 NaFlex B/16, up to 256 patches (the whole SigLIP2 model; its vision tower is used)",
        (_public("google/siglip2-base-patch16-naflex"),),
        1_500_000_000,
    ),
    Artifact(
        "llm",
        "text-only MiniMind LLM (llm_768.pth) and the tokenizer",
        (_part("minimind-3v-pytorch", "llm_768.pth"), _part("minimind-3v", *TOKENIZER_FILES)),
        129_000_000,
    ),
    Artifact("minimind-3v", "MiniMind-3V transformers folder (dense)", (_part("minimind-3v"),), 130_000_000),
    Artifact("minimind-3v-moe", "MiniMind-3V transformers folder (MoE)", (_part("minimind-3v-moe"),), 400_000_000),
    Artifact(
        "minimind-3v-pytorch",
        "all native .pth checkpoints (dense and MoE)",
        (_part("minimind-3v-pytorch", "*.pth"),),
        1_600_000_000,
    ),
    Artifact(
        "dataset-pretrain",
        "pretraining parquet (pretrain_i2t.parquet)",
        (_part(_DATASET, "pretrain_i2t.parquet", repo_type="dataset"),),
        None,
    ),
    Artifact(
        "dataset-sft", "SFT parquet (sft_i2t.parquet)", (_part(_DATASET, "sft_i2t.parquet", repo_type="dataset"),), None
    ),
    Artifact(
        "dataset",
        "both training parquet files",
        (_part(_DATASET, "pretrain_i2t.parquet", "sft_i2t.parquet", repo_type="dataset"),),
        None,
    ),
)

ALIASES = {"siglip2": "siglip2-p32-256"}
NAMES: dict[str, Artifact] = {a.name: a for a in _TABLE}

_EXPECTED = (
    f"one of {', '.join([*ALIASES, *NAMES])}, or hf:OWNER/REPO, hf:OWNER/REPO/FILE (either with @REVISION), "
    "hf-dataset:OWNER/REPO"
)

# hf:OWNER/REPO[/FILE][@REV]
_SPEC = re.compile(
    r"^(?P<kind>hf|hf-dataset):(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)(?:/(?P<file>[^@]+))?(?:@(?P<rev>.+))?$"
)


def canonical(name: str) -> str:
    """The cache name of what the user typed: aliases resolved, `hf:` specs normalised."""
    name = name.strip()
    return ALIASES.get(name, name)


def lookup(name: str) -> Artifact:
    """The artifact for a registry name or an `hf:` / `hf-dataset:` spec; MmvError for anything else."""
    name = canonical(name)
    if name in NAMES:
        return NAMES[name]
    match = _SPEC.match(name)
    if not match:
        raise MmvError(f"unknown download name {name!r}: expected {_EXPECTED}")
    _check_spec(name, match)
    repo_type = "dataset" if match["kind"] == "hf-dataset" else "model"
    file = match["file"].strip("/") if match["file"] else None
    part = Part(f"{match['owner']}/{match['repo']}", repo_type, (file,) if file else None, None)
    return Artifact(
        name, f"{repo_type} repository {part.repo_id}" + (f", file {file}" if file else ""), (part,), None, match["rev"]
    )


def lookup_all(names: list[str]) -> list[Artifact]:
    """Every name's artifact; the names that are neither registry names nor specs are all named in one error."""
    unknown = [name.strip() for name in names if canonical(name) not in NAMES and not is_spec(name)]
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise MmvError(f"unknown download name{plural} {listed}: expected {_EXPECTED}")
    return [lookup(name) for name in names]


def is_spec(name: str) -> bool:
    return bool(_SPEC.match(canonical(name)))


def check_spec(name: str) -> None:
    """MmvError unless an `hf:` spec's owner, repository, file and revision are safe to use in URLs and paths."""
    match = _SPEC.match(canonical(name))
    if match:
        _check_spec(name, match)


def _check_spec(name: str, match: re.Match[str]) -> None:
    for piece in (match["owner"], match["repo"]):
        # '.' and '..' would be resolved away inside a URL and reach another API route.
        if piece.startswith((".", "-")) or ".." in piece:
            raise MmvError(f"invalid repository name {piece!r} in {name!r}: expected letters, digits, '-', '_', '.'")
    if match["file"]:
        validate.file_path(match["file"].strip("/"), f"the spec {name!r}")
    if match["rev"] is not None:
        validate.revision(match["rev"], repr(name))
