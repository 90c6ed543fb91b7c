"""Offline data: synthetic scenes, their captions and questions, a tokenizer and a tiny encoder; and the tools for
users' own data (LLaVA conversion, row-by-row checking, contact sheets).

Everything a first run needs without a download: `mmv data ...` and `mmv demo` build on this package.
"""
