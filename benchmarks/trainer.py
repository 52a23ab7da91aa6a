"""Trainer benchmarks: throughput/MFU, and Dataset Decomposition vs concat-and-chunk.

1. Throughput: the model preset at one sequence length on random tokens; tokens/s
   and MFU (bf16 dense peak of the device) over the timed steps, after the compile
   warm-up. GPU target: p124m, seq 1024, bf16, compiled, one H100: MFU >= 40%.
2. Bucket mode vs concat-and-chunk on identical tokens (real text, byte tokenizer):
   the same preset, steps and tokens per step; bucket mode draws buckets up to the
   concat length with the grow-P2 curriculum. Reports tokens/s of each, their ratio
   (GPU target >= 2x at length 8192) and held-out loss at equal tokens. Runs
   alternate between the modes and the best of ``--repeats`` counts (runs are
   deterministic, so repeats differ only in time).

Without a GPU it runs a CPU-sized version (tiny preset, fp32, eager, short
sequences) and prints the same table. ``--profile cpu-long`` is the CPU analogue of
the GPU comparison: buckets up to 8192 with a model narrow enough that attention is
most of its FLOPs at 8192, as it is for p124m on a GPU at that length. Usage::

    python benchmarks/trainer.py             # GPU if present, else CPU
    python benchmarks/trainer.py --device cpu --steps 30
    python benchmarks/trainer.py --profile cpu-long
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from trainer_fixtures import write_bucket_dir  # noqa: E402  (the byte-tokenizer writer)

from winnow.sample_text import real_documents  # noqa: E402
from winnow.trainer.config import parse_train_config  # noqa: E402
from winnow.trainer.train import Trainer  # noqa: E402

GPU = {
    "preset": "p124m",
    "seq": 1024,
    "tps": 1 << 19,
    "micro": 1 << 14,
    "steps": 40,
    "dd_lengths": [2**k for k in range(8, 14)],
    "dd_tps": 1 << 18,
    "dd_docs": 20000,
    "dd_steps": 40,
    "vocab": 50257,
}
CPU = {
    "preset": "tiny",
    "seq": 256,
    "tps": 4096,
    "micro": 4096,
    "steps": 20,
    "dd_lengths": [32, 64, 128, 256, 512],
    "dd_tps": 4096,
    "dd_docs": 1500,
    "dd_steps": 30,
    "vocab": 257,
}
CPU_LONG = {
    **CPU,
    "seq": 1024,
    "tps": 16384,
    "micro": 16384,
    "steps": 10,
    "dd_lengths": [2**k for k in range(6, 14)],
    "dd_tps": 16384,
    "dd_docs": 4000,
    "dd_steps": 40,
}
PROFILES = {"gpu": GPU, "cpu": CPU, "cpu-long": CPU_LONG}


def synthetic_buckets(root: Path, seq: int, rows: int, vocab: int) -> Path:
    """One bucket of random tokens (throughput does not depend on token values)."""
    rng = np.random.default_rng(0)
    dtype = np.uint16 if vocab <= 1 << 16 else np.uint32
    tokens = rng.integers(0, vocab, size=rows * seq).astype(dtype)
    table = pa.table(
        {
            "tokens": pa.FixedSizeListArray.from_arrays(pa.array(tokens), seq),
            "doc_id": pa.array([f"r{i}" for i in range(rows)]),
            "source": pa.array(["random"] * rows),
            "offset": pa.array(np.zeros(rows, np.int64)),
        }
    )
    (root / f"len_{seq}").mkdir(parents=True)
    with pa.ipc.new_file(str(root / f"len_{seq}" / "shard_00000.arrow"), table.schema) as w:
        w.write_table(table)
    manifest = {
        "token_dtype": np.dtype(dtype).name,
        "vocab_size": vocab,
        "eos_id": None,
        "buckets": {str(seq): {"sequences": rows, "tokens": rows * seq}},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def run(
    out: Path,
    data: Path,
    preset: str,
    steps: int,
    tps: int,
    micro: int,
    device: str,
    compile_: bool,
    **data_extra,
) -> dict:
    cfg = parse_train_config(
        {
            "out": str(out),
            "data": {"path": str(data), "val_fraction": 0.02, **data_extra},
            "model": {"preset": preset},
            "optim": {
                "warmup_steps": max(1, steps // 10),
                "lr": 3e-3 if preset == "tiny" else 6e-4,
            },
            "train": {
                "steps": steps,
                "tokens_per_step": tps,
                "micro_batch_tokens": micro,
                "device": device,
                "compile": compile_,
                "threads": 1,
                "eval_every": 0,
                "resume": False,
            },
            "eval": {"max_docs_per_source": 64},
        }
    )
    trainer = Trainer(cfg)
    t0 = time.perf_counter()
    res = trainer.run()
    res["wall_s"] = time.perf_counter() - t0
    res["device"] = trainer._device_name()
    res["precision"] = trainer.amp_dtype
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--profile", choices=sorted(PROFILES), help="default: gpu on CUDA, else cpu")
    ap.add_argument("--steps", type=int, help="steps per run (default per device)")
    ap.add_argument("--no-compile", action="store_true", help="GPU: run eager")
    ap.add_argument("--work", help="keep runs here instead of a temp dir")
    ap.add_argument(
        "--repeats",
        type=int,
        help="alternating bucket/concat runs, best kept "
        "(default 2 on CPU, where other load adds noise; 1 on GPU)",
    )
    args = ap.parse_args()
    device = (
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    p = PROFILES[args.profile or ("gpu" if device == "cuda" else "cpu")]
    compile_ = device == "cuda" and not args.no_compile
    steps = args.steps or p["steps"]
    work = Path(args.work or tempfile.mkdtemp(prefix="winnow-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    rows = max(64, steps * p["tps"] // p["seq"] // 2)
    synth = synthetic_buckets(work / "synthetic", p["seq"], rows, p["vocab"])
    thr = run(
        work / "throughput", synth, p["preset"], steps, p["tps"], p["micro"], device, compile_
    )

    docs = real_documents(p["dd_docs"])
    top = max(p["dd_lengths"])
    text = write_bucket_dir(
        work / "text", docs, tuple(p["dd_lengths"]), concat_len=top, rows_per_shard=1 << 14
    )
    dd_steps = args.steps or p["dd_steps"]
    common = dict(
        preset=p["preset"],
        steps=dd_steps,
        tps=p["dd_tps"],
        micro=p["micro"],
        device=device,
        compile_=compile_,
    )
    repeats = args.repeats or (1 if device == "cuda" else 2)
    buckets, concats = [], []
    for i in range(repeats):  # alternate, so slow spells hit both modes alike
        buckets.append(
            run(work / f"bucket{i}", text, mode="bucket", curriculum="grow_p2", **common)
        )
        concats.append(run(work / f"concat{i}", text, mode="concat", concat_len=top, **common))
    bucket = max(buckets, key=lambda r: r["tokens_per_s"])
    concat = max(concats, key=lambda r: r["tokens_per_s"])

    def mfu(r):
        return f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "-"

    print(
        f"\ndevice: {thr['device']}, precision {thr['precision']}, compiled: {compile_}, "
        f"torch {torch.__version__}\n"
    )
    print("| run | preset | seq | tokens/step | steps | tokens/s | MFU | held-out loss |")
    print("|---|---|---|---|---|---|---|---|")
    rows_out = [
        ("throughput (random tokens)", thr, str(p["seq"]), p["tps"], steps),
        (
            f"bucket mode, grow-P2, <= {top}",
            bucket,
            f"{min(p['dd_lengths'])}-{top}",
            p["dd_tps"],
            dd_steps,
        ),
        (f"concat-and-chunk {top}", concat, str(top), p["dd_tps"], dd_steps),
    ]
    for name, r, seq, tps, n in rows_out:
        held = r["eval"]["heldout"]["all"]["loss"]
        loss = f"{held:.4f}" if name != rows_out[0][0] else "-"
        print(
            f"| {name} | {p['preset']} | {seq} | {tps} | {n} | {r['tokens_per_s']:,.0f} | "
            f"{mfu(r)} | {loss} |"
        )
    ratio = bucket["tokens_per_s"] / concat["tokens_per_s"]
    dloss = bucket["eval"]["heldout"]["all"]["loss"] - concat["eval"]["heldout"]["all"]["loss"]
    print(
        f"\nbucket / concat tokens/s: {ratio:.2f}x; held-out loss bucket - concat at "
        f"{bucket['tokens']:,} tokens: {dloss:+.4f}"
    )
    print(
        f"recompiles after warm-up: throughput {thr['recompiles_after_warmup']}, "
        f"bucket {bucket['recompiles_after_warmup']}, concat {concat['recompiles_after_warmup']}"
    )
    print(f"best of {repeats} alternating run(s) per mode; runs in {work}")


if __name__ == "__main__":
    main()
