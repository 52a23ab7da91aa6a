"""Spark backends of global stages, one module per stage.

A global stage names its backend in ``spark_backend`` (``"package.module:function"``,
imported only when the pipeline runs on Spark). The protocol is one function::

    def run(spark, stage, data: Materialized, folder: Path) -> StageCount

It reads ``data`` (the parent parts), writes the stage's kept parts into ``folder``
(``part-<i>.arrow``, one per input part for row-preserving stages, in the order the
local ``run`` yields them) and rejected rows with
``winnow.runners.layout.write_rejected``, and returns the stage's count. The output
must be byte-identical to the local ``run``: share the maths through ``kernels/`` or
public functions of the stage. Most backends decide with DataFrame operations and
let ``winnow.spark.frames.frame_backend`` do the reading and writing.
"""
