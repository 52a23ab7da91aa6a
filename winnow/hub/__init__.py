"""``winnow publish RUN_DIR REPO_ID``: a finished run as a Hugging Face dataset repo.

Four steps with clean boundaries: :func:`plan_publish` reads the run only,
:func:`stage` writes the exact repo tree locally (Parquet, card, ``winnow/``
metadata), :func:`verify_tree` loads every config with ``datasets`` and checks the
counts, and :func:`push_tree` (the only step that touches the network) diffs the tree
against the remote and commits the difference. ``--dry-run`` stops after verify.
"""

from __future__ import annotations

import json
from pathlib import Path

from winnow.errors import WinnowError
from winnow.hub.card import HUMAN_SECTIONS, CardOptions, render_card, todo_sections
from winnow.hub.plan import PublishPlan, plan_publish
from winnow.hub.push import PushInterrupted, PushResult, RetryPolicy, push_tree
from winnow.hub.stage import stage
from winnow.hub.verify import verify_tree

__all__ = [
    "CardOptions",
    "PushInterrupted",
    "RetryPolicy",
    "plan_publish",
    "publish",
    "push_tree",
    "stage_and_verify",
    "verify_tree",
]


def stage_and_verify(plan: PublishPlan, tree: Path, card: CardOptions) -> dict[str, int]:
    """Write the tree, then load it back; returns rows per config."""
    stage(plan, tree, lambda p, data: render_card(p, data, tree, card))
    return verify_tree(tree, plan)


def publish(
    plan: PublishPlan,
    tree: Path,
    card: CardOptions,
    *,
    dry_run: bool = False,
    public: bool = False,
    yes: bool = False,
    log=print,
    **push_options,
) -> PushResult | None:
    """Plan -> stage -> verify -> push (unless ``dry_run``); writes a receipt next to
    the tree after a push."""
    missing = [t for t in HUMAN_SECTIONS if not card.notes.get(t)]
    if public and not dry_run:
        if not card.license:
            raise WinnowError("a public dataset needs a license: pass --license (e.g. odc-by)")
        if missing and not yes:
            raise WinnowError(
                f"the card would have TODO sections ({', '.join(missing)}): fill them with "
                "--notes, or pass --yes to publish publicly anyway"
            )
    rows = stage_and_verify(plan, tree, card)
    log("verified " + ", ".join(f"{name}: {n:,} rows" for name, n in rows.items()))
    todo = todo_sections((tree / "README.md").read_text())
    if todo:
        log(f"the card has TODO sections ({', '.join(todo)}); fill them with --notes")
    if dry_run:
        log(f"dry run: the repo tree is in {tree}")
        return None
    result = push_tree(tree, plan.repo_id, private=not public, log=log, **push_options)
    receipt = {
        "repo_id": plan.repo_id,
        "revision": push_options.get("revision", "main"),
        "commits": result.commits,
        "pr_url": result.pr_url,
        "uploaded_files": result.uploaded_files,
        "uploaded_bytes": result.uploaded_bytes,
        "deleted_files": result.deleted,
        "rows": rows,
    }
    (tree.parent / "receipt.json").write_text(json.dumps(receipt, indent=2, sort_keys=True) + "\n")
    return result
