"""A fake GitHub for tests: a real HTTP server on 127.0.0.1 speaking GitHub's REST wire format for what Modelkeep
calls (repositories, commit statuses, check runs, issue comments, a commit's pull requests).

It answers like GitHub does where it matters to a client: absolute ``url`` fields pointing back at itself (github3
follows them), ``Link: <...>; rel="next"`` pagination, 401 "Bad credentials" for an unknown token, 403 "Resource
not accessible by integration" when a read-only token (a fork's) writes, 404 for an unknown repository, and
secondary rate limits (403 or 429 with ``Retry-After``) when told to. Every request is recorded. With ``prefix``
("/api/v3") it serves under a GitHub Enterprise Server's API root.
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.conftest import free_port

NOW = "2025-01-01T12:00:00Z"
BOT = "github-actions[bot]"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    """Without the prefix and the query."""
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int


@dataclass
class Limit:
    status: int
    headers: dict[str, str]


@dataclass
class State:
    statuses: list[dict[str, Any]] = field(default_factory=list)
    check_runs: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)


class FakeGitHub:
    """``tokens`` maps a token to "write" or "read". ``page_size`` caps ``per_page`` (to exercise pagination)."""

    def __init__(
        self, *, tokens: dict[str, str] | None = None, prefix: str = "", page_size: int = 100, port: int | None = None
    ) -> None:
        self.tokens = dict(tokens or {"ghs_write": "write", "ghs_read": "read"})
        self.prefix = prefix.rstrip("/")
        self.page_size = page_size
        self.port = port or free_port()
        self.repositories: set[str] = set()
        self.state = State()
        self.seen: list[Seen] = []
        self.limits: deque[Limit] = deque()
        self._ids = 1000
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self.echo_tokens = False
        """Quote the request's token in error messages (GitHub does not; a client must not repeat it if it did)."""

    # -- set up --------------------------------------------------------------------------------------------------
    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.root + self.prefix

    def add_pull(self, repository: str, number: int, *, head_sha: str, state: str = "open") -> None:
        self.repositories.add(repository)
        self.state.pulls[(repository, number)] = {"number": number, "head_sha": head_sha, "state": state}

    def add_comment(
        self,
        repository: str,
        number: int,
        body: str,
        *,
        login: str | None = "someone",
        association: str = "CONTRIBUTOR",
        kind: str = "User",
    ) -> int:
        """A comment already on the pull request (``login=None``: its author's account was deleted)."""
        with self._lock:
            return self._new_comment(repository, number, body, login=login, association=association, kind=kind)

    def rate_limit(self, times: int, *, status: int = 403, retry_after: str | None = "1", **headers: str) -> None:
        """Answer the next ``times`` requests with a secondary rate limit."""
        extra = {k.replace("_", "-"): v for k, v in headers.items()}
        if retry_after is not None:
            extra["retry-after"] = retry_after
        for _ in range(times):
            self.limits.append(Limit(status, extra))

    def start(self) -> FakeGitHub:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.fake = self
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading what happened -----------------------------------------------------------------------------------
    def comments_on(self, repository: str, number: int) -> list[dict[str, Any]]:
        with self._lock:
            return [
                c for c in self.state.comments.values() if c["_repository"] == repository and c["_number"] == number
            ]

    def requests(self, method: str | None = None, pattern: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if (method is None or s.method == method) and re.search(pattern, s.path)]

    # -- wire format ----------------------------------------------------------------------------------------------
    def _user(self, login: str | None, kind: str = "User") -> dict[str, Any] | None:
        if login is None:
            return None
        url = f"{self.api_url}/users/{login}"
        return {
            "login": login,
            "id": zlib.crc32(login.encode()) % 10_000_000,
            "node_id": "U_x",
            "avatar_url": "https://avatars.example/u",
            "gravatar_id": "",
            "url": url,
            "html_url": f"{self.root}/{login}",
            "followers_url": f"{url}/followers",
            "following_url": f"{url}/following{{/other_user}}",
            "gists_url": f"{url}/gists{{/gist_id}}",
            "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{url}/subscriptions",
            "organizations_url": f"{url}/orgs",
            "repos_url": f"{url}/repos",
            "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events",
            "type": kind,
            "site_admin": False,
        }

    def _repository(self, full_name: str) -> dict[str, Any]:
        owner, name = full_name.split("/")
        url = f"{self.api_url}/repos/{full_name}"
        templated = {
            "archive_url": f"{url}/{{archive_format}}{{/ref}}",
            "assignees_url": f"{url}/assignees{{/user}}",
            "blobs_url": f"{url}/git/blobs{{/sha}}",
            "branches_url": f"{url}/branches{{/branch}}",
            "collaborators_url": f"{url}/collaborators{{/collaborator}}",
            "comments_url": f"{url}/comments{{/number}}",
            "commits_url": f"{url}/commits{{/sha}}",
            "compare_url": f"{url}/compare/{{base}}...{{head}}",
            "contents_url": f"{url}/contents/{{+path}}",
            "contributors_url": f"{url}/contributors",
            "deployments_url": f"{url}/deployments",
            "downloads_url": f"{url}/downloads",
            "events_url": f"{url}/events",
            "forks_url": f"{url}/forks",
            "git_commits_url": f"{url}/git/commits{{/sha}}",
            "git_refs_url": f"{url}/git/refs{{/sha}}",
            "git_tags_url": f"{url}/git/tags{{/sha}}",
            "hooks_url": f"{url}/hooks",
            "issue_comment_url": f"{url}/issues/comments{{/number}}",
            "issue_events_url": f"{url}/issues/events{{/number}}",
            "issues_url": f"{url}/issues{{/number}}",
            "keys_url": f"{url}/keys{{/key_id}}",
            "labels_url": f"{url}/labels{{/name}}",
            "languages_url": f"{url}/languages",
            "merges_url": f"{url}/merges",
            "milestones_url": f"{url}/milestones{{/number}}",
            "notifications_url": f"{url}/notifications{{?since,all,participating}}",
            "pulls_url": f"{url}/pulls{{/number}}",
            "releases_url": f"{url}/releases{{/id}}",
            "stargazers_url": f"{url}/stargazers",
            "statuses_url": f"{url}/statuses/{{sha}}",
            "subscribers_url": f"{url}/subscribers",
            "subscription_url": f"{url}/subscription",
            "tags_url": f"{url}/tags",
            "teams_url": f"{url}/teams",
            "trees_url": f"{url}/git/trees{{/sha}}",
        }
        return {
            "id": zlib.crc32(full_name.encode()) % 10_000_000,
            "node_id": "R_x",
            "name": name,
            "full_name": full_name,
            "owner": self._user(owner, "Organization"),
            "private": False,
            "fork": False,
            "description": "models",
            "url": url,
            "html_url": f"{self.root}/{full_name}",
            **templated,
            "archived": False,
            "clone_url": f"{self.root}/{full_name}.git",
            "created_at": NOW,
            "updated_at": NOW,
            "pushed_at": NOW,
            "default_branch": "main",
            "forks_count": 0,
            "git_url": f"git://127.0.0.1/{full_name}.git",
            "has_downloads": True,
            "has_issues": True,
            "has_pages": False,
            "has_projects": False,
            "has_wiki": False,
            "homepage": None,
            "language": "Python",
            "mirror_url": None,
            "network_count": 0,
            "open_issues_count": 0,
            "size": 1,
            "ssh_url": f"git@127.0.0.1:{full_name}.git",
            "stargazers_count": 0,
            "subscribers_count": 0,
            "svn_url": f"{self.root}/{full_name}",
            "watchers_count": 0,
        }

    def _issue(self, repository: str, number: int) -> dict[str, Any]:
        url = f"{self.api_url}/repos/{repository}/issues/{number}"
        return {
            "url": url,
            "id": number * 7,
            "node_id": "I_x",
            "number": number,
            "title": f"PR {number}",
            "body": "",
            "body_html": "",
            "body_text": "",
            "state": "open",
            "locked": False,
            "user": self._user("author"),
            "assignee": None,
            "assignees": [],
            "labels": [],
            "labels_url": f"{url}/labels{{/name}}",
            "milestone": None,
            "comments": len(self.comments_on(repository, number)),
            "comments_url": f"{url}/comments",
            "events_url": f"{url}/events",
            "html_url": f"{self.root}/{repository}/pull/{number}",
            "created_at": NOW,
            "updated_at": NOW,
            "closed_at": None,
            "closed_by": None,
            "pull_request": {"url": f"{self.api_url}/repos/{repository}/pulls/{number}"},
        }

    def _new_comment(
        self, repository: str, number: int, body: str, *, login: str | None, association: str, kind: str = "Bot"
    ) -> int:
        self._ids += 1
        cid = self._ids
        self.state.comments[cid] = {
            "url": f"{self.api_url}/repos/{repository}/issues/comments/{cid}",
            "id": cid,
            "node_id": "IC_x",
            "body": body,
            "body_html": f"<p>{body}</p>",
            "body_text": body,
            "author_association": association,
            "user": self._user(login, kind),
            "html_url": f"{self.root}/{repository}/pull/{number}#issuecomment-{cid}",
            "issue_url": f"{self.api_url}/repos/{repository}/issues/{number}",
            "created_at": NOW,
            "updated_at": NOW,
            "_repository": repository,
            "_number": number,
        }
        return cid

    @staticmethod
    def _public(comment: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in comment.items() if not k.startswith("_")}

    # -- routing -----------------------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(target)
        path = parts.path
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix) :]
        query = parse_qs(parts.query)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            status, extra, payload = self._route(method, path, query, headers, body)
            self.seen.append(Seen(method, path, query, headers, body, status))
        return status, extra, payload

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if self.limits:
            limit = self.limits.popleft()
            message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
            return limit.status, limit.headers, {"message": message}
        auth = headers.get("authorization", "")
        token = auth.split(" ", 1)[1] if " " in auth else ""
        access = self.tokens.get(token)
        quoted = f" (token {token})" if self.echo_tokens else ""
        if access is None:
            return 401, {}, {"message": f"Bad credentials{quoted}", "documentation_url": "https://docs.github.com/rest"}
        if method in ("POST", "PATCH") and access != "write":
            return 403, {}, {"message": f"Resource not accessible by integration{quoted}"}
        match = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)?", path)
        if not match or match[1] not in self.repositories:
            return 404, {}, {"message": "Not Found"}
        repository, rest = match[1], match[2] or ""
        actor = self._user(BOT, "Bot")
        if method == "GET" and rest == "":
            return 200, {}, self._repository(repository)
        if method == "POST" and (m := re.fullmatch(r"/statuses/([0-9a-f]{7,64})", rest)):
            if not isinstance(body, dict) or body.get("state") not in ("error", "failure", "pending", "success"):
                return 422, {}, {"message": "Validation Failed", "errors": [{"field": "state", "code": "invalid"}]}
            self._ids += 1
            status = {
                "url": f"{self.api_url}/repos/{repository}/statuses/{m[1]}",
                "id": self._ids,
                "node_id": "SC_x",
                "state": body["state"],
                "description": body.get("description"),
                "target_url": body.get("target_url"),
                "context": body.get("context", "default"),
                "created_at": NOW,
                "updated_at": NOW,
                "creator": actor,
                "sha": m[1],
                "repository": repository,
            }
            self.state.statuses.append(status)
            return 201, {}, {k: v for k, v in status.items() if k not in ("sha", "repository")}
        if method == "POST" and rest == "/check-runs":
            self._ids += 1
            run = {"id": self._ids, "repository": repository, **(body or {})}
            self.state.check_runs.append(run)
            return 201, {}, {**run, "url": f"{self.api_url}/repos/{repository}/check-runs/{self._ids}"}
        if m := re.fullmatch(r"/issues/(\d+)(/comments)?", rest):
            number = int(m[1])
            if (repository, number) not in self.state.pulls:
                return 404, {}, {"message": "Not Found"}
            if method == "GET" and not m[2]:
                return 200, {}, self._issue(repository, number)
            if method == "POST" and m[2]:
                if not isinstance(body, dict) or not body.get("body"):
                    return 422, {}, {"message": "Validation Failed"}
                cid = self._new_comment(repository, number, body["body"], login=BOT, association="NONE")
                return 201, {}, self._public(self.state.comments[cid])
            if method == "GET" and m[2]:
                items = [self._public(c) for c in sorted(self.state.comments.values(), key=lambda c: c["id"])]
                items = [c for c in items if c["issue_url"].endswith(f"/repos/{repository}/issues/{number}")]
                return self._page(path, query, items)
        if method == "PATCH" and (m := re.fullmatch(r"/issues/comments/(\d+)", rest)):
            comment = self.state.comments.get(int(m[1]))
            if comment is None or comment["_repository"] != repository:
                return 404, {}, {"message": "Not Found"}
            comment["body"] = comment["body_text"] = (body or {}).get("body", comment["body"])
            comment["updated_at"] = "2025-01-01T12:30:00Z"
            return 200, {}, self._public(comment)
        if method == "GET" and (m := re.fullmatch(r"/commits/([0-9a-f]{7,64})/pulls", rest)):
            found = [
                {"number": n, "state": p["state"], "head": {"sha": p["head_sha"]}}
                for (repo, n), p in sorted(self.state.pulls.items(), key=lambda kv: -kv[0][1])
                if repo == repository and p["head_sha"] == m[1]
            ]
            return self._page(path, query, found)
        return 404, {}, {"message": "Not Found"}

    def _page(self, path: str, query: dict[str, list[str]], items: list[Any]) -> tuple[int, dict[str, str], Any]:
        per_page = min(int(query.get("per_page", ["30"])[0]), 100, self.page_size)
        page = int(query.get("page", ["1"])[0])
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            base = f"{self.api_url}{path}"
            headers["link"] = (
                f'<{base}?per_page={per_page}&page={page + 1}>; rel="next", '
                f'<{base}?per_page={per_page}&page={-(-len(items) // per_page)}>; rel="last"'
            )
        return 200, headers, chunk


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGitHub

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, payload = self.server.fake.handle(self.command, self.path, headers, raw)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-github-request-id", "FAKE:1")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass
