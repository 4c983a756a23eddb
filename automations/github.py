"""GitHub's REST API behind one adapter: commit statuses, check runs, and sticky issue comments.

github3.py 4.0.1 is pinned (unmaintained since 2023) and imported here and nowhere else, so plain httpx calls can
replace it if it breaks. It does what it does cleanly: commit statuses, creating and editing comments. httpx,
in this module too, does the rest, each for a reason given where it happens:

- check runs (github3 refuses them with a plain token before sending anything);
- listing a pull request's comments, page by page (github3 4.0.1 crashes on a deleted author);
- the pull requests of a commit (github3 would first fetch the whole commit, files and all).

Both transports share one :class:`Patience`: rate-limit answers (403 or 429 with ``Retry-After``, or an
exhausted quota) are retried after the wait GitHub asks for, within one bound for the whole client, and GitHub
unreachable is reported at once. Errors are :class:`GitHubError`; their messages quote GitHub's own message and
never a token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from registry.errors import RegistryError

State = Literal["success", "failure", "error", "pending"]
Conclusion = Literal["success", "failure", "neutral"]
REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
DESCRIPTION_MAX = 140
"""GitHub cuts a status description at 140 characters."""
COMMENT_MAX = 65_536
ANNOTATIONS_MAX = 50
"""Annotations one check-run request may carry."""
API_VERSION = "2022-11-28"
_TRUSTED_AUTHORS = {"OWNER", "MEMBER", "COLLABORATOR"}


class GitHubError(RegistryError):
    """GitHub refused a call or could not be reached. The message never carries a token."""

    status = 502
    kind = "github"
    code = "github_error"


class GitHubRefused(GitHubError):
    """GitHub answered with an error: ``status_code`` is its HTTP status (401 bad token, 403 no permission ...)."""

    code = "github_refused"

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"GitHub answered {status_code}: {message}")
        self.status_code = status_code


class GitHubRateLimited(GitHubRefused):
    """Still rate limited once the wait budget was spent (or GitHub asked for a longer wait than is left)."""

    code = "github_rate_limited"


class GitHubUnreachable(GitHubError):
    code = "github_unreachable"


@dataclass(frozen=True, slots=True)
class Annotation:
    """A check-run annotation on a line of a file in the repository."""

    path: str
    line: int
    level: Literal["notice", "warning", "failure"]
    message: str
    title: str | None = None


@dataclass(frozen=True, slots=True)
class StickyComment:
    id: int
    url: str
    created: bool
    """False when an earlier comment with the marker was edited instead."""


class GitHubReporter(Protocol):
    """What Modelkeep tells GitHub about a commit or a pull request."""

    def set_status(
        self, repository: str, sha: str, *, state: State, description: str, context: str, target_url: str | None
    ) -> None: ...

    def create_check_run(
        self,
        repository: str,
        sha: str,
        *,
        name: str,
        conclusion: Conclusion,
        title: str,
        summary: str,
        details_url: str | None,
        annotations: list[Annotation],
    ) -> int: ...

    def upsert_comment(self, repository: str, number: int, *, marker: str, body: str) -> StickyComment: ...

    def pulls_for_commit(self, repository: str, sha: str) -> list[int]: ...


# -- waiting for rate limits --------------------------------------------------------------------------------
@dataclass
class Patience:
    """How long one client waits for GitHub's rate limits in all (``max_wait`` seconds, ``attempts`` tries per
    call). A bounded wait: a CI step or an automation job must end, and a result that cannot be posted is
    still a result (the caller reports the refusal)."""

    max_wait: float = 60.0
    attempts: int = 4
    sleep: Callable[[float], None] = time.sleep
    waited: float = field(default=0.0, init=False)

    def delay(self, status: int, headers: Mapping[str, str], text: str) -> float | None:
        """Seconds GitHub asks us to wait before trying again; None when the answer is final.

        GitHub's rules: a secondary rate limit is 403 or 429 with ``Retry-After`` (seconds); an exhausted quota
        has ``x-ratelimit-remaining: 0`` and ``x-ratelimit-reset`` (epoch seconds); a 429, or a 403 that says
        "rate limit", without either waits at least a minute. Any other 403 is a permission refusal (a fork's
        read-only token) and is final. 502/503/504 are GitHub's own hiccups: a short backoff."""
        if status in (502, 503, 504):
            return 1.0
        if status not in (403, 429):
            return None
        lower = {k.lower(): v for k, v in headers.items()}
        retry_after = lower.get("retry-after", "").strip()
        if retry_after.isdigit():
            return float(retry_after)
        if lower.get("x-ratelimit-remaining") == "0" and lower.get("x-ratelimit-reset", "").isdigit():
            return max(0.0, float(lower["x-ratelimit-reset"]) - time.time())
        if status == 429 or "rate limit" in text.lower():
            return 60.0
        return None

    def wait(self, delay: float, attempt: int) -> bool:
        """Sleep ``delay`` if the budget allows another attempt; False (no sleep) when it does not."""
        if attempt + 1 >= self.attempts or self.waited + delay > self.max_wait:
            return False
        self.sleep(delay)
        self.waited += delay
        return True


def _message(text: str) -> str:
    """GitHub's ``message`` from an error body (first 300 characters), else the start of the body."""
    import json

    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:300] or "no message"
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])[:300]
    return text.strip()[:300] or "no message"


def _split(repository: str) -> tuple[str, str]:
    if not REPOSITORY.match(repository):
        raise GitHubError(f"{repository!r} is not a repository (owner/name)")
    owner, _, name = repository.partition("/")
    return owner, name


# -- the adapter ---------------------------------------------------------------------------------------------
class GitHubClient:
    """:class:`GitHubReporter` over GitHub's REST API at ``api_url`` (``https://api.github.com``, or a GitHub
    Enterprise Server's ``https://HOST/api/v3``: what Actions puts in ``GITHUB_API_URL``). Synchronous: the CLI
    calls it directly, the server from a worker thread."""

    def __init__(self, api_url: str, token: str, *, patience: Patience | None = None, timeout: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.patience = patience or Patience()
        self._token = token
        self._timeout = timeout
        self._gh: Any = None
        self._http = httpx.Client(
            base_url=self.api_url,
            timeout=timeout,
            headers={
                "authorization": f"Bearer {token}",
                "accept": "application/vnd.github+json",
                "x-github-api-version": API_VERSION,
                "user-agent": "modelkeep",
            },
        )

    def close(self) -> None:
        self._http.close()
        if self._gh is not None:
            self._gh.session.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- github3 ----------------------------------------------------------------------------------------------
    def _github3(self) -> Any:
        """A github3 client on ``api_url``, its requests session retrying rate limits like httpx calls do.

        ``session.base_url`` is set to the API root rather than using ``GitHubEnterprise``, which wants the
        server URL and appends ``/api/v3``: one code path serves github.com, GitHub Enterprise and the tests."""
        if self._gh is None:
            import github3
            from github3.session import GitHubSession

            patience = self.patience

            class RetryingSession(GitHubSession):  # type: ignore[misc]
                def request(self, *args: Any, **kwargs: Any) -> Any:
                    attempt = 0
                    while True:
                        response = super().request(*args, **kwargs)
                        delay = patience.delay(response.status_code, response.headers, response.text)
                        if delay is None or not patience.wait(delay, attempt):
                            return response
                        attempt += 1

            session = RetryingSession(default_connect_timeout=self._timeout, default_read_timeout=self._timeout)
            session.base_url = self.api_url
            self._gh = github3.GitHub(token=self._token, session=session, api_version=API_VERSION)
        return self._gh

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run a github3 call, mapping its exceptions to ours."""
        from github3 import exceptions

        try:
            return fn()
        except exceptions.TransportError as exc:
            reason = _cause(exc.exception)
            raise GitHubUnreachable(f"cannot reach GitHub at {self.api_url} ({what}): {reason}") from None
        except exceptions.GitHubError as exc:
            code = exc.code if isinstance(exc.code, int) else 502
            message = str(exc.msg or "no message")[:300]
            error = GitHubRateLimited if self._rate_limited(exc) else GitHubRefused
            raise error(code, f"{message} ({what})") from None

    def _rate_limited(self, exc: Any) -> bool:
        response = getattr(exc, "response", None)
        if response is None:
            return False
        return self.patience.delay(response.status_code, response.headers, response.text) is not None

    # -- httpx --------------------------------------------------------------------------------------------------
    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                raise GitHubUnreachable(f"cannot reach GitHub at {self.api_url} ({what}): {_cause(exc)}") from None
            if response.status_code < 400:
                return response
            delay = self.patience.delay(response.status_code, response.headers, response.text)
            if delay is not None and self.patience.wait(delay, attempt):
                attempt += 1
                continue
            error = GitHubRateLimited if delay is not None else GitHubRefused
            raise error(response.status_code, f"{_message(response.text)} ({what})")

    def _pages(self, url: str, what: str) -> Iterator[Any]:
        """Every item of a paginated list, following ``Link: <...>; rel="next"`` (100 per page)."""
        next_url: str | None = url
        params: dict[str, Any] | None = {"per_page": 100}
        while next_url:
            response = self._request("GET", next_url, what, params=params)
            yield from response.json()
            # The next link carries its own query (page, per_page); it may also point elsewhere on the host.
            next_url, params = response.links.get("next", {}).get("url"), None

    # -- the reporter --------------------------------------------------------------------------------------------
    def set_status(
        self, repository: str, sha: str, *, state: State, description: str, context: str, target_url: str | None
    ) -> None:
        """A commit status on ``sha``. GitHub keeps the latest per ``context``: posting again replaces it."""
        owner, name = _split(repository)
        gh = self._github3()
        repo = self._call("reading the repository", lambda: gh.repository(owner, name))
        self._call(
            "setting the commit status",
            lambda: repo.create_status(
                sha, state, target_url=target_url, description=description[:DESCRIPTION_MAX], context=context
            ),
        )

    def create_check_run(
        self,
        repository: str,
        sha: str,
        *,
        name: str,
        conclusion: Conclusion,
        title: str,
        summary: str,
        details_url: str | None,
        annotations: list[Annotation],
    ) -> int:
        """A completed check run on ``sha`` with a Markdown summary and up to 50 annotations.

        httpx, not github3: github3 4.0.1 decorates ``create_check_run`` with ``requires_app_installation_auth``
        and raises before any request when given a plain token, although Actions' GITHUB_TOKEN is an App
        installation token that GitHub accepts here. (A personal access token is refused by GitHub itself: 403.)"""
        _split(repository)
        body: dict[str, Any] = {
            "name": name,
            "head_sha": sha,
            "status": "completed",
            "conclusion": conclusion,
            "output": {
                "title": title[:DESCRIPTION_MAX],
                "summary": summary[:COMMENT_MAX],
                "annotations": [
                    {
                        "path": a.path,
                        "start_line": a.line,
                        "end_line": a.line,
                        "annotation_level": a.level,
                        "message": a.message,
                        **({"title": a.title} if a.title else {}),
                    }
                    for a in annotations[:ANNOTATIONS_MAX]
                ],
            },
        }
        if details_url:
            body["details_url"] = details_url
        response = self._request("POST", f"/repos/{repository}/check-runs", "creating the check run", json=body)
        return int(response.json()["id"])

    def upsert_comment(self, repository: str, number: int, *, marker: str, body: str) -> StickyComment:
        """Edit the pull request's comment that starts with ``marker``, or create it: one comment per marker,
        however often this runs. ``body`` must start with ``marker``.

        Only a comment by a bot or by someone with write access counts: an outside contributor could otherwise
        plant the marker and have the report written into their comment, or keep it from being updated."""
        if not body.startswith(marker):
            raise ValueError("the comment body must start with its marker")
        owner, name = _split(repository)
        found = self._find_comment(repository, number, marker)
        gh = self._github3()
        if found is not None:
            from github3.issues.comment import IssueComment

            comment = IssueComment.from_dict(found, gh)
            self._call("editing the comment", lambda: comment.edit(body))
            return StickyComment(id=int(found["id"]), url=str(found.get("html_url") or ""), created=False)
        issue = self._call("reading the pull request", lambda: gh.issue(owner, name, number))
        created = self._call("creating the comment", lambda: issue.create_comment(body))
        return StickyComment(id=int(created.id), url=str(created.html_url or ""), created=True)

    def _find_comment(self, repository: str, number: int, marker: str) -> dict[str, Any] | None:
        """The oldest comment starting with ``marker`` by a bot or a member, or None.

        Listed with httpx: github3 4.0.1's ``Issue.comments()`` raises TypeError on any comment whose author was
        deleted (``"user": null``, shown as "ghost"); fixed upstream, never released."""
        url = f"/repos/{repository}/issues/{number}/comments"
        for comment in self._pages(url, "listing the pull request's comments"):
            if not str(comment.get("body") or "").startswith(marker):
                continue
            user = comment.get("user") or {}
            if user.get("type") == "Bot" or comment.get("author_association") in _TRUSTED_AUTHORS:
                return dict(comment)
        return None

    def pulls_for_commit(self, repository: str, sha: str) -> list[int]:
        """Numbers of the open pull requests whose head is ``sha`` or contains it (newest first, as GitHub lists
        them). httpx: github3 reaches this list only through a full commit object, one more large request."""
        _split(repository)
        url = f"/repos/{repository}/commits/{sha}/pulls"
        pulls = self._pages(url, "finding the commit's pull requests")
        return [int(p["number"]) for p in pulls if p["state"] == "open"]


def _cause(exc: BaseException) -> str:
    """The innermost reason of a transport failure ("Connection refused"), without URLs' credentials."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc) or exc.__class__.__name__
    return re.sub(r"//[^/@\s]*@", "//", text)[:200]


def repository_of(remote: str | None) -> str | None:
    """``owner/name`` from a git remote URL (``https://github.com/acme/models.git``,
    ``git@github.com:acme/models.git``, ``ssh://git@ghe.example.com/acme/models``); None if it names none."""
    if not remote:
        return None
    text = remote.strip()
    if "://" in text:
        path = text.split("://", 1)[1].split("/", 1)[1] if "/" in text.split("://", 1)[1] else ""
    elif ":" in text and not text.startswith("/"):
        path = text.split(":", 1)[1]
    else:
        return None
    parts = [p for p in path.split("?", 1)[0].split("#", 1)[0].strip("/").split("/") if p]
    if len(parts) < 2:
        return None
    candidate = f"{parts[-2]}/{parts[-1].removesuffix('.git')}"
    return candidate if REPOSITORY.match(candidate) else None
