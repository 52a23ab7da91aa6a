"""Push a staged tree: diff it against the remote branch and commit only the difference.

Order: data files in commits of at most ``max_files``, then one last commit with the
card, the ``winnow/`` metadata and the deletion of stale files under winnow-managed
folders, so the card never describes data that is not there yet and a smaller run
leaves none of a bigger run's shards behind. ``huggingface_hub`` does not retry
commits; we retry 408/412/429/5xx with exponential backoff and jitter, honouring
``Retry-After``. Re-running is the resume: finished commits are on the remote, so the
diff only holds what is left (an unchanged run makes zero commits), and LFS objects
uploaded by a failed commit are not sent again (the LFS batch call skips them).

The token is whatever ``huggingface_hub`` resolves (``HF_TOKEN``, the login file); it
is never passed, printed or stored here. One committer per branch.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from winnow.errors import WinnowError
from winnow.hub.stage import load_files

MANAGED = ("data/", "tokens/", "rejected/", "winnow/")
RETRY_STATUS = frozenset({408, 412, 429, 500, 502, 503, 504})


class PushInterrupted(WinnowError):
    """Some commits landed, one failed after its retries; re-running resumes."""

    def __init__(self, done: int, total: int, cause: str):
        super().__init__(f"published {done} of {total} commits; re-run to resume ({cause})")
        self.done, self.total = done, total


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base: float = 1.0  # seconds before the first retry, doubled each time
    cap: float = 60.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(self.cap, float(retry_after))
            except ValueError:
                pass  # an HTTP date: fall back to backoff
        return min(self.cap, self.base * 2**attempt) * (0.5 + self.rng.random() / 2)


@dataclass
class PushResult:
    commits: list[str] = field(default_factory=list)
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    deleted: int = 0
    pr_url: str | None = None


def git_blob_oid(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def transport_errors() -> tuple[type[Exception], ...]:
    """Connection-level errors of the HTTP library huggingface_hub uses (httpx2 in
    2.x, httpx in 1.x): a refused or dropped connection, a timeout."""
    import importlib

    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def with_retries(fn: Callable, policy: RetryPolicy, log: Callable[[str], None], what: str):
    """``fn()``, retried on 408/412/429/5xx and on connection errors."""
    from huggingface_hub.errors import HfHubHTTPError

    transient = (HfHubHTTPError, *transport_errors())
    for attempt in range(policy.attempts):
        try:
            return fn()
        except transient as exc:
            response = getattr(exc, "response", None) if isinstance(exc, HfHubHTTPError) else None
            status = response.status_code if response is not None else None
            retryable = status in RETRY_STATUS or not isinstance(exc, HfHubHTTPError)
            if not retryable or attempt == policy.attempts - 1:
                raise
            wait = policy.delay(attempt, response.headers.get("Retry-After") if response else None)
            log(f"{what}: {f'HTTP {status}' if status else _first_line(exc)}, retry in {wait:.1f}s")
            time.sleep(wait)
    raise AssertionError("unreachable")


def _unchanged(remote, local: dict, tree: Path) -> bool:
    if remote is None or remote.size != local["bytes"]:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == local["sha256"]
    return remote.blob_id == git_blob_oid(tree / local["path"])


def _is_last(path: str) -> bool:
    return path == "README.md" or path.startswith("winnow/")


def validate_card(api, tree: Path) -> None:
    """Ask the Hub to validate the card's YAML before any upload."""
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    response = get_session().post(
        f"{api.endpoint}/api/validate-yaml",
        json={"content": (tree / "README.md").read_text(), "repoType": "dataset"},
        headers=build_hf_headers(),
    )
    if response.status_code == 400:
        message = response.json().get("error", response.text)
        raise WinnowError(f"{tree / 'README.md'}: the Hub rejects the card: {message}")
    hf_raise_for_status(response)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _plan_commits(api, tree: Path, repo_id: str, private: bool, revision: str, call):
    """Create the repo (and branch), validate the card, diff the remote tree.

    Returns the repo URL, the stale remote paths and the changed local files."""
    from huggingface_hub.hf_api import RepoFile

    url = call(
        "create repo", api.create_repo, repo_id, repo_type="dataset", private=private, exist_ok=True
    )
    validate_card(api, tree)
    if revision != "main":
        call(
            "create branch",
            api.create_branch,
            repo_id,
            branch=revision,
            repo_type="dataset",
            exist_ok=True,
        )
    listing = call(
        "list files",
        api.list_repo_tree,
        repo_id,
        repo_type="dataset",
        revision=revision,
        recursive=True,
    )
    remote = {f.path: f for f in listing if isinstance(f, RepoFile)}
    local = load_files(tree)
    changed = [f for f in local if not _unchanged(remote.get(f["path"]), f, tree)]
    paths = {f["path"] for f in local}
    stale = sorted(p for p in remote if p.startswith(MANAGED) and p not in paths)
    return url, changed, stale


def push_tree(
    tree: Path,
    repo_id: str,
    *,
    endpoint: str | None = None,
    private: bool = True,
    revision: str = "main",
    create_pr: bool = False,
    max_files: int = 100,
    retry: RetryPolicy | None = None,
    log: Callable[[str], None] = print,
) -> PushResult:
    """Commit the difference between ``tree`` and the remote ``revision``. With
    ``create_pr`` the commits go to a new pull request (diffed against ``revision``;
    re-running opens another one)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    retry = retry or RetryPolicy()
    api = HfApi(endpoint=endpoint)

    def call(what, fn, *args, **kwargs):
        return with_retries(lambda: fn(*args, **kwargs), retry, log, what)

    try:
        url, changed, stale = _plan_commits(api, tree, repo_id, private, revision, call)
    except (HfHubHTTPError, *transport_errors()) as exc:
        raise WinnowError(f"{repo_id} at {api.endpoint}: {_first_line(exc)}") from exc
    data = [f for f in changed if not _is_last(f["path"])]
    batches = [data[i : i + max_files] for i in range(0, len(data), max_files)]
    last = [f for f in changed if _is_last(f["path"])]
    if last or stale:
        batches.append(last)
    result = PushResult()
    if not batches:
        log(f"{url}: up to date at {revision}, nothing to commit")
        return result
    target = revision
    for i, batch in enumerate(batches):
        ops = [CommitOperationAdd(f["path"], str(tree / f["path"])) for f in batch]
        if i == len(batches) - 1:
            ops += [CommitOperationDelete(p) for p in stale]
        kind = "card and metadata" if i == len(batches) - 1 and (last or stale) else "data"
        message = f"winnow publish: {kind} ({i + 1}/{len(batches)})"
        size = sum(f["bytes"] for f in batch)
        log(f"commit {i + 1}/{len(batches)}: {len(batch)} files, {size / 1e6:.1f} MB")
        try:
            info = call(
                f"commit {i + 1}",
                api.create_commit,
                repo_id,
                ops,
                commit_message=message,
                repo_type="dataset",
                revision=target,
                create_pr=create_pr and i == 0,
            )
        except Exception as exc:  # HTTP, transport and upload errors alike
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status is not None and status not in RETRY_STATUS:
                raise WinnowError(f"{repo_id}: commit {i + 1} refused: {_first_line(exc)}") from exc
            raise PushInterrupted(i, len(batches), _first_line(exc)) from exc
        if create_pr and i == 0:
            target, result.pr_url = info.pr_revision, info.pr_url
        result.commits.append(info.oid)
        result.uploaded_files += len(batch)
        result.uploaded_bytes += size
    result.deleted = len(stale)
    log(f"published {len(batches)} of {len(batches)} commits to {url} ({target})")
    return result
