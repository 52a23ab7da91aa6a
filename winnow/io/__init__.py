"""Readers and writers: JSONL (plain, gzip, zstd), Parquet, Arrow IPC, HF datasets."""
