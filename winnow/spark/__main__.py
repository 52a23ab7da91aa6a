"""``python -m winnow.spark PIPELINE.yaml [--master URL] [--force]``."""

import sys

from winnow.spark.submit import main

sys.exit(main())
