"""LoRA, DoRA and QLoRA adapters on mmv's own modules, through peft, in the layout peft reads and writes.

- `spec`: what a run's adapter is (rank, scale, targets) and the peft `LoraConfig` for it;
- `inject`: adapters put into a MiniMindVLM, their parameters found, merged into the base weights;
- `files`: an adapter folder (`adapter_config.json` + `adapter_model.safetensors`) written and read;
- `apply`: an adapter checked against a base model and merged into its weights (what chat, eval, convert load);
- `quantize`: the frozen base held in 4-bit NF4 (bitsandbytes, on CUDA or the CPU) for QLoRA.

The trained projector travels in the adapter as peft's `modules_to_save`, so an adapter folder is the whole
difference between its base and the fine-tuned model.
"""
