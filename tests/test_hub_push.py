"""``winnow publish`` against the loopback Hub (tests/hub_server.py), spoken to by the
real, unmodified ``huggingface_hub`` and ``datasets`` clients."""

# ruff: noqa: F811  (pytest fixtures imported from hub_fixtures are test arguments)

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.errors
import pytest
from hub_fixtures import expected_rows, hub_run  # noqa: F401
from hub_server import HubServer

from winnow.cli import main
from winnow.errors import WinnowError
from winnow.hub import CardOptions, RetryPolicy, plan_publish, publish

# huggingface_hub's own LFS upload passes a file object as `data=` to its HTTP client
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

SENTINEL = "hf_SENTINELtoken0123456789abcdef"
REPO = "tester/hubtest"
FAST = RetryPolicy(attempts=4, base=0.01)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    with HubServer(tmp_path / "server", token=SENTINEL, max_seconds=300) as server:
        yield server


def _publish(run, tree, hub, *, plan_kw=None, **kw):
    plan = plan_publish(run, REPO, shard_bytes=40_000, **(plan_kw or {}))
    options = dict(endpoint=hub.endpoint, retry=FAST, max_files=4, log=lambda line: None)
    return publish(plan, tree, CardOptions(license="odc-by"), **(options | kw))


def _local_files(tree: Path) -> dict[str, bytes]:
    return {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*") if p.is_file()}


def _client_env(hub, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": SENTINEL, "HF_HUB_DISABLE_XET": "1"}
    return env | {"HF_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}


LOAD_SCRIPT = """
import json, sys, datasets
repo, configs = sys.argv[1], sys.argv[2:]
out = {c: datasets.load_dataset(repo, c, split="train").num_rows for c in configs}
stream = datasets.load_dataset(repo, split="train", streaming=True)
out["streamed"] = sum(1 for _ in stream)
print(json.dumps(out))
"""


def test_round_trip_private_byte_identical_loadable_and_card_last(hub_run, hub, tmp_path):
    tree = tmp_path / "tree"
    result = _publish(hub_run, tree, hub)
    assert len(result.commits) > 2 and hub.head(REPO) == result.commits[-1]
    assert hub.repos[REPO].private
    anon = huggingface_hub.HfApi(endpoint=hub.endpoint, token=False)
    with pytest.raises(huggingface_hub.errors.RepositoryNotFoundError):
        anon.dataset_info(REPO)
    # download with the real client: every file byte-identical
    api = huggingface_hub.HfApi(endpoint=hub.endpoint)
    got = Path(api.snapshot_download(REPO, repo_type="dataset", local_dir=tmp_path / "dl"))
    downloaded = {k: v for k, v in _local_files(got).items() if not k.startswith(".cache/")}
    assert downloaded == _local_files(tree)
    # the card lands in the last commit, after all the data it describes
    history = hub.history(REPO)
    assert "README.md" in history[0]["tree"] and "README.md" not in history[1]["tree"]
    assert all(p.startswith(("data/", "tokens/")) for p in history[1]["tree"])
    # datasets loads from the Hub API, whole and streaming
    expected = expected_rows(hub_run)
    configs = ["default", "len_32", "len_256"]
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, REPO, *configs],
        env=_client_env(hub, tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == {c: expected[c] for c in configs} | {"streamed": expected["default"]}
    assert hub.count("GET", r"/resolve/", status=206) > 0  # streaming used Range requests


def test_republishing_an_unchanged_run_makes_zero_commits(hub_run, hub, tmp_path):
    _publish(hub_run, tmp_path / "tree", hub)
    head = hub.head(REPO)
    commits = hub.count("POST", r"/commit/")
    uploads = hub.count("PUT", r"/lfs/upload/")
    result = _publish(hub_run, tmp_path / "tree", hub)
    assert result.commits == [] and hub.head(REPO) == head
    assert (
        hub.count("POST", r"/commit/") == commits and hub.count("PUT", r"/lfs/upload/") == uploads
    )


def test_resume_after_a_500_on_commit_2_sends_nothing_twice(hub_run, hub, tmp_path, capsys):
    tree = tmp_path / "tree"
    hub.fail("POST", r"/commit/", 500, times=1, skip=1)  # the second commit fails
    args = ["publish", str(hub_run), REPO, "--out", str(tree), "--endpoint", hub.endpoint]
    args += ["--shard-mb", "1", "--max-files", "2", "--retries", "1", "--license", "mit"]
    assert main(args) == 75
    out = capsys.readouterr().out
    assert "published 1 of" in out and "re-run to resume" in out
    total = int(out.split("published 1 of ")[1].split()[0])
    first = hub.history(REPO)[0]["tree"]
    assert len(first) == 2  # commit 1 landed with its two files
    assert main(args) == 0
    assert len(hub.history(REPO)) == 1 + total  # the initial commit plus one per planned commit
    listing = json.loads((tree / "winnow" / "files.json").read_text())["files"]
    lfs = [f["sha256"] for f in listing if f["path"].endswith(".parquet")]
    for oid in lfs:  # each object went up once: the retry skipped commit 1 and the uploaded blobs
        assert hub.count("PUT", rf"/lfs/upload/{oid}$") == 1
    assert {p for p in hub.tree(REPO)} == {f["path"] for f in listing} | {"winnow/files.json"}


def test_a_429_then_a_412_are_retried(hub_run, hub, tmp_path):
    hub.fail("POST", r"/commit/", 429, times=1, retry_after=0)
    hub.fail("POST", r"/commit/", 412, times=1)
    result = _publish(hub_run, tmp_path / "tree", hub)
    assert hub.count("POST", r"/commit/", status=429) == 1
    assert hub.count("POST", r"/commit/", status=412) == 1
    assert hub.head(REPO) == result.commits[-1]
    assert set(hub.tree(REPO)) == set(_local_files(tmp_path / "tree"))


def test_a_smaller_run_leaves_no_stale_shards(hub_run, hub, tmp_path):
    big = tmp_path / "big"
    _publish(hub_run, big, hub, plan_kw={"rejected": True, "concat": True})
    api = huggingface_hub.HfApi(endpoint=hub.endpoint)
    api.upload_file(
        path_or_fileobj=b"mine", path_in_repo="NOTES.txt", repo_id=REPO, repo_type="dataset"
    )
    small = tmp_path / "small"
    plan = plan_publish(hub_run, REPO, shard_bytes=10**9)
    publish(plan, small, CardOptions(), endpoint=hub.endpoint, retry=FAST, log=lambda _: None)
    assert set(hub.tree(REPO)) == set(_local_files(small)) | {"NOTES.txt"}
    last = hub.history(REPO)[0]["tree"]
    before = hub.history(REPO)[1]["tree"]
    assert any(p.startswith("rejected/") for p in before)  # deletions came in the last commit
    assert not any(p.startswith(("rejected/", "tokens/concat/")) for p in last)


def test_branch_and_pull_request(hub_run, hub, tmp_path):
    _publish(hub_run, tmp_path / "a", hub, revision="dev")
    repo = hub.repos[REPO]
    assert set(hub.tree(REPO, "dev")) == set(_local_files(tmp_path / "a"))
    assert hub.tree(REPO, "main") == {}
    result = _publish(hub_run, tmp_path / "b", hub, create_pr=True)
    assert result.pr_url.endswith("/discussions/1") and "refs/pr/1" in repo.refs
    assert hub.tree(REPO, "main") == {}
    assert set(hub.tree(REPO, "refs/pr/1")) == set(_local_files(tmp_path / "b"))
    receipt = json.loads((tmp_path / "receipt.json").read_text())
    assert receipt["pr_url"] == result.pr_url and receipt["commits"] == result.commits


def test_the_token_never_leaks(hub_run, hub, tmp_path, capfd):
    tree = tmp_path / "tree"
    args = ["publish", str(hub_run), REPO, "--out", str(tree), "--endpoint", hub.endpoint]
    assert main(args + ["--license", "mit", "--retries", "1"]) == 0
    assert SENTINEL in hub.auth_seen  # the client really authenticated with it
    out, err = capfd.readouterr()
    assert SENTINEL not in out + err
    for path in tmp_path.rglob("*"):
        if path.is_file() and "server" not in path.parts:
            assert SENTINEL.encode() not in path.read_bytes(), path
    for blob in hub.tree(REPO).values():
        assert SENTINEL.encode() not in hub.content(blob)


def test_a_card_the_server_rejects_fails_before_any_upload(hub_run, hub, tmp_path):
    plan = plan_publish(hub_run, REPO)
    card = CardOptions(license="not-a-license")
    with pytest.raises(WinnowError, match="rejects the card"):
        publish(plan, tmp_path / "tree", card, endpoint=hub.endpoint, retry=FAST, log=print)
    assert hub.count("POST", r"/validate-yaml") == 1
    assert hub.count("PUT", r"/lfs/") == 0 and hub.count("POST", r"/commit/") == 0
    assert hub.count("POST", r"/preupload/") == 0


def test_a_wrong_token_is_a_one_line_error_not_a_resume(
    hub_run, hub, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    args = ["publish", str(hub_run), REPO, "--out", str(tmp_path / "t"), "--endpoint", hub.endpoint]
    assert main(args + ["--retries", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("winnow: error: tester/hubtest at http://127.0.0.1:")
    assert "401" in err[-1] and REPO not in hub.repos


def test_backoff_doubles_with_jitter_and_honours_retry_after():
    import random

    policy = RetryPolicy(attempts=5, base=1.0, cap=10.0, rng=random.Random(0))
    for attempt, full in enumerate([1.0, 2.0, 4.0, 8.0, 10.0]):
        waits = [policy.delay(attempt, None) for _ in range(50)]
        assert all(full / 2 <= w <= full for w in waits) and len(set(waits)) > 1
    assert policy.delay(0, "7") == 7.0 and policy.delay(3, "120") == 10.0  # capped
    assert 0.5 <= policy.delay(0, "Wed, 21 Oct 2026 07:28:00 GMT") <= 1.0  # a date: backoff
