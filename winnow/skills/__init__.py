"""Skill-graph data selection (MASS) and its building blocks.

A reference set (documents of the target domain) yields skills (``extract``), merged
by embedding similarity (``merge``), relabelled onto the reference documents
(``relabel``) and turned into a weighted graph (``graph``). Corpus documents are
scored against the graph (``aggregate``). ``embedder`` and ``static`` embed text;
``artifact`` stores the built graph content-addressed; ``reference`` reads the
reference set. The pipeline stages live in ``winnow.stages.skills``,
``winnow.stages.embed_sim`` and ``winnow.stages.dsir``.
"""
