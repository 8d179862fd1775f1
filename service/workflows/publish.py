"""The commit step's last part, where the project has a GitHub remote: push the run's branch
and open a pull request into the branch the workspace was on."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from service.errors import Invalid
from service.logs import get_logger
from service.scaffolding import git
from service.scaffolding.github import GitHubClient
from service.scaffolding.redaction import Redactor
from service.settings import Settings
from service.workflows.gates import safe_directory
from service.workflows.schemas import Run

log = get_logger(__name__)


def repository_of(github_url: str) -> tuple[str, str]:
    """``owner``, ``name`` from a repository's web address (``https://host/owner/name``)."""
    parts = [p for p in urlsplit(github_url).path.split("/") if p]
    if len(parts) < 2:
        raise Invalid(f"the project's github_url {github_url!r} does not name a repository")
    return parts[-2], parts[-1].removesuffix(".git")


class GitHubPublisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __call__(self, run: Run, github_url: str, workspace: Path, base: str) -> dict[str, str]:
        assert run.branch is not None
        client = GitHubClient(self.settings)
        owner, name = repository_of(github_url)
        timeout = self.settings.git_timeout_s
        safe = safe_directory(workspace)
        remote = (
            await git.run(
                [*safe, "remote", "get-url", "origin"], cwd=workspace, timeout=timeout, what="git remote get-url"
            )
        ).strip()
        await git.run(
            [
                *safe,
                *git.credential_args(remote),
                "push",
                "--quiet",
                "origin",
                f"refs/heads/{run.branch}:refs/heads/{run.branch}",
            ],
            cwd=workspace,
            timeout=timeout,
            what=f"git push of {run.branch}",
            env={git.TOKEN_ENV: client.token},
            redact=Redactor([client.token]),
        )
        title = run.task.strip().splitlines()[0]
        body = (
            f"Made by agentdock's `{run.workflow}` workflow, run `{run.id}`: tests written first (red), "
            "then the code (green), then a refactor, each checked by the service running the tests."
        )
        url = await client.create_pull_request(
            owner=owner, name=name, head=run.branch, base=base, title=title, body=body
        )
        log.info("workflow.pull_request.opened", run_id=str(run.id), project_id=str(run.project_id), url=url)
        return {"pull_request_url": url}
