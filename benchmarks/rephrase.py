"""Rephrase stage throughput against its peers, in one process on the same prompts.

1. stage vs bare loop: generated tokens/s of the ``rephrase`` stage (routing,
   segmentation, pre-flight, parsing, provenance, Arrow assembly) against a bare
   ``backend.generate`` loop over the very same requests, same ONNX backend
   (target >= 0.9x);
2. HTTP concurrency: requests/s of the OpenAI-compatible client at 1, 4 and 16 in
   flight against a loopback server that answers after a fixed latency (what a
   remote fleet looks like to one client), and against the loopback model server
   (one CPU model: the model, not the client, is then the bottleneck);
3. cache replay: requests/s of a re-run served entirely from the request cache,
   against generating them.

    .venv/bin/python benchmarks/rephrase.py --docs 32 --max-tokens 48
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from llm_server import TOPICS, LoopbackServer  # noqa: E402

from winnow.llm.base import Request, Result  # noqa: E402
from winnow.llm.openai import OpenAIBackend  # noqa: E402
from winnow.stages.rephrase import Rephrase, RephraseParams  # noqa: E402


def corpus(n: int) -> pa.Table:
    texts = [f"{TOPICS[i % len(TOPICS)]} Note {i}." for i in range(n)]
    return pa.table({"id": [f"d{i:04d}" for i in range(n)], "text": texts})


def stage_vs_bare(args) -> None:
    params = RephraseParams(
        styles=["wrap_easy"],
        max_tokens=args.max_tokens,
        backend={"kind": "onnx", "batch_size": args.batch, "threads": args.threads},
        cache=False,
    )
    stage = Rephrase(params, stage_id="rp", seed=0)
    stage.prepare()
    stage.setup()
    table = corpus(args.docs)
    gen = stage._generator
    jobs = gen.plan_jobs(
        table.column("id").to_pylist(),
        table.column("text").to_pylist(),
        gen.route(table),
        stage._templates,
    )
    requests = [r for j in jobs for r in j.requests]
    backend = gen.backend
    backend.generate(requests[: args.batch])  # warm-up
    best_bare = best_stage = 0.0
    for _ in range(args.rounds):
        start = time.perf_counter()
        tokens = sum(r.completion_tokens for r in backend.generate(requests))
        best_bare = max(best_bare, tokens / (time.perf_counter() - start))
        start = time.perf_counter()
        out = stage.process(table)
        best_stage = max(best_stage, out.stats["completion_tokens"] / (time.perf_counter() - start))
    print(
        f"stage vs bare loop ({len(requests)} requests, batch {args.batch}): "
        f"stage {best_stage:.1f} tok/s, bare {best_bare:.1f} tok/s, "
        f"ratio {best_stage / best_bare:.3f}x"
    )
    return stage


class Fixed:
    """A stand-in model for the latency server: a fixed answer after a fixed delay."""

    def __init__(self, latency: float):
        self.latency = latency

    def generate(self, requests):
        time.sleep(self.latency)
        return [Result("ok", "stop", 1, 1) for _ in requests]


def http_scaling(args, model_backend) -> None:
    reqs = [Request((("user", f"Say hi {i}."),), 8, seed=i) for i in range(args.http_requests)]
    for label, backend, n in (
        (f"fixed {args.latency * 1000:.0f} ms latency", Fixed(args.latency), len(reqs)),
        ("loopback model server", model_backend, 16),
    ):
        with LoopbackServer(backend) as server:
            server.parallel = isinstance(backend, Fixed)
            rates = {}
            for concurrency in (1, 4, 16):
                client = OpenAIBackend(server.url, "m", concurrency=concurrency, timeout=120)
                start = time.perf_counter()
                results = client.generate(reqs[:n])
                assert all(r.error is None for r in results), results[0].detail
                rates[concurrency] = n / (time.perf_counter() - start)
        shown = ", ".join(f"{c} in flight {r:.1f} req/s" for c, r in rates.items())
        print(f"HTTP, {label}: {shown}; 16 vs 1: {rates[16] / rates[1]:.2f}x")


def cache_replay(args, stage: Rephrase) -> None:
    table = corpus(args.docs)
    with tempfile.TemporaryDirectory() as tmp:
        stage.params = stage.params.model_copy(update={"cache": True})
        stage.run_dir = Path(tmp)
        start = time.perf_counter()
        first = stage.process(table)
        generate = first.stats["requests"] / (time.perf_counter() - start)
        start = time.perf_counter()
        again = stage.process(table)
        replay = again.stats["requests"] / (time.perf_counter() - start)
        assert again.stats["cache_hits"] == again.stats["requests"]
        assert again.kept.equals(first.kept)
    print(
        f"cache replay: {replay:.0f} req/s from the cache vs {generate:.1f} req/s generating "
        f"({replay / generate:.0f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--http-requests", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    stage = stage_vs_bare(args)
    http_scaling(args, stage._generator.backend)
    cache_replay(args, stage)


if __name__ == "__main__":
    main()
