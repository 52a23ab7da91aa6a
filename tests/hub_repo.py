"""The state behind the loopback Hub (tests/hub_server.py): repos with git-like refs
and commits (each a full tree of ``path -> Blob``), an LFS object store on disk, and
the Hub's card metadata checks. No HTTP here."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

LICENSES = {"apache-2.0", "mit", "cc-by-4.0", "cc-by-sa-4.0", "cc0-1.0", "odc-by", "other"}
LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".zst", ".gz")
LFS_MIN_BYTES = 10 * 1024 * 1024


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Blob:
    size: int
    oid: str  # git blob oid
    lfs: str | None = None  # sha256 when stored in LFS
    data: bytes | None = None  # inline content of a regular file


@dataclass
class Repo:
    private: bool
    refs: dict[str, str] = field(default_factory=dict)  # "main", "refs/pr/1" -> commit sha
    commits: dict[str, dict] = field(default_factory=dict)  # sha -> {parent, title, tree}
    prs: int = 0


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class RepoStore:
    """Repos, refs, commits and LFS objects; every method holds the lock."""

    def __init__(self, root: Path, endpoint: str):
        self.lfs_dir = Path(root) / "lfs"
        self.lfs_dir.mkdir(parents=True, exist_ok=True)
        self.endpoint = endpoint
        self.repos: dict[str, Repo] = {}
        self.lock = threading.RLock()

    def head(self, repo_id: str, ref: str = "main") -> str:
        return self.repos[repo_id].refs[ref]

    def tree(self, repo_id: str, ref: str = "main") -> dict[str, Blob]:
        repo = self.repos[repo_id]
        return repo.commits[repo.refs[ref]]["tree"]

    def history(self, repo_id: str, ref: str = "main") -> list[dict]:
        """Commits from the head back to the first, newest first."""
        repo, out = self.repos[repo_id], []
        sha = repo.refs[ref]
        while sha:
            out.append({"sha": sha, **repo.commits[sha]})
            sha = repo.commits[sha]["parent"]
        return out

    def content(self, blob: Blob) -> bytes:
        return blob.data if blob.lfs is None else (self.lfs_dir / blob.lfs).read_bytes()

    # ---- state changes ------------------------------------------------------------
    def get_repo(self, repo_id: str, authed: bool = True) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not authed):
            raise HubError(404, f"Repository Not Found for url: {repo_id}", "RepoNotFound")
        return repo

    def resolve(self, repo: Repo, rev: str) -> str:
        if rev in repo.refs:
            return repo.refs[rev]
        if rev in repo.commits:
            return rev
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def _new_commit(self, repo: Repo, parent: str | None, title: str, tree: dict) -> str:
        digest = hashlib.sha1(json.dumps([parent, title, sorted(tree), time.time_ns()]).encode())
        sha = digest.hexdigest()
        repo.commits[sha] = {"parent": parent, "title": title, "tree": tree}
        return sha

    def create_repo(self, repo_id: str, private: bool) -> bool:
        with self.lock:
            if repo_id in self.repos:
                return False
            repo = Repo(private=private)
            repo.refs["main"] = self._new_commit(repo, None, "initial commit", {})
            self.repos[repo_id] = repo
            return True

    def commit(self, repo_id: str, rev: str, lines: list[dict], create_pr: bool) -> dict:
        with self.lock:
            repo = self.get_repo(repo_id)
            parent = self.resolve(repo, rev)
            header = lines[0]["value"] if lines and lines[0].get("key") == "header" else {}
            if header.get("parentCommit") and header["parentCommit"] != parent:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(repo.commits[parent]["tree"])
            for item in lines[1:]:
                key, value = item.get("key"), item.get("value", {})
                path = value.get("path", "")
                if key == "file":
                    data = base64.b64decode(value["content"])
                    tree[path] = Blob(len(data), git_blob_oid(data), None, data)
                elif key == "lfsFile":
                    oid = value["oid"]
                    obj = self.lfs_dir / oid
                    if not obj.exists():
                        raise HubError(422, f"{path}: LFS object {oid} was never uploaded")
                    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\n"
                    pointer += f"size {obj.stat().st_size}\n"
                    tree[path] = Blob(obj.stat().st_size, git_blob_oid(pointer.encode()), oid)
                elif key == "deletedFile":
                    if tree.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}")
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    for p in [p for p in tree if p.startswith(prefix)]:
                        del tree[p]
                else:
                    raise HubError(400, f"unknown commit operation {key!r}")
            sha = self._new_commit(repo, parent, header.get("summary", ""), tree)
            pr_url = None
            if create_pr:
                repo.prs += 1
                ref = f"refs/pr/{repo.prs}"
                pr_url = f"{self.endpoint}/datasets/{repo_id}/discussions/{repo.prs}"
            else:
                ref = rev
                if rev not in repo.refs:
                    raise HubError(400, f"cannot commit to {rev}: not a branch")
            repo.refs[ref] = sha
            return {
                "commitUrl": f"{self.endpoint}/datasets/{repo_id}/commit/{sha}",
                "commitOid": sha,
                "pullRequestUrl": pr_url,
            }


def validate_card_yaml(content: str) -> str | None:
    """The checks the Hub applies to a dataset card's metadata that we rely on."""
    match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
    if match is None:
        return None
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        return f"Invalid YAML: {exc}"
    if not isinstance(meta, dict):
        return "metadata must be a mapping"
    lic = meta.get("license")
    if lic is not None and lic not in LICENSES:
        return f'"license" must be a valid license identifier, got {lic!r}'
    for cfg in meta.get("configs", []) or []:
        if not isinstance(cfg, dict) or "config_name" not in cfg or "data_files" not in cfg:
            return '"configs" entries need config_name and data_files'
    return None


def tree_entries(tree: dict[str, Blob], base: str, recursive: bool) -> list[dict]:
    base = base.strip("/")
    prefix = base + "/" if base else ""
    files, dirs = [], set()
    for path in sorted(tree):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        parts = rest.split("/")
        for i in range(1, len(parts) if recursive else min(2, len(parts))):
            dirs.add(prefix + "/".join(parts[:i]))
        if recursive or len(parts) == 1:
            files.append(file_entry(path, tree[path]))
    if base and not files and not dirs:
        raise HubError(404, f"{base} does not exist", "EntryNotFound")
    dir_entries = [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in dirs]
    return sorted(dir_entries, key=lambda e: e["path"]) + files


def file_entry(path: str, blob: Blob) -> dict:
    entry = {"type": "file", "path": path, "size": blob.size, "oid": blob.oid}
    if blob.lfs:
        entry["lfs"] = {"oid": blob.lfs, "size": blob.size, "pointerSize": 130}
    return entry
