"""A loopback server speaking the part of the Hugging Face Hub HTTP API that the real
``huggingface_hub`` and ``datasets`` clients use to publish and load a dataset repo.

Test fixture only (stdlib + pyyaml), bound to 127.0.0.1 on an ephemeral port. It keeps
git-like state (branches and PR refs pointing at commits, each commit a full tree of
``path -> blob``) and an LFS object store on disk, so uploads, diffs and resumes are
real. Covered: repo create (409 still returns ``url``), validate-yaml, preupload,
the LFS batch / upload / verify flow (clients must set ``HF_HUB_DISABLE_XET=1``),
NDJSON commits (``create_pr``), repo info, tree and paths-info listings, resolve with
HEAD / GET / Range, branch create, refs and commit history.

Faults are injected with :meth:`HubServer.fail` (status, times, Retry-After). Every
request is logged in :attr:`HubServer.requests`. The request loop is bounded: the
server stops itself after ``max_requests`` requests or ``max_seconds`` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

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


@dataclass
class Fault:
    method: str
    pattern: re.Pattern
    status: int
    times: int
    headers: dict[str, str]
    skip: int = 0  # let this many matching requests through first


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubServer:
    """Start with ``with HubServer(tmp_path) as hub:``; ``hub.endpoint`` is the base URL."""

    def __init__(
        self,
        root: Path,
        *,
        token: str | None = None,
        max_requests: int = 20_000,
        max_seconds: float = 600.0,
    ):
        self.lfs_dir = Path(root) / "lfs"
        self.lfs_dir.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.auth_seen: set[str] = set()
        self.faults: list[Fault] = []
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.lock = threading.RLock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._timer = threading.Timer(max_seconds, self.stop)
        self._timer.daemon = True

    def __enter__(self) -> HubServer:
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._timer.cancel()
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()

    # ---- test helpers -------------------------------------------------------------
    def fail(self, method, pattern, status, times=1, retry_after=None, skip=0) -> None:
        """Answer the next ``times`` requests matching ``method`` and the path regex
        ``pattern`` (after letting ``skip`` through) with ``status``."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.faults.append(Fault(method, re.compile(pattern), status, times, headers, skip))

    def count(self, method: str, pattern: str, status: int | None = None) -> int:
        rx = re.compile(pattern)
        return sum(
            1
            for m, p, s in self.requests
            if m == method and rx.search(p) and (status is None or s == status)
        )

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
    def _repo(self, repo_id: str, authed: bool = True) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not authed):
            raise HubError(404, f"Repository Not Found for url: {repo_id}", "RepoNotFound")
        return repo

    def _resolve(self, repo: Repo, rev: str) -> str:
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
            repo = self._repo(repo_id)
            parent = self._resolve(repo, rev)
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


def _tree_entries(tree: dict[str, Blob], base: str, recursive: bool) -> list[dict]:
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
            files.append(_file_entry(path, tree[path]))
    if base and not files and not dirs:
        raise HubError(404, f"{base} does not exist", "EntryNotFound")
    dir_entries = [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in dirs]
    return sorted(dir_entries, key=lambda e: e["path"]) + files


def _file_entry(path: str, blob: Blob) -> dict:
    entry = {"type": "file", "path": path, "size": blob.size, "oid": blob.oid}
    if blob.lfs:
        entry["lfs"] = {"oid": blob.lfs, "size": blob.size, "pointerSize": 130}
    return entry


def _handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            self._dispatch("GET")

        def do_HEAD(self):
            self._dispatch("HEAD")

        def do_POST(self):
            self._dispatch("POST")

        def do_PUT(self):
            self._dispatch("PUT")

        # ---- plumbing -------------------------------------------------------------
        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body=b"", headers: dict | None = None, method="GET"):
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)
            hub.requests.append((method, self.path.split("?")[0], status))

        def _dispatch(self, method: str):
            body = self._body() if method in ("POST", "PUT") else b""  # drain, keep-alive
            url = urlsplit(self.path)
            path, query = unquote(url.path), parse_qs(url.query)
            if len(hub.requests) >= hub.max_requests:
                self._send(503, {"error": "request budget exhausted"}, method=method)
                threading.Thread(target=hub.stop, daemon=True).start()
                return
            with hub.lock:
                for fault in hub.faults:
                    if fault.times and fault.method == method and fault.pattern.search(path):
                        if fault.skip:
                            fault.skip -= 1
                            continue
                        fault.times -= 1
                        self._send(fault.status, {"error": "injected"}, fault.headers, method)
                        return
            auth = self.headers.get("Authorization", "")
            if auth:
                hub.auth_seen.add(auth.removeprefix("Bearer "))
            authed = hub.token is None or auth == f"Bearer {hub.token}"
            try:
                status, out, headers = self._route(method, url.path, path, query, body, authed)
            except HubError as exc:
                headers = {"X-Error-Message": exc.message}
                if exc.code:
                    headers["X-Error-Code"] = exc.code
                self._send(exc.status, {"error": exc.message}, headers, method)
                return
            self._send(status, out, headers, method)

        def _route(self, method, raw_path, path, query, body, authed):
            m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)(.*)", raw_path)
            # LFS upload URLs stand for pre-signed storage URLs: they carry no token
            open_post = raw_path == "/api/validate-yaml" or raw_path.startswith("/lfs/")
            writes = method in ("POST", "PUT") and "/paths-info/" not in raw_path
            if writes and not authed and not open_post:
                raise HubError(401, "Invalid credentials in Authorization header")
            if raw_path == "/api/whoami-v2":
                return 200, {"name": "tester", "type": "user", "orgs": []}, None
            if raw_path == "/api/repos/create" and method == "POST":
                return self._create(json.loads(body))
            if raw_path == "/api/validate-yaml" and method == "POST":
                error = validate_card_yaml(json.loads(body)["content"])
                if error:
                    raise HubError(400, error)
                return 200, {"warnings": []}, None
            lfs = re.fullmatch(r"/datasets/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
            if lfs and method == "POST":
                return self._lfs_batch(lfs.group(1), json.loads(body))
            up = re.fullmatch(r"/lfs/(upload|verify)/([0-9a-f]{64})", path)
            if up:
                return self._lfs_object(up.group(1), up.group(2), body)
            res = re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", raw_path)
            if res and method in ("GET", "HEAD"):
                repo_id, rev, file = (unquote(g) for g in res.groups())
                return self._resolve_file(repo_id, rev, file, authed)
            if m:
                repo_id, rest = m.group(1), m.group(2)
                return self._dataset_api(method, repo_id, rest, query, body, authed)
            raise HubError(404, f"no route for {method} {raw_path}")

        def _create(self, data):
            name = data["name"]
            repo_id = f"{data['organization']}/{name}" if data.get("organization") else name
            if "/" not in repo_id:
                repo_id = f"tester/{repo_id}"
            url = f"{hub.endpoint}/datasets/{repo_id}"
            private = bool(data.get("private")) or data.get("visibility") == "private"
            if not hub.create_repo(repo_id, private):
                return 409, {"error": "You already created this dataset repo", "url": url}, None
            return 200, {"url": url, "name": repo_id}, None

        def _lfs_batch(self, repo_id, data):
            hub._repo(repo_id)
            objects = []
            for obj in data["objects"]:
                oid, size = obj["oid"], obj["size"]
                entry = {"oid": oid, "size": size}
                if not (hub.lfs_dir / oid).exists():
                    entry["actions"] = {
                        "upload": {"href": f"{hub.endpoint}/lfs/upload/{oid}"},
                        "verify": {"href": f"{hub.endpoint}/lfs/verify/{oid}"},
                    }
                objects.append(entry)
            return 200, {"transfer": "basic", "objects": objects}, None

        def _lfs_object(self, action, oid, body):
            target = hub.lfs_dir / oid
            if action == "upload":
                if hashlib.sha256(body).hexdigest() != oid:
                    raise HubError(400, "uploaded content does not match its sha256")
                tmp = target.with_suffix(f".{threading.get_ident()}.tmp")
                tmp.write_bytes(body)
                tmp.replace(target)
                return 200, b"", None
            if not target.exists():
                raise HubError(404, f"LFS object {oid} not found")
            return 200, {"success": True}, None

        def _resolve_file(self, repo_id, rev, file, authed):
            with hub.lock:
                repo = hub._repo(repo_id, authed=authed)
                sha = hub._resolve(repo, rev)
                blob = repo.commits[sha]["tree"].get(file)
            if blob is None:
                raise HubError(404, f"Entry not found: {file}", "EntryNotFound")
            data = hub.content(blob)
            etag = f'"{blob.lfs or blob.oid}"'
            headers = {"ETag": etag, "X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
            if blob.lfs:
                headers.update({"X-Linked-Etag": etag, "X-Linked-Size": str(blob.size)})
            rng = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
            if rng and data:
                start = int(rng.group(1)) if rng.group(1) else max(0, len(data) - int(rng.group(2)))
                end = int(rng.group(2)) if rng.group(1) and rng.group(2) else len(data) - 1
                end = min(end, len(data) - 1)
                if start >= len(data):
                    raise HubError(416, "Range Not Satisfiable")
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return 206, data[start : end + 1], headers
            return 200, data, headers

        def _dataset_api(self, method, repo_id, rest, query, body, authed):
            with hub.lock:
                repo = hub._repo(repo_id, authed=authed)
                if method == "GET" and rest in ("", "/") or rest.startswith("/revision/"):
                    rev = unquote(rest.removeprefix("/revision/")) if rest.strip("/") else "main"
                    return 200, self._info(repo_id, repo, hub._resolve(repo, rev)), None
                parts = rest.lstrip("/").split("/", 2)
                kind = parts[0]
                rev = unquote(parts[1]) if len(parts) > 1 else "main"
                sub = unquote(parts[2]) if len(parts) > 2 else ""
                if kind == "tree" and method == "GET":
                    tree = repo.commits[hub._resolve(repo, rev)]["tree"]
                    recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                    return 200, _tree_entries(tree, sub, recursive), None
                if kind == "paths-info" and method == "POST":
                    tree = repo.commits[hub._resolve(repo, rev)]["tree"]
                    form = self._form(body)
                    paths = form.get("paths", [])
                    out = []
                    for p in paths:
                        p = p.strip("/")
                        if p in tree:
                            out.append(_file_entry(p, tree[p]))
                        elif any(q.startswith(p + "/") for q in tree):
                            out.append({"type": "directory", "path": p, "oid": "0" * 40})
                    return 200, out, None
                if kind == "preupload" and method == "POST":
                    tree = repo.commits[hub._resolve(repo, rev)]["tree"]
                    files = []
                    for f in json.loads(body)["files"]:
                        sample = base64.b64decode(f["sample"])
                        lfs = (
                            f["path"].endswith(LFS_SUFFIXES)
                            or f["size"] >= LFS_MIN_BYTES
                            or b"\0" in sample
                        )
                        old = tree.get(f["path"])
                        oid = None if old is None else (old.lfs or old.oid)
                        mode = "lfs" if lfs else "regular"
                        files.append(
                            {
                                "path": f["path"],
                                "uploadMode": mode,
                                "shouldIgnore": False,
                                "oid": oid,
                            }
                        )
                    return 200, {"files": files, "commitOid": hub._resolve(repo, rev)}, None
                if kind == "commit" and method == "POST":
                    lines = [json.loads(x) for x in body.splitlines() if x.strip()]
                    create_pr = query.get("create_pr", ["0"])[0] in ("1", "true")
                    return 200, hub.commit(repo_id, rev, lines, create_pr), None
                if kind == "branch" and method == "POST":
                    branch = unquote(rest.lstrip("/").split("/", 1)[1])
                    if branch in repo.refs:
                        raise HubError(409, f"Reference {branch} already exists")
                    start = (json.loads(body or b"{}") or {}).get("startingPoint") or "main"
                    repo.refs[branch] = hub._resolve(repo, start)
                    return 200, {}, None
                if kind == "refs" and method == "GET":
                    branches = [
                        {"name": r, "ref": f"refs/heads/{r}", "targetCommit": s}
                        for r, s in sorted(repo.refs.items())
                        if not r.startswith("refs/")
                    ]
                    return 200, {"branches": branches, "converts": [], "tags": []}, None
                if kind == "commits" and method == "GET":
                    out = [
                        {"id": c["sha"], "title": c["title"], "message": "", "authors": []}
                        for c in hub.history(repo_id, rev)
                    ]
                    for c in out:
                        c["date"] = "2026-01-01T00:00:00.000Z"
                    return 200, out, None
            raise HubError(404, f"no route for {method} /api/datasets/{repo_id}{rest}")

        def _form(self, body: bytes) -> dict:
            ctype = self.headers.get("Content-Type", "")
            if "json" in ctype:
                return json.loads(body)
            return {k: v for k, v in parse_qs(body.decode()).items()}

        def _info(self, repo_id, repo, sha):
            tree = repo.commits[sha]["tree"]
            return {
                "_id": quote(repo_id, safe=""),
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": sha,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "lastModified": "2026-01-01T00:00:00.000Z",
                "createdAt": "2026-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": p} for p in sorted(tree)],
            }

    return Handler
