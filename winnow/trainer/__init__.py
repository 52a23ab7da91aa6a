"""Compact GPT trainer for proxy-model data ablations."""
