#!/usr/bin/env bash
# Download (here, where pip reaches a registry) the wheels winnow needs that the GPU
# image lacks, for its Python 3.12, into .whl/ (git-ignored via .git/info/exclude).
# Then run benchmarks/gpu_check.sh on the GPU machine with `.whl` carried.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PY=${PY:-.venv/bin/python}
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${plat[@]}" -d .whl \
    duckdb pydantic pydantic-core==$("$PY" -c 'import pydantic_core; print(pydantic_core.__version__)') \
    annotated-types typing-inspection typing-extensions zstandard ftfy wcwidth
du -sh .whl
