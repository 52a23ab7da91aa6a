"""The Spark engine: the runner's plan, run directory, ledger and manifest, on Spark.

- ``session``: the SparkSession and errors from the workers;
- ``executor``: ``SparkExecutor`` (map passes as tasks, global stages through their
  backends), ``SparkRunner`` and ``run_spark``;
- ``frames``: DataFrame helpers the backends share; ``components``: connected
  components by large-star / small-star rounds;
- ``backends``: one module per built-in global stage;
- ``submit``: the ``spark-submit`` line and the driver's entry point.

Nothing here is imported by the stages: a stage names its backend by import path.
See ``docs/spark.md`` for the internals.
"""
