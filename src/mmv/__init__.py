"""mmv: train and run tiny MiniMind-V vision-language models."""

__version__ = "0.1.0"
