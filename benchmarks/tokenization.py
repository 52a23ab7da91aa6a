"""Tokenize + decompose throughput against datatrove's DocumentTokenizer, and bucket
distributions for a demo-like and a long-document corpus.

Both sides tokenize the same real documents with the same byte-level BPE (trained
here, offline) on one thread, append EOS and write their output to disk: winnow
materialises the tokenized parts as Arrow IPC (as the runner does) and writes length
buckets plus the concat baseline; datatrove writes its token file, index and shuffled
copy (its defaults). winnow runs twice, with the tokenize stage's ``engine: hf`` and
``engine: tiktoken``, and the two outputs must be identical. Figures are tokens per
CPU-second of this process (per core), best of ``--rounds`` alternating runs.

    python benchmarks/tokenization.py --docs 4000 --vocab 32768 --rounds 3
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder leads sys.path and would shadow the stdlib
# ``tokenize`` module (which pandas and others import): drop it.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=4000, help="real documents to use")
    ap.add_argument("--vocab", type=int, default=32768, help="BPE vocabulary size")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timed rounds")
    ap.add_argument("--chunk-rows", type=int, default=2000, help="rows per tokenize call")
    ap.add_argument("--long-group", type=int, default=256, help="docs joined per long doc")
    ap.add_argument("--threads", type=int, default=1, help="tokenizers threads (RAYON)")
    ap.add_argument("--short-min-log2", type=int, default=5, help="extra demo table's min_log2")
    return ap.parse_args()


def cpu_timed(fn) -> tuple[float, object]:
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def run_winnow(
    docs: list[dict], tok_path: Path, chunk_rows: int, out: Path, engine: str = "auto", **dec
) -> dict:
    """Tokenize in runner-sized chunks, materialise as IPC parts, decompose; the manifest."""
    import json

    import pyarrow as pa

    from winnow.stages.base import Materialized
    from winnow.stages.decompose import Decompose
    from winnow.stages.tokenize import Tokenize

    params = Tokenize.Params(tokenizer=str(tok_path), engine=engine)
    stage = Tokenize(params, stage_id="tok", seed=0)
    stage.setup()
    (out / "tok").mkdir(parents=True)
    files = []
    for i in range(0, len(docs), chunk_rows):
        table = stage.process(pa.Table.from_pylist(docs[i : i + chunk_rows])).kept
        files.append(out / "tok" / f"part-{i // chunk_rows:05d}.arrow")
        with pa.ipc.new_file(str(files[-1]), table.schema) as writer:
            writer.write_table(table)
    dec_stage = Decompose(Decompose.Params(**dec), stage_id="dec", seed=0, run_dir=out)
    start = time.process_time()
    for _ in dec_stage.run(Materialized(files), out / "work"):
        pass
    manifest = json.loads((out / "buckets" / "manifest.json").read_text())
    return {**manifest, "decompose_cpu_s": time.process_time() - start}


def tree_digest(folder: Path) -> str:
    """sha256 over every file under ``folder``, in path order."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_datatrove(docs: list[dict], tok_path: Path, out: Path) -> int:
    from datatrove.data import Document
    from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer

    step = DocumentTokenizer(str(out), str(tok_path), eos_token="<|endoftext|>", seed=0)
    step.run(iter([Document(text=d["text"], id=d["id"]) for d in docs]))
    return int(step.stats["tokens"].total)


def bucket_table(title: str, manifest: dict) -> str:
    total = manifest["mixed_tokens"]
    lines = [
        f"{title}: {manifest['documents']} docs, {total:,} tokens",
        "",
        "| bucket | sequences | tokens | % tokens |",
        "|---:|---:|---:|---:|",
    ]
    for n, b in sorted(manifest["buckets"].items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"| {n} | {b['sequences']:,} | {b['tokens']:,} | {100 * b['tokens'] / total:.1f} |"
        )
    c = manifest["concat"]
    lines.append(
        f"| dropped (< {2 ** manifest['min_log2']}) | | {manifest['dropped_tokens']:,} "
        f"| {100 * manifest['dropped_tokens'] / total:.1f} |"
    )
    lines.append(
        f"| concat len {c['len']} | {c['sequences']:,} | {c['tokens']:,} "
        f"| {100 * c['tokens'] / total:.1f} |"
    )
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # before tokenizers starts its pool
    import pyarrow as pa

    from winnow.sample_text import real_documents
    from winnow.tokenizer import train_tokenizer

    docs = real_documents(args.docs)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "corpus" / "data").mkdir(parents=True)
        table = pa.Table.from_pylist(docs)
        with pa.ipc.new_file(str(tmp / "corpus" / "data" / "shard-00000.arrow"), table.schema) as w:
            w.write_table(table)
        train_s, tok_path = cpu_timed(
            lambda: train_tokenizer(tmp / "corpus", tmp / "tokenizer.json", args.vocab)
        )
        print(
            f"docs {len(docs)}, chars {sum(len(d['text']) for d in docs):,}; "
            f"BPE vocab {args.vocab} trained in {train_s:.1f} CPU-s; threads {args.threads}"
        )

        from tokenizers import Tokenizer

        from winnow.fast_bpe import encode_batch, to_tiktoken

        tok = Tokenizer.from_file(str(tok_path))
        convert_s, conversion = cpu_timed(lambda: to_tiktoken(tok))
        print(f"tiktoken conversion: {conversion.reason or 'exact'} ({convert_s:.2f} CPU-s)")
        texts = [d["text"] for d in docs]

        def winnow(engine: str):
            return lambda out: run_winnow(docs, tok_path, args.chunk_rows, out, engine)[
                "input_tokens"
            ]

        tiktoken_run, hf_run = (
            f"winnow tokenize + decompose, engine: {e}" for e in ("tiktoken", "hf")
        )
        engines = {tiktoken_run: "tiktoken", hf_run: "hf"}
        runs = {
            tiktoken_run: winnow("tiktoken"),
            "datatrove DocumentTokenizer": lambda out: run_datatrove(docs, tok_path, out),
            hf_run: winnow("hf"),
            "fast_bpe.encode_batch alone (tiktoken engine's floor)": lambda out: (
                len(texts) + len(encode_batch(conversion.encoding, texts)[0])
            ),
            "encode_batch_fast alone (winnow's floor)": lambda out: (
                len(texts)
                + sum(len(e.ids) for e in tok.encode_batch_fast(texts, add_special_tokens=False))
            ),
            "encode_batch alone (datatrove's floor)": lambda out: (
                len(texts)
                + sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
            ),
        }
        best = dict.fromkeys(runs, float("inf"))
        tokens, shas = {}, {}
        for r in range(args.rounds):
            for i, (name, fn) in enumerate(runs.items()):
                out = tmp / f"run-{r}-{i}"
                out.mkdir()
                secs, tokens[name] = cpu_timed(lambda fn=fn, out=out: fn(out))
                best[name] = min(best[name], secs)
                if name in engines:  # outside the timing
                    shas[engines[name]] = tree_digest(out / "buckets")
                shutil.rmtree(out)
        assert len(set(tokens.values())) == 1, tokens  # EOS included everywhere
        assert shas["tiktoken"] == shas["hf"], "engines wrote different buckets"
        print("\n| pipeline | tokens | CPU s | tokens/s per core |\n|---|---:|---:|---:|")
        for name, secs in best.items():
            print(f"| {name} | {tokens[name]:,} | {secs:.2f} | {tokens[name] / secs:,.0f} |")
        names = list(runs)
        fast, peer, hf = best[names[0]], best[names[1]], best[names[2]]
        print(f"\nratio winnow (tiktoken) / datatrove: {peer / fast:.2f}x")
        print(f"ratio winnow (hf) / datatrove: {peer / hf:.2f}x")
        print(f"ratio winnow tiktoken / hf engine: {hf / fast:.2f}x")
        secs = min(
            run_winnow(docs, tok_path, args.chunk_rows, tmp / f"d{i}")["decompose_cpu_s"]
            for i in range(args.rounds)
        )
        print(f"decompose alone: {tokens[names[0]] / secs:,.0f} tokens per CPU-second")

        demo = run_winnow(docs, tok_path, args.chunk_rows, tmp / "demo")
        short_lo = args.short_min_log2
        short = run_winnow(docs, tok_path, args.chunk_rows, tmp / "short", min_log2=short_lo)
        g = args.long_group
        long_docs = [
            {"id": f"long-{i:06d}", "text": "\n\n".join(d["text"] for d in docs[i : i + g])}
            for i in range(0, len(docs), g)
        ]
        long = run_winnow(long_docs, tok_path, args.chunk_rows, tmp / "long")
        rand = run_winnow(long_docs, tok_path, args.chunk_rows, tmp / "rand", randomize_long=True)
        print()
        print(bucket_table("demo-like corpus (real_documents)", demo))
        print()
        print(bucket_table(f"demo-like corpus, min_log2: {short_lo}", short))
        print()
        print(bucket_table(f"long-document corpus ({g} docs joined per document)", long))
        print()
        print(bucket_table("long-document corpus, randomize_long: true", rand))
    return 0


if __name__ == "__main__":
    sys.exit(main())
