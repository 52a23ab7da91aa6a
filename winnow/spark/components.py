"""Connected components of a large edge list on Spark (large-star / small-star)."""

from __future__ import annotations

import logging

from pyspark.sql import Window
from pyspark.sql import functions as F

from winnow.errors import WinnowError
from winnow.spark.frames import materialise

log = logging.getLogger("winnow.spark")


def connected_components(edges, max_rounds: int = 100):
    """Connected components of an undirected ``(a, b)`` long edge frame, by alternating
    large-star and small-star rounds (Kiveris et al., "Connected Components in
    MapReduce and Beyond", SoCC 2014): O(log n) rounds, each two shuffles of the
    edges. Returns ``(a, b)``: every non-minimal node ``a`` of a component once, with
    ``b`` the component's smallest node. Isolated nodes do not appear.

    Each round's edges are materialised (checkpointed): the convergence test reads
    them anyway, and it keeps the lineage (and plan analysis) from growing per round.
    """

    a, b = F.col("a"), F.col("b")
    by_u = Window.partitionBy("u")
    for i in range(max_rounds):
        # Large star: link every larger neighbour of u to u's smallest neighbour (or u).
        both = edges.select(a.alias("u"), b.alias("v")).unionByName(
            edges.select(b.alias("u"), a.alias("v"))
        )
        large = (
            both.select("u", "v", F.least(F.min("v").over(by_u), F.col("u")).alias("m"))
            .where("v > u")
            .select(F.col("v").alias("a"), F.col("m").alias("b"))
            .distinct()
        )
        # Small star: link u and its smaller neighbours to the smallest of them.
        by_a = Window.partitionBy("a")
        small = large.select("a", "b", F.min("b").over(by_a).alias("m"))
        edges = (
            small.select(b.alias("a"), F.col("m").alias("b"))
            .where("a <> b")
            .unionByName(small.select("a", F.col("m").alias("b")))
            .distinct()
        )
        edges = materialise(edges)
        # Converged when the edges are stars: one edge per member, no centre is a member.
        roles = edges.select(a.alias("n"), F.lit(1).alias("member")).unionByName(
            edges.select(b.alias("n"), F.lit(0).alias("member"))
        )
        per_node = roles.groupBy("n").agg(F.sum("member").alias("m"), F.count("*").alias("all"))
        if per_node.where("m > 1 OR (m = 1 AND all > 1)").isEmpty():
            log.info("connected components: %d rounds", i + 1)
            return edges
    raise WinnowError(f"connected components did not converge in {max_rounds} rounds")
