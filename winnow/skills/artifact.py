"""A built skill graph on disk: a content-addressed folder, written atomically.

``ROOT/<key>/`` holds ``skills.json`` (names, weights, frequencies),
``edges.json`` (``[i, j, A_ij]`` for ``i < j``), ``embeddings.npy`` (one unit
vector per skill), ``params.json`` (build params, extractor and embedder
identity), ``merge_report.json`` and ``stats.json``. The key is a hash of the
reference texts and everything the build depends on, so an unchanged build is
found and reused, and two builds of the same inputs write identical bytes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from winnow.files import read_json, reset_dir
from winnow.skills.graph import SkillGraph

FILES = (
    "skills.json",
    "edges.json",
    "embeddings.npy",
    "params.json",
    "merge_report.json",
    "stats.json",
)


def _dump(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")


def write_graph(
    target: Path, graph: SkillGraph, params: dict, merge_report: list, stats: dict
) -> Path:
    """Write the artifact to ``target`` (via a temporary sibling and a rename)."""
    target = Path(target)
    if (target / "stats.json").exists():
        return target
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    reset_dir(tmp)
    skills = {
        "names": graph.names,
        "weights": graph.weights.tolist(),
        "frequency": graph.frequency.tolist(),
    }
    _dump(tmp / "skills.json", skills)
    _dump(tmp / "edges.json", [[i, j, w] for i, j, w in graph.edge_list()])
    np.save(tmp / "embeddings.npy", graph.embeddings.astype(np.float32))
    _dump(tmp / "params.json", params)
    _dump(tmp / "merge_report.json", merge_report)
    _dump(tmp / "stats.json", stats)  # last: its presence marks a complete artifact
    try:
        os.rename(tmp, target)
    except OSError:  # another process finished the same build first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_graph(folder: Path) -> SkillGraph:
    """Load an artifact; ValueError naming the folder when a file is missing."""
    folder = Path(folder)
    missing = [f for f in FILES if not (folder / f).exists()]
    if missing:
        raise ValueError(f"skill graph {folder}: missing {', '.join(missing)}")
    skills = read_json(folder / "skills.json")
    k = len(skills["names"])
    edges = np.zeros((k, k), dtype=np.float64)
    for i, j, w in read_json(folder / "edges.json"):
        edges[i, j] = edges[j, i] = w
    return SkillGraph(
        skills["names"],
        np.asarray(skills["weights"], dtype=np.float64),
        edges,
        np.load(folder / "embeddings.npy"),
        np.asarray(skills["frequency"], dtype=np.int64),
    )
