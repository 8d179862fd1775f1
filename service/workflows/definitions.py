"""Workflow definitions as data: steps, their goals (the prompt), and their gates."""

from __future__ import annotations

from typing import Literal

import msgspec

from service.errors import Invalid

Gate = Literal["red", "green", "refactor", "commit"]


class StepDefinition(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: Literal["agent", "service"]
    gate: Gate
    goal: str  # what the agent is asked to do (agent steps); what the service does (others)
    passes_when: str


class WorkflowDefinition(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str
    steps: tuple[StepDefinition, ...]


TDD = WorkflowDefinition(
    name="tdd",
    description="Test-driven development: failing tests first, then the code, then a refactor, then a commit.",
    steps=(
        StepDefinition(
            name="red",
            kind="agent",
            gate="red",
            goal=(
                "Write tests for the task, and only tests: they must fail now, because the feature does not "
                "exist yet. Do not write the implementation."
            ),
            passes_when="test files changed and the test command fails",
        ),
        StepDefinition(
            name="green",
            kind="agent",
            gate="green",
            goal=(
                "Make the failing tests pass by writing the implementation. Do not change the tests written "
                "in the previous step."
            ),
            passes_when="the test command succeeds and the tests are byte-identical to those red left",
        ),
        StepDefinition(
            name="refactor",
            kind="agent",
            gate="refactor",
            goal="Improve the code's structure without changing its behaviour. Do not change the tests.",
            passes_when="the test command still succeeds and the tests are still unchanged",
        ),
        StepDefinition(
            name="commit",
            kind="service",
            gate="commit",
            goal="The service commits everything on the branch agentdock/<run id> (and pushes it and opens a pull "
            "request where the project has a GitHub remote).",
            passes_when="the commit was made (and pushed)",
        ),
    ),
)

WORKFLOWS: dict[str, WorkflowDefinition] = {w.name: w for w in (TDD,)}


def get_workflow(name: str) -> WorkflowDefinition:
    try:
        return WORKFLOWS[name]
    except KeyError:
        known = ", ".join(sorted(WORKFLOWS))
        raise Invalid(f"unknown workflow {name!r}; known workflows: {known}") from None


def render_prompt(*, task: str, step: StepDefinition, test_command: str, attempt: int, failure: str | None) -> str:
    """The prompt of an agent step: the task, the step's goal, the test command, and on a
    retry the failing gate's output."""
    parts = [
        f"Task: {task}",
        "",
        f"Step: {step.name}. {step.goal}",
        f"The service will check this step itself by running the test command `{test_command}` in the "
        f"workspace: it passes only if {step.passes_when}.",
        "If you cannot do this step, print a line `BLOCKED: <reason>` and stop.",
    ]
    if failure:
        parts += ["", f"Attempt {attempt}. The previous attempt did not pass the gate:", failure]
    return "\n".join(parts)
