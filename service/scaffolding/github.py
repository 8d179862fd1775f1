"""GitHub, through githubkit: create a repository under the token's user or an organisation,
and delete one again when a project's creation is undone.

``AGENTDOCK_GITHUB_API_URL`` is githubkit's base URL, so a GitHub Enterprise Server works as
``https://<host>/api/v3``. githubkit's automatic retries are off: a rate limit is reported at
once (with the time to wait) instead of holding the request for up to an hour.

GitHub's answers become errors of the service's tree, their messages redacted:

| GitHub | service |
| --- | --- |
| 401 bad credentials | 502: the service's token is wrong, nothing the client can fix |
| 403 / 429 rate limit | 502, saying when to retry |
| 403 other (scopes, policy) | 502 with GitHub's message |
| 404 on an organisation | 400: no such organisation, or the token cannot see it |
| 422 name already exists | 409 |
| 422 / 400 other validation | 400 with GitHub's message |
| 5xx, no answer, timeout | 502 |
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from githubkit import GitHub, TokenAuthStrategy
from githubkit.exception import GitHubException, RateLimitExceeded, RequestFailed, RequestTimeout

from service.errors import AppError, Conflict, Invalid, UpstreamError
from service.scaffolding.redaction import Redactor
from service.settings import Settings

MAX_DESCRIPTION = 350  # GitHub's limit for a repository description


@dataclass(frozen=True)
class GitHubRepository:
    owner: str
    name: str
    full_name: str
    html_url: str
    clone_url: str
    private: bool


class GitHubClient:
    """A short-lived githubkit client (and HTTP connection) per call, under the GitHub deadline."""

    def __init__(self, settings: Settings) -> None:
        if not settings.github_token:
            raise Invalid(
                "creating a GitHub repository needs a GitHub token: set AGENTDOCK_GITHUB_TOKEN for the service"
            )
        self._token = settings.github_token
        self._api_url = settings.github_api_url
        self._timeout = settings.github_timeout_s
        self.redact = Redactor([settings.github_token])

    @property
    def token(self) -> str:
        return self._token

    def _client(self) -> GitHub[TokenAuthStrategy]:
        return GitHub(
            TokenAuthStrategy(self._token),
            base_url=self._api_url,
            timeout=self._timeout,
            auto_retry=False,
            http_cache=False,
            user_agent="agentdock",
        )

    async def create_repository(
        self, *, name: str, description: str, private: bool, org: str | None
    ) -> GitHubRepository:
        """Create an empty repository (no README, so the first push is ours)."""
        owner = f"organisation {org!r}" if org else "the token's user"
        fields: dict[str, Any] = {"name": name, "private": private, "auto_init": False}
        summary = description.strip().splitlines()[0][:MAX_DESCRIPTION] if description.strip() else ""
        if summary:
            fields["description"] = summary
        try:
            async with asyncio.timeout(self._timeout), self._client() as github:
                if org:
                    response = await github.rest.repos.async_create_in_org(org, **fields)
                else:
                    response = await github.rest.repos.async_create_for_authenticated_user(**fields)
        except (GitHubException, TimeoutError) as exc:
            raise self._error(exc, action=f"create the repository {name!r} for {owner}", name=name, org=org) from None
        return _repository(response.json(), what=f"creating {name!r}", private=private)

    async def get_repository(self, owner: str, name: str) -> GitHubRepository:
        """A repository as GitHub describes it (its ``clone_url`` is where runs are pushed)."""
        try:
            async with asyncio.timeout(self._timeout), self._client() as github:
                response = await github.rest.repos.async_get(owner, name)
        except (GitHubException, TimeoutError) as exc:
            raise self._error(exc, action=f"look up the repository {owner}/{name}", name=name) from None
        return _repository(response.json(), what=f"looking up {owner}/{name}", private=True)

    async def create_pull_request(self, *, owner: str, name: str, head: str, base: str, title: str, body: str) -> str:
        """Open a pull request from ``head`` into ``base``; answers its web address."""
        try:
            async with asyncio.timeout(self._timeout), self._client() as github:
                response = await github.rest.pulls.async_create(
                    owner, name, head=head, base=base, title=title[:250], body=body
                )
        except (GitHubException, TimeoutError) as exc:
            raise self._error(exc, action=f"open a pull request from {head} into {base} of {owner}/{name}") from None
        return str(response.json().get("html_url", ""))

    async def delete_repository(self, repository: GitHubRepository) -> None:
        try:
            async with asyncio.timeout(self._timeout), self._client() as github:
                await github.rest.repos.async_delete(repository.owner, repository.name)
        except (GitHubException, TimeoutError) as exc:
            raise self._error(exc, action=f"delete the repository {repository.full_name}") from None

    def _error(self, exc: Exception, *, action: str, name: str | None = None, org: str | None = None) -> AppError:
        if isinstance(exc, RequestTimeout | TimeoutError):
            return UpstreamError(f"GitHub did not answer within {self._timeout:g} s (trying to {action})")
        if isinstance(exc, RequestFailed):
            return self._failed(exc, action=action, name=name, org=org)
        reason = type(getattr(exc, "exc", exc)).__name__
        return UpstreamError(self.redact(f"could not reach GitHub at {self._api_url} ({reason}) to {action}"))

    def _failed(self, exc: RequestFailed, *, action: str, name: str | None, org: str | None) -> AppError:
        status = exc.response.status_code
        message = self.redact(_message(exc.response.raw_response.text))
        if isinstance(exc, RateLimitExceeded):
            wait = int(exc.retry_after.total_seconds())
            return UpstreamError(f"GitHub's rate limit is exhausted; retry in {wait} s (trying to {action}): {message}")
        if status == 401:
            return UpstreamError(f"GitHub rejected the service's token (AGENTDOCK_GITHUB_TOKEN) with 401: {message}")
        if status == 404 and org:
            return Invalid(f"GitHub has no organisation {org!r} that the service's token can see: {message}")
        if status == 422 and "already exists" in message.lower():
            return Conflict(f"a repository named {name!r} already exists on GitHub: {message}")
        if status in (400, 422):
            return Invalid(f"GitHub refused to {action}: {message}")
        return UpstreamError(f"GitHub answered {status} when asked to {action}: {message}")


def _repository(body: Any, *, what: str, private: bool) -> GitHubRepository:
    try:
        return GitHubRepository(
            owner=str(body["owner"]["login"]),
            name=str(body["name"]),
            full_name=str(body["full_name"]),
            html_url=str(body["html_url"]),
            clone_url=str(body["clone_url"]),
            private=bool(body.get("private", private)),
        )
    except (KeyError, TypeError) as exc:
        raise UpstreamError(f"GitHub's answer to {what} lacks a field: {exc}") from None


def _message(text: str) -> str:
    """GitHub's ``message`` and the ``message``s of its ``errors``; the raw text otherwise."""
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "(empty answer)"
    if not isinstance(body, dict):
        return text.strip()[:500]
    parts = [str(body.get("message") or "").strip()]
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            detail = error.get("message") or " ".join(str(error.get(k, "")) for k in ("field", "code")).strip()
            parts.append(str(detail))
        else:
            parts.append(str(error))
    return "; ".join(p for p in parts if p) or "(no message)"
