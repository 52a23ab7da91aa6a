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

import pyarrow as pa  # noqa: E402  (after the sys.path fix above)


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
    docs: list[dict] | pa.Table,
    tok_path: Path,
    chunk_rows: int,
    out: Path,
    engine: str = "auto",
    **dec,
) -> dict:
    """Tokenize in runner-sized chunks, materialise as IPC parts, decompose; the manifest.
    Pass ``docs`` as a table to keep the list -> Arrow conversion out of a timing (the
    runner reads Arrow)."""
    import json

    from winnow.stages.base import Materialized
    from winnow.stages.decompose import Decompose
    from winnow.stages.tokenize import Tokenize

    params = Tokenize.Params(tokenizer=str(tok_path), engine=engine)
    stage = Tokenize(params, stage_id="tok", seed=0)
    setup_s, _ = cpu_timed(stage.setup)
    (out / "tok").mkdir(parents=True)
    files = []
    docs = docs if isinstance(docs, pa.Table) else pa.Table.from_pylist(docs)
    for i in range(0, len(docs), chunk_rows):
        table = stage.process(docs.slice(i, chunk_rows)).kept
        files.append(out / "tok" / f"part-{i // chunk_rows:05d}.arrow")
        with pa.ipc.new_file(str(files[-1]), table.schema) as writer:
            writer.write_table(table)
    dec_stage = Decompose(Decompose.Params(**dec), stage_id="dec", seed=0, run_dir=out)
    start = time.process_time()
    for _ in dec_stage.run(Materialized(files), out / "work"):
        pass
    manifest = json.loads((out / "buckets" / "manifest.json").read_text())
    return {**manifest, "decompose_cpu_s": time.process_time() - start, "setup_cpu_s": setup_s}


def tree_digest(folder: Path) -> str:
    """sha256 over every file under ``folder``, in path order."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_datatrove(documents: list, tok_path: Path, out: Path) -> int:
    """datatrove's DocumentTokenizer over ready ``Document`` objects."""
    from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer

    step = DocumentTokenizer(str(out), str(tok_path), eos_token="<|endoftext|>", seed=0)
    step.run(iter(documents))
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


def with_nfc(tokenizer_json: str) -> str:
    """The same tokenizer behind an NFC normalizer (as GPT-NeoX's tokenizer.json has)."""
    import json

    spec = json.loads(tokenizer_json)
    spec["normalizer"] = {"type": "NFC"}
    return json.dumps(spec)


def bare_encoders(tok_path: Path) -> dict:
    """Each engine's own batch encode, no winnow code around it: ``texts -> token count``."""
    import fastokens
    import tokie
    from tokenizers import Tokenizer

    from winnow.fast_bpe import encode_batch, to_tiktoken

    hf = Tokenizer.from_file(str(tok_path))
    ft = fastokens.Tokenizer.from_file(str(tok_path))
    tk = tokie.Tokenizer.from_json(str(tok_path))
    out = {
        "fastokens `encode_batch_flat`": lambda t: len(ft.encode_batch_flat(t)[0]) // 4,
        "tokie `encode_batch`": lambda t: sum(
            len(e.ids) for e in tk.encode_batch(t, add_special_tokens=False)
        ),
    }
    conversion = to_tiktoken(hf)
    if conversion.encoding is not None:
        out["tiktoken (`fast_bpe.encode_batch`)"] = lambda t: len(
            encode_batch(conversion.encoding, t)[0]
        )
    out["HF `encode_batch_fast`"] = lambda t: sum(
        len(e.ids) for e in hf.encode_batch_fast(t, add_special_tokens=False)
    )
    out["HF `encode_batch` (datatrove's)"] = lambda t: sum(
        len(e.ids) for e in hf.encode_batch(t, add_special_tokens=False)
    )
    return out


def compare_engines(label: str, docs: list[dict], tok_path: Path, args, tmp: Path) -> int:
    """One table: winnow per exact engine, datatrove, each bare encode; the token count."""
    from tokenizers import Tokenizer

    from winnow.tokenize_engines import ENCODERS, NotExact, open_engine, split

    texts = [d["text"] for d in docs]
    hf = Tokenizer.from_file(str(tok_path))
    want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    engines, notes = [], []
    for name in ("fastokens", "tokie", "tiktoken", "hf"):
        try:
            setup_s, _ = cpu_timed(lambda name=name: open_engine(name, hf))
            engines.append(name)
            notes.append(f"{name}: exact, setup with probe check {setup_s:.2f} CPU-s")
        except NotExact as exc:
            wrong = ""
            if "cannot load" not in str(exc) and name != "tiktoken":
                got = split(*ENCODERS[name](hf, False)(texts))
                bad = sum(a != b for a, b in zip(got, want, strict=True))
                wrong = f"; differs from HF on {bad} of {len(texts)} corpus docs"
            notes.append(f"{name}: refused ({exc}{wrong})")

    from datatrove.data import Document

    table = pa.Table.from_pylist(docs)

    def winnow(engine: str):
        def run(out: Path) -> tuple[int, float]:
            manifest = run_winnow(table, tok_path, args.chunk_rows, out, engine)
            return manifest["input_tokens"], manifest["setup_cpu_s"]

        return run

    runs = {f"winnow tokenize + decompose, `engine: {e}`": winnow(e) for e in engines}
    documents = [Document(text=d["text"], id=d["id"]) for d in docs]
    runs["datatrove DocumentTokenizer"] = lambda out: (run_datatrove(documents, tok_path, out), 0.0)
    for name, encode in bare_encoders(tok_path).items():
        ok = any(name.lower().startswith(e) for e in engines) or name.startswith("HF")
        name = f"{name} alone" + ("" if ok else " (not exact here)")
        runs[name] = lambda out, encode=encode: (len(texts) + encode(texts), 0.0)
    best = dict.fromkeys(runs, float("inf"))
    setup = dict.fromkeys(runs, 0.0)
    tokens, shas = {}, {}
    for r in range(args.rounds):
        for i, (name, fn) in enumerate(runs.items()):
            out = tmp / f"run-{r}-{i}"
            out.mkdir()
            secs, (tokens[name], setup_s) = cpu_timed(lambda fn=fn, out=out: fn(out))
            if secs < best[name]:
                best[name], setup[name] = secs, setup_s
            if name.startswith("winnow"):  # outside the timing
                shas[name] = tree_digest(out / "buckets")
            shutil.rmtree(out)
    print(f"\n### {label}\n")
    for note in notes:
        print(f"- {note}")
    print(
        "\n| pipeline | tokens | CPU s | tokens/s per core | setup CPU s (once per worker) "
        "| tokens/s per core after setup |\n|---|---:|---:|---:|---:|---:|"
    )
    for name, secs in best.items():
        after = tokens[name] / (secs - setup[name])
        print(
            f"| {name} | {tokens[name]:,} | {secs:.2f} | {tokens[name] / secs:,.0f} "
            f"| {setup[name]:.2f} | {after:,.0f} |"
        )
    checked = [v for k, v in tokens.items() if not k.endswith("(not exact here)")]
    assert len(set(checked)) == 1, tokens  # EOS included everywhere
    assert len(set(shas.values())) == 1, "engines wrote different buckets"
    peer = best["datatrove DocumentTokenizer"]
    bare = dict(
        fastokens="fastokens", tokie="tokie", tiktoken="tiktoken", hf="HF `encode_batch_fast`"
    )
    for e in engines:
        name = f"winnow tokenize + decompose, `engine: {e}`"
        mine, steady = best[name], best[name] - setup[name]
        floor = next(v for k, v in best.items() if k.startswith(bare[e]))
        print(
            f"- `engine: {e}`: {peer / mine:.2f}x datatrove ({peer / steady:.2f}x after setup); "
            f"pipeline / bare encode time {mine / floor:.2f}x ({steady / floor:.2f}x after setup)"
        )
    return next(iter(tokens.values()))


def main() -> int:
    args = parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # before tokenizers starts its pool
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

        nfc_path = tmp / "tokenizer-nfc.json"
        nfc_path.write_text(with_nfc(tok_path.read_text()))
        for label, path in (("demo BPE", tok_path), ("same BPE + NFC normalizer", nfc_path)):
            n_tokens = compare_engines(label, docs, path, args, tmp)
        secs = min(
            run_winnow(docs, tok_path, args.chunk_rows, tmp / f"d{i}")["decompose_cpu_s"]
            for i in range(args.rounds)
        )
        print(f"decompose alone: {n_tokens / secs:,.0f} tokens per CPU-second")

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
