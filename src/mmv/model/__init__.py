"""The MiniMind-V network: language model, vision encoder wrapper, projectors and the VLM that joins them."""
