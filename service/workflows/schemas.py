"""API shapes of workflows and runs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from service.api.pagination import Page
from service.workflows.definitions import StepDefinition

RunState = Literal["queued", "running", "succeeded", "failed", "blocked", "cancelled"]
StepState = Literal["pending", "running", "passed", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "blocked", "cancelled"})
DEFAULT_STEP_TIMEOUT_S = 1800.0
DEFAULT_IDLE_TIMEOUT_S = 600.0


class Workflow(msgspec.Struct, kw_only=True):
    name: str
    description: str
    steps: list[StepDefinition]


class RunCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    workflow: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    task: Annotated[str, msgspec.Meta(min_length=1, max_length=20000)]
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3
    step_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = DEFAULT_STEP_TIMEOUT_S
    idle_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = DEFAULT_IDLE_TIMEOUT_S  # at least 60 s


class GateResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    passed: bool
    reason: str
    exit_code: int | None = None
    output_tail: str | None = None
    tests_changed: list[str] | None = None


class Gate(msgspec.Struct, kw_only=True):
    """What a step's gate found, as recorded on the step (see ``runner._gate_record``): the
    verdict and its reason, the test command's exit code and output tail, the test files the
    step changed, the branch and commit of the commit step, and the message a retried attempt
    was re-prompted with."""

    passed: bool
    reason: str
    exit_code: int | None = None
    output_tail: str | None = None
    tests_changed: list[str] | None = None
    branch: str | None = None
    commit: str | None = None
    retry_with: str | None = None


class Usage(msgspec.Struct, kw_only=True):
    """What the agent reported of its last attempt at a step (Claude's ``result`` event)."""

    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    turns: int | None


class Step(msgspec.Struct, kw_only=True):
    name: str
    state: StepState
    attempts: int
    session_id: str | None
    gate: Gate | None
    usage: Usage | None = None
    agent_message: str | None = None  # the agent's final message, where it reports one
    started_at: datetime | None
    finished_at: datetime | None


Review = Literal["unreviewed", "merged", "discarded"]


class Run(msgspec.Struct, kw_only=True):
    id: UUID
    project_id: UUID
    workflow: str
    task: str
    state: RunState
    reason: str | None
    max_attempts: int
    step_timeout_s: float
    idle_timeout_s: float
    branch: str | None
    commit_sha: str | None
    pull_request_url: str | None
    steps: list[Step]
    created_at: datetime
    updated_at: datetime
    review: Review = "unreviewed"
    base_commit: str | None = None  # where the run's branch started
    worktree: str | None = None  # the run's git worktree, relative to the workspace
    base_branch: str | None = None  # the branch the run started from (a merge goes there)


class StepSummary(msgspec.Struct, kw_only=True):
    """A step in a list of runs: its state, without the gate's output or the agent's message."""

    name: str
    state: StepState
    attempts: int
    session_id: str | None
    usage: Usage | None = None
    started_at: datetime | None
    finished_at: datetime | None


class RunSummary(msgspec.Struct, kw_only=True):
    """A run in a list: ``GET /api/workflow-runs/{id}`` has the steps' gates in full."""

    id: UUID
    project_id: UUID
    workflow: str
    task: str
    state: RunState
    reason: str | None
    max_attempts: int
    branch: str | None
    commit_sha: str | None
    pull_request_url: str | None
    steps: list[StepSummary]
    created_at: datetime
    updated_at: datetime
    review: Review = "unreviewed"


class DiffFile(msgspec.Struct, kw_only=True):
    path: str
    additions: int | None  # None: a binary file
    deletions: int | None


class RunDiff(msgspec.Struct, kw_only=True):
    """A run's branch against where it started: one page of the files changed, and the
    unified diff of those files (cut at 1 MiB: ``truncated``)."""

    base: str
    head: str
    files: list[DiffFile]
    total: int  # files changed in all
    limit: int
    offset: int
    patch: str
    truncated: bool


class MergeConflictBody(msgspec.Struct, kw_only=True):
    """409 of a merge: ``conflicts`` lists the conflicting paths (nothing was changed); it is
    empty where the run was not mergeable for another reason (``detail`` says which)."""

    status_code: int
    detail: str
    conflicts: list[str] = []


class RunPage(Page, kw_only=True):
    items: list[RunSummary]


class RunEvent(msgspec.Struct, kw_only=True, omit_defaults=True, tag="run", tag_field="type"):
    """One event on ``WS /api/workflow-runs/{id}/events``: the run, as it is after a change
    (``"type": "run"`` always, for clients that tell messages apart by it)."""

    change: str
    run: Run
