"""winnow: curate LLM pretraining data and test the result with proxy-model ablations."""

__version__ = "0.1.0"
