"""Datasets in the published parquet schema: reading, one validator for every row, tokenisation with labels,
streaming, batching; and the dataset tools (check, LLaVA conversion, contact sheet, writer, rechunk)."""
