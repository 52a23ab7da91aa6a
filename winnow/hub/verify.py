"""Verify a staged tree the way users will read it: load every config with ``datasets``.

``load_dataset`` checks each split against the card's ``dataset_info`` (a wrong
``num_examples`` raises), and we check the loaded rows against the run's own counts
and that each token config holds fixed-length ``List(uint16|uint32, length=N)``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from winnow.errors import WinnowError
from winnow.hub.plan import PublishPlan

TOKEN_DTYPES = ("uint16", "uint32")


def verify_tree(tree: Path, plan: PublishPlan) -> dict[str, int]:
    """Rows per config, as loaded; raises ``WinnowError`` on any mismatch."""
    import datasets
    from datasets import List

    datasets.disable_progress_bars()
    loaded = {}
    with tempfile.TemporaryDirectory(prefix="winnow-verify-") as cache:
        for config in plan.configs:
            try:
                ds = datasets.load_dataset(str(tree), config.name, split="train", cache_dir=cache)
            except Exception as exc:  # datasets raises many types; name the config
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise WinnowError(f"{tree}: config {config.name!r} does not load: {msg}") from exc
            if ds.num_rows != config.rows:
                raise WinnowError(
                    f"{tree}: config {config.name!r} loads {ds.num_rows} rows, "
                    f"the run has {config.rows}"
                )
            if config.kind == "tokens":
                feature = ds.features.get("tokens")
                ok = (
                    isinstance(feature, List)
                    and feature.length == config.length
                    and getattr(feature.feature, "dtype", None) in TOKEN_DTYPES
                )
                if not ok:
                    raise WinnowError(
                        f"{tree}: config {config.name!r}: tokens feature is {feature}, expected "
                        f"List(uint16|uint32, length={config.length})"
                    )
            loaded[config.name] = ds.num_rows
            del ds
    return loaded
