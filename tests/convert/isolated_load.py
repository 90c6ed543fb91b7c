"""Run by test_transformers_folder in `python -I -S`: load mmv's transformers folders where mmv cannot be imported.

argv: the site-packages folder to use (torch, transformers), a JSON list of jobs, the output .safetensors file.
Each job names a folder and its fixture cases; the script records logits and greedy generations, then saves the
model again with `save_pretrained` where the job says.
"""

import json
import sys

sys.path.append(sys.argv[1])  # the interpreter's packages without running their .pth hooks (mmv's editable install)
try:
    import mmv  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("mmv is importable in the isolated process; the test would prove nothing")

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

torch.set_num_threads(1)
results = {}
for job in json.loads(sys.argv[2]):
    name, folder = job["name"], job["folder"]
    cases = load_file(job["cases"])
    pixels = {k.removeprefix("pixel."): v for k, v in cases.items() if k.startswith("pixel.")}
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # the reference generations run 16 tokens without an eos stop
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    with torch.no_grad():
        results[f"{name}.image_logits"] = model(cases["input_ids"], **pixels).logits
        results[f"{name}.text_logits"] = model(cases["text_input_ids"]).logits
        results[f"{name}.image_greedy"] = model.generate(cases["input_ids"], **pixels, max_new_tokens=16,
                                                         do_sample=False)
        results[f"{name}.text_greedy"] = model.generate(cases["text_input_ids"], max_new_tokens=16, do_sample=False)
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                               add_generation_prompt=True)
    results[f"{name}.prompt_ids"] = torch.tensor(tokenizer(prompt, add_special_tokens=False).input_ids)
    # a left-padded batch of two prompts against each prompt alone
    tokenizer.padding_side = "left"
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True) for text in ("hi", "tell me a long story")]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        results[f"{name}.batch_greedy"] = model.generate(**batch, max_new_tokens=6, do_sample=False)[:, -6:]
        results[f"{name}.alone_greedy"] = torch.cat([
            model.generate(tokenizer(p, return_tensors="pt", add_special_tokens=False).input_ids, max_new_tokens=6,
                           do_sample=False)[:, -6:] for p in prompts])
    results[f"{name}.class_is_remote"] = torch.tensor(type(model).__module__.startswith("transformers_modules"))
    model.save_pretrained(job["resave"])  # transformers' own save of the loaded model: must stay mmv-readable
save_file({k: v.contiguous() for k, v in results.items()}, sys.argv[3])
