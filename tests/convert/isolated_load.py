"""Run by test_transformers_folder in `python -I -S`: load mmv's transformers folders where mmv cannot be imported.

argv: the package folders to import from, first wins (os.pathsep-separated: a transformers release installed apart,
then the site-packages with torch), a JSON list of jobs, the output .safetensors file (its metadata names the
transformers version that ran). Each job names a folder and its fixture cases; the script records logits, greedy
generations, one cached step per name of the cache argument and which wrong calls were refused, then saves the model
again with `save_pretrained` where the job says.
"""

import json
import os
import sys


class HideMmv:
    """Only needed where mmv is installed as a regular package: refuse it like an absent one."""

    def find_spec(self, name, path=None, target=None):
        if name == "mmv" or name.startswith("mmv."):
            raise ImportError(f"No module named {name!r} (hidden)")
        return None


def mmv_importable() -> bool:
    try:
        import mmv  # noqa: F401
    except ImportError:
        return False
    return True


def without_mmv() -> None:
    sys.path.extend(sys.argv[1].split(os.pathsep))  # without running their .pth hooks (mmv's editable install)
    if mmv_importable():
        for loaded in [m for m in sys.modules if m == "mmv" or m.startswith("mmv.")]:
            del sys.modules[loaded]
        sys.meta_path.insert(0, HideMmv())
    if mmv_importable():
        raise SystemExit("mmv is importable in the isolated process; the test would prove nothing")


def run_job(job: dict, results: dict) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    name, folder = job["name"], job["folder"]
    cases = load_file(job["cases"])
    pixels = {k.removeprefix("pixel."): v for k, v in cases.items() if k.startswith("pixel.")}
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # the reference generations run 16 tokens without an eos stop
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    with torch.no_grad():
        results[f"{name}.image_logits"] = model(cases["input_ids"], **pixels).logits
        results[f"{name}.text_logits"] = model(cases["text_input_ids"]).logits
        results[f"{name}.image_greedy"] = model.generate(
            cases["input_ids"], **pixels, max_new_tokens=16, do_sample=False
        )
        results[f"{name}.text_greedy"] = model.generate(cases["text_input_ids"], max_new_tokens=16, do_sample=False)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    results[f"{name}.prompt_ids"] = torch.tensor(tokenizer(prompt, add_special_tokens=False).input_ids)
    # a left-padded batch of two prompts against each prompt alone
    tokenizer.padding_side = "left"
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        for text in ("hi", "tell me a long story")
    ]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        results[f"{name}.batch_greedy"] = model.generate(**batch, max_new_tokens=6, do_sample=False)[:, -6:]
        results[f"{name}.alone_greedy"] = torch.cat(
            [
                model.generate(
                    tokenizer(p, return_tensors="pt", add_special_tokens=False).input_ids,
                    max_new_tokens=6,
                    do_sample=False,
                )[:, -6:]
                for p in prompts
            ]
        )
    record_cache_names(model, cases["text_input_ids"], name, results)
    record_refusals(model, cases["text_input_ids"], name, results)
    results[f"{name}.class_is_remote"] = torch.tensor(type(model).__module__.startswith("transformers_modules"))
    model.save_pretrained(job["resave"])  # transformers' own save of the loaded model: must stay mmv-readable


def record_cache_names(model, ids, name: str, results: dict) -> None:
    """A prefill and one cached step, the cache passed as `cache` (transformers >= 5.24) or as `past_key_values`."""
    import torch
    from transformers import DynamicCache

    for key in ("cache", "past_key_values"):
        cache = DynamicCache()
        with torch.no_grad():
            model(ids[:, :-1], **{key: cache})
            results[f"{name}.step_logits.{key}"] = model(ids[:, -1:], **{key: cache}).logits[:, -1]


def record_refusals(model, ids, name: str, results: dict) -> None:
    """Calls the modeling code must refuse, each with the error that names what is wrong, instead of running on."""
    import torch
    from transformers import DynamicCache

    length = ids.shape[1]
    calls = {  # what -> (the call, a phrase of the error it must raise)
        "unknown_forward_argument": (lambda: model(ids, not_an_argument=1), "not_an_argument"),
        "unknown_generate_argument": (
            lambda: model.generate(ids, max_new_tokens=1, not_an_argument=1),
            "not_an_argument",
        ),
        "both_cache_names": (lambda: model(ids, cache=DynamicCache(), past_key_values=DynamicCache()), "not both"),
        "static_cache": (
            lambda: model.generate(ids, max_new_tokens=2, cache_implementation="static"),
            "DynamicCache",
        ),
        "four_d_attention_mask": (
            lambda: model(ids, attention_mask=torch.ones(1, 1, length, length)),
            "2-D attention mask",
        ),
    }
    for what, (call, phrase) in calls.items():
        try:
            with torch.no_grad():
                call()
            refused = False
        except (TypeError, ValueError) as error:
            refused = phrase in str(error)
        results[f"{name}.refused.{what}"] = torch.tensor(refused)


def main() -> None:
    without_mmv()
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    results: dict = {}
    for job in json.loads(sys.argv[2]):
        run_job(job, results)
    import transformers

    save_file(
        {k: v.contiguous() for k, v in results.items()},
        sys.argv[3],
        metadata={"transformers": transformers.__version__},
    )


if __name__ == "__main__":
    main()
