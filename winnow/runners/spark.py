"""``python -m winnow.runners.spark PIPELINE.yaml``: kept for existing scripts; the
Spark engine lives in ``winnow.spark`` (``python -m winnow.spark``)."""

import sys

if __name__ == "__main__":
    from winnow.spark.submit import main

    sys.exit(main())
