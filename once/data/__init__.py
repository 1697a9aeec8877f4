"""Data: raw tables from dataset plugins, the tokenized cache, negative sampling and batches."""
