"""Runners execute a plan: ``local`` (process pool, the default) and ``spark``."""
