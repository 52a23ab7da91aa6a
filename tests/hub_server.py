"""A loopback server speaking the part of the Hugging Face Hub HTTP API that the real
``huggingface_hub`` and ``datasets`` clients use to publish and load a dataset repo.

Test fixture only (stdlib + pyyaml), bound to 127.0.0.1 on an ephemeral port. It keeps
git-like state (tests/hub_repo.py: branch and PR refs pointing at commits, each a tree of
``path -> blob``; an LFS object store on disk), so uploads, diffs and resumes are
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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from hub_repo import (
    LFS_MIN_BYTES,
    LFS_SUFFIXES,
    HubError,
    RepoStore,
    file_entry,
    tree_entries,
    validate_card_yaml,
)


@dataclass
class Fault:
    method: str
    pattern: re.Pattern
    status: int
    times: int
    headers: dict[str, str]
    skip: int = 0  # let this many matching requests through first


class HubServer(RepoStore):
    """Start with ``with HubServer(tmp_path) as hub:``; ``hub.endpoint`` is the base URL."""

    def __init__(
        self,
        root: Path,
        *,
        token: str | None = None,
        max_requests: int = 20_000,
        max_seconds: float = 600.0,
    ):
        self.token = token
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.auth_seen: set[str] = set()
        self.faults: list[Fault] = []
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        super().__init__(root, f"http://127.0.0.1:{self.httpd.server_address[1]}")
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
            hub.get_repo(repo_id)
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
                repo = hub.get_repo(repo_id, authed=authed)
                sha = hub.resolve(repo, rev)
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
                repo = hub.get_repo(repo_id, authed=authed)
                if method == "GET" and rest in ("", "/") or rest.startswith("/revision/"):
                    rev = unquote(rest.removeprefix("/revision/")) if rest.strip("/") else "main"
                    return 200, self._info(repo_id, repo, hub.resolve(repo, rev)), None
                parts = rest.lstrip("/").split("/", 2)
                kind = parts[0]
                rev = unquote(parts[1]) if len(parts) > 1 else "main"
                sub = unquote(parts[2]) if len(parts) > 2 else ""
                if kind == "tree" and method == "GET":
                    tree = repo.commits[hub.resolve(repo, rev)]["tree"]
                    recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                    return 200, tree_entries(tree, sub, recursive), None
                if kind == "paths-info" and method == "POST":
                    tree = repo.commits[hub.resolve(repo, rev)]["tree"]
                    form = self._form(body)
                    paths = form.get("paths", [])
                    out = []
                    for p in paths:
                        p = p.strip("/")
                        if p in tree:
                            out.append(file_entry(p, tree[p]))
                        elif any(q.startswith(p + "/") for q in tree):
                            out.append({"type": "directory", "path": p, "oid": "0" * 40})
                    return 200, out, None
                if kind == "preupload" and method == "POST":
                    tree = repo.commits[hub.resolve(repo, rev)]["tree"]
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
                    return 200, {"files": files, "commitOid": hub.resolve(repo, rev)}, None
                if kind == "commit" and method == "POST":
                    lines = [json.loads(x) for x in body.splitlines() if x.strip()]
                    create_pr = query.get("create_pr", ["0"])[0] in ("1", "true")
                    return 200, hub.commit(repo_id, rev, lines, create_pr), None
                if kind == "branch" and method == "POST":
                    branch = unquote(rest.lstrip("/").split("/", 1)[1])
                    if branch in repo.refs:
                        raise HubError(409, f"Reference {branch} already exists")
                    start = (json.loads(body or b"{}") or {}).get("startingPoint") or "main"
                    repo.refs[branch] = hub.resolve(repo, start)
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
