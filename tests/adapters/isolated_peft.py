"""Run by test_export in `python -I -S`: an exported base folder plus its adapter, loaded the way the peft docs say,
in a process where mmv cannot be imported (tests/convert/isolated_load.py hides it).

argv: the package folders to import from (os.pathsep-separated, this file's helpers first), the exported folder, the
fixture cases (.safetensors), the output .safetensors file of logits.
"""

import os
import sys


def main() -> None:
    sys.path.extend(sys.argv[1].split(os.pathsep))
    from isolated_load import without_mmv

    without_mmv()
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    folder, cases = sys.argv[2], load_file(sys.argv[3])
    pixels = {k.removeprefix("pixel."): v for k, v in cases.items() if k.startswith("pixel.")}
    base = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).eval()
    results = {}
    with torch.no_grad():
        results["base.image_logits"] = base(cases["input_ids"], **pixels).logits
        model = PeftModel.from_pretrained(base, os.path.join(folder, "adapter")).eval()
        results["adapted.image_logits"] = model(input_ids=cases["input_ids"], **pixels).logits
        results["adapted.text_logits"] = model(input_ids=cases["text_input_ids"]).logits
        merged = model.merge_and_unload()
        results["merged.image_logits"] = merged(cases["input_ids"], **pixels).logits
    save_file({k: v.contiguous() for k, v in results.items()}, sys.argv[4])


if __name__ == "__main__":
    main()
