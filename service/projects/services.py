"""The projects service: the database rows and the workspace directories, kept in step."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import msgspec
import structlog
from advanced_alchemy.exceptions import IntegrityError
from advanced_alchemy.filters import LimitOffset, OrderBy
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService

from service.agents.presets import DEFAULT_AGENT, get_preset
from service.db.models import ProjectModel
from service.errors import AppError, Conflict, Invalid, NotFound
from service.git import host as git
from service.logs import get_logger
from service.projects import workspace
from service.projects.schemas import DEFAULT_AGENT_COMMAND, GitHubOptions, Project, ProjectCreate, ProjectUpdate
from service.runtimes.factory import new_workspace_owner
from service.scaffolding import templates
from service.scaffolding.github import GitHubClient, GitHubRepository
from service.scaffolding.templates import TemplateSpec, get_template
from service.settings import Settings

log = get_logger(__name__)


class ProjectRepository(SQLAlchemyAsyncRepository[ProjectModel]):
    model_type = ProjectModel


class ProjectService(SQLAlchemyAsyncRepositoryService[ProjectModel, ProjectRepository]):
    repository_type = ProjectRepository

    async def get_project(self, project_id: UUID) -> ProjectModel:
        project = await self.get_one_or_none(id=project_id)
        if project is None:
            raise NotFound(f"no project with id {project_id}")
        return project

    async def page_of_projects(self, *, limit: int, offset: int) -> tuple[list[ProjectModel], int]:
        """A page of the projects, oldest first, and the count of all."""
        rows, total = await self.get_many_and_count(
            LimitOffset(limit=limit, offset=offset), OrderBy(field_name="created_at", sort_order="asc")
        )
        if not rows and offset:  # the count rides on the rows (a window function): none past the end
            total = await self.count()
        return list(rows), total

    async def _ensure_name_free(self, name: str) -> None:
        if await self.get_one_or_none(name=name) is not None:
            raise Conflict(f"a project named {name!r} already exists")

    async def create_project(self, data: ProjectCreate, settings: Settings) -> ProjectModel:
        """Make the workspace (template files and a first commit, or a clone), publish it to
        GitHub where asked, then insert the row. A failure at any step undoes every step
        before it: no row, no workspace directory, no GitHub repository is left behind."""
        template = get_template(data.template)
        source = git.parse_clone_source(data.repo_url) if data.repo_url is not None else None
        check_runtime_allowed(data.runtime, settings)
        if data.agent is not None:
            get_preset(data.agent)  # 400 for an unknown preset
        if source is not None and source.local and not settings.allow_local_clone:
            raise Invalid(
                "repo_url is a path or file:// URL on the service's host, and cloning those is not allowed: "
                "the operator allows it with AGENTDOCK_ALLOW_LOCAL_CLONE=1. Clone an https:// URL instead"
            )
        github = GitHubClient(settings) if data.github is not None and data.github.create else None
        await self._ensure_name_free(data.name)
        await self._ensure_room(settings.max_projects)
        project_id = uuid4()
        with structlog.contextvars.bound_contextvars(project_id=str(project_id)):
            path = workspace.create_workspace(settings.workspaces_dir, data.name)
            creation = _Creation(settings=settings, path=path, github=github)
            try:
                if source is not None:
                    await creation.clone(source)
                else:
                    await creation.scaffold(template, name=data.name, description=data.description)
                if github is not None and data.github is not None:
                    await creation.publish(github, data.github, name=data.name, description=data.description)
                owner = new_workspace_owner(data.runtime or settings.runtime)
                if owner is not None:
                    await creation.hand_over(*owner)
                creation.step = "database"
                project = await self._insert(
                    ProjectModel(
                        id=project_id,
                        name=data.name,
                        description=data.description,
                        path=str(path),
                        template=template.name,
                        repo_url=data.repo_url,
                        github_url=creation.repository.html_url if creation.repository else None,
                        image=data.image or settings.image,
                        runtime=data.runtime,
                        test_command=data.test_command if data.test_command is not None else template.test_command,
                        agent_command=list(data.agent_command or DEFAULT_AGENT_COMMAND),
                        test_patterns=list(data.test_patterns) if data.test_patterns is not None else None,
                        parallel_runs=data.parallel_runs,
                        # Neither given: the claude preset, which streams and reports (not bare `claude -p`).
                        agent=data.agent if data.agent is not None or data.agent_command else DEFAULT_AGENT,
                        env=dict(data.env),
                    )
                )
            except BaseException as exc:
                await creation.undo(exc, name=data.name)
                raise
        log.info("project.created", project_id=str(project.id), name=project.name, path=project.path)
        return project

    async def _ensure_room(self, max_projects: int) -> None:
        if await self.count() >= max_projects:
            raise Conflict(
                f"the service already holds {max_projects} projects, its limit (AGENTDOCK_MAX_PROJECTS): "
                "delete one first"
            )

    async def _insert(self, project: ProjectModel) -> ProjectModel:
        try:
            return await self.create(project, auto_commit=True)
        except IntegrityError:
            raise Conflict(f"a project named {project.name!r} already exists") from None

    async def update_project(self, project_id: UUID, data: ProjectUpdate, settings: Settings) -> ProjectModel:
        project = await self.get_project(project_id)
        changes: dict[str, Any] = {
            field: value for field in data.__struct_fields__ if (value := getattr(data, field)) is not msgspec.UNSET
        }
        if "runtime" in changes:
            check_runtime_allowed(changes["runtime"], settings)
        if changes.get("agent") is not None:
            get_preset(changes["agent"])
        if "name" in changes and changes["name"] != project.name:
            await self._ensure_name_free(changes["name"])
        for field, value in changes.items():
            setattr(project, field, value)
        try:
            project = await self.update(project, auto_commit=True)
        except IntegrityError:
            raise Conflict(f"a project named {changes.get('name')!r} already exists") from None
        log.info("project.updated", project_id=str(project.id), fields=sorted(changes))
        return project

    async def delete_project(self, project_id: UUID) -> ProjectModel:
        """Delete the row (the workspace directory is the controller's to purge, once the
        project's sessions have ended)."""
        project = await self.get_project(project_id)
        await self.delete(project.id, auto_commit=True)
        log.info("project.deleted", project_id=str(project.id), name=project.name)
        return project


class _Creation:
    """The steps of one project's creation, and how to undo them."""

    def __init__(self, *, settings: Settings, path: Path, github: GitHubClient | None) -> None:
        self.settings = settings
        self.path = path
        self.github = github
        self.repository: GitHubRepository | None = None
        self.step = "workspace"

    async def scaffold(self, template: TemplateSpec, *, name: str, description: str) -> None:
        self.step = "template"
        files = await asyncio.to_thread(
            templates.render, template, self.path, project_name=name, description=description
        )
        self.step = "git"
        commit = await git.init_and_commit(
            self.path,
            author=git.Author(self.settings.git_author_name, self.settings.git_author_email),
            message=f"Initial commit from the agentdock template '{template.name}'",
            timeout=self.settings.git_timeout_s,
        )
        log.info("project.scaffolded", template=template.name, files=len(files), commit=commit, path=str(self.path))

    async def clone(self, source: git.CloneSource) -> None:
        self.step = "clone"
        await git.clone(source, self.path, timeout=self.settings.git_timeout_s)
        commit = await git.head(self.path, timeout=self.settings.git_timeout_s)
        log.info("project.cloned", repo_url=source.url, commit=commit, path=str(self.path))

    async def publish(self, github: GitHubClient, options: GitHubOptions, *, name: str, description: str) -> None:
        self.step = "github"
        self.repository = await github.create_repository(
            name=name, description=description, private=options.private, org=options.org
        )
        repo = self.repository
        log.info(
            "github.repo_created",
            full_name=repo.full_name,
            html_url=repo.html_url,
            private=repo.private,
            org=options.org,
        )
        self.step = "push"
        timeout = self.settings.git_timeout_s
        await git.set_remote(self.path, "origin", repo.clone_url, timeout=timeout)
        branch = await git.push(self.path, "origin", token=github.token, timeout=timeout)
        log.info("git.pushed", remote="origin", url=repo.html_url, branch=branch)

    async def hand_over(self, uid: int, gid: int) -> None:
        """Give the new tree to the container's `agent` user: all host-side git on it is done,
        and no container or agent has had it yet."""
        self.step = "ownership"
        entries = await asyncio.to_thread(workspace.hand_over, self.path, uid, gid)
        if entries:
            log.info("project.workspace_handed_over", path=str(self.path), uid=uid, entries=entries)

    async def undo(self, exc: BaseException, *, name: str) -> None:
        """Delete what was made, newest first; never raises (the original error is the answer)."""
        notes: list[str] = []
        if self.repository is not None and self.github is not None:
            repo = self.repository
            try:
                await self.github.delete_repository(repo)
            except AppError as failure:
                notes.append(
                    f"The GitHub repository {repo.html_url} was created but could not be deleted "
                    f"({failure.detail}); delete it by hand before trying again."
                )
                log.warning("github.repo_delete_failed", full_name=repo.full_name, detail=failure.detail)
            else:
                log.info("github.repo_deleted", full_name=repo.full_name)
        try:
            await asyncio.to_thread(workspace.purge_workspace, self.settings.workspaces_dir, self.path)
        except OSError as failure:
            log.warning("project.cleanup_failed", path=str(self.path), detail=str(failure))
        if isinstance(exc, AppError):
            if notes:
                exc.detail = " ".join([exc.detail, *notes])
                exc.args = (exc.detail,)
            log.warning("project.create_failed", name=name, step=self.step, status=exc.status_code, detail=exc.detail)
        elif isinstance(exc, Exception):
            log.warning("project.create_failed", name=name, step=self.step, status=500, detail=type(exc).__name__)
        else:  # cancelled: the client went away
            log.warning("project.create_failed", name=name, step=self.step, status=None, detail="cancelled")


def check_runtime_allowed(runtime: str | None, settings: Settings) -> None:
    """The `local` runtime runs agents unsandboxed on the host, as the service's user: only
    the operator may open it to API clients."""
    if runtime == "local" and not settings.allow_local_runtime:
        raise Invalid(
            "the local runtime runs agents unsandboxed on the service's host and is not allowed here: "
            "the operator allows it with AGENTDOCK_ALLOW_LOCAL_RUNTIME=1 (or AGENTDOCK_RUNTIME=local)"
        )


def to_schema(project: ProjectModel, settings: Settings) -> Project:
    return Project(
        id=project.id,
        name=project.name,
        description=project.description,
        path=project.path,
        template=project.template,
        repo_url=project.repo_url,
        github_url=project.github_url,
        image=project.image,
        runtime=project.runtime or settings.runtime,  # type: ignore[arg-type]
        test_command=project.test_command,
        agent_command=list(project.agent_command),
        test_patterns=list(project.test_patterns or get_template(project.template).test_patterns),
        parallel_runs=project.parallel_runs or 1,
        agent=project.agent,
        env=dict(project.env or {}),
        created_at=project.created_at,
        updated_at=project.updated_at,
        container_id=project.container_id,
    )
