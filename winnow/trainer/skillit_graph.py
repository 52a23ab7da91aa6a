"""Learn a Skill-it graph from one-hot probe runs (Chen et al. 2023, section 3).

For each group (source) ``i`` a short run trains only on ``i`` (a static mixture
with all weight on ``i``), from the same initialisation and seed. ``A[i, j]`` is the
relative drop of group ``j``'s held-out loss, ``(L_j(init) - L_j(after i)) /
L_j(init)``: how much training on ``i`` helps ``j``. The matrix is written as JSON
``{"groups": [...], "matrix": [[...]]}``, the format ``data.mixture.graph`` reads.

    python -m winnow.trainer.skillit_graph train.yaml --out graph.json [--set train.steps=50]

Probe runs write under ``<out of the config>/skillit-probe-<i>/``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from winnow.files import write_json_atomic
from winnow.trainer.config import TrainConfig, load_train_config
from winnow.trainer.mixture import MixtureConfig
from winnow.trainer.train import Trainer


def learn_graph(cfg: TrainConfig, eval_docs: int = 8) -> dict:
    """``{"groups", "matrix", "initial_loss"}`` from one probe run per group."""

    def probe(mixture: MixtureConfig | None, name: str) -> Trainer:
        data = cfg.data.model_copy(update={"mixture": mixture})
        return Trainer(cfg.model_copy(update={"data": data, "out": str(Path(cfg.out) / name)}))

    base = probe(None, "skillit-init")  # not trained: the shared initialisation
    groups = list(base.dataset.sources)
    before = base.source_losses(eval_docs, groups)
    matrix = np.zeros((len(groups), len(groups)))
    for i, group in enumerate(groups):
        trainer = probe(MixtureConfig(weights={group: 1.0}), f"skillit-probe-{i}")
        trainer.run()
        matrix[i] = (before - trainer.source_losses(eval_docs, groups)) / before
    return {"groups": groups, "matrix": matrix.tolist(), "initial_loss": before.tolist()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="training config YAML (bucket mode)")
    ap.add_argument("--out", required=True, help="where the graph JSON goes")
    ap.add_argument("--eval-docs", type=int, default=8, help="held-out docs per group")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    graph = learn_graph(load_train_config(args.config, args.overrides), args.eval_docs)
    write_json_atomic(Path(args.out), graph)
    print(json.dumps({"groups": graph["groups"], "matrix": graph["matrix"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
