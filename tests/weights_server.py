"""A weights server on 127.0.0.1 for the download tests: plain files (what download.pytorch.org serves) and
the part of the Hugging Face Hub API that ``huggingface_hub.snapshot_download`` uses (revision info, the tree
listing, ``resolve`` with HEAD and GET). Files can be served cut short to test interrupted transfers.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class WeightsServer:
    """Serves ``files`` (URL path -> bytes) and ``repos`` (repo id -> {file name: bytes}); paths in ``cut`` are
    sent with their full Content-Length but only half their bytes. ``requests`` lists every path asked for."""

    files: dict[str, bytes] = field(default_factory=dict)
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    cut: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)

    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                path = self.path.split("?", 1)[0]
                server.requests.append(path)
                data, headers = server._lookup(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if body:
                    self.wfile.write(data[: len(data) // 2] if path in server.cut else data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _lookup(self, path: str) -> tuple[bytes | None, dict[str, str]]:
        if path in self.files:
            return self.files[path], {"Content-Type": "application/octet-stream"}
        for repo, files in self.repos.items():
            if path in (f"/api/models/{repo}/revision/main", f"/api/models/{repo}"):
                info = {"id": repo, "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]}
                return json.dumps(info).encode(), {"Content-Type": "application/json"}
            if path.startswith(f"/api/models/{repo}/tree/"):
                tree = [
                    {"type": "file", "path": f, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                    for f, d in files.items()
                ]
                return json.dumps(tree).encode(), {"Content-Type": "application/json"}
            for rev in ("main", COMMIT):
                prefix = f"/{repo}/resolve/{rev}/"
                if path.startswith(prefix) and path[len(prefix) :] in files:
                    data = files[path[len(prefix) :]]
                    return data, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}
        return None, {}


def model_files(directory: Path) -> dict[str, bytes]:
    """A model directory's files, as a repo to serve."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}
