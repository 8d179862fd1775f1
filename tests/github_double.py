"""A local stand-in for the few GitHub endpoints agentdock uses, with git's smart HTTP for
the repositories it "creates".

It serves, on 127.0.0.1 and a free port, in a thread of its own:

- the REST API under ``/api/v3`` (as GitHub Enterprise Server does): ``GET /user``,
  ``POST /user/repos``, ``POST /orgs/{org}/repos``, ``GET /repos/{owner}/{repo}`` (where
  the service learns a repository's ``clone_url``), ``DELETE /repos/{owner}/{repo}``,
  ``POST /repos/{owner}/{repo}/pulls``;
  a request whose ``Authorization`` is not ``token <the token>`` (or ``Bearer``) gets 401;
- git over HTTP under ``/git/{owner}/{repo}.git`` through ``git http-backend``, behind Basic
  auth whose password must be the token (as github.com's is): a created repository is a
  bare repository on disk, which is where agentdock's push lands.

Switches make it misbehave the way GitHub does: ``rate_limited`` (403 with
``x-ratelimit-remaining: 0``), ``reject_pushes`` (a ``pre-receive`` hook that declines),
``forbid_delete`` (403 on DELETE), ``delay_s`` (every API answer comes that late). Its 401
echoes the offending credentials back in the message, so that tests can show the service
scrubs them.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

API_PREFIX = "/api/v3"
GIT_PREFIX = "/git"
DOCS = "https://docs.github.com/rest"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class GitHubDouble:
    root: Path
    token: str
    login: str = "octocat"
    orgs: set[str] = field(default_factory=lambda: {"acme"})
    rate_limited: bool = False
    reject_pushes: bool = False
    forbid_delete: bool = False
    delay_s: float = 0.0
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> GitHubDouble:
        (self.root / "git").mkdir(parents=True, exist_ok=True)
        double = self

        class Handler(_Handler):
            github = double

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="github-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def origin(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        return self.origin + API_PREFIX

    # -- state ----------------------------------------------------------------------------

    def bare_path(self, full_name: str) -> Path:
        return self.root / "git" / f"{full_name}.git"

    def add_repo(self, owner: str, name: str, *, private: bool = True) -> dict[str, Any]:
        full_name = f"{owner}/{name}"
        bare = self.bare_path(full_name)
        bare.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True)
        if self.reject_pushes:
            hook = bare / "hooks" / "pre-receive"
            hook.write_text("#!/bin/sh\necho 'push declined by the repository policy' >&2\nexit 1\n")
            hook.chmod(0o755)
        repo = {
            "id": len(self.repos) + 1,
            "name": name,
            "full_name": full_name,
            "private": private,
            "owner": {"login": owner, "type": "Organization" if owner in self.orgs else "User"},
            "html_url": f"https://github.example/{full_name}",
            "clone_url": f"{self.origin}{GIT_PREFIX}/{full_name}.git",
            "default_branch": "main",
        }
        self.repos[full_name] = repo
        return repo

    def api_requests(self, method: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(API_PREFIX) and method in (None, r.method)]


class _Handler(BaseHTTPRequestHandler):
    github: GitHubDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing ---------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self._send(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    def _handle(self) -> None:
        path = urlsplit(self.path).path
        raw = self._body()
        try:
            body: Any = json.loads(raw) if raw and path.startswith(API_PREFIX) else None
        except ValueError:
            body = None
        self.github.requests.append(Recorded(self.command, path, dict(self.headers.items()), body))
        if path.startswith(API_PREFIX + "/"):
            self._api(path[len(API_PREFIX) :], body)
        elif path.startswith(GIT_PREFIX + "/"):
            self._git(path[len(GIT_PREFIX) :], raw)
        else:
            self._json(404, {"message": "Not Found", "documentation_url": DOCS})

    do_GET = do_POST = do_DELETE = _handle  # noqa: N815

    # -- REST API ---------------------------------------------------------------------------

    def _api(self, path: str, body: Any) -> None:
        github = self.github
        if github.delay_s:
            time.sleep(github.delay_s)
        auth = self.headers.get("Authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() not in ("token", "bearer") or given != github.token:
            self._json(401, {"message": f"Bad credentials (you sent {auth!r})", "documentation_url": DOCS})
            return
        if github.rate_limited:
            reset = int(time.time()) + 1800
            self._json(
                403,
                {"message": "API rate limit exceeded for user ID 1.", "documentation_url": DOCS},
                {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
            )
            return
        parts = path.strip("/").split("/")
        if self.command == "GET" and parts == ["user"]:
            self._json(200, {"login": github.login, "id": 1, "type": "User"})
        elif self.command == "POST" and parts == ["user", "repos"]:
            self._create(github.login, body)
        elif self.command == "POST" and len(parts) == 3 and parts[0] == "orgs" and parts[2] == "repos":
            if parts[1] not in github.orgs:
                self._json(404, {"message": "Not Found", "documentation_url": DOCS})
            else:
                self._create(parts[1], body)
        elif self.command == "GET" and len(parts) == 3 and parts[0] == "repos":
            self._get(f"{parts[1]}/{parts[2]}")
        elif self.command == "DELETE" and len(parts) == 3 and parts[0] == "repos":
            self._delete(f"{parts[1]}/{parts[2]}")
        elif self.command == "POST" and len(parts) == 4 and parts[0] == "repos" and parts[3] == "pulls":
            self._pull(f"{parts[1]}/{parts[2]}", body)
        else:
            self._json(404, {"message": "Not Found", "documentation_url": DOCS})

    def _create(self, owner: str, body: Any) -> None:
        github = self.github
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            self._json(422, {"message": "Invalid request.", "errors": [{"field": "name", "code": "missing"}]})
            return
        if f"{owner}/{name}" in github.repos:
            self._json(
                422,
                {
                    "message": "Repository creation failed.",
                    "errors": [
                        {
                            "resource": "Repository",
                            "code": "custom",
                            "field": "name",
                            "message": "name already exists on this account",
                        }
                    ],
                    "documentation_url": DOCS,
                    "status": "422",
                },
            )
            return
        self._json(201, github.add_repo(owner, name, private=bool(body.get("private", False))))

    def _get(self, full_name: str) -> None:
        """A repository as its creation answered it (``clone_url`` included), or 404."""
        repo = self.github.repos.get(full_name)
        if repo is None:
            self._json(404, {"message": "Not Found", "documentation_url": DOCS})
        else:
            self._json(200, repo)

    def _pull(self, full_name: str, body: Any) -> None:
        """Open a pull request; like GitHub, only between branches that exist."""
        github = self.github
        if full_name not in github.repos or not isinstance(body, dict):
            self._json(404, {"message": "Not Found", "documentation_url": DOCS})
            return
        bare = github.bare_path(full_name)
        for ref in (body.get("head"), body.get("base")):
            found = subprocess.run(
                ["git", "--git-dir", str(bare), "rev-parse", "--verify", "--quiet", f"refs/heads/{ref}"],
                capture_output=True,
                check=False,
            )
            if found.returncode != 0:
                self._json(422, {"message": "Validation Failed", "errors": [{"field": "head", "code": "invalid"}]})
                return
        number = len(github.pulls) + 1
        pull = {
            "number": number,
            "html_url": f"{github.origin}/{full_name}/pull/{number}",
            "title": body.get("title"),
            "body": body.get("body"),
            "head": {"ref": body.get("head")},
            "base": {"ref": body.get("base")},
        }
        github.pulls.append(pull)
        self._json(201, pull)

    def _delete(self, full_name: str) -> None:
        github = self.github
        if full_name not in github.repos:
            self._json(404, {"message": "Not Found", "documentation_url": DOCS})
        elif github.forbid_delete:
            self._json(403, {"message": "Must have admin rights to Repository.", "documentation_url": DOCS})
        else:
            del github.repos[full_name]
            shutil.rmtree(github.bare_path(full_name), ignore_errors=True)
            self._json(204, None)

    # -- git over HTTP ---------------------------------------------------------------------

    def _git(self, path: str, body: bytes) -> None:
        github = self.github
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        password = ""
        if scheme.lower() == "basic":
            password = base64.b64decode(encoded).decode(errors="replace").partition(":")[2]
        if password != github.token:
            self._send(401, b"Invalid username or password.\n", {"WWW-Authenticate": 'Basic realm="GitHub"'})
            return
        env = {
            "PATH": "/usr/bin:/bin",
            "GIT_PROJECT_ROOT": str(github.root / "git"),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": github.login,
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": urlsplit(self.path).query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        result = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, separator, payload = result.stdout.partition(b"\r\n\r\n")
        if not separator:
            head, separator, payload = result.stdout.partition(b"\n\n")
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key and key.lower() != "content-length":
                headers[key.strip()] = value.strip()
        self._send(status, payload, headers)
