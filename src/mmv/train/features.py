"""A run's vision-feature cache (`--cache-features`, `--feature-cache FILE`): where it is, built when missing, and
the model built without its encoder, which never runs then.

The cache of a run is the one its config recorded (a resumed run), else the file given, else the one beside the
first data file named by its key (`mmv.data.feature_build.default_cache_path`): a changed data file or encoder gets
a new cache instead of a stale one. A missing cache is built by a single process (or by the `--nproc` launcher
before its workers start); the workers of a distributed run only open it. The loader checks that it fits the data
and the encoder (`mmv.data.loader.TrainData`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from mmv.console import say
from mmv.errors import MmvError

if TYPE_CHECKING:
    from mmv.train.run import RunPlan


def cache_location(plan: RunPlan) -> Path:
    from mmv.data.feature_build import cache_key, default_cache_path
    from mmv.data.source import resolve_files

    recorded = plan.data_spec.get("feature_cache") or plan.cfg.feature_cache
    if recorded:
        return Path(recorded).expanduser().absolute()
    files = resolve_files(plan.data_spec["files"])
    return default_cache_path(files, cache_key(files, plan.vision_dir), plan.cfg.cache_dtype)


def with_feature_cache(plan: RunPlan, may_build: bool) -> RunPlan:
    """The plan reading features from its cache (built first when missing and `may_build`), without the encoder;
    the plan as it is when the run uses no cache."""
    from mmv.data.feature_build import build_feature_cache

    cfg = plan.cfg
    if not cfg.uses_feature_cache:
        return plan
    path = cache_location(plan)
    if not path.exists():
        if not may_build:
            raise MmvError(
                f"feature cache {path} does not exist yet and the processes of a distributed run do not build it; "
                "build it first with `mmv data cache-features`, or let mmv launch the processes, which builds it first",
                option="nproc",
            )
        say(f"building the feature cache {path} (every image is encoded once)")
        built = build_feature_cache(
            plan.data_spec["files"],
            plan.vision_dir,
            path,
            dtype=cfg.cache_dtype,
            device=cfg.device,
            num_workers=cfg.num_workers,
        )
        say(
            f"feature cache: {built.images:,} images of {built.rows:,} rows, {built.bytes / 2**30:.2f} GiB, "
            f"{built.seconds:.1f} s"
        )
    spec = {**plan.data_spec, "feature_cache": str(path)}
    return dataclasses.replace(plan, data_spec=spec, inputs=dataclasses.replace(plan.inputs, vision_dir=None))
