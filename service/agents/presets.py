"""Agent presets as data. A project chooses one by name (``agent: "claude"``) or keeps a raw
``agent_command``. Every preset runs unattended inside the project's sandbox, as ``agent``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import msgspec

from service.errors import Invalid

PROMPT = "{prompt}"
DEFAULT_AGENT = "claude"  # a new project's preset when it names neither a preset nor a command
Output = Literal["text", "claude-stream"]


@dataclass(frozen=True)
class AgentPreset:
    name: str
    command: tuple[str, ...]  # the element "{prompt}" is replaced by the prompt (no shell)
    description: str
    output: Output = "text"
    # Inserted before the prompt on a retry, "{session}" replaced by the conversation to continue.
    resume: tuple[str, ...] = field(default=())


PRESETS: dict[str, AgentPreset] = {
    preset.name: preset
    for preset in (
        AgentPreset(
            name="claude",
            command=(
                "claude",
                "--permission-mode",
                "bypassPermissions",
                "--output-format",
                "stream-json",
                "--verbose",
                "-p",
                PROMPT,
            ),
            description="Claude Code (in the default image), unattended inside the sandbox: permission prompts "
            "bypassed, progress streamed as it works, its usage and cost recorded, a retry continuing the same "
            "conversation. Needs ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN as a project secret or in the "
            "service's agent env file, and a network that reaches the API.",
            output="claude-stream",
            resume=("--resume", "{session}"),
        ),
        AgentPreset(
            name="aider",
            command=("aider", "--yes-always", "--no-auto-commits", "--no-pretty", "--message", PROMPT),
            description="aider (not in the default image: install it in the project's own environment); "
            "commits are left to the workflow's commit step.",
        ),
        AgentPreset(
            name="codex",
            command=("codex", "exec", "--full-auto", PROMPT),
            description="OpenAI Codex CLI (not in the default image: install it in the project's own environment).",
        ),
    )
}


class Agent(msgspec.Struct, kw_only=True):
    """An agent preset as the API shows it."""

    name: str
    command: list[str]
    description: str


def get_preset(name: str) -> AgentPreset:
    preset = PRESETS.get(name)
    if preset is None:
        raise Invalid(f"no agent preset {name!r}; GET /api/agents lists them: {', '.join(sorted(PRESETS))}")
    return preset


def agent_argv(command: list[str], prompt: str, *, resume: list[str] | None = None) -> list[str]:
    """The argv of one agent step: the prompt in place of ``{prompt}``, resume options before it."""
    argv: list[str] = []
    for element in command:
        if element == PROMPT:
            argv += [*(resume or []), prompt]
        else:
            argv.append(element)
    return argv
