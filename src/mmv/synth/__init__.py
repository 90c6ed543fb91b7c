"""Offline synthetic data: drawn scenes, their captions and questions, a tokenizer and a tiny encoder.

Everything a first run needs without a download: `mmv data synth` and `mmv demo` build on this package.
"""
