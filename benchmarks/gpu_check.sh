#!/usr/bin/env bash
# The GPU checks of issue 13 in one short run (< 8 minutes on an H100/H200):
#   1. the `gpu`-marked tests (MinHash torch kernels bit-identical on CUDA, trainer step),
#   2. benchmarks/minhash_gpu.py (signatures + band keys, GPU vs one CPU core),
#   3. benchmarks/trainer.py's GPU profile (p124m, seq 1024, bf16, compiled: MFU; bucket
#      mode <= 8192 vs concat-and-chunk 8192 on identical tokens).
# Prepare here with benchmarks/gpu_wheels.sh, then on the device machine (carry .whl):
#   bash benchmarks/gpu_check.sh        (logs under $OUT, or gpu-results/)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
mkdir -p "$out"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
"$PY" -c "import winnow.trainer.train, winnow.kernels.minhash_torch" || exit 1
timeout 90 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_minhash_torch.py \
    tests/test_trainer_train.py 2>&1 | tee "$out/gpu_tests.txt"
timeout 90 "$PY" benchmarks/minhash_gpu.py --docs 100000 2>&1 | tee "$out/minhash_gpu.txt"
timeout 270 "$PY" benchmarks/trainer.py --profile gpu 2>&1 | tee "$out/trainer_gpu.txt"
