"""The commit step's last part, where the project has a GitHub remote: move the run's branch
out of the sandbox as a bundle, into the service's own bare repository, push it from there
to the repository GitHub names for the project's stored ``github_url``, and open a pull
request into the branch the workspace was on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

from service.errors import Invalid, UpstreamError
from service.git import publishing
from service.git import workspace as workspace_git
from service.logs import get_logger
from service.runtimes.environment import BoundedSink, Environment
from service.scaffolding.github import GitHubClient
from service.settings import Settings
from service.workflows.schemas import Run

log = get_logger(__name__)

BUNDLE_LIMIT = 1024 * 1024 * 1024  # 1 GiB of a run's commits


def repository_of(github_url: str) -> tuple[str, str]:
    """``owner``, ``name`` from a repository's web address (``https://host/owner/name``)."""
    parts = [p for p in urlsplit(github_url).path.split("/") if p]
    if len(parts) < 2:
        raise Invalid(f"the project's github_url {github_url!r} does not name a repository")
    return parts[-2], parts[-1].removesuffix(".git")


class GitHubPublisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def repository_path(self, run: Run) -> Path:
        return self.settings.data_dir / "publish" / f"{run.project_id}.git"

    async def __call__(self, run: Run, github_url: str, environment: Environment, base: str) -> dict[str, str]:
        """Answers the fields the run records: the pushed commit, the pull request's address."""
        assert run.branch is not None
        client = GitHubClient(self.settings)
        owner, name = repository_of(github_url)
        timeout = self.settings.git_timeout_s
        repository = self.repository_path(run)
        await publishing.ensure_repository(repository, timeout=timeout)
        bundle = repository.parent / f"{run.id}.bundle"
        try:
            with bundle.open("wb") as file:
                sink = BoundedSink(file, BUNDLE_LIMIT)
                await workspace_git.export_bundle(environment, run.branch, sink, timeout=timeout)
            sha = await publishing.fetch_bundle(repository, bundle, run.branch, timeout=timeout)
        finally:
            await asyncio.to_thread(bundle.unlink, missing_ok=True)
        remote = await client.get_repository(owner, name)
        if urlsplit(remote.clone_url).scheme.lower() not in ("https", "http"):
            raise UpstreamError(f"GitHub named a clone URL that is not http(s): {remote.clone_url!r}")
        await publishing.push_branch(repository, remote.clone_url, run.branch, token=client.token, timeout=timeout)
        log.info("git.pushed", run_id=str(run.id), url=remote.html_url, branch=run.branch, commit=sha)
        title = run.task.strip().splitlines()[0]
        body = (
            f"Made by agentdock's `{run.workflow}` workflow, run `{run.id}`: tests written first (red), "
            "then the code (green), then a refactor, each checked by the service running the tests."
        )
        url = await client.create_pull_request(
            owner=owner, name=name, head=run.branch, base=base, title=title, body=body
        )
        log.info("workflow.pull_request.opened", run_id=str(run.id), project_id=str(run.project_id), url=url)
        return {"pull_request_url": url, "commit_sha": sha}
