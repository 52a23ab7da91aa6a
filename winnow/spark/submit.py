"""Run a pipeline on Spark: ``python -m winnow.spark PIPELINE.yaml`` or ``spark-submit``.

``submit_command`` builds the ``spark-submit`` line (``winnow spark-submit`` prints
it): this file is the driver script. ``python -m winnow.runners.spark`` still works.
"""

from __future__ import annotations

import sys
from pathlib import Path

from winnow.errors import WinnowError

PACK_ARCHIVE = "winnow-env.tar.gz"


def submit_command(pipeline: str, master: str, *, pack: bool = False) -> str:
    """The ``spark-submit`` line for ``pipeline``. Without ``pack`` every node needs
    this Python, with winnow, at this path; with ``pack`` this virtualenv is packed
    into ``winnow-env.tar.gz`` (venv-pack) and shipped to the executors."""
    import importlib.util
    import shlex

    script = str(Path(__file__).resolve())  # runs main() below on the driver
    pipeline = str(Path(pipeline).resolve())  # the driver may not start in this folder
    if not pack:
        conf = ["--conf", f"spark.pyspark.python={sys.executable}"]
        return shlex.join(["spark-submit", "--master", master, *conf, script, pipeline])
    if importlib.util.find_spec("venv_pack") is None:
        raise WinnowError("--pack needs venv-pack, which is not installed: pip install venv-pack")
    import venv_pack

    try:  # an editable install packs only a link to this tree: `pip install .` first
        venv_pack.pack(prefix=sys.prefix, output=PACK_ARCHIVE, force=True, verbose=False)
    except venv_pack.VenvPackException as exc:
        raise WinnowError(f"--pack: venv-pack failed: {exc}") from None
    conf = [
        "--archives",
        f"{PACK_ARCHIVE}#environment",
        "--conf",
        "spark.pyspark.python=./environment/bin/python",
        "--conf",
        f"spark.pyspark.driver.python={sys.executable}",
    ]
    return shlex.join(["spark-submit", "--master", master, *conf, script, pipeline])


def main(argv: list[str] | None = None) -> int:
    import argparse

    from winnow.pipeline import load_pipeline
    from winnow.spark.executor import run_spark

    parser = argparse.ArgumentParser(prog="winnow.spark", description=__doc__.split("\n")[0])
    parser.add_argument("pipeline")
    parser.add_argument(
        "--master", help="Spark master URL (default: spark-submit's, else local[*])"
    )
    parser.add_argument("--force", action="store_true", help="recompute completed stages")
    args = parser.parse_args(argv)
    try:
        ledger = run_spark(load_pipeline(args.pipeline), master=args.master, force=args.force)
    except WinnowError as exc:
        print(f"winnow: error: {exc}", file=sys.stderr)
        return 2
    from rich.console import Console

    Console().print(ledger.render())
    return 0


if __name__ == "__main__":
    # Re-import by module name so the functions Spark ships are pickled by reference.
    from winnow.spark.submit import main as _main

    sys.exit(_main())
