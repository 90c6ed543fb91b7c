"""Datasets in the published parquet schema: row parsing, tokenisation with labels, streaming, batching."""
