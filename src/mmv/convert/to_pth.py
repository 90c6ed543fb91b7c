"""`--to pth`: a native state dict in the reference's key layout (float16 by default, as checkpoints are published)."""

from __future__ import annotations

from pathlib import Path

import torch

from mmv.convert.output import staged_file
from mmv.convert.sources import Source
from mmv.convert.weights import cast, reference_order


def write_pth(source: Source, out: Path, dtype: torch.dtype, force: bool) -> list[Path]:
    """Loadable by the reference (`torch.load` + `load_state_dict`) and by mmv; a tied lm_head is stored too."""
    state = reference_order(cast(source.state_dict, dtype), source.config, source.text_only)
    with staged_file(out, force) as work, open(work, "wb") as stream:
        torch.save(state, stream)  # a stream, not a path: the archive is not named after the random temp file
    return [out]
