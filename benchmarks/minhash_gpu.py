"""MinHash signatures + band keys on a GPU (``winnow.kernels.minhash_torch``) against one
CPU core (the compiled kernel and the numpy reference), on the same shingle hashes.

Documents are ~2 KB mixes of real docstring lines (benchmarks/dedup.py's corpus); the
shingle hashes (5-word shingles) come from the CPU path once. The GPU figure counts
host -> device copy of the hashes, signatures, band keys (14 x 8) and the copy back,
after one warm-up call; every GPU signature is checked bit-identical to the CPU's.
The CPU side runs on one thread, timed in CPU seconds.

    python benchmarks/minhash_gpu.py --docs 200000            # on a GPU host
    python benchmarks/minhash_gpu.py --device cpu --docs 2000 # smoke run of the code
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dedup import corpus, line_pool  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--cpu-docs", type=int, default=20_000, help="docs timed on the CPU")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--scheme", default="affine32", choices=["affine32", "affine64", "mersenne"])
    ap.add_argument("--chunk", type=int, default=1 << 20, help="shingles per GPU chunk")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from winnow.kernels import minhash_torch as mt
    from winnow.kernels.minhash import MinHasher, band_keys, compiled_signatures, signatures

    t0 = time.perf_counter()
    rows = corpus(args.docs, line_pool(1500), 2000, 0.0, seed=7)
    hasher = MinHasher(num_perm=112, seed=1, scheme=args.scheme)
    hashes, offsets = hasher.shingle_hashes(pa.array([r["text"] for r in rows]))
    perms = hasher.perms
    print(
        f"{args.docs} docs, {len(hashes) / args.docs:.0f} shingles/doc, scheme {args.scheme}; "
        f"corpus + shingle hashes in {time.perf_counter() - t0:.1f}s"
    )

    n_cpu = min(args.cpu_docs, args.docs)
    cpu_h, cpu_off = hashes[: offsets[n_cpu]], offsets[: n_cpu + 1]

    def cpu_rate(fn) -> float:
        fn()
        start = time.process_time()
        fn()
        return n_cpu / (time.process_time() - start)

    compiled = cpu_rate(lambda: band_keys(compiled_signatures(cpu_h, cpu_off, perms), 14, 8))
    numpy = cpu_rate(lambda: band_keys(signatures(cpu_h, cpu_off, perms), 14, 8, engine="numpy"))

    def gpu_run():
        sig = mt.signatures(mt.to_torch(hashes, args.device), offsets, perms, chunk=args.chunk)
        keys = mt.band_keys(sig, 14, 8)
        return mt.to_numpy(sig, args.scheme), keys.cpu().numpy()

    gpu_run()  # warm-up: CUDA context, kernels
    if args.device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    sig, _ = gpu_run()
    if args.device == "cuda":
        torch.cuda.synchronize()
    gpu_s = time.perf_counter() - start
    want = compiled_signatures(cpu_h, cpu_off, perms)
    assert np.array_equal(sig[:n_cpu], want), "GPU signatures differ from the CPU's"
    gpu = args.docs / gpu_s
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (torch)"
    print(f"\ndevice: {name}, torch {torch.__version__}\n")
    print("| signatures + band keys (112 perms, 14x8) | docs/s | GPU / it |\n|---|---:|---:|")
    print(f"| torch on {name} ({args.docs} docs, wall) | {gpu:,.0f} | 1.00x |")
    print(f"| compiled (numba), one CPU core | {compiled:,.0f} | {gpu / compiled:.1f}x |")
    print(f"| numpy reference, one CPU core | {numpy:,.0f} | {gpu / numpy:.1f}x |")
    print("\nGPU signatures bit-identical to the CPU kernel on the first", n_cpu, "docs")


if __name__ == "__main__":
    main()
