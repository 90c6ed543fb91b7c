"""A run's vision-feature cache (`--cache-features`, `--feature-cache FILE`): where it is, built when missing, and
the model is then built without its encoder (`mmv.train.run.with_feature_cache`), which never runs.

The cache of a run is the one its config recorded (a resumed run), else the file given, else the one beside the
first data file named by its key (`mmv.data.feature_build.default_cache_path`): a changed data file or encoder gets
a new cache instead of a stale one. A missing cache is built by a single process (or by the `--nproc` launcher
before its workers start); the workers of a distributed run only open it. The loader checks that it fits the data
and the encoder (`mmv.data.loader.TrainData`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.console import say
from mmv.errors import MmvError

if TYPE_CHECKING:
    from mmv.train.config import TrainConfig


def cache_location(data_spec: dict[str, Any], cfg: TrainConfig, vision_dir: str) -> Path:
    from mmv.data.feature_build import cache_key, default_cache_path
    from mmv.data.source import resolve_files

    recorded = data_spec.get("feature_cache") or cfg.feature_cache
    if recorded:
        return Path(recorded).expanduser().absolute()
    files = resolve_files(data_spec["files"])
    return default_cache_path(files, cache_key(files, vision_dir), cfg.cache_dtype)


def ready_feature_cache(data_spec: dict[str, Any], cfg: TrainConfig, vision_dir: str, may_build: bool) -> Path:
    """The run's cache, built first when it is missing and `may_build` (else one MmvError naming the way out)."""
    from mmv.data.feature_build import build_feature_cache

    path = cache_location(data_spec, cfg, vision_dir)
    if path.exists():
        return path
    if not may_build:
        raise MmvError(
            f"feature cache {path} does not exist yet and the processes of a distributed run do not build it; "
            "build it first with `mmv data cache-features`, or let mmv launch the processes, which builds it first",
            option="nproc",
        )
    say(f"building the feature cache {path} (every image is encoded once)")
    built = build_feature_cache(
        data_spec["files"], vision_dir, path, dtype=cfg.cache_dtype, device=cfg.device, num_workers=cfg.num_workers
    )
    say(
        f"feature cache: {built.images:,} images of {built.rows:,} rows, {built.bytes / 2**30:.2f} GiB, "
        f"{built.seconds:.1f} s"
    )
    return path
