"""A local stand-in for the Hugging Face Hub: saved folders served as model repositories over HTTP on 127.0.0.1, with
what huggingface_hub's downloads and model API read (`huggingface_hub.file_download.get_hf_file_metadata`: a HEAD on
`/<repo>/resolve/<revision>/<file>` answered with X-Repo-Commit, ETag and Content-Length; `HfApi.model_info`:
`/api/models/<repo>[/revision/<revision>]`; the errors it maps by X-Error-Code). Point HF_ENDPOINT at `url`."""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class HubMirror:
    """`add(repo_id, folder)` publishes `folder` as the repository's next commit (the new "main"); `commit_of(repo_id,
    i)` is the hash of its i-th commit, a revision that keeps serving that folder. Use as a context manager."""

    def __init__(self) -> None:
        self.repos: dict[str, list[tuple[str, Path]]] = {}
        self.requests: list[str] = []  # "METHOD path", in order
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo_id: str, folder: Path) -> str:
        commits = self.repos.setdefault(repo_id, [])
        commit = hashlib.sha1(f"{repo_id}@{len(commits)}".encode()).hexdigest()
        commits.append((commit, Path(folder)))
        return commit

    def commit_of(self, repo_id: str, index: int) -> str:
        return self.repos[repo_id][index][0]

    def resolve(self, repo_id: str, revision: str) -> tuple[str, Path] | None:
        commits = self.repos[repo_id]
        if revision == "main":
            return commits[-1]
        return next(((c, f) for c, f in commits if c == revision), None)

    def __enter__(self) -> "HubMirror":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _handler(mirror: HubMirror):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet: the requests are kept in mirror.requests
            pass

        def do_HEAD(self) -> None:
            self.answer(body=False)

        def do_GET(self) -> None:
            self.answer(body=True)

        def send(self, status: int, payload: bytes, headers: dict[str, str], body: bool) -> None:
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(payload))}.items():
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def error(self, status: int, code: str, body: bool) -> None:
            message = json.dumps({"error": code}).encode()
            self.send(status, message, {"X-Error-Code": code, "Content-Type": "application/json"}, body)

        def answer(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            mirror.requests.append(f"{self.command} {path}")
            parts = path.strip("/").split("/")
            api = parts[:2] == ["api", "models"]
            if api:
                parts = parts[2:]
            repo_id = "/".join(parts[:2])
            if repo_id not in mirror.repos:
                return self.error(404, "RepoNotFound", body)
            if api:  # model info, at main or at a revision
                revision = parts[3] if parts[2:3] == ["revision"] else "main"
                found = mirror.resolve(repo_id, revision)
                if found is None:
                    return self.error(404, "RevisionNotFound", body)
                commit, folder = found
                info = {"id": repo_id, "modelId": repo_id, "sha": commit, "private": False, "disabled": False}
                info["siblings"] = [{"rfilename": name} for name in _files(folder)]
                payload = json.dumps(info).encode()
                return self.send(200, payload, {"Content-Type": "application/json"}, body)
            if parts[2:3] != ["resolve"] or len(parts) < 5:
                return self.error(404, "EntryNotFound", body)
            found = mirror.resolve(repo_id, parts[3])
            if found is None:
                return self.error(404, "RevisionNotFound", body)
            commit, folder = found
            file = folder / "/".join(parts[4:])
            if not file.is_file():
                return self.error(404, "EntryNotFound", body)
            content = file.read_bytes()
            etag = f'"{hashlib.sha256(content).hexdigest()}"'
            self.send(200, content, {"X-Repo-Commit": commit, "ETag": etag}, body)

    return Handler
