"""Offline synthetic data: scenes, their captions and questions, a tokenizer and a tiny encoder.

Everything a first run needs without a download: `mmv data synth` and `mmv demo` build on this package. The tools
for users' own data (checking, LLaVA conversion, contact sheets, the parquet writer) live in `mmv.data`.
"""
