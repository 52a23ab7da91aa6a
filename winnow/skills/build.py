"""Build a skill graph from reference texts: extract, merge, relabel, graph."""

from __future__ import annotations

from collections import Counter

import numpy as np

from winnow.skills.extract import ExtractorParams, build_extractor
from winnow.skills.graph import SkillGraph, build_graph
from winnow.skills.merge import merge_skills
from winnow.skills.relabel import relabel


def build_skill_graph(
    texts: list[str],
    embedder,
    extractor: ExtractorParams,
    *,
    merge_threshold: float,
    top_m: int,
    tau: float,
) -> tuple[SkillGraph, list[dict], dict]:
    """``(graph, merge report, stats)`` for ``texts`` (already in a canonical order)."""
    docs = embedder.encode(texts)
    tool = build_extractor(extractor)
    if tool is None:  # a closed list: every label is its own skill, named as given
        names = list(dict.fromkeys(label.strip() for label in extractor.labels))
        skill_emb = embedder.encode(names)
        report = [{"skill": n, "frequency": 0, "members": [{"name": n}]} for n in names]
        raw = len(names)
    else:
        extracted = tool.extract(texts)
        frequency = Counter(name for doc in extracted for name in doc)
        unique = sorted(frequency)
        vectors = dict(zip(unique, embedder.encode(unique), strict=True))
        merged = merge_skills(dict(frequency), vectors, merge_threshold)
        names, skill_emb, report, raw = merged.names, merged.embeddings, merged.report, len(unique)
    labels = relabel(docs, skill_emb, top_m, tau)
    graph = build_graph(names, skill_emb, labels, keep_unused=tool is None)
    per_doc = np.array([len(doc) for doc in labels], dtype=np.float64)
    stats = {
        "extractor": tool.identity if tool is not None else "labels",
        "reference_docs": len(texts),
        "extracted_skills": raw,
        "merged_skills": len(names),
        "skills": len(graph.names),
        "edges": len(graph.edge_list()),
        "unlabelled_docs": int((per_doc == 0).sum()),
        "labels_per_doc": round(float(per_doc.mean()) if len(per_doc) else 0.0, 6),
    }
    if getattr(tool, "failures", None) is not None:  # the llm extractor's unusable answers
        stats["llm_failures"] = dict(sorted(tool.failures.items()))
    return graph, report, stats
