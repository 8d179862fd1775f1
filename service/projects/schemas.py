"""API shapes of projects. Every field is validated here, at the edge."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from service.api.pagination import Page
from service.secrets.schemas import EnvMapping, check_env

NAME_PATTERN = r"^(?!\.\.?$)[A-Za-z0-9._-]+$"
IMAGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"
DEFAULT_AGENT_COMMAND = ("claude", "-p", "{prompt}")

ProjectName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=NAME_PATTERN,
        description="1-64 characters of [A-Za-z0-9._-], not '.' or '..'; unique",
    ),
]
Description = Annotated[str, msgspec.Meta(max_length=4096)]
TemplateName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=NAME_PATTERN,
        description="a template of GET /api/templates; with repo_url it only supplies the defaults",
    ),
]
RepoUrl = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=2048,
        description="clone this instead of using the template's files: an https:// or http:// URL without "
        "credentials, a file:// URL, or an absolute path on the service's host",
    ),
]
ImageRef = Annotated[
    str, msgspec.Meta(min_length=1, max_length=255, pattern=IMAGE_PATTERN, description="a Docker image reference")
]
Command = Annotated[str, msgspec.Meta(max_length=8192)]
Argument = Annotated[str, msgspec.Meta(max_length=8192)]
AgentCommand = Annotated[
    list[Argument],
    msgspec.Meta(
        min_length=1,
        max_length=256,
        description="argv list; the element '{prompt}' is replaced by the prompt text (no shell)",
    ),
]
OrgName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9-]+$",
        description="create the repository in this organisation instead of under the token's user",
    ),
]
RuntimeName = Literal["docker", "local"]
AgentName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=NAME_PATTERN,
        description="an agent preset of GET /api/agents (e.g. 'claude'); it replaces agent_command in workflow runs",
    ),
]


class GitHubOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``create: true`` makes a GitHub repository named as the project, sets it as the
    workspace's ``origin`` and pushes to it; the project's ``github_url`` is its page."""

    create: bool = False
    private: bool = True
    org: OrgName | None = None


ParallelRuns = Annotated[
    int, msgspec.Meta(ge=1, le=8, description="how many workflow runs may run at once, each in its own worktree")
]
TestPattern = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=256,
        pattern=r"^(?!/)(?!.*(^|/)\.\.(/|$))[^\x00]+$",
        description="a glob over workspace-relative paths ('*' matches '/' too), e.g. 'src/**/*.test.ts'",
    ),
]
TestPatterns = Annotated[
    list[TestPattern],
    msgspec.Meta(min_length=1, max_length=64, description="which files are tests (the red step must change one)"),
]


class ProjectCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: ProjectName
    description: Description = ""
    template: TemplateName = "blank"
    repo_url: RepoUrl | None = None
    github: GitHubOptions | None = None
    image: ImageRef | None = None
    runtime: RuntimeName | None = None
    test_command: Command | None = None
    test_patterns: TestPatterns | None = None  # None: the template's
    parallel_runs: ParallelRuns = 1
    agent_command: AgentCommand | None = None
    agent: AgentName | None = None
    env: EnvMapping = {}

    def __post_init__(self) -> None:
        check_env(self.env)


class ProjectUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields left out are unchanged. Renaming keeps the workspace path."""

    name: ProjectName | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    image: ImageRef | msgspec.UnsetType = msgspec.UNSET
    runtime: RuntimeName | msgspec.UnsetType | None = msgspec.UNSET
    test_command: Command | msgspec.UnsetType = msgspec.UNSET
    test_patterns: TestPatterns | msgspec.UnsetType | None = msgspec.UNSET  # null: the template's
    parallel_runs: ParallelRuns | msgspec.UnsetType = msgspec.UNSET
    agent_command: AgentCommand | msgspec.UnsetType = msgspec.UNSET
    agent: AgentName | msgspec.UnsetType | None = msgspec.UNSET
    env: EnvMapping | msgspec.UnsetType = msgspec.UNSET  # replaces the whole mapping

    def __post_init__(self) -> None:
        if self.env is not msgspec.UNSET:
            check_env(self.env)


class Project(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    description: str
    path: str
    template: str
    repo_url: str | None
    github_url: str | None
    image: str
    runtime: RuntimeName
    test_command: str
    test_patterns: list[str]  # the project's own, or its template's
    parallel_runs: int
    agent_command: list[str]
    agent: str | None  # a preset of GET /api/agents; null: agent_command is run as it is
    env: dict[str, str]  # plain settings; secrets are listed by GET /api/projects/{id}/secrets
    created_at: datetime
    updated_at: datetime
    container_id: str | None


class ProjectPage(Page, kw_only=True):
    items: list[Project]
