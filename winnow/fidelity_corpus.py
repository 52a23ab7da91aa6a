"""A real-text corpus with labelled defects, for ablations that must reproduce known
curation effects (``benchmarks/ablation_fidelity.py``).

Clean text comes from four domains found on a Debian/Ubuntu machine with Python,
all read offline: ``docstring`` (standard-library docstrings), ``comment``
(standard-library source comment blocks), ``man`` (manual pages under
``/usr/share/man``, roff markup stripped) and ``package`` (dpkg package
descriptions, ``/usr/share/doc`` READMEs and installed Python packages' READMEs).
Domains that this machine lacks are simply smaller.

Defects, with ground-truth labels, at web-like rates:

- copies: ``dup_fraction`` of the junk-free documents are exact or near copies
  (0.5-5% word edits) of a few popular training documents, with Zipf-distributed
  copy counts (a few documents copied very often, as boilerplate-heavy crawls show);
- junk: ``junk_fraction`` extra documents of four kinds: navigation boilerplate,
  keyword spam, word-shuffled clean text and machine-like lists (log lines, tables).

The clean documents are first deduplicated with winnow's own exact and MinHash
stages (:func:`near_unique`). Documents reserved for tasks never enter the corpus:
they give a next-sentence cloze task (``tasks/next_sentence.jsonl``, lm-eval-harness
style). Popular sources and shuffled text are drawn from documents outside the
trainer's held-out hash range, and so are the copies' ids, so no copy of a held-out
document, and no bag of its words, trains any variant, and no held-out copy is scored
beside its siblings in training.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import xxhash

from winnow.demo import FILLER, NAV_LINES, SPAM_WORDS, edit_words
from winnow.sample_text import docstrings, package_descriptions

DOMAINS = ("docstring", "comment", "man", "package")
JUNK_KINDS = ("boilerplate", "keyword_spam", "shuffled", "machine_list")

# --------------------------------------------------------------------------- clean text

_ROFF_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes
    (re.compile(r"\\s[+-]?\d"), ""),  # size changes
    (re.compile(r"\\\*?\((em|en)"), "-"),
    (re.compile(r"\\\*?\((aq|cq|oq|lq|rq|dq)"), "'"),
    (re.compile(r"\\\*?[\(\[][^\s\]]{0,2}\]?"), ""),  # other named glyphs and strings
    (re.compile(r"\\[-e]"), "-"),
    (re.compile(r"\\[&|^%:]"), ""),
    (re.compile(r"\\ "), " "),
]
_ROFF_TEXT_MACROS = {"SH", "SS", "B", "I", "BI", "BR", "IB", "IR", "RB", "RI", "SM", "IP"}


def roff_text(source: str) -> str:
    """Plain text of a man page: macro lines dropped except those that carry text
    (headings, font macros), escapes removed, paragraphs kept."""
    out: list[str] = []
    for line in source.splitlines():
        if line.startswith(('.\\"', "'\\\"", '.\\"')):
            continue
        if line.startswith((".", "'")):
            name, _, rest = line[1:].partition(" ")
            if name in _ROFF_TEXT_MACROS and rest.strip():
                if name in ("SH", "SS"):
                    out.append("")  # a heading starts a paragraph
                line = rest.replace('"', "")
            elif name in ("PP", "P", "LP", "SH", "SS", "TP", "sp", "br"):
                out.append("")
                continue
            else:
                continue
        for pattern, repl in _ROFF_ESCAPES:
            line = pattern.sub(repl, line)
        out.append(line.rstrip())
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()
    return text.replace("\\", "")


def _read_maybe_gz(path: Path) -> str | None:
    """A text file, gunzipped when it ends in ``.gz``; None when unreadable."""
    try:
        raw = path.read_bytes()
        raw = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    return raw.decode("utf-8", "replace")


def _write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())


def man_pages(root: str | Path = "/usr/share/man", min_chars: int = 400) -> Iterator[dict]:
    """English manual pages (sections 1, 5, 7, 8), sorted by path."""
    root = Path(root)
    for section in ("man1", "man5", "man7", "man8"):
        for path in sorted((root / section).glob("*")):
            raw = _read_maybe_gz(path)
            if raw is None:
                continue
            text = roff_text(raw)
            if len(text) >= min_chars and not text.startswith(".so"):
                yield {"id": f"man:{section}/{path.name}", "text": text, "source": "man"}


def source_comments(root: str | Path | None = None, min_chars: int = 200) -> Iterator[dict]:
    """Blocks of consecutive ``#`` comment lines in standard-library sources."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        if "test" in path.parts[-2] or path.parts[-2] in ("idlelib", "lib2to3"):
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        block: list[str] = []
        for n, line in enumerate(lines + [""], 1):
            s = line.strip()
            if s.startswith("#") and not s.startswith("#!"):
                block.append(s.lstrip("#").strip())
                continue
            text = "\n".join(block).strip()
            if len(text) >= min_chars:
                rel = path.relative_to(root).as_posix()
                yield {"id": f"comment:{rel}:{n - len(block)}", "text": text, "source": "comment"}
            block = []


def debian_descriptions(
    status: str | Path = "/var/lib/dpkg/status",
    doc_root: str | Path = "/usr/share/doc",
    min_chars: int = 200,
) -> Iterator[dict]:
    """dpkg package descriptions, then README files under ``/usr/share/doc``."""
    status = Path(status)
    if status.is_file():
        for para in status.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            name = re.search(r"^Package: (\S+)", para, re.M)
            desc = re.search(r"^Description: (.*(?:\n .*)*)", para, re.M)
            if name and desc:
                lines = [ln[1:] if ln.startswith(" ") else ln for ln in desc.group(1).split("\n")]
                text = "\n".join("" if ln == "." else ln for ln in lines).strip()
                if len(text) >= min_chars:
                    yield {"id": f"dpkg:{name.group(1)}", "text": text, "source": "package"}
    for path in sorted(Path(doc_root).glob("*/README*")):
        raw = _read_maybe_gz(path)
        if raw is None:
            continue
        text = raw.strip()
        if len(text) >= min_chars:
            rel = path.relative_to(doc_root).as_posix()
            yield {"id": f"doc:{rel}", "text": text[:20000], "source": "package"}


def _normal(text: str) -> int:
    return xxhash.xxh64_intdigest(" ".join(text.lower().split()))


def domain_pools(per_domain: int, max_chars: int = 6000) -> dict[str, list[dict]]:
    """Up to ``per_domain`` documents per domain, exact copies (after whitespace and
    case folding) removed across domains, each cut to ``max_chars``."""
    sources = {
        "docstring": docstrings(),
        "comment": source_comments(),
        "man": man_pages(),
        "package": _chain(debian_descriptions(), package_descriptions()),
    }
    seen: set[int] = set()
    pools: dict[str, list[dict]] = {}
    for domain, docs in sources.items():
        pool = pools.setdefault(domain, [])
        for doc in docs:
            key = _normal(doc["text"])
            if key in seen:
                continue
            seen.add(key)
            pool.append({"id": doc["id"], "text": doc["text"][:max_chars], "source": domain})
            if len(pool) >= per_domain:
                break
    return pools


def _chain(*its):
    for it in its:
        yield from it


def near_unique(docs: list[dict], work: Path) -> list[dict]:
    """The documents winnow's exact and MinHash dedup keep (FineWeb's 14 x 8 bands over
    word 5-grams), so that the injected copies are the corpus's only duplicates and
    no held-out document has a near-copy (another man page of the same tool, a
    docstring pasted into two modules) in any variant's training data."""
    from winnow.io.writers import read_table
    from winnow.pipeline import parse_pipeline
    from winnow.runners.local import run_pipeline

    work.mkdir(parents=True, exist_ok=True)
    _write_jsonl_gz(work / "clean.jsonl.gz", docs)
    spec = parse_pipeline(
        {
            "name": "fidelity-clean",
            "input": {"path": str(work / "clean.jsonl.gz"), "id_field": "id"},
            "output": {"dir": str(work / "run")},
            "stages": [
                {"id": "exact", "use": "exact_dedup"},
                {
                    "id": "near",
                    "use": "minhash_dedup",
                    "params": {"ngram": 5, "bands": 14, "rows": 8},
                },
            ],
        }
    )
    run_pipeline(spec, workers=None, progress=False)
    kept = {
        i
        for p in sorted((work / "run" / "data").glob("*.arrow"))
        for i in read_table(p).column("id").to_pylist()
    }
    return [d for d in docs if d["id"] in kept]


# --------------------------------------------------------------------------- defects


def _junk(kind: str, clean: list[dict], rng: random.Random) -> str:
    if kind == "boilerplate":
        return "\n".join(rng.choice(NAV_LINES) for _ in range(rng.randint(10, 40)))
    if kind == "keyword_spam":
        vocab = SPAM_WORDS[: rng.randint(4, len(SPAM_WORDS))]
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(80, 400)))
    if kind == "shuffled":
        words = rng.choice(clean)["text"].split()
        rng.shuffle(words)
        return " ".join(words)
    levels = ["INFO", "WARN", "DEBUG", "ERROR"]
    rows = []
    for i in range(rng.randint(15, 60)):
        if rng.random() < 0.5:
            rows.append(
                f"2024-0{rng.randint(1, 9)}-{rng.randint(10, 28)} {rng.randint(10, 23)}:"
                f"{rng.randint(10, 59)}:{rng.randint(10, 59)} {rng.choice(levels)} "
                f"worker-{rng.randint(1, 16)} id={rng.getrandbits(32):08x} status={i}"
            )
        else:
            rows.append(" | ".join(str(rng.randint(0, 99999)) for _ in range(rng.randint(4, 8))))
    return "\n".join(rows)


def _near_copy(text: str, rate: float, rng: random.Random) -> str:
    """``text`` with about ``rate`` of its words edited (at least one), line breaks kept."""
    lines = text.split("\n")
    out = [edit_words(line, rate, rng) for line in lines]
    if out == lines:
        i = max(range(len(lines)), key=lambda k: len(lines[k]))
        out[i] = f"{FILLER[rng.randrange(len(FILLER))]} {out[i]}"
    return "\n".join(out)


def _zipf_counts(total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` copies over ``n`` sources with weights 1/rank (Zipf, s=1)."""
    w = 1.0 / np.arange(1, n + 1)
    counts = np.floor(total * w / w.sum()).astype(int)
    counts[: total - counts.sum()] += 1
    return rng.permutation(counts)


def inject_defects(
    clean: list[dict],
    *,
    dup_fraction: float,
    junk_fraction: float,
    val_fraction: float,
    popular: int,
    seed: int,
) -> tuple[list[dict], dict[str, str]]:
    """Clean documents plus copies and junk; returns (rows shuffled, id -> label)."""
    from winnow.trainer.data import doc_keys, held_out, trainable_id

    rng = random.Random(seed)
    rows = [dict(d) for d in clean]
    labels = {d["id"]: "clean" for d in clean}
    keys = doc_keys(pa.array([d["id"] for d in clean]))
    trainable = [d for d, v in zip(clean, held_out(keys, val_fraction), strict=True) if not v]
    n_copies = round(len(clean) * dup_fraction / (1 - dup_fraction))
    sources = rng.sample(trainable, min(popular, len(trainable)))
    counts = _zipf_counts(n_copies, len(sources), np.random.default_rng(seed))
    for src, n in zip(sources, counts, strict=True):
        for c in range(int(n)):
            exact = c % 2 == 0
            text = src["text"] if exact else _near_copy(src["text"], rng.uniform(0.005, 0.05), rng)
            label = "exact_copy" if exact else "near_copy"
            doc_id = trainable_id(f"{label}:{c}", val_fraction, suffix=f":{src['id']}")
            row = {"id": doc_id, "text": text, "source": src["source"]}
            rows.append(row)
            labels[row["id"]] = label
    n_junk = round((len(rows)) * junk_fraction / (1 - junk_fraction))
    for i in range(n_junk):
        kind = JUNK_KINDS[i % len(JUNK_KINDS)]
        row = {"id": f"{kind}:{i}", "text": _junk(kind, trainable, rng), "source": "web"}
        rows.append(row)
        labels[row["id"]] = kind
    rng.shuffle(rows)
    return rows, labels


# --------------------------------------------------------------------------- cloze task


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n\s*\n", " ".join(text.split("\n")))
    return [p.strip() for p in parts if 20 <= len(p.strip()) <= 200]


QUERY_TAIL = 80  # characters of a cloze query that must not occur in the corpus


def next_sentence_task(docs: list[dict], rng: random.Random, choices: int = 4) -> list[dict]:
    """One item per document with >= 3 usable sentences: the text before a sentence
    (last 600 chars) as the query, that sentence among ``choices - 1`` sentences of
    other documents of the same domain."""
    by_domain: dict[str, list[str]] = {}
    usable = []
    for doc in docs:
        sents = _sentences(doc["text"])
        if len(sents) >= 3:
            usable.append((doc, sents))
            by_domain.setdefault(doc["source"], []).extend(sents)
    items = []
    for doc, sents in usable:
        i = rng.randrange(2, len(sents))
        prompt = " ".join(sents[:i])[-600:]
        others = [s for s in by_domain[doc["source"]] if s not in sents]
        if len(others) < choices - 1:
            continue
        options = rng.sample(others, choices - 1)
        gold = rng.randrange(choices)
        options.insert(gold, sents[i])
        items.append({"query": prompt, "choices": options, "gold": gold, "domain": doc["source"]})
    return items


# --------------------------------------------------------------------------- the corpus


def build_fidelity_corpus(
    out_dir: Path,
    *,
    per_domain: int = 1500,
    task_docs: int = 60,
    task_items: int = 96,
    dup_fraction: float = 0.4,
    junk_fraction: float = 0.25,
    val_fraction: float = 0.05,
    popular: int = 60,
    seed: int = 0,
    shards: int = 4,
) -> dict[str, str]:
    """Write ``input/part-*.jsonl.gz``, ``labels.json`` and ``tasks/next_sentence.jsonl``
    under ``out_dir``; returns id -> label (``clean`` or the defect kind)."""
    rng = random.Random(seed)
    pools = domain_pools(per_domain + task_docs)
    clean, reserved = [], []
    for domain in DOMAINS:
        pool = list(pools.get(domain, []))
        rng.shuffle(pool)
        reserved += pool[:task_docs]
        clean += pool[task_docs:]
    clean = near_unique(sorted(clean, key=lambda d: d["id"]), out_dir / "clean-dedup")
    rows, labels = inject_defects(
        clean,
        dup_fraction=dup_fraction,
        junk_fraction=junk_fraction,
        val_fraction=val_fraction,
        popular=popular,
        seed=seed,
    )
    input_dir = out_dir / "input"
    input_dir.mkdir(parents=True, exist_ok=True)
    per_shard = -(-len(rows) // shards)
    for s in range(shards):
        _write_jsonl_gz(input_dir / f"part-{s:02d}.jsonl.gz", rows[s * per_shard :][:per_shard])
    (out_dir / "labels.json").write_text(json.dumps(labels, indent=0, sort_keys=True))
    tasks = out_dir / "tasks"
    tasks.mkdir(exist_ok=True)
    items = next_sentence_task(sorted(reserved, key=lambda d: d["id"]), rng)
    # a reserved document may still share a passage with a corpus one (two package
    # descriptions of one project, man pages of sibling tools): drop those items
    corpus_text = " ".join(" ".join(r["text"].split()) for r in rows)
    items = [i for i in items if " ".join(i["query"].split())[-QUERY_TAIL:] not in corpus_text]
    items = rng.sample(items, min(task_items, len(items)))
    (tasks / "next_sentence.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    return labels
